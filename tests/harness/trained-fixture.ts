/**
 * The deterministic fine-tuning run behind tests/fixtures/models/trained-f32: fixres-f32 trained
 * for 6 steps on synthetic pairs (batch 8, lr 1e-3, both towers, 1 thread). Written by
 * tools/make-trained-fixture.ts; tools/reference/train_goldens.py then loads the result with
 * transformers and stores its embeddings; tests/train-run.test.ts re-runs it and compares.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GemmaTokenizer } from "../../src/tokenizer/gemma.js";
import { InMemoryPairs } from "../../src/train/data.js";
import { paramSpecs } from "../../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../../src/train/optim.js";
import { loadParams } from "../../src/train/session.js";
import { synthesize } from "../../src/train/synthetic.js";
import { Trainer } from "../../src/train/trainer.js";
import { Checkpoint } from "../../src/weights/checkpoint.js";
import { FIXTURES } from "./paths.js";

export const SOURCE_FIXTURE = join(FIXTURES, "models", "fixres-f32");
export const TRAINED_FIXTURE = join(FIXTURES, "models", "trained-f32");
export const TRAINED_STEPS = 6;

export async function trainFixture(): Promise<{ trainer: Trainer; configJson: string }> {
  const ckpt = new Checkpoint(SOURCE_FIXTURE);
  const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
  const pairs = synthesize(32, ckpt.config.vision_config.image_size, 11);
  const data = new InMemoryPairs(pairs.map((p) => p.pixels), pairs.map((p) => p.caption), tok, ckpt.config.text_config.max_position_embeddings);
  const params = loadParams(ckpt.weights, paramSpecs(ckpt.config));
  const trainer = await Trainer.create(ckpt.config, params, {
    batchSize: 8, accumSteps: 1, steps: TRAINED_STEPS, seed: 3, freeze: "none", threads: 1,
    optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-3, warmupSteps: 1, totalSteps: TRAINED_STEPS },
  });
  while (trainer.step < TRAINED_STEPS) await trainer.trainStep(data);
  ckpt.close();
  return { trainer, configJson: readFileSync(join(SOURCE_FIXTURE, "config.json"), "utf8") };
}
