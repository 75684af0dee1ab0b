/**
 * Parameter initialisation for training from scratch (seeded, deterministic). Close to
 * transformers' SiglipPreTrainedModel._init_weights: Linear/Conv kernels ~ N(0, 1/fan_in)
 * (LeCun normal), biases 0, LayerNorm γ = 1 and β = 0, embeddings and the MAP probe
 * ~ N(0, 1/D), t' = log 10 and b = −10 (SigLIP's defaults, recipe §1.2).
 *
 * The LocCa decoder (`decoder.*`, src/models/locca.ts) is initialised like big_vision's CapPa
 * decoder: every kernel, the token table and the position table ~ N(0, 0.02²) (the text
 * tower's `initializer_range`), biases 0, LayerNorm γ = 1 and β = 0, and `lm_head` (weight and
 * bias) zero (CapPa `head_zeroinit`), so the first predictions are uniform over the vocabulary.
 * It draws from its own stream (seed mixed with {@link DECODER_INIT_STREAM}), so the towers'
 * values do not depend on whether the decoder is on, and a fine-tune that starts a fresh
 * decoder gets the same one as a run from scratch with the same seed.
 */
import { INIT_LOGIT_BIAS, INIT_LOGIT_SCALE } from "./loss.js";
import type { ParamSpec } from "../models/params.js";
import { Rng, mixSeed } from "./rng.js";
import type { Params } from "./session.js";

/** Mixed into the seed for the decoder's stream. */
export const DECODER_INIT_STREAM = 0x10cca;

/** Standard deviation of the decoder's normal init (the text tower's initializer_range). */
export const DECODER_INIT_STD = 0.02;

const isDecoder = (s: ParamSpec): boolean => s.name.startsWith("decoder.");

/** Fresh values of the `decoder.*` specs among `specs` (see the module comment). */
export function initDecoderParams(specs: readonly ParamSpec[], seed: number): Params {
  const rng = new Rng(mixSeed(seed, DECODER_INIT_STREAM));
  const out: Params = new Map();
  for (const s of specs.filter(isDecoder)) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    const name = s.name;
    if (name.startsWith("decoder.lm_head.") || name.endsWith("bias")) a.fill(0);
    else if (/(layer_norm\d?|final_layer_norm)\.weight$/.test(name)) a.fill(1);
    else for (let i = 0; i < n; i++) a[i] = rng.normal() * DECODER_INIT_STD;
    out.set(name, a);
  }
  return out;
}

export function initParams(specs: readonly ParamSpec[], seed: number): Params {
  const rng = new Rng(seed);
  const out: Params = new Map();
  const decoder = initDecoderParams(specs, seed);
  for (const s of specs) {
    if (isDecoder(s)) {
      out.set(s.name, decoder.get(s.name)!);
      continue;
    }
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
