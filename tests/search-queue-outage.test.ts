/**
 * Redis dying under `siglip2 worker` and `siglip2 index --queue` (issue 14), against real
 * redis-servers started here: a worker whose Redis stays away for --redis-timeout seconds exits 3
 * with one line (after its LanceDB write in flight is done), never hangs; a Redis that comes back
 * within the timeout (restarted with its data on the same port) costs nothing: the worker goes on
 * and the table ends with every file exactly once; an enqueue whose Redis dies exits 3 with one line.
 * Every child has a 90 s kill guard: a hang fails the test.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { ImageStore } from "../src/search/store.js";
import { cli, start, type Run } from "./harness/cli-child.js";
import { noisePng, tempDir } from "./harness/files.js";
import { FIXTURES } from "./harness/paths.js";
import { startRedis, type RedisServer } from "./harness/redis.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const PAUSE_LINE = /^siglip2: test pause /;
const LOST = /^siglip2: lost the queue at redis:\/\/127\.0\.0\.1:\d+: no answer for 3 s \(.+\); /;

async function photos(n: number, seed0: number): Promise<string> {
  const dir = join(tempDir("siglip2-outage-"), "photos");
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) writeFileSync(join(dir, `p${i}.png`), await noisePng(seed0 + i));
  return dir;
}

async function paths(db: string): Promise<string[]> {
  const st = await ImageStore.open(db, "images");
  try {
    return (await st.all()).map((r) => r.path).sort();
  } finally {
    st.close();
  }
}

/** stderr lines other than the test hook's pause notes. */
function lines(r: Run): string[] {
  return r.stderr.split("\n").filter((l) => l.trim() !== "" && !PAUSE_LINE.test(l));
}

function killed(r: RedisServer): Promise<void> {
  return r.stop(); // SIGKILL, resolves at its exit
}

async function enqueue(url: string, dir: string, db: string): Promise<void> {
  const r = await cli(["index", dir, "--queue", url, "--db", db, "--model", F32, "--batch-size", "1"]);
  assert.equal(r.code, 0, r.stderr);
}

/** The run stopped with exit 3 and one "lost the queue" line, without the kill guard; returns that line and the seconds since `t0`. */
function assertLost(r: Run, t0: number): { line: string; s: number } {
  const s = (Date.now() - t0) / 1000;
  assert.equal(r.guarded, false, `hung (killed by the 90 s guard); stderr: ${r.stderr}`);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(lines(r).length, 1, r.stderr);
  assert.match(lines(r)[0]!, LOST);
  return { line: lines(r)[0]!, s };
}

/** A fresh redis-server and `n` photos (seeds from `seed0`) with their DB path, enqueued unless `enqueued` is false; the server is stopped after `body`. */
async function withQueue(n: number, seed0: number, body: (q: { redis: RedisServer; dir: string; db: string }) => Promise<void>, enqueued = true): Promise<void> {
  const redis = await startRedis();
  try {
    const dir = await photos(n, seed0);
    const db = join(tempDir("siglip2-outage-db-"), "db");
    if (enqueued) await enqueue(redis.url, dir, db);
    await body({ redis, dir, db });
  } finally {
    await redis.stop();
  }
}

describe("Redis dies under a worker or an enqueue (--redis-timeout)", { timeout: 300_000 }, () => {
  it("Redis killed under an idle worker: exit 3 within the timeout + 5 s, one line, no stack trace", async () => {
    await withQueue(2, 300, async ({ redis, dir, db }) => {
      const w = start(["worker", "--queue", redis.url, "--model", F32, "--redis-timeout", "3", "--stalled-interval", "1000"]);
      await w.waitFor(/"job"[^\n]*\n[^\n]*"job"/, 60_000, "stdout"); // both jobs done, the worker waits for more
      const t0 = Date.now();
      await killed(redis);
      const r = await w.done;
      const { s } = assertLost(r, t0);
      assert.ok(s < 8, `exited ${s.toFixed(1)} s after the kill`);
      assert.match(lines(r)[0]!, /; 2 jobs done by this worker; the rest stay queued and another worker \(or this one, rerun\) will take them$/);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.equal((await paths(db)).length, 2);
    });
  });

  it("Redis killed while a batch is being written: the worker finishes the write, then exits 3 with one line", async () => {
    await withQueue(3, 310, async ({ redis, dir, db }) => {
      // The hook pauses 6 s inside the write (after the commit): the exit must wait for it.
      const w = start(["worker", "--queue", redis.url, "--model", F32, "--redis-timeout", "3", "--until-empty", "--stalled-interval", "1000"], { SIGLIP2_WORKER_TEST_PAUSE_MS: "6000" });
      await w.waitFor(/test pause after the commit of job/);
      const t0 = Date.now();
      await killed(redis);
      const r = await w.done;
      const { s } = assertLost(r, t0);
      assert.ok(s >= 5 && s < 12, `exited ${s.toFixed(1)} s after the kill (the write in flight ends ~6 s after it)`);
      assert.match(lines(r)[0]!, /; 0 jobs done by this worker;/);
      assert.equal((await paths(db)).length, 1, "the batch in flight was committed");
    });
  });

  it("Redis restarted with its data within the timeout: the worker goes on; every file exactly once", async () => {
    const data = tempDir("siglip2-outage-redis-");
    let redis = await startRedis([], { dir: data });
    try {
      const dir = await photos(6, 320);
      const db = join(tempDir("siglip2-outage-db-"), "db");
      await enqueue(redis.url, dir, db);
      const w = start(["worker", "--queue", redis.url, "--model", F32, "--redis-timeout", "30", "--until-empty", "--stalled-interval", "1000"], { SIGLIP2_WORKER_TEST_PAUSE_MS: "300" });
      await w.waitFor(/test pause after the commit of job/);
      const admin = new Redis({ port: redis.port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      admin.on("error", () => undefined);
      await admin.connect();
      const exited = new Promise((r) => redis.proc.once("exit", r));
      await admin.call("SHUTDOWN", "SAVE").catch(() => undefined); // the server closes the connection
      admin.disconnect();
      await exited;
      await new Promise((r) => setTimeout(r, 1_500));
      redis = await startRedis([], { port: redis.port, dir: data });
      const r = await w.done;
      assert.equal(r.guarded, false, `hung (killed by the 90 s guard); stderr: ${r.stderr}`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /Redis at redis:\/\/127\.0\.0\.1:\d+ answered again after \d+(?:\.\d)? s; going on/);
      assert.doesNotMatch(r.stderr, /lost the queue/);
      const got = await paths(db);
      assert.equal(got.length, 6, got.join(", "));
      assert.equal(new Set(got).size, 6, "every file exactly once");
    } finally {
      await redis.stop();
    }
  });

  it("Redis killed in the middle of an enqueue: exit 3 with one line", async () => {
    await withQueue(3, 330, async ({ redis, dir, db }) => {
      const e = start(["index", dir, "--queue", redis.url, "--db", db, "--model", F32, "--batch-size", "1", "--redis-timeout", "3"], { SIGLIP2_ENQUEUE_TEST_PAUSE_MS: "1000" });
      await e.waitFor(/test pause before adding the batches/);
      const t0 = Date.now();
      await killed(redis);
      const r = await e.done;
      const { s } = assertLost(r, t0);
      assert.ok(s < 9, `exited ${s.toFixed(1)} s after the kill`);
      assert.match(lines(r)[0]!, /rerun the same command/);
      assert.equal(r.stdout, "");
    }, false);
  });

  it("--redis-timeout is bounds-checked in one line", async () => {
    for (const [cmd, v] of [["worker", "0"], ["worker", "1.5"], ["index", "999999999"]] as const) {
      const args = cmd === "worker" ? ["worker", "--queue", "redis://127.0.0.1:1", "--model", F32, "--redis-timeout", v] : ["index", "--queue", "redis://127.0.0.1:1", "--status", "--redis-timeout", v];
      const r = await cli(args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /--redis-timeout/);
    }
  });

  it("a queue worker whose preprocessing threads cannot start stops (exit 2, one line) and its job goes to the next worker", async () => {
    await withQueue(3, 340, async ({ redis, dir, db }) => {
      const short = ["--until-empty", "--lock-duration", "4000", "--stalled-interval", "1000"];
      const bad = await cli(["worker", "--queue", redis.url, "--model", F32, ...short], { SIGLIP2_TEST_WORKER_FAULT: "start:crash" });
      assert.equal(bad.guarded, false, `hung (killed by the 90 s guard); stderr: ${bad.stderr}`);
      assert.equal(bad.code, 2, bad.stderr);
      assert.equal(lines(bad).length, 1, bad.stderr);
      assert.match(lines(bad)[0]!, /^siglip2: cannot start the image preprocessing worker threads \(.+\); run again with --workers 0 .*; 0 jobs done by this worker; its job went back to the queue for another worker$/);
      assert.doesNotMatch(bad.stderr, /job failed/);
      assert.equal(bad.stdout, "");
      // Nothing was failed: a healthy worker takes every job (the crashed one's after its lock lapses).
      const good = await cli(["worker", "--queue", redis.url, "--model", F32, ...short]);
      assert.equal(good.code, 0, good.stderr);
      assert.deepEqual((await paths(db)).map((p) => p.slice(dir.length + 1)), ["p0.png", "p1.png", "p2.png"]);
    });
  });
});
