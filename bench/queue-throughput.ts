/**
 * The throughput model of distributed indexing (src/search/queue.ts), measured in one run:
 *   Q  queue jobs/s: BullMQ enqueue (addBulk) and fetch + complete round trips with a
 *      no-op processor, on a redis-server started here on loopback, with job payloads of
 *      the real size (32 files);
 *   r  one worker's images/s, end to end through the queue (hash, embed, LanceDB commit,
 *      Redis bookkeeping), side by side with a local `buildIndex` of the same files with
 *      the same model: the tiny test fixture (the queue's overhead dominates) and, when
 *      $SIGLIP2_BENCH_CACHE/b16-224 exists (tools/reference/make_bench_checkpoints.py),
 *      B/16-224 with random weights (the model dominates);
 *   C  LanceDB commits/s of concurrent appends (32 rows of 768-d each) by 1 and 4 writers
 *      on one table, and the per-batch lookups a worker makes (rows of its paths, vectors
 *      of its hashes) as the table grows.
 * N workers saturate the queue when N·r/B ≈ Q (B files per job), and the table when
 * N·r/B·(commits per batch) ≈ C. Usage: npx tsx bench/queue-throughput.ts [--quick]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir, cpus, loadavg } from "node:os";
import { join } from "node:path";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { noisePng as noisePngWH } from "../tests/harness/files.js";
import { SigLIP2 } from "../src/api.js";
import { embeddingSetup, modelName } from "../src/search/identity.js";
import { buildIndex, openForIndexing } from "../src/search/indexer.js";
import { connectRedis, enqueueIndex, parseRedisUrl, runWorker } from "../src/search/queue.js";
import { ImageStore, type StoredImage } from "../src/search/store.js";
import { REPO } from "./common.js";

const quick = process.argv.includes("--quick");
const B = 32;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function startRedis(): Promise<{ port: number; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  for (let i = 0; i < 200; i++) {
    const c = new Redis({ port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    c.on("error", () => undefined);
    try {
      await c.connect();
      await c.ping();
      c.disconnect();
      return { port, proc };
    } catch {
      c.disconnect();
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error("redis-server did not start");
}

function fakeFiles(n: number, seed: number): { path: string; size: number; mtimeMs: number; sha256: string }[] {
  return Array.from({ length: n }, (_, i) => ({ path: `/archive/photos/2026/12/${seed}-${i}-IMG_${String(i).padStart(5, "0")}.jpg`, size: 2_500_000 + i, mtimeMs: 1.7e12 + i, sha256: (seed * 1e6 + i).toString(16).padStart(64, "0") }));
}

/** Q: jobs/s for addBulk, and for fetch + complete with a no-op processor. */
async function queueRate(port: number, jobs: number, concurrency: number): Promise<{ addPerS: number; completePerS: number; roundTripPerS: number }> {
  const name = `bench-${concurrency}-${Date.now()}`;
  const connection = { host: "127.0.0.1", port, maxRetriesPerRequest: null };
  const q = new Queue(name, { connection });
  const data = Array.from({ length: jobs }, (_, j) => ({ name: "batch", data: { v: 1, db: "/shared/db", table: "images", fingerprint: "ab".repeat(32), files: fakeFiles(B, j) }, opts: { jobId: `j${j}`, attempts: 3 } }));
  const t0 = performance.now();
  for (let i = 0; i < data.length; i += 500) await q.addBulk(data.slice(i, i + 500));
  const tAdd = (performance.now() - t0) / 1000;
  let done = 0;
  const t1 = performance.now();
  await new Promise<void>((resolve) => {
    const w = new Worker(name, async () => ({ ok: 1 }), { connection, concurrency, autorun: true });
    w.on("completed", () => {
      if (++done === jobs) void w.close().then(() => resolve());
    });
  });
  const tDone = (performance.now() - t1) / 1000;
  await q.obliterate({ force: true });
  await q.close();
  return { addPerS: jobs / tAdd, completePerS: jobs / tDone, roundTripPerS: jobs / (tAdd + tDone) };
}


/** r: one worker through the queue vs a local index, same files, same model (model load not timed). */
async function workerRate(port: number, modelDir: string, n: number, threads: number): Promise<{ queueImgS: number; localImgS: number; enqueueS: number }> {
  const root = mkdtempSync(join(tmpdir(), "siglip2-qbench-"));
  const dir = join(root, "photos");
  mkdirSync(dir);
  for (let i = 0; i < n; i++) writeFileSync(join(dir, `p${i}.png`), await noisePng(i + 1, 96));
  // Preprocessing on the main thread: under tsx a worker thread pays tsx's loader on every
  // start (the built CLI's pool does not), which would be measured instead of the queue.
  const model = await SigLIP2.load(modelDir, { threads, workers: 0 });
  try {
    const setup = await embeddingSetup(model, modelName(modelDir));
    await model.imageFeaturesSettled([join(dir, "p0.png")]); // build the sessions outside the timing
    // Local index (the reference: one process, no queue).
    const localStore = await openForIndexing(join(root, "db-local"), "images", setup);
    const t0 = performance.now();
    await buildIndex(model, localStore, [dir], { batchSize: B });
    const localS = (performance.now() - t0) / 1000;
    localStore.close();
    // Through the queue: enqueue (walk + hash + add), then one worker until the queue is empty.
    const target = parseRedisUrl(`redis://127.0.0.1:${port}`);
    const redis = await connectRedis(target, true);
    const name = `w-${Date.now()}`;
    const store = await openForIndexing(join(root, "db-queue"), "images", setup);
    const t1 = performance.now();
    await enqueueIndex(redis, target, store, [dir], { name, batchSize: B });
    const enqueueS = (performance.now() - t1) / 1000;
    store.close();
    const t2 = performance.now();
    await runWorker(model, setup, redis, target, { name, untilEmpty: true, stalledInterval: 200 });
    const queueS = (performance.now() - t2) / 1000;
    redis.disconnect();
    return { queueImgS: n / queueS, localImgS: n / localS, enqueueS };
  } finally {
    await model.close();
    rmSync(root, { recursive: true, force: true });
  }
}

function unitRows(n: number, dim: number, seed: number): StoredImage[] {
  const rows: StoredImage[] = [];
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    const v = new Float32Array(dim);
    let norm = 0;
    for (let d = 0; d < dim; d++) {
      s = (s * 1664525 + 1013904223) >>> 0;
      v[d] = s / 2 ** 32 - 0.5;
      norm += v[d]! * v[d]!;
    }
    for (let d = 0; d < dim; d++) v[d]! /= Math.sqrt(norm);
    rows.push({ path: `/p/${seed}-${i}.jpg`, size: 1000 + i, mtimeMs: 1.7e12, sha256: (seed * 1e7 + i).toString(16).padStart(64, "0"), gen: seed, vector: v, meta: { ext: "jpg" } });
  }
  return rows;
}

/** C: commits/s of concurrent appends (each writer its own connection), and the per-batch lookups at the table's size. */
async function lanceRates(writers: number[], batchesEach: number): Promise<{ commits: { writers: number; perS: number; failed: number }[]; lookups: { rows: number; ms: number }[] }> {
  const root = mkdtempSync(join(tmpdir(), "siglip2-lbench-"));
  const meta = { model: "bench", fingerprint: "ab".repeat(32), dim: 768, modelType: "siglip", resampler: "torch" as const, dtype: "fp32" as const };
  const out: { writers: number; perS: number; failed: number }[] = [];
  let seed = 1;
  try {
    (await ImageStore.open(root, "images", { create: meta })).close();
    for (const k of writers) {
      const stores = await Promise.all(Array.from({ length: k }, () => ImageStore.open(root, "images", { create: meta })));
      const batches = stores.map(() => Array.from({ length: batchesEach }, () => unitRows(B, 768, seed++)));
      let failed = 0;
      const t0 = performance.now();
      await Promise.all(stores.map(async (st, i) => {
        for (const b of batches[i]!) await st.add(b).catch(() => failed++);
      }));
      out.push({ writers: k, perS: (k * batchesEach) / ((performance.now() - t0) / 1000), failed });
      for (const st of stores) st.close();
    }
    // Per-batch lookups (a worker's rowsByPaths + vectorsByHash for 32 files) as the table grows.
    const lookups: { rows: number; ms: number }[] = [];
    const st = await ImageStore.open(root, "images", { create: meta });
    for (const target of quick ? [5_000] : [5_000, 50_000]) {
      let have = await st.count();
      while (have < target) {
        const n = Math.min(5_000, target - have);
        await st.add(unitRows(n, 768, seed++));
        have += n;
      }
      await st.compact(0);
      const probe = unitRows(B, 768, 3);
      const t0 = performance.now();
      const reps = 5;
      for (let r = 0; r < reps; r++) {
        await st.rowsByPaths(probe.map((p) => p.path));
        await st.vectorsByHash(probe.map((p) => p.sha256));
      }
      lookups.push({ rows: have, ms: (performance.now() - t0) / reps });
    }
    st.close();
    return { commits: out, lookups };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const threads = Math.min(2, cpus().length);
console.error(`queue-throughput: ${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(1)).join(" ")} at start`);
const { port, proc } = await startRedis();
try {
  const jobs = quick ? 500 : 2000;
  const q1 = await queueRate(port, jobs, 1);
  const q8 = await queueRate(port, jobs, 8);
  const tiny = await workerRate(port, join(REPO, "tests", "fixtures", "models", "fixres-f32"), quick ? 64 : 256, threads);
  const b16dir = join(process.env["SIGLIP2_BENCH_CACHE"] ?? join(homedir(), ".cache", "siglip2-bench"), "b16-224");
  const b16 = existsSync(join(b16dir, "config.json")) ? await workerRate(port, b16dir, quick ? 32 : 64, threads) : undefined;
  const lance = await lanceRates([1, 4], quick ? 10 : 25);
  const f = (x: number, d = 1) => x.toFixed(d);
  console.log(`\n## Queue throughput (redis-server on loopback, ${cpus().length} cores, batch ${B} files; load average ${loadavg()[0]!.toFixed(1)} at the end)\n`);
  console.log("| measure | value |");
  console.log("|---|---|");
  console.log(`| BullMQ enqueue (addBulk, 32-file payloads) | ${f(q1.addPerS, 0)} jobs/s |`);
  console.log(`| BullMQ fetch + complete, no-op processor, concurrency 1 | ${f(q1.completePerS, 0)} jobs/s |`);
  console.log(`| BullMQ fetch + complete, no-op processor, concurrency 8 | ${f(q8.completePerS, 0)} jobs/s |`);
  console.log(`| Q: enqueue + complete round trip, concurrency 8 | ${f(q8.roundTripPerS, 0)} jobs/s = ${f(q8.roundTripPerS * B, 0)} files/s |`);
  console.log(`| tiny fixture model: one worker through the queue / local index | ${f(tiny.queueImgS)} / ${f(tiny.localImgS)} img/s (enqueue ${f(tiny.enqueueS, 2)} s) |`);
  if (b16) console.log(`| B/16-224 random weights, ${threads} threads: one worker / local index | ${f(b16.queueImgS, 2)} / ${f(b16.localImgS, 2)} img/s (enqueue ${f(b16.enqueueS, 2)} s) |`);
  else console.log(`| B/16-224 | not measured: no ${b16dir} (tools/reference/make_bench_checkpoints.py b16-224) |`);
  for (const c of lance.commits) console.log(`| C: LanceDB appends of 32×768-d rows, ${c.writers} concurrent writer${c.writers > 1 ? "s" : ""} | ${f(c.perS)} commits/s${c.failed ? ` (${c.failed} failed)` : ""} |`);
  for (const l of lance.lookups) console.log(`| a worker's per-batch lookups (rows of 32 paths + vectors of 32 hashes) at ${l.rows} rows | ${f(l.ms)} ms |`);
  const r = b16?.queueImgS ?? tiny.queueImgS;
  const c4 = lance.commits.at(-1)!.perS;
  console.log(`\nSaturation (N workers of r = ${f(r, 2)} img/s, ${B} files per job; 1 LanceDB commit per job of new files, 2 when they replace rows): queue at N ≈ Q·B/r = ${f((q8.roundTripPerS * B) / r, 0)}, table at N ≈ C·B/r = ${f((c4 * B) / r, 0)} (new files) or C·B/(2r) = ${f((c4 * B) / (2 * r), 0)} (changed files).`);
} finally {
  proc.kill("SIGKILL");
}

/** A square noise PNG (tests/harness/files.ts `noisePng`). */
function noisePng(seed: number, side: number): Promise<Buffer> {
  return noisePngWH(seed, side, side);
}
