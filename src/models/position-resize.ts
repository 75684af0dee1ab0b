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
import { triangleWeightsF32 } from "../preprocess/resize.js";

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
