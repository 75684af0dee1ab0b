/**
 * Command-line parsing rules shared by every command: strict, bounded number options; input
 * lists read from a file or stdin; usage errors as one short line with exit code 2 (never the
 * whole help); an option given twice with different values is an error, not "last one wins".
 */
import { readFileSync, statSync } from "node:fs";
import { CommanderError, type Command } from "commander";
import { SiglipError } from "../errors.js";
import { PROG } from "./context.js";

/** Decimal integers, optionally with an exponent (`1000`, `1e3`); no signs, hex, spaces or fractions. */
const INT_RE = /^\d+(?:[eE]\+?\d+)?$/;
/** Decimal numbers (`1e-4`, `0.9`, `.5`); no hex, spaces, `Infinity` or `NaN`. */
const NUM_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Bounds of an integer option: `max` may be computed when the option is parsed. The one integer
 * parser of the CLI ({@link intOption}) says a failure in one of two ways:
 *
 * - default: `--threads must be a positive integer, got "0"` (or "a non-negative integer"), and
 *   over the maximum `--threads 99 is too large: at most 32 (4 per CPU, at least 8)`;
 * - `range: true` (options with a fixed, documented range: serve's ports and limits, search's
 *   --k): every failure as `--k must be an integer from 1 to 10000, got "0"`.
 */
export interface IntBounds {
  min: number;
  max?: number | (() => number);
  /** Why the maximum is what it is (appended to the error). */
  maxWhy?: string | (() => string);
  /** Say every failure as the range `from min to max` (needs a numeric `max`). */
  range?: boolean;
}

/** A commander argument parser for an integer option `name` within `bounds`. */
export function intOption(name: string, bounds: IntBounds) {
  return (v: string): number => parseIntOption(name, v, bounds);
}

/**
 * Parse one integer option value: decimal digits, optionally with an exponent (`1000`, `1e3`);
 * no signs, hex, spaces or fractions. Errors are SiglipErrors with code "usage" (see {@link IntBounds}).
 */
export function parseIntOption(name: string, v: string, bounds: IntBounds): number {
  const n = INT_RE.test(v) ? Number(v) : NaN;
  const max = typeof bounds.max === "function" ? bounds.max() : bounds.max;
  if (bounds.range) {
    if (!Number.isSafeInteger(n) || n < bounds.min || (max !== undefined && n > max)) {
      throw new SiglipError("usage", `${name} must be an integer from ${bounds.min} to ${max ?? Number.MAX_SAFE_INTEGER}, got ${quote(v)}`);
    }
    return n;
  }
  const what = bounds.min > 0 ? "a positive integer" : "a non-negative integer";
  if (!Number.isSafeInteger(n)) throw new SiglipError("usage", `${name} must be ${what}, got ${quote(v)}`);
  if (n < bounds.min) throw new SiglipError("usage", `${name} must be ${what}, got ${quote(v)}`);
  if (max !== undefined && n > max) {
    const why = typeof bounds.maxWhy === "function" ? bounds.maxWhy() : bounds.maxWhy;
    throw new SiglipError("usage", `${name} ${v} is too large: at most ${max}${why ? ` (${why})` : ""}`);
  }
  return n;
}

/** Bounds of a real-valued option. */
export interface NumBounds {
  /** Smallest allowed value, and whether it is excluded. */
  min?: number;
  minExclusive?: boolean;
  max?: number;
  maxExclusive?: boolean;
  /** How to say the range in an error ("a positive number", "in [0, 1)"). */
  describe: string;
}

/** A commander argument parser for a finite real option. */
export function numOption(name: string, b: NumBounds) {
  return (v: string): number => {
    const n = NUM_RE.test(v.trim()) ? Number(v) : NaN;
    const bad =
      !Number.isFinite(n) ||
      (b.min !== undefined && (b.minExclusive ? n <= b.min : n < b.min)) ||
      (b.max !== undefined && (b.maxExclusive ? n >= b.max : n > b.max));
    if (bad) throw new SiglipError("usage", `${name} must be ${b.describe}, got ${quote(v)}`);
    return n;
  };
}

/** The bound of --threads and --workers, as the errors say it (src/load-options.ts maxThreads, maxWorkers). */
export const CPU_BOUND = "4 per CPU, at least 8";

/** A value shown in a message: JSON-quoted and cut to 60 characters. */
export function quote(v: string): string {
  const q = JSON.stringify(v);
  return q.length > 60 ? `${q.slice(0, 57)}…"` : q;
}

/** Collect a repeatable single-value option into an array. */
export function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

/** Options that may be given several times (their values accumulate). */
const REPEATABLE = new Set(["image-list", "text-list"]);

/**
 * Apply the usage rules to `program` and every subcommand (call after all commands are
 * registered): commander's own errors are thrown as {@link UsageError} instead of printing the
 * help and exiting 1, and a single-valued option given twice with different values is refused.
 */
export function applyUsagePolicy(program: Command): void {
  const visit = (cmd: Command, path: string): void => {
    cmd.showHelpAfterError(false);
    cmd.configureOutput({ outputError: () => undefined, writeErr: () => undefined }); // main() prints one line instead (no help dump)
    cmd.exitOverride((err: CommanderError) => {
      throw err.exitCode === 0 ? err : new UsageError(err, path);
    });
    const seen = new Map<string, string>();
    for (const o of cmd.options) {
      if (o.variadic || o.parseArg === collect || REPEATABLE.has(o.name()) || !(o.required || o.optional)) continue;
      cmd.on(`option:${o.name()}`, (value: unknown) => {
        const v = String(value);
        const before = seen.get(o.name());
        if (before !== undefined && before !== v) {
          throw new SiglipError("usage", `${o.long ?? o.name()} given twice (${quote(before)} and ${quote(v)}); give it once (see ${path} --help)`);
        }
        seen.set(o.name(), v);
      });
    }
    for (const sub of cmd.commands) visit(sub, `${path} ${sub.name()}`);
  };
  visit(program, PROG);
}

/** A usage error found by commander (unknown option, bad choice, missing value or argument). */
export class UsageError extends SiglipError {
  constructor(err: CommanderError, commandPath: string) {
    const problem = err.message.replace(/^error:\s*/i, "").replace(/\s+/g, " ").trim();
    const text = err.code === "commander.help" ? `no command given (see ${commandPath} --help)` : `${problem} (see ${commandPath} --help)`;
    super("usage", text);
  }
}

/** The answer to a commander exit that is not an error (--help, --version): exit code 0. */
export function isCleanExit(e: unknown): boolean {
  return e instanceof CommanderError && e.exitCode === 0;
}

/** One entry of an input list: its value, or why that line cannot be used. */
export interface ListEntry {
  value?: string;
  error?: SiglipError;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Read an input list: `-` is stdin, anything else a file. Image lists hold one path per line, or
 * NUL-separated paths (`find -print0`); blank lines are skipped. Text lists hold one text per line;
 * a blank line is the empty text, and a final newline ends the last line. CRLF line ends and a
 * leading byte-order mark are accepted. A line that is not valid UTF-8 becomes an entry with an
 * error (reported as a failed input); an unreadable list is a fatal SiglipError.
 */
export function readInputList(path: string, kind: "image" | "text", flag: string): ListEntry[] {
  const where = path === "-" ? `${flag} - (stdin)` : `${flag} ${path}`;
  let bytes: Buffer;
  try {
    if (path !== "-" && statSync(path).isDirectory()) throw new SiglipError("usage", `${where}: is a directory, not a list file`, { subject: path });
    bytes = readFileSync(path === "-" ? 0 : path);
  } catch (e) {
    if (e instanceof SiglipError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EAGAIN" ? "stdin is not readable" : (e as Error).message;
    throw new SiglipError("usage", `${where}: cannot read the list (${why})`, { subject: path });
  }
  let start = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const sep = kind === "image" && bytes.includes(0) ? 0 : 0x0a;
  const entries: ListEntry[] = [];
  let line = 0;
  while (start <= bytes.length) {
    let end = bytes.indexOf(sep, start);
    const last = end < 0;
    if (last) end = bytes.length;
    line++;
    let piece = bytes.subarray(start, end);
    start = end + 1;
    if (last && piece.length === 0 && line > 1) break; // the newline that ends the last line
    if (sep === 0x0a && piece.length > 0 && piece[piece.length - 1] === 0x0d) piece = piece.subarray(0, piece.length - 1);
    let value: string;
    try {
      value = utf8.decode(piece);
    } catch {
      entries.push({ error: new SiglipError("input", `${where}:${line}: not valid UTF-8${kind === "image" ? " (Node.js cannot open such a path)" : ""}`, { subject: `${path}:${line}` }) });
      continue;
    }
    if (kind === "image" && value.trim() === "") continue;
    if (kind === "text" && last && line === 1 && value === "") break; // an empty list
    entries.push({ value });
  }
  return entries;
}
