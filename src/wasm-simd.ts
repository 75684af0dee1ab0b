/**
 * Instantiating our WebAssembly SIMD kernels (src/preprocess/resize-simd.ts, src/train/adamw-simd.ts):
 * the module's bytes travel as base64 in a generated .ts file (tools/build-wasm.ts), so Node,
 * worker threads and browsers load them the same way. Where the engine has no WebAssembly or no
 * SIMD, or the kernel's environment switch is "0", callers keep their JavaScript code.
 */

/** The part of the WebAssembly API used here (the Node typings leave the global out). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

/** The memory every kernel module exports. */
export interface WasmMemory {
  buffer: ArrayBuffer;
  grow(pages: number): number;
}

function decodeBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * The exports of the module in `base64`, or null where WebAssembly SIMD is unavailable or the
 * environment variable `switchVar` is "0".
 */
export function instantiateSimd<T>(base64: string, switchVar: string): T | null {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (env?.[switchVar] === "0" || wasm === undefined) return null;
  const bytes = decodeBase64(base64);
  if (!wasm.validate(bytes)) return null; // no SIMD in this engine
  return new wasm.Instance(new wasm.Module(bytes), {}).exports as T;
}

/** Grow `memory` to at least `bytes`. */
export function ensureMemory(memory: WasmMemory, bytes: number): void {
  const have = memory.buffer.byteLength;
  if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
}
