/**
 * `siglip2 train --model M --data DATA --out DIR`: fine-tune (or train from scratch) a
 * fixed-resolution SigLIP or a NaFlex SigLIP 2 checkpoint (`--max-patches`) on image–caption pairs with the sigmoid loss and/or the
 * LocCa decoder loss (`--objectives`; regions from the manifest or COCO annotations).
 *
 * stdout: one JSON line per logged step {step, loss, lr, grad_norm, pairs_per_s, logit_scale,
 * logit_bias} (with LocCa also sigmoid_loss and locca_loss; `loss` is what is trained), then
 * {done, out, step}. With LocCa the decoder is saved in DIR/decoder.safetensors. stderr: a progress bar on a terminal. DIR receives a
 * Hub-layout checkpoint (config.json, model.safetensors, tokenizer and preprocessor files) that
 * transformers and this package load, plus optimizer.safetensors and trainer_state.json for
 * `--resume`. Ctrl-C, SIGTERM or a closed stdout save the current step before exiting (130).
 * A run whose loss, gradients or parameters stop being finite stops with exit 2 and saves
 * nothing; saves are atomic (src/train/checkpoint.ts), so DIR always holds a whole checkpoint.
 *
 * `--curate-teacher M [--curate-ratio F] [--curate-dtype int8]`: ACID curation
 * (src/train/curate.ts); each logged step then has `curation` {super_batch, kept, score_all,
 * score_kept, threshold, student_*, teacher_*}. `--lang-mix en=0.9,other=0.1`: per-language
 * sampling (src/train/lang-mix.ts); logged steps have `langs` (counts), and the final line has
 * `lang_mix` {requested, realised} (shares of the trained examples). The final line also has a
 * `curation` summary (means over steps); both are written to DIR/data_summary.json.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Command, Option } from "commander";
import { SiglipError } from "../errors.js";
import { maxThreads } from "../load-options.js";
import { DEFAULT_OPTIMIZER, type DecayConvention } from "../train/optim.js";
import type { PairDataset } from "../train/data.js";
import type { Objective, Tower } from "../train/model.js";
import type { PatchBudgets } from "../train/naflex-data.js";
import { LangMixSampler, parseLangMix, shares, type LangMixSpec } from "../train/lang-mix.js";
import type { SigLIP2 } from "../api.js";
import type { Trainer } from "../train/trainer.js";
import { DEFAULT_DISTILL, NAFLEX_DISTILL_REFUSED, type DistillConfig } from "../train/distill-config.js";
import type { Checkpoint } from "../weights/checkpoint.js";
import { BOX_FORMATS, type BoxFormat } from "../tasks/boxes.js";
import { MEMORY_POSITIONS, type MemoryPosition } from "../models/locca.js";
import { CPU_BOUND, intOption, numOption } from "./args.js";
import { Bar, barsEnabled, downloadProgress } from "./progress.js";
import { onStdoutClosed } from "./stdout.js";

/** The image-token position code of a decoder that `train` creates (README "LocCa": it is what lets the decoder place boxes). */
export const NEW_DECODER_MEMORY_POSITION: MemoryPosition = "sincos2d";

interface TrainOpts {
  model: string;
  data: string;
  out: string;
  steps: number;
  batchSize: number;
  accumSteps: number;
  lr: number;
  warmup?: number;
  weightDecay: number;
  decayConvention: DecayConvention;
  beta1: number;
  beta2: number;
  eps: number;
  clip: number;
  freeze: Tower[];
  objectives: Objective[];
  vocabChunk?: number;
  /** LocCa box text (default: a loaded decoder's recorded format, else canonical). */
  boxFormat?: BoxFormat;
  /** LocCa image-token position code (default: a loaded decoder's, else {@link NEW_DECODER_MEMORY_POSITION}). */
  memoryPosition?: MemoryPosition;
  images?: string;
  lossChunk?: number;
  seed: number;
  saveEvery: number;
  logEvery: number;
  resume?: boolean;
  stopAt?: number;
  fromScratch?: boolean;
  threads?: number;
  lowercase: boolean;
  offline?: boolean;
  distill?: boolean;
  distillStart?: number;
  emaMomentum?: number;
  globalCrop?: [number, number];
  localCrop?: [number, number];
  localSize?: number;
  localViews?: number;
  distillHead?: [number, number, number];
  distillSizeFactor?: number;
  /** NaFlex: per-example patch budgets, a list or a range (parsed in setUpRun). */
  maxPatches?: string;
  budgetDraw?: "example" | "batch";
  curateTeacher?: string;
  curateRatio?: number;
  curateDtype: "fp32" | "int8";
  langMix?: LangMixSpec;
}

/** The self-distillation flags (each needs --distill). */
const DISTILL_FLAGS = { distillStart: "--distill-start", emaMomentum: "--ema-momentum", globalCrop: "--global-crop", localCrop: "--local-crop", localSize: "--local-size", localViews: "--local-views", distillHead: "--distill-head", distillSizeFactor: "--distill-size-factor" } as const;

/** A comma list of `count` finite numbers (crop ranges, head widths). */
function numberList(flag: string, count: number, integer: boolean) {
  return (v: string): number[] => {
    const parts = v.split(",").map((x) => x.trim());
    const nums = parts.map(Number);
    if (parts.length !== count || parts.some((x) => x === "") || nums.some((x) => !Number.isFinite(x) || (integer && !Number.isInteger(x)))) {
      throw new SiglipError("usage", `${flag} ${JSON.stringify(v)}: expected ${count} comma-separated ${integer ? "integers" : "numbers"}`);
    }
    return nums;
  };
}

/** The self-distillation settings of the flags (src/train/distill.ts; defaults there), or undefined. */
function distillConfig(o: TrainOpts): DistillConfig | undefined {
  if (!o.distill) {
    const given = Object.entries(DISTILL_FLAGS).find(([k]) => o[k as keyof TrainOpts] !== undefined);
    if (given) throw new SiglipError("usage", `${given[1]} applies to self-distillation; add --distill`);
    return undefined;
  }
  const d: DistillConfig = { ...DEFAULT_DISTILL };
  if (o.distillStart !== undefined) d.start = o.distillStart;
  if (o.emaMomentum !== undefined) d.emaMomentum = o.emaMomentum;
  if (o.globalCrop) d.globalCrop = o.globalCrop;
  if (o.localCrop) d.localCrop = o.localCrop;
  if (o.localSize !== undefined) d.localSize = o.localSize;
  if (o.localViews !== undefined) d.localViews = o.localViews;
  if (o.distillHead) d.head = { hidden: o.distillHead[0], bottleneck: o.distillHead[1], out: o.distillHead[2] };
  if (o.distillSizeFactor !== undefined) d.sizeFactor = o.distillSizeFactor;
  return d;
}

/** Most steps (and step-like counts) accepted. */
const MAX_STEPS = 1_000_000_000;
const posInt = (name: string, max = MAX_STEPS) => intOption(name, { min: 1, max });
const nonNegInt = (name: string, max = MAX_STEPS) => intOption(name, { min: 0, max });
const positive = (name: string) => numOption(name, { min: 0, minExclusive: true, describe: "a positive finite number" });
const nonNegative = (name: string) => numOption(name, { min: 0, describe: "a non-negative finite number" });
const unitInterval = (name: string) => numOption(name, { min: 0, max: 1, maxExclusive: true, describe: "a number in [0, 1)" });

/** `--freeze`: none, vision, text, or a comma list of towers (vision,text). */
function freezeOption(v: string): Tower[] {
  const parts = v.split(",").map((x) => x.trim());
  if (parts.length === 1 && parts[0] === "none") return [];
  const out: Tower[] = [];
  for (const p of parts) {
    if (p !== "vision" && p !== "text") throw new SiglipError("usage", `--freeze must be none, vision, text or vision,text, got ${JSON.stringify(v)}`);
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

/** `--objectives`: sigmoid, locca, or sigmoid,locca. */
function objectivesOption(v: string): Objective[] {
  const parts = v.split(",").map((x) => x.trim());
  const out: Objective[] = [];
  for (const p of parts) {
    if (p !== "sigmoid" && p !== "locca") throw new SiglipError("usage", `--objectives: unknown objective ${JSON.stringify(p)} in ${JSON.stringify(v)} (expected sigmoid, locca, or sigmoid,locca)`);
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

/** Same folder (through links)? */
function samePath(a: string, b: string): boolean {
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  return real(a) === real(b);
}

/** Refuse an --out that is not ours to write: a file, the source checkpoint, or a non-empty folder that holds no training run. */
function checkOut(o: TrainOpts, modelDir: string): void {
  if (samePath(o.out, modelDir)) throw new SiglipError("usage", `--out ${o.out} is the checkpoint being trained; choose another folder (it would be overwritten)`);
  if (!existsSync(o.out)) return;
  if (!statSync(o.out).isDirectory()) throw new SiglipError("usage", `--out ${o.out} is a file, not a folder`);
  const hasRun = existsSync(join(o.out, "trainer_state.json"));
  if (hasRun && !o.resume) throw new SiglipError("usage", `${o.out} already holds a training run: pass --resume to continue it, or choose another --out`);
  if (!hasRun && o.resume) throw new SiglipError("usage", `--resume: ${o.out} holds no saved run (no trainer_state.json); drop --resume to start one`);
  if (!hasRun && readdirSync(o.out).length > 0) {
    throw new SiglipError("usage", `--out ${o.out} is not empty and holds no training run; choose a new or empty folder`);
  }
}

/** Trainer.create's options (named through the function, so a rename in src/train does not reach here). */
type TrainerConfig = Parameters<typeof Trainer.create>[2];

/** The flags as Trainer options (warm-up: 5% of the steps unless given). */
function trainerConfig(o: TrainOpts, maxPatches?: PatchBudgets): TrainerConfig {
  const warmup = o.warmup ?? Math.round(0.05 * o.steps);
  const tc: TrainerConfig = {
    batchSize: o.batchSize, accumSteps: o.accumSteps, steps: o.steps, seed: o.seed, freeze: o.freeze, objectives: o.objectives,
    optimizer: {
      ...DEFAULT_OPTIMIZER, lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay,
      decayConvention: o.decayConvention, clipNorm: o.clip, warmupSteps: warmup, totalSteps: o.steps,
    },
  };
  if (o.langMix !== undefined) tc.langMix = o.langMix;
  if (o.lossChunk !== undefined) tc.lossChunk = o.lossChunk;
  if (o.vocabChunk !== undefined) tc.vocabChunk = o.vocabChunk;
  if (o.boxFormat !== undefined) tc.boxFormat = o.boxFormat;
  if (o.memoryPosition !== undefined) tc.memoryPosition = o.memoryPosition;
  if (o.threads !== undefined) tc.threads = o.threads;
  const d = distillConfig(o);
  if (d) tc.distill = d;
  if (maxPatches !== undefined) {
    tc.maxPatches = maxPatches;
    if (o.budgetDraw !== undefined) tc.budgetDraw = o.budgetDraw;
  }
  return tc;
}

/** Why training should stop early, as it happens. */
interface Stops {
  /** The first of: a signal's name, "stdout closed"; null while none. */
  readonly reason: string | null;
  /** Stdout was closed: nothing more is written to it. */
  readonly stdoutGone: boolean;
  dispose(): void;
}

/** Ctrl-C, SIGTERM or a closed stdout: the loop finishes the current step, saves and exits 130. */
function watchStops(): Stops {
  const st = { reason: null as string | null, stdoutGone: false, dispose };
  const onSignal = (sig: NodeJS.Signals): void => {
    if (st.reason) process.stderr.write(`siglip2: ${sig} again: saving first, then exiting\n`);
    st.reason ??= sig;
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  onStdoutClosed(() => {
    st.stdoutGone = true;
    st.reason ??= "stdout closed";
  });
  function dispose(): void {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    onStdoutClosed(null);
  }
  return st;
}

/**
 * Check the flags against the checkpoint and the data, then load everything a run needs: the
 * checkpoint, the data pipeline, and the trainer (resumed from --out with --resume).
 */
async function setUpRun(o: TrainOpts): Promise<{ dir: string; ckpt: Checkpoint; data: PairDataset; trainer: Trainer; teacher: SigLIP2 | null }> {
  // loaded here, not at start-up: --help and usage errors need none of it
  const [{ resolveModel }, { parseImageProcessorConfig }, { GemmaTokenizer }, { Checkpoint }, { recoverCheckpointDir }, { checkManifestImages, FilePairs, readManifest }, { initParams }, { paramSpecs }, { startingParams }, { Trainer }] =
    await Promise.all([
      import("../hub/download.js"), import("../preprocess/index.js"), import("../tokenizer/gemma.js"), import("../weights/checkpoint.js"),
      import("../train/checkpoint.js"), import("../train/data.js"), import("../train/init.js"), import("../train/model.js"),
      import("../train/session.js"), import("../train/trainer.js"),
    ]);
  if (o.warmup !== undefined && o.warmup > o.steps) throw new SiglipError("usage", `--warmup ${o.warmup} is more than --steps ${o.steps}`);
  if (o.batchSize % o.accumSteps !== 0) throw new SiglipError("usage", `--batch-size ${o.batchSize} must be a multiple of --accum-steps ${o.accumSteps}`);
  const locca = o.objectives.includes("locca");
  if (o.freeze.length === 2 && !locca) {
    throw new SiglipError("usage", "--freeze vision,text with --objectives sigmoid leaves nothing to train; add the LocCa decoder (--objectives sigmoid,locca or locca) or unfreeze a tower");
  }
  if (o.vocabChunk !== undefined && !locca) throw new SiglipError("usage", "--vocab-chunk applies to the LocCa loss; add --objectives sigmoid,locca (or locca)");
  if (o.boxFormat !== undefined && !locca) throw new SiglipError("usage", "--box-format applies to the LocCa decoder; add --objectives sigmoid,locca (or locca)");
  if (o.memoryPosition !== undefined && !locca) throw new SiglipError("usage", "--memory-position applies to the LocCa decoder; add --objectives sigmoid,locca (or locca)");
  if (o.curateRatio !== undefined && o.curateTeacher === undefined) throw new SiglipError("usage", "--curate-ratio applies to curation; add --curate-teacher MODEL");
  if (o.curateDtype !== "fp32" && o.curateTeacher === undefined) throw new SiglipError("usage", "--curate-dtype applies to curation; add --curate-teacher MODEL");
  if (o.images !== undefined && !(existsSync(o.images) && statSync(o.images).isDirectory())) throw new SiglipError("usage", `--images ${o.images}: not a folder`);
  const dir = await resolveModel(o.model, { onProgress: downloadProgress(), ...(o.offline ? { offline: true } : {}) });
  recoverCheckpointDir(o.out); // finish or undo a save that a crash or kill -9 interrupted
  if (o.resume && !existsSync(o.out)) throw new SiglipError("usage", `--resume: ${o.out} does not exist (nothing to resume)`);
  checkOut(o, dir);
  const ckpt = new Checkpoint(dir);
  const config = ckpt.config;
  const naflex = config.model_type === "siglip2";
  if (!naflex && o.budgetDraw !== undefined) throw new SiglipError("usage", `--budget-draw is for NaFlex (model_type "siglip2") checkpoints; ${dir} is fixed-resolution`);
  if (!naflex && o.maxPatches !== undefined) throw new SiglipError("usage", `--max-patches is for NaFlex (model_type "siglip2") checkpoints; ${dir} is fixed-resolution`);
  const records = readManifest(o.data, o.images !== undefined ? { images: o.images } : {});
  checkManifestImages(records);
  if (o.batchSize > records.length) {
    throw new SiglipError("usage", `--batch-size ${o.batchSize} is more than the ${records.length} pairs of ${o.data}; use --batch-size ${records.length} or fewer`);
  }
  const specs = paramSpecs(config, { objectives: o.objectives });
  const start = o.fromScratch ? { params: initParams(specs, o.seed), decoder: null } : startingParams(ckpt.weights, dir, specs, o.seed);
  const params = start.params;
  // a fine-tuned decoder keeps the box format it was trained with unless --box-format says otherwise
  // a fine-tuned decoder keeps the position code it was trained with (its weights expect it);
  // a new one gets NEW_DECODER_MEMORY_POSITION unless --memory-position says otherwise
  if (locca && start.decoder === "loaded") {
    const { decoderFileMetadata } = await import("../models/locca-infer.js");
    const f = decoderFileMetadata(dir);
    if (o.boxFormat === undefined && f.boxFormat !== "canonical") o = { ...o, boxFormat: f.boxFormat };
    if (o.memoryPosition === undefined) o = { ...o, memoryPosition: f.memoryPosition };
  } else if (locca && o.memoryPosition === undefined) {
    o = { ...o, memoryPosition: NEW_DECODER_MEMORY_POSITION };
  }
  const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
  const T = config.text_config.max_position_embeddings;
  let data: PairDataset;
  let budgets: PatchBudgets | undefined;
  if (naflex) {
    // NaFlex (h12-naflex): per-example budgets, default the preprocessor's max_num_patches
    const [{ parseNaflexProcessorConfig, decodeImage }, { NaflexPairs, parsePatchBudgets }] = await Promise.all([import("../preprocess/index.js"), import("../train/naflex-data.js")]);
    const nproc = parseNaflexProcessorConfig(ckpt.preprocessorConfig, config.vision_config.patch_size);
    budgets = parsePatchBudgets(o.maxPatches ?? String(nproc.maxNumPatches));
    const langs = records.every((r) => r.lang !== undefined) ? { langs: records.map((r) => r.lang!) } : {};
    const regions = locca ? { locca: { vocab: config.text_config.vocab_size, regions: records.map((r) => r.regions ?? []), sources: records.map((r) => r.source ?? r.image) } } : {};
    data = new NaflexPairs((i) => decodeImage(records[i]!.image), records.map((r) => r.caption), nproc, tok, T, o.lowercase, { ...langs, ...regions, image: (i) => records[i]!.image });
  } else {
    const processor = parseImageProcessorConfig(ckpt.preprocessorConfig, config.vision_config.image_size);
    data = new FilePairs(records, processor, tok, T, o.lowercase, locca ? config.text_config.vocab_size : undefined);
  }
  const tc = trainerConfig(o, budgets);
  if (tc.distill && naflex) throw new SiglipError("usage", NAFLEX_DISTILL_REFUSED);
  if (tc.distill && o.curateTeacher !== undefined) throw new SiglipError("usage", "--distill cannot be combined with curation (--curate-teacher) yet; drop one of them");
  // --- curation (src/train/curate.ts) and language mix (src/train/lang-mix.ts) ---
  if (o.langMix !== undefined && !data.langs) {
    const r = records.find((x) => x.lang === undefined)!;
    throw new SiglipError("usage", `--lang-mix needs a "lang" field on every manifest row; ${r.source ?? r.image} has none`);
  }
  if (o.langMix !== undefined) {
    const mix = new LangMixSampler(o.langMix, data.langs!, o.data); // checks the keys against the data's languages
    if (mix.drawable < o.batchSize) throw new SiglipError("usage", `--lang-mix: the weighted languages have ${mix.drawable} rows, fewer than --batch-size ${o.batchSize}`);
  }
  let teacher: SigLIP2 | null = null;
  if (o.curateTeacher !== undefined) {
    const ratio = o.curateRatio ?? 0.5;
    const superBatch = Math.max(o.batchSize, Math.round(o.batchSize / ratio));
    if (superBatch > records.length) throw new SiglipError("usage", `--curate-ratio ${ratio} draws super-batches of ${superBatch} (--batch-size ${o.batchSize} / ratio), more than the ${records.length} pairs of ${o.data}`);
    const { SigLIP2 } = await import("../api.js");
    teacher = await SigLIP2.load(o.curateTeacher, { dtype: o.curateDtype, lowercase: o.lowercase, ...(o.threads !== undefined ? { threads: o.threads } : {}), ...(o.offline ? { offline: true } : {}) });
    tc.curate = { teacher, ratio, teacherId: teacher.modelId };
  }
  try {
    const trainer = await Trainer.create(config, params, tc);
    if (o.resume) trainer.resume(o.out);
    return { dir, ckpt, data, trainer, teacher };
  } catch (e) {
    await teacher?.close();
    throw e;
  }
}

async function cmdTrain(o: TrainOpts): Promise<void> {
  const { dir, ckpt, data, trainer, teacher } = await setUpRun(o);
  const configJson = readFileSync(join(dir, "config.json"), "utf8"); // copied verbatim
  let saved: number | null = o.resume ? trainer.step : null;
  const save = (): void => {
    trainer.save(o.out, configJson, dir);
    saved = trainer.step;
  };

  const stops = watchStops();
  const log = (obj: unknown): void => {
    if (!stops.stdoutGone) process.stdout.write(`${JSON.stringify(obj)}\n`);
  };
  const bar = barsEnabled()
    ? new Bar("{bar} {value}/{total} steps | loss {loss} | lr {lr} | {rate} pairs/s | ETA {eta_formatted}", o.steps, trainer.step, { loss: "-", lr: "-", rate: "-" })
    : null;
  try {
    try {
      while (trainer.step < Math.min(o.steps, o.stopAt ?? Infinity) && !stops.reason) {
        const s = await trainer.trainStep(data);
        const done = trainer.step;
        bar?.update(done, { loss: s.loss.toFixed(4), lr: s.lr.toExponential(2), rate: s.pairsPerSecond.toFixed(1) });
        if (done % o.logEvery === 0 || done === o.steps) {
          const parts = {
            ...(s.loccaLoss !== undefined ? { sigmoid_loss: s.sigmoidLoss, locca_loss: s.loccaLoss } : {}),
            ...(s.sdLoss !== undefined ? { sigmoid_loss: s.sigmoidLoss, sd_loss: s.sdLoss, mp_loss: s.mpLoss } : {}),
          };
          log({ step: done, loss: s.loss, ...parts, lr: s.lr, grad_norm: s.gradNorm, pairs_per_s: s.pairsPerSecond, logit_scale: s.logitScale, logit_bias: s.logitBias, ...dataParts(s) });
        }
        if (o.saveEvery > 0 && done % o.saveEvery === 0 && done < o.steps) save();
      }
    } catch (e) {
      bar?.stop();
      if (e instanceof SiglipError && (e.code === "diverged" || e.code === "image")) {
        const kept = saved === null ? "nothing was saved" : `${o.out} keeps the checkpoint of step ${saved}`;
        throw new SiglipError(e.code, `${e.message}; ${kept}`, e.subject !== undefined ? { subject: e.subject } : undefined);
      }
      throw e;
    } finally {
      bar?.stop();
    }
    save();
  } finally {
    stops.dispose();
    await trainer.release();
    await teacher?.close();
    ckpt.close();
  }
  const summary = dataSummary(trainer);
  if (Object.keys(summary).length > 0) writeFileSync(join(o.out, "data_summary.json"), `${JSON.stringify({ step: trainer.step, ...summary }, null, 2)}\n`);
  log({ done: trainer.step >= o.steps, out: o.out, step: trainer.step, ...summary });
  if (stops.reason) {
    process.stderr.write(`siglip2: ${stops.reason}: stopped at step ${trainer.step}; saved to ${o.out} (continue with --resume)\n`);
    process.exitCode = 130;
  }
}

/** The curation and language-mix parts of a logged step (snake_case, as the other fields). */
function dataParts(s: Awaited<ReturnType<Trainer["trainStep"]>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const c = s.curation;
  if (c) {
    out["curation"] = {
      super_batch: c.superBatch, kept: c.kept, score_all: c.scoreAll, score_kept: c.scoreKept, threshold: c.threshold,
      student_all: c.studentAll, student_kept: c.studentKept, teacher_all: c.teacherAll, teacher_kept: c.teacherKept,
    };
  }
  if (s.langs) out["langs"] = s.langs;
  return out;
}

/**
 * The run's data summary (over every step in the history, resumed ones included): `lang_mix`
 * {requested, realised, counts} with a language mix; `curation` {steps, score_kept, score_all,
 * student_kept, teacher_kept} (means over steps) with curation. Empty when neither is on.
 */
function dataSummary(trainer: Trainer): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (trainer.requestedLangs) out["lang_mix"] = { requested: trainer.requestedLangs, realised: shares(trainer.realisedLangs()), counts: trainer.realisedLangs() };
  const cur = trainer.history.flatMap((h) => (h.curation ? [h.curation] : []));
  if (cur.length > 0) {
    const m = (k: "scoreKept" | "scoreAll" | "studentKept" | "teacherKept") => cur.reduce((s, c) => s + c[k], 0) / cur.length;
    out["curation"] = { steps: cur.length, super_batch: cur[0]!.superBatch, kept: cur[0]!.kept, score_kept: m("scoreKept"), score_all: m("scoreAll"), student_kept: m("studentKept"), teacher_kept: m("teacherKept") };
  }
  return out;
}

/** `--lang-mix`: LANG=WEIGHT pairs (src/train/lang-mix.ts). */
function langMixOption(v: string): LangMixSpec {
  return parseLangMix(v);
}

/** Add the `train` command to the program. */
export function registerTrainCommand(program: Command): void {
  program.command("train")
    .description("fine-tune a fixed-resolution or NaFlex checkpoint on image-caption pairs with the sigmoid and/or LocCa loss; writes a Hub-layout checkpoint")
    .requiredOption("-m, --model <model>", "checkpoint to start from: local directory or Hub id (its config, tokenizer and preprocessor are used)")
    .requiredOption("--data <path>", "a .jsonl/.csv manifest, or a folder holding metadata.jsonl / captions.jsonl / metadata.csv / captions.csv (fields: image|file_name, caption|text, optional regions [{box:[x0,y0,x1,y1],text}]; paths relative to the manifest), or COCO annotations: instances.json, or captions.json,instances.json")
    .option("--images <dir>", "folder that relative image paths are under (default: the manifest's or annotation file's folder)")
    .requiredOption("--out <dir>", "output directory (checkpoint + optimiser state)")
    .option("--steps <n>", "optimiser steps", posInt("--steps"), 100)
    .option("--batch-size <n>", "pairs per optimiser step (at most the number of pairs)", posInt("--batch-size"), 32)
    .option("--accum-steps <n>", "micro-batches per step (gradient accumulation; each micro-batch has its own sigmoid loss)", posInt("--accum-steps"), 1)
    .option("--lr <x>", "peak learning rate (> 0); a run whose loss or gradients stop being finite stops with an error", positive("--lr"), 1e-4)
    .option("--warmup <n>", "linear warm-up steps, then cosine decay to 0 (default: 5% of --steps)", nonNegInt("--warmup"))
    .option("--weight-decay <x>", "decoupled weight decay on kernels", nonNegative("--weight-decay"), DEFAULT_OPTIMIZER.weightDecay)
    .addOption(new Option("--decay-convention <c>", "big_vision: θ -= sched·wd·θ (not scaled by lr); torch: θ -= sched·lr·wd·θ").choices(["big_vision", "torch"]).default("big_vision"))
    .option("--beta1 <x>", "Adam β1, in [0, 1)", unitInterval("--beta1"), DEFAULT_OPTIMIZER.beta1)
    .option("--beta2 <x>", "Adam β2, in [0, 1) (SigLIP: 0.95)", unitInterval("--beta2"), DEFAULT_OPTIMIZER.beta2)
    .option("--eps <x>", "Adam ε (> 0)", positive("--eps"), DEFAULT_OPTIMIZER.eps)
    .option("--clip <x>", "global gradient-norm clip (0: off)", nonNegative("--clip"), DEFAULT_OPTIMIZER.clipNorm)
    .addOption(new Option("--freeze <towers>", "freeze towers: vision (LiT), text, vision,text (only the LocCa decoder trains), or none").argParser(freezeOption).default([] as Tower[], "none"))
    .addOption(new Option("--objectives <list>", "sigmoid, sigmoid,locca (adds the LocCa decoder: captions, referring expressions, grounded captions; saved in decoder.safetensors), or locca (decoder loss only: the text tower, MAP head, t' and b do not train)").argParser(objectivesOption).default(["sigmoid"] as Objective[], "sigmoid"))
    .addOption(new Option("--box-format <f>", "LocCa: how boxes are written in the decoder's text: canonical (\"12 40 300 410\") or padded (3 digits each, \"012 040 300 410\"); recorded in decoder.safetensors, which locate reads (default: the loaded decoder's format, else canonical)").choices([...BOX_FORMATS]))
    .addOption(new Option("--memory-position <p>", `LocCa: sincos2d adds a fixed 2-D sine-cosine code of each image token's place to the image tokens the decoder cross-attends to (what lets it place boxes at small scale; README "LocCa"), none adds nothing; recorded in decoder.safetensors, which caption and locate read (default: the loaded decoder's, else ${NEW_DECODER_MEMORY_POSITION})`).choices([...MEMORY_POSITIONS]))
    .option("--vocab-chunk <n>", "LocCa loss over the vocabulary in chunks of n rows (default: 8192 when the vocabulary is larger, else the full logits)", posInt("--vocab-chunk"))
    .option("--distill", "from --distill-start of the run on, add self-distillation (SILC: V local views match an EMA teacher's global view) and masked prediction (TIPS: 50% of the patches masked), weights 1 and 0.25 × --distill-size-factor; heads and teacher are saved in distill.safetensors, not in model.safetensors")
    .option("--distill-start <x>", "fraction of the run after which self-distillation is on (default 0.8)", unitInterval("--distill-start"))
    .option("--ema-momentum <x>", "EMA momentum of the teacher, fixed (default 0.996)", numOption("--ema-momentum", { min: 0, max: 1, describe: "a number in [0, 1]" }))
    .option("--global-crop <lo,hi>", "area range of the global (teacher) view's random crop (default 0.4,1)", numberList("--global-crop", 2, false))
    .option("--local-crop <lo,hi>", "area range of the local (student) views' random crops (default 0.05,0.4)", numberList("--local-crop", 2, false))
    .option("--local-size <n>", "side of the local views in pixels (default 96/224 of the image size, whole patches)", posInt("--local-size", 4096))
    .option("--local-views <n>", "local views per image (default 8)", posInt("--local-views", 64))
    .option("--distill-head <h,b,k>", "projection heads: hidden width, bottleneck, outputs (default 256,64,1024)", numberList("--distill-head", 3, true))
    .option("--distill-size-factor <x>", "the per-size factor of both terms (0.25 B, 0.5 L, 1 So400m; default 0.25)", nonNegative("--distill-size-factor"))
    .option("--max-patches <budgets>", "NaFlex checkpoints: per-example patch budgets, drawn uniformly per example and step: a list (64,128,256) or a range (64-256); batches are padded to their longest example with key masks (default: the preprocessor's max_num_patches)")
    .addOption(new Option("--budget-draw <how>", "NaFlex: draw a patch budget per example, or one per micro-batch (the SigLIP 2 paper's choice; less padding)").choices(["example", "batch"]).default(undefined, "example"))
    .option("--loss-chunk <n>", "compute the sigmoid loss in n×n blocks (same loss and gradients, bounded memory)", posInt("--loss-chunk"))
    .option("--seed <n>", "seed of the data order (and of the init with --from-scratch), below 2^32", nonNegInt("--seed", 2 ** 32 - 1), 0)
    .option("--save-every <n>", "also save every n steps (0: only at the end)", nonNegInt("--save-every"), 100)
    .option("--log-every <n>", "print a JSON line every n steps", posInt("--log-every"), 1)
    .option("--resume", "continue the run saved in --out (same settings give the same result as an uninterrupted run)")
    .option("--stop-at <n>", "stop after step n and save (continue later with --resume)", posInt("--stop-at"))
    .option("--from-scratch", "re-initialise the weights instead of loading them (t' = log 10, b = -10)")
    .option("--threads <n>", "onnxruntime intra-op threads (at most 4 per CPU, at least 8)", intOption("--threads", { min: 1, max: maxThreads, maxWhy: CPU_BOUND }))
    .option("--no-lowercase", "do not lowercase captions")
    .option("--offline", "never contact the Hub")
    .option("--curate-teacher <model>", "ACID curation: a checkpoint (local or Hub id; any size, tokenizer or NaFlex) that scores each super-batch with the student; train on the most learnable examples (student loss − teacher loss)")
    .option("--curate-ratio <f>", "fraction of each super-batch kept, in (0, 1] (super-batch = round(--batch-size / f); default 0.5)", numOption("--curate-ratio", { min: 0, minExclusive: true, max: 1, describe: "a number in (0, 1]" }))
    .addOption(new Option("--curate-dtype <d>", "teacher weight precision").choices(["fp32", "int8"]).default("fp32"))
    .addOption(new Option("--lang-mix <weights>", "sample by language: LANG=WEIGHT,… (manifest rows carry \"lang\"; other = every language not named), e.g. en=0.9,other=0.1").argParser(langMixOption))
    .action((opts: TrainOpts) => cmdTrain(opts));
}
