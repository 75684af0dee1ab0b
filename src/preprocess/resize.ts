/**
 * The antialiased bilinear (triangle-filter) resampler shared by Pillow's
 * `Image.resize(BILINEAR)` and torch's `interpolate(uint8, "bilinear", antialias=True)`
 * (spec §4.3), reproduced bit-exactly for uint8 RGB images with either library's
 * integer weight precision.
 *
 * The 1-D coefficient functions are generic over sizes so the NaFlex pipeline (arbitrary
 * target height × width) and the NaFlex position-embedding resize (float32 data) can
 * reuse them.
 */
import type { RgbImage } from "./decode.js";
import { simdResizeHeight, simdResizeWidth } from "./resize-simd.js";

/** Which reference implementation to match bit-exactly. `"torch"` = transformers 5.x torchvision backend (default). */
export type ResizeBackend = "torch" | "pil";

/** 1-D resampling coefficients: output index `i` reads `size[i]` inputs starting at `start[i]`, weighted by `weights[i]`. */
export interface AxisWeights {
  start: Int32Array;
  size: Int32Array;
  weights: Float64Array[];
}

function checkAxis(nIn: number, nOut: number): void {
  if (!Number.isInteger(nIn) || !Number.isInteger(nOut) || nIn < 1 || nOut < 1) {
    throw new RangeError(`resize axis sizes must be positive integers, got ${nIn} -> ${nOut}`);
  }
}

/** The triangle (bilinear) filter of support 1. */
function tri(t: number): number {
  const a = Math.abs(t);
  return a < 1 ? 1 - a : 0;
}

/**
 * Float64 1-D antialiased triangle-filter weights for resampling an axis of `nIn` samples
 * to `nOut` samples (spec §4.3): the coefficients Pillow and torch compute in double
 * precision before their integer step. Each row of weights sums to 1 (unless all are 0).
 */
export function triangleWeights(nIn: number, nOut: number): AxisWeights {
  checkAxis(nIn, nOut);
  const scale = nIn / nOut;
  const fs = Math.max(scale, 1);
  const support = 1 * fs;
  const inv = 1 / fs;
  const start = new Int32Array(nOut);
  const size = new Int32Array(nOut);
  const weights: Float64Array[] = new Array(nOut);
  for (let i = 0; i < nOut; i++) {
    const center = (i + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), nIn);
    const n = Math.max(xmax - xmin, 0);
    const w = new Float64Array(n);
    let total = 0;
    for (let x = 0; x < n; x++) {
      const v = tri((x + xmin - center + 0.5) * inv);
      w[x] = v;
      total += v;
    }
    if (total !== 0) for (let x = 0; x < n; x++) w[x] = w[x]! / total;
    start[i] = xmin;
    size[i] = n;
    weights[i] = w;
  }
  return { start, size, weights };
}

/** 1-D coefficients as torch computes them for float32 tensors (`scalar_t = float`). */
export interface AxisWeightsF32 {
  start: Int32Array;
  size: Int32Array;
  weights: Float32Array[];
}

/**
 * The same triangle-filter coefficients evaluated the way torch's CPU antialiased
 * bilinear kernel does for float32 tensors (float32 scale, centre, support and weights;
 * mixed double literals promote as in C++). Intended for the NaFlex position-embedding
 * resize (`interpolate(float32, "bilinear", antialias=True, align_corners=False)`).
 */
export function triangleWeightsF32(nIn: number, nOut: number): AxisWeightsF32 {
  checkAxis(nIn, nOut);
  const f = Math.fround;
  // area_pixel_compute_scale<float>: (float)input_size / output_size
  const scale = f(f(nIn) / f(nOut));
  // support = interp_size/2 * scale when scale >= 1 (antialias), else interp_size/2 (float)
  const support = scale >= 1 ? f(1 * scale) : 1;
  const invscale = scale >= 1 ? f(1 / scale) : 1;
  const start = new Int32Array(nOut);
  const size = new Int32Array(nOut);
  const weights: Float32Array[] = new Array(nOut);
  for (let i = 0; i < nOut; i++) {
    const center = f(scale * (i + 0.5)); // float * double -> double, stored as float
    const xmin = Math.max(Math.trunc(f(center - support) + 0.5), 0);
    const xmax = Math.min(Math.trunc(f(center + support) + 0.5), nIn);
    const n = Math.max(xmax - xmin, 0);
    const w = new Float32Array(n);
    let total = 0;
    for (let j = 0; j < n; j++) {
      // (j + xmin - center) is int - float -> float; + 0.5 -> double; * invscale -> double; arg -> float
      const arg = f((f(j + xmin - center) + 0.5) * invscale);
      const v = f(tri(arg));
      w[j] = v;
      total = f(total + v);
    }
    if (total !== 0) for (let j = 0; j < n; j++) w[j] = f(w[j]! / total);
    start[i] = xmin;
    size[i] = n;
    weights[i] = w;
  }
  return { start, size, weights };
}

/** Integer coefficients for one axis: flat `k` with `stride` entries per output index. */
interface IntAxis {
  start: Int32Array;
  size: Int32Array;
  k: Float64Array; // integer values (stored as doubles; exact)
  stride: number;
  precision: number;
}

/** Weight precision (bits) for an axis, per backend (spec §4.3). */
function axisPrecision(w: AxisWeights, backend: ResizeBackend): number {
  if (backend === "pil") return 22;
  let wmax = 0;
  for (const row of w.weights) for (const v of row) if (v > wmax) wmax = v;
  let p = 0;
  while (p < 22 && Math.trunc(0.5 + wmax * 2 ** (p + 1)) < 32768) p++;
  return p;
}

function intAxis(nIn: number, nOut: number, backend: ResizeBackend): IntAxis {
  const w = triangleWeights(nIn, nOut);
  const precision = axisPrecision(w, backend);
  let stride = 0;
  for (let i = 0; i < nOut; i++) stride = Math.max(stride, w.size[i]!);
  const k = new Float64Array(nOut * stride);
  const one = 2 ** precision;
  for (let i = 0; i < nOut; i++) {
    const row = w.weights[i]!;
    for (let x = 0; x < row.length; x++) {
      const v = row[x]!;
      k[i * stride + x] = v < 0 ? Math.trunc(-0.5 + v * one) : Math.trunc(0.5 + v * one);
    }
  }
  return { start: w.start, size: w.size, k, stride, precision };
}

function clamp8(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Which kernels run the two passes: WebAssembly SIMD where it applies (default), or JavaScript. */
export type ResizeKernels = "auto" | "js";

/** Horizontal pass: (h, wIn, 3) -> (h, wOut, 3). */
function resizeWidth(src: Uint8Array, h: number, wIn: number, wOut: number, ax: IntAxis): Uint8Array {
  const out = new Uint8Array(h * wOut * 3);
  const half = 2 ** (ax.precision - 1);
  const one = 2 ** ax.precision;
  for (let y = 0; y < h; y++) {
    const rowIn = y * wIn * 3;
    const rowOut = y * wOut * 3;
    for (let i = 0; i < wOut; i++) {
      const s = ax.start[i]!;
      const n = ax.size[i]!;
      const kb = i * ax.stride;
      let r = half;
      let g = half;
      let b = half;
      let p = rowIn + s * 3;
      for (let x = 0; x < n; x++, p += 3) {
        const kk = ax.k[kb + x]!;
        r += kk * src[p]!;
        g += kk * src[p + 1]!;
        b += kk * src[p + 2]!;
      }
      const o = rowOut + i * 3;
      out[o] = clamp8(Math.floor(r / one));
      out[o + 1] = clamp8(Math.floor(g / one));
      out[o + 2] = clamp8(Math.floor(b / one));
    }
  }
  return out;
}

/** Vertical pass: (hIn, w, 3) -> (hOut, w, 3). */
function resizeHeight(src: Uint8Array, hOut: number, w: number, ax: IntAxis): Uint8Array {
  const rowLen = w * 3;
  const out = new Uint8Array(hOut * rowLen);
  const half = 2 ** (ax.precision - 1);
  const one = 2 ** ax.precision;
  const acc = new Float64Array(rowLen);
  for (let i = 0; i < hOut; i++) {
    const s = ax.start[i]!;
    const n = ax.size[i]!;
    const kb = i * ax.stride;
    acc.fill(half);
    for (let y = 0; y < n; y++) {
      const kk = ax.k[kb + y]!;
      const rowIn = (s + y) * rowLen;
      for (let j = 0; j < rowLen; j++) acc[j] = acc[j]! + kk * src[rowIn + j]!;
    }
    const rowOut = i * rowLen;
    for (let j = 0; j < rowLen; j++) out[rowOut + j] = clamp8(Math.floor(acc[j]! / one));
  }
  return out;
}

/**
 * Resize a uint8 RGB image to `height` × `width` with the antialiased bilinear resampler
 * of spec §4.3, bit-exact with the chosen backend: width pass first, then height pass,
 * uint8 intermediate, unchanged axes skipped (a same-size resize is an exact copy).
 * `kernels: "auto"` runs the passes with the WebAssembly SIMD kernels of resize-simd.ts when
 * the weights fit them (the torch backend) and the engine has SIMD; `"js"` always uses the
 * JavaScript kernels. Both give the same bytes.
 */
export function resizeRgb(img: RgbImage, height: number, width: number, backend: ResizeBackend = "torch", kernels: ResizeKernels = "auto"): RgbImage {
  if (backend !== "torch" && backend !== "pil") throw new RangeError(`unknown resize backend "${String(backend)}"`);
  checkAxis(img.width, width);
  checkAxis(img.height, height);
  if (img.data.length !== img.width * img.height * 3) {
    throw new RangeError(`RGB image data has ${img.data.length} bytes, expected ${img.width * img.height * 3}`);
  }
  let data = img.data;
  const simd = kernels === "auto";
  if (width !== img.width) {
    const ax = intAxis(img.width, width, backend);
    data = (simd ? simdResizeWidth(data, img.height, img.width, width, ax) : null) ?? resizeWidth(data, img.height, img.width, width, ax);
  }
  if (height !== img.height) {
    const ax = intAxis(img.height, height, backend);
    data = (simd ? simdResizeHeight(data, height, width, ax) : null) ?? resizeHeight(data, height, width, ax);
  }
  if (data === img.data) data = new Uint8Array(img.data);
  return { width, height, data };
}
