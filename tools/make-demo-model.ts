/**
 * Build models/siglip2-demo: a small SigLIP 2 (fixed resolution, model_type "siglip") trained from
 * scratch with our own trainer on generated scenes (src/train/scenes): filled circles, squares,
 * triangles and stars in red, green, blue and yellow, one to three per image, captions in English,
 * German, Spanish, French and Chinese. Its tokenizer is the sub-vocabulary of Gemma that these
 * texts use (src/tokenizer/prune.ts), so the checkpoint is a few MB and loads in transformers.
 *
 *   npx tsx tools/make-demo-model.ts [--out models/siglip2-demo] [--steps N] [--threads N] [--lr X]
 *                                    [--distill on|off] [--posemb sincos|learn]
 *                                    [--memory-position sincos2d|none] [--aref-rows K] [--eval-only]
 *
 * The whole SigLIP 2 recipe: the sigmoid loss, the LocCa decoder (captions, referring expressions,
 * grounded captions), and from 80 % of the run self-distillation + masked prediction (`--distill on`,
 * the default; src/train/distill.ts with its defaults). `--posemb sincos` starts the image tower's
 * learned position table from the 2-D sine–cosine table (src/train/posemb-init.ts) instead of the
 * default random one (`learn`). `--memory-position` (default sincos2d, what `siglip2 train` gives a
 * new decoder) adds the fixed 2-D sine–cosine code of each image token's place to the decoder's
 * memory (src/models/locca.ts); `--aref-rows K` (default 3) gives each example K referring-expression
 * rows instead of the trainer's one (its `arefRows`: more weight on the text → box task).
 * `--eval-only` trains nothing: it evaluates the model already in `--out` again (the same held-out
 * scenes) and rewrites the figures of its eval.json, keeping the training record.
 *
 * The committed models/siglip2-demo is the whole-recipe model of the defaults: 2,500 steps, lr 1e-3,
 * `--posemb learn`, `--distill on` (from step 2,000), `--memory-position sincos2d`, `--aref-rows 3`,
 * 2 threads (56 minutes on 2 cores). The previous demo (commit d1b99ee) was `--distill off
 * --memory-position none --aref-rows 1`; README "Two commands" compares the two.
 *
 * Everything derives from SEED: the same script, options, seed and thread count on the same kind of
 * CPU rebuild the same weights bit for bit (onnxruntime's kernels differ between CPU instruction sets).
 * After training, the held-out figures are written to eval.json beside the weights: zero-shot
 * accuracy per language on single-object scenes drawn by our rasteriser and by librsvg (another
 * renderer: robustness), image→text / text→image R@1 on multi-object scenes, locate Acc@0.5 (and
 * mean IoU) per language on the multi-object scenes (first region) and on the single-object ones,
 * and greedy captions of the two examples and six held-out scenes.
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { SigLIP2 } from "../src/api.js";
import { parseImageProcessorConfig, preprocessFixed, type RgbImage } from "../src/preprocess/index.js";
import { SiglipError } from "../src/errors.js";
import { boxIoU, classificationMetrics, retrievalMetrics } from "../src/tasks/metrics.js";
import { dot } from "../src/tasks/similarity.js";
import { InMemoryPairs } from "../src/train/data.js";
import { tinyConfigJson } from "../src/train/experiment.js";
import { initParams } from "../src/train/init.js";
import { paramSpecs } from "../src/train/model.js";
import { DEFAULT_DISTILL } from "../src/train/distill-config.js";
import { isMemoryPosition, MEMORY_POSITIONS, type MemoryPosition } from "../src/models/locca.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { sincosPositionInit } from "../src/train/posemb-init.js";
import { encodePng, generateScenes, renderScene, SCENE_LANGUAGES, sceneCorpus, sceneLabels, scenePreprocessorConfig, sceneTokenizer, writeSceneModelFiles, type SceneRecord } from "../src/train/scenes/index.js";
import { Trainer } from "../src/train/trainer.js";
import { parseConfig } from "../src/weights/config.js";

export const SEED = 20261202;
const GEMMA = join("node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json");

const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: "models/siglip2-demo" },
    steps: { type: "string", default: "2500" },
    threads: { type: "string", default: "2" },
    train: { type: "string", default: "12000" },
    objectives: { type: "string", default: "sigmoid,locca" },
    lr: { type: "string", default: "1e-3" },
    distill: { type: "string", default: "on" },
    posemb: { type: "string", default: "learn" },
    "memory-position": { type: "string", default: "sincos2d" },
    "aref-rows": { type: "string", default: "3" },
    "eval-only": { type: "boolean", default: false },
  },
});
const fail = (m: string): never => {
  throw new Error(m);
};
const OUT = resolve(args.out!);
const STEPS = Number(args.steps);
const THREADS = Number(args.threads);
const TRAIN = Number(args.train);
const OBJECTIVES = args.objectives!.split(",") as Array<"sigmoid" | "locca">;
const LR = Number(args.lr);
if (args.distill !== "on" && args.distill !== "off") throw new Error(`--distill must be on or off (got ${args.distill})`);
const DISTILL = args.distill === "on";
if (args.posemb !== "sincos" && args.posemb !== "learn") throw new Error(`--posemb must be sincos or learn (got ${args.posemb})`);
const POSEMB = args.posemb;
const MEMORY_POSITION: MemoryPosition = isMemoryPosition(args["memory-position"]) ? args["memory-position"] : fail(`--memory-position must be ${MEMORY_POSITIONS.join(" or ")} (got ${args["memory-position"]})`);
const AREF_ROWS = Number(args["aref-rows"]);
for (const [name, v] of [["--steps", STEPS], ["--threads", THREADS], ["--train", TRAIN], ["--aref-rows", AREF_ROWS]] as const) if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
if (!(LR > 0 && LR < 1)) throw new Error(`--lr must be in (0, 1) (got ${args.lr})`);

// Model: ViT with 8×8 patches on 64×64 images (64 tokens), 4 layers of width 128 in both towers.
const IMAGE = 64;
const SEQ = 32;
const WIDTH = 128;
const LAYERS = 4;
const BATCH = 64;

const log = (m: string) => process.stderr.write(`${m}\n`);

async function pixelsOf(rec: SceneRecord, renderer: "ours" | "svg", cfg: ReturnType<typeof parseImageProcessorConfig>): Promise<{ img: RgbImage; px: Float32Array }> {
  const r = await renderScene(rec.spec, renderer);
  const img: RgbImage = { width: r.width, height: r.height, data: r.data } as RgbImage;
  return { img, px: preprocessFixed(img, cfg) };
}

/** Train the demo model on `train` and write the release (weights, config, tokenizer, examples) to OUT; its training record. */
async function trainAndRelease(train: SceneRecord[], pruned: ReturnType<typeof sceneTokenizer>, staging: string, cfg: ReturnType<typeof parseImageProcessorConfig>, t0: number): Promise<Record<string, unknown>> {
  const configJson = tinyConfigJson({ width: WIDTH, layers: LAYERS, heads: 4, mlp: 4 * WIDTH, vocab: pruned.vocabSize, seqLen: SEQ, image: IMAGE, patch: 8 });
  const config = parseConfig(configJson);
  const tok = pruned.tokenizer;
  log(`rendering ${train.length} training scenes`);
  const pixels: Float32Array[] = [];
  for (const s of train) pixels.push((await pixelsOf(s, "ours", cfg)).px);
  // Boxes of the 128-px scenes in the 64-px frame the pixels are in (LocCa boxes are relative anyway).
  const regions = train.map((s) => s.regions.map((r) => ({ text: r.text, box: r.box.map((v) => (v * IMAGE) / s.spec.size) as [number, number, number, number] })));
  const data = new InMemoryPairs(pixels, train.map((s) => s.caption), tok, SEQ, OBJECTIVES.includes("locca") ? { locca: { vocab: pruned.vocabSize, regions, size: IMAGE } } : undefined);

  const specs = paramSpecs(config, { objectives: OBJECTIVES });
  const params = initParams(specs, SEED);
  if (POSEMB === "sincos") sincosPositionInit(params, config.vision_config);
  const trainer = await Trainer.create(config, params, {
    batchSize: BATCH, accumSteps: 1, steps: STEPS, seed: SEED, freeze: "none", threads: THREADS, objectives: OBJECTIVES,
    ...(OBJECTIVES.includes("locca") ? { memoryPosition: MEMORY_POSITION, arefRows: AREF_ROWS } : {}),
    optimizer: { ...DEFAULT_OPTIMIZER, lr: LR, totalSteps: STEPS, warmupSteps: Math.round(STEPS * 0.05) },
    ...(DISTILL ? { distill: { ...DEFAULT_DISTILL } } : {}),
  });
  log(`training: ${STEPS} steps of ${BATCH}, lr ${LR}, position init ${POSEMB}, memory position ${OBJECTIVES.includes("locca") ? MEMORY_POSITION : "-"}, referring rows ${AREF_ROWS}, self-distillation ${DISTILL ? `from step ${trainer.distillStart}` : "off"}`);
  const tTrain = performance.now();
  while (trainer.step < STEPS) {
    const s = await trainer.trainStep(data);
    const secs = (performance.now() - tTrain) / 1000;
    if (s.step === 49) log(`first 50 steps: ${(secs / 50).toFixed(3)} s/step`);
    if (s.step % 100 === 0 || s.step === STEPS - 1) {
      const parts = [s.sigmoidLoss !== undefined ? `sigmoid ${s.sigmoidLoss.toFixed(3)}` : "", s.loccaLoss !== undefined ? `locca ${s.loccaLoss.toFixed(3)}` : "", s.sdLoss !== undefined ? `sd ${s.sdLoss.toFixed(3)} mp ${s.mpLoss!.toFixed(3)}` : ""].filter(Boolean).join(", ");
      log(`step ${s.step} loss ${s.loss.toFixed(4)} (${parts}) t' ${s.logitScale.toFixed(3)} b ${s.logitBias.toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
  const trainSeconds = (performance.now() - tTrain) / 1000;
  const run = `${OUT}.run`;
  trainer.save(run, configJson, staging);
  await trainer.release();

  // The release: weights, config, tokenizer, preprocessor (no optimiser state).
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", ...(OBJECTIVES.includes("locca") ? ["decoder.safetensors"] : [])]) copyFileSync(join(run, f), join(OUT, f));
  // Example images for the README: one scene of each kind, drawn by our rasteriser.
  const examples = generateScenes({ seed: SEED + 4, count: 2, size: 128, langs: ["en"] });
  for (const [i, s] of examples.entries()) writeFileSync(join(OUT, `example-${i + 1}.png`), await encodePng(await renderScene(s.spec, "ours")));
  return { seed: SEED, steps: STEPS, train_pairs: train.length, vocab: pruned.vocabSize, train_seconds: Math.round(trainSeconds) };

}

async function main(): Promise<void> {
  const t0 = performance.now();
  // Data: 2/3 of the training scenes drawn at 64 px, 1/3 at 128 px (downsampled by our resampler,
  // as a user's larger image would be); English 40%, the four others 15% each.
  const mix = { en: 0.4, de: 0.15, es: 0.15, fr: 0.15, zh: 0.15 };
  const train = [
    ...generateScenes({ seed: SEED, count: Math.round((TRAIN * 2) / 3), size: 64, langs: mix }),
    ...generateScenes({ seed: SEED + 1, count: Math.round(TRAIN / 3), size: 128, langs: mix }),
  ];
  // Held out (other seeds): single-object scenes for zero-shot, multi-object ones for retrieval.
  const zsTest = generateScenes({ seed: SEED + 2, count: 400, size: 96, maxObjects: 1, langs: [...SCENE_LANGUAGES] });
  const retTest = generateScenes({ seed: SEED + 3, count: 250, size: 64, langs: [...SCENE_LANGUAGES] });

  // Tokenizer: the Gemma tokens of every text the model will see (captions, referring expressions,
  // zero-shot prompts and class names, LocCa prefixes and box numbers; src/train/scenes/vocab.ts).
  const labels = sceneLabels();
  const corpus = sceneCorpus([...train, ...generateScenes({ seed: SEED + 9, count: 20000, size: 64 })]);
  const pruned = sceneTokenizer(JSON.parse(readFileSync(GEMMA, "utf8")), corpus);
  log(`tokenizer: ${pruned.vocabSize} tokens, ${pruned.merges} merges (from ${corpus.size} texts)`);

  const staging = `${OUT}.build`;
  rmSync(staging, { recursive: true, force: true });
  writeSceneModelFiles(staging, pruned.json, { image: IMAGE, seqLen: SEQ });
  const preprocessor = scenePreprocessorConfig(IMAGE);
  const cfg = parseImageProcessorConfig(preprocessor, IMAGE);

  const previous = args["eval-only"] ? (JSON.parse(readFileSync(join(OUT, "eval.json"), "utf8")) as Record<string, unknown>) : null;
  const record = previous ?? (await trainAndRelease(train, pruned, staging, cfg, t0));
  const examples = generateScenes({ seed: SEED + 4, count: 2, size: 128, langs: ["en"] });

  // Held-out evaluation through the public API (what a user gets).
  const model = await SigLIP2.load(OUT, { threads: THREADS });
  const KEPT = ["seed", "steps", "train_pairs", "vocab", "train_seconds", "seconds", "settings"];
  const evalJson: Record<string, unknown> = Object.fromEntries(Object.entries(record).filter(([k]) => KEPT.includes(k)));
  const classIndex = (s: SceneRecord) => labels.classes.findIndex((c) => c.colour === s.spec.objects[0]!.colour && c.shape === s.spec.objects[0]!.shape);
  for (const renderer of ["ours", "svg"] as const) {
    const imgs = [];
    for (const s of zsTest) imgs.push((await pixelsOf(s, renderer, cfg)).img);
    const emb = await model.embedImages(imgs);
    const perLang: Record<string, number> = {};
    for (const lang of SCENE_LANGUAGES) {
      const prompts = await model.embedTexts(labels.languages[lang]!.prompts);
      const m = classificationMetrics(emb.map((e) => prompts.map((p) => dot(e, p))), zsTest.map(classIndex), labels.languages[lang]!.names);
      perLang[lang] = m.top1;
    }
    evalJson[`zeroshot_${renderer}`] = perLang;
    log(`zero-shot top-1 (${renderer} renderer, ${zsTest.length} single-object scenes, 16 classes): ${JSON.stringify(perLang)}`);
  }
  const retImgs = [];
  for (const s of retTest) retImgs.push((await pixelsOf(s, "ours", cfg)).img);
  const ie = await model.embedImages(retImgs);
  const te = await model.embedTexts(retTest.map((s) => s.caption));
  const r = retrievalMetrics(ie.map((a) => te.map((b) => dot(a, b))), retTest.map((_, i) => i), [1, 5]);
  evalJson["retrieval"] = { images: retTest.length, image_to_text: r.imageToText, text_to_image: r.textToImage };
  log(`retrieval (${retTest.length} multi-object scenes, 5 languages): i→t ${JSON.stringify(r.imageToText)} t→i ${JSON.stringify(r.textToImage)}`);
  if (OBJECTIVES.includes("locca")) {
    // Referring expressions, per language: each held-out multi-object scene's first region, and
    // each held-out single-object scene's one region (the zero-shot scenes, our renderer).
    const locate = async (recs: readonly SceneRecord[], imgs: readonly RgbImage[]) => {
      const per: Record<string, { n: number; hits: number; iou: number }> = {};
      // free decoding too (as in training), for the record: how often its answer is not a box
      const free = { hits: 0, iou: 0, notBox: 0 };
      for (let i = 0; i < recs.length; i++) {
        const s = recs[i]!;
        const region = s.regions[0]!;
        const [res] = await model.locateSettled(region.text, [imgs[i]!]);
        const iou = res instanceof SiglipError ? 0 : boxIoU(res!.box, region.box);
        const p = (per[s.lang] ??= { n: 0, hits: 0, iou: 0 });
        p.n++;
        p.iou += iou;
        if (iou >= 0.5) p.hits++;
        const [f] = await model.locateSettled(region.text, [imgs[i]!], { constrained: false });
        const fiou = f instanceof SiglipError ? 0 : boxIoU(f!.box, region.box);
        if (f instanceof SiglipError) free.notBox++;
        free.iou += fiou;
        if (fiou >= 0.5) free.hits++;
      }
      const all = Object.values(per).reduce((a, p) => ({ n: a.n + p.n, hits: a.hits + p.hits, iou: a.iou + p.iou }), { n: 0, hits: 0, iou: 0 });
      return {
        acc50: Object.fromEntries(SCENE_LANGUAGES.map((l) => [l, per[l] ? per[l]!.hits / per[l]!.n : null])),
        all: { scenes: all.n, acc50: all.hits / all.n, mean_iou: all.iou / all.n, unconstrained: { acc50: free.hits / all.n, mean_iou: free.iou / all.n, not_a_box: free.notBox } },
      };
    };
    const multi = await locate(retTest, retImgs);
    evalJson["locate_acc50"] = multi.acc50;
    evalJson["locate_all"] = multi.all;
    log(`locate Acc@0.5 (${retTest.length} held-out multi-object scenes, first region): ${JSON.stringify(multi)}`);
    const zsImgs: RgbImage[] = [];
    for (const s of zsTest) zsImgs.push((await pixelsOf(s, "ours", cfg)).img);
    const single = await locate(zsTest, zsImgs);
    evalJson["locate_acc50_single"] = single.acc50;
    evalJson["locate_all_single"] = single.all;
    log(`locate Acc@0.5 (${zsTest.length} held-out single-object scenes): ${JSON.stringify(single)}`);
    // Captions of the two examples and of a few held-out scenes (greedy), beside their true captions.
    const capRecs = [...examples, ...retTest.slice(0, 6)];
    const capImgs: RgbImage[] = [];
    for (const s of capRecs) capImgs.push((await pixelsOf(s, "ours", cfg)).img);
    const caps = await model.caption(capImgs);
    evalJson["captions"] = capRecs.map((s, i) => ({ image: i < examples.length ? `example-${i + 1}.png` : `held-out ${i - examples.length}`, truth: s.caption, caption: caps[i]!.caption }));
    log(`captions: ${JSON.stringify(evalJson["captions"])}`);
  }
  await model.close();
  if (previous) evalJson["evaluated_again_seconds"] = Math.round((performance.now() - t0) / 1000);
  else evalJson["seconds"] = Math.round((performance.now() - t0) / 1000);
  evalJson["locate_decoding"] = "constrained (the box grammar; SigLIP2.locate's default)";
  if (!previous) evalJson["settings"] = { lr: LR, batch: BATCH, threads: THREADS, position_init: POSEMB, ...(OBJECTIVES.includes("locca") ? { memory_position: MEMORY_POSITION, aref_rows: AREF_ROWS } : {}), distill: DISTILL ? { start: DEFAULT_DISTILL.start } : null };
  writeFileSync(join(OUT, "eval.json"), `${JSON.stringify(evalJson, null, 2)}\n`);
  rmSync(staging, { recursive: true, force: true });
  log(`wrote ${OUT} in ${Math.round((performance.now() - t0) / 1000)} s`);
}

await main();
