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

/** Transpose a row-major (rows, cols) matrix (in cache-friendly 32×32 tiles). */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const T = 32;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(r0 + T, rows);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(c0 + T, cols);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = w[base + c]!;
      }
    }
  }
  return out;
}

/**
 * How linear layers and attention are expressed in the graph.
 * - `fused` (inference default): onnxruntime contrib ops — `Attention` (packed QKV
 *   projection + attention), `FastGelu` (bias + tanh-GELU). Not differentiable here.
 * - `int8`: weights quantised per output channel to int8 (symmetric), activations
 *   quantised dynamically (`DynamicQuantizeMatMul`); attention scores stay fp32.
 * - neither: standard ONNX ops only (what training differentiates).
 */
export interface BuildMode {
  fused?: boolean;
  int8?: boolean;
}

/** Symmetric per-column int8 quantisation of a (rows, cols) matrix: returns values and per-column scales. */
export function quantizeColumns(w: Float32Array, rows: number, cols: number): { q: Int8Array; scale: Float32Array } {
  const scale = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) scale[c] = Math.max(scale[c]!, Math.abs(w[r * cols + c]!));
  }
  for (let c = 0; c < cols; c++) scale[c] = scale[c]! > 0 ? scale[c]! / 127 : 1;
  const q = new Int8Array(w.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) q[r * cols + c] = Math.max(-127, Math.min(127, Math.round(w[r * cols + c]! / scale[c]!)));
  }
  return { q, scale };
}

/** Loads checkpoint tensors into a graph as initializers named after their keys. */
export class WeightLoader {
  constructor(readonly g: Graph, readonly store: WeightStore, readonly mode: BuildMode = {}) {}

  /** A tensor as-is, shape-checked. */
  tensor(key: string, shape: number[]): string {
    return this.g.init(key, this.store.float32(key, shape), shape);
  }

  /** A PyTorch Linear weight (out, in), transposed once here to (in, out). */
  weightT(key: string, inF: number, outF: number): Float32Array {
    return transpose2d(this.store.float32(`${key}.weight`, [outF, inF]), outF, inF);
  }

  /**
   * `x·Wᵀ` (+ bias unless `bias: false`) for a PyTorch Linear stored as weight (out, in)
   * and bias (out). `wT` overrides the transposed weight (in, out), e.g. packed QKV.
   */
  matmul(x: string, name: string, wT: Float32Array, inF: number, outF: number, bias?: string): string {
    const g = this.g;
    if (this.mode.int8) {
      const { q, scale } = quantizeColumns(wT, inF, outF);
      const qName = g.init(`${name}.int8`, q, [inF, outF]);
      const sName = g.init(`${name}.scale`, scale, [outF]);
      return g.node("DynamicQuantizeMatMul", [x, qName, sName, "", ...(bias ? [bias] : [])], { domain: "com.microsoft" })[0]!;
    }
    const y = g.matmul(x, g.init(`${name}.T`, wT, [inF, outF]));
    return bias ? g.add(y, bias) : y;
  }

  linear(x: string, key: string, inF: number, outF: number): string {
    return this.matmul(x, `${key}.weight`, this.weightT(key, inF, outF), inF, outF, this.tensor(`${key}.bias`, [outF]));
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
  let h: string;
  if ((w.mode.fused || w.mode.int8) && act === "gelu_pytorch_tanh") {
    // bias + tanh-GELU in one contrib op
    const b = w.tensor(`${key}.fc1.bias`, [inter]);
    const y = w.matmul(x, `${key}.fc1.weight`, w.weightT(`${key}.fc1`, dim, inter), dim, inter);
    h = w.g.node("FastGelu", [y, b], { domain: "com.microsoft" })[0]!;
  } else {
    h = gelu(w.g, w.linear(x, `${key}.fc1`, dim, inter), act);
  }
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

/**
 * Attention block of one layer on h (B, S, D) → (B, S, D) before out_proj.
 * Fused mode: one contrib `Attention` op over the packed q;k;v projection, with the
 * int32 key mask (B, S) when given. Otherwise q, k, v projections + {@link attention}.
 */
function selfAttention(w: WeightLoader, h: string, key: string, d: LayerDims, mask?: LayerMask): string {
  const g = w.g;
  const D = d.hidden;
  if (w.mode.fused && !w.mode.int8) {
    const parts = ["q_proj", "k_proj", "v_proj"].map((p) => w.weightT(`${key}.self_attn.${p}`, D, D)); // each (D, D)
    const packed = new Float32Array(D * 3 * D); // (D, 3D): row r = [q_r | k_r | v_r]
    for (let r = 0; r < D; r++) parts.forEach((p, j) => packed.set(p.subarray(r * D, (r + 1) * D), r * 3 * D + j * D));
    const bias = new Float32Array(3 * D);
    ["q_proj", "k_proj", "v_proj"].forEach((p, j) => bias.set(w.store.float32(`${key}.self_attn.${p}.bias`, [D]), j * D));
    const inputs = [h, g.init(`${key}.self_attn.qkv.weight.T`, packed, [D, 3 * D]), g.init(`${key}.self_attn.qkv.bias`, bias, [3 * D])];
    if (mask) inputs.push(mask.keep);
    return g.node("Attention", inputs, { domain: "com.microsoft", attrs: { num_heads: { int: d.heads }, mask_filter_value: { float: MASK_FILTER } } })[0]!;
  }
  const q = w.linear(h, `${key}.self_attn.q_proj`, D, D);
  const k = w.linear(h, `${key}.self_attn.k_proj`, D, D);
  const v = w.linear(h, `${key}.self_attn.v_proj`, D, D);
  return attention(g, q, k, v, d, mask?.additive);
}

/** Additive value for masked keys in the fused Attention op (float32 lowest, as transformers). */
const MASK_FILTER = -3.4028234663852886e38;

/** A key-padding mask in the two forms the attention paths use. */
export interface LayerMask {
  /** (B, S) int32, 1 = real key, 0 = padding (fused Attention op). */
  keep: string;
  /** (B, 1, 1, S) float32, 0 or a large negative (standard path, MAP head). */
  additive: string;
}

/** SiglipEncoderLayer (pre-LN): x + attn(LN1(x)), then + mlp(LN2(x)). x: (B, S, D). */
export function encoderLayer(w: WeightLoader, x: string, key: string, d: LayerDims, mask?: LayerMask): string {
  const g = w.g;
  const h = w.layerNorm(x, `${key}.layer_norm1`, d.hidden, d.eps);
  const a = w.linear(selfAttention(w, h, key, d, mask), `${key}.self_attn.out_proj`, d.hidden, d.hidden);
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
    const wT = transpose2d(inW.subarray(i * D * D, (i + 1) * D * D), D, D);
    const b = g.init(`${key}.attention.in_proj_bias.${name}`, inB.slice(i * D, (i + 1) * D), [D]);
    if (name === "q") return g.add(g.matmul(w.tensor(`${key}.probe`, [1, 1, D]), g.init(`${key}.attention.in_proj_weight.q.T`, wT, [D, D])), b);
    return w.matmul(x, `${key}.attention.in_proj_weight.${name}`, wT, D, D, b);
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
