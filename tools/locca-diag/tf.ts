// Diagnosis scripts of the LocCa locate problem (h11-locca); findings in README "Two commands". Run with `npx tsx tools/locca-diag/<name>.ts`.
// Teacher-forced per-token analysis of ARef rows: CE and accuracy of each box token.
import { SigLIP2 } from "../../src/api.js";
import { arefPrompt, boxToText, quantizeBox } from "../../src/tasks/boxes.js";
import { generateScenes, renderScenes } from "../../src/train/scenes/index.js";
import { logSoftmax } from "../../src/tasks/caption.js";
const dir = process.argv[2] ?? "models/siglip2-demo";
const objs = Number(process.argv[3] ?? 1);
const seed = Number(process.argv[4] ?? 9_000_001);
const m = await SigLIP2.load(dir, { threads: 1 });
const dec = await m.loccaDecoder();
const tok = await m.tokenizer();
const scenes = generateScenes({ seed, count: 64, size: 64, maxObjects: objs });
const imgs = await renderScenes(scenes);
const feats = await m.imageFeatures(imgs, { patches: true });
const V = dec.config.vocab;
const stats: Record<string, { ce: number; acc: number; n: number }> = {};
for (let i = 0; i < scenes.length; i++) {
  const r = scenes[i]!.regions[0]!;
  const q = quantizeBox(r.box, 64, 64);
  const p = arefPrompt(r.text, q, dec.boxFormat);
  const ids = tok.tokenize(p.text, { lowercase: false });
  const pre = tok.tokenize(`ARef: ${r.text} :`, { lowercase: false }).length;
  const row = [2, ...ids, tok.eosId];
  const positions = Array.from({ length: row.length - 1 - pre }, (_, k) => pre + k); // predict token row[pos+1]
  const lg = await dec.logits([{ ids: row, image: 0 }], [{ patches: feats[i]!.patches!, gridH: feats[i]!.gridH, gridW: feats[i]!.gridW }], [positions]);
  // label each box token: which coordinate and digit
  const boxText = boxToText(q, dec.boxFormat);
  const labels: string[] = [];
  let c = 0, d = 0;
  for (const ch of " " + boxText) { if (ch === " ") { labels.push("sp"); if (labels.length > 1) { c++; d = 0; } } else { labels.push(`c${c}d${d}/${dec.boxFormat === "padded" ? 3 : String(q[c]).length}`); d++; } }
  labels.push("eos");
  positions.forEach((pos, k) => {
    const lp = logSoftmax(lg, k * V, V);
    const t = row[pos + 1]!;
    let best = 0; for (let v = 1; v < V; v++) if (lp[v]! > lp[best]!) best = v;
    const key = labels[k] ?? "?";
    const s = (stats[key] ??= { ce: 0, acc: 0, n: 0 });
    s.ce -= lp[t]!; s.acc += best === t ? 1 : 0; s.n++;
  });
}
await m.close();
for (const [k, s] of Object.entries(stats).sort()) console.log(`${k.padEnd(10)} n ${String(s.n).padStart(3)} CE ${(s.ce / s.n).toFixed(3)} acc ${(s.acc / s.n).toFixed(3)}`);
