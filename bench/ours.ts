/**
 * Our side of the benchmark (called by bench/run.ts, one process per measurement so that
 * peak RSS is per job); prints one JSON object on stdout. Modes mirror bench/reference_bench.py:
 *
 *   throughput --model DIR --tower vision|text --batches 1,8,32 --threads N --min-seconds S [--dtype int8] [--patches 256]
 *   gemm --threads N          fp32 GEMM rate of onnxruntime's MatMul (1568×768 · 768×3072)
 *   cosine --model DIR --tower vision|text [--patches 256]   int8 vs fp32 embeddings on the bench inputs
 */
import { SigLIP2 } from "../src/api.js";
import { Graph } from "../src/graph/graph.js";
import { Pipeline, ort } from "../src/graph/runtime.js";
import type { FixresVisionTower } from "../src/models/siglip.js";
import { rowCosines } from "../src/tasks/similarity.js";
import type { NaflexVisionTower } from "../src/models/siglip2.js";
import { opt } from "./common.js";

const argv = process.argv.slice(2);
const mode = argv[0];
const threads = Number(opt("threads", "2"));
const minSeconds = Number(opt("min-seconds", "3"));

/** Deterministic pseudo-random floats in [-1, 1). */
function noise(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

async function timed(fn: () => Promise<unknown>, minReps = 2): Promise<{ reps: number; secs: number }> {
  await fn(); // warm-up
  let reps = 0;
  const t0 = performance.now();
  while (reps < minReps || (performance.now() - t0) / 1000 < minSeconds) {
    await fn();
    reps++;
  }
  return { reps, secs: (performance.now() - t0) / 1000 };
}

/** One batch runner per tower kind, on synthetic inputs shaped like the model's. */
async function runner(model: SigLIP2, tower: string, b: number, patches: number): Promise<() => Promise<Float32Array>> {
  if (tower === "text") {
    const t = await model.textTower();
    const ids = Int32Array.from(noise(b * 64, 7), (x) => Math.floor((x + 1) * 128000));
    return async () => (await t.run(ids, b)).pooled;
  }
  const v = await model.visionTower();
  if (model.isNaflex) {
    const nv = v as NaflexVisionTower;
    const P = model.config.vision_config.patch_size;
    const side = Math.floor(Math.sqrt(patches));
    const imgs = Array.from({ length: b }, (_, i) => ({ patches: noise(side * Math.floor(patches / side) * 3 * P * P, i + 1), gridH: side, gridW: Math.floor(patches / side) }));
    const batch = nv.prepareBatch(imgs);
    return async () => (await nv.run(batch)).pooled;
  }
  const fv = v as FixresVisionTower;
  const R = model.config.vision_config.image_size;
  const px = noise(b * 3 * R * R, 3);
  return async () => (await fv.run(px, b)).pooled;
}

async function throughput(): Promise<unknown> {
  const dtype = (opt("dtype", "fp32") as "fp32" | "int8");
  const tower = opt("tower", "vision")!;
  const patches = Number(opt("patches", "256"));
  const t0 = performance.now();
  const model = await SigLIP2.load(opt("model")!, { threads, dtype });
  if (tower === "text") await model.textTower();
  else await model.visionTower();
  const loadS = (performance.now() - t0) / 1000;
  const batches: Record<string, { items_per_s: number }> = {};
  for (const b of opt("batches", "1,8,32")!.split(",").map(Number)) {
    const run = await runner(model, tower, b, patches);
    const { reps, secs } = await timed(run);
    batches[String(b)] = { items_per_s: (reps * b) / secs };
  }
  await model.close();
  return { load_s: loadS, batches, peak_rss_mb: process.resourceUsage().maxRSS / 1024 };
}

async function gemm(): Promise<unknown> {
  const [M, K, N] = [1568, 768, 3072];
  const g = new Graph("gemm");
  const a = g.input("a", "float32", [M, K]);
  g.node("MatMul", [a, g.init("w", noise(K * N, 1), [K, N])], { outputs: ["y"] });
  g.output("y", "float32", [M, N]);
  const p = await Pipeline.create([g], { threads });
  const x = new ort.Tensor("float32", noise(M * K, 2), [M, K]);
  const { reps, secs } = await timed(() => p.run({ a: x }), 5);
  return { gflops: (2 * M * K * N * reps) / secs / 1e9 };
}

async function cosine(): Promise<unknown> {
  const tower = opt("tower", "vision")!;
  const patches = Number(opt("patches", "256"));
  const outs: Float32Array[] = [];
  let d = 0;
  for (const dtype of ["fp32", "int8"] as const) {
    const model = await SigLIP2.load(opt("model")!, { threads, dtype });
    const run = await runner(model, tower, 16, patches);
    outs.push(await run());
    d = tower === "text" ? model.config.text_config.projection_size : model.config.vision_config.hidden_size;
    await model.close();
  }
  const c = rowCosines(outs[0]!, outs[1]!, d);
  return { min: Math.min(...c), mean: c.reduce((x, y) => x + y, 0) / c.length, n: c.length };
}

/** Build (or find) the model-cache entry of a tower, so that timed loads measure the cached path. */
async function warm(): Promise<unknown> {
  const tower = opt("tower", "vision")!;
  const model = await SigLIP2.load(opt("model")!, { threads, dtype: (opt("dtype", "fp32") as "fp32" | "int8") });
  if (tower === "text") await model.textTower();
  else await model.visionTower();
  await model.close();
  return {};
}

const modes: Record<string, () => Promise<unknown>> = { throughput, gemm, cosine, warm };
if (!mode || !modes[mode]) {
  process.stderr.write("usage: tsx bench/ours.ts throughput|gemm|cosine [options]\n");
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(await modes[mode]!())}\n`);
