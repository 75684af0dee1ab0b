/**
 * Writing checkpoints: a safetensors writer (F32), the Hub layout that transformers and our
 * engine load (config.json + model.safetensors + tokenizer / preprocessor files), and the
 * training state next to it (optimizer.safetensors with the AdamW moments, trainer_state.json).
 *
 * A save never leaves a mixed or half-written checkpoint in DIR, and never destroys the previous
 * one before the new one is complete: every file is written (and fsynced) into the sibling folder
 * `DIR.saving`, which is marked complete, and then swapped in: DIR → `DIR.previous`,
 * `DIR.saving` → DIR, `DIR.previous` removed. Other files the user keeps in DIR move along.
 * {@link recoverCheckpointDir} (run before every save and by `siglip2 train`) finishes a swap that
 * a crash or `kill -9` interrupted, and drops an incomplete `DIR.saving`. The step in
 * trainer_state.json is also carried in the metadata of both safetensors files, so files from
 * different saves are never taken for one checkpoint.
 *
 * The LocCa decoder's parameters (`decoder.*`, src/models/locca.ts) are not in
 * model.safetensors, which stays a plain transformers SiglipModel: they go to
 * `decoder.safetensors` beside it (F32, the same `decoder.*` names, `__metadata__` {format:
 * "siglip2-locca-decoder", version: "1", layers, box_bins: "500", step}, plus `box_format` (e.g.
 * "padded", src/tasks/boxes.ts `BoxFormat`) when the run wrote its boxes in a format other than the
 * default: a file without it is canonical, so canonical files are byte-for-byte as before). Their AdamW moments
 * are in optimizer.safetensors with the others. A run without the decoder that starts from a
 * checkpoint with one copies its decoder.safetensors along unchanged.
 *
 * Self-distillation (./distill.ts): its heads and mask token (`distill.*`), the EMA teacher and
 * the centres go to `distill.safetensors` (metadata {format: "siglip2-distill", step}); the
 * moments of the heads are in optimizer.safetensors. None of it is in model.safetensors.
 */
import type { CurationStats } from "./curate.js";
import { closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { SiglipError } from "../errors.js";
import { BINS, DEFAULT_BOX_FORMAT, type BoxFormat } from "../tasks/boxes.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import type { ParamSpec } from "../models/params.js";
import type { AdamW } from "./optim.js";
import { DISTILL_FILE, DISTILL_FORMAT, isDistillParam } from "./distill.js";
import type { Params } from "./session.js";

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Serialise F32 tensors as safetensors bytes (header padded to 8 bytes, `format: pt` metadata as transformers expects). */
export function safetensorsBytes(tensors: readonly NamedTensor[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: "pt", ...metadata } };
  let off = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`internal: tensor ${t.name} has ${t.data.length} values for shape [${t.shape}]`);
    header[t.name] = { dtype: "F32", shape: t.shape, data_offsets: [off, off + 4 * n] };
    off += 4 * n;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const hb = Buffer.from(json, "utf8");
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  const dv = new DataView(out.buffer);
  for (const t of tensors) {
    for (let i = 0; i < t.data.length; i++, p += 4) dv.setFloat32(p, t.data[i]!, true);
  }
  return out;
}

/** Write a file and flush it to disk. */
function writeDurable(path: string, data: string | Uint8Array): void {
  const fd = openSync(path, "w");
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncPath(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    fsyncSync(fd);
  } catch {
    // some file systems cannot fsync a directory: the renames are still atomic
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Marks a `DIR.saving` folder whose every file is written. */
const COMPLETE = ".save-complete";

/** DIR itself (through a symbolic link, the folder it points to). */
function checkpointTarget(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    return resolve(dir);
  }
}

/** Test hook (never set it otherwise): `SIGLIP2_TEST_SAVE_KILL=written|swapped` kills the process with SIGKILL at that point of a save. */
function testKillPoint(point: "written" | "swapped"): void {
  if (process.env["SIGLIP2_TEST_SAVE_KILL"] === point) process.kill(process.pid, "SIGKILL");
}

/** Move the complete `DIR.saving` into place (see the module comment). Idempotent: a crash at any point is finished by the next call. */
function commitSave(target: string): void {
  const tmp = `${target}.saving`;
  const prev = `${target}.previous`;
  if (existsSync(target)) {
    const ours = new Set(readdirSync(tmp));
    for (const e of readdirSync(target)) if (!ours.has(e) && e !== COMPLETE) renameSync(join(target, e), join(tmp, e));
    rmSync(prev, { recursive: true, force: true });
    renameSync(target, prev);
  }
  testKillPoint("swapped");
  renameSync(tmp, target);
  rmSync(join(target, COMPLETE), { force: true });
  rmSync(prev, { recursive: true, force: true });
  fsyncPath(dirname(target));
}

/**
 * Bring a checkpoint folder back to a consistent state after an interrupted save: a complete
 * `DIR.saving` is swapped in (the save had finished writing), an incomplete one is removed
 * (DIR still holds the previous checkpoint), a left-over `DIR.previous` is removed.
 */
export function recoverCheckpointDir(dir: string): void {
  const target = checkpointTarget(dir);
  const tmp = `${target}.saving`;
  const prev = `${target}.previous`;
  try {
    if (existsSync(tmp)) {
      if (existsSync(join(tmp, COMPLETE))) commitSave(target);
      else rmSync(tmp, { recursive: true, force: true });
    }
    if (existsSync(prev)) {
      if (existsSync(target)) rmSync(prev, { recursive: true, force: true });
      else renameSync(prev, target);
    }
    rmSync(join(target, COMPLETE), { force: true });
  } catch (e) {
    throw new SiglipError("checkpoint", `${dir}: cannot recover from an interrupted save (${(e as Error).message})`, { subject: dir });
  }
}

/** The decoder's weights file and its metadata `format` / `version` (defined once, with the decoder's loader). */
export { DECODER_FILE, DECODER_FORMAT, DECODER_VERSION as DECODER_FORMAT_VERSION } from "../models/locca-infer.js";
import { BOX_FORMAT_KEY, DECODER_FILE, DECODER_FORMAT, DECODER_VERSION as DECODER_FORMAT_VERSION, MEMORY_POSITION_KEY } from "../models/locca-infer.js";
import type { MemoryPosition } from "../models/locca.js";

export const isDecoderParam = (name: string): boolean => name.startsWith("decoder.");

/** Decoder layers among `specs` (from the `decoder.layers.N.` keys). */
function decoderLayers(specs: readonly ParamSpec[]): number {
  let n = 0;
  for (const s of specs) {
    const m = /^decoder\.layers\.(\d+)\./.exec(s.name);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

/**
 * The decoder's parameters from `dir/decoder.safetensors` (fine-tuning a LocCa checkpoint), or
 * null when `dir` has none. Checks the format metadata and every shape.
 */
export function loadDecoderParams(dir: string, specs: readonly ParamSpec[]): Params | null {
  const path = join(dir, DECODER_FILE);
  if (!existsSync(path)) return null;
  const f = SafetensorsFile.open(path);
  try {
    const fmt = f.metadata["format"];
    if (fmt !== DECODER_FORMAT) throw new SiglipError("checkpoint", `${path}: not a LocCa decoder file (metadata format ${JSON.stringify(fmt ?? null)}, expected "${DECODER_FORMAT}")`, { subject: path });
    if (f.metadata["version"] !== DECODER_FORMAT_VERSION) throw new SiglipError("checkpoint", `${path}: decoder format version ${JSON.stringify(f.metadata["version"] ?? null)}, this build reads "${DECODER_FORMAT_VERSION}"`, { subject: path });
    const out: Params = new Map();
    for (const s of specs.filter((x) => isDecoderParam(x.name))) out.set(s.name, readChecked(f, path, s.name, s.shape));
    return out;
  } finally {
    f.close();
  }
}

/** Tensor `name` of an open safetensors file at `path`, its shape checked (one line per problem). */
export function readChecked(f: SafetensorsFile, path: string, name: string, shape: readonly number[]): Float32Array {
  if (!f.has(name)) throw new SiglipError("checkpoint", `${path}: no tensor ${name} (written for another model or freeze setting?)`, { subject: path });
  const got = f.info(name).shape;
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    throw new SiglipError("checkpoint", `${path}: ${name} has shape [${got.join(", ")}], expected [${shape.join(", ")}]`, { subject: path });
  }
  return f.readFloat32(name);
}

/** Files copied from the source checkpoint when present. */
export const SIDE_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json"];

/** What is saved with the weights so that a run can resume exactly. */
export interface TrainerState {
  step: number;
  /** Run settings (seed, batch, optimiser, …), checked on resume. */
  run: Record<string, unknown>;
  /** Loss per completed step, for the learning curve. */
  history: Array<{ step: number; loss: number; lr: number; gradNorm: number; sigmoidLoss?: number; loccaLoss?: number; sdLoss?: number; mpLoss?: number; curation?: CurationStats; langs?: Record<string, number> }>;
}

/**
 * Write a Hub-layout checkpoint: `config.json` (the given JSON object, or text written as is), `model.safetensors`
 * (every parameter, F32, checkpoint keys), side files copied from `sourceDir`. With an
 * optimizer and state, also `optimizer.safetensors` and `trainer_state.json`.
 */
export function saveCheckpoint(
  dir: string,
  o: {
    configJson: unknown; specs: readonly ParamSpec[]; params: Params; sourceDir?: string; optimizer?: AdamW; state?: TrainerState;
    /** Self-distillation state beside the `distill.*` parameters (teacher, centres): see the module comment. */
    distillState?: readonly NamedTensor[];
    /** How the decoder's boxes are written (default canonical: not recorded). */
    boxFormat?: BoxFormat;
    /** The decoder's image-token position code (default none: not recorded). */
    memoryPosition?: MemoryPosition;
  },
): void {
  const target = checkpointTarget(dir);
  recoverCheckpointDir(target);
  const tmp = `${target}.saving`;
  const step = String(o.state?.step ?? o.optimizer?.step ?? 0);
  try {
    mkdirSync(dirname(target), { recursive: true });
    mkdirSync(tmp);
    // A string is written verbatim: re-serialising parsed JSON would turn 1.0 into 1, which
    // transformers' strict config dataclasses reject for float fields.
    writeDurable(join(tmp, "config.json"), typeof o.configJson === "string" ? o.configJson : `${JSON.stringify(o.configJson, null, 2)}\n`);
    const tensors = o.specs.map((s) => ({ name: s.name, shape: s.shape, data: o.params.get(s.name)! }));
    writeDurable(join(tmp, "model.safetensors"), safetensorsBytes(tensors.filter((t) => !isDecoderParam(t.name) && !isDistillParam(t.name)), { step }));
    const distill = [...tensors.filter((t) => isDistillParam(t.name)), ...(o.distillState ?? [])];
    if (distill.length > 0) writeDurable(join(tmp, DISTILL_FILE), safetensorsBytes(distill, { format: DISTILL_FORMAT, step }));
    const dec = tensors.filter((t) => isDecoderParam(t.name));
    if (dec.length > 0) {
      const meta: Record<string, string> = { format: DECODER_FORMAT, version: DECODER_FORMAT_VERSION, layers: String(decoderLayers(o.specs)), box_bins: String(BINS), step };
      if (o.boxFormat !== undefined && o.boxFormat !== DEFAULT_BOX_FORMAT) meta[BOX_FORMAT_KEY] = o.boxFormat;
      if (o.memoryPosition !== undefined && o.memoryPosition !== "none") meta[MEMORY_POSITION_KEY] = o.memoryPosition;
      writeDurable(join(tmp, DECODER_FILE), safetensorsBytes(dec, meta));
    } else if (o.sourceDir && existsSync(join(o.sourceDir, DECODER_FILE))) {
      copyFileSync(join(o.sourceDir, DECODER_FILE), join(tmp, DECODER_FILE));
      fsyncPath(join(tmp, DECODER_FILE));
    }
    if (o.sourceDir) {
      for (const f of SIDE_FILES) {
        const src = join(o.sourceDir, f);
        if (existsSync(src)) {
          copyFileSync(src, join(tmp, f));
          fsyncPath(join(tmp, f));
        }
      }
    }
    if (o.optimizer) {
      const opt: NamedTensor[] = [];
      const shapes = new Map(o.specs.map((s) => [s.name, s.shape]));
      for (const n of o.optimizer.trainable) {
        opt.push({ name: `m.${n}`, shape: shapes.get(n)!, data: o.optimizer.m.get(n)! });
        opt.push({ name: `v.${n}`, shape: shapes.get(n)!, data: o.optimizer.v.get(n)! });
      }
      writeDurable(join(tmp, "optimizer.safetensors"), safetensorsBytes(opt, { step: String(o.optimizer.step) }));
    }
    if (o.state) writeDurable(join(tmp, "trainer_state.json"), `${JSON.stringify(o.state, null, 1)}\n`);
    testKillPoint("written");
    writeDurable(join(tmp, COMPLETE), `${step}\n`);
    fsyncPath(tmp);
    commitSave(target);
  } catch (e) {
    if (e instanceof SiglipError) throw e;
    rmSync(tmp, { recursive: true, force: true });
    throw new SiglipError("checkpoint", `${dir}: cannot save the checkpoint (${(e as Error).message}); the previous checkpoint there is unchanged`, { subject: dir });
  }
}

/** The trainer_state.json of a saved run (validated). */
export function readTrainerState(dir: string): TrainerState {
  const statePath = join(dir, "trainer_state.json");
  if (!existsSync(statePath)) throw new SiglipError("checkpoint", `${statePath}: missing (nothing to resume)`, { subject: statePath });
  let state: TrainerState;
  try {
    state = JSON.parse(readFileSync(statePath, "utf8")) as TrainerState;
  } catch (e) {
    throw new SiglipError("checkpoint", `${statePath}: not valid JSON (${(e as Error).message})`, { subject: statePath });
  }
  if (state === null || typeof state !== "object" || !Number.isSafeInteger(state.step) || state.step < 0 || !Array.isArray(state.history) || typeof state.run !== "object" || state.run === null) {
    throw new SiglipError("checkpoint", `${statePath}: not a training state (expected {step, run, history})`, { subject: statePath });
  }
  return state;
}

/** Read the training state written by {@link saveCheckpoint}; parameters and moments are loaded into the given maps. */
export function loadTrainingState(dir: string, specs: readonly ParamSpec[], params: Params, optimizer: AdamW): TrainerState {
  const state = readTrainerState(dir);
  const model = SafetensorsFile.open(join(dir, "model.safetensors"));
  let opt: SafetensorsFile;
  try {
    opt = SafetensorsFile.open(join(dir, "optimizer.safetensors"));
  } catch (e) {
    model.close();
    throw e;
  }
  const read = (f: SafetensorsFile, file: string, name: string, shape: readonly number[]): Float32Array => readChecked(f, join(dir, file), name, shape);
  const hasDecoder = specs.some((s) => isDecoderParam(s.name));
  let dec: SafetensorsFile | null = null;
  try {
    if (hasDecoder) {
      if (!existsSync(join(dir, DECODER_FILE))) throw new SiglipError("checkpoint", `${join(dir, DECODER_FILE)}: missing (the run trains the LocCa decoder; was it saved without --objectives …locca?)`, { subject: dir });
      dec = SafetensorsFile.open(join(dir, DECODER_FILE));
    }
    const files: Array<readonly [SafetensorsFile, string]> = [[model, "model.safetensors"], [opt, "optimizer.safetensors"]];
    if (dec) files.push([dec, DECODER_FILE]);
    for (const [f, what] of files) {
      if (f.metadata["step"] !== String(state.step)) {
        throw new SiglipError("checkpoint", `${join(dir, what)}: written at step ${f.metadata["step"]}, but trainer_state.json says ${state.step} (interrupted save?)`, { subject: dir });
      }
    }
    const shapes = new Map(specs.map((s) => [s.name, s.shape]));
    for (const s of specs) {
      if (isDistillParam(s.name)) throw new Error("internal: distill.* parameters are loaded by src/train/distill.ts loadDistillState");
      params.set(s.name, isDecoderParam(s.name) ? read(dec!, DECODER_FILE, s.name, s.shape) : read(model, "model.safetensors", s.name, s.shape));
    }
    for (const n of optimizer.trainable) {
      optimizer.m.set(n, read(opt, "optimizer.safetensors", `m.${n}`, shapes.get(n)!));
      optimizer.v.set(n, read(opt, "optimizer.safetensors", `v.${n}`, shapes.get(n)!));
    }
    optimizer.step = state.step;
  } finally {
    model.close();
    opt.close();
    dec?.close();
  }
  return state;
}
