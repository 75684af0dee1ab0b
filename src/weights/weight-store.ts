/**
 * Tensors of one or more safetensors files addressed by checkpoint key (sharded checkpoints
 * included), with the checks every weight read makes: float dtype, expected shape, finite
 * values. Pure (no Node module): over local files (src/weights/checkpoint.ts) and over HTTP
 * in the browser (src/web/checkpoint.ts).
 *
 * Reference: transformers `modeling_utils.load_state_dict` / the shard index format.
 */
import { SiglipError } from "../errors.js";
import { FLOAT_DTYPES, clip, type SafetensorsReader, type TensorInfo } from "./safetensors-format.js";

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
  private readonly files = new Map<string, SafetensorsReader>();
  private readonly where = new Map<string, string>(); // tensor name → file path

  /** An empty store; fill it with {@link WeightStore.of}. */
  constructor(readonly description: string) {}

  /** `__metadata__` of the store's first file (the only one for a single-file store such as a checkpoint's `decoder.safetensors`). */
  metadata(): Record<string, string> {
    const first = this.files.values().next().value;
    return first ? first.metadata : {};
  }

  /**
   * A store over opened files. `index`: the shard index's `[tensor, file name]` entries, with
   * `resolve` giving each file name's reader name (path or URL); every listed tensor must be
   * in its shard. Without an index, a tensor is found in the first file that holds it.
   */
  static of<S extends WeightStore>(
    this: new (description: string) => S,
    description: string,
    files: readonly SafetensorsReader[],
    index?: { entries: ReadonlyArray<readonly [string, string]>; resolve: (shard: string) => string },
  ): S {
    const store = new this(description);
    for (const f of files) {
      store.files.set(f.path, f);
      for (const n of f.names()) if (!store.where.has(n)) store.where.set(n, f.path);
    }
    if (index) {
      for (const [name, shard] of index.entries) {
        const p = index.resolve(shard);
        if (!store.files.get(p)!.has(name)) {
          throw new SiglipError("checkpoint", `${p}: tensor ${clip(name)} listed in ${description} is not in this shard`, { subject: name });
        }
        store.where.set(name, p);
      }
    }
    return store;
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  private file(name: string): SafetensorsReader {
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

  /**
   * Rows `ids[i]` of the 2-D table `name` (row width `dim`), stacked in `ids` order: each distinct
   * row is read once (token tables: a batch repeats ids, and the table never enters memory whole).
   */
  gatherRows(name: string, ids: ArrayLike<number>, dim: number): Float32Array {
    const unique = [...new Set(Array.from(ids))];
    const rows = this.rowsFloat32(name, unique);
    const at = new Map(unique.map((id, i) => [id, i]));
    const out = new Float32Array(ids.length * dim);
    for (let i = 0; i < ids.length; i++) {
      const r = at.get(ids[i]!)!;
      out.set(rows.subarray(r * dim, (r + 1) * dim), i * dim);
    }
    return out;
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

