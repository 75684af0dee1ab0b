/**
 * Embedding maths shared by every task: L2 normalisation, SigLIP logits and
 * per-pair sigmoid probabilities (spec §1.7). No softmax anywhere: each
 * image–text pair is an independent binary decision.
 */
import { SiglipError } from "../errors.js";

/** L2-normalise one vector (plain norm, as transformers: `x / ‖x‖₂`). */
export function l2normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  const n = Math.sqrt(s);
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i]! / n;
  return out;
}

/** Split a flat (n, d) array into n vectors (copies). */
export function rows(flat: Float32Array, d: number): Float32Array[] {
  const n = flat.length / d;
  return Array.from({ length: n }, (_, i) => flat.slice(i * d, (i + 1) * d));
}

/** Dot product. */
export function dot(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new SiglipError("input", `embedding dimension mismatch: ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Logistic sigmoid, stable for large |x|. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** Learned temperature and bias: `logit = cos · exp(logitScale) + logitBias`. */
export interface LogitParams {
  /** Raw `logit_scale` (log space). */
  logitScale: number;
  logitBias: number;
}

/**
 * Logits (nImages × nTexts, row-major by image) from L2-normalised embeddings, in float64
 * (so any `logit_scale` up to ≈ 709.78 gives finite logits; a larger one, whose exponential
 * overflows float64, is an error naming it).
 */
export function logitsPerImage(images: Float32Array[], texts: Float32Array[], p: LogitParams): number[][] {
  const scale = Math.exp(p.logitScale);
  if (!Number.isFinite(scale) || !Number.isFinite(p.logitBias)) {
    throw new SiglipError("checkpoint", `logit_scale ${p.logitScale} / logit_bias ${p.logitBias}: exp(logit_scale) + logit_bias is not finite`, { subject: "logit_scale" });
  }
  return images.map((im) => texts.map((tx) => dot(im, tx) * scale + p.logitBias));
}

/** Cosine similarity of corresponding rows of two (n, d) arrays (1 for a pair of zero rows). */
export function rowCosines(a: ArrayLike<number>, b: ArrayLike<number>, d: number): number[] {
  const out: number[] = [];
  for (let r = 0; r * d < a.length; r++) {
    let ab = 0, aa = 0, bb = 0;
    for (let i = r * d; i < (r + 1) * d; i++) {
      ab += a[i]! * b[i]!;
      aa += a[i]! * a[i]!;
      bb += b[i]! * b[i]!;
    }
    out.push(aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb));
  }
  return out;
}
