/**
 * The ONNX model cache on disk: where it is, what is in it, and how big it may grow.
 *
 * Layout: `<root>/<key>/` holds one built tower (`stage-N.onnx` + `stage-N.onnx.data`
 * and a `stages.json` manifest naming the model and tower); `<root>/hashes/` remembers
 * the content hashes of weight files (src/weights/fingerprint.ts). `<key>` (32 hex
 * digits) is derived from the package version, the graph version, the content of the
 * weight files, the config and every build option, so an entry is never served for
 * other weights or another release.
 *
 * Size: the entries are capped at {@link DEFAULT_CACHE_MAX_BYTES} (10 GiB) in total, or
 * `$SIGLIP2_CACHE_MAX` (bytes, or with a K/M/G/T suffix, powers of 1024). When a new
 * entry would exceed the cap, the least recently used entries are removed (the entry in
 * use is always kept, even when it alone is larger). "Used" is the manifest's mtime,
 * refreshed on every load.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { SiglipError } from "../errors.js";

/** Default cap on the cache's total size: 10 GiB (a B/16 fp32 image + text tower is about 0.8 GB). */
export const DEFAULT_CACHE_MAX_BYTES = 10 * 1024 ** 3;

/** The manifest in each entry. */
export const MANIFEST = "stages.json";

/** Sub-folder with remembered weight-file hashes. */
export const HASHES_DIR = "hashes";

/** Unfinished entries (a build killed midway) older than this are removed by the next eviction. */
const STALE_TMP_MS = 60 * 60 * 1000;

const KEY_RE = /^[0-9a-f]{32}$/;

/** Where built ONNX models are cached (see src/user-dirs.ts). */
export { defaultModelCacheDir } from "../user-dirs.js";

/**
 * Parse a cache size: a non-negative integer number of bytes, optionally with a K, M, G or
 * T suffix (powers of 1024; `KiB`/`KB` spellings accepted). Throws a one-line error naming `what`.
 */
export function parseByteSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new SiglipError("usage", `${what} must be a size in bytes such as 2147483648, 500M or 10G, got ${JSON.stringify(text.slice(0, 40))}`);
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g" | "t"];
  const n = Math.floor(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n)) throw new SiglipError("usage", `${what} ${JSON.stringify(text.slice(0, 40))} is too large`);
  return n;
}

/** The size cap: the option, else `$SIGLIP2_CACHE_MAX`, else {@link DEFAULT_CACHE_MAX_BYTES}. */
export function cacheMaxBytes(option?: number, env: NodeJS.ProcessEnv = process.env): number {
  if (option !== undefined) {
    if (!Number.isSafeInteger(option) || option < 0) throw new SiglipError("usage", `cacheMaxBytes must be a non-negative integer, got ${option}`);
    return option;
  }
  const v = env["SIGLIP2_CACHE_MAX"];
  return v !== undefined && v !== "" ? parseByteSize(v, "SIGLIP2_CACHE_MAX") : DEFAULT_CACHE_MAX_BYTES;
}

/** What a manifest records. */
export interface Manifest {
  stages: number;
  /** Stage names (for error messages). */
  names?: string[];
  /** The checkpoint folder that built the entry (the latest one to use it). */
  model?: string;
  /** Which tower: "vision-fixres", "vision-naflex", "text". */
  tower?: string;
  /** Package version that built it. */
  version?: string;
  /** Byte size of every file of the entry (a truncated stage file makes the entry incomplete). */
  files?: Record<string, number>;
}

/** One cache entry as `siglip2 cache list` shows it. */
export interface CacheEntry {
  key: string;
  dir: string;
  /** Checkpoint folder, or "(unknown)" for an entry without a readable manifest. */
  model: string;
  tower: string;
  /** Bytes on disk. */
  size: number;
  lastUsed: Date;
  /** False when the manifest or a stage file is missing or damaged (the next load rebuilds it). */
  complete: boolean;
}

/** The manifest of the entry in `dir` as written (null when missing or not a manifest), complete or not. */
function parseManifest(dir: string): Manifest | null {
  try {
    const m = JSON.parse(readFileSync(join(dir, MANIFEST), "utf8")) as Manifest;
    return m !== null && typeof m === "object" && Number.isInteger(m.stages) && m.stages >= 1 && m.stages <= 1024 ? m : null;
  } catch {
    return null;
  }
}

/** The manifest of the entry in `dir` when the entry is complete (manifest readable, every stage file present with its recorded size), else null. */
export function readManifest(dir: string): Manifest | null {
  try {
    const m = parseManifest(dir);
    if (m === null) return null;
    for (let i = 0; i < m.stages; i++) {
      if (!statSync(join(dir, `stage-${i}.onnx`)).isFile()) return null;
    }
    for (const [name, size] of Object.entries(m.files ?? {})) {
      if (name.includes("/") || statSync(join(dir, name)).size !== size) return null;
    }
    return m;
  } catch {
    return null;
  }
}

/** Mark an entry as just used (best effort: a read-only cache is still usable). */
export function touchEntry(dir: string): void {
  const now = new Date();
  try {
    utimesSync(join(dir, MANIFEST), now, now);
  } catch {
    /* read-only */
  }
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir, { withFileTypes: true })) {
    try {
      if (f.isFile()) total += statSync(join(dir, f.name)).size;
      else if (f.isDirectory()) total += dirBytes(join(dir, f.name));
    } catch {
      /* removed meanwhile */
    }
  }
  return total;
}

/** Every entry under `root` (none when the folder does not exist), least recently used first. */
export function listCache(root: string): CacheEntry[] {
  if (!existsSync(root)) return [];
  let names: string[];
  try {
    names = readdirSync(root);
  } catch (e) {
    throw new SiglipError("cache", `${root}: cannot read the model cache (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { subject: root });
  }
  const out: CacheEntry[] = [];
  for (const key of names) {
    if (!KEY_RE.test(key)) continue;
    const dir = join(root, key);
    try {
      const st = statSync(dir);
      if (!st.isDirectory()) continue;
      const m = parseManifest(dir);
      const complete = readManifest(dir) !== null;
      let lastUsed = st.mtime;
      try {
        lastUsed = statSync(join(dir, MANIFEST)).mtime;
      } catch {
        /* no manifest */
      }
      out.push({
        key,
        dir,
        model: typeof m?.model === "string" ? m.model : "(unknown)",
        tower: typeof m?.tower === "string" ? m.tower : "(unknown)",
        size: dirBytes(dir),
        lastUsed,
        complete,
      });
    } catch {
      /* removed meanwhile */
    }
  }
  return out.sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime() || a.key.localeCompare(b.key));
}

/**
 * Remove entries: all of them (and the remembered hashes) when `keys` is empty, else the
 * named ones (a key or a unique prefix of at least 4 digits). An unknown key is an error
 * naming it, and nothing is removed.
 */
export function clearCache(root: string, keys: readonly string[] = []): { removed: number; bytes: number } {
  const entries = listCache(root);
  let chosen: CacheEntry[];
  if (keys.length === 0) {
    chosen = entries;
  } else {
    chosen = [];
    for (const k of keys) {
      const hits = k.length >= 4 ? entries.filter((e) => e.key.startsWith(k.toLowerCase())) : [];
      if (hits.length === 0) throw new SiglipError("usage", `no model cache entry ${JSON.stringify(k.slice(0, 40))} in ${root} (see siglip2 cache list)`);
      if (hits.length > 1) throw new SiglipError("usage", `cache key prefix ${JSON.stringify(k)} matches ${hits.length} entries in ${root}; give more digits`);
      if (!chosen.includes(hits[0]!)) chosen.push(hits[0]!);
    }
  }
  let bytes = 0;
  for (const e of chosen) {
    rmSync(e.dir, { recursive: true, force: true });
    bytes += e.size;
  }
  if (keys.length === 0) {
    rmSync(join(root, HASHES_DIR), { recursive: true, force: true });
    for (const name of existsSync(root) ? readdirSync(root) : []) {
      if (/^[0-9a-f]{32}\.tmp-/.test(name)) rmSync(join(root, name), { recursive: true, force: true });
    }
  }
  return { removed: chosen.length, bytes };
}

/**
 * Keep the cache within `maxBytes`: remove the least recently used entries (never `keep`)
 * until the total fits, and unfinished builds older than an hour. Best effort: another
 * process may be removing the same entries.
 */
export function evictCache(root: string, maxBytes: number, keep: string): void {
  try {
    const now = Date.now();
    for (const name of readdirSync(root)) {
      if (!/^[0-9a-f]{32}\.tmp-/.test(name)) continue;
      const p = join(root, name);
      try {
        if (now - statSync(p).mtimeMs > STALE_TMP_MS) rmSync(p, { recursive: true, force: true });
      } catch {
        /* gone */
      }
    }
    const entries = listCache(root);
    let total = entries.reduce((a, e) => a + e.size, 0);
    for (const e of entries) {
      if (total <= maxBytes) break;
      if (e.key === keep) continue;
      rmSync(e.dir, { recursive: true, force: true });
      total -= e.size;
    }
  } catch {
    /* a cache we cannot list or prune is still usable */
  }
}
