// Is patch position linearly decodable from the demo encoder's patch tokens? (8-way row classifier)
import { SigLIP2 } from "../../src/api.js";
import { generateScenes, renderScenes } from "../../src/train/scenes/index.js";
import { predictLinearProbe, standardize, trainLinearProbe } from "../../src/tasks/probe.js";
const dir = process.argv[2] ?? "models/siglip2-demo";
const m = await SigLIP2.load(dir, { threads: 1 });
async function set(seed: number) {
  const sc = generateScenes({ seed, count: 60, size: 64 });
  const f = await m.imageFeatures(await renderScenes(sc), { patches: true });
  const x: Float32Array[] = [], row: number[] = [];
  for (const ff of f) { const n = ff.gridH * ff.gridW; const d = ff.patches!.length / n; for (let p = 0; p < n; p++) { x.push(ff.patches!.slice(p * d, (p + 1) * d)); row.push(Math.floor(p / ff.gridW)); } }
  return { x, row };
}
const a = await set(1), b = await set(2);
const st = standardize(a.x); standardize(b.x, st);
const pr = trainLinearProbe(a.x, a.row, 8, {});
const pred = predictLinearProbe(pr, b.x);
let hit = 0; pred.forEach((p, i) => (hit += p === b.row[i] ? 1 : 0));
console.log(`row probe acc ${(hit / pred.length).toFixed(3)} (chance 0.125)`);
await m.close();
