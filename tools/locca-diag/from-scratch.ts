// Scratch experiment: demo-sized model from scratch (sigmoid+LocCa), N steps; row probe + locate on train/held-out.
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SigLIP2 } from "../../src/api.js";
import { parseImageProcessorConfig, preprocessFixed } from "../../src/preprocess/index.js";
import { InMemoryPairs } from "../../src/train/data.js";
import { initParams } from "../../src/train/init.js";
import { paramSpecs } from "../../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../../src/train/optim.js";
import { generateScenes, renderScenes, sceneLocate, scenePreprocessorConfig, sceneZeroShot } from "../../src/train/scenes/index.js";
import { Trainer } from "../../src/train/trainer.js";
import { parseConfig } from "../../src/weights/config.js";
import { GemmaTokenizer } from "../../src/tokenizer/gemma.js";
import { Checkpoint } from "../../src/weights/checkpoint.js";
import { loadParams } from "../../src/train/session.js";
import { tinyConfigJson } from "../../src/train/experiment.js";
import { predictLinearProbe, standardize, trainLinearProbe } from "../../src/tasks/probe.js";
import type { BoxFormat } from "../../src/tasks/boxes.js";
import type { MemoryPosition } from "../../src/models/locca.js";

const { values: a } = parseArgs({ options: {
  steps: { type: "string", default: "400" }, lr: { type: "string", default: "1e-3" }, objs: { type: "string", default: "3" },
  train: { type: "string", default: "6000" }, batch: { type: "string", default: "32" }, threads: { type: "string", default: "1" }, evaln: { type: "string", default: "100" },
  name: { type: "string", default: "exp" }, seed: { type: "string", default: "7" }, posemb: { type: "string", default: "learn" }, width: { type: "string", default: "128" }, layers: { type: "string", default: "4" },
  "aref-rows": { type: "string", default: "1" }, "freeze-pos": { type: "boolean", default: false },
  "box-format": { type: "string", default: "canonical" }, "memory-position": { type: "string", default: "none" },
  // --tower DIR: the paper's frozen-encoder protocol: both towers (and t', b) from DIR, frozen; a fresh decoder trains alone
  tower: { type: "string" },
} });
const MEMORY_POSITION = a["memory-position"] as MemoryPosition;
const BOX_FORMAT = a["box-format"] as BoxFormat;
const AREF_ROWS = Number(a["aref-rows"]), FREEZE_POS = a["freeze-pos"]!;
const STEPS = Number(a.steps), LR = Number(a.lr), OBJS = Number(a.objs), BATCH = Number(a.batch), THREADS = Number(a.threads), N = Number(a.evaln), SEED = Number(a.seed);
const WIDTH = Number(a.width), LAYERS = Number(a.layers);
const log = (m: string) => process.stderr.write(`${m}\n`);
const t0 = performance.now();
const DEMO = "models/siglip2-demo";
const tok = await GemmaTokenizer.fromFile(join(DEMO, "tokenizer.json"));
const IMAGE = 64, SEQ = 32;
const configJson: unknown = a.tower ? readFileSync(join(a.tower, "config.json"), "utf8") : tinyConfigJson({ width: WIDTH, layers: LAYERS, heads: 4, mlp: 4 * WIDTH, vocab: tok.vocabSize, seqLen: SEQ, image: IMAGE, patch: 8 });
const config = parseConfig(typeof configJson === "string" ? JSON.parse(configJson) : configJson);
const cfg = parseImageProcessorConfig(scenePreprocessorConfig(IMAGE), IMAGE);
const train = generateScenes({ seed: SEED * 1000, count: Number(a.train), size: IMAGE, maxObjects: OBJS });
const held = generateScenes({ seed: 9_000_001, count: N, size: IMAGE, maxObjects: OBJS });
const held1 = generateScenes({ seed: 9_000_002, count: N, size: IMAGE, maxObjects: 1 });
const trainImg = await renderScenes(train);
const heldImg = await renderScenes(held);
const held1Img = await renderScenes(held1);
const pixels = trainImg.map((im) => preprocessFixed(im, cfg));
const data = new InMemoryPairs(pixels, train.map((s) => s.caption), tok, SEQ, { locca: { vocab: tok.vocabSize, regions: train.map((s) => s.regions), size: IMAGE } });
const specs = paramSpecs(config, { objectives: ["sigmoid", "locca"] });
const params = initParams(specs, SEED);
if (a.tower) {
  const store = new Checkpoint(a.tower).weights;
  for (const [k, v] of loadParams(store, specs.filter((s) => !s.name.startsWith("decoder.")))) params.set(k, v);
}
if (a.posemb === "sincos") {
  const g = 8, D = WIDTH, q = D / 4;
  const pe = params.get("vision_model.embeddings.position_embedding.weight")!;
  for (let y = 0; y < g; y++) for (let x = 0; x < g; x++) for (let k = 0; k < q; k++) {
    const om = 1 / 10000 ** (k / (q - 1)); const r = (y * g + x) * D;
    pe[r + k] = Math.sin(x * om); pe[r + q + k] = Math.cos(x * om); pe[r + 2 * q + k] = Math.sin(y * om); pe[r + 3 * q + k] = Math.cos(y * om);
  }
}
const trainer = await Trainer.create(config, params, {
  batchSize: BATCH, accumSteps: 1, steps: STEPS, seed: SEED, freeze: a.tower ? ["vision", "text"] : [], threads: THREADS, objectives: ["sigmoid", "locca"],
  arefRows: AREF_ROWS, boxFormat: BOX_FORMAT, memoryPosition: MEMORY_POSITION, freezeParams: FREEZE_POS ? ["vision_model.embeddings.position_embedding.weight"] : [],
  optimizer: { ...DEFAULT_OPTIMIZER, lr: LR, totalSteps: STEPS, warmupSteps: Math.round(STEPS * 0.05) },
});
const out = `/tmp/locca-exp/${a.name}`;
const side = `/tmp/locca-exp/${a.name}.side`;
rmSync(side, { recursive: true, force: true });
mkdirSync(side, { recursive: true });
for (const f of ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"]) copyFileSync(join(DEMO, f), join(side, f));
let acc = 0, sg = 0, n = 0;
while (trainer.step < STEPS) {
  const s = await trainer.trainStep(data);
  acc += s.loccaLoss ?? 0; sg += s.sigmoidLoss ?? 0; n++;
  if ((s.step + 1) % 100 === 0) { log(`${a.name} step ${s.step + 1} locca ${(acc / n).toFixed(3)} sigmoid ${(sg / n).toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`); acc = 0; sg = 0; n = 0; }
}
trainer.save(out, configJson, side);
await trainer.release();
const m = await SigLIP2.load(out, { threads: THREADS });
const tr = await sceneLocate(m, train.slice(0, N), trainImg.slice(0, N));
const he = await sceneLocate(m, held, heldImg);
const h1 = await sceneLocate(m, held1, held1Img);
const zs = await sceneZeroShot(m, held1, held1Img, ["en"]);
const f = async (imgs: typeof heldImg) => { const ff = await m.imageFeatures(imgs, { patches: true }); const x: Float32Array[] = [], row: number[] = []; for (const q of ff) { const k = q.gridH * q.gridW, d = q.patches!.length / k; for (let p = 0; p < k; p++) { x.push(q.patches!.slice(p * d, (p + 1) * d)); row.push(Math.floor(p / q.gridW)); } } return { x, row }; };
const A = await f(trainImg.slice(0, 60)), B = await f(heldImg.slice(0, 60));
const st = standardize(A.x); standardize(B.x, st);
const pred = predictLinearProbe(trainLinearProbe(A.x, A.row, 8, {}), B.x);
let hit = 0; pred.forEach((p, i) => (hit += p === B.row[i] ? 1 : 0));
await m.close();
log(`RESULT ${a.name}${a.tower ? ` frozen towers ${a.tower}` : ""} posemb ${a.posemb}${FREEZE_POS ? " (frozen)" : ""} aref-rows ${AREF_ROWS} box-format ${BOX_FORMAT} memory-position ${MEMORY_POSITION} seed ${SEED} lr ${LR} steps ${STEPS} batch ${BATCH}: locate train ${tr.accuracy.toFixed(3)}/${tr.meanIoU.toFixed(3)} held ${he.accuracy.toFixed(3)}/${he.meanIoU.toFixed(3)} held-1obj ${h1.accuracy.toFixed(3)}/${h1.meanIoU.toFixed(3)} (Acc@0.5/mIoU) | zs-en ${zs.en.toFixed(3)} | row-probe ${(hit / pred.length).toFixed(3)} | ${((performance.now() - t0) / 1000).toFixed(0)} s`);
