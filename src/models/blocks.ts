/**
 * Building blocks shared by every SigLIP tower: the pre-LN transformer encoder
 * layer, tanh-GELU MLP and the multihead-attention-pooling (MAP) head.
 *
 * Reference: transformers `models/siglip/modeling_siglip.py`
 * (SiglipEncoderLayer, SiglipAttention, SiglipMLP, SiglipMultiheadAttentionPoolingHead);
 * spec §1.2 and §1.5. Parameter names below are the checkpoint keys.
 */
import type { Graph } from "../graph/graph.js";
import type { HiddenAct } from "../weights/config.js";
import type { WeightStore } from "../weights/checkpoint.js";

/** Transpose a row-major (rows, cols) matrix. */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = w[base + c]!;
  }
  return out;
}

/** Loads checkpoint tensors into a graph as initializers named after their keys. */
export class WeightLoader {
  constructor(readonly g: Graph, readonly store: WeightStore) {}

  /** A tensor as-is, shape-checked. */
  tensor(key: string, shape: number[]): string {
    return this.g.init(key, this.store.float32(key, shape), shape);
  }

  /**
   * `y = x·Wᵀ + b` for a PyTorch Linear stored as weight (out, in) and bias (out):
   * the weight is transposed once here to (in, out) for MatMul.
   */
  linear(x: string, key: string, inF: number, outF: number): string {
    const w = this.store.float32(`${key}.weight`, [outF, inF]);
    const wT = this.g.init(`${key}.weight.T`, transpose2d(w, outF, inF), [inF, outF]);
    const b = this.tensor(`${key}.bias`, [outF]);
    return this.g.add(this.g.matmul(x, wT), b);
  }

  layerNorm(x: string, key: string, dim: number, eps: number): string {
    return this.g.layerNorm(x, this.tensor(`${key}.weight`, [dim]), this.tensor(`${key}.bias`, [dim]), eps);
  }
}

/** GELU: tanh approximation `0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³)))` or exact erf form. */
export function gelu(g: Graph, u: string, act: HiddenAct): string {
  if (act === "gelu") {
    // 0.5·u·(1 + erf(u/√2))
    const e = g.erf(g.mul(u, g.constF(Math.SQRT1_2)));
    return g.mul(g.mul(u, g.constF(0.5)), g.add(e, g.constF(1)));
  }
  const u3 = g.mul(g.mul(u, u), u);
  const inner = g.mul(g.add(u, g.mul(u3, g.constF(0.044715))), g.constF(Math.sqrt(2 / Math.PI)));
  return g.mul(g.mul(u, g.constF(0.5)), g.add(g.tanh(inner), g.constF(1)));
}

/** SiglipMLP: fc1 (D→M) → GELU → fc2 (M→D). */
export function mlp(w: WeightLoader, x: string, key: string, dim: number, inter: number, act: HiddenAct): string {
  const h = gelu(w.g, w.linear(x, `${key}.fc1`, dim, inter), act);
  return w.linear(h, `${key}.fc2`, inter, dim);
}

/** Shape of one encoder layer's hyper-parameters. */
export interface LayerDims {
  hidden: number;
  inter: number;
  heads: number;
  eps: number;
  act: HiddenAct;
}

/**
 * Scaled dot-product attention on already projected q, k, v (B, S, D):
 * heads are contiguous channel blocks; softmax over keys in fp32.
 * `keyMask` (optional) is an additive (B, 1, 1, S) tensor: 0 for keys to keep,
 * a large negative for padding keys.
 */
export function attention(g: Graph, q: string, k: string, v: string, dims: { hidden: number; heads: number }, keyMask?: string): string {
  const hd = dims.hidden / dims.heads;
  const qh = g.transpose(g.reshape(q, [0, 0, dims.heads, hd]), [0, 2, 1, 3]); // (B, H, Sq, hd)
  const kh = g.transpose(g.reshape(k, [0, 0, dims.heads, hd]), [0, 2, 3, 1]); // (B, H, hd, Sk)
  const vh = g.transpose(g.reshape(v, [0, 0, dims.heads, hd]), [0, 2, 1, 3]); // (B, H, Sk, hd)
  let scores = g.mul(g.matmul(qh, kh), g.constF(hd ** -0.5)); // (B, H, Sq, Sk)
  if (keyMask) scores = g.add(scores, keyMask);
  const ctx = g.matmul(g.softmax(scores, -1), vh); // (B, H, Sq, hd)
  return g.reshape(g.transpose(ctx, [0, 2, 1, 3]), [0, 0, dims.hidden]); // (B, Sq, D)
}

/** SiglipEncoderLayer (pre-LN): x + attn(LN1(x)), then + mlp(LN2(x)). x: (B, S, D). */
export function encoderLayer(w: WeightLoader, x: string, key: string, d: LayerDims, keyMask?: string): string {
  const g = w.g;
  const h = w.layerNorm(x, `${key}.layer_norm1`, d.hidden, d.eps);
  const q = w.linear(h, `${key}.self_attn.q_proj`, d.hidden, d.hidden);
  const k = w.linear(h, `${key}.self_attn.k_proj`, d.hidden, d.hidden);
  const v = w.linear(h, `${key}.self_attn.v_proj`, d.hidden, d.hidden);
  const a = w.linear(attention(g, q, k, v, d, keyMask), `${key}.self_attn.out_proj`, d.hidden, d.hidden);
  const x1 = g.add(x, a);
  const h2 = w.layerNorm(x1, `${key}.layer_norm2`, d.hidden, d.eps);
  return g.add(x1, mlp(w, h2, `${key}.mlp`, d.hidden, d.inter, d.act));
}

/** Checkpoint keys and shapes of one encoder layer. */
export function encoderLayerShapes(key: string, d: { hidden: number; inter: number }): Array<[string, number[]]> {
  const D = d.hidden;
  const M = d.inter;
  const out: Array<[string, number[]]> = [];
  for (const ln of ["layer_norm1", "layer_norm2"]) out.push([`${key}.${ln}.weight`, [D]], [`${key}.${ln}.bias`, [D]]);
  for (const p of ["q_proj", "k_proj", "v_proj", "out_proj"]) out.push([`${key}.self_attn.${p}.weight`, [D, D]], [`${key}.self_attn.${p}.bias`, [D]]);
  out.push([`${key}.mlp.fc1.weight`, [M, D]], [`${key}.mlp.fc1.bias`, [M]], [`${key}.mlp.fc2.weight`, [D, M]], [`${key}.mlp.fc2.bias`, [D]]);
  return out;
}

/** fp32 bytes of one encoder layer's parameters (for splitting large towers into stages). */
export function encoderLayerBytes(d: { hidden: number; inter: number }): number {
  return encoderLayerShapes("x", d).reduce((acc, [, s]) => acc + 4 * s.reduce((a, b) => a + b, 1), 0);
}

/**
 * SiglipMultiheadAttentionPoolingHead: one learned probe query attends over the
 * encoder output X (B, S, D); `y = a + MLP(LN(a))`; returns (B, D).
 * `in_proj_weight` packs q; k; v rows. No residual from the probe.
 */
export function mapHead(w: WeightLoader, x: string, key: string, d: LayerDims, keyMask?: string): string {
  const g = w.g;
  const D = d.hidden;
  const inW = w.store.float32(`${key}.attention.in_proj_weight`, [3 * D, D]);
  const inB = w.store.float32(`${key}.attention.in_proj_bias`, [3 * D]);
  const part = (i: number, name: string): string => {
    const wT = g.init(`${key}.attention.in_proj_weight.${name}.T`, transpose2d(inW.subarray(i * D * D, (i + 1) * D * D), D, D), [D, D]);
    const b = g.init(`${key}.attention.in_proj_bias.${name}`, inB.slice(i * D, (i + 1) * D), [D]);
    return name === "q" ? g.add(g.matmul(w.tensor(`${key}.probe`, [1, 1, D]), wT), b) : g.add(g.matmul(x, wT), b);
  };
  const q = part(0, "q"); // (1, 1, D), broadcast over the batch
  const k = part(1, "k"); // (B, S, D)
  const v = part(2, "v");
  const a = w.linear(attention(g, q, k, v, d, keyMask), `${key}.attention.out_proj`, D, D); // (B, 1, D)
  const y = g.add(a, mlp(w, w.layerNorm(a, `${key}.layernorm`, D, d.eps), `${key}.mlp`, D, d.inter, d.act));
  return g.reshape(y, [-1, D]); // (B, D)
}

/** Checkpoint keys and shapes of the MAP head. */
export function mapHeadShapes(key: string, d: { hidden: number; inter: number }): Array<[string, number[]]> {
  const D = d.hidden;
  const M = d.inter;
  return [
    [`${key}.probe`, [1, 1, D]],
    [`${key}.attention.in_proj_weight`, [3 * D, D]],
    [`${key}.attention.in_proj_bias`, [3 * D]],
    [`${key}.attention.out_proj.weight`, [D, D]],
    [`${key}.attention.out_proj.bias`, [D]],
    [`${key}.layernorm.weight`, [D]],
    [`${key}.layernorm.bias`, [D]],
    [`${key}.mlp.fc1.weight`, [M, D]],
    [`${key}.mlp.fc1.bias`, [M]],
    [`${key}.mlp.fc2.weight`, [D, M]],
    [`${key}.mlp.fc2.bias`, [D]],
  ];
}
