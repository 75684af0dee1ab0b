/**
 * LocCa on NaFlex, learning proof: a small NaFlex SigLIP 2 (model_type "siglip2": patch 8, an 8×8
 * learned position grid, width 128, 4 layers per tower) trained FROM SCRATCH with the sigmoid + LocCa
 * losses (the paper's NaFlex phase: no SD/MP) on generated scenes of three aspect ratios (128×96,
 * 96×128, 112×112; src/train/scenes), patch budgets drawn per batch from `--max-patches` (the paper's
 * draw), the decoder's memory position code `sincos2d` on each image's own grid.
 *
 * Then, through the public API (`SigLIP2.load` on the saved checkpoint, NaFlex preprocessing at
 * `--eval-patches`), on held-out scenes of the same three shapes: zero-shot top-1 (single-object
 * scenes, 16 classes, 5 languages), retrieval R@1 (multi-object scenes), and referring expressions
 * (`locate`, Acc@0.5 and mean IoU) on single- and multi-object scenes, against one constant box
 * (the mean of the training boxes, in each image's own frame) as the floor.
 *
 *   nice -n 10 npx tsx tools/naflex-locca-learn.ts [--steps 2000] [--train 9000] [--max-patches 48,64,80]
 *     [--eval-patches 64] [--memory-position sincos2d|none] [--aref-rows 3] [--seed 11] [--threads 2] [--json FILE]
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SigLIP2 } from "../src/api.js";
import { isMemoryPosition, type MemoryPosition } from "../src/models/locca.js";
import { parseNaflexProcessorConfig, type RgbImage } from "../src/preprocess/index.js";
import { boxIoU } from "../src/tasks/metrics.js";
import { tinyNaflexConfigJson } from "../src/train/experiment.js";
import { initParams } from "../src/train/init.js";
import { paramSpecs } from "../src/train/model.js";
import { NaflexPairs, parsePatchBudgets } from "../src/train/naflex-data.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import {
  generateScenes, renderScene, SCENE_LANGUAGES, sceneCorpus, sceneLocate, sceneRetrieval, sceneTokenizer, sceneZeroShot, writeSceneModelFiles, type SceneRecord,
} from "../src/train/scenes/index.js";
import { Trainer } from "../src/train/trainer.js";
import { parseConfig } from "../src/weights/config.js";

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "2000" },
    train: { type: "string", default: "9000" },
    "max-patches": { type: "string", default: "48,64,80" },
    "eval-patches": { type: "string", default: "64" },
    "memory-position": { type: "string", default: "sincos2d" },
    "aref-rows": { type: "string", default: "3" },
    lr: { type: "string", default: "1e-3" },
    seed: { type: "string", default: "11" },
    threads: { type: "string", default: "2" },
    json: { type: "string" },
  },
});
const t0 = performance.now();
const STEPS = Number(values.steps);
const SEED = Number(values.seed);
const THREADS = Number(values.threads);
const AREF = Number(values["aref-rows"]);
const EVAL_PATCHES = Number(values["eval-patches"]);
const memoryPosition: MemoryPosition = isMemoryPosition(values["memory-position"]) ? values["memory-position"] : (() => { throw new Error(`--memory-position must be sincos2d or none`); })();
const budgets = parsePatchBudgets(values["max-patches"]!);
const BATCH = 64;
const SEQ = 32;
const WIDTH = 128;
const LAYERS = 4;
const SHAPES = [[128, 96], [96, 128], [112, 112]] as const; // [W, H]
const log = (m: string) => process.stderr.write(`${m}\n`);

// ---- data: three aspect ratios, five languages (English 40 %, the others 15 % each)
const mix = { en: 0.4, de: 0.15, es: 0.15, fr: 0.15, zh: 0.15 };
const per = Math.round(Number(values.train) / SHAPES.length);
const train = SHAPES.flatMap(([w, h], k) => generateScenes({ seed: SEED * 100 + k, count: per, size: w, height: h, langs: mix }));
const single = SHAPES.flatMap(([w, h], k) => generateScenes({ seed: SEED * 100 + 10 + k, count: 100, size: w, height: h, maxObjects: 1, langs: [...SCENE_LANGUAGES] }));
const multi = SHAPES.flatMap(([w, h], k) => generateScenes({ seed: SEED * 100 + 20 + k, count: 70, size: w, height: h, langs: [...SCENE_LANGUAGES] }));
const render = async (recs: readonly SceneRecord[]): Promise<RgbImage[]> => {
  const out: RgbImage[] = [];
  for (const r of recs) {
    const b = await renderScene(r.spec, "ours");
    out.push({ width: b.width, height: b.height, data: b.data } as RgbImage);
  }
  return out;
};
log(`rendering ${train.length} training scenes (${SHAPES.map(([w, h]) => `${w}×${h}`).join(", ")})`);
const trainImgs = await render(train);

// ---- the model: a tokenizer of the scenes' texts, a NaFlex config, the side files
const corpus = sceneCorpus([...train, ...single, ...multi]);
const pruned = sceneTokenizer(JSON.parse(readFileSync(join("node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json"), "utf8")), corpus);
const configJson = tinyNaflexConfigJson({ width: WIDTH, layers: LAYERS, heads: 4, mlp: 4 * WIDTH, vocab: pruned.vocabSize, seqLen: SEQ, patch: 8, numPatches: 64 });
const config = parseConfig(configJson);
const work = join(tmpdir(), `siglip2-naflex-locca-${process.pid}`);
const staging = join(work, "staging");
writeSceneModelFiles(staging, pruned.json, { image: 64, seqLen: SEQ });
const preprocessor = {
  do_convert_rgb: null, do_normalize: true, do_rescale: true, do_resize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5],
  image_processor_type: "Siglip2ImageProcessorFast", max_num_patches: EVAL_PATCHES, patch_size: 8, processor_class: "Siglip2Processor", resample: 2, rescale_factor: 1 / 255,
};
writeFileSync(join(staging, "preprocessor_config.json"), `${JSON.stringify(preprocessor, null, 2)}\n`);
const processor = parseNaflexProcessorConfig(preprocessor, 8);

// ---- train
const data = new NaflexPairs(async (i) => trainImgs[i]!, train.map((s) => s.caption), processor, pruned.tokenizer, SEQ, true, {
  locca: { vocab: pruned.vocabSize, regions: train.map((s) => s.regions.map((r) => ({ box: [...r.box] as [number, number, number, number], text: r.text }))) },
});
const objectives = ["sigmoid", "locca"] as Array<"sigmoid" | "locca">;
const trainer = await Trainer.create(config, initParams(paramSpecs(config, { objectives }), SEED), {
  batchSize: BATCH, accumSteps: 1, steps: STEPS, seed: SEED, freeze: "none", threads: THREADS, objectives, memoryPosition, arefRows: AREF,
  maxPatches: budgets, budgetDraw: "batch",
  optimizer: { ...DEFAULT_OPTIMIZER, lr: Number(values.lr), totalSteps: STEPS, warmupSteps: Math.round(STEPS * 0.05) },
});
log(`training: ${STEPS} steps of ${BATCH}, budgets ${values["max-patches"]} (one per batch), memory position ${memoryPosition}, referring rows ${AREF}, vocab ${pruned.vocabSize}`);
const tTrain = performance.now();
const curve: Array<{ sigmoid: number; locca: number }> = [];
while (trainer.step < STEPS) {
  const s = await trainer.trainStep(data);
  curve.push({ sigmoid: s.sigmoidLoss!, locca: s.loccaLoss! });
  if (s.step % 100 === 0 || s.step === STEPS - 1) log(`step ${s.step} loss ${s.loss.toFixed(4)} (sigmoid ${s.sigmoidLoss!.toFixed(3)}, locca ${s.loccaLoss!.toFixed(3)}) (${((performance.now() - tTrain) / 1000).toFixed(0)} s)`);
}
const trainSeconds = (performance.now() - tTrain) / 1000;
const run = join(work, "run");
trainer.save(run, configJson, staging);
await trainer.release();

// ---- held-out evaluation through the public API
const model = await SigLIP2.load(run, { threads: THREADS, maxPatches: EVAL_PATCHES });
const singleImgs = await render(single);
const multiImgs = await render(multi);
const zs = await sceneZeroShot(model, single, singleImgs);
const ret = await sceneRetrieval(model, multi, multiImgs);
const locSingle = await sceneLocate(model, single, singleImgs);
const locMulti = await sceneLocate(model, multi, multiImgs);
await model.close();
rmSync(work, { recursive: true, force: true });

// the floor: one constant box, the mean of the training regions' boxes relative to their image
const mean = [0, 0, 0, 0];
let nBoxes = 0;
for (const s of train) for (const r of s.regions) {
  const W = s.spec.size;
  const H = s.spec.height ?? s.spec.size;
  [r.box[0] / W, r.box[1] / H, r.box[2] / W, r.box[3] / H].forEach((v, k) => (mean[k] = mean[k]! + v));
  nBoxes++;
}
const constant = (recs: readonly SceneRecord[]) => {
  let hits = 0;
  let iou = 0;
  for (const s of recs) {
    const W = s.spec.size;
    const H = s.spec.height ?? s.spec.size;
    const box = [(mean[0]! / nBoxes) * W, (mean[1]! / nBoxes) * H, (mean[2]! / nBoxes) * W, (mean[3]! / nBoxes) * H] as [number, number, number, number];
    const v = boxIoU(box, s.regions[0]!.box);
    iou += v;
    if (v >= 0.5) hits++;
  }
  return { accuracy: hits / recs.length, meanIoU: iou / recs.length };
};
const floorSingle = constant(single);
const floorMulti = constant(multi);

const tenth = (k: "sigmoid" | "locca") => Array.from({ length: 10 }, (_, b) => {
  const part = curve.slice(Math.floor((b * curve.length) / 10), Math.floor(((b + 1) * curve.length) / 10));
  return Number((part.reduce((a, x) => a + x[k], 0) / part.length).toFixed(3));
});
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const result = {
  command: `nice -n 10 npx tsx tools/naflex-locca-learn.ts --steps ${STEPS} --train ${values.train} --max-patches ${values["max-patches"]} --eval-patches ${EVAL_PATCHES} --memory-position ${memoryPosition} --aref-rows ${AREF} --seed ${SEED} --threads ${THREADS}`,
  train_seconds: Math.round(trainSeconds), seconds: Math.round((performance.now() - t0) / 1000),
  loss_per_tenth: { sigmoid: tenth("sigmoid"), locca: tenth("locca") },
  zeroshot_top1: zs, retrieval_r1: ret,
  locate_single: locSingle, locate_multi: locMulti, constant_box_single: floorSingle, constant_box_multi: floorMulti,
};
if (values.json) writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
const out = process.stdout;
out.write(`\nNaFlex + LocCa from scratch: ${STEPS} steps of ${BATCH}, budgets ${values["max-patches"]} (per batch), evaluated at ${EVAL_PATCHES} patches; ${SHAPES.map(([w, h]) => `${w}×${h}`).join(", ")} scenes; memory position ${memoryPosition}; training ${result.train_seconds} s\n\n`);
out.write(`mean loss per tenth of the run: sigmoid ${result.loss_per_tenth.sigmoid.join(", ")}; LocCa ${result.loss_per_tenth.locca.join(", ")}\n\n`);
out.write(`| held-out metric | model | constant box (floor) |\n|---|---|---|\n`);
out.write(`| zero-shot top-1 (${single.length} single-object scenes, 16 classes; ${SCENE_LANGUAGES.join("/")}) | ${SCENE_LANGUAGES.map((l) => pct(zs[l])).join(" / ")} | 6.3 % (chance) |\n`);
out.write(`| retrieval R@1 image→text / text→image (${multi.length} multi-object scenes) | ${pct(ret.imageToText)} / ${pct(ret.textToImage)} | ${pct(1 / multi.length)} (chance) |\n`);
out.write(`| locate Acc@0.5, single-object (${single.length}) | ${pct(locSingle.accuracy)} (mean IoU ${locSingle.meanIoU.toFixed(2)}) | ${pct(floorSingle.accuracy)} (mean IoU ${floorSingle.meanIoU.toFixed(2)}) |\n`);
out.write(`| locate Acc@0.5, multi-object, first region (${multi.length}) | ${pct(locMulti.accuracy)} (mean IoU ${locMulti.meanIoU.toFixed(2)}) | ${pct(floorMulti.accuracy)} (mean IoU ${floorMulti.meanIoU.toFixed(2)}) |\n`);
out.write(`\n${result.command}\n`);

