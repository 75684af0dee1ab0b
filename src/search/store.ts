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
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { SiglipError } from "../errors.js";
import { userCacheHome } from "../user-dirs.js";

/** Default table name. */
export const DEFAULT_TABLE = "images";
const META_KEY = "siglip2";
const META_FORMAT = 1;

/** Default database folder: `$SIGLIP2_DB`, else `$XDG_CACHE_HOME/siglip2/db` (when absolute: see src/user-dirs.ts), else `~/.cache/siglip2/db`. */
export function defaultDbPath(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env["SIGLIP2_DB"];
  if (explicit) return explicit;
  return join(userCacheHome(env), "siglip2", "db");
}

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
    return `table "${tableName}" in DB ${dbPath}`;
  }

  get where(): string {
    return ImageStore.describe(this.dbPath, this.tableName);
  }

  /** The per-row model id of this table. */
  get modelId(): string {
    return rowModelId(this.meta);
  }

  /**
   * Open a table; with `create`, create it when missing. Without `create`, a missing
   * table is a one-line error telling the user to run `siglip2 index` first.
   */
  static async open(dbPath: string, tableName: string, options: OpenStoreOptions = {}): Promise<ImageStore> {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(tableName)) {
      throw new SiglipError("usage", `table name ${JSON.stringify(tableName)}: use letters, digits, "_", "-" and "."`);
    }
    const where = ImageStore.describe(dbPath, tableName);
    if (options.create) {
      try {
        mkdirSync(dbPath, { recursive: true });
      } catch (e) {
        throw new SiglipError("index", `cannot create the DB folder ${dbPath} (${e instanceof Error ? e.message : String(e)})`, { subject: dbPath });
      }
    }
    if (!options.create && !existsSync(dbPath)) {
      throw new SiglipError("index", `no index: the DB folder ${dbPath} does not exist; build an index with \`siglip2 index DIR --model M\` (or pass --db)`, { subject: dbPath });
    }
    let db: Connection;
    try {
      db = await connect(dbPath, options.readConsistencyInterval !== undefined ? { readConsistencyInterval: options.readConsistencyInterval } : {});
    } catch (e) {
      throw new SiglipError("index", `cannot open the DB ${dbPath} (${e instanceof Error ? e.message : String(e)})`, { subject: dbPath });
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
        let table: Table;
        try {
          table = await db.createEmptyTable(tableName, tableSchema(meta), { existOk: false });
        } catch (e) {
          throw new SiglipError("index", `cannot create ${where} (${e instanceof Error ? e.message : String(e)})`);
        }
        return new ImageStore(db, table, dbPath, tableName, meta, true);
      }
      const table = await db.openTable(tableName);
      const schema = await table.schema();
      const meta = parseMeta(schema.metadata.get(META_KEY), where);
      return new ImageStore(db, table, dbPath, tableName, meta, false);
    } catch (e) {
      db.close();
      if (e instanceof SiglipError) throw e;
      throw new SiglipError("index", `cannot open ${where} (${e instanceof Error ? e.message : String(e)})`);
    }
  }

  /** The model record of an existing table, or undefined when there is none (no DB, no table). */
  static async peekMeta(dbPath: string, tableName: string): Promise<TableMeta | undefined> {
    if (!existsSync(dbPath)) return undefined;
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
      return undefined;
    } finally {
      db?.close();
    }
  }

  /** Every row's bookkeeping columns (no vectors). */
  async rows(): Promise<ImageRow[]> {
    const rs = await this.table.query().select(["path", "size", "mtime_ms", "sha256", "gen"]).toArray();
    return rs.map((r: Record<string, unknown>) => ({
      path: r["path"] as string,
      size: num(r["size"]),
      mtimeMs: num(r["mtime_ms"]),
      sha256: r["sha256"] as string,
      gen: num(r["gen"]),
    }));
  }

  /** Number of rows. */
  count(): Promise<number> {
    return this.table.countRows();
  }

  /** The largest `gen` in the table (0 when empty). */
  static maxGen(rows: ImageRow[]): number {
    let m = 0;
    for (const r of rows) if (r.gen > m) m = r.gen;
    return m;
  }

  /**
   * Where a path has several rows (a run stopped between writing a changed file's new
   * row and deleting its old one), delete all but the newest. Returns the rows kept.
   */
  async removeSuperseded(rows: ImageRow[]): Promise<{ kept: Map<string, ImageRow>; removed: number }> {
    const kept = new Map<string, ImageRow>();
    const stale: ImageRow[] = [];
    for (const r of rows) {
      const k = kept.get(r.path);
      if (!k) kept.set(r.path, r);
      else if (r.gen > k.gen) {
        stale.push(k);
        kept.set(r.path, r);
      } else stale.push(r);
    }
    if (stale.length > 0) {
      const newest = [...new Set(stale.map((r) => r.path))].map((p) => kept.get(p)!);
      // One filter per newest gen value keeps the predicate exact: path IN (...) AND gen < G.
      const byGen = new Map<number, string[]>();
      for (const r of newest) byGen.set(r.gen, [...(byGen.get(r.gen) ?? []), r.path]);
      for (const [gen, paths] of byGen) await this.deletePaths(paths, gen);
    }
    return { kept, removed: stale.length };
  }

  /** Write rows in one commit (atomic: all of them or none). */
  async add(rows: StoredImage[]): Promise<void> {
    if (rows.length === 0) return;
    for (const r of rows) {
      if (r.vector.length !== this.meta.dim) throw new Error(`vector of ${r.path} has ${r.vector.length} dims, table has ${this.meta.dim}`);
    }
    const model = this.modelId;
    await this.table.add(
      rows.map((r) => ({
        path: r.path,
        size: r.size,
        mtime_ms: r.mtimeMs,
        sha256: r.sha256,
        model,
        gen: BigInt(r.gen),
        vector: Array.from(r.vector),
      })),
    );
  }

  /** Delete the rows of these paths (only those with `gen < belowGen` when given). */
  async deletePaths(paths: string[], belowGen?: number): Promise<void> {
    for (const c of chunks(paths, FILTER_CHUNK)) {
      let pred = `path IN (${c.map(sqlString).join(", ")})`;
      if (belowGen !== undefined) pred += ` AND gen < ${Math.floor(belowGen)}`;
      await this.table.delete(pred);
    }
  }

  /** A stored vector for each of these content hashes that the table has. */
  async vectorsByHash(hashes: string[]): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const c of chunks([...new Set(hashes)], FILTER_CHUNK)) {
      const rs = await this.table.query().where(`sha256 IN (${c.map(sqlString).join(", ")})`).select(["sha256", "vector"]).toArray();
      for (const r of rs) if (!out.has(r["sha256"] as string)) out.set(r["sha256"] as string, toVector(r["vector"]));
    }
    return out;
  }

  /** Every row with its vector (tests, export). */
  async all(): Promise<StoredImage[]> {
    const rs = await this.table.query().select(["path", "size", "mtime_ms", "sha256", "gen", "vector"]).toArray();
    return rs.map((r: Record<string, unknown>) => ({
      path: r["path"] as string,
      size: num(r["size"]),
      mtimeMs: num(r["mtime_ms"]),
      sha256: r["sha256"] as string,
      gen: num(r["gen"]),
      vector: toVector(r["vector"]),
    }));
  }

  /** The `limit` rows nearest to `vector` by cosine distance (exact search unless an ANN index was added). */
  async nearest(vector: Float32Array, limit: number): Promise<NearestRow[]> {
    if (vector.length !== this.meta.dim) throw new SiglipError("input", `query vector has ${vector.length} dims; ${this.where} holds ${this.meta.dim}`);
    const rs = await this.table
      .vectorSearch(Array.from(vector))
      .distanceType("cosine")
      .limit(limit)
      .select(["path", "size", "mtime_ms", "sha256", "gen", "vector", "_distance"])
      .toArray();
    return rs.map((r: Record<string, unknown>) => ({
      path: r["path"] as string,
      size: num(r["size"]),
      mtimeMs: num(r["mtime_ms"]),
      sha256: r["sha256"] as string,
      gen: num(r["gen"]),
      vector: toVector(r["vector"]),
      distance: num(r["_distance"]),
    }));
  }

  /**
   * Merge small fragments (each batch is one) and drop table versions older than
   * `keepVersionsMs` (readers that opened an older version keep working for that long).
   */
  async compact(keepVersionsMs = 10 * 60_000): Promise<void> {
    await this.table.optimize({ cleanupOlderThan: new Date(Date.now() - keepVersionsMs) });
  }

  close(): void {
    this.table.close();
    this.db.close();
  }
}
