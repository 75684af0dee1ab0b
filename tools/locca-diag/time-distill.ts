// Per-step time of the demo model's training step, before and after the self-distillation switch.
import { join } from "node:path";
import { parseImageProcessorConfig, preprocessFixed } from "../../src/preprocess/index.js";
import { InMemoryPairs } from "../../src/train/data.js";
import { initParams } from "../../src/train/init.js";
import { paramSpecs } from "../../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../../src/train/optim.js";
import { DEFAULT_DISTILL } from "../../src/train/distill-config.js";
import { generateScenes, renderScenes, scenePreprocessorConfig } from "../../src/train/scenes/index.js";
import { Trainer } from "../../src/train/trainer.js";
import { parseConfig } from "../../src/weights/config.js";
import { GemmaTokenizer } from "../../src/tokenizer/gemma.js";
import { tinyConfigJson } from "../../src/train/experiment.js";
const THREADS = Number(process.argv[2] ?? 1), STEPS = 16;
const tok = await GemmaTokenizer.fromFile(join("models/siglip2-demo", "tokenizer.json"));
const config = parseConfig(tinyConfigJson({ width: 128, layers: 4, heads: 4, mlp: 512, vocab: tok.vocabSize, seqLen: 32, image: 64, patch: 8 }));
const cfg = parseImageProcessorConfig(scenePreprocessorConfig(64), 64);
const train = generateScenes({ seed: 1, count: 256, size: 64 });
const imgs = await renderScenes(train);
const data = new InMemoryPairs(imgs.map((im) => preprocessFixed(im, cfg)), train.map((s) => s.caption), tok, 32, { locca: { vocab: tok.vocabSize, regions: train.map((s) => s.regions), size: 64 } });
const specs = paramSpecs(config, { objectives: ["sigmoid", "locca"] });
const trainer = await Trainer.create(config, initParams(specs, 1), {
  batchSize: 64, accumSteps: 1, steps: STEPS, seed: 1, freeze: [], threads: THREADS, objectives: ["sigmoid", "locca"],
  optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-3, totalSteps: STEPS, warmupSteps: 1 }, distill: { ...DEFAULT_DISTILL, start: 0.5 },
});
while (trainer.step < STEPS) {
  const t = performance.now();
  const s = await trainer.trainStep(data);
  process.stderr.write(`step ${s.step} ${((performance.now() - t) / 1000).toFixed(2)} s sd ${s.sdLoss ?? "-"}\n`);
}
