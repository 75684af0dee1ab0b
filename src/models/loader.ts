/**
 * The inference parameter source: checkpoint tensors loaded into a graph as initializers
 * named after their keys, in one of three build modes (fp32 standard ops, fp32 with
 * onnxruntime's fused contrib ops, int8 dynamic quantisation). See ./params.ts for the
 * interface the blocks use.
 *
 * Reference: onnxruntime contrib ops `com.microsoft.Attention`, `FastGelu`,
 * `DynamicQuantizeMatMul` (docs/ContribOperators.md); PyTorch `nn.Linear` layout (out, in).
 */
import type { Dim, Graph } from "../graph/graph.js";
import type { WeightStore } from "../weights/checkpoint.js";
import type { AttentionLayer, Layer, ParamSource, TokenInputs } from "./params.js";

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
  /** int8 variants (benchmarks and ablations); absent fields take the {@link INT8_DEFAULTS}. */
  int8Options?: Int8Options;
}

/**
 * How the int8 graph is built. The defaults are the fastest variant measured on both
 * onnxruntime-node (x86 VNNI) and onnxruntime-web (WASM SIMD) at equal accuracy
 * (bench/int8-end-to-end.ts, README "Performance").
 */
export interface Int8Options {
  /**
   * - `fused` (default): q;k;v as ONE packed `DynamicQuantizeMatMul` (the activation is
   *   quantised once instead of three times), then onnxruntime's fused fp32
   *   `MultiHeadAttention` kernel (scores and softmax in fp32, key mask as int32 (B, S)).
   * - `unfused`: three `DynamicQuantizeMatMul`s and attention in standard ONNX ops (fp32).
   * - `int8`: as `unfused`, but QKᵀ and attention·V as `MatMulInteger` on dynamically
   *   quantised (per tensor, uint8) queries, keys, probabilities and values.
   */
  attention?: "fused" | "unfused" | "int8";
  /** Weight scales: one per output channel (default) or one per matrix. */
  weightScales?: "per-channel" | "per-tensor";
}

export const INT8_DEFAULTS: Required<Int8Options> = { attention: "fused", weightScales: "per-channel" };

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

/** Symmetric int8 quantisation of a whole matrix with one scale (the per-tensor ablation). */
export function quantizeTensor(w: Float32Array): { q: Int8Array; scale: number } {
  let m = 0;
  for (let i = 0; i < w.length; i++) m = Math.max(m, Math.abs(w[i]!));
  const scale = m > 0 ? m / 127 : 1;
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) q[i] = Math.max(-127, Math.min(127, Math.round(w[i]! / scale)));
  return { q, scale };
}

/** Additive value for masked keys in the fused Attention op (float32 lowest, as transformers). */
export const MASK_FILTER = -3.4028234663852886e38;

/** Loads checkpoint tensors into a graph as initializers named after their keys. */
export class WeightLoader implements ParamSource {
  constructor(readonly g: Graph, readonly store: WeightStore, readonly mode: BuildMode = {}, private readonly prefix = "") {}

  at(name: string): WeightLoader {
    return new WeightLoader(this.g, this.store, this.mode, this.key(name));
  }

  /** The int8 options in effect (defaults filled in). */
  get int8(): Required<Int8Options> {
    return { ...INT8_DEFAULTS, ...this.mode.int8Options };
  }

  private key(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  /** A tensor as-is, shape-checked. */
  tensor(name: string, shape: number[]): string {
    const key = this.key(name);
    return this.g.init(key, this.store.float32(key, shape), shape);
  }

  /** A PyTorch Linear weight (out, in), transposed once here to (in, out). */
  private weightT(name: string, inF: number, outF: number): Float32Array {
    return transpose2d(this.store.float32(`${this.key(name)}.weight`, [outF, inF]), outF, inF);
  }

  /**
   * `x·W` for a transposed weight wT (in, out) baked in as initializer `name` (+ `.T`, or
   * `.int8` and `.scale` in int8 mode), plus `bias` when given.
   */
  private matmul(name: string, wT: Float32Array, inF: number, outF: number, bias?: string): Layer {
    const g = this.g;
    if (this.mode.int8) {
      const perTensor = this.int8.weightScales === "per-tensor";
      const { q, scale } = perTensor ? (({ q, scale }) => ({ q, scale: Float32Array.of(scale) }))(quantizeTensor(wT)) : quantizeColumns(wT, inF, outF);
      const qName = g.init(`${name}.int8`, q, [inF, outF]);
      const sName = g.init(`${name}.scale`, scale, perTensor ? [] : [outF]);
      return (x) => g.node("DynamicQuantizeMatMul", [x, qName, sName, "", ...(bias ? [bias] : [])], { domain: "com.microsoft" })[0]!;
    }
    const w = g.init(`${name}.T`, wT, [inF, outF]);
    return (x) => {
      const y = g.matmul(x, w);
      return bias ? g.add(y, bias) : y;
    };
  }

  linear(name: string, inF: number, outF: number): Layer {
    const bias = this.tensor(`${name}.bias`, [outF]);
    return this.matmul(`${this.key(name)}.weight`, this.weightT(name, inF, outF), inF, outF, bias);
  }

  layerNorm(name: string, dim: number, eps: number): Layer {
    const w = this.tensor(`${name}.weight`, [dim]);
    const b = this.tensor(`${name}.bias`, [dim]);
    return (x) => this.g.layerNorm(x, w, b, eps);
  }

  packedLinear(weight: string, bias: string, parts: string[], inF: number, outF: number, o: { fp32?: string[] } = {}): Layer[] {
    const g = this.g;
    const W = this.store.float32(this.key(weight), [parts.length * outF, inF]);
    const B = this.store.float32(this.key(bias), [parts.length * outF]);
    return parts.map((part, i) => {
      const wT = transpose2d(W.subarray(i * outF * inF, (i + 1) * outF * inF), outF, inF); // (in, out)
      const b = g.init(`${this.key(bias)}.${part}`, B.slice(i * outF, (i + 1) * outF), [outF]);
      const name = `${this.key(weight)}.${part}`;
      if (!o.fp32?.includes(part)) return this.matmul(name, wT, inF, outF, b);
      const w = g.init(`${name}.T`, wT, [inF, outF]);
      return (x: string) => g.add(g.matmul(x, w), b);
    });
  }

  /** The table stays on disk: the caller gathers the rows a batch needs and feeds `inputs_embeds`. */
  tokenEmbeddings(_name: string, _vocab: number, dim: number, batch: Dim, seq: Dim, o: TokenInputs = {}): string {
    return this.g.input(o.embeds ?? "inputs_embeds", "float32", [batch, seq, dim]); // (B, T, D)
  }

  /** Fused and int8 modes: bias + tanh-GELU in one contrib op after the fc1 matmul. */
  fusedLinearGelu(name: string, inF: number, outF: number): Layer | null {
    if (!this.mode.fused && !this.mode.int8) return null;
    const b = this.tensor(`${name}.bias`, [outF]);
    const mm = this.matmul(`${this.key(name)}.weight`, this.weightT(name, inF, outF), inF, outF);
    return (x) => this.g.node("FastGelu", [mm(x), b], { domain: "com.microsoft" })[0]!;
  }

  /** The q;k;v weights of this `self_attn` prefix packed as one (D, 3D) matrix (row r = [q_r | k_r | v_r]) and bias (3D). */
  private packedQkv(D: number): { w: Float32Array; b: Float32Array } {
    const projs = ["q_proj", "k_proj", "v_proj"];
    const parts = projs.map((p) => this.weightT(p, D, D)); // each (D, D)
    const w = new Float32Array(D * 3 * D);
    for (let r = 0; r < D; r++) parts.forEach((p, j) => w.set(p.subarray(r * D, (r + 1) * D), r * 3 * D + j * D));
    const b = new Float32Array(3 * D);
    projs.forEach((p, j) => b.set(this.store.float32(`${this.key(p)}.bias`, [D]), j * D));
    return { w, b };
  }

  /**
   * Self-attention of this `self_attn` prefix as fused ops, with the int32 key mask (B, S)
   * when given. Fused fp32 mode: one contrib `Attention` op over the packed q;k;v
   * projection. int8 mode ({@link Int8Options.attention}): `fused` is one packed
   * `DynamicQuantizeMatMul` + `MultiHeadAttention`; `int8` quantises the attention matmuls;
   * `unfused` returns null (the blocks' standard path).
   */
  fusedSelfAttention(hidden: number, heads: number): AttentionLayer | null {
    const g = this.g;
    const D = hidden;
    if (this.mode.int8) {
      const how = this.int8.attention;
      if (how === "unfused") return null;
      const { w, b } = this.packedQkv(D);
      const bias = g.init(`${this.key("qkv.bias")}`, b, [3 * D]);
      const qkv = this.matmul(this.key("qkv.weight"), w, D, 3 * D, bias);
      if (how === "int8") return (h, mask) => int8Attention(g, qkv(h), D, heads, mask?.additive);
      return (h, mask) => {
        const [q, k, v] = g.node("Split", [qkv(h), g.constI64([D, D, D])], { outputs: 3, attrs: { axis: { int: 2 } } });
        const inputs = [q!, k!, v!];
        if (mask) inputs.push("", mask.keep); // bias absent, key_padding_mask (B, S) int32
        return g.node("MultiHeadAttention", inputs, { domain: "com.microsoft", attrs: { num_heads: { int: heads }, mask_filter_value: { float: MASK_FILTER } } })[0]!;
      };
    }
    if (!this.mode.fused) return null;
    const { w: packed, b: bias } = this.packedQkv(D);
    const w = g.init(`${this.key("qkv.weight.T")}`, packed, [D, 3 * D]);
    const b = g.init(`${this.key("qkv.bias")}`, bias, [3 * D]);
    return (h, mask) => {
      const inputs = [h, w, b];
      if (mask) inputs.push(mask.keep);
      return g.node("Attention", inputs, { domain: "com.microsoft", attrs: { num_heads: { int: heads }, mask_filter_value: { float: MASK_FILTER } } })[0]!;
    };
  }
}

/** `DynamicQuantizeLinear` of x: [uint8 values, scale, zero point]. */
function dynQuant(g: Graph, x: string): string[] {
  return g.node("DynamicQuantizeLinear", [x], { outputs: 3 });
}

/** `MatMulInteger` of two dynamically quantised tensors, back to fp32 (scaled by both scales and `k`). */
function qmatmul(g: Graph, a: string[], b: string[], k = 1): string {
  const acc = g.node("MatMulInteger", [a[0]!, b[0]!, a[2]!, b[2]!])[0]!; // int32
  const s = g.mul(a[1]!, b[1]!);
  return g.mul(g.op("Cast", [acc], { to: { int: 1 } }), k === 1 ? s : g.mul(s, g.constF(k)));
}

/**
 * The int8-attention ablation: scaled dot-product attention on packed qkv (B, S, 3D) with
 * QKᵀ and probabilities·V as uint8 `MatMulInteger`s (one dynamic scale per tensor).
 */
function int8Attention(g: Graph, qkv: string, D: number, heads: number, keyMask?: string): string {
  const hd = D / heads;
  const [q, k, v] = g.node("Split", [qkv, g.constI64([D, D, D])], { outputs: 3, attrs: { axis: { int: 2 } } });
  const qh = g.transpose(g.reshape(q!, [0, 0, heads, hd]), [0, 2, 1, 3]); // (B, H, S, hd)
  const kh = g.transpose(g.reshape(k!, [0, 0, heads, hd]), [0, 2, 3, 1]); // (B, H, hd, S)
  const vh = g.transpose(g.reshape(v!, [0, 0, heads, hd]), [0, 2, 1, 3]); // (B, H, S, hd)
  let scores = qmatmul(g, dynQuant(g, qh), dynQuant(g, kh), hd ** -0.5);
  if (keyMask) scores = g.add(scores, keyMask);
  const ctx = qmatmul(g, dynQuant(g, g.softmax(scores, -1)), dynQuant(g, vh)); // (B, H, S, hd)
  return g.reshape(g.transpose(ctx, [0, 2, 1, 3]), [0, 0, D]);
}
