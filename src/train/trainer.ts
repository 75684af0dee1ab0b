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
 * else the full logits).
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
 */
import { SiglipError } from "../errors.js";
import type { SiglipConfig } from "../weights/config.js";
import { loadTrainingState, readTrainerState, saveCheckpoint, type TrainerState } from "./checkpoint.js";
import { batchIndices, type PairDataset } from "./data.js";
import type { ParamSpec } from "../models/params.js";
import { decoderConfig } from "../models/locca.js";
import { buildDecoderBatch } from "./locca-batch.js";
import { towerOf, type Objective, type Tower } from "./model.js";
import { Rng, mixSeed } from "./rng.js";
import { locCaTargets, type LocCaTargets } from "./scenes/locca.js";
import { AdamW, globalNorm, type OptimizerConfig } from "./optim.js";
import { TrainSession, type DecoderBatch, type Params } from "./session.js";
import { DistillPhase, checkDistill, distillSpecs, initDistillParams, isDistillParam, loadDistillState, switchStep, type DistillConfig } from "./distill.js";

export type Freeze = "none" | "vision" | "text";

/** The objectives a run may name. */
export const OBJECTIVES: readonly Objective[] = ["sigmoid", "locca"];

/** Default LocCa vocabulary chunk: used when the vocabulary is larger than this. */
export const DEFAULT_VOCAB_CHUNK = 8192;

/** Mixed into the seed for the per-step LocCa RNG (region choice, parallel captions). */
const LOCCA_STREAM = 0x1cca;

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
  /** Chunked loss block size (default: the full m×m loss). */
  lossChunk?: number;
  threads?: number;
  /** Self-distillation + masked prediction from `distill.start` of the run (default: off). */
  distill?: DistillConfig;
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
}

/** Settings that must match for a resume to be exact. */
function runSettings(c: TrainConfig, vocabChunk: number | null): Record<string, unknown> {
  const r: Record<string, unknown> = { batchSize: c.batchSize, accumSteps: c.accumSteps, steps: c.steps, seed: c.seed, optimizer: c.optimizer, freeze: freezeName(c.freeze), lossChunk: c.lossChunk ?? null };
  const obj = objectivesOf(c);
  // sigmoid-only runs keep the settings of earlier versions (their saves stay resumable)
  if (obj.join(",") !== "sigmoid") Object.assign(r, { objectives: obj, vocabChunk });
  if (c.distill) r["distill"] = c.distill;
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
    const trainable = (p: ParamSpec): boolean => {
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
      lo = { sequences: 3 * micro, length: model.text_config.max_position_embeddings, vocabChunk: chunk !== null && chunk < vocab ? chunk : null };
      opts.locca = { sequences: lo.sequences, length: lo.length, ...(lo.vocabChunk !== null ? { vocabChunk: lo.vocabChunk } : {}) };
    }
    if (c.lossChunk !== undefined) opts.lossChunk = c.lossChunk;
    if (c.threads !== undefined) opts.threads = c.threads;
    const session = await TrainSession.create(model, opts);
    const missing = session.params.find((s) => !params.has(s.name));
    if (missing) throw new Error(`internal: no value for parameter ${missing.name}`);
    const optimizer = new AdamW(c.optimizer, session.params, session.trainable);
    return new Trainer(model, session.params, params, c, optimizer, session, lo, opts);
  }

  /** The decoder rows of micro-batch `indices` (see the module comment). */
  private async decoderRows(data: PairDataset, indices: readonly number[], rng: Rng): Promise<DecoderBatch> {
    const ld = data.locca;
    if (!ld) throw new SiglipError("usage", "the LocCa objective needs a dataset with LocCa rows (captions, optional regions)");
    const lo = this.locca!;
    const examples: LocCaTargets[] = [];
    for (const i of indices) {
      const { row, width, height } = await ld.row(i);
      examples.push(locCaTargets(row, width, height, rng));
    }
    return buildDecoderBatch(examples, { length: lo.length, sequences: lo.sequences, specials: ld.specials, tokenize: ld.tokenize, rng });
  }

  get step(): number {
    return this.optimizer.step;
  }

  /** Continue from a directory written by {@link save} (parameters, moments, step, history). */
  resume(dir: string): void {
    const state = readTrainerState(dir); // settings first: a mismatch is named before any tensor is read
    const want = runSettings(this.config, this.locca?.vocabChunk ?? null);
    if (JSON.stringify(state.run) !== JSON.stringify(want)) {
      const flat = (o: unknown, pre = ""): Array<[string, string]> =>
        o !== null && typeof o === "object" ? Object.entries(o as Record<string, unknown>).flatMap(([k, v]) => flat(v, `${pre}${k}.`)) : [[pre.slice(0, -1), JSON.stringify(o)]];
      const saved = new Map(flat(state.run));
      const now = new Map(flat(want));
      const keys = [...new Set([...now.keys(), ...saved.keys()])]; // a setting only the saved run had counts too
      const diffs = keys.filter((k) => saved.get(k) !== now.get(k)).map((k) => `${k} ${saved.get(k) ?? "unset"} → ${now.get(k) ?? "unset"}`);
      throw new SiglipError("usage", `${dir}: the run was saved with other settings (${diffs.slice(0, 4).join(", ")}${diffs.length > 4 ? ", …" : ""}); resume with the same --batch-size, --accum-steps, --steps, --seed, optimiser, freeze, objective and --distill options`);
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
    const indices = batchIndices(data.size, c.batchSize, c.seed, this.step);
    const m = c.batchSize / c.accumSteps;
    let grads: Params | null = null;
    let loss = 0;
    let sigmoidLoss = 0;
    let loccaLoss = 0;
    const rng = this.locca ? new Rng(mixSeed(mixSeed(c.seed, LOCCA_STREAM), this.step)) : null;
    for (let k = 0; k < c.accumSteps; k++) {
      const part = indices.slice(k * m, (k + 1) * m);
      const batch = await data.batch(part);
      if (rng) batch.decoder = await this.decoderRows(data, part, rng);
      if (drng) batch.distill = await this.distill!.prepare(batch.pixelValues, batch.n, drng);
      const r = await this.session.step(this.params, batch);
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
    const gradNorm = this.optimizer.update(this.params, grads!);
    const bad = firstNonFinite(this.params);
    if (bad) throw diverged(step, `the update made ${bad} non-finite`, lr);
    this.distill?.afterUpdate(this.params);
    const info: StepInfo = {
      step: this.step, loss, lr, gradNorm,
      pairsPerSecond: c.batchSize / ((performance.now() - t0) / 1000),
      logitScale: this.params.get("logit_scale")![0]!, logitBias: this.params.get("logit_bias")![0]!,
    };
    const h: TrainerState["history"][number] = { step: info.step, loss, lr, gradNorm };
    if (this.locca) {
      info.sigmoidLoss = h.sigmoidLoss = sigmoidLoss;
      info.loccaLoss = h.loccaLoss = loccaLoss;
    }
    if (this.distill) {
      info.sigmoidLoss = h.sigmoidLoss = sigmoidLoss;
      info.sdLoss = h.sdLoss = sdLoss;
      info.mpLoss = h.mpLoss = mpLoss;
    }
    this.history.push(h);
    return info;
  }

  /** Write a Hub-layout checkpoint plus optimiser state to `dir`. */
  save(dir: string, configJson: unknown, sourceDir?: string): void {
    const o: Parameters<typeof saveCheckpoint>[1] = {
      configJson, specs: this.specs, params: this.params, optimizer: this.optimizer,
      state: { step: this.step, run: runSettings(this.config, this.locca?.vocabChunk ?? null), history: this.history },
    };
    if (this.distill) o.distillState = this.distill.stateTensors();
    if (sourceDir !== undefined) o.sourceDir = sourceDir;
    saveCheckpoint(dir, o);
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.distill?.release();
  }
}
