/**
 * Distributed indexing (src/search/queue.ts) against a real redis-server started here on a
 * free loopback port: `siglip2 index --queue` enqueues 40 generated PNGs, three
 * `siglip2 worker` processes embed them, one is `kill -9`ed in the middle of a batch (after
 * its commit, before its job completes); the table must then hold every file exactly once,
 * with the vectors a local embedding of the same files gives. A re-enqueue and a re-delivered
 * batch change nothing; a worker with another checkpoint takes no job; a file changed after
 * it was enqueued is reported and not written.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { SigLIP2 } from "../src/api.js";
import { ImageStore, type StoredImage } from "../src/search/store.js";
import { parseRedisUrl, parseBatchJob } from "../src/search/queue.js";
import { SiglipError } from "../src/errors.js";
import { tempDir, noisePng } from "./harness/files.js";
import { FIXTURES, REPO } from "./harness/paths.js";
import { startRedis, type RedisServer } from "./harness/redis.js";

const BIN = join(REPO, "dist", "cli", "main.js");
const F32 = join(FIXTURES, "models", "fixres-f32");
const NAFLEX = join(FIXTURES, "models", "naflex-f32");
const N = 40;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A CLI child with its output collected; `lines` resolves when stderr shows a line matching `re`. */
function start(args: string[], env: NodeJS.ProcessEnv = {}): { proc: ChildProcess; done: Promise<Run>; waitFor(re: RegExp, ms?: number): Promise<void> } {
  const proc = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, HF_HUB_OFFLINE: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
    for (const w of waiters.splice(0)) (w.re.test(stderr) ? w.resolve() : waiters.push(w));
  });
  const done = new Promise<Run>((resolve) => proc.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  return {
    proc,
    done,
    waitFor: (re, ms = 60_000) => new Promise<void>((resolve, reject) => {
      if (re.test(stderr)) return resolve();
      const t = setTimeout(() => reject(new Error(`no ${re} on stderr within ${ms} ms; stderr: ${stderr.slice(-500)}`)), ms);
      waiters.push({ re, resolve: () => (clearTimeout(t), resolve()) });
      void done.then(() => setTimeout(() => reject(new Error(`exited before ${re}; stderr: ${stderr.slice(-500)}`)), 100));
    }),
  };
}

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return start(args, env).done;
}


async function photos(n: number, seed0 = 1): Promise<{ dir: string; paths: string[] }> {
  const dir = join(tempDir("siglip2-queue-"), "photos");
  mkdirSync(join(dir, "sub"), { recursive: true });
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = join(dir, i % 3 === 0 ? "sub" : "", `p${String(i).padStart(2, "0")}.png`);
    writeFileSync(p, await noisePng(seed0 + i));
    paths.push(p);
  }
  return { dir, paths: paths.sort() };
}

async function tableRows(db: string): Promise<StoredImage[]> {
  const st = await ImageStore.open(db, "images");
  try {
    return await st.all();
  } finally {
    st.close();
  }
}

function json(stdout: string): Record<string, unknown>[] {
  return stdout.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

let redis: RedisServer;
before(async () => {
  redis = await startRedis(); // fails (never skips) when redis-server is missing
});
after(async () => {
  await redis?.stop();
});

// Short locks so that the killed worker's job comes back within seconds; not shorter than a few
// seconds, so that a live worker on a loaded machine still renews its lock in time.
const WORKER = (queue: string, extra: string[] = []) => ["worker", "--queue", queue, "--model", F32, "--until-empty", "--lock-duration", "4000", "--stalled-interval", "1000", ...extra];

describe("siglip2 index --queue / siglip2 worker (BullMQ on a real redis-server)", { timeout: 600_000 }, () => {
  it("three workers, one killed with SIGKILL mid-batch: every file exactly once, with the vectors of a local embedding; re-enqueue and re-delivery change nothing", async () => {
    const { dir, paths } = await photos(N);
    const db = join(tempDir("siglip2-queue-db-"), "db");
    const enq = await cli(["index", dir, "--queue", redis.url, "--db", db, "--model", F32, "--batch-size", "2"]);
    assert.equal(enq.code, 0, enq.stderr);
    const s = json(enq.stdout)[0]!;
    assert.equal(s["files"], N);
    assert.equal(s["enqueued"], N);
    assert.equal(s["batches"], N / 2);
    assert.equal(s["queue"], "siglip2-images");
    // The table exists with the model's record before any worker runs.
    assert.equal((await tableRows(db)).length, 0);

    // The victim pauses after each commit; it is killed in its first pause (mid-batch:
    // rows written, the job neither completed nor its lock released).
    const victim = start(WORKER(redis.url), { SIGLIP2_WORKER_TEST_PAUSE_MS: "60000" });
    await victim.waitFor(/test pause after the commit of job (b-[0-9a-f]+)/);
    const others = [start(WORKER(redis.url)), start(WORKER(redis.url, ["--concurrency", "2"]))];
    // The victim holds an active job (BullMQ records which worker processes it).
    const q = new Queue("siglip2-images", { connection: { host: "127.0.0.1", port: redis.port } });
    try {
      const mine = (jobs: { processedBy?: string }[]) => jobs.some((j) => j.processedBy === `${hostname()}:${victim.proc.pid}`);
      let active = await q.getActive();
      for (let i = 0; i < 100 && !mine(active); i++) {
        await new Promise((r) => setTimeout(r, 100));
        active = await q.getActive();
      }
      assert.ok(mine(active), `victim has no active job: ${active.map((j) => j.processedBy).join(", ")}`);
      victim.proc.kill("SIGKILL");
      const v = await victim.done;
      assert.equal(v.signal, "SIGKILL");
      const partial = await tableRows(db);
      assert.ok(partial.length >= 2, "the victim's batch was committed before the kill");

      const results = await Promise.all(others.map((o) => o.done));
      for (const r of results) assert.equal(r.code, 0, r.stderr);
      const jobs = results.flatMap((r) => json(r.stdout));
      // The victim's job was re-delivered (stalled-job check) and found its rows written.
      assert.ok(jobs.some((j) => (j["unchanged"] as number) > 0), `no re-delivered job: ${JSON.stringify(jobs)}`);
      const counts = await q.getJobCounts("waiting", "active", "completed", "failed");
      assert.deepEqual(counts, { waiting: 0, active: 0, completed: N / 2, failed: 0 });
    } finally {
      await q.close();
    }

    const rows = await tableRows(db);
    assert.equal(rows.length, N, "every file exactly once");
    assert.deepEqual(rows.map((r) => r.path).sort(), paths);
    // The right vectors: a local embedding of the same files with the same model.
    const model = await SigLIP2.load(F32);
    try {
      const local = await model.imageFeaturesSettled(paths);
      for (const r of rows) {
        const l = local[paths.indexOf(r.path)]!;
        assert.ok(!(l instanceof SiglipError));
        assert.ok(maxAbs(r.vector, l.embedding) <= 1e-6, `${r.path}: ${maxAbs(r.vector, l.embedding)}`);
        const st = statSync(r.path);
        assert.equal(r.size, st.size);
        assert.equal(r.mtimeMs, st.mtimeMs);
      }
    } finally {
      await model.close();
    }

    // --status: everything done.
    const st = await cli(["index", "--queue", redis.url, "--status"]);
    assert.equal(st.code, 0, st.stderr);
    const status = json(st.stdout)[0]!;
    assert.equal(status["filesDone"], N);
    assert.equal(status["filesTotal"], N);
    assert.equal(status["completed"], N / 2);
    assert.match(st.stderr, /40 of 40 files done/);

    // A re-enqueue finds every file unchanged: nothing to do, the table untouched.
    const before = rows.map((r) => `${r.path}:${r.gen}`).sort();
    const again = await cli(["index", dir, "--queue", redis.url, "--db", db, "--model", F32, "--batch-size", "2"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(json(again.stdout)[0]!["enqueued"], 0);
    assert.equal(json(again.stdout)[0]!["unchanged"], N);

    // A re-delivered batch (the same files, as a new job) changes nothing.
    const q2 = new Queue("siglip2-images", { connection: { host: "127.0.0.1", port: redis.port } });
    try {
      const done = (await q2.getCompleted(0, 0))[0]!;
      await q2.add("batch", done.data, { jobId: "redelivered" });
    } finally {
      await q2.close();
    }
    const w = await cli(WORKER(redis.url));
    assert.equal(w.code, 0, w.stderr);
    const jr = json(w.stdout);
    assert.equal(jr.length, 1);
    assert.equal(jr[0]!["written"], 0);
    assert.equal(jr[0]!["unchanged"], 2);
    const afterRows = await tableRows(db);
    assert.deepEqual(afterRows.map((r) => `${r.path}:${r.gen}`).sort(), before);

    // The finishing local run (compacts the workers' fragments, builds the ANN index when due)
    // finds every file unchanged.
    const fin = await cli(["index", dir, "--model", F32, "--db", db]);
    assert.equal(fin.code, 0, fin.stderr);
    const fs = json(fin.stdout)[0]!;
    assert.deepEqual([fs["unchanged"], fs["added"], fs["updated"], fs["embedded"], fs["total"], fs["recovered"]], [N, 0, 0, 0, N, 0]);
  });

  it("a worker with another checkpoint is refused in one line and takes no job", async () => {
    const { dir } = await photos(4, 100);
    const db = join(tempDir("siglip2-queue-db-"), "db");
    const enq = await cli(["index", dir, "--queue", redis.url, "--queue-name", "mismatch", "--db", db, "--model", F32]);
    assert.equal(enq.code, 0, enq.stderr);
    const r = await cli(["worker", "--queue", redis.url, "--queue-name", "mismatch", "--model", NAFLEX, "--until-empty"]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /never mixed.*takes no jobs.*--model .*fixres-f32/);
    const q = new Queue("mismatch", { connection: { host: "127.0.0.1", port: redis.port } });
    try {
      assert.deepEqual(await q.getJobCounts("waiting", "active", "completed", "failed"), { waiting: 1, active: 0, completed: 0, failed: 0 });
    } finally {
      await q.close();
    }
    assert.equal((await tableRows(db)).length, 0);
  });

  it("a file changed after it was enqueued (same size and mtime, other bytes) is reported and not written", async () => {
    const { dir, paths } = await photos(3, 200);
    const db = join(tempDir("siglip2-queue-db-"), "db");
    const enq = await cli(["index", dir, "--queue", redis.url, "--queue-name", "changed", "--db", db, "--model", F32]);
    assert.equal(enq.code, 0, enq.stderr);
    const victim = paths[1]!;
    const st = statSync(victim);
    let other = await noisePng(999);
    while (other.length !== st.size) other = other.length < st.size ? Buffer.concat([other, Buffer.alloc(st.size - other.length)]) : other.subarray(0, st.size);
    writeFileSync(victim, other);
    utimesSync(victim, st.atime, st.mtime);
    const r = await cli(["worker", "--queue", redis.url, "--queue-name", "changed", "--model", F32, "--until-empty", "--stalled-interval", "500"]);
    assert.equal(r.code, 0, r.stderr);
    const job = json(r.stdout)[0]!;
    assert.equal(job["written"], 2);
    const skipped = job["skipped"] as { path: string; reason: string }[];
    assert.equal(skipped.length, 1);
    assert.equal(skipped[0]!.path, victim);
    assert.match(skipped[0]!.reason, /changed after it was enqueued/);
    assert.match(r.stderr, /changed after it was enqueued/);
    const rows = await tableRows(db);
    assert.deepEqual(rows.map((x) => x.path).sort(), [paths[0], paths[2]]);
  });

  it("parseRedisUrl and parseBatchJob: one-line errors", () => {
    assert.deepEqual(parseRedisUrl("redis://:pw@h:7/3"), { shown: "redis://:***@h:7/3", host: "h", port: 7, db: 3, tls: false, password: "pw" });
    assert.equal(parseRedisUrl("rediss://h").port, 6379);
    for (const bad of ["http://h:1", "redis://", "h:6379", "redis://h:0", "redis://h:99999", "redis://h/x", "redis://h?a=1"]) {
      assert.throws(() => parseRedisUrl(bad), (e: unknown) => e instanceof SiglipError && e.code === "usage" && !e.message.includes("\n"), bad);
    }
    const good = { v: 1, db: "/d", table: "t", fingerprint: "a".repeat(64), files: [{ path: "/x.png", size: 1, mtimeMs: 2, sha256: "b".repeat(64) }] };
    assert.equal(parseBatchJob(good).files.length, 1);
    for (const bad of [null, [], { ...good, v: 2 }, { ...good, files: [] }, { ...good, files: [{ ...good.files[0], path: "rel.png" }] }, { ...good, files: [{ ...good.files[0], sha256: "zz" }] }, { ...good, files: [good.files[0], good.files[0]] }]) {
      assert.throws(() => parseBatchJob(bad), /malformed job data/);
    }
  });
});
