/**
 * Linear probes on frozen features, as dense-feature evaluations do (training-recipe.md §7.3: a linear
 * classifier per patch on frozen tower outputs, scored by mean IoU): multinomial logistic regression
 * trained by full-batch gradient descent with Adam and L2, in float64, deterministic; and mean IoU.
 */
import { SiglipError } from "../errors.js";

export interface LinearProbe {
  classes: number;
  dim: number;
  /** (classes, dim) row-major, then (classes) bias. */
  weight: Float64Array;
  bias: Float64Array;
}

export interface ProbeOptions {
  /** Full-batch steps (default 300). */
  steps?: number;
  /** Adam learning rate (default 0.05). */
  lr?: number;
  /** L2 weight on the weights (default 1e-4). */
  l2?: number;
}

/** Standardise features in place with the train set's per-dimension mean and std; returns them for the test set. */
export function standardize(x: Float32Array[], stats?: { mean: Float64Array; std: Float64Array }): { mean: Float64Array; std: Float64Array } {
  const d = x[0]?.length ?? 0;
  let s = stats;
  if (!s) {
    const mean = new Float64Array(d);
    const sq = new Float64Array(d);
    for (const v of x) for (let i = 0; i < d; i++) { mean[i] += v[i]!; sq[i] += v[i]! * v[i]!; }
    const std = new Float64Array(d);
    for (let i = 0; i < d; i++) { mean[i] /= x.length; std[i] = Math.sqrt(Math.max(sq[i]! / x.length - mean[i]! ** 2, 1e-12)); }
    s = { mean, std };
  }
  for (const v of x) for (let i = 0; i < d; i++) v[i] = (v[i]! - s.mean[i]!) / s.std[i]!;
  return s;
}

/** Train a softmax classifier on (x[i], y[i]). */
export function trainLinearProbe(x: readonly Float32Array[], y: ArrayLike<number>, classes: number, o: ProbeOptions = {}): LinearProbe {
  const n = x.length;
  if (n === 0 || n !== y.length) throw new SiglipError("input", `linear probe: ${n} features for ${y.length} labels`);
  const d = x[0]!.length;
  const steps = o.steps ?? 300, lr = o.lr ?? 0.05, l2 = o.l2 ?? 1e-4;
  const P = classes * d + classes;
  const w = new Float64Array(P); // weights then biases
  const m = new Float64Array(P), v = new Float64Array(P), g = new Float64Array(P);
  const z = new Float64Array(classes);
  for (let t = 1; t <= steps; t++) {
    g.fill(0);
    for (let i = 0; i < n; i++) {
      const xi = x[i]!;
      let max = -Infinity;
      for (let c = 0; c < classes; c++) {
        let s = w[classes * d + c]!;
        for (let k = 0; k < d; k++) s += w[c * d + k]! * xi[k]!;
        z[c] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let c = 0; c < classes; c++) { z[c] = Math.exp(z[c]! - max); sum += z[c]!; }
      for (let c = 0; c < classes; c++) {
        const e = z[c]! / sum - (y[i] === c ? 1 : 0);
        for (let k = 0; k < d; k++) g[c * d + k] += (e * xi[k]!) / n;
        g[classes * d + c] += e / n;
      }
    }
    for (let p = 0; p < classes * d; p++) g[p] += l2 * w[p]!;
    for (let p = 0; p < P; p++) {
      m[p] = 0.9 * m[p]! + 0.1 * g[p]!;
      v[p] = 0.999 * v[p]! + 0.001 * g[p]! * g[p]!;
      w[p] -= (lr * (m[p]! / (1 - 0.9 ** t))) / (Math.sqrt(v[p]! / (1 - 0.999 ** t)) + 1e-8);
    }
  }
  return { classes, dim: d, weight: w.subarray(0, classes * d), bias: w.subarray(classes * d) };
}

/** Arg-max class of each feature vector. */
export function predictLinearProbe(p: LinearProbe, x: readonly Float32Array[]): Uint8Array {
  const out = new Uint8Array(x.length);
  x.forEach((xi, i) => {
    let best = -Infinity;
    for (let c = 0; c < p.classes; c++) {
      let s = p.bias[c]!;
      for (let k = 0; k < p.dim; k++) s += p.weight[c * p.dim + k]! * xi[k]!;
      if (s > best) { best = s; out[i] = c; }
    }
  });
  return out;
}

/** Per-class IoU and their mean over the classes that occur in the truth or the prediction. */
export function meanIoU(pred: ArrayLike<number>, truth: ArrayLike<number>, classes: number): { mIoU: number; perClass: number[] } {
  if (pred.length !== truth.length) throw new SiglipError("input", `mean IoU: ${pred.length} predictions for ${truth.length} labels`);
  const inter = new Array<number>(classes).fill(0), uni = new Array<number>(classes).fill(0);
  for (let i = 0; i < pred.length; i++) {
    const a = pred[i]!, b = truth[i]!;
    if (a === b) { inter[a]!++; uni[a]!++; } else { uni[a]!++; uni[b]!++; }
  }
  const perClass = inter.map((x, c) => (uni[c] ? x / uni[c]! : Number.NaN));
  const present = perClass.filter((x) => !Number.isNaN(x));
  return { mIoU: present.length ? present.reduce((s, x) => s + x, 0) / present.length : 0, perClass };
}
