/**
 * AdamW with an explicit weight-decay convention, global-norm clipping and the warm-up +
 * cosine schedule (training-recipe §6). Plain typed-array code: exact, simple to test and to
 * checkpoint (the state is two float32 moment tensors per parameter plus a step count). The
 * per-element update runs in a WebAssembly SIMD kernel with the same arithmetic where the
 * engine has one (./adamw-simd.ts: the same bits, about twice as fast).
 *
 * Update of a parameter θ with gradient g at step s (s = updates done so far, from 0):
 *
 *   g      ← g · min(1, clip / ‖g_all‖₂)                          (global norm over all trainable tensors)
 *   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²,  d = m̂ / (√v̂ + ε)  (bias-corrected with s+1)
 *   big_vision: θ ← θ − sched(s)·(lr·d + wd·θ)      wd NOT multiplied by lr (optax chain:
 *               clip → scale_by_adam → scale(lr) → add_decayed_weights(wd) → scale_by_schedule)
 *   torch:      θ ← θ − sched(s)·lr·(d + wd·θ)      (torch.optim.AdamW: decay scaled by the lr)
 *
 * Decay applies only to parameters whose spec has `decay: true` (kernels; big_vision's mask).
 *   sched(s) = min(1, s / warmup) · ½(1 + cos(π · clamp((s − warmup) / (total − warmup), 0, 1)))
 */
import type { ParamSpec } from "../models/params.js";
import { adamwSimd } from "./adamw-simd.js";
import type { Params } from "./session.js";

export type DecayConvention = "big_vision" | "torch";

export interface OptimizerConfig {
  /** Peak learning rate. */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** How weight decay relates to the learning rate (see the module comment). */
  decayConvention: DecayConvention;
  /** Global-norm clip threshold; 0 or Infinity disables clipping. */
  clipNorm: number;
  warmupSteps: number;
  totalSteps: number;
}

/** big_vision / SigLIP 2 defaults at small scale: lr 1e-3, β2 0.95 (SigLIP v1), wd 1e-4 (big_vision convention), clip 1. */
export const DEFAULT_OPTIMIZER: Omit<OptimizerConfig, "totalSteps" | "warmupSteps"> = {
  lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 1e-4, decayConvention: "big_vision", clipNorm: 1,
};

/** Linear warm-up from 0, then cosine decay to 0 at `total`. */
export function scheduleMultiplier(step: number, warmup: number, total: number): number {
  const warm = warmup > 0 ? Math.min(1, step / warmup) : 1;
  const span = total - warmup;
  const progress = span > 0 ? Math.min(1, Math.max(0, (step - warmup) / span)) : 1;
  return warm * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** ‖g‖₂ over every tensor. */
export function globalNorm(grads: Iterable<Float32Array>): number {
  let s = 0;
  for (const g of grads) {
    const n = g.length;
    for (let i = 0; i < n; i++) {
      const x = g[i]!;
      s += x * x;
    }
  }
  return Math.sqrt(s);
}

/**
 * Scale all gradients in place so that their global norm is at most `maxNorm`; returns the norm
 * before clipping (`norm`: that norm when the caller has it already).
 */
export function clipByGlobalNorm(grads: Params, maxNorm: number, norm = globalNorm(grads.values())): number {
  if (maxNorm > 0 && Number.isFinite(maxNorm) && norm > maxNorm) {
    const f = maxNorm / norm;
    for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] = g[i]! * f;
  }
  return norm;
}

/** AdamW state and update. */
export class AdamW {
  /** Updates applied so far. */
  step = 0;
  readonly m: Params = new Map();
  readonly v: Params = new Map();
  private readonly decay: Map<string, boolean>;
  /** The step at which a parameter added by {@link addParams} joined (its bias correction counts from there). */
  private readonly born = new Map<string, number>();
  readonly trainable: readonly string[];
  /** Use the WebAssembly SIMD kernel where the engine has it (false: always the JavaScript loop; tests compare the two). */
  simd = true;

  constructor(readonly config: OptimizerConfig, specs: readonly ParamSpec[], trainable: readonly string[]) {
    this.decay = new Map();
    this.trainable = [];
    this.addParams(specs, trainable);
    this.born.clear();
  }

  /**
   * Add parameters mid-run with fresh state: zero moments, and a bias correction that counts
   * their own updates (as a new optimiser would), while the schedule stays the run's
   * (the SigLIP 2 heads switched on at 80%, src/train/distill.ts). `born`: the step they joined
   * (default now; a resumed run passes the switch step).
   */
  addParams(specs: readonly ParamSpec[], names: readonly string[], born = this.step): void {
    for (const s of specs) this.decay.set(s.name, s.decay);
    const size = new Map(specs.map((s) => [s.name, s.shape.reduce((a, b) => a * b, 1)]));
    for (const n of names) {
      if (this.m.has(n)) throw new Error(`internal: parameter ${n} is already in the optimiser`);
      this.m.set(n, new Float32Array(size.get(n)!));
      this.v.set(n, new Float32Array(size.get(n)!));
      this.born.set(n, born);
    }
    (this.trainable as string[]).push(...names);
  }

  /** The schedule multiplier of the next update. */
  get multiplier(): number {
    return scheduleMultiplier(this.step, this.config.warmupSteps, this.config.totalSteps);
  }

  /** Effective learning rate of the next update (lr × schedule). */
  get learningRate(): number {
    return this.config.lr * this.multiplier;
  }

  /**
   * Clip `grads` (in place) and update `params` in place. Returns the pre-clip global norm
   * (`norm`: the caller's {@link globalNorm} of `grads`, not computed again).
   */
  update(params: Params, grads: Params, norm?: number): number {
    const c = this.config;
    const preClip = clipByGlobalNorm(grads, c.clipNorm, norm);
    const sched = this.multiplier;
    const { beta1: b1, beta2: b2, eps } = c;
    const ob1 = 1 - b1;
    const ob2 = 1 - b2;
    for (const name of this.trainable) {
      const t = this.step + 1 - (this.born.get(name) ?? 0);
      const bc1 = 1 - b1 ** t;
      const bc2 = 1 - b2 ** t;
      const p = params.get(name)!;
      const g = grads.get(name)!;
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      const wd = this.decay.get(name) ? c.weightDecay : 0;
      const decayScale = c.decayConvention === "big_vision" ? sched * wd : sched * c.lr * wd;
      const stepScale = sched * c.lr;
      // the same arithmetic in WebAssembly SIMD, bit for bit, where available (./adamw-simd.ts)
      if (this.simd && adamwSimd(p, g, m, v, { beta1: b1, beta2: b2, eps, bc1, bc2, stepScale, decayScale })) continue;
      const n = p.length;
      for (let i = 0; i < n; i++) {
        const gi = g[i]!;
        const mi = b1 * m[i]! + ob1 * gi;
        const vi = b2 * v[i]! + ob2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const d = mi / bc1 / (Math.sqrt(vi / bc2) + eps);
        const pi = p[i]!;
        p[i] = pi - stepScale * d - decayScale * pi;
      }
    }
    this.step++;
    return preClip;
  }
}
