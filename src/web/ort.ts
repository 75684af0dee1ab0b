/**
 * Which onnxruntime-web build a page runs:
 * - `webgpu`: the default build, bundled into siglip2.js: WASM + WebGPU (JSEP instrumentation),
 *   fetching `ort-wasm-simd-threaded.jsep.wasm` (28 MB);
 * - `wasm`: the CPU-only build, NOT bundled: `ort.wasm.min.mjs` (50 KB) is imported at load from
 *   next to the bundle (or `wasmPaths`) and fetches `ort-wasm-simd-threaded.mjs` and `.wasm`
 *   (14 MB). It has the same kernels without the JSEP instrumentation and ran the int8 B/16
 *   image tower 11 % faster in Chromium (bench/web-int8-ops.ts, 5 alternating rounds; README
 *   "int8 in WASM"). It stays a separate file: two emscripten builds in one script would both
 *   answer the pthread workers that load it.
 * The first `SigLIP2.load` of a page picks the build from its backend ({@link chooseOrt}) and the
 * page keeps it: tensors of one build cannot feed sessions of the other. A later load that needs
 * WebGPU after the CPU-only build was picked is one clear error.
 *
 * `ort` forwards to the chosen build (the default one until a load picks), so the model code's
 * `new ort.Tensor(…)` and the sessions always come from the same build.
 */
import * as ortDefault from "onnxruntime-web";
import { SiglipError } from "../errors.js";

export type Ort = typeof ortDefault;

/** The files of each build that are served next to the bundle (copied there by tools/build-web.ts). */
export const ORT_FILES = {
  webgpu: ["ort-wasm-simd-threaded.jsep.wasm"],
  wasm: ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"],
} as const;

let chosen: { backend: "webgpu" | "wasm"; module: Ort } | undefined;
let loading: Promise<Ort> | undefined;

/**
 * The build this page runs, with `env.wasm.wasmPaths` pointing at `base` (a folder URL ending
 * in "/"): the first call picks (`backend`), later calls get the same one.
 */
export async function chooseOrt(backend: "webgpu" | "wasm", base: string): Promise<Ort> {
  if (chosen?.backend === "wasm" && backend === "webgpu") {
    throw new SiglipError("runtime", "this page already runs onnxruntime-web's CPU-only build (a model was loaded with backend \"wasm\" first); load the WebGPU model first, or pass backend: \"wasm\"");
  }
  if (chosen) return chosen.module;
  if (backend === "webgpu") {
    ortDefault.env.wasm.wasmPaths = { wasm: new URL(ORT_FILES.webgpu[0], base).href }; // its JavaScript loader is inside this bundle
    chosen = { backend, module: ortDefault };
  } else {
    loading ??= (async () => {
      const url = new URL(ORT_FILES.wasm[0], base).href;
      let m: Ort;
      try {
        m = (await import(/* @vite-ignore */ url)) as Ort;
      } catch (e) {
        throw new SiglipError("runtime", `cannot load onnxruntime-web's CPU-only build from ${url} (${e instanceof Error ? e.message : String(e)}); serve the files of dist/web/ next to the bundle, or set wasmPaths`);
      }
      m.env.wasm.wasmPaths = base; // ort-wasm-simd-threaded.mjs and .wasm from the same folder
      return m;
    })();
    const m = await loading;
    chosen ??= { backend, module: m };
  }
  chosen.module.env.logLevel = "fatal";
  return chosen.module;
}

/** The chosen build (the default one before any load): `ort.Tensor`, `ort.InferenceSession`, `ort.env`. */
export const ort: Ort = new Proxy({} as Ort, {
  get: (_t, k) => ((chosen?.module ?? ortDefault) as unknown as Record<string | symbol, unknown>)[k],
});
