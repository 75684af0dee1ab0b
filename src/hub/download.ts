/**
 * Resolving `--model`: a local directory, or a Hugging Face Hub id downloaded into the
 * same cache `huggingface_hub` uses (see ./cache.ts), so that Python and this package
 * share downloads.
 *
 * The HTTP exchange mirrors `huggingface_hub.hf_hub_download`:
 * - metadata: `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` with
 *   `Accept-Encoding: identity`, following redirects only while they stay on the same
 *   host (or a Hub host); the answer, or the redirect that leaves the Hub (the CDN),
 *   carries `X-Repo-Commit`, `ETag` / `X-Linked-Etag` and `X-Linked-Size`;
 * - download: `GET` of that final location (the CDN URL for large files, without the
 *   `Authorization` header once off the Hub), into `blobs/<etag>.incomplete`, resumed
 *   with `Range: bytes=N-`, checked against the expected size (and the SHA-256 that
 *   an LFS ETag is), then renamed into `blobs/<etag>` and linked from
 *   `snapshots/<commit>/<file>`.
 * After the first file the revision is pinned to the commit it resolved to, so all
 * files come from one commit.
 */
import { createReadStream, existsSync, readFileSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { createHash } from "node:crypto";
import { homedir } from "node:os";
import * as path from "node:path";
import cliProgress from "cli-progress";

import { SiglipError } from "../errors.js";
import {
  COMMIT_HASH_RE,
  RepoCache,
  defaultCacheDir,
  defaultEndpoint,
  defaultToken,
  expandPath,
  isOfflineEnv,
  normalizeEtag,
  safeRelativeParts,
  timeoutSeconds,
} from "./cache.js";

export { defaultCacheDir, defaultEndpoint, defaultToken, isOfflineEnv } from "./cache.js";

export interface ResolveOptions {
  /** Branch, tag or commit id; default "main". */
  revision?: string;
  /** Default: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (XDG_CACHE_HOME honoured). */
  cacheDir?: string;
  /** Default: HF_TOKEN, else the token file huggingface_hub writes ($HF_HOME/token). */
  token?: string;
  /** Default: HF_HUB_OFFLINE set to 1/true/yes/on. */
  offline?: boolean;
  /** Default: HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Progress bar on stderr; default: process.stderr.isTTY. */
  progress?: boolean;
  /** What the caller needs: "vision" skips the tokenizer files. Default "all". */
  parts?: "all" | "vision" | "text";
  /** The fetch to use (tests). */
  fetchImpl?: typeof fetch;
}

const CONFIG = "config.json";
const WEIGHTS = "model.safetensors";
const WEIGHTS_INDEX = "model.safetensors.index.json";
const TOKENIZER = "tokenizer.json";
const PREPROCESSOR_FILES = ["preprocessor_config.json"];
const TOKENIZER_OPTIONAL_FILES = ["tokenizer_config.json", "special_tokens_map.json"];
const LOCAL_HINT = "pass a local directory with config.json and model.safetensors via --model /path/to/dir";
const EXAMPLE_ID = "google/siglip2-base-patch16-224";

// ---------------------------------------------------------------------------------------------
// Model argument: local directory or Hub id

/** True for a Hub model id `org/name` as huggingface_hub accepts it (ASCII word chars, `-`, `.`). */
export function isHubModelId(s: string): boolean {
  const part = "[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?";
  if (!new RegExp(`^${part}/${part}$`).test(s)) return false;
  return !s.includes("--") && !s.includes("..") && !s.endsWith(".git");
}

/**
 * `model` is a local directory (returned as is, after checking it exists and has config.json)
 * or a Hub id "org/name". Returns a local directory that holds config.json,
 * preprocessor_config.json (if the repo has it), the tokenizer files (tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json if present) and the weights
 * (model.safetensors, or model.safetensors.index.json and all its shards).
 */
export async function resolveModel(model: string, options: ResolveOptions = {}): Promise<string> {
  const local = await localModelDirectory(model);
  if (local !== undefined) return local;
  return resolveHubModel(model, options);
}

async function localModelDirectory(model: string): Promise<string | undefined> {
  if (model.trim() === "") {
    throw new SiglipError("hub", `empty model: pass a local directory or a Hub id like ${EXAMPLE_ID}`, {
      subject: model,
    });
  }
  const dir = model === "~" || model.startsWith("~/") ? homedir() + model.slice(1) : model;
  let isDir: boolean | undefined;
  try {
    isDir = (await fsp.stat(dir)).isDirectory();
  } catch {
    isDir = undefined;
  }
  if (isDir === true) {
    if (!existsSync(path.join(dir, CONFIG))) {
      throw new SiglipError(
        "hub",
        `model directory ${dir} has no config.json; a model directory needs config.json and model.safetensors (or model.safetensors.index.json and its shards)`,
        { subject: dir },
      );
    }
    return dir;
  }
  if (isDir === false) {
    throw new SiglipError(
      "hub",
      `${dir} is a file, not a model directory; pass a directory with config.json and model.safetensors, or a Hub id like ${EXAMPLE_ID}`,
      { subject: dir },
    );
  }
  if (isHubModelId(model)) return undefined;
  const looksLikePath =
    path.isAbsolute(model) || model.startsWith(".") || model.startsWith("~") || model.includes("\\") || model.split("/").length > 2;
  if (looksLikePath) {
    throw new SiglipError("hub", `no such model directory: ${dir}`, { subject: dir });
  }
  throw new SiglipError(
    "hub",
    `"${model}" is neither an existing directory nor a Hugging Face model id like ${EXAMPLE_ID}`,
    { subject: model },
  );
}

// ---------------------------------------------------------------------------------------------
// Errors of the HTTP layer (converted into one-line SiglipErrors at the top)

/** The Hub answered with an error status. */
class HubHttpError extends Error {
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
class HubNetworkError extends Error {
  constructor(
    readonly reason: string,
    readonly host: string,
    cause: unknown,
  ) {
    super(`${reason} ${host}`, { cause });
  }
}

/** An answer that does not look like the Hub's (no commit or ETag header). */
class HubMetadataError extends Error {}

/** The most telling part of a fetch failure: an errno-style code (ENOTFOUND…), "timeout", or the innermost message. */
function networkReason(e: unknown): string {
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

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

// ---------------------------------------------------------------------------------------------
// Context

interface Context {
  repoId: string;
  revision: string;
  cache: RepoCache;
  endpoint: string;
  token: string | undefined;
  offline: boolean;
  offlineFromEnv: boolean;
  progress: boolean;
  parts: "all" | "vision" | "text";
  fetch: typeof fetch;
  headers: Record<string, string>;
  etagTimeoutMs: number;
  downloadTimeoutMs: number;
  hubHosts: Set<string>;
}

function makeContext(repoId: string, options: ResolveOptions): Context {
  const env = process.env;
  const endpoint = (options.endpoint ?? defaultEndpoint(env)).replace(/\/+$/, "");
  let endpointUrl: URL;
  try {
    endpointUrl = new URL(endpoint);
  } catch {
    endpointUrl = new URL("invalid:");
  }
  if (endpointUrl.protocol !== "http:" && endpointUrl.protocol !== "https:") {
    throw new SiglipError("hub", `invalid Hub endpoint "${endpoint}" (HF_ENDPOINT): expected an http(s) URL`, {
      subject: endpoint,
    });
  }
  const token = options.token !== undefined && options.token !== "" ? options.token : defaultToken(env);
  const headers: Record<string, string> = { "user-agent": `siglip2; node/${process.versions.node}` };
  if (token !== undefined) headers["authorization"] = `Bearer ${token}`;
  const cacheDir = options.cacheDir !== undefined ? expandPath(options.cacheDir, env) : defaultCacheDir(env);
  const offlineFromEnv = options.offline === undefined && isOfflineEnv(env);
  return {
    repoId,
    revision: options.revision !== undefined && options.revision !== "" ? options.revision : "main",
    cache: new RepoCache(cacheDir, repoId),
    endpoint,
    token,
    offline: options.offline ?? offlineFromEnv,
    offlineFromEnv,
    progress: options.progress ?? process.stderr.isTTY === true,
    parts: options.parts ?? "all",
    fetch: options.fetchImpl ?? globalThis.fetch,
    headers,
    etagTimeoutMs: timeoutSeconds(env, "HF_HUB_ETAG_TIMEOUT") * 1000,
    downloadTimeoutMs: timeoutSeconds(env, "HF_HUB_DOWNLOAD_TIMEOUT") * 1000,
    hubHosts: new Set(["hf.co", "huggingface.co", "hub-ci.huggingface.co", endpointUrl.hostname.toLowerCase()]),
  };
}

function wantsTokenizer(ctx: Context): boolean {
  return ctx.parts !== "vision";
}

function optionalFiles(ctx: Context): string[] {
  return wantsTokenizer(ctx) ? [...PREPROCESSOR_FILES, ...TOKENIZER_OPTIONAL_FILES] : [...PREPROCESSOR_FILES];
}

// ---------------------------------------------------------------------------------------------
// Hub resolution

async function resolveHubModel(repoId: string, options: ResolveOptions): Promise<string> {
  const ctx = makeContext(repoId, options);
  if (ctx.offline) {
    const cached = cachedSnapshot(ctx);
    if (cached.dir !== undefined) return cached.dir;
    const why = ctx.offlineFromEnv ? "offline mode is on (HF_HUB_OFFLINE)" : "offline mode is on";
    throw new SiglipError(
      "hub",
      `cannot load ${repoId}: ${why} and ${cached.detail}; ${LOCAL_HINT}, or turn offline mode off to download it`,
      { subject: repoId },
    );
  }

  // A commit id whose snapshot is already complete needs no request at all.
  if (COMMIT_HASH_RE.test(ctx.revision)) {
    const status = snapshotStatus(ctx, ctx.revision);
    const optionalKnown = optionalFiles(ctx).every(
      (f) => ctx.cache.has(ctx.revision, f) || ctx.cache.knownAbsent(ctx.revision, f),
    );
    if (status.missing.length === 0 && optionalKnown) return ctx.cache.snapshotDir(ctx.revision);
  }

  try {
    return await resolveOnline(ctx);
  } catch (e) {
    if (e instanceof SiglipError) throw e;
    if (e instanceof HubHttpError && e.status === 404 && e.stage === "metadata") throw notFoundError(ctx, e);
    if (e instanceof HubHttpError || e instanceof HubNetworkError || e instanceof HubMetadataError) {
      // Hub down, unreachable, refusing us or not a Hub: use a complete cached copy when there is one.
      const cached = cachedSnapshot(ctx);
      if (cached.dir !== undefined) return cached.dir;
      throw hubError(ctx, e, cached.detail);
    }
    const err = e as NodeJS.ErrnoException;
    if (typeof err?.code === "string") {
      throw new SiglipError(
        "hub",
        `cannot store ${repoId} in the cache ${ctx.cache.cacheDir}: ${err.message}`,
        { subject: repoId, cause: e },
      );
    }
    throw e;
  }
}

function notFoundError(ctx: Context, e: HubHttpError): SiglipError {
  const { repoId, revision } = ctx;
  let msg: string;
  if (e.errorCode === "RevisionNotFound") {
    msg = `revision "${revision}" of ${repoId} not found on the Hub (${ctx.endpoint})`;
  } else if (e.errorCode === "EntryNotFound") {
    msg = `${repoId} (revision ${revision}) has no ${e.filename}; is it a SigLIP 2 model repository?`;
  } else {
    msg = `repository ${repoId} or revision "${revision}" not found on the Hub (${ctx.endpoint}); check the model id`;
  }
  return new SiglipError("hub", msg, { subject: repoId, cause: e });
}

function hubError(ctx: Context, e: Error, cacheDetail: string): SiglipError {
  const { repoId } = ctx;
  let msg: string;
  if (e instanceof HubHttpError && e.stage === "download") {
    msg =
      `cannot download ${e.filename} of ${repoId}: ${hostOf(e.url)} answered HTTP ${e.status} and ${cacheDetail}; ` +
      `run again to retry, or ${LOCAL_HINT}`;
  } else if (e instanceof HubHttpError && (e.status === 401 || e.status === 403)) {
    const gated = e.errorCode === "GatedRepo" || e.status === 403;
    if (gated) {
      msg =
        `cannot download ${repoId}: access denied (HTTP ${e.status}); the repository is gated or private: ` +
        `request access on ${ctx.endpoint}/${repoId} and set HF_TOKEN to a token of that account`;
    } else if (ctx.token === undefined) {
      msg =
        `cannot download ${repoId}: the Hub answered 401 (repository not found, private or gated); ` +
        `check the id, or set HF_TOKEN to a token that can read it`;
    } else {
      msg =
        `cannot download ${repoId}: the Hub answered 401 although a token was sent (repository not found, ` +
        `or the token in HF_TOKEN / the token file is invalid or cannot read it)`;
    }
  } else if (e instanceof HubHttpError) {
    msg = `cannot download ${repoId} (the Hub answered HTTP ${e.status} for ${e.filename}) and ${cacheDetail}; ${LOCAL_HINT}`;
  } else if (e instanceof HubNetworkError) {
    msg = `cannot download ${repoId} (Hub unreachable: ${e.message}) and ${cacheDetail}; ${LOCAL_HINT}`;
  } else {
    msg = `cannot download ${repoId}: ${e.message} and ${cacheDetail}; check HF_ENDPOINT, or ${LOCAL_HINT}`;
  }
  return new SiglipError("hub", msg, { subject: repoId, cause: e });
}

interface SnapshotStatus {
  missing: string[];
}

/** What a snapshot lacks of what resolveModel promises (optional files excepted). */
function snapshotStatus(ctx: Context, commit: string): SnapshotStatus {
  const { cache } = ctx;
  const missing: string[] = [];
  if (!cache.has(commit, CONFIG)) missing.push(CONFIG);
  if (wantsTokenizer(ctx) && !cache.has(commit, TOKENIZER) && !cache.knownAbsent(commit, TOKENIZER)) {
    missing.push(TOKENIZER);
  }
  if (!cache.has(commit, WEIGHTS)) {
    if (cache.has(commit, WEIGHTS_INDEX)) {
      try {
        const shards = readShardNames(cache.pointerPath(commit, WEIGHTS_INDEX));
        for (const s of shards) if (!cache.has(commit, s)) missing.push(s);
      } catch {
        missing.push(WEIGHTS_INDEX);
      }
    } else {
      missing.push(WEIGHTS);
    }
  }
  return { missing };
}

/** The cached snapshot for ctx.revision when it is complete, else a phrase saying what is wrong. */
function cachedSnapshot(ctx: Context): { dir?: string; detail: string } {
  const where = `the cache (${ctx.cache.cacheDir})`;
  const commit = ctx.cache.cachedCommit(ctx.revision);
  if (commit === undefined || !existsSync(ctx.cache.snapshotDir(commit))) {
    return { detail: `${where} has no copy of revision ${ctx.revision}` };
  }
  const { missing } = snapshotStatus(ctx, commit);
  if (missing.length === 0) return { dir: ctx.cache.snapshotDir(commit), detail: "" };
  return { detail: `${where} has an incomplete copy of revision ${ctx.revision} (missing ${missing.join(", ")})` };
}

function readShardNames(indexPath: string): string[] {
  const text = readFileSync(indexPath, "utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SiglipError("hub", `${indexPath} is not valid JSON: ${(e as Error).message}`, { subject: indexPath });
  }
  const map = (json as { weight_map?: unknown })?.weight_map;
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    throw new SiglipError("hub", `${indexPath} has no "weight_map" object`, { subject: indexPath });
  }
  const names = new Set<string>();
  for (const v of Object.values(map as Record<string, unknown>)) {
    if (typeof v !== "string" || safeRelativeParts(v) === undefined) {
      throw new SiglipError("hub", `${indexPath} names an invalid shard file ${JSON.stringify(v)}`, {
        subject: indexPath,
      });
    }
    names.add(v);
  }
  if (names.size === 0) {
    throw new SiglipError("hub", `${indexPath} has an empty "weight_map"`, { subject: indexPath });
  }
  return [...names].sort();
}

async function resolveOnline(ctx: Context): Promise<string> {
  const { cache } = ctx;
  // The first request resolves the revision to a commit.
  const configMeta = await headFile(ctx, CONFIG, ctx.revision);
  const commit = configMeta.commit;
  if (!COMMIT_HASH_RE.test(commit) && safeRelativeParts(commit)?.length !== 1) {
    throw new HubMetadataError(`the Hub sent an invalid commit id "${commit}"`);
  }
  try {
    await cache.writeRef(ctx.revision, commit);
  } catch {
    // A read-only cache still works for files already there.
  }
  await materialize(ctx, CONFIG, commit, configMeta);

  for (const f of optionalFiles(ctx)) await ensureFile(ctx, f, commit, true);
  if (wantsTokenizer(ctx)) await ensureFile(ctx, TOKENIZER, commit, true);

  // Weights: model.safetensors, else the sharded index and its shards.
  const single = cache.has(commit, WEIGHTS) || (!cache.knownAbsent(commit, WEIGHTS) && (await ensureFile(ctx, WEIGHTS, commit, true)));
  if (!single) {
    const haveIndex = await ensureFile(ctx, WEIGHTS_INDEX, commit, true);
    if (!haveIndex) {
      throw new SiglipError(
        "hub",
        `${ctx.repoId} (revision ${ctx.revision}) has neither model.safetensors nor model.safetensors.index.json; only safetensors checkpoints are supported`,
        { subject: ctx.repoId },
      );
    }
    for (const shard of readShardNames(cache.pointerPath(commit, WEIGHTS_INDEX))) {
      await ensureFile(ctx, shard, commit, false);
    }
  }
  return cache.snapshotDir(commit);
}

/** Makes `filename` present in the snapshot; false when the repo does not have it (optional files only). */
async function ensureFile(ctx: Context, filename: string, commit: string, optional: boolean): Promise<boolean> {
  const { cache } = ctx;
  if (cache.has(commit, filename)) return true;
  if (optional && cache.knownAbsent(commit, filename)) return false;
  let meta: FileMeta;
  try {
    meta = await headFile(ctx, filename, commit);
  } catch (e) {
    if (e instanceof HubHttpError && e.status === 404) {
      if (e.errorCode === "EntryNotFound") await cache.markAbsent(e.repoCommit ?? commit, filename);
      if (optional) return false;
      throw new SiglipError(
        "hub",
        `${ctx.repoId} (revision ${ctx.revision}, commit ${commit}) has no ${filename}, which its weight index lists`,
        { subject: filename, cause: e },
      );
    }
    throw e;
  }
  await materialize(ctx, filename, commit, meta);
  return true;
}

interface FileMeta {
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

function resolveUrl(ctx: Context, revision: string, filename: string): string {
  const file = filename.split("/").map(encodeURIComponent).join("/");
  return `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(revision)}/${file}`;
}

function sameOrHubHost(ctx: Context, from: string, to: string): boolean {
  const a = new URL(from).hostname.toLowerCase();
  const b = new URL(to).hostname.toLowerCase();
  return a === b || ctx.hubHosts.has(b);
}

async function doFetch(ctx: Context, url: string, init: RequestInit): Promise<Response> {
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
async function headFile(ctx: Context, filename: string, revision: string): Promise<FileMeta> {
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

/** Puts the file described by `meta` into `snapshots/<commit>/<filename>`, downloading its blob if needed. */
async function materialize(ctx: Context, filename: string, commit: string, meta: FileMeta): Promise<void> {
  const { cache } = ctx;
  if (cache.has(commit, filename)) return;
  const blob = cache.blobPath(meta.etag);
  if (!existsSync(blob)) {
    await cache.tagCacheDir();
    await downloadBlob(ctx, filename, meta);
  }
  await cache.link(commit, filename, meta.etag);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function fileSize(p: string): Promise<number> {
  try {
    return (await fsp.stat(p)).size;
  } catch {
    return 0;
  }
}

async function sha256File(p: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Downloads into `blobs/<etag>.incomplete` (resuming it), verifies it and renames it to `blobs/<etag>`. */
async function downloadBlob(ctx: Context, filename: string, meta: FileMeta): Promise<void> {
  const blob = ctx.cache.blobPath(meta.etag);
  const incomplete = `${blob}.incomplete`;
  await fsp.mkdir(path.dirname(blob), { recursive: true });

  const headers: Record<string, string> = { ...ctx.headers, "accept-encoding": "identity" };
  if (!sameOrHubHost(ctx, meta.hubUrl, meta.location)) delete headers["authorization"];

  let expected = meta.size;
  let have = await fileSize(incomplete);
  if (expected !== undefined && have > expected) {
    await fsp.truncate(incomplete, 0);
    have = 0;
  }
  // A bar for the weights (LFS files) and anything large; config files are too small to bother.
  const showBar = ctx.progress && (meta.linked || meta.size === undefined || meta.size >= 1_000_000);
  const progress = showBar ? new DownloadProgress(filename) : undefined;
  let retriesLeft = 5;
  try {
    while (expected === undefined || have < expected) {
      const before = have;
      try {
        const result = await getOnce(ctx, filename, meta.location, headers, incomplete, have, expected, progress);
        have = result.have;
        if (expected === undefined) expected = result.total ?? have;
        if (result.complete && expected === undefined) break;
        if (have >= expected) break;
        // The body ended early: resume.
        throw new HubNetworkError("connection closed early", hostOf(meta.location), undefined);
      } catch (e) {
        if (!(e instanceof HubNetworkError)) throw e;
        have = await fileSize(incomplete);
        if (have > before) retriesLeft = 5;
        else retriesLeft--;
        if (retriesLeft <= 0) throw e;
        await sleep(1000);
      }
    }
  } finally {
    progress?.stop();
  }

  if (expected !== undefined && have !== expected) {
    await fsp.rm(incomplete, { force: true });
    throw new SiglipError(
      "hub",
      `download of ${filename} from ${ctx.repoId} has ${have} bytes instead of ${expected}; run again to retry`,
      { subject: filename },
    );
  }
  if (meta.linked && /^[0-9a-f]{64}$/.test(meta.etag)) {
    const digest = await sha256File(incomplete);
    if (digest !== meta.etag) {
      await fsp.rm(incomplete, { force: true });
      throw new SiglipError(
        "hub",
        `download of ${filename} from ${ctx.repoId} is corrupt (SHA-256 ${digest}, expected ${meta.etag}); run again to retry`,
        { subject: filename },
      );
    }
  }
  try {
    await fsp.rename(incomplete, blob);
  } catch (e) {
    // Another process finished the same blob first.
    if ((e as NodeJS.ErrnoException).code !== "ENOENT" || !existsSync(blob)) throw e;
  }
}

interface GetResult {
  have: number;
  total: number | undefined;
  complete: boolean;
}

/** One GET, appended to `incomplete` from byte `have`. */
async function getOnce(
  ctx: Context,
  filename: string,
  url: string,
  baseHeaders: Record<string, string>,
  incomplete: string,
  have: number,
  expected: number | undefined,
  progress: DownloadProgress | undefined,
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
      return { have: 0, total: undefined, complete: false };
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
    progress?.begin(expected ?? total, have);

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
        progress?.update(have);
        if (expected !== undefined && have > expected) break;
      }
    } finally {
      await fh.close();
      reader.releaseLock();
    }
    return { have, total, complete: true };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Progress bar

function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${v}${units[u]}` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[u]}`;
}

class DownloadProgress {
  private bar: cliProgress.SingleBar | undefined;
  private startTime = 0;
  private startBytes = 0;
  private total: number | undefined;

  constructor(private readonly filename: string) {}

  begin(total: number | undefined, have: number): void {
    this.total = total;
    this.startTime = Date.now();
    this.startBytes = have;
    const name = this.filename.length > 40 ? `(…)${this.filename.slice(-40)}` : this.filename;
    if (this.bar === undefined) {
      this.bar = new cliProgress.SingleBar(
        {
          format:
            total !== undefined
              ? `${name} |{bar}| {percentage}% | {done}/{size} | {rate} | ETA {eta_formatted}`
              : `${name} | {done} | {rate}`,
          stream: process.stderr,
          hideCursor: process.stderr.isTTY === true,
          noTTYOutput: process.stderr.isTTY !== true,
          notTTYSchedule: 5000,
          barsize: 30,
          etaBuffer: 50,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total ?? 0, have, this.payload(have));
    } else {
      if (total !== undefined) this.bar.setTotal(total);
      this.bar.update(have, this.payload(have));
    }
  }

  update(have: number): void {
    this.bar?.update(have, this.payload(have));
  }

  private payload(have: number): Record<string, string> {
    const secs = (Date.now() - this.startTime) / 1000;
    const rate = secs > 0 ? (have - this.startBytes) / secs : 0;
    return {
      done: formatBytes(have),
      size: this.total !== undefined ? formatBytes(this.total) : "?",
      rate: `${formatBytes(Math.round(rate))}/s`,
    };
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
