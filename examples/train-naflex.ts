/**
 * Fine-tune a NaFlex checkpoint (model_type "siglip2") from code: images of mixed aspect ratios,
 * each example with its own patch budget, batches padded with key masks, the position grid
 * resized (and trained) inside the graph. Uses the tiny test checkpoint, so it runs in seconds;
 * point MODEL at google/siglip2-base-patch16-naflex (a local download) for the real one.
 *
 *   npx tsx examples/train-naflex.ts [MODEL]
 *
 * The same from the command line: `siglip2 train --model M --data DATA --out DIR --max-patches 16-64`.
 */
import { join } from "node:path";
import { parseNaflexProcessorConfig } from "../src/preprocess/naflex.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { paramSpecs } from "../src/train/model.js";
import { NaflexPairs, parsePatchBudgets } from "../src/train/naflex-data.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { loadParams } from "../src/train/session.js";
import { synthesizeMixed, toRgb8 } from "../src/train/synthetic.js";
import { Trainer } from "../src/train/trainer.js";
import { Checkpoint } from "../src/weights/checkpoint.js";

const model = process.argv[2] ?? join(import.meta.dirname, "..", "tests", "fixtures", "models", "naflex-f32");
const ckpt = new Checkpoint(model);
const config = ckpt.config;
const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
const processor = parseNaflexProcessorConfig(ckpt.preprocessorConfig, config.vision_config.patch_size);

// 64 captioned scenes, 48×32, 32×48 or 40×40 pixels
const pairs = synthesizeMixed(64, [[48, 32], [32, 48], [40, 40]], 1);
const data = new NaflexPairs(async (i) => toRgb8(pairs[i]!.pixels, pairs[i]!.width, pairs[i]!.height), pairs.map((p) => p.caption), processor, tok, config.text_config.max_position_embeddings);

const steps = 10;
const trainer = await Trainer.create(config, loadParams(ckpt.weights, paramSpecs(config)), {
  batchSize: 16, accumSteps: 1, steps, seed: 0, freeze: "none",
  maxPatches: parsePatchBudgets("16-64"), // each example: a budget in 16…64 patches
  optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-4, totalSteps: steps, warmupSteps: 1 },
});
while (trainer.step < steps) {
  const s = await trainer.trainStep(data);
  console.log(`step ${s.step}: loss ${s.loss.toFixed(4)}, ${s.pairsPerSecond.toFixed(0)} pairs/s`);
}
await trainer.release();
ckpt.close();
