/**
 * Names and paths of the index, checked before anything touches the disk, and the
 * one-line wording of file-system problems.
 */
import { mkdirSync, statSync } from "node:fs";
import { SiglipError } from "../errors.js";

/** `\n`, `\r`, `\t`, else `\uXXXX`: a control character as JSON writes it. */
function escapeControl(c: string): string {
  const esc: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
  return esc[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/** A message with its control characters escaped as in JSON (`\n`), so that it prints as one line. */
export function oneLine(msg: string): string {
  return msg.replace(/[\u0000-\u001f\u007f]/g, escapeControl);
}

/**
 * A path as it appears in a one-line message or a table cell: control characters (a
 * newline in a file name) are escaped as in JSON, so that one message stays one line.
 * Other characters (quotes, backslashes, any script) are shown as they are.
 */
export function shownPath(p: string): string {
  return oneLine(p);
}

/** The problem an `fs` error code stands for, in a few words (no syscall, no repeated path). */
export function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EROFS":
      return "read-only file system";
    case "ENOENT":
      return "no such file or folder";
    case "ENOTDIR":
      return "a part of the path is a file, not a folder";
    case "EEXIST":
      return "already exists";
    case "ELOOP":
      return "symbolic link loop";
    case "ENAMETOOLONG":
      return "name too long";
    case "ENOSPC":
      return "no space left on the device";
    case "EDQUOT":
      return "disk quota exceeded";
    case "EFBIG":
      return "file too large";
    case "EIO":
      return "I/O error";
    case "EISDIR":
      return "is a folder";
    default: {
      const m = e instanceof Error ? e.message : String(e);
      // "ECODE: description, syscall 'path'" → "description"
      return m.replace(/^E[A-Z]+: /, "").replace(/, \w+ '.*'$/, "");
    }
  }
}

/** Throw a usage error unless `name` is a valid table name (it becomes a folder and a lock file name). */
export function checkTableName(name: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name) || name.length > 128) {
    throw new SiglipError("usage", `table name ${JSON.stringify(name)}: use up to 128 letters, digits, "_", "-" and ".", starting with a letter, a digit or "_"`);
  }
  return name;
}

/** Object-store URI schemes that `--db` hands to LanceDB (its object stores: S3 and S3-compatible, S3 with a DynamoDB commit table, Google Cloud Storage, Azure; `file-object-store` is a local folder through the same object-store layer). */
export const DB_URI_SCHEMES = ["s3", "s3+ddb", "gs", "az", "abfss", "file-object-store"] as const;

/** The scheme of a `--db` written as a URI (`s3://bucket/prefix`), lower-cased; undefined for a folder path. */
export function dbUriScheme(db: string): string | undefined {
  return /^([a-z][a-z0-9+.-]*):\/\//i.exec(db)?.[1]!.toLowerCase();
}

/**
 * A `--db` URI that this project can use, or a one-line usage error: one of
 * {@link DB_URI_SCHEMES} with something after `://`. `file://`, `memory://` (nothing kept
 * after the process) and `db://` (LanceDB Cloud, which needs an API key) are refused.
 */
export function checkDbUri(db: string): void {
  const scheme = dbUriScheme(db)!;
  const rest = db.slice(scheme.length + 3);
  const supported = DB_URI_SCHEMES.map((s) => `${s}://`).join(", ");
  if (scheme === "file") throw new SiglipError("usage", `--db ${shownPath(db)}: pass the folder as a plain path (without file://)`);
  if (scheme === "memory") throw new SiglipError("usage", `--db ${shownPath(db)}: an in-memory DB keeps nothing after this process; use a folder or an object store (${supported})`);
  if (scheme === "db") throw new SiglipError("usage", `--db ${shownPath(db)}: LanceDB Cloud (db://) is not supported; use a folder or an object store (${supported})`);
  if (!(DB_URI_SCHEMES as readonly string[]).includes(scheme)) throw new SiglipError("usage", `--db ${shownPath(db)}: unknown URI scheme "${scheme}"; use a folder or an object store (${supported})`);
  if (rest.replace(/\/+$/, "") === "") throw new SiglipError("usage", `--db ${shownPath(db)}: the URI names no bucket or folder`);
}

/**
 * Check the DB folder before use: not empty, not a file. With `create`, make it (and
 * its parents) when missing. Returns false when it does not exist (and was not created).
 * An object-store URI ({@link dbUriScheme}) is checked by {@link checkDbUri} and counts as
 * existing: LanceDB itself says whether it holds the table (and whether it can be reached).
 */
export function checkDbFolder(dbPath: string, options: { create?: boolean } = {}): boolean {
  if (dbPath.trim() === "") throw new SiglipError("usage", "--db: the database folder is an empty path");
  if (dbUriScheme(dbPath) !== undefined) {
    checkDbUri(dbPath);
    return true;
  }
  let st;
  try {
    st = statSync(dbPath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") throw new SiglipError("index", `cannot use the DB folder ${shownPath(dbPath)}: ${fsReason(e)}`, { subject: dbPath });
    if (!options.create) return false;
    try {
      mkdirSync(dbPath, { recursive: true });
    } catch (e2) {
      throw new SiglipError("index", `cannot create the DB folder ${shownPath(dbPath)}: ${fsReason(e2)}`, { subject: dbPath });
    }
    return true;
  }
  if (!st.isDirectory()) {
    throw new SiglipError("index", `the DB folder ${shownPath(dbPath)} is a file, not a folder; pass a folder to --db (it is created when missing)`, { subject: dbPath });
  }
  return true;
}
