/**
 * Weight files over HTTP: {@link HttpSource}, a {@link ByteSource} that reads with `Range`
 * requests when the server honours them (a `206` with `Content-Range`, as servers sending
 * `Accept-Ranges: bytes` do) and otherwise downloads the file once with a plain GET and
 * serves every read from memory. Every range read is stored in the Cache API (keyed by URL,
 * the server's validator and the byte range), so a reload reads the same ranges offline.
 *
 * {@link PrefetchedSource} makes such a file synchronous for src/weights (whose readers are
 * synchronous, like the model builder that calls them): the page fetches the ranges a tower
 * needs first (coalesced into a few large requests), or the token-table rows a batch of
 * texts needs, and the synchronous reads are then served from memory.
 *
 * Reference: RFC 9110 §14 (range requests), the Cache API.
 */
import { SiglipError } from "../errors.js";
import type { ByteSource, SyncByteSource } from "../weights/safetensors-format.js";
import { recordIdentity } from "./fingerprint.js";

/** Download progress of one file: bytes so far and in all (for ranges: of this request). */
export interface FetchProgress {
  file: string;
  loaded: number;
  total: number;
  /** True when the bytes came from the Cache API. */
  cached: boolean;
}

export interface HttpOptions {
  /** Cache API cache for weight bytes; null: none. Default "siglip2-weights". */
  cacheName?: string | null;
  onProgress?: (p: FetchProgress) => void;
  /** Largest range request when a tower's tensors are fetched (default {@link MAX_REQUEST_BYTES}). */
  maxRequestBytes?: number;
  /** The fetch to use (default globalThis.fetch). */
  fetch?: typeof fetch;
}

function httpError(url: string, problem: string, cause?: unknown): SiglipError {
  return new SiglipError("checkpoint", `${url}: ${problem}`, { subject: url, ...(cause !== undefined ? { cause } : {}) });
}

/** `fetch` with network failures as one line naming the URL. */
async function get(f: typeof fetch, url: string, headers?: Record<string, string>): Promise<Response> {
  try {
    return await f(url, headers ? { headers } : {});
  } catch (e) {
    throw httpError(url, `cannot fetch (${e instanceof Error ? e.message : String(e)})`, e);
  }
}

/** The body of `r`, `expected` bytes long when given, reporting progress as it arrives. */
async function body(r: Response, url: string, expected: number | null, onChunk: (loaded: number) => void): Promise<Uint8Array> {
  if (!r.body) return new Uint8Array(await r.arrayBuffer());
  const reader = r.body.getReader();
  const parts: Uint8Array[] = [];
  let loaded = 0;
  let out: Uint8Array | null = expected !== null ? new Uint8Array(expected) : null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (out) {
      if (loaded + value.length > out.length) throw httpError(url, `server sent more than the ${expected} bytes asked for`);
      out.set(value, loaded);
    } else {
      parts.push(value);
    }
    loaded += value.length;
    onChunk(loaded);
  }
  if (out) {
    if (loaded !== out.length) throw httpError(url, `server sent ${loaded} of ${expected} bytes (connection cut?)`);
    return out;
  }
  out = new Uint8Array(loaded);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A weight file on an HTTP server, read by byte ranges. */
export class HttpSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    /** The whole file, when the server does not do ranges. */
    private readonly whole: Uint8Array | null,
    private readonly identity: string,
    private readonly options: HttpOptions,
  ) {}

  /** Largest range request for bulk fetches. */
  get maxRequestBytes(): number {
    return Math.max(1, this.options.maxRequestBytes ?? MAX_REQUEST_BYTES);
  }

  /** True when reads are range requests (false: the file was downloaded whole). */
  get ranged(): boolean {
    return this.whole === null;
  }

  /**
   * Open `url`: one request for its first 8 bytes tells the size and whether ranges work; a
   * server that answers 200 instead sends the whole file, which is then kept.
   */
  static async open(url: string, options: HttpOptions = {}): Promise<HttpSource> {
    const f = options.fetch ?? globalThis.fetch.bind(globalThis);
    const r = await get(f, url, { Range: "bytes=0-7" });
    const identity = r.headers.get("ETag") ?? r.headers.get("Last-Modified") ?? "";
    if (r.status === 206) {
      const m = /^bytes\s+\d+-\d+\/(\d+)$/.exec(r.headers.get("Content-Range") ?? "");
      await r.body?.cancel().catch(() => undefined);
      if (!m) throw httpError(url, `range response without a usable Content-Range (${r.headers.get("Content-Range") ?? "none"})`);
      const size = Number(m[1]);
      recordIdentity(url, `${size}/${identity}`);
      return new HttpSource(url, size, null, `${size}/${identity}`, options);
    }
    if (r.status === 200) {
      const total = Number(r.headers.get("Content-Length") ?? "0");
      const bytes = await body(r, url, null, (loaded) => options.onProgress?.({ file: url, loaded, total: total || loaded, cached: false }));
      recordIdentity(url, `${bytes.length}/${identity}`);
      return new HttpSource(url, bytes.length, bytes, `${bytes.length}/${identity}`, options);
    }
    await r.body?.cancel().catch(() => undefined);
    throw httpError(url, `HTTP ${r.status}${r.statusText ? ` ${r.statusText}` : ""}`);
  }

  private cacheKey(offset: number, length: number): string {
    return `https://siglip2.cache/bytes/${encodeURIComponent(this.name)}/${encodeURIComponent(this.identity)}/${offset}-${offset + length}`;
  }

  private async cache(): Promise<Cache | null> {
    const name = this.options.cacheName === undefined ? "siglip2-weights" : this.options.cacheName;
    if (name === null || typeof caches === "undefined") return null;
    try {
      return await caches.open(name);
    } catch {
      return null;
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.size)) {
      throw httpError(this.name, `read of ${length} bytes at ${offset} is outside the ${this.size}-byte file`);
    }
    if (this.whole) return this.whole.slice(offset, offset + length);
    if (length === 0) return new Uint8Array(0);
    const progress = this.options.onProgress;
    const cache = await this.cache();
    const key = this.cacheKey(offset, length);
    const hit = await cache?.match(key);
    if (hit) {
      const b = new Uint8Array(await hit.arrayBuffer());
      if (b.length === length) {
        progress?.({ file: this.name, loaded: length, total: length, cached: true });
        return b;
      }
    }
    const f = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    const r = await get(f, this.name, { Range: `bytes=${offset}-${offset + length - 1}` });
    if (r.status !== 206) {
      await r.body?.cancel().catch(() => undefined);
      throw httpError(this.name, `range request answered HTTP ${r.status} (the file changed on the server?)`);
    }
    const bytes = await body(r, this.name, length, (loaded) => progress?.({ file: this.name, loaded, total: length, cached: false }));
    if (cache) {
      try {
        await cache.put(key, new Response(bytes as Uint8Array<ArrayBuffer>));
      } catch {
        /* quota */
      }
    }
    return bytes;
  }
}

/** A byte range [begin, end). */
export type Range = readonly [number, number];

/** Merge ranges that touch or lie within `gap` bytes of each other (sorted). */
export function coalesce(ranges: readonly Range[], gap: number): Range[] {
  const sorted = [...ranges].filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  const out: Array<[number, number]> = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + gap) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

interface Chunk {
  begin: number;
  bytes: Uint8Array;
  tag: string;
}

/** Largest single range request (and Cache API entry): a tower's tensors come in pieces of this size. */
export const MAX_REQUEST_BYTES = 64 * 1024 * 1024;

/** Most token-table rows kept in memory (a row of B/16 is 3 KiB). */
const MAX_ROWS = 8192;

/**
 * A {@link SyncByteSource} over an {@link HttpSource}: synchronous reads served from ranges
 * fetched beforehand ({@link fetchRanges}, {@link fetchRows}). A read of bytes not fetched is
 * an internal error (a tower asked for a tensor the page did not prefetch).
 */
export class PrefetchedSource implements SyncByteSource {
  private chunks: Chunk[] = [];
  private readonly rows = new Map<number, Uint8Array>();

  constructor(readonly http: HttpSource) {}

  get name(): string {
    return this.http.name;
  }

  get size(): number {
    return this.http.size;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.http.read(offset, length);
  }

  /** Fetch `ranges` (coalesced across gaps under 64 KiB, in requests of at most {@link MAX_REQUEST_BYTES}) and keep them under `tag`. */
  async fetchRanges(ranges: readonly Range[], tag: string): Promise<void> {
    const todo = coalesce(ranges, 65536).filter(([a, b]) => !this.covered(a, b - a));
    for (const [a, b] of todo) {
      const step = this.http.maxRequestBytes;
      for (let p = a; p < b; p += step) {
        const n = Math.min(step, b - p);
        this.chunks.push({ begin: p, bytes: await this.http.read(p, n), tag });
      }
    }
    this.chunks.sort((x, y) => x.begin - y.begin);
  }

  /** Fetch rows (`rowBytes` each, the table starting at `begin`), one range request per missing row, in parallel. */
  async fetchRows(begin: number, rowBytes: number, ids: Iterable<number>): Promise<void> {
    const missing = [...new Set(ids)].filter((id) => !this.rows.has(begin + id * rowBytes));
    if (this.rows.size + missing.length > MAX_ROWS) this.rows.clear();
    const got = await Promise.all(missing.map((id) => this.http.read(begin + id * rowBytes, rowBytes)));
    missing.forEach((id, i) => this.rows.set(begin + id * rowBytes, got[i]!));
  }

  /** Forget the ranges fetched under `tag`. */
  drop(tag: string): void {
    this.chunks = this.chunks.filter((c) => c.tag !== tag);
  }

  /** Forget everything fetched. */
  clear(): void {
    this.chunks = [];
    this.rows.clear();
  }

  /** True when the fetched chunks hold every byte of [offset, offset + length). */
  private covered(offset: number, length: number): boolean {
    let pos = offset;
    for (const c of this.chunks) {
      if (c.begin <= pos && c.begin + c.bytes.length > pos) pos = c.begin + c.bytes.length;
      if (pos >= offset + length) return true;
    }
    return length === 0;
  }

  readSync(offset: number, length: number, into: Uint8Array = new Uint8Array(length)): Uint8Array {
    const row = this.rows.get(offset);
    if (row && row.length === length) {
      into.set(row);
      return into;
    }
    // A tensor may span two requests: copy piece by piece from the sorted chunks.
    let pos = offset;
    const end = offset + length;
    for (const c of this.chunks) {
      if (pos >= end) break;
      const cEnd = c.begin + c.bytes.length;
      if (c.begin > pos || cEnd <= pos) continue;
      const n = Math.min(end, cEnd) - pos;
      into.set(c.bytes.subarray(pos - c.begin, pos - c.begin + n), pos - offset);
      pos += n;
    }
    if (pos < end) throw new Error(`internal: ${this.name}: bytes ${pos}–${end} were not fetched before use`);
    return into;
  }
}
