/**
 * Finding the images (and videos) to index: folders are walked recursively, files are chosen by
 * extension, hidden entries (names starting with ".") and the database folder are
 * skipped. Symbolic links to files are followed; links to folders are not (no cycles).
 */
import { opendir, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";
import { SiglipError } from "../errors.js";
import { sha256File as sha256FileRaw } from "../weights/hash.js";
import { fsReason, shownPath } from "./paths.js";
import { VIDEO_EXTENSIONS } from "./video.js";

/** Extensions indexed when walking folders (case-insensitive). Files named explicitly are always indexed. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".avif", ".tif", ".tiff"]);

export interface WalkedFile {
  /** Absolute path. */
  path: string;
  size: number;
  mtimeMs: number;
}

export interface WalkOptions {
  /** Also walk the video files ({@link VIDEO_EXTENSIONS}; default false). */
  videos?: boolean;
  /** Folders never entered (absolute paths), e.g. the database. */
  exclude?: string[];
  /** Called for each folder or file that cannot be read; the walk goes on. */
  onError?: (e: SiglipError) => void;
  /**
   * Called with each folder or file that exists but could not be read (permission
   * denied, I/O error, a symbolic link loop), not with entries that vanished: what the
   * index holds under it must be kept, since the walk could not see it.
   */
  onSkip?: (path: string) => void;
}

/** True when `e` says the entry does not exist (any more). */
function vanished(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
}

function problem(path: string, e: unknown, link = false): SiglipError {
  const why = vanished(e) ? (link ? "broken symbolic link (its target does not exist)" : "vanished while indexing") : fsReason(e);
  return new SiglipError("image", `cannot read ${shownPath(path)}: ${why}`, { subject: path, cause: e });
}

/** True when `p` is `root` or inside it. */
export function isUnder(p: string, root: string): boolean {
  if (p === root) return true;
  return p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * The image files under `roots` (folders or files), absolute, sorted, each once.
 * A root that does not exist is a fatal error (so that its rows are not deleted
 * by mistake when a disk is not mounted).
 */
export async function walkImages(roots: string[], options: WalkOptions = {}): Promise<WalkedFile[]> {
  const exclude = (options.exclude ?? []).map((p) => resolve(p));
  const found = new Map<string, WalkedFile>();
  const report = (e: SiglipError) => options.onError?.(e);
  const skipped = (p: string, e: unknown) => {
    if (!vanished(e)) options.onSkip?.(p);
  };

  async function visitDir(dir: string): Promise<void> {
    if (exclude.some((x) => isUnder(dir, x))) return;
    let handle;
    try {
      handle = await opendir(dir);
    } catch (e) {
      report(problem(dir, e));
      skipped(dir, e);
      return;
    }
    const subdirs: string[] = [];
    const entries = [];
    try {
      for await (const ent of handle) entries.push(ent);
    } catch (e) {
      // A folder that fails while being listed (I/O error, removed): keep what it holds.
      report(problem(dir, e));
      skipped(dir, e);
      return;
    }
    for (const ent of entries) {
      if (ent.name.startsWith(".")) continue;
      const p = join(dir, ent.name);
      if (ent.isDirectory()) {
        subdirs.push(p);
      } else if (ent.isFile() || ent.isSymbolicLink()) {
        const ext = extname(ent.name).toLowerCase();
        if (!IMAGE_EXTENSIONS.has(ext) && !(options.videos && VIDEO_EXTENSIONS.has(ext))) continue;
        try {
          const st = await stat(p);
          if (st.isFile()) found.set(p, { path: p, size: st.size, mtimeMs: st.mtimeMs });
        } catch (e) {
          report(problem(p, e, ent.isSymbolicLink()));
          skipped(p, e);
        }
      }
    }
    for (const d of subdirs.sort()) await visitDir(d);
  }

  for (const r of roots) {
    const root = resolve(r);
    let st;
    try {
      st = await stat(root);
    } catch (e) {
      throw new SiglipError("usage", `${shownPath(r)}: ${fsReason(e)}`, { subject: r });
    }
    if (st.isDirectory()) await visitDir(root);
    else if (st.isFile()) found.set(root, { path: root, size: st.size, mtimeMs: st.mtimeMs });
    else throw new SiglipError("usage", `${shownPath(r)}: not a file or folder`, { subject: r });
  }
  return [...found.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Hex SHA-256 of a file's bytes, streamed (constant memory). */
export function sha256File(path: string): Promise<string> {
  return sha256FileRaw(path).catch((e: unknown) => {
    throw problem(path, e);
  });
}
