/**
 * A checkpoint directory in the Hugging Face layout:
 * `config.json`, `model.safetensors` or `model.safetensors.index.json` + shards,
 * `preprocessor_config.json`, `tokenizer.json` (+ `tokenizer_config.json`).
 *
 * Weights are opened lazily and read tensor by tensor, so image-only use never
 * touches the text tensors (and vice versa). Every problem is reported as a
 * {@link SiglipError} that names the file or the tensor.
 */
import { existsSync, lstatSync, statSync } from "node:fs";
import { join } from "node:path";
import { SiglipError } from "../errors.js";
import { parseConfig, type SiglipConfig } from "./config.js";
import { readJsonFile } from "./json-file.js";
import { readShardIndex, shardIndexPath } from "./shard-index.js";
import { SafetensorsFile, fileKind, numel } from "./safetensors.js";
import { WeightStore as StoreBase } from "./weight-store.js";

export { assertFiniteTensor } from "./weight-store.js";

/** The weight store of a local checkpoint folder (see src/weights/weight-store.ts for the reads and checks). */
export class WeightStore extends StoreBase {
  /** Open `model.safetensors` or `model.safetensors.index.json` (+ shards) in `dir`. */
  static openDir(dir: string): WeightStore {
    return openWeightDir(dir);
  }

  /** One safetensors file on its own (e.g. a checkpoint's `decoder.safetensors`). */
  static openFile(path: string): WeightStore {
    return WeightStore.of(path, [SafetensorsFile.open(path)]);
  }
}

export { MAX_JSON_BYTES, readJsonFile } from "./json-file.js";

/** True when `p` names something (a dangling symlink included: opening it then names the problem). */
function present(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Open `model.safetensors` or `model.safetensors.index.json` (+ shards) in `dir`. */
function openWeightDir(dir: string): WeightStore {
  const single = join(dir, "model.safetensors");
  const index = shardIndexPath(dir);
  if (present(single)) return WeightStore.of(single, [SafetensorsFile.open(single)]);
  if (present(index)) {
    const { entries, shards } = readShardIndex(index);
    const files: SafetensorsFile[] = [];
    try {
      for (const shard of shards) {
        const p = join(dir, shard);
        if (!present(p)) throw new SiglipError("checkpoint", `${p}: shard listed in ${index} is missing`, { subject: p });
        files.push(SafetensorsFile.open(p));
      }
      return WeightStore.of(index, files, { entries, resolve: (s) => join(dir, s) });
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
  }
  throw new SiglipError(
    "checkpoint",
    `${dir}: no weights found (expected model.safetensors or model.safetensors.index.json)`,
    { subject: dir },
  );
}

/** A checkpoint directory with its config; weights open on first use. */
export class Checkpoint {
  readonly dir: string;
  readonly config: SiglipConfig;
  /** Contents of preprocessor_config.json, or undefined when the file is absent. */
  readonly preprocessorConfig: unknown;
  private store: WeightStore | null = null;

  constructor(dir: string) {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new SiglipError("checkpoint", `${dir}: not a directory`, { subject: dir });
    }
    this.dir = dir;
    const cfgPath = join(dir, "config.json");
    if (!existsSync(cfgPath)) throw new SiglipError("checkpoint", `${cfgPath}: missing (not a checkpoint directory?)`, { subject: cfgPath });
    this.config = parseConfig(readJsonFile(cfgPath), cfgPath);
    const pp = join(dir, "preprocessor_config.json");
    this.preprocessorConfig = present(pp) ? readJsonFile(pp) : undefined;
  }

  /** The weight store (opened and header-validated on first call). */
  get weights(): WeightStore {
    if (!this.store) this.store = openWeightDir(this.dir);
    return this.store;
  }

  /** Path of tokenizer.json; throws a clear error when absent or not a regular file (a FIFO would block the reader). */
  tokenizerPath(): string {
    const p = join(this.dir, "tokenizer.json");
    if (!existsSync(p)) throw new SiglipError("checkpoint", `${p}: missing (the text tower needs the checkpoint's tokenizer.json)`, { subject: p });
    const st = statSync(p);
    if (!st.isFile()) throw new SiglipError("checkpoint", `${p}: tokenizer file is ${fileKind(st)}, not a regular file`, { subject: p });
    return p;
  }

  close(): void {
    this.store?.close();
    this.store = null;
  }
}

export { numel };
