/**
 * The Hugging Face cache on disk (refs, snapshots, blobs), laid out as `huggingface_hub`
 * lays it out, so that files downloaded by Python are reused here and the other way round.
 * Where the cache is: src/user-dirs.ts (defaultCacheDir).
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
import * as path from "node:path";

/** A full commit id, as `huggingface_hub` recognises one. */
export const COMMIT_HASH_RE = /^[0-9a-f]{40}$/;

// Where the cache is (defined in src/user-dirs.ts), re-exported for callers that know it from here.
export { defaultCacheDir, defaultHfHome } from "../user-dirs.js";

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
