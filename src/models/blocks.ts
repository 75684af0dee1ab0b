/**
 * Building blocks shared by every SigLIP tower: the pre-LN transformer encoder
 * layer, GELU MLP and the multihead-attention-pooling (MAP) head. Written once against
 * a {@link ParamSource} (./params.ts): inference and training build the same blocks.
 *
 * Each block first asks for its parameters (checkpoint keys, in the order of the training
 * parameter list), then returns the function that applies them.
 *
 * Reference: transformers `models/siglip/modeling_siglip.py`
 * (SiglipEncoderLayer, SiglipAttention, SiglipMLP, SiglipMultiheadAttentionPoolingHead);
 * spec §1.2 and §1.5. Parameter names below are the checkpoint keys.
 */
import type { Graph } from "../graph/graph.js";
import type { HiddenAct, TextConfig, VisionConfig } from "../weights/config.js";
import type { AttentionLayer, Layer, LayerMask, ParamSource } from "./params.js";

/** Shape of one encoder layer's hyper-parameters. */
export interface LayerDims {
  hidden: number;
  inter: number;
  heads: number;
  eps: number;
  act: HiddenAct;
}

/** The layer hyper-parameters of a tower config. */
export function dims(c: VisionConfig | TextConfig): LayerDims {
  return { hidden: c.hidden_size, inter: c.intermediate_size, heads: c.num_attention_heads, eps: c.layer_norm_eps, act: c.hidden_act };
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

/**
 * Scaled dot-product attention on already projected q, k, v (B, S, D):
 * heads are contiguous channel blocks; softmax over keys in fp32.
 * `keyMask` (optional) is an additive (B, 1, 1, S) tensor: 0 for keys to keep,
 * a large negative for padding keys.
 */
export function attention(g: Graph, q: string, k: string, v: string, d: { hidden: number; heads: number }, keyMask?: string): string {
  const hd = d.hidden / d.heads;
  const qh = g.transpose(g.reshape(q, [0, 0, d.heads, hd]), [0, 2, 1, 3]); // (B, H, Sq, hd)
  const kh = g.transpose(g.reshape(k, [0, 0, d.heads, hd]), [0, 2, 3, 1]); // (B, H, hd, Sk)
  const vh = g.transpose(g.reshape(v, [0, 0, d.heads, hd]), [0, 2, 1, 3]); // (B, H, Sk, hd)
  let scores = g.mul(g.matmul(qh, kh), g.constF(hd ** -0.5)); // (B, H, Sq, Sk)
  if (keyMask) scores = g.add(scores, keyMask);
  const ctx = g.matmul(g.softmax(scores, -1), vh); // (B, H, Sq, hd)
  return g.reshape(g.transpose(ctx, [0, 2, 1, 3]), [0, 0, d.hidden]); // (B, Sq, D)
}

/** SiglipMLP under `p` (fc1, fc2): fc1 (D→M) → GELU → fc2 (M→D). */
export function mlp(p: ParamSource, d: LayerDims): Layer {
  const fused = d.act === "gelu_pytorch_tanh" ? p.fusedLinearGelu?.("fc1", d.hidden, d.inter) : null;
  const fc1 = fused ?? compose(p.linear("fc1", d.hidden, d.inter), (u) => gelu(p.g, u, d.act));
  const fc2 = p.linear("fc2", d.inter, d.hidden);
  return (x) => fc2(fc1(x));
}

const compose = (f: Layer, h: Layer): Layer => (x) => h(f(x));

/**
 * Multi-head attention under `p` (q_proj, k_proj, v_proj) up to out_proj: queries from
 * h (B, Sq, D), keys and values from `kv` (B, Sk, kvDim) — h itself for self-attention, the
 * image tokens for the LocCa decoder's cross-attention (k_proj / v_proj are then (D, kvDim)).
 * `mask` is an additive mask broadcast to the scores (B, H, Sq, Sk): a key-padding
 * (B, 1, 1, Sk) or a per-row causal (B, 1, Sq, Sk) one. Standard ops only.
 */
export function multiHeadAttention(p: ParamSource, d: LayerDims, kvDim = d.hidden): (h: string, kv: string, mask?: string) => string {
  const q = p.linear("q_proj", d.hidden, d.hidden);
  const k = p.linear("k_proj", kvDim, d.hidden);
  const v = p.linear("v_proj", kvDim, d.hidden);
  return (h, kv, mask) => attention(p.g, q(h), k(kv), v(kv), d, mask);
}

/**
 * SiglipAttention under `p` (q_proj, k_proj, v_proj) up to out_proj: h (B, S, D) → (B, S, D).
 * The source may fuse it into one op; otherwise {@link multiHeadAttention} with kv = h.
 */
function selfAttention(p: ParamSource, d: LayerDims): AttentionLayer {
  const fused = p.fusedSelfAttention?.(d.hidden, d.heads);
  if (fused) return fused;
  const mha = multiHeadAttention(p, d);
  return (h, mask) => mha(h, h, mask?.additive);
}

/** Options of {@link encoderLayer}. */
export interface EncoderLayerOptions {
  /**
   * Compute the layer's output only for these rows of x, (B, S, D) → (B, R, D): their queries,
   * residuals and MLP (keys and values still come from every row). For the last layer of a
   * tower whose pooling reads R of the S rows (the text tower: the last position), this skips
   * the (S − R)/S of the queries, out_proj and MLP that nothing reads. Plain (unfused) attention.
   */
  queryRows?: (x: string) => string;
}

/** SiglipEncoderLayer under `p` (pre-LN): x + attn(LN1(x)), then + mlp(LN2(x)). x: (B, S, D). */
export function encoderLayer(p: ParamSource, d: LayerDims, o: EncoderLayerOptions = {}): (x: string, mask?: LayerMask) => string {
  const g = p.g;
  const ln1 = p.layerNorm("layer_norm1", d.hidden, d.eps);
  const ln2 = p.layerNorm("layer_norm2", d.hidden, d.eps);
  // the same parameters, asked for in the same order, either way
  const rows = o.queryRows;
  const attn: AttentionLayer = rows
    ? ((mha) => (h, mask) => mha(rows(h), h, mask?.additive))(multiHeadAttention(p.at("self_attn"), d)) // LN is per row: queries from rows(LN1(x))
    : selfAttention(p.at("self_attn"), d);
  const out = p.at("self_attn").linear("out_proj", d.hidden, d.hidden);
  const ff = mlp(p.at("mlp"), d);
  return (x, mask) => {
    const x1 = g.add(rows ? rows(x) : x, out(attn(ln1(x), mask))); // (B, S, D), or (B, R, D) with queryRows
    return g.add(x1, ff(ln2(x1)));
  };
}

/**
 * SiglipMultiheadAttentionPoolingHead under `p`: one learned probe query attends over the
 * encoder output X (B, S, D); `y = a + MLP(LN(a))`; returns (B, D).
 * `in_proj_weight` packs q; k; v rows. No residual from the probe.
 */
export function mapHead(p: ParamSource, d: LayerDims): (x: string, keyMask?: string) => string {
  const g = p.g;
  const D = d.hidden;
  const probe = p.tensor("probe", [1, 1, D]);
  // q applies to the probe (one row): kept fp32 in int8 mode
  const [q, k, v] = p.packedLinear("attention.in_proj_weight", "attention.in_proj_bias", ["q", "k", "v"], D, D, { fp32: ["q"] }) as [Layer, Layer, Layer];
  const out = p.at("attention").linear("out_proj", D, D);
  const ln = p.layerNorm("layernorm", D, d.eps);
  const ff = mlp(p.at("mlp"), d);
  return (x, keyMask) => {
    // q (1, 1, D) broadcast over the batch; k, v (B, S, D)
    const a = out(attention(g, q(probe), k(x), v(x), d, keyMask)); // (B, 1, D)
    const y = g.add(a, ff(ln(a)));
    return g.reshape(y, [-1, D]); // (B, D)
  };
}

/**
 * Fixed 2-D sine–cosine code (big_vision `posemb_sincos_2d` generalised to fractional
 * positions): row r of the (n, width) result is `[sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]` for
 * `y = ys[r]`, `x = xs[r]`, with ω_k = 1 / temperature^(k / (q − 1)), k < q = width / 4.
 */
export function sincosCode(ys: ArrayLike<number>, xs: ArrayLike<number>, width: number, temperature = 10_000): Float32Array {
  if (!Number.isInteger(width) || width < 8 || width % 4 !== 0) throw new Error(`internal: sincos width ${width} must be a multiple of 4, at least 8`);
  if (ys.length !== xs.length) throw new Error("internal: sincos ys and xs differ in length");
  const q = width / 4;
  const omega = Float64Array.from({ length: q }, (_, k) => 1 / temperature ** (k / (q - 1)));
  const out = new Float32Array(ys.length * width);
  for (let r = 0; r < ys.length; r++) {
    const y = ys[r]!;
    const x = xs[r]!;
    const o = r * width;
    for (let k = 0; k < q; k++) {
      out[o + k] = Math.sin(x * omega[k]!);
      out[o + q + k] = Math.cos(x * omega[k]!);
      out[o + 2 * q + k] = Math.sin(y * omega[k]!);
      out[o + 3 * q + k] = Math.cos(y * omega[k]!);
    }
  }
  return out;
}
