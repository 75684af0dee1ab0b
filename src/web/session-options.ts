/**
 * onnxruntime-web session options from a tower's runtime options (src/models/tower.ts
 * `runtimeOptions`): only the settings of src/graph/session-options.ts that mean something in
 * WASM/WebGPU are read. No DOM types here, so Node tests can check the mapping.
 */
import type * as ort from "onnxruntime-web";

/** The runtime options a page's sessions read (the rest of the Node options are ignored). */
export interface WebSessionSettings {
  /** As on Node (src/graph/session-options.ts); the web default is onnxruntime's (pre-packing on). */
  prepack?: boolean;
  /** false: idle intra-op threads do not spin between kernels (the text tower asks; default onnxruntime's, true). */
  spin?: boolean;
}

/** Session options for onnxruntime-web: `spin: false` → `session.intra_op.allow_spinning=0`; nothing else leaves its defaults. */
export function webSessionOptions(options: WebSessionSettings, executionProviders: string[]): ort.InferenceSession.SessionOptions {
  const session: Record<string, string> = {};
  if (options.spin === false) session["intra_op.allow_spinning"] = "0";
  const o: ort.InferenceSession.SessionOptions = { executionProviders, graphOptimizationLevel: "all", logSeverityLevel: 4 };
  if (Object.keys(session).length > 0) o.extra = { session };
  return o;
}
