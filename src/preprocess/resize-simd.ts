/**
 * WebAssembly SIMD kernels for the two passes of the antialiased bilinear resampler
 * (resize.ts), used for the torch backend, whose integer weights fit int16. They compute
 * exactly what the JavaScript kernels compute (same weights, same int32 sums, same shift
 * and clamp; tests/resize-simd.test.ts compares them on thousands of shapes), about 7x
 * faster on a 6 MP photo: decoders still only decode, and the result stays bit-exact.
 *
 * The source is resize-simd.wat; resize-simd-bytes.ts is its assembled form. Images travel
 * through the module's memory in strips of rows, so its memory stays a few MiB whatever the
 * image size. Without WebAssembly SIMD (or with SIGLIP2_RESIZE_SIMD=0) resize.ts keeps its
 * JavaScript kernels.
 */
import { ensureMemory, instantiateSimd, type WasmMemory } from "../wasm-simd.js";
import { RESIZE_SIMD_WASM } from "./resize-simd-bytes.js";

/** One axis's integer coefficients, as resize.ts builds them (`k` holds exact integers). */
export interface SimdAxis {
  start: Int32Array;
  size: Int32Array;
  k: Float64Array;
  stride: number;
  precision: number;
}

interface Kernels {
  memory: WasmMemory;
  hpass: (src: number, rows: number, rowIn: number, out: number, wOut: number, start: number, pairs: number, wts: number, shift: number) => void;
  vpass: (src: number, rowLen: number, out: number, hOut: number, start: number, pairs: number, wts: number, shift: number) => void;
}

/** Bytes of image data per strip (input rows plus output rows) by default. */
export const DEFAULT_STRIP_BYTES = 4 << 20;

let kernels: Kernels | null | undefined;

/** The instantiated kernels, or null where WebAssembly SIMD is unavailable or disabled. */
function load(): Kernels | null {
  if (kernels === undefined) kernels = instantiateSimd<Kernels>(RESIZE_SIMD_WASM, "SIGLIP2_RESIZE_SIMD");
  return kernels;
}

/** True when the SIMD kernels are in use (WebAssembly SIMD present, not disabled). */
export function resizeSimdAvailable(): boolean {
  return load() !== null;
}

/**
 * Whether an axis's weights fit the kernels' int16 lanes (the torch backend's always do: it
 * picks the precision that keeps them below 2^15). Sums stay below 2^31: the weights of an
 * output add up to about 2^precision <= 2^22, times at most 255.
 */
export function simdFits(ax: SimdAxis): boolean {
  if (ax.precision < 1 || ax.precision > 22) return false;
  for (let i = 0; i < ax.k.length; i++) {
    const v = ax.k[i]!;
    if (v < -32768 || v > 32767) return false;
  }
  return true;
}

/** Memory of at least `bytes` bytes, with fresh views. */
function memory(k: Kernels, bytes: number): ArrayBuffer {
  ensureMemory(k.memory, bytes);
  return k.memory.buffer;
}

const align16 = (n: number): number => (n + 15) & ~15;

/** Tap pairs of output `i`. */
const pairsOf = (ax: SimdAxis, i: number): number => (ax.size[i]! + 1) >> 1;

/**
 * Write output `i`'s weights as int16 pairs, each pair repeated `reps` times and the
 * 8-lane vector zero-filled (hpass: reps 3, vpass: reps 4). Returns the next int16 index.
 */
function writePairs(i16: Int16Array, q: number, ax: SimdAxis, i: number, reps: number): number {
  const n = ax.size[i]!;
  const kb = i * ax.stride;
  for (let x = 0; x < n; x += 2) {
    const k0 = ax.k[kb + x]!;
    const k1 = x + 1 < n ? ax.k[kb + x + 1]! : 0;
    for (let r = 0; r < 8; r += 2) {
      const on = r < 2 * reps;
      i16[q + r] = on ? k0 : 0;
      i16[q + r + 1] = on ? k1 : 0;
    }
    q += 8;
  }
  return q;
}

/** Width pass (h, wIn, 3) -> (h, wOut, 3) with the SIMD kernel; null when unavailable. */
export function simdResizeWidth(src: Uint8Array, h: number, wIn: number, wOut: number, ax: SimdAxis, stripBytes = DEFAULT_STRIP_BYTES): Uint8Array | null {
  const k = load();
  if (k === null || !simdFits(ax)) return null;
  const rowIn = wIn * 3;
  const rowOut = wOut * 3;
  let totalPairs = 0;
  for (let i = 0; i < wOut; i++) totalPairs += pairsOf(ax, i);
  const stripRows = Math.max(1, Math.min(h, Math.floor(stripBytes / (rowIn + rowOut))));
  const startOff = 0;
  const pairsOff = 4 * wOut;
  const wtsOff = align16(8 * wOut);
  const srcOff = wtsOff + 16 * totalPairs;
  const outOff = align16(srcOff + stripRows * rowIn + 16); // 16: the last pair's zero-weight pixel
  const buf = memory(k, outOff + stripRows * rowOut + 16);
  const i32 = new Int32Array(buf);
  const i16 = new Int16Array(buf);
  const u8 = new Uint8Array(buf);
  let q = wtsOff >> 1;
  for (let i = 0; i < wOut; i++) {
    i32[(startOff >> 2) + i] = ax.start[i]! * 3;
    i32[(pairsOff >> 2) + i] = pairsOf(ax, i);
    q = writePairs(i16, q, ax, i, 3);
  }
  u8.fill(0, srcOff + stripRows * rowIn, outOff);
  const out = new Uint8Array(h * rowOut);
  for (let y = 0; y < h; y += stripRows) {
    const rows = Math.min(stripRows, h - y);
    u8.set(src.subarray(y * rowIn, (y + rows) * rowIn), srcOff);
    k.hpass(srcOff, rows, rowIn, outOff, wOut, startOff, pairsOff, wtsOff, ax.precision);
    out.set(u8.subarray(outOff, outOff + rows * rowOut), y * rowOut);
  }
  return out;
}

/** Height pass (hIn, w, 3) -> (hOut, w, 3) with the SIMD kernel; null when unavailable. */
export function simdResizeHeight(src: Uint8Array, hOut: number, w: number, ax: SimdAxis, stripBytes = DEFAULT_STRIP_BYTES): Uint8Array | null {
  const k = load();
  if (k === null || !simdFits(ax)) return null;
  const rowLen = w * 3;
  const hIn = src.length / rowLen;
  const out = new Uint8Array(hOut * rowLen);
  let i0 = 0;
  while (i0 < hOut) {
    // Output rows [i0, i1) read input rows [lo, hi): both ends only grow with the row index.
    const lo = ax.start[i0]!;
    let i1 = i0 + 1;
    let hi = lo + ax.size[i0]!;
    while (i1 < hOut) {
      const nextHi = Math.max(hi, ax.start[i1]! + ax.size[i1]!);
      if ((nextHi - lo + i1 + 1 - i0) * rowLen > stripBytes) break;
      hi = nextHi;
      i1++;
    }
    const n = i1 - i0;
    let pairs = 0;
    for (let i = i0; i < i1; i++) pairs += pairsOf(ax, i);
    const startOff = 0;
    const pairsOff = 4 * n;
    const wtsOff = align16(8 * n);
    const srcOff = wtsOff + 16 * pairs;
    const srcEnd = srcOff + (hi - lo + 1) * rowLen + 16; // one zero row (odd tap count) + 8-byte overrun
    const outOff = align16(srcEnd);
    const buf = memory(k, outOff + n * rowLen + 16);
    const i32 = new Int32Array(buf);
    const i16 = new Int16Array(buf);
    const u8 = new Uint8Array(buf);
    let q = wtsOff >> 1;
    for (let i = i0; i < i1; i++) {
      i32[(startOff >> 2) + i - i0] = (ax.start[i]! - lo) * rowLen;
      i32[(pairsOff >> 2) + i - i0] = pairsOf(ax, i);
      q = writePairs(i16, q, ax, i, 4);
    }
    u8.set(src.subarray(lo * rowLen, Math.min(hi, hIn) * rowLen), srcOff);
    u8.fill(0, srcOff + (Math.min(hi, hIn) - lo) * rowLen, srcEnd);
    k.vpass(srcOff, rowLen, outOff, n, startOff, pairsOff, wtsOff, ax.precision);
    out.set(u8.subarray(outOff, outOff + n * rowLen), i0 * rowLen);
    i0 = i1;
  }
  return out;
}
