/**
 * The image index on disk: one LanceDB table per model in an embedded LanceDB
 * database (a folder).
 *
 * Row schema (one row per image file):
 *   path     absolute path of the file
 *   size     bytes, and mtime_ms: the file's modification time, for change detection
 *   sha256   hex SHA-256 of the file's bytes
 *   model    the model id: name#fingerprint-prefix
 *   gen      write generation: every batch written gets a new, larger number
 *   vector   the L2-normalised image embedding (FixedSizeList<Float32>[dim])
 *
 * The table's schema metadata (key `siglip2`) records which model built it
 * ({@link TableMeta}); it is written in the same commit that creates the table, so a
 * table never exists without it, and vectors from another model are refused.
 *
 * Crash safety: every write is a single LanceDB commit (atomic). A file whose
 * content changed gets its new row written first, with a larger `gen`, and only
 * then is the old row deleted; a crash in between leaves two rows for one path,
 * which {@link ImageStore.removeSuperseded} (run at the start of every index run)
 * and the search (newest row per path) both resolve by keeping the largest `gen`.
 */
import { connect, type Connection, type Table } from "@lancedb/lancedb";
import { Field, FixedSizeList, Float32, Float64, Int64, Schema, Utf8 } from "apache-arrow";
import { join } from "node:path";
import { SiglipError, errorMessage } from "../errors.js";
import { checkDbFolder, checkTableName, shownPath } from "./paths.js";

/** Default table name. */
export const DEFAULT_TABLE = "images";
const META_KEY = "siglip2";
const META_FORMAT = 1;

/** Default database folder (see src/user-dirs.ts). */
export { defaultDbPath } from "../user-dirs.js";

/** Which model (and image preprocessing) built a table. */
export interface TableMeta {
  format: number;
  /** `--model` as given: an absolute directory or a Hub id. */
  model: string;
  /** Hub revision, when one was given. */
  revision?: string;
  /** {@link checkpointFingerprint} of the checkpoint. */
  fingerprint: string;
  /** Embedding dimension. */
  dim: number;
  /** config.json model_type: "siglip" (fixed resolution) or "siglip2" (NaFlex). */
  modelType: string;
  /** Resize arithmetic the images were embedded with. */
  resampler: "torch" | "pil";
  /** NaFlex only: the patch budget the images were embedded with. */
  maxPatches?: number;
  /** Weight precision the images were embedded with ("int8" changes the vectors slightly); absent means fp32. */
  dtype?: "fp32" | "int8";
  createdAt: string;
}

/** The per-row model id: the model name and the first 16 hex digits of its fingerprint. */
export function rowModelId(meta: Pick<TableMeta, "model" | "fingerprint">): string {
  return `${meta.model}#${meta.fingerprint.slice(0, 16)}`;
}

/** One stored image. */
export interface ImageRow {
  path: string;
  size: number;
  mtimeMs: number;
  sha256: string;
  gen: number;
  /**
   * LanceDB's row address when the row was read ({@link ImageStore.rows}); it changes
   * when the table is compacted, so it is only used right after reading.
   */
  rowId?: bigint;
}

export interface StoredImage extends ImageRow {
  vector: Float32Array;
}

/** A search hit before scoring: the row and its stored vector. */
export interface NearestRow extends StoredImage {
  /** LanceDB's cosine distance, 1 − cos (float32). */
  distance: number;
}

/** SQL string literal for LanceDB filters. */
export function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** Paths per `IN (...)` filter. */
const FILTER_CHUNK = 256;

function chunks<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

function tableSchema(meta: TableMeta): Schema {
  return new Schema(
    [
      new Field("path", new Utf8(), false),
      new Field("size", new Float64(), false),
      new Field("mtime_ms", new Float64(), false),
      new Field("sha256", new Utf8(), false),
      new Field("model", new Utf8(), false),
      new Field("gen", new Int64(), false),
      new Field("vector", new FixedSizeList(meta.dim, new Field("item", new Float32(), true)), false),
    ],
    new Map([[META_KEY, JSON.stringify(meta)]]),
  );
}

function parseMeta(raw: string | undefined, where: string): TableMeta {
  if (raw === undefined) throw new SiglipError("index", `${where} was not written by siglip2 (no model record); use another --table or --db`);
  try {
    const m = JSON.parse(raw) as TableMeta;
    if (typeof m.model !== "string" || typeof m.fingerprint !== "string" || typeof m.dim !== "number") throw new Error("incomplete");
    if (m.format > META_FORMAT) throw new SiglipError("index", `${where} was written by a newer siglip2 (format ${m.format}); upgrade siglip2`);
    return m;
  } catch (e) {
    if (e instanceof SiglipError) throw e;
    throw new SiglipError("index", `${where}: unreadable model record in the table metadata`);
  }
}

function num(v: unknown): number {
  return typeof v === "bigint" ? Number(v) : (v as number);
}

function toVector(v: unknown): Float32Array {
  const a = v as { toArray?: () => Float32Array } | number[];
  if (a && typeof (a as { toArray?: unknown }).toArray === "function") return Float32Array.from((a as { toArray: () => Float32Array }).toArray());
  return Float32Array.from(a as number[]);
}

/** The bookkeeping columns of a row, as stored (snake_case) and as read into an {@link ImageRow}. */
const ROW_COLUMNS = ["path", "size", "mtime_ms", "sha256", "gen"];

/** A LanceDB record → the {@link ImageRow} fields (the one place that knows the column names). */
function rowFromRecord(r: Record<string, unknown>): ImageRow {
  return {
    path: r["path"] as string,
    size: num(r["size"]),
    mtimeMs: num(r["mtime_ms"]),
    sha256: r["sha256"] as string,
    gen: num(r["gen"]),
  };
}

/**
 * LanceDB's message without what only its developers need: Rust source locations,
 * "Caused by" chains, debug dumps and error-kind prefixes.
 */
export function lanceReason(e: unknown): string {
  let m = errorMessage(e).split(/\s*Caused by:/)[0]!;
  m = m
    .replace(/,?\s*(?:\/rustc\/|\/usr\/local\/cargo\/|\S*\/\.cargo\/|\S*\/registry\/src\/)\S*?\.rs:\d+(?::\d+)?/g, "")
    .replace(/\b(?:lance error|LanceError\(\w+\)|Generic \S+ error|Wrapped error|External error|Execution error|Arrow error)\s*:\s*/gi, "")
    .replace(/\s*\(run with --debug[^)]*\)/, "")
    .replace(/^Failed to get next batch from stream:\s*/i, "")
    .replace(/\b([A-Z][\w ]{2,30}): (?:\1: )+/g, "$1: ")
    .replace(/\s+/g, " ")
    .replace(/[\s,:;]+$/, "")
    .trim();
  if (/\{|location:|backtrace/i.test(m)) m = m.split(/[{(]/)[0]!.replace(/[\s,:;]+$/, "").trim();
  if (m.length > 120) m = `${m.slice(0, 119)}…`;
  return shownPath(m) || "unknown error";
}

/**
 * The one-line SiglipError for a LanceDB failure on a table: the disk is full, the
 * DB folder is not writable, or (anything else) the table's files are damaged; then
 * the message says how to rebuild it.
 */
export function storeFailure(e: unknown, dbPath: string, tableName: string, model?: string): SiglipError {
  if (e instanceof SiglipError) return e;
  const raw = errorMessage(e);
  const where = ImageStore.describe(dbPath, tableName);
  if (/No space left|ENOSPC|os error 28\b|File too large|EFBIG|os error 27\b|quota exceeded|EDQUOT|os error 122\b/i.test(raw)) {
    return new SiglipError("index", `cannot write ${where}: no space left on the device (or a file-size limit was reached); free some space and run the same command again (every finished batch is kept)`, { subject: dbPath, cause: e });
  }
  if (/Permission denied|EACCES|os error 13\b|Read-only file system|EROFS|os error 30\b/i.test(raw)) {
    return new SiglipError("index", `cannot use ${where}: permission denied (${lanceReason(e)})`, { subject: dbPath, cause: e });
  }
  const rebuild = `siglip2 index DIR --model ${model ?? "M"} --rebuild --db ${shownPath(dbPath)}${tableName === DEFAULT_TABLE ? "" : ` --table ${tableName}`}`;
  return new SiglipError("index", `${where} is damaged (${lanceReason(e)}); rebuild it with ${rebuild}`, { subject: dbPath, cause: e });
}

/** Options for {@link ImageStore.open}. */
export interface OpenStoreOptions {
  /** Create the table with this record when it does not exist (index runs). */
  create?: Omit<TableMeta, "format" | "createdAt">;
  /** Drop an existing table first (index --rebuild). */
  rebuild?: boolean;
  /**
   * Seconds between checks for newer table versions written by other processes
   * (a server searching while `siglip2 index` runs); default: never re-check.
   */
  readConsistencyInterval?: number;
}

/** A stored vector must be finite and L2-normalised; anything else was damaged on disk. */
const NORM_TOLERANCE = 1e-3;

/** An open index table. */
export class ImageStore {
  private constructor(
    private readonly db: Connection,
    private readonly table: Table,
    /** Database folder. */
    readonly dbPath: string,
    /** Table name. */
    readonly tableName: string,
    /** Which model built the table. */
    readonly meta: TableMeta,
    /** True when this open created the table. */
    readonly created: boolean,
  ) {}

  /** A readable name for messages: `table "images" in DB /path`. */
  static describe(dbPath: string, tableName: string): string {
    return `table "${tableName}" in DB ${shownPath(dbPath)}`;
  }

  get where(): string {
    return ImageStore.describe(this.dbPath, this.tableName);
  }

  /** The per-row model id of this table. */
  get modelId(): string {
    return rowModelId(this.meta);
  }

  /** Run a LanceDB operation on the table; its failure becomes one line (see {@link storeFailure}). */
  private async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e) {
      throw storeFailure(e, this.dbPath, this.tableName, this.meta.model);
    }
  }

  /**
   * Open a table; with `create`, create it when missing. Without `create`, a missing
   * table is a one-line error telling the user to run `siglip2 index` first.
   */
  static async open(dbPath: string, tableName: string, options: OpenStoreOptions = {}): Promise<ImageStore> {
    checkTableName(tableName);
    const where = ImageStore.describe(dbPath, tableName);
    if (!checkDbFolder(dbPath, { create: Boolean(options.create) })) {
      throw new SiglipError("index", `no index: the DB folder ${shownPath(dbPath)} does not exist; build an index with \`siglip2 index DIR --model M\` (or pass --db)`, { subject: dbPath });
    }
    let db: Connection;
    try {
      db = await connect(dbPath, options.readConsistencyInterval !== undefined ? { readConsistencyInterval: options.readConsistencyInterval } : {});
    } catch (e) {
      throw new SiglipError("index", `cannot open the DB ${shownPath(dbPath)} (${lanceReason(e)})`, { subject: dbPath });
    }
    try {
      let names = await db.tableNames();
      if (options.rebuild && names.includes(tableName)) {
        await db.dropTable(tableName);
        names = names.filter((n) => n !== tableName);
      }
      if (!names.includes(tableName)) {
        if (!options.create) {
          throw new SiglipError("index", `no index: ${where} does not exist; build it with \`siglip2 index DIR --model M\`${options.rebuild ? "" : " (or pass --db / --table)"}`);
        }
        const meta: TableMeta = { format: META_FORMAT, ...options.create, createdAt: new Date().toISOString() };
        const table = await db.createEmptyTable(tableName, tableSchema(meta), { existOk: false });
        return new ImageStore(db, table, dbPath, tableName, meta, true);
      }
      const table = await db.openTable(tableName);
      const schema = await table.schema();
      const meta = parseMeta(schema.metadata.get(META_KEY), where);
      return new ImageStore(db, table, dbPath, tableName, meta, false);
    } catch (e) {
      db.close();
      throw storeFailure(e, dbPath, tableName, options.create?.model);
    }
  }

  /** The model record of an existing table, or undefined when there is none (no DB, no table, unreadable). */
  static async peekMeta(dbPath: string, tableName: string): Promise<TableMeta | undefined> {
    checkTableName(tableName);
    if (!checkDbFolder(dbPath)) return undefined;
    let db: Connection | undefined;
    try {
      db = await connect(dbPath);
      if (!(await db.tableNames()).includes(tableName)) return undefined;
      const t = await db.openTable(tableName);
      const meta = (await t.schema()).metadata.get(META_KEY);
      t.close();
      return parseMeta(meta, ImageStore.describe(dbPath, tableName));
    } catch (e) {
      if (e instanceof SiglipError) throw e;
      return undefined; // a damaged table: opening it says so
    } finally {
      db?.close();
    }
  }

  /** Every row's bookkeeping columns (no vectors), with their row addresses. */
  async rows(): Promise<ImageRow[]> {
    const rs = await this.guard(() => this.table.query().select(ROW_COLUMNS).withRowId().toArray());
    return rs.map((r: Record<string, unknown>) => ({ ...rowFromRecord(r), rowId: BigInt(r["_rowid"] as bigint | number) }));
  }

  /**
   * The newest row (largest `gen`) of this exact path, or undefined when the table has none.
   * Paths are compared as stored (absolute, byte for byte); nothing is resolved on disk.
   */
  async rowByPath(path: string): Promise<ImageRow | undefined> {
    const rs = await this.guard(() => this.table.query().where(`path = ${sqlString(path)}`).select(ROW_COLUMNS).toArray());
    let best: ImageRow | undefined;
    for (const r of rs) {
      const row = rowFromRecord(r as Record<string, unknown>);
      if (row.path === path && (!best || row.gen > best.gen)) best = row;
    }
    return best;
  }

  /** Number of rows. */
  count(): Promise<number> {
    return this.guard(() => this.table.countRows());
  }

  /** The largest `gen` in the table (0 when empty). */
  static maxGen(rows: ImageRow[]): number {
    let m = 0;
    for (const r of rows) if (r.gen > m) m = r.gen;
    return m;
  }

  /**
   * Where a path has several rows, delete all but one: the newest (largest `gen`;
   * among rows of the same `gen`, written by two writers at once, the one with the
   * latest mtime). Several rows of one path are left by a run stopped between writing
   * a changed file's new row and deleting its old one, or by two writers. The extra
   * rows are deleted by their row address, so rows that agree in every column are
   * told apart too. `removed` is the number of rows the table really lost.
   */
  async removeSuperseded(rows: ImageRow[]): Promise<{ kept: Map<string, ImageRow>; removed: number }> {
    if (rows.some((r) => r.rowId === undefined)) rows = await this.rows();
    const kept = new Map<string, ImageRow>();
    const extra: bigint[] = [];
    const better = (a: ImageRow, b: ImageRow) => a.gen !== b.gen ? a.gen > b.gen : a.mtimeMs !== b.mtimeMs ? a.mtimeMs > b.mtimeMs : a.rowId! > b.rowId!;
    for (const r of rows) {
      const k = kept.get(r.path);
      if (!k) kept.set(r.path, r);
      else if (better(r, k)) {
        extra.push(k.rowId!);
        kept.set(r.path, r);
      } else extra.push(r.rowId!);
    }
    if (extra.length === 0) return { kept, removed: 0 };
    const before = await this.count();
    for (const c of chunks(extra, FILTER_CHUNK)) await this.guard(() => this.table.delete(`_rowid IN (${c.join(", ")})`));
    const removed = before - (await this.count());
    return { kept, removed };
  }

  /** Write rows in one commit (atomic: all of them or none). */
  async add(rows: StoredImage[]): Promise<void> {
    if (rows.length === 0) return;
    for (const r of rows) {
      if (r.vector.length !== this.meta.dim) throw new SiglipError("index", `vector of ${shownPath(r.path)} has ${r.vector.length} dims, ${this.where} holds ${this.meta.dim}`);
      const n = Math.sqrt(r.vector.reduce((a, x) => a + x * x, 0));
      if (!(Math.abs(n - 1) <= NORM_TOLERANCE)) throw new SiglipError("non-finite", `vector of ${shownPath(r.path)} is ${Number.isFinite(n) ? `not L2-normalised (norm ${n.toPrecision(4)})` : "not finite"}; it is not written to ${this.where}`, { subject: r.path });
    }
    const model = this.modelId;
    await this.guard(() => this.table.add(
      rows.map((r) => ({
        path: r.path,
        size: r.size,
        mtime_ms: r.mtimeMs,
        sha256: r.sha256,
        model,
        gen: BigInt(r.gen),
        vector: Array.from(r.vector),
      })),
    ));
  }

  /** Delete the rows of these paths (only those with `gen < belowGen` when given). */
  async deletePaths(paths: string[], belowGen?: number): Promise<void> {
    for (const c of chunks(paths, FILTER_CHUNK)) {
      let pred = `path IN (${c.map(sqlString).join(", ")})`;
      if (belowGen !== undefined) pred += ` AND gen < ${Math.floor(belowGen)}`;
      await this.guard(() => this.table.delete(pred));
    }
  }

  /** A stored vector for each of these content hashes that the table has. */
  async vectorsByHash(hashes: string[]): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const c of chunks([...new Set(hashes)], FILTER_CHUNK)) {
      const rs = await this.guard(() => this.table.query().where(`sha256 IN (${c.map(sqlString).join(", ")})`).select(["path", "sha256", "vector"]).toArray());
      for (const r of rs) if (!out.has(r["sha256"] as string)) out.set(r["sha256"] as string, this.checkedVector(r["vector"], r["path"] as string));
    }
    return out;
  }

  /** Every row with its vector (tests, export). */
  async all(): Promise<StoredImage[]> {
    const rs = await this.guard(() => this.table.query().select([...ROW_COLUMNS, "vector"]).toArray());
    return rs.map((r: Record<string, unknown>) => this.storedFromRecord(r));
  }

  /** A record read with the vector column → a {@link StoredImage} (its vector checked). */
  private storedFromRecord(r: Record<string, unknown>): StoredImage {
    return { ...rowFromRecord(r), vector: this.checkedVector(r["vector"], r["path"] as string) };
  }

  /** A stored vector, refused (damaged table) unless it is finite and of unit length. */
  private checkedVector(v: unknown, path: string): Float32Array {
    const x = toVector(v);
    let n = 0;
    for (let i = 0; i < x.length; i++) n += x[i]! * x[i]!;
    if (x.length !== this.meta.dim || !(Math.abs(Math.sqrt(n) - 1) <= NORM_TOLERANCE)) {
      const what = x.length !== this.meta.dim ? `${x.length} dims, not ${this.meta.dim}` : Number.isFinite(n) ? `norm ${Math.sqrt(n).toPrecision(4)}, not 1` : "not finite";
      throw storeFailure(new Error(`the stored vector of ${shownPath(path)} is ${what}`), this.dbPath, this.tableName, this.meta.model);
    }
    return x;
  }

  /**
   * The `limit` rows nearest to `vector` by cosine distance (exact search unless an
   * ANN index was added). A row LanceDB cannot score (a non-finite stored vector) is a
   * damaged table, not a silently shorter list.
   */
  async nearest(vector: Float32Array, limit: number): Promise<NearestRow[]> {
    if (vector.length !== this.meta.dim) throw new SiglipError("input", `query vector has ${vector.length} dims; ${this.where} holds ${this.meta.dim}`);
    const rs = await this.guard(() => this.table
      .vectorSearch(Array.from(vector))
      .distanceType("cosine")
      .limit(limit)
      .select([...ROW_COLUMNS, "vector", "_distance"])
      .toArray());
    const out = rs.map((r: Record<string, unknown>) => ({ ...this.storedFromRecord(r), distance: num(r["_distance"]) }));
    if (out.length < limit) {
      const total = await this.count();
      if (out.length < Math.min(limit, total)) {
        throw storeFailure(new Error(`${total - out.length} of ${total} stored vectors cannot be scored`), this.dbPath, this.tableName, this.meta.model);
      }
    }
    return out;
  }

  /**
   * Merge small fragments (each batch is one) and drop table versions older than
   * `keepVersionsMs` (readers that opened an older version keep working for that long).
   */
  async compact(keepVersionsMs = 10 * 60_000): Promise<void> {
    await this.guard(() => this.table.optimize({ cleanupOlderThan: new Date(Date.now() - keepVersionsMs) }));
  }

  close(): void {
    this.table.close();
    this.db.close();
  }
}
