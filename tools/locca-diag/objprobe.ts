// Does a patch token know whether it lies on the object? (h11-boxes) Single-object scenes; per patch the label
// "patch centre inside the object's box" (binary); a linear probe on the tower's post-LN patch tokens vs the same
// probe on the raw patch pixels (3·8·8 values). Reports held-out IoU of the predicted object mask and balanced accuracy.
//   node --import tsx tools/locca-diag/objprobe.ts [MODEL_DIR]
import { SigLIP2 } from "../../src/api.js";
import { parseImageProcessorConfig, preprocessFixed } from "../../src/preprocess/index.js";
import { generateScenes, renderScenes, scenePreprocessorConfig } from "../../src/train/scenes/index.js";
import { predictLinearProbe, standardize, trainLinearProbe } from "../../src/tasks/probe.js";
const dir = process.argv[2] ?? "models/siglip2-demo";
const m = await SigLIP2.load(dir, { threads: 1 });
const G = 8, PATCH = 8, IMAGE = 64;
const cfg = parseImageProcessorConfig(scenePreprocessorConfig(IMAGE), IMAGE);
async function set(seed: number, count: number) {
  const sc = generateScenes({ seed, count, size: IMAGE, maxObjects: 1 });
  const imgs = await renderScenes(sc);
  const f = await m.imageFeatures(imgs, { patches: true });
  const tok: Float32Array[] = [], pix: Float32Array[] = [], y: number[] = [], row: number[] = [];
  f.forEach((ff, i) => {
    const px = preprocessFixed(imgs[i]!, cfg);
    const b = sc[i]!.regions[0]!.box;
    const d = ff.patches!.length / (G * G);
    for (let p = 0; p < G * G; p++) {
      const r = Math.floor(p / G), c = p % G, cy = (r + 0.5) * PATCH, cx = (c + 0.5) * PATCH;
      y.push(cx >= b[0] && cx < b[2] && cy >= b[1] && cy < b[3] ? 1 : 0);
      row.push(r);
      tok.push(ff.patches!.slice(p * d, (p + 1) * d));
      const v = new Float32Array(3 * PATCH * PATCH);
      for (let ch = 0; ch < 3; ch++) for (let yy = 0; yy < PATCH; yy++) for (let xx = 0; xx < PATCH; xx++) v[(ch * PATCH + yy) * PATCH + xx] = px[ch * IMAGE * IMAGE + (r * PATCH + yy) * IMAGE + c * PATCH + xx]!;
      pix.push(v);
    }
  });
  return { tok, pix, y, row };
}
const A = await set(1, 200), B = await set(2, 100);
await m.close();
for (const k of ["tok", "pix"] as const) {
  const st = standardize(A[k]); standardize(B[k], st);
  const pred = predictLinearProbe(trainLinearProbe(A[k], A.y, 2, {}), B[k]);
  let tp = 0, fp = 0, fn = 0, tn = 0;
  pred.forEach((p, i) => { const t = B.y[i]!; if (p && t) tp++; else if (p) fp++; else if (t) fn++; else tn++; });
  console.log(`${k === "tok" ? "tower tokens" : "raw pixels  "}: object-mask IoU ${(tp / (tp + fp + fn)).toFixed(3)}, balanced acc ${((tp / (tp + fn) + tn / (tn + fp)) / 2).toFixed(3)}, positives ${((tp + fn) / pred.length).toFixed(3)}`);
}
// the row probe (8-way) on all patches, scored separately on the object's patches and on the background
{
  const pred = predictLinearProbe(trainLinearProbe(A.tok, A.row, 8, {}), B.tok); // A.tok, B.tok standardised above
  const acc = (on: number) => { let h = 0, n = 0; pred.forEach((p, i) => { if (B.y[i] === on) { n++; h += p === B.row[i] ? 1 : 0; } }); return (h / n).toFixed(3); };
  console.log(`row probe (tower tokens, trained on all patches): on object patches ${acc(1)}, on background patches ${acc(0)} (chance 0.125)`);
  const objA = A.tok.filter((_, i) => A.y[i] === 1), objRowA = A.row.filter((_, i) => A.y[i] === 1);
  const objB = B.tok.filter((_, i) => B.y[i] === 1), objRowB = B.row.filter((_, i) => B.y[i] === 1);
  const p2 = predictLinearProbe(trainLinearProbe(objA, objRowA, 8, {}), objB);
  let h = 0; p2.forEach((p, i) => (h += p === objRowB[i] ? 1 : 0));
  console.log(`row probe trained and scored on object patches only: ${(h / p2.length).toFixed(3)} (${objA.length} train patches)`);
}
