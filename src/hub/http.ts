/**
 * The HTTP side of a Hub download, as `huggingface_hub.hf_hub_download` does it:
 * - metadata ({@link headFile}): `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` with
 *   `Accept-Encoding: identity`, following redirects only while they stay on the same
 *   host (or a Hub host); the answer, or the redirect that leaves the Hub (the CDN),
 *   carries `X-Repo-Commit`, `ETag` / `X-Linked-Etag` and `X-Linked-Size`;
 * - content ({@link getOnce}): one `GET` of that final location, appended to a partial
 *   file from a byte offset with `Range: bytes=N-`, with a stall timeout; retries and
 *   verification are in ./files.ts.
 * The token (`Authorization`) goes only to Hub hosts, never to the CDN.
 *
 * Failures are thrown as the three error classes below; ./download.ts turns them into
 * one-line SiglipErrors (or falls back to the cache).
 */
import * as fsp from "node:fs/promises";
import { normalizeEtag, safeRelativeParts } from "./cache.js";
import type { HubContext } from "./settings.js";

/** The Hub answered with an error status. */
export class HubHttpError extends Error {
  readonly errorCode: string | undefined;
  readonly repoCommit: string | undefined;
  constructor(
    readonly status: number,
    readonly url: string,
    headers: Headers,
    readonly filename: string,
    /** "download": the GET of the content (often on the CDN) failed, not the metadata request. */
    readonly stage: "metadata" | "download" = "metadata",
  ) {
    super(`HTTP ${status} for ${url}`);
    this.errorCode = headers.get("x-error-code") ?? undefined;
    this.repoCommit = headers.get("x-repo-commit") ?? undefined;
  }
}

/** No answer at all: DNS, connection, TLS, timeout, interrupted transfer. */
export class HubNetworkError extends Error {
  constructor(
    readonly reason: string,
    readonly host: string,
    cause: unknown,
  ) {
    super(`${reason} ${host}`, { cause });
  }
}

/** An answer that does not look like the Hub's (no commit or ETag header). */
export class HubMetadataError extends Error {}

/** The most telling part of a fetch failure: an errno-style code (ENOTFOUND…), "timeout", or the innermost message. */
export function networkReason(e: unknown): string {
  const seen = new Set<unknown>();
  let cur: unknown = e;
  let message = e instanceof Error ? e.message : String(e);
  while (cur !== null && typeof cur === "object" && !seen.has(cur)) {
    seen.add(cur);
    const o = cur as { code?: unknown; name?: unknown; errors?: unknown; cause?: unknown; message?: unknown };
    if (o.name === "TimeoutError" || o.name === "AbortError") return "timeout";
    if (typeof o.code === "string" && o.code !== "" && !o.code.startsWith("UND_ERR")) return o.code;
    if (typeof o.message === "string" && o.message !== "") message = o.message;
    if (Array.isArray(o.errors) && o.errors.length > 0) {
      cur = o.errors[0];
      continue;
    }
    cur = o.cause;
  }
  return message;
}

export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** What the metadata request says about one file. */
export interface FileMeta {
  commit: string;
  etag: string;
  /** The ETag came from X-Linked-Etag (an LFS file): it is the SHA-256 of the content. */
  linked: boolean;
  size: number | undefined;
  /** Where to GET the content: the resolve URL, or the CDN it redirects to. */
  location: string;
  /** The resolve URL the metadata came from (after on-Hub redirects). */
  hubUrl: string;
}

function resolveUrl(ctx: HubContext, revision: string, filename: string): string {
  const file = filename.split("/").map(encodeURIComponent).join("/");
  return `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(revision)}/${file}`;
}

/** True when a request moving from `from` to `to` stays with the Hub (so it may carry the token). */
export function sameOrHubHost(ctx: HubContext, from: string, to: string): boolean {
  const a = new URL(from).hostname.toLowerCase();
  const b = new URL(to).hostname.toLowerCase();
  return a === b || ctx.hubHosts.has(b);
}

async function doFetch(ctx: HubContext, url: string, init: RequestInit): Promise<Response> {
  try {
    return await ctx.fetch(url, init);
  } catch (e) {
    throw new HubNetworkError(networkReason(e), hostOf(url), e);
  }
}

function parseSize(v: string | null): number | undefined {
  if (v === null || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

/** The metadata request huggingface_hub makes (`get_hf_file_metadata`). */
export async function headFile(ctx: HubContext, filename: string, revision: string): Promise<FileMeta> {
  let url = resolveUrl(ctx, revision, filename);
  const headers = { ...ctx.headers, "accept-encoding": "identity" };
  for (let i = 0; i < 20; i++) {
    const res = await doFetch(ctx, url, {
      method: "HEAD",
      headers,
      redirect: "manual",
      signal: AbortSignal.timeout(ctx.etagTimeoutMs),
    });
    await res.body?.cancel().catch(() => undefined);
    if (res.status >= 400) throw new HubHttpError(res.status, url, res.headers, filename);
    const locationHeader = res.headers.get("location");
    const isRedirect = res.status >= 300 && res.status < 400 && locationHeader !== null;
    let location = url;
    if (isRedirect) {
      const target = new URL(locationHeader, url).toString();
      if (sameOrHubHost(ctx, url, target)) {
        url = target;
        continue;
      }
      // Leaving the Hub (CDN): the metadata is on this very response.
      location = target;
    }
    const commit = res.headers.get("x-repo-commit");
    if (commit === null || commit === "") {
      throw new HubMetadataError(`${hostOf(url)} did not answer like the Hugging Face Hub (no X-Repo-Commit header)`);
    }
    const linkedEtag = res.headers.get("x-linked-etag");
    const etag = normalizeEtag(linkedEtag ?? res.headers.get("etag"));
    if (etag === undefined || safeRelativeParts(etag)?.length !== 1) {
      throw new HubMetadataError(`${hostOf(url)} sent no usable ETag for ${filename}`);
    }
    const size = parseSize(res.headers.get("x-linked-size")) ?? (isRedirect ? undefined : parseSize(res.headers.get("content-length")));
    return { commit, etag, linked: linkedEtag !== null, size, location, hubUrl: url };
  }
  throw new HubMetadataError(`too many redirects while resolving ${filename}`);
}

/** What one GET left on disk. */
export interface GetResult {
  /** Bytes now in the partial file. */
  have: number;
  /** The file's full size as the response states it (undefined when unknown or encoded). */
  total: number | undefined;
}

/**
 * One GET of `url`, appended to `incomplete` from byte `have` (a Range request when
 * `have` > 0). `onBytes` is told the byte count as chunks arrive. Stops reading past
 * `expected` bytes; aborts when no chunk arrives for HF_HUB_DOWNLOAD_TIMEOUT.
 */
export async function getOnce(
  ctx: HubContext,
  filename: string,
  url: string,
  baseHeaders: Record<string, string>,
  incomplete: string,
  have: number,
  expected: number | undefined,
  onBytes: (have: number, total: number | undefined) => void,
): Promise<GetResult> {
  const headers = { ...baseHeaders };
  if (have > 0) headers["range"] = `bytes=${have}-`;
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => abort.abort(new DOMException("download stalled", "TimeoutError")), ctx.downloadTimeoutMs);
  };
  arm();
  try {
    const res = await doFetch(ctx, url, { method: "GET", headers, redirect: "follow", signal: abort.signal });
    if (res.status === 416 && have > 0) {
      // The partial file does not fit the server's copy: start over.
      await res.body?.cancel().catch(() => undefined);
      await fsp.truncate(incomplete, 0);
      return { have: 0, total: undefined };
    }
    if (!res.ok || res.body === null) {
      await res.body?.cancel().catch(() => undefined);
      throw new HubHttpError(res.status, url, res.headers, filename, "download");
    }
    if (have > 0 && res.status !== 206) {
      // The server ignored the Range header: the body is the whole file.
      await fsp.truncate(incomplete, 0);
      have = 0;
    }
    const contentRange = res.headers.get("content-range");
    const rangeTotal = contentRange !== null ? parseSize(contentRange.split("/").pop() ?? null) : undefined;
    const length = parseSize(res.headers.get("content-length"));
    const encoded = (res.headers.get("content-encoding") ?? "identity").toLowerCase() !== "identity";
    const total = encoded ? undefined : (rangeTotal ?? (length !== undefined ? length + have : undefined));
    const shownTotal = expected ?? total;
    onBytes(have, shownTotal);

    const fh = await fsp.open(incomplete, have > 0 ? "a" : "w");
    const reader = res.body.getReader();
    try {
      for (;;) {
        const chunk = await reader.read().catch((e: unknown) => {
          throw new HubNetworkError(networkReason(e), hostOf(url), e);
        });
        if (chunk.done) break;
        arm();
        await fh.write(chunk.value);
        have += chunk.value.byteLength;
        onBytes(have, shownTotal);
        if (expected !== undefined && have > expected) break;
      }
    } finally {
      await fh.close();
      reader.releaseLock();
    }
    return { have, total };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
