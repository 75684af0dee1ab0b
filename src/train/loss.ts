/**
 * The SigLIP sigmoid loss as graph ops (training-recipe §1, big_vision `siglip.py`):
 *
 *   zimg, ztxt = z / (‖z‖ + 1e-8)                       (big_vision two_towers.py)
 *   logits     = exp(t')·zimg·ztxtᵀ + b                 (t' = logit_scale, b = logit_bias)
 *   labels     = 2I − 1
 *   L          = −Σ_ij log σ(labels ⊙ logits) / n        (normalised by n, not n²)
 *
 * `−log σ(x) = softplus(−x)`, which onnxruntime evaluates stably (no log of a sigmoid).
 *
 * {@link sigmoidLoss} builds the full n×n matrix and is differentiated by autodiff.
 * {@link chunkedSigmoidLoss} walks k×k blocks (image chunk i × text chunk j, like devices
 * exchanging text embeddings in big_vision's chunked loss) and writes each block's analytic
 * gradient next to its forward: no value larger than one block is ever built, and nothing of a
 * block outlives it.
 */
import type { Graph } from "../graph/graph.js";

/** Normalisation epsilon of big_vision's `two_towers.py`. */
export const NORM_EPS = 1e-8;
/** Initial values of big_vision / SigLIP: t' = log 10, b = −10. */
export const INIT_LOGIT_SCALE = Math.log(10);
export const INIT_LOGIT_BIAS = -10;

const f32 = (g: Graph, v: number): string => g.init(g.fresh("loss_const"), Float32Array.of(v), []);

/** `z / (‖z‖₂ + 1e-8)` over the last axis. */
export function l2normalize(g: Graph, z: string): string {
  const norm = g.op("Sqrt", [g.op("ReduceSum", [g.mul(z, z), g.constI64([-1])], { keepdims: { int: 1 } })]);
  return g.div(z, g.add(norm, f32(g, NORM_EPS)));
}

/** The 2I−1 label matrix of an (rows × cols) block whose diagonal starts at (r0, c0) of the full matrix. */
function labelBlock(rows: number, cols: number, r0: number, c0: number): Float32Array {
  const out = new Float32Array(rows * cols).fill(-1);
  for (let r = 0; r < rows; r++) {
    const c = r0 + r - c0;
    if (c >= 0 && c < cols) out[r * cols + c] = 1;
  }
  return out;
}

export interface FullLoss {
  /** Scalar loss. */
  loss: string;
  /** (n, n) logits, image rows × text columns. */
  logits: string;
}

/**
 * Full sigmoid loss of n normalised image embeddings `zimg` (n, d) against n text embeddings
 * `ztxt` (n, d); `logitScale` (t') and `logitBias` (b) are scalars of shape [1].
 */
export function sigmoidLoss(g: Graph, zimg: string, ztxt: string, logitScale: string, logitBias: string, n: number): FullLoss {
  const cos = g.matmul(zimg, g.transpose(ztxt, [1, 0])); // (n, n)
  const logits = g.add(g.mul(cos, g.op("Exp", [logitScale])), logitBias);
  const labels = g.init(g.fresh("labels"), labelBlock(n, n, 0, 0), [n, n]);
  const nll = g.op("Softplus", [g.op("Neg", [g.mul(labels, logits)])]);
  const loss = g.div(g.op("ReduceSum", [nll], { keepdims: { int: 0 } }), f32(g, n));
  return { loss, logits };
}

export interface ChunkedLoss {
  loss: string;
  /** ∂L/∂zimg (n, d), ∂L/∂ztxt (n, d), ∂L/∂t' and ∂L/∂b ([1]). */
  dZimg: string;
  dZtxt: string;
  dLogitScale: string;
  dLogitBias: string;
}

/**
 * The same loss and its gradients, one k×k block at a time (the last chunk may be smaller).
 * For a block S = t·Zi·Zjᵀ + b with labels z: loss += Σ softplus(−z⊙S); with
 * dS = −z⊙σ(−z⊙S)/n: dZi += t·dS·Zj, dZj += t·dSᵀ·Zi, dt' += Σ dS⊙(S − b), db += Σ dS.
 * Feed dZimg / dZtxt to {@link backward} as seeds to reach the tower parameters.
 */
export function chunkedSigmoidLoss(g: Graph, zimg: string, ztxt: string, logitScale: string, logitBias: string, n: number, chunk: number): ChunkedLoss {
  const bounds: Array<[number, number]> = [];
  for (let s = 0; s < n; s += chunk) bounds.push([s, Math.min(n, s + chunk)]);
  const rows = (z: string, [a, b]: [number, number]): string => g.op("Slice", [z, g.constI64([a]), g.constI64([b]), g.constI64([0])]);
  const t = g.op("Exp", [logitScale]);
  const invN = f32(g, 1 / n);
  const sum = (v: string): string => g.op("ReduceSum", [v], { keepdims: { int: 0 } });
  const addAll = (vs: string[]): string => vs.reduce((acc, v) => g.add(acc, v));
  const zi = bounds.map((bd) => rows(zimg, bd));
  const zj = bounds.map((bd) => rows(ztxt, bd));
  const lossParts: string[] = [];
  const dScaleParts: string[] = [];
  const dBiasParts: string[] = [];
  const dImg: string[][] = bounds.map(() => []);
  const dTxt: string[][] = bounds.map(() => []);
  bounds.forEach(([i0, i1], i) => {
    bounds.forEach(([j0, j1], j) => {
      const z = g.init(g.fresh("labels"), labelBlock(i1 - i0, j1 - j0, i0, j0), [i1 - i0, j1 - j0]);
      const cos = g.matmul(zi[i]!, g.transpose(zj[j]!, [1, 0]));
      const scaled = g.mul(cos, t); // S − b
      const mzs = g.op("Neg", [g.mul(z, g.add(scaled, logitBias))]); // −z⊙S
      lossParts.push(sum(g.op("Softplus", [mzs])));
      const dS = g.mul(g.op("Neg", [g.mul(z, g.op("Sigmoid", [mzs]))]), invN);
      dScaleParts.push(sum(g.mul(dS, scaled)));
      dBiasParts.push(sum(dS));
      const dSt = g.mul(dS, t);
      dImg[i]!.push(g.matmul(dSt, zj[j]!));
      dTxt[j]!.push(g.matmul(g.transpose(dSt, [1, 0]), zi[i]!));
    });
  });
  const cat = (parts: string[][]): string => {
    const sums = parts.map(addAll);
    return sums.length === 1 ? sums[0]! : g.op("Concat", sums, { axis: { int: 0 } });
  };
  return {
    loss: g.mul(addAll(lossParts), invN),
    dZimg: cat(dImg),
    dZtxt: cat(dTxt),
    dLogitScale: g.reshape(addAll(dScaleParts), [1]),
    dLogitBias: g.reshape(addAll(dBiasParts), [1]),
  };
}
