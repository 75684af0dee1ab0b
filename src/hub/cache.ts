/**
 * The Hugging Face cache: where it lives (the same environment variables as
 * `huggingface_hub`) and how it is laid out on disk, so that files downloaded by
 * Python are reused here and the other way round.
 *
 * ```
 * <cache>/models--{org}--{name}/
 *   blobs/<etag>                       file contents, named by their ETag
 *   snapshots/<commit>/<file>          relative symlinks to ../../blobs/<etag>
 *   refs/<revision>                    the commit a branch or tag pointed to
 *   .no_exist/<commit>/<file>          empty markers for files the repo does not have
 * ```
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { homedir } from "node:os";
import * as path from "node:path";
import { userCacheHome } from "../user-dirs.js";

/** The environment variables read here, as a plain record (e.g. `process.env`). */
export type Env = Readonly<Record<string, string | undefined>>;

/** A full commit id, as `huggingface_hub` recognises one. */
export const COMMIT_HASH_RE = /^[0-9a-f]{40}$/;

const TRUE_VALUES = new Set(["1", "ON", "YES", "TRUE"]);

/** A non-empty environment variable, or undefined. */
function envValue(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** `os.path.expanduser` + `os.path.expandvars`, as `huggingface_hub` applies them to its paths. */
export function expandPath(p: string, env: Env = process.env, home: string = homedir()): string {
  let out = p;
  if (out === "~" || out.startsWith("~/") || (path.sep === "\\" && out.startsWith("~\\"))) {
    out = home + out.slice(1);
  }
  // $NAME and ${NAME}; unknown variables are left as they are (like Python).
  out = out.replace(/\$(\w+)|\$\{([^}]*)\}/g, (whole, a: string | undefined, b: string | undefined) => {
    const name = a ?? b ?? "";
    const v = env[name];
    return v === undefined ? whole : v;
  });
  return out;
}

/** `HF_HOME`, else `$XDG_CACHE_HOME/huggingface` (when absolute: see src/user-dirs.ts), else `~/.cache/huggingface`. */
export function defaultHfHome(env: Env = process.env, home: string = homedir()): string {
  const hfHome = envValue(env, "HF_HOME");
  if (hfHome !== undefined) return expandPath(hfHome, env, home);
  return expandPath(path.join(userCacheHome(env, home), "huggingface"), env, home);
}

/**
 * The Hub cache directory, resolved like `huggingface_hub.constants.HF_HUB_CACHE`:
 * `HF_HUB_CACHE`, else the legacy `HUGGINGFACE_HUB_CACHE`, else `<HF_HOME>/hub`
 * (with `HF_HOME` defaulting to `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`).
 * Empty variables count as unset.
 */
export function defaultCacheDir(env: Env = process.env, home: string = homedir()): string {
  const explicit = envValue(env, "HF_HUB_CACHE") ?? envValue(env, "HUGGINGFACE_HUB_CACHE");
  if (explicit !== undefined) return expandPath(explicit, env, home);
  return path.join(defaultHfHome(env, home), "hub");
}

/** Where `huggingface_hub` stores the login token: `HF_TOKEN_PATH`, else `<HF_HOME>/token`. */
export function defaultTokenPath(env: Env = process.env, home: string = homedir()): string {
  const explicit = envValue(env, "HF_TOKEN_PATH");
  if (explicit !== undefined) return expandPath(explicit, env, home);
  return path.join(defaultHfHome(env, home), "token");
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

/** `models--org--name`, the folder of a model repo in the cache. */
export function repoFolderName(repoId: string): string {
  return ["models", ...repoId.split("/")].join("--");
}

/**
 * `W/"abc"` or `"abc"` → `abc`. Mirrors `huggingface_hub`'s `_normalize_etag`
 * (`etag.lstrip("W/").strip('"')`), so both name blobs the same way.
 */
export function normalizeEtag(etag: string | null | undefined): string | undefined {
  if (etag === null || etag === undefined) return undefined;
  const out = etag.replace(/^[W/]+/, "").replace(/^"+|"+$/g, "");
  return out === "" ? undefined : out;
}

/** A repo-relative file name split into safe path components (no `..`, no absolute paths). */
export function safeRelativeParts(filename: string): string[] | undefined {
  if (filename === "" || filename.startsWith("/") || filename.includes("\\") || filename.includes("\0")) {
    return undefined;
  }
  const parts = filename.split("/");
  if (parts.some((p) => p === "" || p === "." || p === "..")) return undefined;
  return parts;
}

/** Paths inside one repo's folder in the cache. */
export class RepoCache {
  readonly storage: string;

  constructor(
    readonly cacheDir: string,
    readonly repoId: string,
  ) {
    this.storage = path.join(cacheDir, repoFolderName(repoId));
  }

  snapshotDir(commit: string): string {
    return path.join(this.storage, "snapshots", commit);
  }

  pointerPath(commit: string, filename: string): string {
    return path.join(this.snapshotDir(commit), ...filename.split("/"));
  }

  blobPath(etag: string): string {
    return path.join(this.storage, "blobs", etag);
  }

  noExistPath(commit: string, filename: string): string {
    return path.join(this.storage, ".no_exist", commit, ...filename.split("/"));
  }

  /** The commit `revision` resolves to in the cache: itself when it is a commit id, else `refs/<revision>`. */
  cachedCommit(revision: string): string | undefined {
    if (COMMIT_HASH_RE.test(revision)) return revision;
    try {
      const c = readFileSync(path.join(this.storage, "refs", ...revision.split("/")), "utf8").trim();
      return c === "" ? undefined : c;
    } catch {
      return undefined;
    }
  }

  /** True when the snapshot has `filename` (a symlink to an existing blob, or a plain file). */
  has(commit: string, filename: string): boolean {
    try {
      return statSync(this.pointerPath(commit, filename)).isFile();
    } catch {
      return false;
    }
  }

  /** True when the cache records that the repo has no `filename` at `commit`. */
  knownAbsent(commit: string, filename: string): boolean {
    return existsSync(this.noExistPath(commit, filename));
  }

  /** Records `refs/<revision>` → `commit` atomically (nothing for a commit id or an unchanged ref). */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const refPath = path.join(this.storage, "refs", ...revision.split("/"));
    try {
      if ((await fsp.readFile(refPath, "utf8")) === commit) return;
    } catch {
      // no ref yet
    }
    await fsp.mkdir(path.dirname(refPath), { recursive: true });
    const tmp = `${refPath}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`;
    await fsp.writeFile(tmp, commit);
    await fsp.rename(tmp, refPath);
  }

  /** Creates the empty `.no_exist/<commit>/<filename>` marker (best effort). */
  async markAbsent(commit: string, filename: string): Promise<void> {
    const p = this.noExistPath(commit, filename);
    try {
      await fsp.mkdir(path.dirname(p), { recursive: true });
      await (await fsp.open(p, "a")).close();
    } catch {
      // a read-only cache only costs a request next time
    }
  }

  /**
   * Points `snapshots/<commit>/<filename>` at `blobs/<etag>` with a relative symlink
   * (`../../blobs/<etag>` for a top-level file). Where symlinks are not allowed, copies the blob.
   */
  async link(commit: string, filename: string, etag: string): Promise<string> {
    const pointer = this.pointerPath(commit, filename);
    const blob = this.blobPath(etag);
    await fsp.mkdir(path.dirname(pointer), { recursive: true });
    await fsp.rm(pointer, { force: true });
    const target = path.relative(path.dirname(pointer), blob);
    try {
      await fsp.symlink(target, pointer);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EEXIST") {
        // created concurrently; fine when it points at the same blob
        if (path.resolve(path.dirname(pointer), await fsp.readlink(pointer)) === path.resolve(blob)) return pointer;
        throw e;
      }
      if (code === "EPERM" || code === "EACCES" || code === "ENOTSUP" || code === "EINVAL") {
        await fsp.copyFile(blob, pointer);
      } else {
        throw e;
      }
    }
    return pointer;
  }

  /** Writes `<cache>/CACHEDIR.TAG` so backup tools skip the cache (best effort, as huggingface_hub does). */
  async tagCacheDir(): Promise<void> {
    const tag = path.join(this.cacheDir, "CACHEDIR.TAG");
    if (existsSync(tag)) return;
    try {
      await fsp.mkdir(this.cacheDir, { recursive: true });
      await fsp.writeFile(
        tag,
        "Signature: 8a477f597d28d172789f06886806bc55\n" +
          "# This file is a cache directory tag (Hugging Face Hub cache).\n" +
          "# For information about cache directory tags, see:\n" +
          "#\thttps://bford.info/cachedir/\n",
        { flag: "wx" },
      );
    } catch {
      // ignore
    }
  }
}
