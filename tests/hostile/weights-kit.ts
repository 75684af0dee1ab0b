/**
 * Helpers for the weights-area hostile cases (cases-checkpoint/config/cache/image.ts):
 * damaged copies of the fixture checkpoints, raw safetensors rewriting, and the CLI
 * invocations the cases share.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES } from "../harness/paths.js";
import { copyFixture, safetensorsBytes, tempDir } from "../harness/files.js";
import { runCli, type CliOptions, type CliResult } from "./harness.js";

export const IMG_32 = join(FIXTURES, "model-inputs", "noise_32x32.png");
export const IMG_47x61 = join(FIXTURES, "model-inputs", "noise_47x61.png");
export const IMG_PHOTO = join(FIXTURES, "images", "photo_48x64.jpg");

/** One tensor as raw little-endian bytes. */
export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

/** Every tensor of a safetensors file, in file order, plus its metadata. */
export function readRaw(path: string): { tensors: Map<string, RawTensor>; metadata: unknown } {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const tensors = new Map<string, RawTensor>();
  const entries = Object.entries(header).filter(([k]) => k !== "__metadata__").sort((x, y) => x[1].data_offsets[0] - y[1].data_offsets[0]);
  for (const [k, v] of entries) {
    tensors.set(k, { dtype: v.dtype, shape: v.shape, bytes: Buffer.from(b.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1])) });
  }
  return { tensors, metadata: (header as Record<string, unknown>)["__metadata__"] };
}

/** Write tensors densely (a valid file unless the entries are made inconsistent on purpose). */
export function writeRaw(path: string, tensors: Map<string, RawTensor>, metadata?: unknown): void {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header["__metadata__"] = metadata;
  let off = 0;
  for (const [k, t] of tensors) {
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  writeFileSync(path, safetensorsBytes(header, Buffer.concat([...tensors.values()].map((t) => t.bytes))));
}

/** A copy of fixture `name` whose model.safetensors tensors were edited by `edit`. */
export function withTensors(name: string, edit: (t: Map<string, RawTensor>) => void): string {
  const dir = copyFixture(name);
  const p = join(dir, "model.safetensors");
  const { tensors, metadata } = readRaw(p);
  edit(tensors);
  writeRaw(p, tensors, metadata);
  return dir;
}

/** Set float32 value(s) of a tensor stored as F32. */
export function setF32(t: Map<string, RawTensor>, name: string, value: number, index = 0): void {
  const r = t.get(name)!;
  if (r.dtype !== "F32") throw new Error(`${name} is ${r.dtype}`);
  if (index < 0) for (let i = 0; i < r.bytes.length / 4; i++) r.bytes.writeFloatLE(value, i * 4);
  else r.bytes.writeFloatLE(value, index * 4);
}

/** A copy of fixture `name` with config.json edited (or replaced by raw text). */
export function withConfig(name: string, edit: ((c: Record<string, any>) => void) | string, file = "config.json"): string {
  const dir = copyFixture(name);
  const p = join(dir, file);
  if (typeof edit === "string") {
    writeFileSync(p, edit);
  } else {
    const c = JSON.parse(readFileSync(p, "utf8")) as Record<string, any>;
    edit(c);
    writeFileSync(p, JSON.stringify(c));
  }
  return dir;
}

/** A copy of fixture `name` with preprocessor_config.json edited (or replaced by raw text). */
export function withPreprocessor(name: string, edit: ((c: Record<string, any>) => void) | string): string {
  return withConfig(name, edit, "preprocessor_config.json");
}

/** A copy of fixture `name` whose model.safetensors is replaced by raw `bytes`. */
export function withWeightBytes(name: string, bytes: Uint8Array): string {
  const dir = copyFixture(name);
  writeFileSync(join(dir, "model.safetensors"), bytes);
  return dir;
}

/** A fresh, empty model cache folder (so a case never reuses another's built graphs). */
export function freshCache(): string {
  return join(tempDir("siglip2-hostile-cache-"), "onnx");
}

export function embedText(dir: string, opts: CliOptions = {}): Promise<CliResult> {
  return runCli(["embed", "--model", dir, "--text", "a cat"], opts);
}

export function embedImage(dir: string, image = IMG_47x61, opts: CliOptions = {}): Promise<CliResult> {
  return runCli(["embed", "--model", dir, "--image", image], opts);
}

export function classify(dir: string, images: string[] = [IMG_47x61], opts: CliOptions = {}): Promise<CliResult> {
  return runCli(["classify", "--model", dir, "--labels", "cat", "dog", "--", ...images], opts);
}

/** The check for one finite, L2-normalised embedding line of dimension `d`. */
export function oneEmbedding(d = 32): (lines: unknown[]) => string | null {
  return (lines) => {
    const l = lines[0] as { embedding?: number[] } | undefined;
    if (lines.length !== 1 || !l?.embedding || l.embedding.length !== d) return `expected one ${d}-d embedding line, got ${JSON.stringify(lines).slice(0, 120)}`;
    const n = Math.hypot(...l.embedding);
    return Math.abs(n - 1) < 1e-4 ? null : `norm ${n}`;
  };
}

/** What a library case does with a checkpoint: embed a text, embed an image, or classify. */
export type ApiAction = "text" | "image" | "classify";

/**
 * The same action in-process through the library API (fast: no process start). Resolves
 * to a short description of the result; a SiglipError propagates for expectThrows.
 */
export async function apiRun(dir: string, action: ApiAction, image = IMG_47x61): Promise<string> {
  const { SigLIP2 } = await import("../../src/api.js");
  const m = await SigLIP2.load(dir);
  try {
    if (action === "text") return `embedding ${Array.from((await m.embedTexts(["a cat"]))[0]!).slice(0, 3).join(",")}`;
    if (action === "image") return `embedding ${Array.from((await m.embedImages([image]))[0]!).slice(0, 3).join(",")}`;
    return JSON.stringify(await m.classify([image], ["cat", "dog"]));
  } finally {
    await m.close();
  }
}
