/**
 * ACID ablation (issue 12): a small student trained on ACID-curated batches vs the same student on
 * random batches, at equal steps, data and seeds; held-out scenes; zero-shot top-1 and retrieval R@1.
 *
 * 1. Data: generated scenes (src/train/scenes), 48 px, five languages (en 40%, others 15% each).
 *    The student sees them at 32 px, the teacher at 48 px (each through its own preprocessor).
 * 2. Teacher: a bigger model (width 64, 3 layers, 48 px) trained from scratch on the same training
 *    scenes, saved as a checkpoint and loaded through the library (`SigLIP2.load`, inference only).
 * 3. Students (width 32, 2 layers, 32 px), per seed: "random" (the plain trainer) and "acid"
 *    (`curate: {ratio}`: keep the most learnable half of each super-batch of 2B).
 * 4. Held-out (other seeds): single-object scenes for 16-class zero-shot (mean over the five prompt
 *    languages), multi-object scenes for image→text / text→image R@1.
 *
 *   nice -n 10 npx tsx tools/ablate-acid.ts [--seeds 3] [--steps 400] [--teacher-steps 800] [--threads 2]
 *
 * `--reuse-teacher`: keep the teacher of an earlier run in --work (same data and settings).
 *
 * Prints one table (mean ± sd over seeds, and each seed) and writes it as JSON to --out.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { cpus } from "node:os";
import { SigLIP2 } from "../src/api.js";
import { parseImageProcessorConfig, preprocessFixed, type ImageProcessorConfig, type RgbImage } from "../src/preprocess/index.js";
import { classificationMetrics, retrievalMetrics } from "../src/tasks/metrics.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { pruneTokenizer } from "../src/tokenizer/prune.js";
import { InMemoryPairs, tokenizeCaptions } from "../src/train/data.js";
import { tinyConfigJson } from "../src/train/experiment.js";
import { initParams } from "../src/train/init.js";
import { paramSpecs } from "../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { generateScenes, renderScene, SCENE_LANGUAGES, sceneLabels, type SceneRecord } from "../src/train/scenes/index.js";
import { EmbedSession, type Params } from "../src/train/session.js";
import { Trainer, type TrainConfig } from "../src/train/trainer.js";
import { parseConfig, type SiglipConfig } from "../src/weights/config.js";

const { values: a } = parseArgs({
  options: {
    seeds: { type: "string", default: "3" },
    steps: { type: "string", default: "400" },
    "teacher-steps": { type: "string", default: "800" },
    "reuse-teacher": { type: "boolean", default: false },
    train: { type: "string", default: "3000" },
    batch: { type: "string", default: "32" },
    ratio: { type: "string", default: "0.5" },
    threads: { type: "string", default: "2" },
    work: { type: "string", default: "/tmp/ablate-acid" },
    out: { type: "string", default: "/tmp/ablate-acid/result.json" },
  },
});
const SEEDS = Number(a.seeds);
const STEPS = Number(a.steps);
const TEACHER_STEPS = Number(a["teacher-steps"]);
const TRAIN = Number(a.train);
const BATCH = Number(a.batch);
const RATIO = Number(a.ratio);
const THREADS = Number(a.threads);
const WORK = resolve(a.work!);
const DATA_SEED = 1212;
const SEQ = 24;
const GEMMA = join("node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json");
const log = (m: string) => process.stderr.write(`${m}\n`);
const t0 = performance.now();
const secs = () => ((performance.now() - t0) / 1000).toFixed(0);

function processor(size: number): { json: Record<string, unknown>; cfg: ImageProcessorConfig } {
  const json = {
    do_convert_rgb: null, do_normalize: true, do_rescale: true, do_resize: true, image_mean: [0.5, 0.5, 0.5],
    image_processor_type: "SiglipImageProcessor", image_std: [0.5, 0.5, 0.5], resample: 2,
    rescale_factor: 0.00392156862745098, size: { height: size, width: size },
  };
  return { json, cfg: parseImageProcessorConfig(json, size) };
}

async function images(recs: readonly SceneRecord[]): Promise<RgbImage[]> {
  const out: RgbImage[] = [];
  for (const r of recs) {
    const b = await renderScene(r.spec, "ours");
    out.push({ width: b.width, height: b.height, data: b.data } as RgbImage);
  }
  return out;
}

function optimizer(steps: number): TrainConfig["optimizer"] {
  return { ...DEFAULT_OPTIMIZER, lr: 1e-3, totalSteps: steps, warmupSteps: Math.round(steps * 0.05) };
}

/** Held-out metrics of in-memory parameters. */
async function evaluate(config: SiglipConfig, params: Params, tok: GemmaTokenizer, ev: EvalSet): Promise<{ zeroshot: number; i2t: number; t2i: number }> {
  const o = { threads: THREADS };
  const vision = await EmbedSession.create(config, "vision", o);
  const text = await EmbedSession.create(config, "text", o);
  const D = config.vision_config.hidden_size;
  const rows = (f: Float32Array) => Array.from({ length: f.length / D }, (_, i) => f.subarray(i * D, (i + 1) * D));
  const sim = (x: Float32Array[], y: Float32Array[]) => x.map((u) => y.map((v) => u.reduce((s, ui, k) => s + ui * v[k]!, 0)));
  const zsImg = rows(await vision.embed(params, ev.zsPixels, ev.zsLabels.length));
  let zs = 0;
  for (const lang of SCENE_LANGUAGES) {
    const l = ev.labels.languages[lang]!;
    const p = rows(await text.embed(params, tokenizeCaptions(tok, l.prompts, SEQ), l.prompts.length));
    zs += classificationMetrics(sim(zsImg, p), ev.zsLabels, l.names).top1 / SCENE_LANGUAGES.length;
  }
  const ri = rows(await vision.embed(params, ev.retPixels, ev.retCaptions.length));
  const rt = rows(await text.embed(params, tokenizeCaptions(tok, ev.retCaptions, SEQ), ev.retCaptions.length));
  const r = retrievalMetrics(sim(ri, rt), ev.retCaptions.map((_, i) => i), [1]);
  await vision.release();
  await text.release();
  return { zeroshot: zs, i2t: r.imageToText["R@1"]!, t2i: r.textToImage["R@1"]! };
}

interface EvalSet {
  labels: ReturnType<typeof sceneLabels>;
  zsPixels: Float32Array;
  zsLabels: number[];
  retPixels: Float32Array;
  retCaptions: string[];
}

const flat = (list: Float32Array[]) => {
  const out = new Float32Array(list.reduce((s, x) => s + x.length, 0));
  let o = 0;
  for (const x of list) { out.set(x, o); o += x.length; }
  return out;
};

async function main(): Promise<void> {
  const mix = { en: 0.4, de: 0.15, es: 0.15, fr: 0.15, zh: 0.15 };
  const train = generateScenes({ seed: DATA_SEED, count: TRAIN, size: 48, langs: mix });
  const zsTest = generateScenes({ seed: DATA_SEED + 2, count: 320, size: 48, maxObjects: 1, langs: [...SCENE_LANGUAGES] });
  const retTest = generateScenes({ seed: DATA_SEED + 3, count: 200, size: 48, langs: [...SCENE_LANGUAGES] });
  const labels = sceneLabels();

  // A vocabulary of the scene texts (the demo model's recipe, tools/make-demo-model.ts).
  const corpus = new Set<string>();
  for (const s of [...train, ...zsTest, ...retTest, ...generateScenes({ seed: DATA_SEED + 9, count: 20000, size: 48 })]) corpus.add(s.caption);
  for (const l of Object.values(labels.languages)) for (const t of [...l.names, ...l.prompts]) corpus.add(t);
  const gemmaJson = JSON.parse(readFileSync(GEMMA, "utf8"));
  const gemma = GemmaTokenizer.fromJSON(gemmaJson);
  const pruned = pruneTokenizer(gemmaJson, [...corpus].flatMap((t) => gemma.tokenize(t, { lowercase: true })));
  const tok = GemmaTokenizer.fromJSON(pruned.json);
  log(`tokenizer: ${pruned.vocabSize} tokens; rendering ${train.length} + ${zsTest.length} + ${retTest.length} scenes`);

  const trainImgs = await images(train);
  const student = processor(32);
  const teacherPre = processor(48);
  const studentPx = trainImgs.map((im) => preprocessFixed(im, student.cfg));
  const ev: EvalSet = {
    labels,
    zsPixels: flat((await images(zsTest)).map((im) => preprocessFixed(im, student.cfg))),
    zsLabels: zsTest.map((s) => labels.classes.findIndex((c) => c.colour === s.spec.objects[0]!.colour && c.shape === s.spec.objects[0]!.shape)),
    retPixels: flat((await images(retTest)).map((im) => preprocessFixed(im, student.cfg))),
    retCaptions: retTest.map((s) => s.caption),
  };

  // --- the teacher: bigger, 48 px, trained first, saved, loaded through the library ---
  const teacherDir = join(WORK, "teacher");
  const reuse = a["reuse-teacher"] === true && existsSync(join(teacherDir, "model.safetensors"));
  if (!reuse) rmSync(WORK, { recursive: true, force: true });
  mkdirSync(join(WORK, "side"), { recursive: true });
  writeFileSync(join(WORK, "side", "tokenizer.json"), JSON.stringify(pruned.json));
  writeFileSync(join(WORK, "side", "tokenizer_config.json"), JSON.stringify({ add_bos_token: false, add_eos_token: true, do_lower_case: true, tokenizer_class: "GemmaTokenizer", pad_token: "<pad>", eos_token: "<eos>", model_max_length: SEQ }));
  writeFileSync(join(WORK, "side", "preprocessor_config.json"), JSON.stringify(teacherPre.json));
  const tJson = tinyConfigJson({ width: 64, layers: 3, heads: 4, mlp: 256, vocab: pruned.vocabSize, seqLen: SEQ, image: 48, patch: 8 });
  const tConfig = parseConfig(tJson);
  if (!reuse) {
    const data = new InMemoryPairs(trainImgs.map((im) => preprocessFixed(im, teacherPre.cfg)), train.map((s) => s.caption), tok, SEQ);
    const tr = await Trainer.create(tConfig, initParams(paramSpecs(tConfig), DATA_SEED), {
      batchSize: 64, accumSteps: 1, steps: TEACHER_STEPS, seed: DATA_SEED, freeze: "none", threads: THREADS, optimizer: optimizer(TEACHER_STEPS),
    });
    while (tr.step < TEACHER_STEPS) {
      const s = await tr.trainStep(data);
      if (s.step % 100 === 0) log(`teacher step ${s.step} loss ${s.loss.toFixed(4)} (${secs()} s)`);
    }
    tr.save(teacherDir, tJson, join(WORK, "side"));
    await tr.release();
  }
  const teacher = await SigLIP2.load(teacherDir, { threads: THREADS });
  // the teacher's own held-out figures, through the library (its 48 px preprocessing)
  const tZsImg = await teacher.embedImages(await images(zsTest));
  let tZs = 0;
  for (const lang of SCENE_LANGUAGES) {
    const p = await teacher.embedTexts(labels.languages[lang]!.prompts);
    tZs += classificationMetrics(tZsImg.map((u) => p.map((v) => u.reduce((s, x, k) => s + x * v[k]!, 0))), ev.zsLabels, labels.languages[lang]!.names).top1 / SCENE_LANGUAGES.length;
  }
  const tRi = await teacher.embedImages(await images(retTest));
  const tRt = await teacher.embedTexts(ev.retCaptions);
  const tR = retrievalMetrics(tRi.map((u) => tRt.map((v) => u.reduce((s, x, k) => s + x * v[k]!, 0))), ev.retCaptions.map((_, i) => i), [1]);
  const teacherRow = { zeroshot: tZs, i2t: tR.imageToText["R@1"]!, t2i: tR.textToImage["R@1"]! };
  log(`teacher: ${JSON.stringify(teacherRow)} (${secs()} s)`);

  // --- students ---
  const sJson = tinyConfigJson({ width: 32, layers: 2, heads: 4, mlp: 128, vocab: pruned.vocabSize, seqLen: SEQ, image: 32, patch: 8 });
  const sConfig = parseConfig(sJson);
  const data = new InMemoryPairs(studentPx, train.map((s) => s.caption), tok, SEQ, { images: trainImgs });
  const results: Array<{ arm: string; seed: number; zeroshot: number; i2t: number; t2i: number; seconds: number; keptScore?: number; allScore?: number }> = [];
  for (let seed = 1; seed <= SEEDS; seed++) {
    for (const arm of ["random", "acid"] as const) {
      const ts = performance.now();
      const c: TrainConfig = { batchSize: BATCH, accumSteps: 1, steps: STEPS, seed, freeze: "none", threads: THREADS, optimizer: optimizer(STEPS) };
      if (arm === "acid") c.curate = { teacher, ratio: RATIO, teacherId: "ablation-teacher" };
      const tr = await Trainer.create(sConfig, initParams(paramSpecs(sConfig), seed), c);
      let kept = 0;
      let all = 0;
      while (tr.step < STEPS) {
        const s = await tr.trainStep(data);
        if (s.curation) { kept += s.curation.scoreKept / STEPS; all += s.curation.scoreAll / STEPS; }
      }
      const m = await evaluate(sConfig, tr.params, tok, ev);
      await tr.release();
      const row = { arm, seed, ...m, seconds: (performance.now() - ts) / 1000, ...(arm === "acid" ? { keptScore: kept, allScore: all } : {}) };
      results.push(row);
      log(`${arm} seed ${seed}: ${JSON.stringify(row)} (${secs()} s)`);
    }
  }
  await teacher.close();

  const pct = (x: number) => (100 * x).toFixed(1);
  const stat = (arm: string, k: "zeroshot" | "i2t" | "t2i") => {
    const v = results.filter((r) => r.arm === arm).map((r) => r[k]);
    const m = v.reduce((s, x) => s + x, 0) / v.length;
    const sd = Math.sqrt(v.reduce((s, x) => s + (x - m) ** 2, 0) / Math.max(1, v.length - 1));
    return `${pct(m)} ± ${pct(sd)}`;
  };
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  const lines = [
    `ACID ablation: student width 32 × 2 layers (32 px), ${STEPS} steps × batch ${BATCH}, ${TRAIN} training scenes; teacher width 64 × 3 layers (48 px), ${TEACHER_STEPS} steps × 64; ratio ${RATIO} (super-batch ${Math.round(BATCH / RATIO)}); ${SEEDS} seeds; held out: ${zsTest.length} single-object scenes (16-class zero-shot, mean of 5 prompt languages), ${retTest.length} multi-object scenes (R@1). ${cpu}, ${cpus().length} cores.`,
    "",
    "| model | zero-shot top-1 % | image→text R@1 % | text→image R@1 % |",
    "|---|---|---|---|",
    `| teacher | ${pct(teacherRow.zeroshot)} | ${pct(teacherRow.i2t)} | ${pct(teacherRow.t2i)} |`,
    `| student, random batches | ${stat("random", "zeroshot")} | ${stat("random", "i2t")} | ${stat("random", "t2i")} |`,
    `| student, ACID batches | ${stat("acid", "zeroshot")} | ${stat("acid", "i2t")} | ${stat("acid", "t2i")} |`,
    "",
    "per seed (zero-shot / i→t / t→i, %): " + results.map((r) => `${r.arm} s${r.seed} ${pct(r.zeroshot)}/${pct(r.i2t)}/${pct(r.t2i)}`).join("; "),
    "mean learnability, kept vs whole super-batch (acid): " + results.filter((r) => r.arm === "acid").map((r) => `s${r.seed} ${r.keptScore!.toFixed(3)} vs ${r.allScore!.toFixed(3)}`).join("; "),
    `total ${secs()} s`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  writeFileSync(resolve(a.out!), `${JSON.stringify({ teacher: teacherRow, results, table: lines }, null, 2)}\n`);
}

await main();
