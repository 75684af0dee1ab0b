/**
 * `npm run bench:int8`: int8 end to end against fp32 and the transformers script, in ONE run.
 *
 *   npx tsx bench/int8-end-to-end.ts [--reps 3] [--threads 2] [--variants] [--no-ref]
 *
 * Job: `siglip2 embed --image …` on a folder of 64 mixed photo-like JPEGs up to 6 MP
 * (written once into $SIGLIP2_BENCH_CACHE/photos64-6mp), B/16-224 random real-size weights
 * (tools/reference/make_bench_checkpoints.py), model cache warm, process start to exit, against
 * bench/reference_bench.py `folder` (transformers + PyTorch fp32, batch 8, process start to exit).
 * The three are interleaved, in a rotating order, `--reps` times; the table gives medians and
 * every rep. Then the cosine between our int8 and fp32 embeddings of the 64 photos.
 *
 * `--variants` adds the int8 ablations (src/models/loader.ts `Int8Options`) of the image tower
 * alone, batch 8, all in one process and alternating batch by batch (bench/int8-child.ts
 * throughput), each with its cosine to fp32 on the same synthetic batch.
 *
 * The machine is shared: the load average before and after is printed; only ratios within a
 * run mean anything.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { cpus, homedir, loadavg } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { REPO, childJson, referencePython, opt } from "./common.js";

const argv = process.argv.slice(2);
const reps = Number(opt("reps", "3"));
const threads = Number(opt("threads", String(Math.min(2, cpus().length))));
const cache = process.env["SIGLIP2_BENCH_CACHE"] ?? join(homedir(), ".cache", "siglip2-bench");
const modelCache = process.env["SIGLIP2_CACHE"] ?? join(cache, "onnx-cache");
const ckpt = join(cache, "b16-224");
const python = argv.includes("--no-ref") ? null : referencePython("bench:int8");

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}
const load = (): string => loadavg().map((x) => x.toFixed(1)).join(" ");

if (!existsSync(join(ckpt, "model.safetensors"))) {
  console.error(`bench:int8: no checkpoint at ${ckpt}; run tools/reference/make_bench_checkpoints.py b16-224 (SIGLIP2_BENCH_CACHE=${cache})`);
  process.exit(2);
}

// ---- 1. 64 photo-like JPEGs, 0.15–6 MP: smooth multi-octave value noise (sky, ground, skin-like
// gradients) with hard-edged shapes and sensor-like grain, so that they compress like photos.
const photos = join(cache, "photos64-6mp");
const SIZES = [[640, 480], [480, 640], [1024, 768], [1280, 720], [1600, 1200], [2048, 1536], [3000, 2000], [2000, 3000], [4000, 1500], [800, 800], [300, 500], [2448, 2448]];
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}
/** Smooth noise: a tiny random image scaled up by sharp (bicubic) to w×h, RGB. */
async function field(w: number, h: number, cells: number, r: () => number): Promise<Buffer> {
  const cw = Math.max(2, Math.round(cells * Math.sqrt(w / h))), ch = Math.max(2, Math.round(cells * Math.sqrt(h / w)));
  const small = Buffer.from(Array.from({ length: cw * ch * 3 }, () => Math.floor(r() * 256)));
  return sharp(small, { raw: { width: cw, height: ch, channels: 3 } }).resize(w, h, { kernel: "cubic", fit: "fill" }).raw().toBuffer();
}
async function photo(w: number, h: number, seed: number): Promise<Buffer> {
  const r = rng(seed);
  const octaves = await Promise.all([3, 7, 17, 41].map((c) => field(w, h, c, r)));
  const amp = [0.55, 0.25, 0.13, 0.07];
  const base = [r() * 0.6 + 0.7, r() * 0.6 + 0.7, r() * 0.6 + 0.7];
  const out = Buffer.alloc(w * h * 3);
  let s = seed >>> 0;
  for (let y = 0, k = 0; y < h; y++) {
    const shade = 0.75 + 0.35 * (y / h);
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++, k++) {
        s = (s * 1664525 + 1013904223) >>> 0; // sensor-like grain
        const v = (octaves[0]![k]! * amp[0]! + octaves[1]![k]! * amp[1]! + octaves[2]![k]! * amp[2]! + octaves[3]![k]! * amp[3]!) * base[c]! * shade + (s / 2 ** 32 - 0.5) * 10;
        out[k] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  for (let n = 0; n < 5; n++) { // hard-edged objects
    const cx = r() * w, cy = r() * h, rad = (0.05 + 0.2 * r()) * Math.min(w, h), col = [r() * 255, r() * 255, r() * 255];
    for (let y = Math.max(0, Math.floor(cy - rad)); y < Math.min(h, cy + rad); y++) {
      for (let x = Math.max(0, Math.floor(cx - rad)); x < Math.min(w, cx + rad); x++) {
        if ((x - cx) ** 2 + (y - cy) ** 2 >= rad * rad) continue;
        const k = (y * w + x) * 3;
        for (let c = 0; c < 3; c++) out[k + c] = 0.7 * col[c]! + 0.3 * out[k + c]!;
      }
    }
  }
  return out;
}
if (!existsSync(photos) || readdirSync(photos).filter((f) => f.endsWith(".jpg")).length < 64) {
  log(`bench:int8: writing 64 photos into ${photos}`);
  mkdirSync(photos, { recursive: true });
  for (let i = 0; i < 64; i++) {
    const [w, h] = SIZES[i % SIZES.length]!;
    await sharp(await photo(w, h, i + 1), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 85 + (i % 8) }).toFile(join(photos, `photo_${String(i).padStart(2, "0")}.jpg`));
  }
}
const files = readdirSync(photos).filter((f) => f.endsWith(".jpg")).sort().map((f) => join(photos, f));
const megapixels = SIZES.map(([w, h]) => (w! * h!) / 1e6);

// ---- 2. GEMM peak in this run, model caches warm
const ours = (args: string[]): any => childJson(process.execPath, ["--import", "tsx", "bench/ours.ts", ...args, "--threads", String(threads)], threads, { SIGLIP2_CACHE: modelCache });
log(`bench:int8: load ${load()}; GEMM peak`);
const gemm = ours(["gemm", "--min-seconds", "2"]).gflops as number;
ours(["warm", "--model", ckpt, "--tower", "vision"]);
ours(["warm", "--model", ckpt, "--tower", "vision", "--dtype", "int8"]);

// ---- 3. the jobs, interleaved
const cli = join(REPO, "dist", "cli", "main.js");
function runCli(dtype: "fp32" | "int8"): { secs: number; emb: Float32Array[] } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [cli, "embed", "--model", ckpt, "--dtype", dtype, "--threads", String(threads), "--image", ...files], { encoding: "utf8", maxBuffer: 256 << 20, env: { ...process.env, SIGLIP2_CACHE: modelCache } });
  const secs = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`siglip2 embed --dtype ${dtype} failed: ${r.stderr}`);
  const emb = r.stdout.trim().split("\n").map((l) => Float32Array.from((JSON.parse(l) as { embedding: number[] }).embedding));
  return { secs, emb };
}
function runRef(): number {
  const t0 = performance.now();
  childJson(python!, ["bench/reference_bench.py", "folder", "--model", ckpt, "--folder", photos, "--batch", "8", "--threads", String(threads)], threads);
  return (performance.now() - t0) / 1000;
}
type Job = "fp32" | "int8" | "transformers";
const jobs: Job[] = python ? ["fp32", "int8", "transformers"] : ["fp32", "int8"];
const secs: Record<Job, number[]> = { fp32: [], int8: [], transformers: [] };
let embFp32: Float32Array[] = [];
let embInt8: Float32Array[] = [];
for (let rep = 0; rep < reps; rep++) {
  const order = jobs.map((_, i) => jobs[(i + rep) % jobs.length]!);
  for (const job of order) {
    log(`bench:int8: rep ${rep + 1}/${reps} ${job} (load ${load()})`);
    if (job === "transformers") secs[job].push(runRef());
    else {
      const r = runCli(job);
      secs[job].push(r.secs);
      if (job === "fp32") embFp32 = r.emb;
      else embInt8 = r.emb;
    }
  }
}

// ---- 4. int8 ablations (image tower alone, one process, alternating)
let variants: any[] | null = null;
if (argv.includes("--variants")) {
  log(`bench:int8: int8 variants (load ${load()})`);
  const list = [
    { dtype: "fp32" },
    { dtype: "int8" },
    { dtype: "int8", int8: { attention: "unfused" } },
    { dtype: "int8", int8: { attention: "int8" } },
    { dtype: "int8", int8: { weightScales: "per-tensor" } },
    // session settings (onnxruntime), not the graph: packing weights on every run, idle threads not spinning
    { dtype: "int8", session: { prepack: false } },
    { dtype: "int8", session: { spin: false } },
  ];
  variants = childJson(process.execPath, ["--import", "tsx", "bench/int8-child.ts", "throughput", "--model", ckpt, "--threads", String(threads), "--batch", "8", "--rounds", opt("rounds", "6"), "--variants", JSON.stringify(list)], threads, { SIGLIP2_CACHE: modelCache }) as any[];
}

// ---- 5. the table
const med = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const cosines = embFp32.map((a, i) => {
  const b = embInt8[i]!;
  let s = 0;
  for (let j = 0; j < a.length; j++) s += a[j]! * b[j]!; // both L2-normalised
  return s;
});
const f2 = (x: number): string => x.toFixed(2);
console.log(`\nmachine: ${cpus()[0]?.model ?? "cpu"}, ${cpus().length} cores, ${threads} threads; fp32 GEMM peak ${gemm.toFixed(0)} GFLOP/s (onnxruntime, this run); load average ${load()} at the end`);
console.log(`job: embed ${files.length} JPEG photos (${Math.min(...megapixels).toFixed(2)}–${Math.max(...megapixels).toFixed(1)} MP), B/16-224, process start to exit, model cache warm; median of ${reps} interleaved reps\n`);
console.log("| job | s (median) | every rep (s) | speed-up vs transformers fp32 |");
console.log("|---|---:|---|---:|");
const refMed = python ? med(secs.transformers) : NaN;
for (const job of jobs) {
  const name = job === "transformers" ? "transformers + PyTorch fp32 (bench/reference_bench.py folder, batch 8)" : `siglip2 embed --dtype ${job}`;
  console.log(`| ${name} | ${f2(med(secs[job]))} | ${secs[job].map(f2).join(", ")} | ${python ? `${f2(refMed / med(secs[job]))}×` : "–"} |`);
}
console.log(`\nint8 vs fp32 cosine on the ${cosines.length} photos: min ${Math.min(...cosines).toFixed(6)}, mean ${(cosines.reduce((s, x) => s + x, 0) / cosines.length).toFixed(6)}`);
if (variants) {
  console.log(`\nint8 variants, image tower alone, batch 8, one process alternating batch by batch (median of ${opt("rounds", "6")}):\n`);
  console.log("| variant | images/s | vs fp32 | cosine to fp32 (min of 8) |");
  console.log("|---|---:|---:|---:|");
  for (const v of variants) {
    const what = v.int8 ? ` ${JSON.stringify(v.int8)}` : v.session ? ` session ${JSON.stringify(v.session)}` : v.dtype === "int8" ? " (default)" : "";
    console.log(`| ${v.dtype}${what} | ${f2(v.items_per_s)} | ${f2(v.items_per_s / variants[0].items_per_s)}× | ${v.cos_to_first_min.toFixed(6)} |`);
  }
}
writeFileSync(join(cache, "int8-end-to-end.json"), JSON.stringify({ secs, cosines, variants, gemm, load: loadavg() }));
