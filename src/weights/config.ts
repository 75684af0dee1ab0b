/**
 * Typed SigLIP / SigLIP 2 configs read from a checkpoint's `config.json`.
 *
 * Hub config files are sparse: they only store values that differ from the
 * transformers class defaults, so every absent key takes the default of
 * `SiglipTextConfig` / `SiglipVisionConfig` (spec §1.1). Key names mirror the JSON.
 */
import { SiglipError } from "../errors.js";
import { shown } from "./safetensors.js";

/**
 * Upper bounds on config sizes, far above every published SigLIP / SigLIP 2 checkpoint
 * (the largest, giant-opt, has hidden_size 1536, 40 layers, a 256k vocabulary). They keep
 * an absurd value (num_hidden_layers 1e7, max_position_embeddings 1e9) from allocating
 * anything: such a config is refused when it is read, in one line. That the config also
 * matches the weights on disk is checked when a tower is loaded (src/models).
 */
export const CONFIG_LIMITS = {
  hidden_size: 32768,
  intermediate_size: 131072,
  num_hidden_layers: 512,
  num_attention_heads: 32768,
  max_position_embeddings: 16384,
  vocab_size: 1 << 24,
  projection_size: 32768,
  image_size: 4096,
  patch_size: 1024,
  num_patches: 65536,
  num_channels: 64,
} as const;

/** The range accepted for `layer_norm_eps`: positive (eps ≤ 0 gives NaN on constant rows), at most 1. */
export const LAYER_NORM_EPS_MAX = 1;

export type HiddenAct = "gelu_pytorch_tanh" | "gelu";

/** Text tower config (`text_config`). */
export interface TextConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  vocab_size: number;
  /** Output size of `text_model.head`; equals hidden_size except giant-opt (1536). */
  projection_size: number;
  layer_norm_eps: number;
  hidden_act: HiddenAct;
}

/** Vision tower config (`vision_config`). */
export interface VisionConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number;
  /** FixRes input resolution R (the image is resized to R×R). */
  image_size: number;
  patch_size: number;
  /** NaFlex only: number of learned positions (a √n × √n grid). */
  num_patches: number;
  layer_norm_eps: number;
  hidden_act: HiddenAct;
  vision_use_head: boolean;
}

/** Whole-model config. `model_type` "siglip" = fixed resolution, "siglip2" = NaFlex. */
export interface SiglipConfig {
  model_type: "siglip" | "siglip2";
  text_config: TextConfig;
  vision_config: VisionConfig;
}

type Json = Record<string, unknown>;

function fail(file: string, problem: string): never {
  throw new SiglipError("checkpoint", `${file}: ${problem}`, { subject: file });
}

function num(obj: Json, key: string, dflt: number, where: string, file: string): number {
  const v = obj[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v)) fail(file, `${where}.${key} must be a finite number, got ${shown(v)}`);
  return v;
}

function posInt(obj: Json, key: keyof typeof CONFIG_LIMITS, dflt: number, where: string, file: string): number {
  const v = num(obj, key, dflt, where, file);
  if (!Number.isInteger(v) || v <= 0) fail(file, `${where}.${key} must be a positive integer, got ${v}`);
  const max = CONFIG_LIMITS[key];
  if (v > max) fail(file, `${where}.${key} ${v} is beyond the supported maximum ${max}`);
  return v;
}

function eps(obj: Json, where: string, file: string): number {
  const v = num(obj, "layer_norm_eps", 1e-6, where, file);
  if (!(v > 0 && v <= LAYER_NORM_EPS_MAX)) fail(file, `${where}.layer_norm_eps must be in (0, ${LAYER_NORM_EPS_MAX}], got ${v}`);
  return v;
}

function act(obj: Json, where: string, file: string): HiddenAct {
  const v = obj["hidden_act"] ?? "gelu_pytorch_tanh";
  // gelu_new / gelu_fast are the same tanh approximation in transformers.
  if (v === "gelu_pytorch_tanh" || v === "gelu_new" || v === "gelu_fast") return "gelu_pytorch_tanh";
  if (v === "gelu") return "gelu";
  fail(file, `${where}.hidden_act ${shown(v)} is not supported (expected gelu_pytorch_tanh or gelu)`);
}

function section(root: Json, key: string, file: string): Json {
  const v = root[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) fail(file, `${key} must be an object, got ${shown(v)}`);
  return v as Json;
}

function flag(obj: Json, key: string, dflt: boolean, where: string, file: string): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") fail(file, `${where}.${key} must be true or false, got ${shown(v)}`);
  return v;
}

function checkHeads(hidden: number, heads: number, where: string, file: string): void {
  if (hidden % heads !== 0) {
    throw new SiglipError("checkpoint", `${file}: ${where}.hidden_size ${hidden} is not divisible by num_attention_heads ${heads}`, { subject: file });
  }
}

/** Parse `config.json` contents, applying the transformers class defaults for absent keys. */
export function parseConfig(json: unknown, file = "config.json"): SiglipConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new SiglipError("checkpoint", `${file}: not a JSON object`, { subject: file });
  }
  const root = json as Json;
  const mt = root["model_type"];
  if (mt !== "siglip" && mt !== "siglip2") {
    fail(file, `model_type ${shown(mt)} is not a SigLIP checkpoint (expected "siglip" or "siglip2")`);
  }
  const t = section(root, "text_config", file);
  const v = section(root, "vision_config", file);

  const tHidden = posInt(t, "hidden_size", 768, "text_config", file);
  const text: TextConfig = {
    hidden_size: tHidden,
    intermediate_size: posInt(t, "intermediate_size", 3072, "text_config", file),
    num_hidden_layers: posInt(t, "num_hidden_layers", 12, "text_config", file),
    num_attention_heads: posInt(t, "num_attention_heads", 12, "text_config", file),
    max_position_embeddings: posInt(t, "max_position_embeddings", 64, "text_config", file),
    vocab_size: posInt(t, "vocab_size", 32000, "text_config", file),
    projection_size: posInt(t, "projection_size", tHidden, "text_config", file),
    layer_norm_eps: eps(t, "text_config", file),
    hidden_act: act(t, "text_config", file),
  };
  checkHeads(text.hidden_size, text.num_attention_heads, "text_config", file);

  const vision: VisionConfig = {
    hidden_size: posInt(v, "hidden_size", 768, "vision_config", file),
    intermediate_size: posInt(v, "intermediate_size", 3072, "vision_config", file),
    num_hidden_layers: posInt(v, "num_hidden_layers", 12, "vision_config", file),
    num_attention_heads: posInt(v, "num_attention_heads", 12, "vision_config", file),
    num_channels: posInt(v, "num_channels", 3, "vision_config", file),
    image_size: posInt(v, "image_size", 224, "vision_config", file),
    patch_size: posInt(v, "patch_size", 16, "vision_config", file),
    num_patches: posInt(v, "num_patches", 256, "vision_config", file),
    layer_norm_eps: eps(v, "vision_config", file),
    hidden_act: act(v, "vision_config", file),
    vision_use_head: flag(v, "vision_use_head", true, "vision_config", file),
  };
  checkHeads(vision.hidden_size, vision.num_attention_heads, "vision_config", file);
  if (vision.num_channels !== 3) {
    throw new SiglipError("checkpoint", `${file}: vision_config.num_channels ${vision.num_channels} is not supported (RGB only)`, { subject: file });
  }
  if (mt === "siglip" && vision.patch_size > vision.image_size) {
    throw new SiglipError("checkpoint", `${file}: vision_config.patch_size ${vision.patch_size} exceeds image_size ${vision.image_size}`, { subject: file });
  }
  if (mt === "siglip2" && !Number.isInteger(Math.sqrt(vision.num_patches))) {
    throw new SiglipError("checkpoint", `${file}: vision_config.num_patches ${vision.num_patches} is not a square grid`, { subject: file });
  }
  if (text.projection_size !== vision.hidden_size) {
    fail(
      file,
      `text_config.projection_size ${text.projection_size} differs from vision_config.hidden_size ${vision.hidden_size}; image and text embeddings must have one size`,
    );
  }
  return { model_type: mt, text_config: text, vision_config: vision };
}

/** Side of the FixRes patch grid: trailing pixels that do not fill a patch are dropped. */
export function fixresGrid(v: VisionConfig): number {
  return Math.floor(v.image_size / v.patch_size);
}
