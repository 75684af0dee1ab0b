/**
 * Resolving `--model`: a local directory (./resolve.ts), or a Hugging Face Hub id
 * downloaded into the same cache `huggingface_hub` uses (./cache.ts), so that Python
 * and this package share downloads. This module is the orchestration; the parts:
 *
 *   ./settings.ts  options + environment → one HubContext
 *   ./resolve.ts   local directory or Hub id
 *   ./snapshot.ts  which files a snapshot needs, and whether the cache has them
 *   ./http.ts      metadata (HEAD) and content (GET) requests, redirects, the token
 *   ./files.ts     one blob: .incomplete file, resume, retries, size + SHA-256 checks
 *   ./cache.ts     the cache layout: refs/, snapshots/, blobs/, .no_exist/
 *
 * Order: the first request (config.json) resolves the revision to a commit; every other
 * file is then asked for at that commit, so all files come from one commit. When the Hub
 * cannot be reached, a complete cached snapshot of the revision is used instead.
 * Progress is reported through `onProgress` only; nothing is drawn here.
 */
import { existsSync } from "node:fs";
import { SiglipError } from "../errors.js";
import { COMMIT_HASH_RE, safeRelativeParts } from "./cache.js";
import { downloadBlob } from "./files.js";
import { HubHttpError, HubMetadataError, HubNetworkError, headFile, hostOf, type FileMeta } from "./http.js";
import { localModelDirectory } from "./resolve.js";
import { makeContext, type HubContext, type ResolveOptions } from "./settings.js";
import {
  CONFIG,
  TOKENIZER,
  WEIGHTS,
  WEIGHTS_INDEX,
  cachedShardNames,
  cachedSnapshot,
  completeWithoutRequests,
  optionalFiles,
  wantsTokenizer,
} from "./snapshot.js";

export { defaultCacheDir } from "../user-dirs.js";
export { isHubModelId } from "./resolve.js";
export { defaultEndpoint, defaultToken, isOfflineEnv, type DownloadProgress, type ResolveOptions } from "./settings.js";

const LOCAL_HINT = "pass a local directory with config.json and model.safetensors via --model /path/to/dir";

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
  return resolveHubModel(makeContext(model, options));
}

async function resolveHubModel(ctx: HubContext): Promise<string> {
  const { repoId } = ctx;
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
  if (COMMIT_HASH_RE.test(ctx.revision) && completeWithoutRequests(ctx, ctx.revision)) {
    return ctx.cache.snapshotDir(ctx.revision);
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

/** Downloads what the snapshot of ctx.revision lacks; returns the snapshot folder. */
async function resolveOnline(ctx: HubContext): Promise<string> {
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
    for (const shard of cachedShardNames(ctx, commit)) await ensureFile(ctx, shard, commit, false);
  }
  return cache.snapshotDir(commit);
}

/** Makes `filename` present in the snapshot; false when the repo does not have it (optional files only). */
async function ensureFile(ctx: HubContext, filename: string, commit: string, optional: boolean): Promise<boolean> {
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

/** Puts the file described by `meta` into `snapshots/<commit>/<filename>`, downloading its blob if needed. */
async function materialize(ctx: HubContext, filename: string, commit: string, meta: FileMeta): Promise<void> {
  const { cache } = ctx;
  if (cache.has(commit, filename)) return;
  if (!existsSync(cache.blobPath(meta.etag))) {
    await cache.tagCacheDir();
    await downloadBlob(ctx, filename, meta);
  }
  await cache.link(commit, filename, meta.etag);
}

// ---------------------------------------------------------------------------------------------
// Errors of the HTTP layer → one-line SiglipErrors

function notFoundError(ctx: HubContext, e: HubHttpError): SiglipError {
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

function hubError(ctx: HubContext, e: Error, cacheDetail: string): SiglipError {
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
