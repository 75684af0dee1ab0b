/**
 * The NaFlex position-embedding grid resize (spec §1.4 step 2), bit-exact with HF
 * `Siglip2VisionEmbeddings.resize_positional_embeddings` on CPU, i.e. PyTorch's
 * `F.interpolate(float32, mode="bilinear", align_corners=False, antialias=True)`
 * (`_upsample_bilinear2d_aa`, separable kernel in `aten/src/ATen/native/cpu/UpSampleKernel.cpp`):
 *
 * - width pass first (every grid row, g → w), then height pass (every column of the float32
 *   intermediate, g → h); an axis whose size is unchanged is skipped;
 * - 1-D weights as torch computes them for float32 ({@link triangleWeightsF32}); the index
 *   range `[xmin, xmin + xsize)` includes any zero-weight taps at its ends, exactly as torch's;
 * - accumulation per output element in float32, in tap order:
 *   `acc = t₀·w₀`, then `acc += tⱼ·wⱼ` for j = 1 … xsize−1. PyTorch's x86-64 AVX2/AVX512 CPU
 *   kernels (the ones x86 machines dispatch to) are compiled so that, of the xsize−1
 *   additions, the first `4·⌊(xsize−1)/4⌋` round the product to float32 before adding and the
 *   remaining (at most 3) are fused multiply-adds (one rounding). This was established
 *   empirically against torch 2.13 (capabilities AVX2 and AVX512 behave identically; the
 *   non-SIMD `DEFAULT` kernel rounds every product, which differs by about 1 float32 ulp).
 *
 * `torchCpuCompat` reproduces a PyTorch CPU bug that HF's output contains: when the target
 * width is 1, the grid is wider than 1 and the height changes (`w == 1 && g != 1 && h != g`),
 * torch's height pass takes the "vertical" loop, which assumes the index/weight tensors have
 * zero stride along the iterated dimension, but with an output width of 1 that dimension is
 * the output height: every output row is computed with row 0's indices and weights, i.e. the
 * first output row is replicated to all h rows (verified for g ∈ {2…8, 12, 16}, h ≤ 300,
 * any D, 1–4 threads; h = 1 is trivially unaffected; g = 1 never triggers it).
 */
import type { Graph } from "../graph/graph.js";
import { triangleWeightsF32 } from "../preprocess/resize.js";
import type { VisionConfig } from "../weights/config.js";

const fround = Math.fround;

/**
 * float32 fused multiply-add `round32(a·b + c)` for float32 inputs. `a·b` is exact in
 * float64; the float64 sum can be off by one rounding, which only matters when it lands
 * exactly on a float32 rounding midpoint, so that case is resolved with the exact error term.
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = fround(s);
  // TwoSum: p + c = s + e exactly.
  const bv = s - c;
  const e = p - bv + (c - (s - bv));
  // s exact (a single rounding), or s a float32 value (the exact sum is within half a float64 ulp of it)
  if (e === 0 || r === s) return r;
  const o = fround(2 * s - r); // the other float32 neighbour of s, if s is a midpoint
  if ((r + o) / 2 !== s) return r; // not a midpoint: the double rounding is harmless
  return e > 0 === o > r ? o : r; // s is a midpoint but the exact sum is not: round towards it
}

/** Columns per block: the width-pass intermediate is computed block by block (g × 16 × D floats). */
const BLOCK = 16;
let scratch = new Float32Array(0);

/**
 * `out[dst + k] = Σⱼ src[s0 + j·stride + k] · ws[j]` for k ∈ [0, count), accumulated in float32
 * in torch's order: the first `4·⌊(n−1)/4⌋` additions round the product first, the rest are FMAs.
 */
function accumulate(
  src: Float32Array, s0: number, stride: number, ws: Float32Array, n: number,
  out: Float32Array, dst: number, count: number,
): void {
  const w0 = ws[0]!;
  const nPlain = Math.floor((n - 1) / 4) * 4;
  if (n === 2) {
    // the common upsampling case: one FMA
    const w1 = ws[1]!;
    for (let k = 0; k < count; k++) out[dst + k] = fma32(src[s0 + stride + k]!, w1, fround(src[s0 + k]! * w0));
    return;
  }
  for (let k = 0; k < count; k++) {
    let q = s0 + k;
    let acc = fround(src[q]! * w0);
    for (let j = 1; j <= nPlain; j++) {
      q += stride;
      acc = fround(acc + fround(src[q]! * ws[j]!));
    }
    for (let j = nPlain + 1; j < n; j++) {
      q += stride;
      acc = fma32(src[q]!, ws[j]!, acc);
    }
    out[dst + k] = acc;
  }
}

/**
 * Resize the learned position grid — `table` (g·g, D) row-major, grid row = index // g — to
 * (h, w) exactly like HF `Siglip2VisionEmbeddings.resize_positional_embeddings` on CPU
 * (float32, bilinear, align_corners=False, antialias=True; width pass then height pass).
 * Returns (h·w, D) row-major (grid row-major). HF fills rows h·w … L−1 with a copy of row 0;
 * that padding is left to the caller.
 *
 * `torchCpuCompat` reproduces PyTorch-CPU's w = 1 quirk (first output row replicated when
 * `w == 1 && g != 1 && h != g`); off by default, giving the mathematically correct result.
 * `out`, if given (length ≥ h·w·D), receives the result in its first h·w·D values and is returned.
 */
export function resizePositionGrid(
  table: Float32Array,
  gridSize: number,
  dim: number,
  h: number,
  w: number,
  options?: { torchCpuCompat?: boolean; out?: Float32Array },
): Float32Array {
  const g = gridSize;
  const D = dim;
  for (const [name, v] of [["gridSize", g], ["dim", D], ["h", h], ["w", w]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`resizePositionGrid: ${name} must be a positive integer, got ${v}`);
  }
  if (table.length !== g * g * D) {
    throw new RangeError(`resizePositionGrid: table has ${table.length} values, expected ${g}·${g}·${D} = ${g * g * D}`);
  }
  const out = options?.out ?? new Float32Array(h * w * D);
  if (out.length < h * w * D) throw new RangeError(`resizePositionGrid: out has ${out.length} values, needs ${h * w * D}`);

  const ax = h !== g ? triangleWeightsF32(g, h) : undefined;
  // torch-CPU quirk: the height pass computes output row 0 only and repeats it.
  const rows = ax !== undefined && options?.torchCpuCompat === true && w === 1 && g !== 1 ? 1 : h;

  if (w === g) {
    // no width pass: the height pass reads the table directly (all columns at once)
    if (ax === undefined) {
      out.set(table);
      return out;
    }
    for (let i = 0; i < rows; i++) {
      accumulate(table, ax.start[i]! * g * D, g * D, ax.weights[i]!, ax.size[i]!, out, i * w * D, w * D);
    }
  } else {
    const aw = triangleWeightsF32(g, w);
    const bw = Math.min(w, BLOCK);
    if (scratch.length < g * bw * D) scratch = new Float32Array(g * bw * D);
    const tmp = scratch;
    for (let x0 = 0; x0 < w; x0 += bw) {
      const nb = Math.min(bw, w - x0);
      // width pass for columns [x0, x0 + nb): tmp is (g, nb, D)
      for (let y = 0; y < g; y++) {
        for (let x = 0; x < nb; x++) {
          const xo = x0 + x;
          accumulate(table, (y * g + aw.start[xo]!) * D, D, aw.weights[xo]!, aw.size[xo]!, tmp, (y * nb + x) * D, D);
        }
      }
      // height pass (or copy) for those columns
      for (let i = 0; i < rows; i++) {
        if (ax === undefined) {
          out.set(tmp.subarray(i * nb * D, (i + 1) * nb * D), (i * w + x0) * D);
        } else {
          accumulate(tmp, ax.start[i]! * nb * D, nb * D, ax.weights[i]!, ax.size[i]!, out, (i * w + x0) * D, nb * D);
        }
      }
    }
  }
  for (let i = rows; i < h; i++) out.copyWithin(i * w * D, 0, w * D); // quirk only (w = 1)
  return out;
}


// ---------------------------------------------------------------------------------------------
// The same resize inside a graph (export, training: the table gets a gradient through the MatMul)

/**
 * Antialiased bilinear 1-D weights, in the graph: for output index `idx` (B, N) int64 of an
 * axis of `size` (B, 1) int64 resized from `G` → (B, N, G) float32, row k = weight of input k.
 * PyTorch's `_upsample_bilinear2d_aa` arithmetic: scale = G/size (float32), support = scale
 * (downsampling) or 1, center = scale·(i + 0.5), w_k = tri((k − center + 0.5)·invscale),
 * normalised by their sum. The triangle is zero outside torch's tap window, and an axis of
 * size G gives the identity (torch skips that pass).
 */
function aaWeights(g: Graph, idx: string, size: string, G: number): string {
  const f32 = { to: { int: 1 } };
  const f64 = { to: { int: 11 } };
  const scale = g.div(g.constF(G), g.op("Cast", [size], f32)); // (B, 1)
  const ge1 = g.op("GreaterOrEqual", [scale, g.constF(1)]);
  const invscale = g.op("Where", [ge1, g.div(g.constF(1), scale), g.constF(1)]); // (B, 1)
  const i = g.op("Cast", [idx], f32); // (B, N)
  const center = g.mul(scale, g.add(i, g.constF(0.5))); // (B, N) float32, as torch stores it
  const k = g.init(g.fresh("taps"), Float32Array.from({ length: G }, (_, j) => j), [1, 1, G]);
  const diff = g.sub(k, g.op("Unsqueeze", [center, g.constI64([-1])])); // (B, N, G): k − center (float32)
  // (k − center) + 0.5 and · invscale in float64, one rounding to float32 (as torch's double arithmetic)
  const half = g.init(g.fresh("half"), Float64Array.of(0.5), []);
  const arg64 = g.mul(g.add(g.op("Cast", [diff], f64), half), g.op("Cast", [g.op("Unsqueeze", [invscale, g.constI64([-1])])], f64));
  const arg = g.op("Abs", [g.op("Cast", [arg64], f32)]);
  const w = g.op("Relu", [g.sub(g.constF(1), arg)]); // tri: max(0, 1 − |x|)  (B, N, G)
  const total = g.op("ReduceSum", [w, g.constI64([-1])], { keepdims: { int: 1 } }); // (B, N, 1)
  return g.div(w, total);
}

/**
 * The NaFlex position embeddings of every patch row, in the graph: `table` (G², D) resized to
 * each image's (h, w) = spatial_shapes[b], row n ↦ grid cell (n div w, n mod w); rows at and
 * after h·w get cell (0, 0), as transformers pads them with row 0. → (B, N, D).
 * The two 1-D weight sets are combined into one (G·G) weight row per patch and applied with
 * one MatMul (B, N, G²)·(G², D): the same value as torch's width-then-height passes up to
 * float32 rounding of the sums. PyTorch-CPU's w = 1 quirk is not reproduced (the graph gives
 * the mathematically correct resize, our runtime's default).
 */
export function positionsInGraph(g: Graph, table: string, v: VisionConfig, spatial: string, n: string): string {
  const G = Math.round(Math.sqrt(v.num_patches));
  const col = (c: number): string => g.op("Slice", [spatial, g.constI64([c]), g.constI64([c + 1]), g.constI64([1])]); // (B, 1)
  const h = col(0);
  const w = col(1);
  const rows = g.op("Range", [g.init(g.fresh("zero"), BigInt64Array.of(0n), []), n, g.init(g.fresh("one"), BigInt64Array.of(1n), [])]); // (N)
  const r = g.op("Unsqueeze", [rows, g.constI64([0])]); // (1, N)
  const zero = g.init(g.fresh("zero"), BigInt64Array.of(0n), []);
  const valid = g.op("Less", [r, g.mul(h, w)]); // (B, N)
  const y = g.op("Where", [valid, g.div(r, w), zero]); // (B, N) int64 (floor: non-negative)
  const x = g.op("Where", [valid, g.op("Mod", [r, w]), zero]);
  const wy = aaWeights(g, y, h, G); // (B, N, G)
  const wx = aaWeights(g, x, w, G); // (B, N, G)
  const outer = g.mul(g.op("Unsqueeze", [wy, g.constI64([-1])]), g.op("Unsqueeze", [wx, g.constI64([-2])])); // (B, N, G, G)
  const flat = g.reshape(outer, [0, 0, G * G]); // (B, N, G²)
  return g.matmul(flat, table); // (B, N, D)
}

