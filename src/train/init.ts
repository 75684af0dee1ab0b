/**
 * Parameter initialisation for training from scratch (seeded, deterministic). Close to
 * transformers' SiglipPreTrainedModel._init_weights: Linear/Conv kernels ~ N(0, 1/fan_in)
 * (LeCun normal), biases 0, LayerNorm γ = 1 and β = 0, embeddings and the MAP probe
 * ~ N(0, 1/D), t' = log 10 and b = −10 (SigLIP's defaults, recipe §1.2).
 */
import { INIT_LOGIT_BIAS, INIT_LOGIT_SCALE } from "./loss.js";
import type { ParamSpec } from "../models/params.js";
import { Rng } from "./rng.js";
import type { Params } from "./session.js";

export function initParams(specs: readonly ParamSpec[], seed: number): Params {
  const rng = new Rng(seed);
  const out: Params = new Map();
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    const name = s.name;
    if (name === "logit_scale") a.fill(INIT_LOGIT_SCALE);
    else if (name === "logit_bias") a.fill(INIT_LOGIT_BIAS);
    else if (/(layer_norm\d?|layernorm|post_layernorm|final_layer_norm)\.weight$/.test(name)) a.fill(1);
    else if (name.endsWith("bias")) a.fill(0);
    else if (name.endsWith("embedding.weight") && !name.includes("patch_embedding") || name.endsWith(".probe")) {
      const std = 1 / Math.sqrt(s.shape[s.shape.length - 1]!);
      for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
    } else {
      const fanIn = s.shape.slice(1).reduce((x, y) => x * y, 1);
      const std = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
    }
    out.set(name, a);
  }
  return out;
}
