/**
 * `--db` as an object-store URI (issue 14 part 3: "a shared path or an object-store URI that
 * LanceDB supports"). No S3-compatible server can be had offline, so the object-store path is
 * exercised through LanceDB's `file-object-store://` scheme: the same object-store layer (and
 * commit protocol) as s3:// / gs:// / az://, on a real folder that several processes share.
 * Checked here: index + search + re-run on such a URI give the vectors of a local-folder DB;
 * two queue workers fill the URI's table (every file once); a local run's lock for a URI lives in
 * the user cache (a second run is refused with one line); an unreachable S3 endpoint, and
 * schemes we do not take (memory://, db://, file://, unknown), are one line with exit 2, no
 * LanceDB log noise, and no local folder named after the URI.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TableLock, lockPath } from "../src/search/lock.js";
import { ImageStore } from "../src/search/store.js";
import { cli, start } from "./harness/cli-child.js";
import { noisePng, tempDir } from "./harness/files.js";
import { FIXTURES } from "./harness/paths.js";
import { freePort, startRedis, type RedisServer } from "./harness/redis.js";

const F32 = join(FIXTURES, "models", "fixres-f32");

async function photos(n: number, seed0: number): Promise<string> {
  const dir = join(tempDir("siglip2-os-"), "photos");
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) writeFileSync(join(dir, `p${i}.png`), await noisePng(seed0 + i, 20 + i, 17));
  return dir;
}

/** path → vector of every row of the table, after checking that no path is there twice. */
async function table(db: string): Promise<Map<string, Float32Array>> {
  const st = await ImageStore.open(db, "images");
  try {
    const rows = await st.all();
    const m = new Map<string, Float32Array>();
    for (const r of rows) {
      assert.ok(!m.has(r.path), `${r.path} twice in ${db}`);
      m.set(r.path, Float32Array.from(r.vector));
    }
    return m;
  } finally {
    st.close();
  }
}

/** Same paths, and vectors equal (`tol` 0) or within `tol` (a queue embeds one image per batch, a local run several). */
function sameVectors(a: Map<string, Float32Array>, b: Map<string, Float32Array>, tol = 0): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [p, v] of a) {
    const w = b.get(p)!;
    if (tol === 0) assert.deepEqual(Array.from(v), Array.from(w), p);
    else assert.ok(v.every((x, i) => Math.abs(x - w[i]!) <= tol), `${p}: vectors differ by more than ${tol}`);
  }
}

/** stderr lines (LanceDB's Rust log lines would show here too). */
function lines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.trim() !== "");
}

describe("--db as an object-store URI (file-object-store:// through LanceDB's object-store layer)", { timeout: 300_000 }, () => {
  let dir: string;
  let local: Map<string, Float32Array>;
  before(async () => {
    dir = await photos(5, 700);
    const db = join(tempDir("siglip2-os-local-"), "db");
    const r = await cli(["index", dir, "--db", db, "--model", F32]);
    assert.equal(r.code, 0, r.stderr);
    local = await table(db);
    assert.equal(local.size, 5);
  });

  it("index, re-run and search on file-object-store:// give the local DB's vectors; no folder is made from the URI", async () => {
    const cwd = tempDir("siglip2-os-cwd-");
    const uri = `file-object-store://${join(tempDir("siglip2-os-store-"), "db")}`;
    const r = await cli(["index", dir, "--db", uri, "--model", F32], {}, 90_000, cwd);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lines(r.stderr).length, 1, r.stderr); // the summary line only: no LanceDB warnings
    assert.match(r.stderr, /5 new, 0 changed, 0 removed, 0 unchanged; table "images" in DB file-object-store:\/\/.+ holds 5 images/);
    sameVectors(await table(uri), local);
    const again = await cli(["index", dir, "--db", uri, "--model", F32], {}, 90_000, cwd);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /0 new, 0 changed, 0 removed, 5 unchanged/);
    const s = await cli(["search", "noise", "--db", uri, "--model", F32, "--json", "--k", "5"], {}, 90_000, cwd);
    assert.equal(s.code, 0, s.stderr);
    const hits = s.stdout.trim().split("\n").map((l) => JSON.parse(l) as { path: string });
    assert.deepEqual(hits.map((h) => h.path).sort(), [...local.keys()].sort());
    assert.deepEqual(readdirSync(cwd), [], "the URI became a local folder");
  });

  it("the lock of a local run on a URI lives in the user cache: a second holder is refused with one line", () => {
    const cache = tempDir("siglip2-os-xdg-");
    const saved = process.env["XDG_CACHE_HOME"];
    process.env["XDG_CACHE_HOME"] = cache;
    try {
      const uri = "s3://bucket/photos-index";
      const path = lockPath(uri, "images");
      assert.ok(path.startsWith(join(cache, "siglip2", "locks")), path);
      assert.notEqual(lockPath(uri, "other"), path);
      assert.equal(lockPath(`${uri}/`, "images"), path); // a trailing slash names the same DB
      const held = TableLock.acquire(uri, "images");
      assert.ok(existsSync(path));
      held.release();
      assert.ok(!existsSync(path));
      // A live holder on this machine (our parent process, as another `siglip2 index` would be).
      writeFileSync(path, JSON.stringify({ pid: process.ppid, host: hostname(), since: new Date().toISOString(), nonce: "0123456789abcdef" }));
      assert.throws(() => TableLock.acquire(uri, "images"), (e: Error) =>
        e.message.startsWith(`another siglip2 index (pid ${process.ppid}) is updating table "images" in DB s3://bucket/photos-index; wait for it`) && !e.message.includes("\n"));
      rmSync(path);
    } finally {
      if (saved === undefined) delete process.env["XDG_CACHE_HOME"];
      else process.env["XDG_CACHE_HOME"] = saved;
    }
  });

  describe("queue workers writing to a file-object-store:// table", () => {
    let redis: RedisServer;
    before(async () => (redis = await startRedis()));
    after(async () => redis.stop());

    it("two workers at once: every file exactly once, with the local DB's vectors", async () => {
      const uri = `file-object-store://${join(tempDir("siglip2-os-queue-"), "db")}`;
      const cwd = tempDir("siglip2-os-cwd-");
      const q = await cli(["index", dir, "--queue", redis.url, "--db", uri, "--model", F32, "--batch-size", "1"], {}, 90_000, cwd);
      assert.equal(q.code, 0, q.stderr);
      assert.equal((JSON.parse(q.stdout) as { db: string }).db, uri); // the URI as given, not made a path
      const workers = [0, 1].map(() => start(["worker", "--queue", redis.url, "--model", F32, "--until-empty", "--stalled-interval", "1000"], {}, 120_000, cwd));
      const runs = await Promise.all(workers.map((w) => w.done));
      for (const r of runs) assert.equal(r.code, 0, r.stderr);
      const jobs = runs.flatMap((r) => r.stdout.trim().split("\n").filter((l) => l !== ""));
      assert.equal(jobs.length, 5);
      sameVectors(await table(uri), local, 1e-6);
      assert.deepEqual(readdirSync(cwd), []);
    });
  });
});

describe("--db URIs that cannot be used: one line, exit 2, nothing made locally", { timeout: 120_000 }, () => {
  const cases: [string, RegExp][] = [
    ["memory://scratch", /^siglip2: --db memory:\/\/scratch: an in-memory DB keeps nothing after this process; use a folder or an object store \(s3:\/\/, /],
    ["db://my-project", /^siglip2: --db db:\/\/my-project: LanceDB Cloud \(db:\/\/\) is not supported; /],
    ["ftp://host/x", /^siglip2: --db ftp:\/\/host\/x: unknown URI scheme "ftp"; /],
    ["file:///tmp/x", /^siglip2: --db file:\/\/\/tmp\/x: pass the folder as a plain path \(without file:\/\/\)$/],
    ["s3://", /^siglip2: --db s3:\/\/: the URI names no bucket or folder$/],
  ];
  for (const [db, want] of cases) {
    it(`index --db ${db}`, async () => {
      const cwd = tempDir("siglip2-os-bad-");
      const r = await cli(["index", join(FIXTURES, "model-inputs"), "--db", db, "--model", F32], {}, 60_000, cwd);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.match(lines(r.stderr)[0]!, want);
      assert.equal(r.stdout, "");
      assert.deepEqual(readdirSync(cwd), []);
    });
  }

  it("an S3 endpoint that does not answer: one line naming the address and the environment variables, no LanceDB warnings", async () => {
    const port = await freePort(); // nothing listens there
    const cwd = tempDir("siglip2-os-s3-");
    const env = { AWS_ENDPOINT: `http://127.0.0.1:${port}`, AWS_ALLOW_HTTP: "true", AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test", AWS_REGION: "us-east-1" };
    for (const args of [["index", join(FIXTURES, "model-inputs")], ["search", "a cat"]]) {
      const t0 = Date.now();
      const r = await cli([...args, "--db", "s3://bucket/photos", "--model", F32], env, 60_000, cwd);
      assert.equal(r.guarded, false, "hung");
      assert.equal(r.code, 2, r.stderr);
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.match(lines(r.stderr)[0]!, new RegExp(`^siglip2: cannot open the DB s3://bucket/photos: tcp connect error to 127\\.0\\.0\\.1:${port}: connection refused; check the URI, the network and the credentials \\(LanceDB reads AWS_ENDPOINT .*AWS_SECRET_ACCESS_KEY from the environment\\)$`));
      assert.ok(Date.now() - t0 < 45_000, `took ${Date.now() - t0} ms`);
      assert.deepEqual(readdirSync(cwd), []);
    }
  });
});
