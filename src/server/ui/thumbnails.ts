/**
 * Thumbnails for the web UI, of indexed files only.
 *
 * A request names a path; the path is looked up in the index table (exact match, as
 * stored), never on disk first, so `../`, other absolute paths and anything not indexed
 * are "not in the index". The file is then opened (non-blocking, so a FIFO swapped in
 * cannot stall the server), checked to be a regular file of the indexed size, read, and
 * its SHA-256 compared with the row's: the server only ever resizes bytes that are exactly
 * the bytes that were indexed. A symbolic link swapped after indexing, or a file changed
 * or replaced since, fails that check and is a 404 naming the path.
 *
 * Thumbnails are made by sharp (EXIF orientation applied, fit inside SIZE×SIZE, never
 * enlarged, WebP), a few at a time, with concurrent requests for the same one joined,
 * and kept in an LRU keyed by content hash and size. A cached thumbnail is served after a
 * `stat` of the path still matches the row (size, mtime); otherwise the file is read and
 * hashed again.
 */
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { open, stat } from "node:fs/promises";
import sharp from "sharp";
import { LruCache } from "../../lru.js";
import { shownPath } from "../../search/paths.js";
import type { ImageRow, ImageStore } from "../../search/store.js";
import { isVideoPath } from "../../search/video.js";
import { HttpError } from "../inputs.js";

/** Thumbnail edge lengths served: the grid's and the larger view's. */
export const THUMBNAIL_SIZES: readonly number[] = [256, 1024];
/** Largest indexed file a thumbnail is made of. */
export const MAX_THUMBNAIL_SOURCE_BYTES = 256 << 20;
/** Thumbnails made at once (each holds its source file in memory). */
const MAX_CONCURRENT = 4;
/** Bytes read (and hashed) at a time. */
const READ_CHUNK = 4 << 20;
/** Longest path accepted (Linux PATH_MAX). */
const MAX_PATH_CHARS = 4096;

/** A thumbnail ready to send. */
export interface Thumbnail {
  bytes: Buffer;
  /** Strong ETag: content hash and size. */
  etag: string;
  contentType: "image/webp";
}

/** A path for a message: control characters escaped, and only its end when it is very long. */
function shown(path: string): string {
  const p = shownPath(path);
  return p.length > 300 ? `…${p.slice(-300)}` : p;
}

function notFound(message: string): HttpError {
  return new HttpError(404, message, "not_found_error", "path", "not_indexed");
}

/** The `path` query parameter, checked for shape (a string, absolute, no NUL, not too long). */
export function checkThumbnailPath(v: unknown): string {
  if (Array.isArray(v)) throw new HttpError(400, `give "path" once, not ${v.length} times`, "invalid_request_error", "path");
  if (typeof v !== "string" || v.length === 0) throw new HttpError(400, `missing "path": the path of an indexed image, as search results give it`, "invalid_request_error", "path");
  if (v.length > MAX_PATH_CHARS) throw new HttpError(400, `"path" is ${v.length} characters long (at most ${MAX_PATH_CHARS})`, "invalid_request_error", "path");
  if (v.includes("\u0000")) throw notFound(`${shown(v)} is not in the index`);
  return v;
}

/** The `size` query parameter: one of {@link THUMBNAIL_SIZES} (default the smallest). */
export function checkThumbnailSize(v: unknown): number {
  if (v === undefined) return THUMBNAIL_SIZES[0]!;
  const n = typeof v === "string" && /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  if (!THUMBNAIL_SIZES.includes(n)) {
    throw new HttpError(400, `"size" must be one of ${THUMBNAIL_SIZES.join(", ")}, got ${JSON.stringify(String(v).slice(0, 40))}`, "invalid_request_error", "size");
  }
  return n;
}

/** At most `n` tasks at once; the others wait in order. */
class Limiter {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly n: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.n) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    try {
      return await task();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

/** Makes, checks and caches thumbnails of one index table's files. */
export class Thumbnailer {
  private readonly cache: LruCache<string, Buffer>;
  private readonly pending = new Map<string, Promise<Buffer>>();
  private readonly limiter = new Limiter(MAX_CONCURRENT);

  constructor(private readonly store: ImageStore, cacheEntries = 256) {
    this.cache = new LruCache(cacheEntries);
  }

  /** Cache counters (GET /v1/index). */
  stats(): { size: number; hits: number; misses: number } {
    return this.cache.stats();
  }

  /** The indexed row of `path`, or a 404. */
  async row(path: string): Promise<ImageRow> {
    const row = await this.store.rowByPath(path);
    if (!row) throw notFound(`${shown(path)} is not in the index`);
    return row;
  }

  /** The ETag a thumbnail of this row at this size has. */
  static etag(row: ImageRow, size: number): string {
    return `"${row.sha256.slice(0, 32)}-${size}"`;
  }

  /** True when the file at the row's path still looks as it did when indexed (size and mtime; symlinks followed). */
  async unchanged(row: ImageRow): Promise<boolean> {
    try {
      const st = await stat(row.path);
      return st.isFile() && st.size === row.size && st.mtimeMs === row.mtimeMs;
    } catch {
      return false;
    }
  }

  /** The thumbnail of an indexed path (404 when not indexed or no longer the indexed bytes). */
  async thumbnail(row: ImageRow, size: number): Promise<Thumbnail> {
    // Videos (one row per frame): no thumbnails of their frames (sharp cannot decode them;
    // making one would mean running ffmpeg per request).
    if (isVideoPath(row.path)) throw new HttpError(422, `${shown(row.path)} is a video: the web UI makes no thumbnails of video frames`, "invalid_request_error", "path", "video");
    const key = `${row.sha256}:${size}`;
    const etag = Thumbnailer.etag(row, size);
    const hit = this.cache.get(key);
    if (hit && (await this.unchanged(row))) return { bytes: hit, etag, contentType: "image/webp" };
    // Requests are joined per path (each path's own file is checked), cached per content.
    const job = `${key}:${row.path}`;
    let p = this.pending.get(job);
    if (!p) {
      p = this.limiter.run(async () => this.make(await this.verifiedBytes(row), row, size)).finally(() => this.pending.delete(job));
      this.pending.set(job, p);
    }
    const bytes = await p;
    this.cache.set(key, bytes);
    return { bytes, etag, contentType: "image/webp" };
  }

  /** The file's bytes, when they are exactly the indexed ones. */
  private async verifiedBytes(row: ImageRow): Promise<Buffer> {
    const name = shown(row.path);
    const changed = (why: string) => notFound(`${name}: ${why} since it was indexed; run \`siglip2 index\` again`);
    if (row.size > MAX_THUMBNAIL_SOURCE_BYTES) {
      throw new HttpError(422, `${name} is ${row.size} bytes; thumbnails are made of files up to ${MAX_THUMBNAIL_SOURCE_BYTES} bytes`, "invalid_request_error", "path", "too_large");
    }
    let fh;
    try {
      fh = await open(row.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      throw changed("deleted or made unreadable");
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw changed("replaced by something that is not a regular file");
      if (st.size !== row.size) throw changed("changed");
      // Read and hash a chunk at a time: the event loop gets a turn between chunks.
      const buf = Buffer.allocUnsafe(row.size);
      const hash = createHash("sha256");
      let off = 0;
      while (off < buf.length) {
        const { bytesRead } = await fh.read(buf, off, Math.min(READ_CHUNK, buf.length - off), off);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(off, off + bytesRead));
        off += bytesRead;
      }
      if (off !== row.size || hash.digest("hex") !== row.sha256) throw changed("changed");
      return buf;
    } catch (e) {
      if (e instanceof HttpError) throw e;
      throw changed("made unreadable");
    } finally {
      await fh.close();
    }
  }

  /** Resize with sharp: EXIF-oriented, inside size×size, never enlarged, WebP. */
  private async make(bytes: Buffer, row: ImageRow, size: number): Promise<Buffer> {
    try {
      return await sharp(bytes, { pages: 1, page: 0 })
        .rotate()
        .resize({ width: size, height: size, fit: "inside", withoutEnlargement: true })
        .webp({ quality: 80 })
        .toBuffer();
    } catch (e) {
      const why = e instanceof Error ? e.message.split("\n")[0]!.slice(0, 160) : String(e);
      throw new HttpError(422, `cannot make a thumbnail of ${shown(row.path)}: ${why}`, "invalid_request_error", "path", "thumbnail_failed");
    }
  }
}
