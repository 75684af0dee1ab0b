// Scratch experiment: LocCa decoder on the demo encoder (frozen or not), Acc@0.5 / mean IoU on train and held-out.
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SigLIP2 } from "../../src/api.js";
import { parseImageProcessorConfig, preprocessFixed } from "../../src/preprocess/index.js";
import { InMemoryPairs } from "../../src/train/data.js";
import { initDecoderParams } from "../../src/train/init.js";
import { paramSpecs, type Tower } from "../../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../../src/train/optim.js";
import { generateScenes, renderScenes, sceneLocate, scenePreprocessorConfig } from "../../src/train/scenes/index.js";
import { startingParams } from "../../src/train/session.js";
import { Trainer } from "../../src/train/trainer.js";
import { Checkpoint } from "../../src/weights/checkpoint.js";
import { GemmaTokenizer } from "../../src/tokenizer/gemma.js";
import type { BoxFormat } from "../../src/tasks/boxes.js";

const { values: a } = parseArgs({ options: {
  model: { type: "string", default: "models/siglip2-demo" }, steps: { type: "string", default: "300" }, lr: { type: "string", default: "1e-3" },
  objs: { type: "string", default: "1" }, fresh: { type: "boolean", default: false }, freeze: { type: "string", default: "vision,text" },
  train: { type: "string", default: "3000" }, batch: { type: "string", default: "32" }, threads: { type: "string", default: "1" }, evaln: { type: "string", default: "100" },
  name: { type: "string", default: "exp" }, seed: { type: "string", default: "7" }, evalonly: { type: "boolean", default: false },
  "aref-rows": { type: "string", default: "1" }, "box-format": { type: "string", default: "canonical" },
} });
const MODEL = a.model!, STEPS = Number(a.steps), LR = Number(a.lr), OBJS = Number(a.objs), BATCH = Number(a.batch), THREADS = Number(a.threads), N = Number(a.evaln), SEED = Number(a.seed);
const log = (m: string) => process.stderr.write(`${m}\n`);
const t0 = performance.now();
const ckpt = new Checkpoint(MODEL);
const config = ckpt.config;
const IMAGE = config.vision_config.image_size;
const SEQ = config.text_config.max_position_embeddings;
const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
const cfg = parseImageProcessorConfig(scenePreprocessorConfig(IMAGE), IMAGE);
const train = generateScenes({ seed: SEED * 1000, count: Number(a.train), size: IMAGE, maxObjects: OBJS });
const held = generateScenes({ seed: 9_000_001, count: N, size: IMAGE, maxObjects: OBJS });
const trainImg = await renderScenes(train);
const heldImg = await renderScenes(held);
async function evalDir(dir: string, tag: string) {
  const m = await SigLIP2.load(dir, { threads: THREADS });
  const tr = await sceneLocate(m, train.slice(0, N), trainImg.slice(0, N));
  const he = await sceneLocate(m, held, heldImg);
  // one example
  const ex = await m.locateSettled(held[0]!.regions[0]!.text, [heldImg[0]!]);
  await m.close();
  log(`${tag}: train Acc@0.5 ${tr.accuracy.toFixed(3)} mIoU ${tr.meanIoU.toFixed(3)} unans ${tr.unanswered} | held-out Acc@0.5 ${he.accuracy.toFixed(3)} mIoU ${he.meanIoU.toFixed(3)} unans ${he.unanswered} | ex ${held[0]!.regions[0]!.text} true ${held[0]!.regions[0]!.box.map((v) => v.toFixed(0))} pred ${"box" in ex[0]! ? ex[0]!.box.map((v) => v.toFixed(0)) : String(ex[0])}`);
}
if (a.evalonly) { await evalDir(MODEL, `${a.name} (as is)`); process.exit(0); }
const pixels = trainImg.map((im) => preprocessFixed(im, cfg));
const data = new InMemoryPairs(pixels, train.map((s) => s.caption), tok, SEQ, { locca: { vocab: config.text_config.vocab_size, regions: train.map((s) => s.regions), size: IMAGE } });
const specs = paramSpecs(config, { objectives: ["sigmoid", "locca"] });
const params = startingParams(ckpt.weights, MODEL, specs, SEED).params;
if (a.fresh) for (const [n, v] of initDecoderParams(specs, SEED + 1)) params.set(n, v);
const freeze = (a.freeze === "none" ? [] : a.freeze!.split(",")) as Tower[];
const trainer = await Trainer.create(config, params, {
  batchSize: BATCH, accumSteps: 1, steps: STEPS, seed: SEED, freeze, threads: THREADS, objectives: ["sigmoid", "locca"], arefRows: Number(a["aref-rows"]), boxFormat: a["box-format"] as BoxFormat,
  optimizer: { ...DEFAULT_OPTIMIZER, lr: LR, totalSteps: STEPS, warmupSteps: Math.round(STEPS * 0.05) },
});
const out = `/tmp/locca-exp/${a.name}`;
const side = `/tmp/locca-exp/${a.name}.side`;
rmSync(side, { recursive: true, force: true });
mkdirSync(side, { recursive: true });
for (const f of ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"]) copyFileSync(join(MODEL, f), join(side, f));
const configJson = JSON.parse(readFileSync(join(MODEL, "config.json"), "utf8"));
let acc = 0, n = 0;
while (trainer.step < STEPS) {
  const s = await trainer.trainStep(data);
  acc += s.loccaLoss ?? 0; n++;
  if ((s.step + 1) % 50 === 0) { log(`${a.name} step ${s.step + 1} locca ${(acc / n).toFixed(3)} sigmoid ${s.sigmoidLoss?.toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`); acc = 0; n = 0; }
}
trainer.save(out, configJson, side);
await trainer.release();
await evalDir(out, `${a.name} lr ${LR} steps ${STEPS} objs ${OBJS} fresh ${a.fresh} freeze ${a.freeze} aref-rows ${a["aref-rows"]} box-format ${a["box-format"]}`);
log(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
