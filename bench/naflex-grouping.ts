/**
 * How much compute shape grouping saves on a mixed NaFlex batch.
 *
 *   npx tsx bench/naflex-grouping.ts [CHECKPOINT_DIR] [--images N] [--budget M] [--batch B]
 *
 * CHECKPOINT_DIR defaults to $SIGLIP2_BENCH_CACHE/b16-naflex (~/.cache/siglip2-bench/b16-naflex),
 * written by `python tools/reference/make_bench_checkpoints.py b16-naflex` (random weights,
 * real B/16 size). The images are synthetic, in memory, with a spread of sizes and aspect
 * ratios (photos, panoramas, phone screenshots, icons, banners). Three strategies embed the
 * same images with the same batch size:
 *   pad-to-budget   every image padded to M rows (what transformers' processor does)
 *   pad-to-longest  input order, each batch padded to its longest image
 *   grouped         (the library's default) images sorted by length, then pad-to-longest
 * Reported: rows processed (valid + padding), wall time, and the speed-up over pad-to-budget.
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { SigLIP2 } from "../src/api.js";
import type { NaflexVisionTower } from "../src/models/siglip2.js";
import type { NaflexPatches, RgbImage } from "../src/preprocess/index.js";

const args = process.argv.slice(2);
const flag = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const dir = args.find((a, i) => !a.startsWith("--") && (i === 0 || !args[i - 1]!.startsWith("--")))
  ?? join(process.env["SIGLIP2_BENCH_CACHE"] ?? join(homedir(), ".cache", "siglip2-bench"), "b16-naflex");
const N = flag("--images", 48);
const M = flag("--budget", 256);
const B = flag("--batch", 8);

// Deterministic mixed set of (width, height).
const SHAPES: Array<[number, number]> = [
  [640, 480], [480, 640], [1920, 1080], [1080, 1920], [512, 512], [1170, 2532], // photos, phone
  [3000, 600], [600, 3000], [900, 37], [64, 64], [300, 200], [1000, 333], // panoramas, banners, icons
];
function image(w: number, h: number, seed: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  let s = seed * 2654435761 >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    data[i] = s >>> 24;
  }
  return { width: w, height: h, data };
}

const model = await SigLIP2.load(dir, { imageBatchSize: B });
const tower = (await model.visionTower()) as NaflexVisionTower;
const patches: NaflexPatches[] = [];
for (let i = 0; i < N; i++) {
  const [w, h] = SHAPES[i % SHAPES.length]!;
  patches.push(model.naflexPatches(image(w, h, i), M));
}
const lengths = patches.map((p) => p.gridH * p.gridW);
const valid = lengths.reduce((a, b) => a + b, 0);

async function strategy(order: number[], padTo?: number): Promise<{ rows: number; ms: number }> {
  let rows = 0;
  const t0 = performance.now();
  for (let k = 0; k < order.length; k += B) {
    const group = order.slice(k, k + B).map((i) => patches[i]!);
    const batch = tower.prepareBatch(group, padTo);
    rows += batch.batch * batch.length;
    await tower.run(batch);
  }
  return { rows, ms: performance.now() - t0 };
}

const inputOrder = patches.map((_, i) => i);
const sorted = [...inputOrder].sort((a, b) => lengths[a]! - lengths[b]! || a - b);
await strategy(inputOrder.slice(0, B)); // warm-up
const results = {
  "pad-to-budget": await strategy(inputOrder, M),
  "pad-to-longest": await strategy(inputOrder),
  grouped: await strategy(sorted),
};

console.log(`NaFlex grouping: ${N} images, budget ${M}, batch ${B}, checkpoint ${dir}`);
console.log(`patches per image: min ${Math.min(...lengths)}, max ${Math.max(...lengths)}, mean ${(valid / N).toFixed(1)}; valid rows ${valid}`);
console.log("| strategy | rows processed | padding | time (s) | images/s | speed-up vs pad-to-budget |");
console.log("|---|---|---|---|---|---|");
const base = results["pad-to-budget"].ms;
for (const [name, r] of Object.entries(results)) {
  console.log(`| ${name} | ${r.rows} | ${(((r.rows - valid) / r.rows) * 100).toFixed(1)} % | ${(r.ms / 1000).toFixed(2)} | ${(N / (r.ms / 1000)).toFixed(2)} | ${(base / r.ms).toFixed(2)}× |`);
}
await model.close();
