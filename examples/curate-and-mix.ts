/**
 * ACID curation and the language mix, from the library: train a small checkpoint on generated
 * scenes whose manifest carries `lang`, drawing batches with en=0.9,other=0.1 and keeping the
 * most learnable half of each super-batch as scored by a teacher checkpoint (our engine,
 * inference only). Prints each step's selection statistics and the realised language mix.
 *
 *   npx tsx examples/curate-and-mix.ts [--student DIR] [--teacher DIR] [--steps 5]
 *
 * The CLI equivalent: siglip2 train --model DIR --data DATA/manifest.jsonl --out OUT
 *   --curate-teacher TEACHER --curate-ratio 0.5 --lang-mix en=0.9,other=0.1
 */
import { join } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { parseArgs } from "node:util";
import { SigLIP2 } from "../src/api.js";
import { parseImageProcessorConfig } from "../src/preprocess/index.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { FilePairs, readManifest } from "../src/train/data.js";
import { parseLangMix, shares } from "../src/train/lang-mix.js";
import { paramSpecs } from "../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { generateScenes, writeSceneDataset } from "../src/train/scenes/index.js";
import { loadParams } from "../src/train/session.js";
import { Trainer } from "../src/train/trainer.js";
import { Checkpoint } from "../src/weights/checkpoint.js";

const models = join(import.meta.dirname, "..", "tests", "fixtures", "models");
const { values } = parseArgs({
  options: { student: { type: "string", default: join(models, "trained-f32") }, teacher: { type: "string", default: join(models, "fixres-odd") }, steps: { type: "string", default: "5" } },
});
const steps = Number(values.steps);

// 200 scenes, all five languages at equal rates; the mix below reweights them.
const dir = mkdtempSync(join(tmpdir(), "siglip2-scenes-"));
const written = await writeSceneDataset(dir, generateScenes({ seed: 1, count: 200, size: 48 }));

const ckpt = new Checkpoint(values.student!);
const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
const processor = parseImageProcessorConfig(ckpt.preprocessorConfig, ckpt.config.vision_config.image_size);
const data = new FilePairs(readManifest(written.manifest), processor, tok, ckpt.config.text_config.max_position_embeddings);
const teacher = await SigLIP2.load(values.teacher!, { dtype: "int8" });
const trainer = await Trainer.create(ckpt.config, loadParams(ckpt.weights, paramSpecs(ckpt.config)), {
  batchSize: 16, accumSteps: 1, steps, seed: 0, freeze: "none",
  optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-4, totalSteps: steps, warmupSteps: 0 },
  curate: { teacher, ratio: 0.5, teacherId: values.teacher! },
  langMix: parseLangMix("en=0.9,other=0.1"),
});
while (trainer.step < steps) {
  const s = await trainer.trainStep(data);
  const c = s.curation!;
  console.log(`step ${s.step}: loss ${s.loss.toFixed(4)}; kept ${c.kept}/${c.superBatch}, learnability kept ${c.scoreKept.toFixed(3)} vs all ${c.scoreAll.toFixed(3)}; langs ${JSON.stringify(s.langs)}`);
}
console.log(`requested ${JSON.stringify(trainer.requestedLangs)}; realised ${JSON.stringify(shares(trainer.realisedLangs()))}`);
await trainer.release();
await teacher.close();
ckpt.close();
rmSync(dir, { recursive: true, force: true });
