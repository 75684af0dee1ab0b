/**
 * The settings of one Hub resolution: the caller's {@link ResolveOptions} merged with the
 * environment variables `huggingface_hub` reads (HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE,
 * HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT; the cache folder: src/user-dirs.ts).
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { SiglipError } from "../errors.js";
import { defaultCacheDir, defaultTokenPath, expandPath, type Env } from "../user-dirs.js";
import { RepoCache } from "./cache.js";

/** One step of a download: `bytes` of `file` are on disk, of `total` (unknown without a size header). */
export interface DownloadProgress {
  /** The repo-relative file name (`model.safetensors`). */
  file: string;
  bytes: number;
  total: number | undefined;
  /** True on the last call for this file (finished, or given up). */
  done: boolean;
}

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
  /**
   * Called as each file downloads (the library draws nothing; the CLI draws a bar:
   * src/cli/progress.ts). Not called for files already in the cache.
   */
  onProgress?: (p: DownloadProgress) => void;
  /** What the caller needs: "vision" skips the tokenizer files. Default "all". */
  parts?: "all" | "vision" | "text";
  /** The fetch to use (tests). */
  fetchImpl?: typeof fetch;
}

const TRUE_VALUES = new Set(["1", "ON", "YES", "TRUE"]);

/** A non-empty environment variable, or undefined. */
function envValue(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

function cleanToken(t: string | undefined): string | undefined {
  if (t === undefined) return undefined;
  const cleaned = t.replace(/[\r\n]/g, "").trim();
  return cleaned === "" ? undefined : cleaned;
}

/** The token `huggingface_hub` would use: `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, then the token file. */
export function defaultToken(env: Env = process.env, home: string = homedir()): string | undefined {
  const fromEnv = cleanToken(envValue(env, "HF_TOKEN") ?? envValue(env, "HUGGING_FACE_HUB_TOKEN"));
  if (fromEnv !== undefined) return fromEnv;
  try {
    return cleanToken(readFileSync(defaultTokenPath(env, home), "utf8"));
  } catch {
    return undefined;
  }
}

/** `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) set to 1/true/yes/on, case-insensitive. */
export function isOfflineEnv(env: Env = process.env): boolean {
  const v = envValue(env, "HF_HUB_OFFLINE") ?? envValue(env, "TRANSFORMERS_OFFLINE");
  return v !== undefined && TRUE_VALUES.has(v.toUpperCase());
}

/** `HF_ENDPOINT` or `https://huggingface.co`, without a trailing slash. */
export function defaultEndpoint(env: Env = process.env): string {
  return (envValue(env, "HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
}

/** A seconds value from the environment (`HF_HUB_ETAG_TIMEOUT`, `HF_HUB_DOWNLOAD_TIMEOUT`), default 10. */
export function timeoutSeconds(env: Env, name: string, fallback = 10): number {
  const v = envValue(env, name);
  const n = v === undefined ? NaN : Number(v);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** Everything one resolution of `repoId` needs, computed once. */
export interface HubContext {
  repoId: string;
  revision: string;
  cache: RepoCache;
  endpoint: string;
  token: string | undefined;
  offline: boolean;
  offlineFromEnv: boolean;
  onProgress: ((p: DownloadProgress) => void) | undefined;
  parts: "all" | "vision" | "text";
  fetch: typeof fetch;
  /** Sent with every request (user-agent, authorization). */
  headers: Record<string, string>;
  etagTimeoutMs: number;
  downloadTimeoutMs: number;
  /** Hosts that may receive the token (the Hub's and the endpoint's). */
  hubHosts: Set<string>;
}

export function makeContext(repoId: string, options: ResolveOptions, env: Env = process.env): HubContext {
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
    onProgress: options.onProgress,
    parts: options.parts ?? "all",
    fetch: options.fetchImpl ?? globalThis.fetch,
    headers,
    etagTimeoutMs: timeoutSeconds(env, "HF_HUB_ETAG_TIMEOUT") * 1000,
    downloadTimeoutMs: timeoutSeconds(env, "HF_HUB_DOWNLOAD_TIMEOUT") * 1000,
    hubHosts: new Set(["hf.co", "huggingface.co", "hub-ci.huggingface.co", endpointUrl.hostname.toLowerCase()]),
  };
}
