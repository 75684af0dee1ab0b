/**
 * The AdamW update (./optim.ts) as a WebAssembly SIMD kernel (adamw-simd.wat; adamw-simd-bytes.ts
 * is its assembled form): the JavaScript loop's float64 arithmetic two lanes at a time, so the
 * parameters and moments it writes are the loop's bit for bit (tests/adamw-simd.test.ts), about
 * twice as fast. Tensors travel through the module's memory in chunks of {@link CHUNK} floats, so
 * its memory stays under 1 MiB whatever the model size. Without WebAssembly SIMD (or with
 * SIGLIP2_ADAMW_SIMD=0) optim.ts keeps the JavaScript loop.
 */
import { ensureMemory, instantiateSimd, type WasmMemory } from "../wasm-simd.js";
import { ADAMW_SIMD_WASM } from "./adamw-simd-bytes.js";

interface Kernel {
  memory: WasmMemory;
  adamw: (n: number, p: number, g: number, m: number, v: number, b1: number, ob1: number, b2: number, ob2: number, bc1: number, bc2: number, eps: number, step: number, decay: number) => void;
}

/** Floats per array per kernel call (4 arrays × 64 KiB: the working set stays in L2). */
export const CHUNK = 16384;

let kernel: Kernel | null | undefined;

function load(): Kernel | null {
  if (kernel === undefined) {
    kernel = instantiateSimd<Kernel>(ADAMW_SIMD_WASM, "SIGLIP2_ADAMW_SIMD");
    if (kernel) ensureMemory(kernel.memory, 16 * CHUNK);
  }
  return kernel;
}

/** True when the kernel is in use (WebAssembly SIMD present, not disabled). */
export function adamwSimdAvailable(): boolean {
  return load() !== null;
}

/** The scalars of one tensor's update (see optim.ts `AdamW.update`). */
export interface AdamwScalars {
  beta1: number;
  beta2: number;
  eps: number;
  /** Bias corrections 1 − β1^t and 1 − β2^t. */
  bc1: number;
  bc2: number;
  /** sched·lr, and the decay factor of the run's convention (0 without decay). */
  stepScale: number;
  decayScale: number;
}

/**
 * Update `p`, `m`, `v` in place from gradient `g` (all of one length). Returns false, touching
 * nothing, when the kernel is unavailable.
 */
export function adamwSimd(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, s: AdamwScalars): boolean {
  const k = load();
  if (!k) return false;
  const heap = new Float32Array(k.memory.buffer, 0, 4 * CHUNK);
  const [P, G, M, V] = [0, CHUNK, 2 * CHUNK, 3 * CHUNK];
  for (let at = 0; at < p.length; at += CHUNK) {
    const n = Math.min(CHUNK, p.length - at);
    const end = at + n;
    heap.set(p.subarray(at, end), P);
    heap.set(g.subarray(at, end), G);
    heap.set(m.subarray(at, end), M);
    heap.set(v.subarray(at, end), V);
    k.adamw(n, 4 * P, 4 * G, 4 * M, 4 * V, s.beta1, 1 - s.beta1, s.beta2, 1 - s.beta2, s.bc1, s.bc2, s.eps, s.stepScale, s.decayScale);
    p.set(heap.subarray(P, P + n), at);
    m.set(heap.subarray(M, M + n), at);
    v.set(heap.subarray(V, V + n), at);
  }
  return true;
}
