/**
 * A checkpoint directory in the Hugging Face layout:
 * `config.json`, `model.safetensors` or `model.safetensors.index.json` + shards,
 * `preprocessor_config.json`, `tokenizer.json` (+ `tokenizer_config.json`).
 *
 * Weights are opened lazily and read tensor by tensor, so image-only use never
 * touches the text tensors (and vice versa). Every problem is reported as a
 * {@link SiglipError} that names the file or the tensor.
 */
import { closeSync, existsSync, lstatSync, statSync } from "node:fs";
import { join } from "node:path";
import { SiglipError } from "../errors.js";
import { parseConfig, type SiglipConfig } from "./config.js";
import { readJsonFile } from "./json-file.js";
import { readShardIndex, shardIndexPath } from "./shard-index.js";
import { FLOAT_DTYPES, SafetensorsFile, clip, fileKind, numel, openRegularFile, readFully, shown, type TensorInfo } from "./safetensors.js";

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

/** A shard file name as the index may give it: a plain name in the checkpoint folder. */
/** Throw when `values` holds NaN or ±Infinity, naming the tensor and its file. */
export function assertFiniteTensor(values: Float32Array, file: string, name: string, offset = 0): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v - v !== 0) {
      throw new SiglipError("checkpoint", `${file}: tensor ${clip(name)} holds a non-finite value (${v} at index ${offset + i}); the weights are corrupt`, { subject: name });
    }
  }
}

/** Tensors of one or more safetensors files addressed by name (handles sharded checkpoints). */
export class WeightStore {
  private readonly files = new Map<string, SafetensorsFile>();
  private readonly where = new Map<string, string>(); // tensor name → file path

  private constructor(readonly description: string) {}

  /** Open `model.safetensors` or `model.safetensors.index.json` (+ shards) in `dir`. */
  static openDir(dir: string): WeightStore {
    const single = join(dir, "model.safetensors");
    const index = shardIndexPath(dir);
    if (present(single)) {
      const store = new WeightStore(single);
      store.addFile(single);
      return store;
    }
    if (present(index)) {
      const { entries, shards } = readShardIndex(index);
      const store = new WeightStore(index);
      for (const shard of shards) {
        const p = join(dir, shard);
        if (!present(p)) throw new SiglipError("checkpoint", `${p}: shard listed in ${index} is missing`, { subject: p });
        store.addFile(p);
      }
      for (const [name, shard] of entries) {
        const p = join(dir, shard);
        if (!store.files.get(p)!.has(name)) {
          throw new SiglipError("checkpoint", `${p}: tensor ${clip(name)} listed in ${index} is not in this shard`, { subject: name });
        }
        store.where.set(name, p);
      }
      return store;
    }
    throw new SiglipError(
      "checkpoint",
      `${dir}: no weights found (expected model.safetensors or model.safetensors.index.json)`,
      { subject: dir },
    );
  }

  /** One safetensors file on its own (e.g. a checkpoint's `decoder.safetensors`). */
  static openFile(path: string): WeightStore {
    const store = new WeightStore(path);
    store.addFile(path);
    return store;
  }

  /** `__metadata__` of the store's first file (the only one for {@link openFile}). */
  metadata(): Record<string, string> {
    const first = this.files.values().next().value;
    return first ? first.metadata : {};
  }

  private addFile(path: string): void {
    const f = SafetensorsFile.open(path);
    this.files.set(path, f);
    for (const n of f.names()) if (!this.where.has(n)) this.where.set(n, path);
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  private file(name: string): SafetensorsFile {
    const p = this.where.get(name);
    if (!p) throw new SiglipError("checkpoint", `${this.description}: tensor ${name} is missing`, { subject: name });
    return this.files.get(p)!;
  }

  info(name: string): TensorInfo & { file: string } {
    const f = this.file(name);
    return { ...f.info(name), file: f.path };
  }

  /**
   * Read a weight as float32, checking its dtype (a float type) and its shape first and
   * every value afterwards: NaN or ±Infinity (also from an F64 value beyond float32) is an
   * error naming the tensor.
   */
  float32(name: string, expectShape?: readonly number[]): Float32Array {
    if (expectShape) this.checkShape(name, expectShape);
    else this.checkDtype(name);
    const f = this.file(name);
    const values = f.readFloat32(name);
    assertFiniteTensor(values, f.path, name);
    return values;
  }

  /** Read rows of a 2-D weight as float32 (rows.length × cols), with the checks of {@link float32}. */
  rowsFloat32(name: string, rows: ArrayLike<number>): Float32Array {
    this.checkDtype(name);
    const f = this.file(name);
    const values = f.readRowsFloat32(name, rows);
    assertFiniteTensor(values, f.path, name);
    return values;
  }

  /** Throw a clear error when `name` is absent or not stored as a float type (F32, F16, BF16, F64). */
  checkDtype(name: string): void {
    const info = this.info(name);
    if (!FLOAT_DTYPES.has(info.dtype)) {
      throw new SiglipError(
        "checkpoint",
        `${info.file}: tensor ${clip(name)} has dtype ${info.dtype}; a weight must be F32, F16, BF16 or F64`,
        { subject: name },
      );
    }
  }

  /** Throw a clear error when `name` is absent, has another shape or is not a float type. */
  checkShape(name: string, shape: readonly number[]): void {
    const info = this.info(name);
    const same = info.shape.length === shape.length && info.shape.every((d, i) => d === shape[i]);
    if (!same) {
      throw new SiglipError(
        "checkpoint",
        `${info.file}: tensor ${clip(name)} has shape [${clip(info.shape.join(", "))}], expected [${shape.join(", ")}]`,
        { subject: name },
      );
    }
    this.checkDtype(name);
  }

  /**
   * The encoder layers present under `prefix` (`{prefix}.encoder.layers.{i}.…`): how many
   * distinct indices and the largest one (-1 when none). Reads names only.
   */
  layerIndices(prefix: string): { count: number; max: number } {
    const head = `${prefix}.encoder.layers.`;
    const seen = new Set<number>();
    for (const n of this.where.keys()) {
      if (!n.startsWith(head)) continue;
      const m = /^(\d+)\./.exec(n.slice(head.length));
      if (m) seen.add(Number(m[1]));
    }
    return { count: seen.size, max: seen.size > 0 ? Math.max(...seen) : -1 };
  }

  /** Check a whole list of expected tensors, reporting every missing one at once. */
  checkAll(expected: ReadonlyArray<readonly [string, readonly number[]]>): void {
    const missing = expected.filter(([n]) => !this.has(n)).map(([n]) => n);
    if (missing.length > 0) {
      const list = missing.length > 4 ? `${missing.slice(0, 4).join(", ")} and ${missing.length - 4} more` : missing.join(", ");
      throw new SiglipError("checkpoint", `${this.description}: missing tensor${missing.length > 1 ? "s" : ""} ${list}`, { subject: missing[0]! });
    }
    for (const [n, s] of expected) this.checkShape(n, s);
  }

  /** Paths of the weight files (sorted), plus the shard index when there is one. */
  paths(): string[] {
    const files = [...this.files.keys()].sort();
    return this.description.endsWith(".index.json") ? [this.description, ...files] : files;
  }

  /** Total bytes on disk of the named tensors. */
  bytes(names: readonly string[]): number {
    let total = 0;
    for (const n of names) {
      const i = this.info(n);
      total += i.end - i.begin;
    }
    return total;
  }

  close(): void {
    for (const f of this.files.values()) f.close();
    this.files.clear();
  }
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
    if (!this.store) this.store = WeightStore.openDir(this.dir);
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
