/**
 * Search filters: the named ones (path prefix, glob, dates, file type, image size) turned
 * into one LanceDB SQL filter, applied inside the query (prefilter). Every user value
 * enters the SQL as a quoted, escaped string literal or a checked number, so a named
 * filter cannot change the query's structure; `where` is the user's own SQL, checked
 * against the table (one line when it does not parse) and AND-ed with the rest.
 *
 * Dates are ISO 8601 (`2024-06-01`, `2024-06-01T12:30`, `…Z`, `…+02:00`); one without a
 * zone is read as UTC, as EXIF capture times without an offset are (store.ts).
 * `after` is inclusive, `before` exclusive.
 */
import { resolve } from "node:path";
import { SiglipError } from "../errors.js";
import { sqlString } from "./store.js";

/** Named filters (CLI flags and the server's `filter` object). */
export interface SearchFilters {
  /** Only paths under this folder (or starting with this absolute path). */
  pathPrefix?: string;
  /** Shell glob: without "/" on the file name, with "/" on the whole (absolute) path. `*`, `**`, `?`, `[…]`, `{a,b}`. */
  glob?: string;
  /** Modification time (ISO 8601): from `after` (inclusive) to `before` (exclusive). */
  after?: string;
  before?: string;
  /** EXIF capture time (DateTimeOriginal), same form. Files without one never pass. */
  takenAfter?: string;
  takenBefore?: string;
  /** File extensions, e.g. ["jpg", "png"] ("jpg" and "jpeg" are one type, as are "tif"/"tiff"). */
  types?: string[];
  /** Minimum pixel size (after EXIF orientation). */
  minWidth?: number;
  minHeight?: number;
  /** Raw LanceDB SQL filter over path, size (bytes), mtime_ms, ext, width, height, taken_ms. */
  where?: string;
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?)?(Z|[+-]\d{2}:\d{2})?$/;

/** An ISO 8601 date → ms since the epoch (no zone = UTC); a usage error naming `flag` otherwise. */
export function parseDate(s: string, flag: string): number {
  const m = typeof s === "string" ? ISO_DATE.exec(s.trim()) : null;
  const [y, mo, d] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  const dayOk = m !== null && mo >= 1 && mo <= 12 && d >= 1 && new Date(Date.UTC(y, mo - 1, d)).getUTCDate() === d;
  const ms = m && dayOk ? Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4] ?? "00"}:${m[5] ?? "00"}:${m[6] ?? "00"}${m[7] ?? ""}${m[8] ?? "Z"}`) : NaN;
  if (!Number.isFinite(ms)) {
    throw new SiglipError("usage", `${flag}: expected a date like 2024-06-01 or 2024-06-01T12:30:00+02:00, got ${JSON.stringify(s)}`);
  }
  return ms;
}

const TYPE_ALIASES: Record<string, string[]> = { jpg: ["jpg", "jpeg"], jpeg: ["jpg", "jpeg"], tif: ["tif", "tiff"], tiff: ["tif", "tiff"] };

/** "jpg,png" or ["jpg", ".PNG"] → the extensions to match. */
export function parseTypes(v: string | string[], flag = "--type"): string[] {
  const items = (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(",")).map((x) => x.trim().replace(/^\./, "").toLowerCase()).filter((x) => x !== "");
  if (items.length === 0) throw new SiglipError("usage", `${flag}: give file types such as jpg,png`);
  for (const t of items) if (!/^[a-z0-9]{1,10}$/.test(t)) throw new SiglipError("usage", `${flag}: ${JSON.stringify(t)} is not a file type (letters and digits, such as jpg or png)`);
  return [...new Set(items.flatMap((t) => TYPE_ALIASES[t] ?? [t]))];
}

/** A shell glob → an anchored regular expression (`*` within a path segment, `**` across them). */
export function globToRegex(glob: string): string {
  let re = "";
  let depth = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") {
      if (glob[i + 1] === "*") {
        i++;
        if (glob[i + 1] === "/") {
          i++;
          re += "(?:.*/)?";
        } else re += ".*";
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        let body = glob.slice(i + 1, end).replace(/\\/g, "\\\\");
        if (body.startsWith("!")) body = `^${body.slice(1)}`;
        re += `[${body}]`;
        i = end;
      }
    } else if (c === "{") {
      depth++;
      re += "(?:";
    } else if (c === "}" && depth > 0) {
      depth--;
      re += ")";
    } else if (c === "," && depth > 0) re += "|";
    else re += c.replace(/[.+^$()|\\\]{}]/g, "\\$&");
  }
  if (depth > 0) throw new SiglipError("usage", `--glob: unbalanced "{" in ${JSON.stringify(glob)}`);
  return `^${re}$`;
}

function checkSize(n: unknown, flag: string): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 1_000_000) throw new SiglipError("usage", `${flag} must be an integer from 1 to 1000000, got ${String(n)}`);
  return n;
}

/** The filters as one SQL predicate (undefined when there are none). */
export function filterSql(f: SearchFilters): string | undefined {
  const parts: string[] = [];
  if (f.pathPrefix !== undefined) {
    if (f.pathPrefix === "") throw new SiglipError("usage", "--path-prefix is empty");
    const abs = resolve(f.pathPrefix);
    parts.push(`starts_with(path, ${sqlString(abs)})`);
  }
  if (f.glob !== undefined) {
    if (f.glob === "") throw new SiglipError("usage", "--glob is empty");
    const onPath = f.glob.includes("/");
    const pattern = onPath && !f.glob.startsWith("/") && !f.glob.startsWith("**") ? resolve(f.glob) : f.glob;
    parts.push(`regexp_like(${onPath ? "path" : "regexp_replace(path, '^.*/', '')"}, ${sqlString(globToRegex(pattern))})`);
  }
  const range = (col: string, from: string | undefined, to: string | undefined, fromFlag: string, toFlag: string) => {
    const a = from !== undefined ? parseDate(from, fromFlag) : undefined;
    const b = to !== undefined ? parseDate(to, toFlag) : undefined;
    if (a !== undefined && b !== undefined && a >= b) throw new SiglipError("usage", `${fromFlag} ${from} is not before ${toFlag} ${to}: no file can match`);
    if (a !== undefined) parts.push(`${col} >= ${a}`);
    if (b !== undefined) parts.push(`${col} < ${b}`);
  };
  range("mtime_ms", f.after, f.before, "--after", "--before");
  range("taken_ms", f.takenAfter, f.takenBefore, "--taken-after", "--taken-before");
  if (f.types !== undefined) parts.push(`ext IN (${parseTypes(f.types).map(sqlString).join(", ")})`);
  if (f.minWidth !== undefined) parts.push(`width >= ${checkSize(f.minWidth, "--min-width")}`);
  if (f.minHeight !== undefined) parts.push(`height >= ${checkSize(f.minHeight, "--min-height")}`);
  if (f.where !== undefined) {
    if (typeof f.where !== "string" || f.where.trim() === "") throw new SiglipError("usage", "--where is empty: give a SQL filter such as \"width >= 1000 AND ext = 'png'\"");
    if (!balanced(f.where)) throw new SiglipError("usage", `invalid filter (--where): unbalanced parentheses or quotes in ${JSON.stringify(f.where)}`);
    parts.push(`(${f.where})`);
  }
  return parts.length === 0 ? undefined : parts.join(" AND ");
}

/** Parentheses balanced outside string literals, and every literal closed: `where` cannot close the group it is put in. */
function balanced(sql: string): boolean {
  let depth = 0;
  let quote: string | undefined;
  for (const c of sql) {
    if (quote) {
      if (c === quote) quote = undefined; // a doubled quote reopens at once: still balanced
    } else if (c === "'" || c === '"') quote = c;
    else if (c === "(") depth++;
    else if (c === ")" && --depth < 0) return false;
  }
  return depth === 0 && quote === undefined;
}
