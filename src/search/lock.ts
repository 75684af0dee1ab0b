/**
 * One writer per table: `siglip2 index` holds `<db>/<table>.lock` (the writer's pid,
 * host and a random nonce) while it runs (for an object-store `--db`, a lock file on this
 * machine: {@link lockPath}). A lock held by a live process is a one-line
 * error; a lock left by a process that no longer exists (kill -9, power loss) is taken
 * over, and exactly one of several processes that try at once wins.
 *
 * Every step is an atomic file-system operation:
 * - creating: the lock is written in full to a private file, then hard-linked to the
 *   lock name (`link` fails when the name exists), so no one ever reads a half-written
 *   lock. Where hard links are not supported, an exclusive create (`O_EXCL`) is used
 *   and a lock file that cannot be parsed counts as stale only once it is 2 s old;
 * - taking over a stale lock: the contender first creates, exclusively, a guard named
 *   after that lock file's identity (a hash of its inode, mtime, size and content),
 *   then checks that the lock is still that same file and replaces it with its own by
 *   `rename` (atomic; the lock name never disappears). Two contenders cannot both hold
 *   the guard, and one that gets the guard after the lock was replaced sees a different
 *   identity and backs off. A guard left by a contender that died is itself a stale
 *   lock and is taken over the same way (one level deeper).
 */
import { createHash, randomBytes } from "node:crypto";
import { closeSync, fstatSync, linkSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { SiglipError } from "../errors.js";
import { userCacheHome } from "../user-dirs.js";
import { checkDbFolder, checkTableName, dbUriScheme, fsReason, shownPath } from "./paths.js";

interface Holder {
  pid?: unknown;
  host?: unknown;
  nonce?: unknown;
}

interface LockState {
  /** Identity of this lock file (inode, mtime, size, content). */
  id: string;
  holder?: Holder;
  ageMs: number;
}

/** A lock file younger than this whose content cannot be parsed may still be being written. */
const UNPARSED_GRACE_MS = 2_000;
/** How long to wait for another process that is in the middle of a takeover. */
const WAIT_MS = 5_000;
const MAX_DEPTH = 3; // keeps guard names (table name up to 128 characters) under 255 bytes

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function validPid(pid: unknown): pid is number {
  return typeof pid === "number" && Number.isInteger(pid) && pid > 0;
}

/** The live holder of a lock (pid, and host when another machine's), or undefined when the lock is stale. */
function liveHolder(h: Holder | undefined): { pid: number; host?: string } | undefined {
  if (!h || !validPid(h.pid)) return undefined;
  const sameHost = h.host === undefined || h.host === hostname();
  if (!sameHost) return { pid: h.pid, host: String(h.host) }; // cannot check another machine's processes
  if (h.pid === process.pid) return undefined; // a lock of an earlier process that had our pid
  return alive(h.pid) ? { pid: h.pid } : undefined;
}

function readState(path: string): LockState | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new SiglipError("index", `cannot read the lock file ${shownPath(path)}: ${fsReason(e)}`, { subject: path });
  }
  try {
    const st = fstatSync(fd);
    const content = readFileSync(fd, "utf8");
    const id = createHash("sha256").update(`${st.dev}:${st.ino}:${st.mtimeMs}:${st.size}\0${content}`).digest("hex").slice(0, 20);
    let holder: Holder | undefined;
    try {
      const v = JSON.parse(content) as unknown;
      if (v && typeof v === "object") holder = v as Holder;
    } catch {
      /* half-written or damaged */
    }
    const s: LockState = { id, ageMs: Date.now() - st.mtimeMs };
    if (holder) s.holder = holder;
    return s;
  } finally {
    closeSync(fd);
  }
}

/**
 * The identity of the lock file at `path` (a hash of its inode, mtime, size and
 * content; what a takeover guard is named after), or undefined when there is none.
 */
export function lockFileIdentity(path: string): string | undefined {
  return readState(path)?.id;
}

function tmpName(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
}

function writeError(path: string, e: unknown): SiglipError {
  return new SiglipError("index", `cannot create the lock file ${shownPath(path)}: ${fsReason(e)} (indexing needs a writable DB folder)`, { subject: path });
}

/** Create `path` holding `content` if it does not exist; false when it exists. Readers never see it half-written. */
function createExclusive(path: string, content: string): boolean {
  const tmp = tmpName(path);
  try {
    writeFileSync(tmp, content, { flag: "wx" });
  } catch (e) {
    throw writeError(path, e);
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS" && code !== "EXDEV" && code !== "EMLINK") throw writeError(path, e);
  } finally {
    rmSync(tmp, { force: true });
  }
  // No hard links here: an exclusive create (readers may briefly see it empty; see UNPARSED_GRACE_MS).
  try {
    writeFileSync(path, content, { flag: "wx" });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw writeError(path, e);
  }
}

/** Replace `path` by a file holding `content`, atomically (the name never disappears). */
function replaceWith(path: string, content: string): void {
  const tmp = tmpName(path);
  try {
    writeFileSync(tmp, content, { flag: "wx" });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw writeError(path, e);
  }
}

class Busy extends Error {}

/**
 * Make `path` ours (holding `content`). Throws the holder's error when a live process
 * holds it (at depth 0), or Busy when another process is taking it over right now.
 */
function own(path: string, content: string, depth: number, lockedError: (h: { pid: number; host?: string }) => SiglipError): void {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (createExclusive(path, content)) return;
    const s = readState(path);
    if (!s) continue; // released in between: try again
    const live = liveHolder(s.holder);
    if (live || (!s.holder && s.ageMs < UNPARSED_GRACE_MS)) {
      if (depth === 0 && live) throw lockedError(live);
      // A guard held by a live contender, or a lock still being written: wait for it.
      if (depth > 0) throw new Busy();
      if (Date.now() > deadline) throw new SiglipError("index", `cannot take the lock ${shownPath(path)}: it stays unreadable; delete it if no siglip2 index is running`, { subject: path });
      sleep(10);
      continue;
    }
    // Stale: replace exactly this lock file, under a guard that names it.
    if (depth >= MAX_DEPTH) throw new SiglipError("index", `cannot take the lock ${shownPath(path)}: too many interrupted takeovers; delete ${shownPath(path)}* if no siglip2 index is running`, { subject: path });
    const guard = `${path}.takeover-${s.id}`;
    try {
      own(guard, content, depth + 1, lockedError);
    } catch (e) {
      if (!(e instanceof Busy)) throw e;
      if (Date.now() > deadline) throw new SiglipError("index", `cannot take the lock ${shownPath(path)}: another process keeps taking it over`, { subject: path });
      sleep(5);
      continue; // someone else is taking it over: look again
    }
    try {
      if (readState(path)?.id === s.id) {
        replaceWith(path, content);
        return;
      }
    } finally {
      rmSync(guard, { force: true });
    }
  }
}

/**
 * The lock file of `table`: `<db>/<table>.lock` in a DB folder. An object store has no
 * atomic link or rename to build this lock on, so for a `--db` URI the lock lives on this
 * machine, under `<user cache>/siglip2/locks/` (named by a hash of the URI and table): it keeps
 * two local runs on this machine apart, not runs on two machines (use `index --queue` there).
 */
export function lockPath(dbPath: string, table: string): string {
  if (dbUriScheme(dbPath) === undefined) return join(dbPath, `${table}.lock`);
  const dir = join(userCacheHome(), "siglip2", "locks");
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new SiglipError("index", `cannot create the lock folder ${shownPath(dir)} for ${shownPath(dbPath)}: ${fsReason(e)}`, { subject: dir });
  }
  return join(dir, `${createHash("sha256").update(JSON.stringify([dbPath.replace(/\/+$/, ""), table])).digest("hex").slice(0, 32)}.lock`);
}

/** A lock held on one table of a DB (see the module comment). */
export class TableLock {
  private constructor(
    /** The lock file. */
    readonly path: string,
    private readonly content: string,
  ) {}

  /**
   * Take the lock for `table` in `dbPath` (creating the DB folder when missing), or
   * throw a one-line SiglipError naming the live holder.
   */
  static acquire(dbPath: string, table: string): TableLock {
    checkTableName(table);
    checkDbFolder(dbPath, { create: true });
    const path = lockPath(dbPath, table);
    const content = JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString(), nonce: randomBytes(8).toString("hex") });
    own(path, content, 0, (h) => new SiglipError(
      "index",
      `another siglip2 index (pid ${h.pid}${h.host !== undefined ? ` on ${h.host}` : ""}) is updating table "${table}" in DB ${shownPath(dbPath)}; wait for it, or delete ${shownPath(path)} if that process is gone`,
      { subject: path },
    ));
    TableLock.removeLeftovers(path);
    return new TableLock(path, content);
  }

  /**
   * Guards and temporary files of earlier takeovers. Once we hold the lock they name
   * lock files that no longer exist, so removing them is safe.
   */
  private static removeLeftovers(path: string): void {
    const prefix = basename(path);
    let names: string[] = [];
    try {
      names = readdirSync(dirname(path));
    } catch {
      return;
    }
    for (const n of names) {
      if (!n.startsWith(`${prefix}.`)) continue;
      // A temporary file is another process's until that process is gone.
      const tmp = /\.tmp-(\d+)-[0-9a-f]+$/.exec(n);
      if (tmp ? Number(tmp[1]) !== process.pid && !alive(Number(tmp[1])) : n.startsWith(`${prefix}.takeover-`)) rmSync(join(dirname(path), n), { force: true });
    }
  }

  /** Release the lock (only if it is still ours). */
  release(): void {
    try {
      if (readFileSync(this.path, "utf8") === this.content) rmSync(this.path, { force: true });
    } catch {
      /* already gone */
    }
  }
}
