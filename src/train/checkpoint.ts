/**
 * Writing checkpoints: a safetensors writer (F32), the Hub layout that transformers and our
 * engine load (config.json + model.safetensors + tokenizer / preprocessor files), and the
 * training state next to it (optimizer.safetensors with the AdamW moments, trainer_state.json).
 *
 * Each file is written to `NAME.tmp` and renamed into place; trainer_state.json is written last
 * and names the step that every other file carries in its metadata, so an interrupted save is
 * detected on resume.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SiglipError } from "../errors.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import type { ParamSpec } from "./model.js";
import type { AdamW } from "./optim.js";
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

function writeAtomic(path: string, data: string | Uint8Array): void {
  writeFileSync(`${path}.tmp`, data);
  renameSync(`${path}.tmp`, path);
}

/** Files copied from the source checkpoint when present. */
export const SIDE_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json"];

/** What is saved with the weights so that a run can resume exactly. */
export interface TrainerState {
  step: number;
  /** Run settings (seed, batch, optimiser, …), checked on resume. */
  run: Record<string, unknown>;
  /** Loss per completed step, for the learning curve. */
  history: Array<{ step: number; loss: number; lr: number; gradNorm: number }>;
}

/**
 * Write a Hub-layout checkpoint: `config.json` (the given JSON object, or text written as is), `model.safetensors`
 * (every parameter, F32, checkpoint keys), side files copied from `sourceDir`. With an
 * optimizer and state, also `optimizer.safetensors` and `trainer_state.json`.
 */
export function saveCheckpoint(
  dir: string,
  o: { configJson: unknown; specs: readonly ParamSpec[]; params: Params; sourceDir?: string; optimizer?: AdamW; state?: TrainerState },
): void {
  mkdirSync(dir, { recursive: true });
  const step = String(o.state?.step ?? o.optimizer?.step ?? 0);
  // A string is written verbatim: re-serialising parsed JSON would turn 1.0 into 1, which
  // transformers' strict config dataclasses reject for float fields.
  writeAtomic(join(dir, "config.json"), typeof o.configJson === "string" ? o.configJson : `${JSON.stringify(o.configJson, null, 2)}\n`);
  const tensors = o.specs.map((s) => ({ name: s.name, shape: s.shape, data: o.params.get(s.name)! }));
  writeAtomic(join(dir, "model.safetensors"), safetensorsBytes(tensors, { step }));
  if (o.sourceDir) {
    for (const f of SIDE_FILES) {
      const src = join(o.sourceDir, f);
      if (existsSync(src) && src !== join(dir, f)) copyFileSync(src, join(dir, f));
    }
  }
  if (o.optimizer) {
    const opt: NamedTensor[] = [];
    const shapes = new Map(o.specs.map((s) => [s.name, s.shape]));
    for (const n of o.optimizer.trainable) {
      opt.push({ name: `m.${n}`, shape: shapes.get(n)!, data: o.optimizer.m.get(n)! });
      opt.push({ name: `v.${n}`, shape: shapes.get(n)!, data: o.optimizer.v.get(n)! });
    }
    writeAtomic(join(dir, "optimizer.safetensors"), safetensorsBytes(opt, { step: String(o.optimizer.step) }));
  }
  if (o.state) writeAtomic(join(dir, "trainer_state.json"), `${JSON.stringify(o.state, null, 1)}\n`);
}

/** Read the training state written by {@link saveCheckpoint}; parameters and moments are loaded into the given maps. */
export function loadTrainingState(dir: string, specs: readonly ParamSpec[], params: Params, optimizer: AdamW): TrainerState {
  const statePath = join(dir, "trainer_state.json");
  if (!existsSync(statePath)) throw new SiglipError("checkpoint", `${statePath}: missing (nothing to resume)`, { subject: statePath });
  const state = JSON.parse(readFileSync(statePath, "utf8")) as TrainerState;
  const model = SafetensorsFile.open(join(dir, "model.safetensors"));
  const opt = SafetensorsFile.open(join(dir, "optimizer.safetensors"));
  try {
    for (const [f, what] of [[model, "model.safetensors"], [opt, "optimizer.safetensors"]] as const) {
      if (f.metadata["step"] !== String(state.step)) {
        throw new SiglipError("checkpoint", `${join(dir, what)}: written at step ${f.metadata["step"]}, but trainer_state.json says ${state.step} (interrupted save?)`, { subject: dir });
      }
    }
    for (const s of specs) params.set(s.name, model.readFloat32(s.name));
    for (const n of optimizer.trainable) {
      optimizer.m.set(n, opt.readFloat32(`m.${n}`));
      optimizer.v.set(n, opt.readFloat32(`v.${n}`));
    }
    optimizer.step = state.step;
  } finally {
    model.close();
    opt.close();
  }
  return state;
}
