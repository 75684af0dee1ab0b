/**
 * A checkpoint directory in the Hugging Face layout:
 * `config.json`, `model.safetensors` or `model.safetensors.index.json` + shards,
 * `preprocessor_config.json`, `tokenizer.json` (+ `tokenizer_config.json`).
 *
 * Weights are opened lazily and read tensor by tensor, so image-only use never
 * touches the text tensors (and vice versa). Every problem is reported as a
 * {@link SiglipError} that names the file or the tensor.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { SiglipError } from "../errors.js";
import { parseConfig, type SiglipConfig } from "./config.js";
import { SafetensorsFile, numel, type TensorInfo } from "./safetensors.js";

/** Read and parse a JSON file, with errors naming the file. */
export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SiglipError("checkpoint", `${path}: cannot read (${code ?? String(e)})`, { subject: path, cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SiglipError("checkpoint", `${path}: not valid JSON (${(e as Error).message})`, { subject: path, cause: e });
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
    const index = join(dir, "model.safetensors.index.json");
    if (existsSync(single)) {
      const store = new WeightStore(single);
      store.addFile(single);
      return store;
    }
    if (existsSync(index)) {
      const json = readJsonFile(index) as { weight_map?: Record<string, string> };
      const map = json?.weight_map;
      if (!map || typeof map !== "object") {
        throw new SiglipError("checkpoint", `${index}: has no weight_map object`, { subject: index });
      }
      const store = new WeightStore(index);
      const shards = [...new Set(Object.values(map))];
      for (const shard of shards) {
        if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\")) {
          throw new SiglipError("checkpoint", `${index}: invalid shard name ${JSON.stringify(shard)}`, { subject: index });
        }
        const p = join(dir, shard);
        if (!existsSync(p)) throw new SiglipError("checkpoint", `${p}: shard listed in ${index} is missing`, { subject: p });
        store.addFile(p);
      }
      for (const [name, shard] of Object.entries(map)) {
        const p = join(dir, shard);
        if (!store.files.get(p)!.has(name)) {
          throw new SiglipError("checkpoint", `${p}: tensor ${name} listed in ${index} is not in this shard`, { subject: name });
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

  /** Read a tensor as float32, checking its shape first. */
  float32(name: string, expectShape?: readonly number[]): Float32Array {
    if (expectShape) this.checkShape(name, expectShape);
    return this.file(name).readFloat32(name);
  }

  /** Read rows of a 2-D tensor as float32 (rows.length × cols). */
  rowsFloat32(name: string, rows: ArrayLike<number>): Float32Array {
    return this.file(name).readRowsFloat32(name, rows);
  }

  /** Throw a clear error when `name` is absent or has another shape. */
  checkShape(name: string, shape: readonly number[]): void {
    const info = this.info(name);
    const same = info.shape.length === shape.length && info.shape.every((d, i) => d === shape[i]);
    if (!same) {
      throw new SiglipError(
        "checkpoint",
        `${info.file}: tensor ${name} has shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]`,
        { subject: name },
      );
    }
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

  /** Identity of the weight files (paths, sizes, modification times) for cache keys. */
  fingerprint(): Array<[string, number, number]> {
    return [...this.files.keys()].sort().map((p) => {
      const st = statSync(p);
      return [p, st.size, st.mtimeMs];
    });
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
    this.preprocessorConfig = existsSync(pp) ? readJsonFile(pp) : undefined;
  }

  /** The weight store (opened and header-validated on first call). */
  get weights(): WeightStore {
    if (!this.store) this.store = WeightStore.openDir(this.dir);
    return this.store;
  }

  /** Identity of this checkpoint (config + weight files) for the model cache. */
  fingerprint(): unknown {
    return { dir: this.dir, config: this.config, weights: this.weights.fingerprint() };
  }

  /** Path of tokenizer.json; throws a clear error when absent. */
  tokenizerPath(): string {
    const p = join(this.dir, "tokenizer.json");
    if (!existsSync(p)) throw new SiglipError("checkpoint", `${p}: missing (the text tower needs the checkpoint's tokenizer.json)`, { subject: p });
    return p;
  }

  close(): void {
    this.store?.close();
    this.store = null;
  }
}

export { numel };
