/**
 * The one place onnxruntime session options are made, for inference (src/graph/runtime.ts),
 * training (src/train/session.ts) and the gradient checks (src/train/gradcheck.ts).
 *
 * Reference: onnxruntime-node `InferenceSession.SessionOptions`; session config keys in
 * onnxruntime's `onnxruntime_session_options_config_keys.h`.
 */
import { availableParallelism } from "node:os";
import type { InferenceSession } from "onnxruntime-node";
import { assertCommandLineSafe } from "./cmdline-guard.js";

/** What callers choose about a session. */
export interface SessionSettings {
  /** Intra-op threads; default: every CPU the process may use (os.availableParallelism()). */
  threads?: number;
  /**
   * onnxruntime graph optimisation level. Our inference graphs already use the fused
   * contrib ops, so "basic" (constant folding, redundant-node removal) runs as fast as
   * "all" and builds ~1.4 s sooner for B/16. Default "all".
   */
  optimizationLevel?: "disabled" | "basic" | "extended" | "all";
  /**
   * Pre-pack MatMul weights (default false; see {@link sessionOptions}). The text tower turns it
   * on: its 64-row GEMMs spent ~30 % of their time packing the weights on every run.
   */
  prepack?: boolean;
  /** Let idle intra-op threads spin between kernels (default true, onnxruntime's; the text tower turns it off). */
  spin?: boolean;
}

/** Session options: CPU, all cores unless `threads`, no log (errors come back as exceptions), no weight pre-packing unless `prepack`. */
export function sessionOptions(s: SessionSettings = {}): InferenceSession.SessionOptions {
  assertCommandLineSafe(); // onnxruntime would segfault on a long /proc/self/cmdline (see cmdline-guard.ts)
  const o: InferenceSession.SessionOptions = {
    executionProviders: ["cpu"],
    graphOptimizationLevel: s.optimizationLevel ?? "all",
    // errors come back as exceptions (one line each, see ortError in runtime.ts); the log adds nothing
    logSeverityLevel: 4,
  };
  // onnxruntime's own default ran one thread on 2-vCPU machines (half speed): use every CPU.
  o.intraOpNumThreads = s.threads ?? availableParallelism();
  // Pre-packing keeps a second, re-laid-out copy of every MatMul weight (+~45 % RSS
  // for the B/16 image tower) for no measurable speed-up there: off unless asked (the text
  // tower asks: same peak RSS, 30 % less CPU per query). Training graphs take their weights
  // as inputs, which are never pre-packed.
  const session: Record<string, string> = { disable_prepacking: s.prepack ? "0" : "1" };
  if (s.spin === false) session["intra_op.allow_spinning"] = "0";
  o.extra = { session };
  if (process.env["SIGLIP2_ORT_PROFILE"]) {
    o.enableProfiling = true;
    o.profileFilePrefix = process.env["SIGLIP2_ORT_PROFILE"];
  }
  return o;
}
