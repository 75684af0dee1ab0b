import { readFileSync } from "node:fs";
import { GemmaTokenizer } from "../../src/tokenizer/gemma.js";
import { generateScenes } from "../../src/train/scenes/index.js";
import { locCaTargets } from "../../src/train/scenes/locca.js";
import { buildDecoderBatch } from "../../src/train/locca-batch.js";
import { decoderTokenizer } from "../../src/train/data.js";
import { Rng } from "../../src/train/rng.js";
import { referPrompt } from "../../src/tasks/caption.js";
const tok = GemmaTokenizer.fromJSON(JSON.parse(readFileSync("models/siglip2-demo/tokenizer.json", "utf8")));
const V = tok.vocabSize;
const dt = decoderTokenizer(tok, V);
const scenes = [...generateScenes({ seed: 20261202, count: 4, size: 64, langs: ["en", "zh"] }), ...generateScenes({ seed: 20261203, count: 2, size: 128, langs: ["de"] })];
const rng = new Rng(5);
const ex = scenes.map((s) => {
  const regions = s.regions.map((r) => ({ text: r.text, box: r.box.map((v) => (v * 64) / s.spec.size) as [number, number, number, number] }));
  return { s, t: locCaTargets({ text: s.caption, regions }, 64, 64, rng), regions };
});
const b = buildDecoderBatch(ex.map((e) => e.t), { length: 32, specials: dt.specials, tokenize: dt.tokenize, rng });
const L = 32;
for (let r = 0; r < b.used; r++) {
  const inp = Array.from(b.inputIds.slice(r * L, (r + 1) * L), Number);
  const tg = Array.from(b.targets.slice(r * L, (r + 1) * L), Number);
  const w = Array.from(b.weights.slice(r * L, (r + 1) * L));
  const img = Number(b.image[r]);
  const e = ex[img]!;
  console.log(`row ${r} img ${img} causal ${b.causal[r]} size ${e.s.spec.size} regions ${JSON.stringify(e.s.regions.map((x) => [x.text, x.box.map((v) => Math.round(v))]))}`);
  console.log("  input :", inp.map((i) => (i === V ? "<M>" : JSON.stringify(tok.decode([i])))).join(","));
  console.log("  target:", tg.map((i, k) => (w[k] ? "*" : "") + JSON.stringify(tok.decode([i]))).join(","));
  console.log("  tgt text (weighted):", tok.decode(tg.filter((_, k) => w[k])));
}
for (const q of ["a red circle", "ein roter Kreis", "红色的圆"]) {
  const p = tok.tokenizeHead(referPrompt(q), 32, { lowercase: false });
  const full = dt.tokenize(`ARef: ${q} : 12 40 300 410`);
  console.log(q, JSON.stringify(p), JSON.stringify(full.slice(0, p.length + 3)), p.every((id, i) => full[i] === id));
}
