/**
 * The training loop: seeded batches → one onnxruntime session per micro-batch (forward,
 * sigmoid loss, backward) → gradient accumulation → global-norm clipping → AdamW (JS) →
 * periodic Hub-layout checkpoints with optimiser state, resumable to the same result.
 *
 * Gradient accumulation: a global batch of B pairs is split into `accumSteps` micro-batches of
 * m = B / accumSteps; each micro-batch is scored with its own m×m sigmoid loss (its negatives are
 * the other m − 1 pairs of the micro-batch) and the losses and gradients are averaged. With
 * accumSteps = 1 this is exactly the big_vision loss of the global batch.
 */
import { SiglipError } from "../errors.js";
import type { SiglipConfig } from "../weights/config.js";
import { loadTrainingState, saveCheckpoint, type TrainerState } from "./checkpoint.js";
import { batchIndices, type PairDataset } from "./data.js";
import type { ParamSpec } from "../models/params.js";
import { towerOf } from "./model.js";
import { AdamW, globalNorm, type OptimizerConfig } from "./optim.js";
import { TrainSession, type Params } from "./session.js";

export type Freeze = "none" | "vision" | "text";

export interface TrainConfig {
  /** Global batch size (pairs per optimiser step). */
  batchSize: number;
  /** Micro-batches per step (batchSize must be a multiple). */
  accumSteps: number;
  /** Total optimiser steps. */
  steps: number;
  seed: number;
  optimizer: OptimizerConfig;
  /** Freeze the image tower (LiT), the text tower, or neither. t' and b always train. */
  freeze: Freeze;
  /** Chunked loss block size (default: the full m×m loss). */
  lossChunk?: number;
  threads?: number;
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
}

/** Settings that must match for a resume to be exact. */
function runSettings(c: TrainConfig): Record<string, unknown> {
  return { batchSize: c.batchSize, accumSteps: c.accumSteps, steps: c.steps, seed: c.seed, optimizer: c.optimizer, freeze: c.freeze, lossChunk: c.lossChunk ?? null };
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

  private constructor(
    readonly model: SiglipConfig,
    readonly specs: ParamSpec[],
    readonly params: Params,
    readonly config: TrainConfig,
    readonly optimizer: AdamW,
    private readonly session: TrainSession,
  ) {}

  static async create(model: SiglipConfig, params: Params, c: TrainConfig): Promise<Trainer> {
    if (!Number.isInteger(c.accumSteps) || c.accumSteps < 1 || c.batchSize % c.accumSteps !== 0) {
      throw new SiglipError("usage", `--batch-size ${c.batchSize} must be a multiple of --accum-steps ${c.accumSteps}`);
    }
    const micro = c.batchSize / c.accumSteps;
    if (micro < 2) throw new SiglipError("usage", `micro-batches of ${micro} pair have no negatives; use a larger --batch-size or fewer --accum-steps`);
    const trainable = (p: ParamSpec): boolean => {
      const t = towerOf(p.name);
      return !(t !== null && t === c.freeze);
    };
    const opts: Parameters<typeof TrainSession.create>[1] = { batch: micro, trainable };
    if (c.lossChunk !== undefined) opts.lossChunk = c.lossChunk;
    if (c.threads !== undefined) opts.threads = c.threads;
    const session = await TrainSession.create(model, opts);
    const optimizer = new AdamW(c.optimizer, session.params, session.trainable);
    return new Trainer(model, session.params, params, c, optimizer, session);
  }

  get step(): number {
    return this.optimizer.step;
  }

  /** Continue from a directory written by {@link save} (parameters, moments, step, history). */
  resume(dir: string): void {
    const state = loadTrainingState(dir, this.specs, this.params, this.optimizer);
    const want = runSettings(this.config);
    if (JSON.stringify(state.run) !== JSON.stringify(want)) {
      const flat = (o: unknown, pre = ""): Array<[string, string]> =>
        o !== null && typeof o === "object" ? Object.entries(o as Record<string, unknown>).flatMap(([k, v]) => flat(v, `${pre}${k}.`)) : [[pre.slice(0, -1), JSON.stringify(o)]];
      const saved = new Map(flat(state.run));
      const diffs = flat(want).filter(([k, v]) => saved.get(k) !== v).map(([k, v]) => `${k} ${saved.get(k) ?? "unset"} → ${v}`);
      throw new SiglipError("usage", `${dir}: the run was saved with other settings (${diffs.slice(0, 4).join(", ")}${diffs.length > 4 ? ", …" : ""}); resume with the same --batch-size, --accum-steps, --steps, --seed, optimiser and freeze options`);
    }
    this.history.splice(0, this.history.length, ...state.history);
  }

  /** One optimiser step on global batch number `this.step`. */
  async trainStep(data: PairDataset): Promise<StepInfo> {
    const t0 = performance.now();
    const c = this.config;
    const indices = batchIndices(data.size, c.batchSize, c.seed, this.step);
    const m = c.batchSize / c.accumSteps;
    let grads: Params | null = null;
    let loss = 0;
    for (let k = 0; k < c.accumSteps; k++) {
      const r = await this.session.step(this.params, await data.batch(indices.slice(k * m, (k + 1) * m)));
      loss += r.loss / c.accumSteps;
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
    const info: StepInfo = {
      step: this.step, loss, lr, gradNorm,
      pairsPerSecond: c.batchSize / ((performance.now() - t0) / 1000),
      logitScale: this.params.get("logit_scale")![0]!, logitBias: this.params.get("logit_bias")![0]!,
    };
    this.history.push({ step: info.step, loss, lr, gradNorm });
    return info;
  }

  /** Write a Hub-layout checkpoint plus optimiser state to `dir`. */
  save(dir: string, configJson: unknown, sourceDir?: string): void {
    const o: Parameters<typeof saveCheckpoint>[1] = {
      configJson, specs: this.specs, params: this.params, optimizer: this.optimizer,
      state: { step: this.step, run: runSettings(this.config), history: this.history },
    };
    if (sourceDir !== undefined) o.sourceDir = sourceDir;
    saveCheckpoint(dir, o);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
