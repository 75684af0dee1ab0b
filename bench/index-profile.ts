/**
 * Where the time of `siglip2 index` goes at N photos (default 10,000), with the resampler's
 * JavaScript kernels and with its WebAssembly SIMD kernels (the default), in ONE run.
 *
 *   npx tsx bench/index-profile.ts [--photos 10000] [--sample 32] [--threads 2]
 *
 * 1. N photo-like JPEGs in a temp folder, sizes mixed (0.15 to 12 MP, one in eight large):
 *    `--bases` distinct pictures (bench/photos.ts, bench/run.ts's generator), each file a copy
 *    with unique bytes after the JPEG end marker, so every file has its own SHA-256 and is
 *    embedded (decoders stop at the end marker: decode cost is the picture's).
 * 2. `siglip2 index` (dist/cli) on them with SIGLIP2_INDEX_PROFILE=1 (per-stage JSON on stderr),
 *    on a tiny model with B/16's preprocessing (`tiny-224`: 224 px, 1 layer, width 32, made by
 *    tools/reference/make_bench_checkpoints.py), so that every stage but the model is measured
 *    at full size: once with SIGLIP2_RESIZE_SIMD=0 (the JavaScript resampler; "before") and once
 *    as it is (the SIMD resampler, same bytes; "after"). (SIGLIP2_INDEX_PREFETCH=1, the next
 *    batch hashed while one embeds, gained nothing in the stop-18 run, 551 vs 559 s.)
 * 3. The model stage at B/16 fp32 and int8, per image, on `--sample` images at batch 32
 *    (bench/ours.ts throughput: the tower on preprocessed pixels).
 * 4. The table: the non-model stages measured at N, plus N × the model's time per image.
 *
 * Needs `npm run build`, and the reference venv only to make the checkpoints.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, homedir, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { REPO, childJson, referencePython, opt } from "./common.js";
import { PHOTO_SIZES, writePhotos } from "./photos.js";

const argv = process.argv.slice(2);
const N = Number(opt("photos", "10000"));
const bases = Number(opt("bases", "48"));
const sample = Number(opt("sample", "32"));
const threads = Number(opt("threads", String(Math.min(2, cpus().length))));
const cache = process.env["SIGLIP2_BENCH_CACHE"] ?? join(homedir(), ".cache", "siglip2-bench");
const log = (s: string) => process.stderr.write(`${s}\n`);
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

const python = referencePython("index-profile");
execFileSync(python, ["tools/reference/make_bench_checkpoints.py", "tiny-224", "b16-224"], { cwd: REPO, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, SIGLIP2_BENCH_CACHE: cache } });
const load0 = loadavg();

// ---- 1. the photos
const tmp = mkdtempSync(join(tmpdir(), "siglip2-index-profile-"));
const cli = join(REPO, "dist", "cli", "main.js");
try {
  const sizes = [...PHOTO_SIZES.slice(0, 4), [4032, 3024] as const, ...PHOTO_SIZES.slice(4)]; // one in eight at 12 MP (a phone photo)
  log(`index-profile: ${bases} distinct pictures, ${N} files`);
  const base = await writePhotos(join(tmp, "bases"), 0, bases, sizes);
  const photos = join(tmp, "photos");
  let bytes = 0;
  for (let i = 0; i < N; i++) {
    const dir = join(photos, `d${String(Math.floor(i / 500)).padStart(3, "0")}`); // 500 per folder, like a camera roll
    if (i % 500 === 0) mkdirSync(dir, { recursive: true });
    const src = base[i % bases]!;
    const p = join(dir, `IMG_${String(i).padStart(5, "0")}.jpg`);
    copyFileSync(src, p);
    writeFileSync(p, `siglip2-bench ${i}`, { flag: "a" }); // after the end marker: a unique hash, the same pixels
    bytes += readFileSync(src).length;
  }

  // ---- 2. the index runs (tiny model): JavaScript resampler (before) and as it is (after)
  const tiny = join(cache, "tiny-224");
  const index = (name: string, env: Record<string, string>): { wall: number; prof: any } => {
    const db = join(tmp, `db-${name}`);
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [cli, "index", photos, "--model", tiny, "--db", db, "--threads", String(threads)], {
      encoding: "utf8", maxBuffer: 64 << 20, env: { ...process.env, ...env, SIGLIP2_INDEX_PROFILE: "1", OMP_NUM_THREADS: String(threads) },
    });
    const wall = (performance.now() - t0) / 1000;
    if (r.status !== 0) throw new Error(`siglip2 index (${name}) failed: ${r.stderr}`);
    const line = r.stderr.split("\n").find((l) => l.startsWith('{"index_profile"'));
    if (!line) throw new Error(`no index_profile line on stderr:\n${r.stderr}`);
    rmSync(db, { recursive: true, force: true });
    return { wall, prof: JSON.parse(line).index_profile };
  };
  log("index-profile: warm-up (model cache) on the distinct pictures");
  spawnSync(process.execPath, [cli, "index", join(tmp, "bases"), "--model", tiny, "--db", join(tmp, "db-warm"), "--threads", String(threads)], { env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
  log("index-profile: before (SIGLIP2_RESIZE_SIMD=0, the JavaScript resampler)");
  const before = index("before", { SIGLIP2_RESIZE_SIMD: "0" });
  log("index-profile: after (the SIMD resampler)");
  const after = index("after", {});

  // ---- 3. the model per image at B/16, fp32 and int8 (batch 32, the indexer's batch)
  log("index-profile: B/16 model stage on a sample");
  const b16 = join(cache, "b16-224");
  const env = { SIGLIP2_CACHE: join(cache, "onnx-cache") };
  const model: Record<string, number> = {};
  for (const dtype of ["fp32", "int8"]) {
    childJson(process.execPath, ["--import", "tsx", "bench/ours.ts", "warm", "--model", b16, "--tower", "vision", "--dtype", dtype, "--threads", String(threads)], threads, env);
    const r = childJson(process.execPath, ["--import", "tsx", "bench/ours.ts", "throughput", "--model", b16, "--tower", "vision", "--batches", String(Math.min(32, sample)), "--dtype", dtype, "--threads", String(threads), "--min-seconds", "3"], threads, env);
    model[dtype] = 1000 / (Object.values(r.batches as Record<string, { items_per_s: number }>)[0]!.items_per_s);
  }
  const load1 = loadavg();

  // ---- 4. the table
  const st = (p: any, k: string) => (p.stages[k]?.ms ?? 0) / 1000;
  const stages: Array<[string, string]> = [
    ["walk", "walk the folders"], ["recover", "read the table's rows"], ["hash", "SHA-256 of every file (streamed)"], ["meta", "header read (filter columns)"],
    ["lookup", "known contents (LanceDB)"], ["embed", "decode + resize + tiny model (worker pool, overlapped)"], ["recheck", "stat after embedding"],
    ["write", "LanceDB commits"], ["delete", "LanceDB deletes"], ["compact", "LanceDB compaction"], ["ann", "ANN index (IVF-PQ; only past the threshold)"],
  ];
  console.log(`\n## Where the time of \`siglip2 index\` goes at ${N} photos: ${threads} threads, ${cpus()[0]?.model ?? "cpu"} (${cpus().length} CPUs), load average ${load0.map(f2).join(" ")} before, ${load1.map(f2).join(" ")} after\n`);
  console.log(`${N} JPEGs, ${(bytes / 1e9).toFixed(2)} GB, ${bases} distinct pictures of ${sizes.map(([w, h]) => `${w}×${h}`).join(", ")}; tiny-224 model for the run (every stage but the model at full size), B/16 model stage measured on ${Math.min(32, sample)}-image batches.\n`);
  console.log("| stage | JS resampler (s) | SIMD resampler (s) | SIMD, per photo (ms) |");
  console.log("|---|---|---|---|");
  for (const [k, what] of stages) {
    if (before.prof.stages[k] === undefined && after.prof.stages[k] === undefined) continue;
    console.log(`| ${k}: ${what} | ${f1(st(before.prof, k))} | ${f1(st(after.prof, k))} | ${f2((st(after.prof, k) * 1000) / N)} |`);
  }
  console.log(`| **whole run, tiny model (process start → exit)** | **${f1(before.wall)}** | **${f1(after.wall)}** | ${f2((after.wall * 1000) / N)} |`);
  const nonModel = after.wall;
  console.log(`\n| at ${N} photos, B/16 | model stage (${N} × ms/image) | everything else (the tiny-model run) | model share |`);
  console.log("|---|---|---|---|");
  for (const [dtype, ms] of Object.entries(model)) {
    const m = (N * ms) / 1000;
    console.log(`| ${dtype} (${f1(ms)} ms/image at batch ${Math.min(32, sample)}) | ${f1(m)} s | ${f1(nonModel)} s | ${f1((100 * m) / (m + nonModel))} % |`);
  }
  console.log("\n(the embed stage runs in the worker pool beside the main thread, so stages may sum to more than the run.)");
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
