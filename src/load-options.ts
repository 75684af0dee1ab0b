/**
 * Bounds of the {@link LoadOptions} of `SigLIP2.load` (and of the CLI flags that set them), so
 * that an absurd value gets one clear error at once instead of gigabytes of memory, thousands of
 * threads or an onnxruntime allocation failure later:
 *
 * - `threads` (intra-op threads) and `workers` (preprocessing threads): at most
 *   {@link maxThreads} / {@link maxWorkers}, four per CPU (at least 8).
 * - `imageBatchSize`, `textBatchSize`: at most {@link MAX_BATCH_SIZE}, and no more than fit
 *   half of the memory by the estimate of {@link imageItemBytes} / {@link textItemBytes}.
 * - `maxPatches` (NaFlex): at most 64 × the learned position grid (the grid is resized to the
 *   image's patch grid; 8× per side is far beyond anything trained) and no more than one image's
 *   attention fits in half of the memory.
 *
 * Errors are SiglipErrors with code "options" whose subject is the option's name; the CLI
 * renames them to its flags.
 */
import { availableParallelism, totalmem } from "node:os";
import { SiglipError } from "./errors.js";
import type { SiglipConfig } from "./weights/config.js";

/** The largest batch accepted whatever the memory. */
export const MAX_BATCH_SIZE = 4096;
/** The patch budget may be at most this many times the learned position grid (num_patches). */
export const MAX_PATCHES_PER_POSITION = 64;

/** Most intra-op threads: 4 per CPU, at least 8. */
export function maxThreads(): number {
  return Math.max(8, 4 * availableParallelism());
}

/** Most preprocessing worker threads: 4 per CPU, at least 8. */
export function maxWorkers(): number {
  return Math.max(8, 4 * availableParallelism());
}

/** Memory this process may use: the machine's, or a cgroup limit when lower. */
export function memoryBytes(): number {
  const total = totalmem();
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
  return constrained !== undefined && constrained > 0 && constrained < total ? constrained : total;
}

/** Estimated activation bytes of one image with `seq` patches in one encoder layer (scores and softmax, plus hidden states). */
export function imageItemBytes(config: SiglipConfig, seq: number): number {
  const v = config.vision_config;
  return 4 * (2 * v.num_attention_heads * seq * seq + seq * (8 * v.hidden_size + 2 * v.intermediate_size));
}

/** Estimated activation bytes of one text (64 tokens) in one encoder layer. */
export function textItemBytes(config: SiglipConfig): number {
  const t = config.text_config;
  const seq = t.max_position_embeddings;
  return 4 * (2 * t.num_attention_heads * seq * seq + seq * (8 * t.hidden_size + 2 * t.intermediate_size));
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function optionsError(name: string, message: string): SiglipError {
  return new SiglipError("options", `${name} ${message}`, { subject: name });
}

function checkInt(name: string, v: unknown, min: number, max: number, why: string): void {
  if (v === undefined) return;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw optionsError(name, `must be ${min > 0 ? "a positive" : "a non-negative"} integer, got ${typeof v === "number" ? v : JSON.stringify(v)}`);
  }
  if (v > max) throw optionsError(name, `${v} is too large: at most ${max} (${why})`);
}

/** The patch grid positions of a NaFlex checkpoint. */
function positions(config: SiglipConfig): number {
  return config.vision_config.num_patches;
}

/** The largest NaFlex patch budget for this checkpoint on this machine, and why. */
export function maxPatchesFor(config: SiglipConfig): { max: number; why: string } {
  const byGrid = MAX_PATCHES_PER_POSITION * positions(config);
  const heads = config.vision_config.num_attention_heads;
  const budget = memoryBytes() / 2;
  // one image: 2·heads·L² floats of attention dominate
  const byMemory = Math.max(1, Math.floor(Math.sqrt(budget / (4 * 2 * heads))));
  return byGrid <= byMemory
    ? { max: byGrid, why: `${MAX_PATCHES_PER_POSITION} × the checkpoint's ${positions(config)} learned positions` }
    : { max: byMemory, why: `one image's attention would not fit in half of the ${gib(memoryBytes())} of memory` };
}

/** Check a NaFlex patch budget (`maxPatches` of the options or of one call, or the checkpoint's default). */
export function checkMaxPatches(config: SiglipConfig, budget: number, name = "maxPatches"): void {
  const { max, why } = maxPatchesFor(config);
  checkInt(name, budget, 1, max, why);
}

/** The largest batch of `itemBytes` items that fits in half of the memory, capped at {@link MAX_BATCH_SIZE}. */
function maxBatch(itemBytes: number): { max: number; why: string } {
  const byMemory = Math.max(1, Math.floor(memoryBytes() / 2 / itemBytes));
  return byMemory >= MAX_BATCH_SIZE
    ? { max: MAX_BATCH_SIZE, why: "the largest batch size accepted" }
    : { max: byMemory, why: `a batch would not fit in half of the ${gib(memoryBytes())} of memory` };
}

/** The options of {@link validateLoadOptions} (a structural subset of LoadOptions). */
export interface CheckedOptions {
  threads?: number;
  workers?: number;
  imageBatchSize?: number;
  textBatchSize?: number;
  maxPatches?: number;
  maxImagePixels?: number;
  resampler?: string;
  dtype?: string;
  lowercase?: boolean;
  torchCpuCompat?: boolean;
}

/**
 * Check the options that need no checkpoint (types, thread counts, choices). Throws a
 * SiglipError (code "options", subject = the option's name).
 */
export function validateLoadOptions(o: CheckedOptions): void {
  checkInt("threads", o.threads, 1, maxThreads(), `4 per CPU, at least 8; this machine has ${availableParallelism()}`);
  checkInt("workers", o.workers, 0, maxWorkers(), `4 per CPU, at least 8; this machine has ${availableParallelism()}`);
  checkInt("imageBatchSize", o.imageBatchSize, 1, MAX_BATCH_SIZE, "the largest batch size accepted");
  checkInt("textBatchSize", o.textBatchSize, 1, MAX_BATCH_SIZE, "the largest batch size accepted");
  if (o.maxPatches !== undefined) checkInt("maxPatches", o.maxPatches, 1, Number.MAX_SAFE_INTEGER, "");
  if (o.maxImagePixels !== undefined && !(typeof o.maxImagePixels === "number" && o.maxImagePixels >= 1 && !Number.isNaN(o.maxImagePixels))) {
    throw optionsError("maxImagePixels", `must be a positive number (Infinity: no limit), got ${String(o.maxImagePixels)}`);
  }
  if (o.resampler !== undefined && o.resampler !== "torch" && o.resampler !== "pil") {
    throw optionsError("resampler", `must be "torch" or "pil", got ${JSON.stringify(o.resampler)}`);
  }
  if (o.dtype !== undefined && o.dtype !== "fp32" && o.dtype !== "int8") {
    throw optionsError("dtype", `must be "fp32" or "int8", got ${JSON.stringify(o.dtype)}`);
  }
  for (const k of ["lowercase", "torchCpuCompat"] as const) {
    if (o[k] !== undefined && typeof o[k] !== "boolean") throw optionsError(k, `must be true or false, got ${JSON.stringify(o[k])}`);
  }
}

/** Check the options whose bounds depend on the checkpoint (batch sizes, patch budget). */
export function validateModelOptions(o: CheckedOptions, config: SiglipConfig): void {
  const naflex = config.model_type === "siglip2";
  if (naflex && o.maxPatches !== undefined) checkMaxPatches(config, o.maxPatches);
  const v = config.vision_config;
  const seq = naflex ? (o.maxPatches ?? v.num_patches) : (Math.floor(v.image_size / v.patch_size) ** 2);
  const img = maxBatch(imageItemBytes(config, seq));
  checkInt("imageBatchSize", o.imageBatchSize, 1, img.max, img.why);
  const txt = maxBatch(textItemBytes(config));
  checkInt("textBatchSize", o.textBatchSize, 1, txt.max, txt.why);
}
