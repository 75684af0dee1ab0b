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
 *   ext, width, height, taken_ms   the filter columns (see "Filter columns" below)
 *   time_s   video frames only: the frame's time in seconds (NULL for images; see "Video frames")
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
import "./lance-log.js"; // before LanceDB: its Rust log level
import { connect, Index, type Connection, type Table, type VectorQuery } from "@lancedb/lancedb";
import { Field, FixedSizeList, Float32, Float64, Int32, Int64, Schema, Utf8 } from "apache-arrow";
import { join, resolve } from "node:path";
import { SiglipError, errorMessage } from "../errors.js";
import { checkDbFolder, checkTableName, dbUriScheme, oneLine, shownPath } from "./paths.js";

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

// ---- Filter columns (h14-ann) ---------------------------------------------------------
// The columns that `search` filters on inside the query (besides path, size = bytes and
// mtime_ms). All nullable: a row written before they existed, or a file whose header does
// not say, holds NULL, and a NULL never passes a filter on that column.
//   ext       lower-case file extension without the dot ("jpg"; "" when none)
//   width     pixel width and height after EXIF orientation (Int32)
//   height
//   taken_ms  EXIF DateTimeOriginal as ms since the epoch (OffsetTimeOriginal applied;
//             without it, the wall-clock time is read as UTC)
// A table written before these columns existed gets them on its next `siglip2 index`
// (an additive migration, {@link ImageStore.open} with `create`): ext is computed from the
// path in SQL, width and height start at META_UNREAD, taken_ms NULL, and the next index run
// fills them (it re-reads those files and reuses their stored vectors, as for a touched file).

/** What the filter columns hold for one file (see src/search/file-meta.ts). */
export interface FileMeta {
  ext: string;
  width?: number;
  height?: number;
  takenMs?: number;
}

/** The filter columns, in schema order. */
export const FILTER_COLUMNS = ["ext", "width", "height", "taken_ms"] as const;

function filterFields(): Field[] {
  return [
    new Field("ext", new Utf8(), true),
    new Field("width", new Int32(), true),
    new Field("height", new Int32(), true),
    new Field("taken_ms", new Float64(), true),
  ];
}

/**
 * What a migrated row holds in width and height until the indexer has read the file's header
 * (NULL means "read, and the header does not say"). No size filter passes it.
 */
export const META_UNREAD = -1;

/** SQL that fills each filter column of a table written before they existed. */
const FILTER_MIGRATION: Record<(typeof FILTER_COLUMNS)[number], string> = {
  ext: "lower(regexp_replace(path, '^.*\\.([^./]*)$|^.*$', '\\1'))",
  width: `CAST(${META_UNREAD} AS INT)`,
  height: `CAST(${META_UNREAD} AS INT)`,
  taken_ms: "CAST(NULL AS DOUBLE)",
};

function fileMetaFromRecord(r: Record<string, unknown>): FileMeta | undefined {
  if (!("ext" in r)) return undefined;
  const m: FileMeta = { ext: (r["ext"] as string | null) ?? "" };
  if (r["width"] != null) m.width = num(r["width"]);
  if (r["height"] != null) m.height = num(r["height"]);
  if (r["taken_ms"] != null) m.takenMs = num(r["taken_ms"]);
  return m;
}

function fileMetaRecord(m: FileMeta | undefined, path: string): Record<string, unknown> {
  return { ext: m?.ext ?? extOf(path), width: m?.width ?? null, height: m?.height ?? null, taken_ms: m?.takenMs ?? null };
}

/** The lower-case extension of a path, without the dot ("" when none): what the `ext` column holds. */
export function extOf(path: string): string {
  const m = /\.([^./]*)$/.exec(path);
  return m ? m[1]!.toLowerCase() : "";
}
// ---- end of filter columns -------------------------------------------------------------

// ---- Video frames (h14-video) ----------------------------------------------------------
// A video has one row per kept frame (src/search/video.ts): the same path, size, mtime_ms,
// sha256 and gen on every frame row, and its own vector and time_s (seconds from the start).
// Images hold NULL. A table written before the column existed gets it on its next
// `siglip2 index` (additive migration: NULL everywhere, which is right, since such a table
// holds images only). The rows of one path and one gen are one version of the file: a
// changed video's new frames are written in one commit with a new gen, then the older gens
// are deleted, as for an image ({@link ImageStore.removeSuperseded} keeps the newest version).

/** The video column(s), in schema order. */
export const VIDEO_COLUMNS = ["time_s"] as const;
// ---- end of video frames ----------------------------------------------------------------

// ---- ANN index --------------------------------------------------------------------------
/** Rows from which `siglip2 index` builds the ANN index (below it every search is an exact scan). */
export const DEFAULT_ANN_THRESHOLD = 50_000;
/** Fewest rows an IVF-PQ index can be trained on (PQ's 256 centroids per sub-vector); below, a lower threshold is raised to it. */
export const ANN_MIN_ROWS = 256;
/** Retrain the index (new partitions) once the table has grown to this many times the rows it was trained on. */
const ANN_RETRAIN_GROWTH = 2;
/** Index new rows into the existing partitions once they are more than this fraction of the table. */
const ANN_REFRESH_FRACTION = 0.05;
/** IVF partitions: about one per this many rows (sqrt-like at 1M: 1000 partitions). */
const ANN_ROWS_PER_PARTITION = 1000;
/** IVF partitions searched per query, and the exact re-rank factor (see bench/ann.ts). */
export const ANN_NPROBES = 20;
export const ANN_REFINE_FACTOR = 10;
const ANN_INDEX_PREFIX = "vector_ivfpq_";
/** How long a search trusts what it last saw about the index (another process may build one). */
const ANN_STATE_TTL_MS = 30_000;

/** ANN index settings (tests and bench/ann.ts override them). */
export interface AnnSettings {
  /** Rows from which the index is built (default {@link DEFAULT_ANN_THRESHOLD}). */
  threshold?: number;
  /** IVF partitions (default: rows / 1000, at least 1). */
  numPartitions?: number;
  /** PQ sub-vectors (default dim / 16). */
  numSubVectors?: number;
  /** k-means iterations (default 10). */
  maxIterations?: number;
}

/** The state of a table's ANN index. */
export interface AnnState {
  /** Index name (`vector_ivfpq_<rows it was trained on>`), or undefined when there is none. */
  name?: string;
  trainedRows: number;
  indexedRows: number;
  unindexedRows: number;
}

/** Per-query ANN options. */
export interface NearestOptions {
  /** A LanceDB SQL filter applied inside the query (prefilter). */
  where?: string;
  /** Force an exact scan even when the table has an ANN index. */
  exact?: boolean;
  /** IVF partitions to probe (default {@link ANN_NPROBES}). */
  nprobes?: number;
  /** Candidates re-ranked exactly per result (default {@link ANN_REFINE_FACTOR}). */
  refineFactor?: number;
  /** Only rows with a cosine distance below this (dedupe); the list may then be shorter than `limit`. */
  maxDistance?: number;
}
// ---- end of ANN index -------------------------------------------------------------------

/** One stored image. */
export interface ImageRow {
  path: string;
  size: number;
  mtimeMs: number;
  sha256: string;
  gen: number;
  /** The filter columns; undefined when read from a table that predates them or not selected. */
  meta?: FileMeta;
  /** Video frames only: the frame's time in seconds from the start of the video. */
  timeS?: number;
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

/** DataFusion's reason for refusing a filter, without the engine's prefixes. */
function sqlReason(e: unknown): string {
  const m = errorMessage(e)
    .replace(/^.*?(?:Invalid input,\s*)/s, "")
    .replace(/Error parsing statement: SELECT .*? WHERE .*? \(sql parser error: (.*)\)$/s, "$1")
    .replace(/^(?:Schema error|Error during planning|sql parser error):\s*/i, "");
  return oneLine(m.length > 160 ? `${m.slice(0, 159)}…` : m);
}

/** Paths per `IN (...)` filter. */
const FILTER_CHUNK = 256;

function chunks<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

/** The Arrow schema of a new table (exported for bench/ann.ts, which writes Arrow batches directly). */
export function tableSchema(meta: TableMeta): Schema {
  return new Schema(
    [
      new Field("path", new Utf8(), false),
      new Field("size", new Float64(), false),
      new Field("mtime_ms", new Float64(), false),
      new Field("sha256", new Utf8(), false),
      new Field("model", new Utf8(), false),
      new Field("gen", new Int64(), false),
      new Field("vector", new FixedSizeList(meta.dim, new Field("item", new Float32(), true)), false),
      ...filterFields(),
      new Field("time_s", new Float64(), true),
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
  const row: ImageRow = {
    path: r["path"] as string,
    size: num(r["size"]),
    mtimeMs: num(r["mtime_ms"]),
    sha256: r["sha256"] as string,
    gen: num(r["gen"]),
  };
  const meta = fileMetaFromRecord(r);
  if (meta) row.meta = meta;
  if (r["time_s"] != null) row.timeS = num(r["time_s"]);
  return row;
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
  if (dbUriScheme(dbPath) !== undefined && isObjectStoreTransport(raw)) {
    return new SiglipError("index", `cannot reach ${where}: ${objectStoreReason(e)}; nothing written is lost: run the same command again once the object store answers (${objectStoreHint(dbPath)})`, { subject: dbPath, cause: e });
  }
  if (/No space left|ENOSPC|os error 28\b|File too large|EFBIG|os error 27\b|quota exceeded|EDQUOT|os error 122\b/i.test(raw)) {
    return new SiglipError("index", `cannot write ${where}: no space left on the device (or a file-size limit was reached); free some space and run the same command again (every finished batch is kept)`, { subject: dbPath, cause: e });
  }
  if (/Permission denied|EACCES|os error 13\b|Read-only file system|EROFS|os error 30\b/i.test(raw)) {
    return new SiglipError("index", `cannot use ${where}: permission denied (${lanceReason(e)})`, { subject: dbPath, cause: e });
  }
  const rebuild = `siglip2 index DIR --model ${model ?? "M"} --rebuild --db ${shownPath(dbPath)}${tableName === DEFAULT_TABLE ? "" : ` --table ${tableName}`}`;
  return new SiglipError("index", `${where} is damaged (${lanceReason(e)}); rebuild it with ${rebuild}`, { subject: dbPath, cause: e });
}

/** Where LanceDB's object store for `db` takes its endpoint and credentials from (environment variables). */
export function objectStoreHint(db: string): string {
  const scheme = dbUriScheme(db) ?? "";
  const vars = scheme.startsWith("s3") ? "AWS_ENDPOINT (an S3-compatible server), AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"
    : scheme === "gs" ? "GOOGLE_SERVICE_ACCOUNT_PATH (or GOOGLE_SERVICE_ACCOUNT_KEY)"
    : scheme === "az" || scheme === "abfss" ? "AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY"
    : "";
  return vars === "" ? "check the URI" : `check the URI, the network and the credentials (LanceDB reads ${vars} from the environment)`;
}

/** An object-store request that failed on its way (network, DNS, HTTP status, credentials), not a damaged table. */
function isObjectStoreTransport(raw: string): boolean {
  return /RetryError|HttpError|ConnectError|dns error|lookup address|error sending request|Failed to resolve region|TokenRequest|status: \d{3}|no Azure account|credential|Connection refused|timed out/i.test(raw);
}

/**
 * The cause of an object-store failure in a few words: the connection's error and address
 * ("tcp connect error to 127.0.0.1:9: connection refused"), an HTTP status with its body, or
 * the first and the deepest line of LanceDB's "Caused by:" chain.
 */
export function objectStoreReason(e: unknown): string {
  const raw = errorMessage(e);
  const connectErr = /ConnectError\("([^"]+)", ([^,)\s]+)(?:, Os \{[^}]*message: "([^"]+)")?/.exec(raw);
  if (connectErr) return oneLine(`${connectErr[1]} to ${connectErr[2]}${connectErr[3] ? `: ${connectErr[3].toLowerCase()}` : ""}`);
  const status = /status: (\d{3}), body: Some\("([^"]{0,120})/.exec(raw);
  if (status) {
    const host = /uri: Some\((https?:\/\/[^/)\s]+)/.exec(raw)?.[1];
    return oneLine(`HTTP ${status[1]}${host ? ` from ${host}` : ""}: ${status[2]}`);
  }
  const tidy = (c: string): string => {
    let t = c.replace(/,?\s*\S*\.rs:\d+(?::\d+)?/g, "").replace(/^(?:Error:\s*)?(?:Invalid input,\s*)?/, "");
    for (let prev = ""; prev !== t; ) [prev, t] = [t, t.replace(/^(?:lance error|Generic \S+ error|LanceError\(\w+\)):\s*/i, "")];
    return t.replace(/[\s.,;:]+$/, "").trim();
  };
  const chain = raw.split(/\s*Caused by:\s*/).map(tidy).filter((c) => c !== "");
  const m = chain.length > 1 ? `${chain[1]}: ${chain[chain.length - 1]}` : chain.length === 1 && !/[{]/.test(chain[0]!) ? chain[0]! : lanceReason(e);
  return oneLine(m.length > 200 ? `${m.slice(0, 199)}…` : m);
}

/**
 * What LanceDB's `connect` is given for a DB folder: URIs (`scheme://...`) as they are, a path
 * made absolute (LanceDB reads a relative path that starts with "db", such as `--db dbv`, as a
 * LanceDB Cloud URI).
 */
export function lanceUri(dbPath: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(dbPath) ? dbPath : resolve(dbPath);
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
    /** True when the table has the filter columns (see "Filter columns"). */
    readonly hasFilterColumns: boolean,
    /** True when the table has the `time_s` column (see "Video frames"). */
    readonly hasTimeColumn: boolean = true,
  ) {}

  /** Whether the table has an ANN index, as last seen, and when (ms); re-checked after {@link ANN_STATE_TTL_MS}. */
  private annSeen?: { at: number; indexed: boolean };

  /** Whether the vector column has an ANN index (cached: a query must not pay two extra LanceDB calls). */
  private async hasAnnIndex(): Promise<boolean> {
    const now = Date.now();
    if (!this.annSeen || now - this.annSeen.at > ANN_STATE_TTL_MS) {
      const idx = await this.guard(() => this.table.listIndices());
      this.annSeen = { at: now, indexed: idx.some((i) => i.columns.includes("vector")) };
    }
    return this.annSeen.indexed;
  }

  /** The columns read with every row: the bookkeeping ones, and the filter columns when present. */
  private get rowColumns(): string[] {
    return [...ROW_COLUMNS, ...(this.hasFilterColumns ? FILTER_COLUMNS : []), ...(this.hasTimeColumn ? VIDEO_COLUMNS : [])];
  }

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
      db = await connect(lanceUri(dbPath), options.readConsistencyInterval !== undefined ? { readConsistencyInterval: options.readConsistencyInterval } : {});
    } catch (e) {
      if (dbUriScheme(dbPath) !== undefined) throw new SiglipError("index", `cannot open the DB ${shownPath(dbPath)}: ${objectStoreReason(e)}; ${objectStoreHint(dbPath)}`, { subject: dbPath });
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
        return new ImageStore(db, table, dbPath, tableName, meta, true, true);
      }
      const table = await db.openTable(tableName);
      const schema = await table.schema();
      const meta = parseMeta(schema.metadata.get(META_KEY), where);
      const have = new Set(schema.fields.map((f) => f.name));
      const missing = FILTER_COLUMNS.filter((c) => !have.has(c));
      // Additive migration (writers only): the filter columns of an older table.
      if (missing.length > 0 && options.create) await table.addColumns(missing.map((name) => ({ name, valueSql: FILTER_MIGRATION[name] })));
      // ... and its time_s column (NULL: such a table holds images only).
      const noTime = !have.has("time_s");
      if (noTime && options.create) await table.addColumns([{ name: "time_s", valueSql: "CAST(NULL AS DOUBLE)" }]);
      return new ImageStore(db, table, dbPath, tableName, meta, false, missing.length === 0 || Boolean(options.create), !noTime || Boolean(options.create));
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
      db = await connect(lanceUri(dbPath));
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
    const rs = await this.guard(() => this.table.query().select(this.rowColumns).withRowId().toArray());
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

  /**
   * Every row of these exact paths (bookkeeping columns, no vectors), several per path when
   * the table holds several (an interrupted write). One query per {@link FILTER_CHUNK} paths
   * (a queue worker reads the rows of its batch only, not the whole table).
   */
  async rowsByPaths(paths: string[]): Promise<ImageRow[]> {
    const out: ImageRow[] = [];
    for (const c of chunks([...new Set(paths)], FILTER_CHUNK)) {
      const rs = await this.guard(() => this.table.query().where(`path IN (${c.map(sqlString).join(", ")})`).select(this.rowColumns).toArray());
      for (const r of rs) out.push(rowFromRecord(r as Record<string, unknown>));
    }
    return out;
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
   * Where a path has several versions, delete all but one: the newest (largest `gen`;
   * among rows of the same `gen`, written by two writers at once, the one with the
   * latest mtime). A version is one row for an image and the frame rows of one commit
   * for a video; within the kept version, a frame time held twice (two writers) keeps
   * one row. Several versions of one path are left by a run stopped between writing
   * a changed file's new rows and deleting its old ones, or by two writers. The extra
   * rows are deleted by their row address, so rows that agree in every column are
   * told apart too. `kept` holds one row per path (for a video: one of its frames;
   * path, size, mtime, sha256 and gen are those of every frame). `removed` is the
   * number of rows the table really lost.
   */
  async removeSuperseded(rows: ImageRow[]): Promise<{ kept: Map<string, ImageRow>; removed: number }> {
    if (rows.some((r) => r.rowId === undefined)) rows = await this.rows();
    const kept = new Map<string, ImageRow>();
    const extra: bigint[] = [];
    const newer = (a: ImageRow, b: ImageRow) => a.gen !== b.gen ? a.gen > b.gen : a.mtimeMs > b.mtimeMs;
    const sameVersion = (a: ImageRow, b: ImageRow) => a.gen === b.gen && a.mtimeMs === b.mtimeMs;
    // The newest version of each path.
    for (const r of rows) {
      const k = kept.get(r.path);
      if (!k || newer(r, k) || (sameVersion(r, k) && r.rowId! > k.rowId!)) kept.set(r.path, r);
    }
    // Within it, one row per frame time (images: the one time "none"), the latest row address.
    const slot = new Map<string, ImageRow>();
    for (const r of rows) {
      if (!sameVersion(r, kept.get(r.path)!)) {
        extra.push(r.rowId!);
        continue;
      }
      const key = `${r.timeS ?? "none"}\u0000${r.path}`;
      const o = slot.get(key);
      if (!o) slot.set(key, r);
      else if (r.rowId! > o.rowId!) {
        extra.push(o.rowId!);
        slot.set(key, r);
      } else extra.push(r.rowId!);
    }
    if (extra.length === 0) return { kept, removed: 0 };
    const before = await this.count();
    for (const c of chunks(extra, FILTER_CHUNK)) await this.guard(() => this.table.delete(`_rowid IN (${c.join(", ")})`));
    const removed = before - (await this.count());
    return { kept, removed };
  }

  /** Write rows in one commit (atomic: all of them or none). The filter columns come from each row's `meta` (ext from the path when absent). */
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
        ...fileMetaRecord(r.meta, r.path),
        ...(this.hasTimeColumn ? { time_s: r.timeS ?? null } : {}),
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

  /** A stored image vector (not a video frame's) for each of these content hashes that the table has. */
  async vectorsByHash(hashes: string[]): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    const images = this.hasTimeColumn ? " AND time_s IS NULL" : "";
    for (const c of chunks([...new Set(hashes)], FILTER_CHUNK)) {
      const rs = await this.guard(() => this.table.query().where(`sha256 IN (${c.map(sqlString).join(", ")})${images}`).select(["path", "sha256", "vector"]).toArray());
      for (const r of rs) if (!out.has(r["sha256"] as string)) out.set(r["sha256"] as string, this.checkedVector(r["vector"], r["path"] as string));
    }
    return out;
  }

  /**
   * The stored frames of a video with this content hash (time order), from the newest
   * version of one path that holds it; empty when the table holds no video with it.
   */
  async framesByHash(sha256: string): Promise<{ timeS: number; vector: Float32Array }[]> {
    if (!this.hasTimeColumn) return [];
    const rs = await this.guard(() => this.table.query().where(`sha256 = ${sqlString(sha256)} AND time_s IS NOT NULL`).select(["path", "gen", "mtime_ms", "time_s", "vector"]).toArray());
    let best: { path: string; gen: number; mtimeMs: number } | undefined;
    for (const r of rs) {
      const v = { path: r["path"] as string, gen: num(r["gen"]), mtimeMs: num(r["mtime_ms"]) };
      if (!best || v.gen > best.gen || (v.gen === best.gen && (v.mtimeMs > best.mtimeMs || (v.mtimeMs === best.mtimeMs && v.path < best.path)))) best = v;
    }
    const frames = new Map<number, Float32Array>();
    for (const r of rs) {
      if (r["path"] !== best!.path || num(r["gen"]) !== best!.gen || num(r["mtime_ms"]) !== best!.mtimeMs) continue;
      const t = num(r["time_s"]);
      if (!frames.has(t)) frames.set(t, this.checkedVector(r["vector"], r["path"] as string));
    }
    return [...frames].sort((a, b) => a[0] - b[0]).map(([timeS, vector]) => ({ timeS, vector }));
  }

  /** Every row with its vector (tests, export). */
  async all(): Promise<StoredImage[]> {
    const rs = await this.guard(() => this.table.query().select([...this.rowColumns, "vector"]).toArray());
    return rs.map((r: Record<string, unknown>) => this.storedFromRecord(r));
  }

  /**
   * Check a LanceDB SQL filter against this table: a usage error of one line when it does
   * not parse or names a column the table lacks.
   */
  async checkWhere(where: string): Promise<void> {
    try {
      await this.table.query().where(where).select(["path"]).limit(1).toArray();
    } catch (e) {
      if (!this.hasFilterColumns && FILTER_COLUMNS.some((c) => new RegExp(`\\b${c}\\b`).test(where))) {
        throw new SiglipError("usage", `${this.where} predates the filter columns (${FILTER_COLUMNS.join(", ")}); run \`siglip2 index\` on its folders once to add them`);
      }
      throw new SiglipError("usage", `invalid filter (--where): ${sqlReason(e)}`);
    }
  }

  /** The ANN index of the vector column, if any, with its row counts. */
  async annState(): Promise<AnnState> {
    const idx = (await this.guard(() => this.table.listIndices())).find((i) => i.columns.includes("vector"));
    if (!idx) return { trainedRows: 0, indexedRows: 0, unindexedRows: 0 };
    const st = await this.guard(() => this.table.indexStats(idx.name));
    const trained = idx.name.startsWith(ANN_INDEX_PREFIX) ? Number(idx.name.slice(ANN_INDEX_PREFIX.length)) : NaN;
    return { name: idx.name, trainedRows: Number.isFinite(trained) ? trained : st?.numIndexedRows ?? 0, indexedRows: st?.numIndexedRows ?? 0, unindexedRows: st?.numUnindexedRows ?? 0 };
  }

  /**
   * Build, refresh or retrain the ANN index (IVF-PQ, cosine) as the table's size asks:
   * - fewer rows than `threshold` (at least {@link ANN_MIN_ROWS}): nothing (searches scan exactly);
   * - no index yet, or the table grew to {@link ANN_RETRAIN_GROWTH}× the rows the index was
   *   trained on: train a new one (new partitions), which replaces the old in one commit;
   * - rows not in the index above {@link ANN_REFRESH_FRACTION} of the table: add them to
   *   the existing partitions (LanceDB `optimize`). Rows not yet indexed are still found:
   *   LanceDB scans them exactly next to the index.
   * Returns what it did.
   */
  async ensureAnnIndex(settings: AnnSettings = {}): Promise<"none" | "built" | "retrained" | "refreshed" | "current"> {
    const rows = await this.count();
    if (rows < Math.max(ANN_MIN_ROWS, settings.threshold ?? DEFAULT_ANN_THRESHOLD)) return "none";
    const st = await this.annState();
    if (st.name === undefined || rows >= ANN_RETRAIN_GROWTH * st.trainedRows) {
      const numPartitions = settings.numPartitions ?? Math.max(1, Math.round(rows / ANN_ROWS_PER_PARTITION));
      const dim = this.meta.dim;
      const numSubVectors = settings.numSubVectors ?? (dim % 16 === 0 ? dim / 16 : dim % 8 === 0 ? dim / 8 : 1);
      // k-means on 128 sampled rows per partition, 10 iterations: LanceDB's defaults (256, 50)
      // take several times longer to train on 2 cores for no recall measured in bench/ann.ts.
      const config = Index.ivfPq({ distanceType: "cosine", numPartitions, numSubVectors, maxIterations: settings.maxIterations ?? 10, sampleRate: 128 });
      await this.guard(() => this.table.createIndex("vector", { config, replace: true, name: `${ANN_INDEX_PREFIX}${rows}` }));
      if (st.name !== undefined && st.name !== `${ANN_INDEX_PREFIX}${rows}`) await this.guard(() => this.table.dropIndex(st.name!));
      this.annSeen = { at: Date.now(), indexed: true };
      return st.name === undefined ? "built" : "retrained";
    }
    if (st.unindexedRows > ANN_REFRESH_FRACTION * rows) {
      await this.guard(() => this.table.optimize({ cleanupOlderThan: new Date(Date.now() - 10 * 60_000) }));
      return "refreshed";
    }
    return "current";
  }

  /** Rows `offset` … `offset + limit − 1` with their vectors, in the table's scan order (dedupe reads big tables page by page). */
  async page(offset: number, limit: number): Promise<StoredImage[]> {
    const rs = await this.guard(() => this.table.query().select([...this.rowColumns, "vector"]).offset(offset).limit(limit).toArray());
    return rs.map((r: Record<string, unknown>) => this.storedFromRecord(r));
  }

  /** Whether the vector column has an ANN index now (not cached). */
  async annIndexed(): Promise<boolean> {
    this.annSeen = undefined;
    return this.hasAnnIndex();
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
   * The `limit` rows nearest to `vector` by cosine distance, among the rows that pass
   * `where` (applied inside the query, before the ranking). With an ANN index (and not
   * `exact`) the IVF-PQ candidates are re-ranked by LanceDB on the stored vectors
   * (`refineFactor`); when that finds fewer than `limit` rows although more pass the
   * filter (a narrow filter, few rows in the probed partitions), the query is repeated
   * as an exact scan, so a filter never shortens the list. A row LanceDB cannot score
   * (a non-finite stored vector) is a damaged table, not a silently shorter list.
   */
  async nearest(vector: Float32Array, limit: number, options: NearestOptions = {}): Promise<NearestRow[]> {
    if (vector.length !== this.meta.dim) throw new SiglipError("input", `query vector has ${vector.length} dims; ${this.where} holds ${this.meta.dim}`);
    const { where } = options;
    const run = async (exact: boolean): Promise<NearestRow[]> => {
      let q: VectorQuery = this.table.vectorSearch(Array.from(vector)).distanceType("cosine").limit(limit);
      q = exact ? q.bypassVectorIndex() : q.nprobes(options.nprobes ?? ANN_NPROBES).refineFactor(options.refineFactor ?? ANN_REFINE_FACTOR);
      if (where !== undefined) q = q.where(where);
      if (options.maxDistance !== undefined) q = q.distanceRange(undefined, options.maxDistance);
      let rs: Record<string, unknown>[];
      try {
        rs = await q.select([...this.rowColumns, "vector", "_distance"]).toArray();
      } catch (e) {
        if (where !== undefined) await this.checkWhere(where); // a bad filter is the user's one line, not a damaged table
        throw storeFailure(e, this.dbPath, this.tableName, this.meta.model);
      }
      return rs.map((r: Record<string, unknown>) => ({ ...this.storedFromRecord(r), distance: num(r["_distance"]) }));
    };
    const ann = !options.exact && (await this.hasAnnIndex());
    let out = await run(!ann);
    if (out.length < limit && options.maxDistance === undefined) {
      const total = await this.guard(() => this.table.countRows(where));
      if (ann && out.length < Math.min(limit, total)) out = await run(true);
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
