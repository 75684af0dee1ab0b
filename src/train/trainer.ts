/**
 * The training loop: seeded batches → one onnxruntime session per micro-batch (forward,
 * sigmoid loss, backward) → gradient accumulation → global-norm clipping → AdamW (JS) →
 * periodic Hub-layout checkpoints with optimiser state, resumable to the same result.
 *
 * Gradient accumulation: a global batch of B pairs is split into `accumSteps` micro-batches of
 * m = B / accumSteps; each micro-batch is scored with its own m×m sigmoid loss (its negatives are
 * the other m − 1 pairs of the micro-batch) and the losses and gradients are averaged. With
 * accumSteps = 1 this is exactly the big_vision loss of the global batch.
 *
 * Objectives (`objectives`, default ["sigmoid"]): "sigmoid" and/or "locca". With LocCa, the
 * parameters include the decoder's `decoder.*` (src/models/locca.ts; fresh ones from
 * ./init.ts `initDecoderParams`), and each micro-batch of m pairs gets S = 3m decoder rows of
 * L = text max_position_embeddings tokens (./locca-batch.ts `buildDecoderBatch`): the m captions,
 * then one referring expression (ARef) and one grounded caption (GCap) per example with regions.
 * The region choices and the parallel-caption draws (p = 0.5) come from one RNG per step, seeded
 * by (seed, step): a run is reproducible and a resumed run sees the same rows. The LocCa loss
 * uses vocabulary chunks of `vocabChunk` rows (default: 8192 when the vocabulary is larger,
 * else the full logits). `arefRows` k (default 1; an experiment knob for the task mix) gives each
 * example with regions k referring-expression rows instead of one (S = (2 + k)m): the LocCa loss
 * is the mean over rows, so the ARef share of it goes from 1/3 to k/(2 + k).
 *
 * `boxFormat` (default "canonical"; src/tasks/boxes.ts `BoxFormat`): how the referring-expression
 * and grounded-caption rows write their boxes ("padded": three digits per coordinate); it is in
 * the run settings (when not the default) and in the saved decoder.safetensors metadata
 * (`box_format`), which `locate` reads. `memoryPosition` (default "none"; src/models/locca.ts):
 * the decoder's fixed position code on the image tokens, recorded the same way
 * (`memory_position`), which `caption` and `locate` rebuild the decoder with.
 *
 * `freezeParams` (default none): parameter names that never train (no update, no weight decay),
 * e.g. "vision_model.embeddings.position_embedding.weight" to keep a sine–cosine position table
 * fixed.
 *
 * What trains: a frozen tower (`freeze`: a list of "vision", "text") never does. The sigmoid
 * loss trains t', b and the unfrozen towers. The LocCa loss trains the decoder and, through
 * cross-attention, an unfrozen image tower up to its final LayerNorm; it reaches neither the MAP
 * head, the text tower nor t', b, so with `objectives: ["locca"]` those stay as they are (no
 * update, no weight decay). With both towers frozen only the decoder
 * trains (the paper's frozen-encoder protocol): the sigmoid loss is then computed and reported
 * (sigmoid_loss) but not trained — t' and b stay fixed too — and the objective list must hold
 * "locca" (else there is nothing to train: a usage error).
 *
 * Self-distillation and masked prediction (`distill`, ./distill.ts): nothing of it exists before
 * step ⌈start·T⌉. At that step the heads and mask token are created (seeded), the training graph
 * is rebuilt with them, the optimiser gets their fresh state, and the teacher is copied from the
 * student; from then on each micro-batch gets its views, masks and teacher targets, and each
 * step ends with the EMA and centre updates. A resume after the switch rebuilds the same state
 * and loads the heads, teacher and centres from the run directory.
 *
 * Curation (`curate`, ./curate.ts): each step draws a super-batch of round(B / ratio) examples,
 * scores them with the student (forward only) and the teacher, and trains on the B most
 * learnable. Language mix (`langMix`, ./lang-mix.ts): batches (or super-batches) are drawn with
 * per-language weights instead of the epoch permutation. Both are recorded per step in the
 * history (`curation` statistics, `langs` counts of the trained examples).
 */
import { SiglipError } from "../errors.js";
import type { SiglipConfig } from "../weights/config.js";
import { loadTrainingState, readTrainerState, saveCheckpoint, type TrainerState } from "./checkpoint.js";
import { batchIndices, type PairDataset } from "./data.js";
import type { ParamSpec } from "../models/params.js";
import { decoderConfig, isMemoryPosition, MEMORY_POSITIONS, type MemoryPosition } from "../models/locca.js";
import { BOX_FORMATS, DEFAULT_BOX_FORMAT, isBoxFormat, type BoxFormat } from "../tasks/boxes.js";
import { buildDecoderBatch } from "./locca-batch.js";
import { towerOf, type Objective, type Tower } from "./model.js";
import { Rng, mixSeed } from "./rng.js";
import { locCaTargets, type LocCaTargets } from "./scenes/locca.js";
import { AdamW, globalNorm, type OptimizerConfig } from "./optim.js";
import { TrainSession, type DecoderBatch, type Params } from "./session.js";
import { DistillPhase, checkDistill, distillSpecs, initDistillParams, isDistillParam, loadDistillState, switchStep, type DistillConfig } from "./distill.js";
import { NAFLEX_DISTILL_REFUSED } from "./distill-config.js";
import { drawBudget, maxBudget, paddedLength, type PatchBudgets } from "./naflex-data.js";
import { Curator, superBatchSize, type CurationStats, type TeacherModel } from "./curate.js";
import { LangMixSampler, countLangs, langMixString, type LangMixSpec } from "./lang-mix.js";

export type Freeze = "none" | "vision" | "text";

/** The objectives a run may name. */
export const OBJECTIVES: readonly Objective[] = ["sigmoid", "locca"];

/** Default LocCa vocabulary chunk: used when the vocabulary is larger than this. */
export const DEFAULT_VOCAB_CHUNK = 8192;

/** Mixed into the seed for the per-step LocCa RNG (region choice, parallel captions). */
const LOCCA_STREAM = 0x1cca;

/** Mixed into the seed for the per-step NaFlex patch-budget draws. */
const NAFLEX_STREAM = 0xf1e7;

/** The frozen towers of a freeze setting ("none", a tower, or a list). */
export function frozenTowers(f: Freeze | readonly Tower[]): Set<Tower> {
  if (typeof f === "string") return new Set(f === "none" ? [] : [f]);
  return new Set(f);
}

/** The saved form of a freeze setting: "none", "vision", "text" or "vision,text". */
function freezeName(f: Freeze | readonly Tower[]): string {
  const t = frozenTowers(f);
  return (["vision", "text"] as const).filter((x) => t.has(x)).join(",") || "none";
}

export interface TrainConfig {
  /** Global batch size (pairs per optimiser step). */
  batchSize: number;
  /** Micro-batches per step (batchSize must be a multiple). */
  accumSteps: number;
  /** Total optimiser steps. */
  steps: number;
  seed: number;
  optimizer: OptimizerConfig;
  /** Freeze the image tower (LiT), the text tower, both (decoder only), or neither. */
  freeze: Freeze | readonly Tower[];
  /** Default ["sigmoid"]. */
  objectives?: readonly Objective[];
  /** LocCa loss in vocabulary chunks of this many rows (default: see the module comment). */
  vocabChunk?: number;
  /** LocCa: referring-expression rows per example with regions (default 1; see the module comment). */
  arefRows?: number;
  /** Parameters by name that never train (default none). */
  freezeParams?: readonly string[];
  /** LocCa: how boxes are written in the decoder's rows (default canonical; see the module comment). */
  boxFormat?: BoxFormat;
  /** LocCa: the decoder's image-token position code (default "none"; see the module comment). */
  memoryPosition?: MemoryPosition;
  /** Chunked loss block size (default: the full m×m loss). */
  lossChunk?: number;
  threads?: number;
  /** Self-distillation + masked prediction from `distill.start` of the run (default: off). */
  distill?: DistillConfig;
  /** NaFlex (model_type "siglip2") only, and required there: the per-example patch budgets (./naflex-data.ts). */
  maxPatches?: PatchBudgets;
  /**
   * NaFlex: draw a budget per example (default) or one per micro-batch ("batch", the paper's
   * choice: every image of a micro-batch gets the same budget, so little is padded).
   */
  budgetDraw?: "example" | "batch";
  // --- curation and language mix (./curate.ts, ./lang-mix.ts) ---
  /** ACID: keep the `ratio` (in (0, 1]) most learnable of each super-batch; `teacherId` names the teacher in the saved settings. */
  curate?: { teacher: TeacherModel; ratio: number; teacherId: string };
  /** Draw batches with these language weights (the dataset must have `langs`). */
  langMix?: LangMixSpec;
}

export interface StepInfo {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Pairs per second over this step. */
  pairsPerSecond: number;
  logitScale: number;
  logitBias: number;
  /** The parts of the loss (the sigmoid part is reported even when it is not trained). */
  sigmoidLoss?: number;
  loccaLoss?: number;
  /** With self-distillation on: the two unweighted losses. */
  sdLoss?: number;
  mpLoss?: number;
  /** With curation: what the selection did. */
  curation?: CurationStats;
  /** With a language mix: languages of the trained examples. */
  langs?: Record<string, number>;
}

/** Settings that must match for a resume to be exact. */
function runSettings(c: TrainConfig, vocabChunk: number | null): Record<string, unknown> {
  const r: Record<string, unknown> = { batchSize: c.batchSize, accumSteps: c.accumSteps, steps: c.steps, seed: c.seed, optimizer: c.optimizer, freeze: freezeName(c.freeze), lossChunk: c.lossChunk ?? null };
  const obj = objectivesOf(c);
  // sigmoid-only runs keep the settings of earlier versions (their saves stay resumable)
  if (obj.join(",") !== "sigmoid") Object.assign(r, { objectives: obj, vocabChunk });
  if (c.distill) r["distill"] = c.distill;
  if (c.maxPatches) r["maxPatches"] = c.maxPatches; // NaFlex
  if (c.budgetDraw === "batch") r["budgetDraw"] = "batch";
  if (c.curate) r["curate"] = { ratio: c.curate.ratio, teacher: c.curate.teacherId };
  if (c.langMix) r["langMix"] = langMixString(c.langMix);
  if ((c.arefRows ?? 1) !== 1) r["arefRows"] = c.arefRows;
  if (c.freezeParams?.length) r["freezeParams"] = [...c.freezeParams];
  if ((c.boxFormat ?? DEFAULT_BOX_FORMAT) !== DEFAULT_BOX_FORMAT) r["boxFormat"] = c.boxFormat;
  if ((c.memoryPosition ?? "none") !== "none") r["memoryPosition"] = c.memoryPosition;
  return r;
}

/** The checked objective list (default ["sigmoid"]), in canonical order. */
function objectivesOf(c: Pick<TrainConfig, "objectives">): Objective[] {
  const list = c.objectives ?? ["sigmoid"];
  for (const o of list) if (!OBJECTIVES.includes(o)) throw new SiglipError("usage", `unknown objective ${JSON.stringify(o)} (expected sigmoid, locca, or sigmoid,locca)`);
  if (list.length === 0) throw new SiglipError("usage", "no objective: give sigmoid, locca, or sigmoid,locca");
  return OBJECTIVES.filter((o) => list.includes(o));
}

/** The error of a run whose loss, gradients or parameters stopped being finite (code "diverged"). */
function diverged(step: number, what: string, lr: number): SiglipError {
  return new SiglipError("diverged", `training diverged at step ${step}: ${what} (learning rate ${lr.toExponential(2)}; try a lower --lr, or --clip)`, { subject: `step ${step}` });
}

/** The name of the first parameter holding NaN or ±Infinity, or null. */
function firstNonFinite(params: Params): string | null {
  for (const [n, v] of params) for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) return n;
  return null;
}

export class Trainer {
  readonly history: TrainerState["history"] = [];
  /** Curation scorer (null: off) and language-mix sampler (built on the first step's data). */
  private curator: Curator | null = null;
  private sampler: LangMixSampler | null = null;

  /** Self-distillation after its switch (null before, and in runs without it). */
  distill: DistillPhase | null = null;
  /** A run directory saved after the switch, whose distillation state the next step loads. */
  private pendingDistill: string | null = null;

  private constructor(
    readonly model: SiglipConfig,
    public specs: ParamSpec[],
    readonly params: Params,
    readonly config: TrainConfig,
    readonly optimizer: AdamW,
    private session: TrainSession,
    /** With LocCa: S rows of L tokens per micro-batch, and the chunk used (null: full logits). */
    private readonly locca: { sequences: number; length: number; vocabChunk: number | null } | null,
    private readonly sessionOptions: Parameters<typeof TrainSession.create>[1],
    /** NaFlex: the graph options, to build one more session per padded length. */
    private readonly naflex: { options: Parameters<typeof TrainSession.create>[1]; sessions: Map<number, TrainSession> } | null = null,
  ) {}

  /** The first step with self-distillation on (null: none in this run). */
  get distillStart(): number | null {
    return this.config.distill ? switchStep(this.config.distill.start, this.config.steps) : null;
  }

  /**
   * Switch self-distillation on (see the module comment): fresh heads and mask token, the
   * graph rebuilt with them, their fresh optimiser state (joined at step `born`), the teacher
   * copied from the student.
   */
  private async switchOn(born: number): Promise<void> {
    const d = checkDistill(this.config.distill!, this.model.vision_config);
    const specs = distillSpecs(this.model.vision_config, d.head);
    for (const [n, v] of initDistillParams(specs, this.config.seed)) this.params.set(n, v);
    const phase = await DistillPhase.start(d, this.model.vision_config, this.params, this.config.threads !== undefined ? { threads: this.config.threads } : {});
    const session = await TrainSession.create(this.model, { ...this.sessionOptions, distill: phase.graphOptions });
    await this.session.release();
    this.session = session;
    this.specs = session.params;
    this.optimizer.addParams(specs, session.trainable.filter(isDistillParam), born);
    this.distill = phase;
  }

  /** The objectives of this run, canonical order. */
  get objectives(): Objective[] {
    return objectivesOf(this.config);
  }

  static async create(model: SiglipConfig, params: Params, c: TrainConfig): Promise<Trainer> {
    if (!Number.isInteger(c.accumSteps) || c.accumSteps < 1 || c.batchSize % c.accumSteps !== 0) {
      throw new SiglipError("usage", `--batch-size ${c.batchSize} must be a multiple of --accum-steps ${c.accumSteps}`);
    }
    const micro = c.batchSize / c.accumSteps;
    if (micro < 2) throw new SiglipError("usage", `micro-batches of ${micro} pair have no negatives; use a larger --batch-size or fewer --accum-steps`);
    const objectives = objectivesOf(c);
    const frozen = frozenTowers(c.freeze);
    for (const t of frozen) if (t !== "vision" && t !== "text") throw new SiglipError("usage", `--freeze: unknown tower ${JSON.stringify(t)} (expected none, vision, text, or vision,text)`);
    const locca = objectives.includes("locca");
    if (c.distill) {
      checkDistill(c.distill, model.vision_config);
      if (frozen.has("vision")) throw new SiglipError("usage", "self-distillation trains the image tower: it cannot be combined with --freeze vision");
    }
    // both towers frozen: the sigmoid loss can only move t' and b, so it is reported, not trained
    const sigmoidTrains = objectives.includes("sigmoid") && frozen.size < 2;
    if (!sigmoidTrains && !locca) {
      throw new SiglipError("usage", "--freeze vision,text with --objectives sigmoid leaves nothing to train; add the LocCa decoder (--objectives sigmoid,locca or locca) or unfreeze a tower");
    }
    const arefRows = c.arefRows ?? 1;
    if (!Number.isInteger(arefRows) || arefRows < 1) throw new SiglipError("usage", `--aref-rows must be a positive integer (got ${c.arefRows})`);
    if (arefRows !== 1 && !locca) throw new SiglipError("usage", "--aref-rows is for the LocCa objective; add locca to --objectives");
    if (c.boxFormat !== undefined && !isBoxFormat(c.boxFormat)) throw new SiglipError("usage", `--box-format must be ${BOX_FORMATS.join(" or ")} (got ${JSON.stringify(c.boxFormat)})`);
    if (c.memoryPosition !== undefined && !isMemoryPosition(c.memoryPosition)) throw new SiglipError("usage", `--memory-position must be ${MEMORY_POSITIONS.join(" or ")} (got ${JSON.stringify(c.memoryPosition)})`);
    if ((c.memoryPosition ?? "none") !== "none" && !locca) throw new SiglipError("usage", "--memory-position is for the LocCa decoder; add locca to --objectives");
    const dv = model.vision_config.hidden_size;
    if (c.memoryPosition === "sincos2d" && (dv % 4 !== 0 || dv < 8)) throw new SiglipError("usage", `--memory-position sincos2d needs an image width that is a multiple of 4 (at least 8); this model's is ${dv}: use --memory-position none`);
    const fixed = new Set(c.freezeParams ?? []);
    const trainable = (p: ParamSpec): boolean => {
      if (fixed.has(p.name)) return false;
      if (p.name.startsWith("decoder.")) return locca;
      if (isDistillParam(p.name)) return true;
      // self-distillation reaches the whole image tower (the MAP head through the pooled view)
      if (c.distill && towerOf(p.name) === "vision") return true;
      const t = towerOf(p.name);
      if (t !== null && frozen.has(t)) return false;
      // the decoder reads the image tokens before the MAP head: only the sigmoid loss reaches the head
      if (t === "vision") return locca && !p.name.startsWith("vision_model.head.") ? true : sigmoidTrains;
      return sigmoidTrains; // the text tower, t' and b: only the sigmoid loss reaches them
    };
    const graphObjectives: Objective[] = [...(sigmoidTrains ? (["sigmoid"] as const) : []), ...(locca ? (["locca"] as const) : [])];
    const opts: Parameters<typeof TrainSession.create>[1] = { batch: micro, trainable, objectives: graphObjectives };
    let lo: { sequences: number; length: number; vocabChunk: number | null } | null = null;
    if (locca) {
      const vocab = decoderConfig(model.text_config, model.vision_config).vocab;
      if (c.vocabChunk !== undefined && (!Number.isInteger(c.vocabChunk) || c.vocabChunk < 1)) throw new SiglipError("usage", `--vocab-chunk ${c.vocabChunk} must be a positive integer`);
      const chunk = c.vocabChunk ?? (vocab > DEFAULT_VOCAB_CHUNK ? DEFAULT_VOCAB_CHUNK : null);
      lo = { sequences: (2 + arefRows) * micro, length: model.text_config.max_position_embeddings, vocabChunk: chunk !== null && chunk < vocab ? chunk : null };
      opts.locca = { sequences: lo.sequences, length: lo.length, ...(lo.vocabChunk !== null ? { vocabChunk: lo.vocabChunk } : {}), ...(c.memoryPosition !== undefined ? { memoryPosition: c.memoryPosition } : {}) };
    }
    if (c.lossChunk !== undefined) opts.lossChunk = c.lossChunk;
    if (c.threads !== undefined) opts.threads = c.threads;
    // ---- NaFlex (h12-naflex): one graph per padded length, the first at the largest budget
    const naflex = model.model_type === "siglip2";
    if (naflex && !c.maxPatches) throw new SiglipError("usage", "NaFlex training needs patch budgets (--max-patches)");
    if (!naflex && c.maxPatches) throw new SiglipError("usage", "--max-patches is for NaFlex (model_type \"siglip2\") checkpoints; this one is fixed-resolution");
    if (c.budgetDraw !== undefined && c.budgetDraw !== "example" && c.budgetDraw !== "batch") throw new SiglipError("usage", `--budget-draw must be example or batch, got ${JSON.stringify(c.budgetDraw)}`);
    if (naflex) opts.patches = paddedLength(maxBudget(c.maxPatches!), c.maxPatches!);
    if (c.distill && naflex) throw new SiglipError("usage", NAFLEX_DISTILL_REFUSED);
    if (c.distill && c.curate) throw new SiglipError("usage", "--distill cannot be combined with curation (--curate-teacher) yet; drop one of them");
    // ----
    const session = await TrainSession.create(model, opts);
    const missing = session.params.find((s) => !params.has(s.name));
    if (missing) throw new Error(`internal: no value for parameter ${missing.name}`);
    for (const n of fixed) if (!session.params.some((s) => s.name === n)) throw new SiglipError("usage", `--freeze-param: no parameter named ${JSON.stringify(n)} in this model`);
    const optimizer = new AdamW(c.optimizer, session.params, session.trainable);
    const nf = naflex ? { options: opts, sessions: new Map([[opts.patches!, session]]) } : null;
    const trainer = new Trainer(model, session.params, params, c, optimizer, session, lo, opts, nf);
    if (c.curate) trainer.curator = await Curator.create(model, c.curate.teacher, c.curate.ratio, c.threads);
    return trainer;
  }

  /**
   * The dataset indices of this step's batch: the epoch permutation, or the language-mix
   * sampler; with curation, the kept part of a super-batch drawn the same way.
   */
  private async drawBatch(data: PairDataset): Promise<{ indices: number[]; curation?: CurationStats }> {
    const c = this.config;
    if (c.langMix && !this.sampler) {
      if (!data.langs) throw new SiglipError("usage", "--lang-mix needs a language per row: give every manifest row a \"lang\" field");
      this.sampler = new LangMixSampler(c.langMix, data.langs);
    }
    const draw = (n: number): number[] => (this.sampler ? this.sampler.indices(n, c.seed, this.step) : batchIndices(data.size, n, c.seed, this.step));
    if (!this.curator) return { indices: draw(c.batchSize) };
    const sel = await this.curator.select(this.params, data, draw(superBatchSize(c.batchSize, this.curator.ratio)), c.batchSize);
    return { indices: sel.indices, curation: sel.stats };
  }

  /** Share of each language among the examples trained on so far (from the history; empty without a language mix). */
  realisedLangs(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const h of this.history) for (const [l, n] of Object.entries(h.langs ?? {})) counts[l] = (counts[l] ?? 0) + n;
    return counts;
  }

  /** The requested share of each language of the data (null before the first step or without a mix). */
  get requestedLangs(): Record<string, number> | null {
    return this.sampler?.requested ?? null;
  }

  /** The decoder rows of micro-batch `indices` (see the module comment). */
  private async decoderRows(data: PairDataset, indices: readonly number[], rng: Rng): Promise<DecoderBatch> {
    const ld = data.locca;
    if (!ld) throw new SiglipError("usage", "the LocCa objective needs a dataset with LocCa rows (captions, optional regions)");
    const lo = this.locca!;
    const examples: LocCaTargets[] = [];
    for (const i of indices) {
      const { row, width, height } = await ld.row(i);
      examples.push(locCaTargets(row, width, height, rng, this.config.arefRows ?? 1, this.config.boxFormat ?? DEFAULT_BOX_FORMAT));
    }
    return buildDecoderBatch(examples, { length: lo.length, sequences: lo.sequences, specials: ld.specials, tokenize: ld.tokenize, rng });
  }

  get step(): number {
    return this.optimizer.step;
  }

  /** NaFlex: the session of a padded length (built on first use); FixRes: the one session. */
  private async sessionFor(length: number | undefined): Promise<TrainSession> {
    if (!this.naflex || length === undefined) return this.session;
    let s = this.naflex.sessions.get(length);
    if (!s) {
      s = await TrainSession.create(this.model, { ...this.naflex.options, patches: length });
      this.naflex.sessions.set(length, s);
    }
    return s;
  }

  /** Continue from a directory written by {@link save} (parameters, moments, step, history). */
  resume(dir: string): void {
    const state = readTrainerState(dir); // settings first: a mismatch is named before any tensor is read
    const want = runSettings(this.config, this.locca?.vocabChunk ?? null);
    if (JSON.stringify(state.run) !== JSON.stringify(want)) {
      const flat = (o: unknown, pre = ""): Array<[string, string]> =>
        o !== null && typeof o === "object" ? Object.entries(o as Record<string, unknown>).flatMap(([k, v]) => flat(v, `${pre}${k}.`)) : [[pre.slice(0, -1), JSON.stringify(o)]];
      const saved = new Map(flat(state.run));
      const wanted = new Map(flat(want));
      const diffs = [
        ...[...wanted].filter(([k, v]) => saved.get(k) !== v).map(([k, v]) => `${k} ${saved.get(k) ?? "unset"} → ${v}`),
        ...[...saved].filter(([k]) => !wanted.has(k)).map(([k, v]) => `${k} ${v} → unset`), // e.g. a curated run resumed without curation
      ];
      throw new SiglipError("usage", `${dir}: the run was saved with other settings (${diffs.slice(0, 4).join(", ")}${diffs.length > 4 ? ", …" : ""}); resume with the same --batch-size, --accum-steps, --steps, --seed, optimiser, freeze, objective, --max-patches, curation, --lang-mix and --distill options`);
    }
    if (this.distill) throw new Error("internal: resume a fresh trainer");
    loadTrainingState(dir, this.specs, this.params, this.optimizer);
    const start = this.distillStart;
    // saved after the switch: the heads, their moments, the teacher and the centres come with the next step
    this.pendingDistill = start !== null && state.step > start ? dir : null;
    this.history.splice(0, this.history.length, ...state.history);
  }

  /**
   * Whatever must exist before step `this.step` (called by {@link trainStep}): self-distillation
   * is switched on at its first step, or its saved state loaded after a resume past it.
   */
  async prepareStep(): Promise<void> {
    const start = this.distillStart;
    if (start === null || this.distill || this.step < start) return;
    const dir = this.pendingDistill;
    await this.switchOn(dir !== null ? start : this.step);
    if (dir !== null) loadDistillState(dir, this.specs, this.params, this.optimizer, this.distill!, this.step);
    this.pendingDistill = null;
  }

  /** One optimiser step on global batch number `this.step`. */
  async trainStep(data: PairDataset): Promise<StepInfo> {
    const t0 = performance.now();
    const c = this.config;
    await this.prepareStep();
    const drng = this.distill ? DistillPhase.stepRng(c.seed, this.step) : null;
    let sdLoss = 0;
    let mpLoss = 0;
    const { indices, curation } = await this.drawBatch(data);
    const m = c.batchSize / c.accumSteps;
    let grads: Params | null = null;
    let loss = 0;
    let sigmoidLoss = 0;
    let loccaLoss = 0;
    const rng = this.locca ? new Rng(mixSeed(mixSeed(c.seed, LOCCA_STREAM), this.step)) : null;
    // NaFlex: every example's patch budget, drawn from (seed, step)
    const budgetRng = c.maxPatches ? new Rng(mixSeed(mixSeed(c.seed, NAFLEX_STREAM), this.step)) : null;
    const perBatch = c.budgetDraw === "batch";
    const budgets = budgetRng ? (perBatch ? Array.from({ length: c.accumSteps }, () => drawBudget(c.maxPatches!, budgetRng)).flatMap((b) => new Array<number>(m).fill(b)) : indices.map(() => drawBudget(c.maxPatches!, budgetRng))) : null;
    for (let k = 0; k < c.accumSteps; k++) {
      const part = indices.slice(k * m, (k + 1) * m);
      const batch = budgets ? await data.batch(part, { budgets: budgets.slice(k * m, (k + 1) * m), lengths: c.maxPatches! }) : await data.batch(part);
      if (rng) batch.decoder = await this.decoderRows(data, part, rng);
      if (drng) batch.distill = await this.distill!.prepare(batch.pixelValues, batch.n, drng);
      const r = await (await this.sessionFor(batch.naflex?.length)).step(this.params, batch);
      sdLoss += (r.sdLoss ?? 0) / c.accumSteps;
      mpLoss += (r.mpLoss ?? 0) / c.accumSteps;
      loss += r.loss / c.accumSteps;
      sigmoidLoss += (r.sigmoidLoss ?? NaN) / c.accumSteps;
      loccaLoss += (r.loccaLoss ?? 0) / c.accumSteps;
      if (grads === null) {
        grads = r.grads;
        if (c.accumSteps > 1) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] = g[i]! / c.accumSteps;
      } else {
        for (const [n, g] of r.grads) {
          const acc = grads.get(n)!;
          for (let i = 0; i < g.length; i++) acc[i] = acc[i]! + g[i]! / c.accumSteps;
        }
      }
    }
    const lr = this.optimizer.learningRate;
    const step = this.step + 1;
    // A diverged run stops here: nothing non-finite reaches the parameters, the moments or a checkpoint.
    if (!Number.isFinite(loss)) throw diverged(step, `the loss is ${loss}`, lr);
    const norm = globalNorm(grads!.values());
    if (!Number.isFinite(norm)) throw diverged(step, `the gradient norm is ${norm}`, lr);
    const gradNorm = this.optimizer.update(this.params, grads!, norm);
    const bad = firstNonFinite(this.params);
    if (bad) throw diverged(step, `the update made ${bad} non-finite`, lr);
    this.distill?.afterUpdate(this.params);
    const info: StepInfo = {
      step: this.step, loss, lr, gradNorm,
      pairsPerSecond: c.batchSize / ((performance.now() - t0) / 1000),
      logitScale: this.params.get("logit_scale")![0]!, logitBias: this.params.get("logit_bias")![0]!,
    };
    const entry: TrainerState["history"][number] = { step: info.step, loss, lr, gradNorm };
    if (this.locca) {
      info.sigmoidLoss = entry.sigmoidLoss = sigmoidLoss;
      info.loccaLoss = entry.loccaLoss = loccaLoss;
    }
    if (this.distill) {
      info.sigmoidLoss = entry.sigmoidLoss = sigmoidLoss;
      info.sdLoss = entry.sdLoss = sdLoss;
      info.mpLoss = entry.mpLoss = mpLoss;
    }
    if (curation) info.curation = entry.curation = curation;
    if (this.sampler) info.langs = entry.langs = countLangs(data.langs!, indices);
    this.history.push(entry);
    return info;
  }

  /** Write a Hub-layout checkpoint plus optimiser state to `dir`. */
  save(dir: string, configJson: unknown, sourceDir?: string): void {
    const o: Parameters<typeof saveCheckpoint>[1] = {
      configJson, specs: this.specs, params: this.params, optimizer: this.optimizer,
      state: { step: this.step, run: runSettings(this.config, this.locca?.vocabChunk ?? null), history: this.history },
    };
    if (this.distill) o.distillState = this.distill.stateTensors();
    if (this.config.boxFormat !== undefined) o.boxFormat = this.config.boxFormat;
    if (this.config.memoryPosition !== undefined) o.memoryPosition = this.config.memoryPosition;
    if (sourceDir !== undefined) o.sourceDir = sourceDir;
    saveCheckpoint(dir, o);
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.distill?.release();
    for (const s of this.naflex?.sessions.values() ?? []) if (s !== this.session) await s.release();
    await this.curator?.release();
  }
}
