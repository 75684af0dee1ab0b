/**
 * The hostile-input campaign: cases tried as a hostile or careless user would, each
 * classified by what a user sees. `tests/hostile.test.ts` asserts every case gets the
 * outcome it expects; `npm run hostile` prints the campaign table
 * (tools/hostile-campaign.ts).
 *
 * A case is a function that does one thing to the CLI, the library, the index or the
 * server and returns an {@link Outcome}. The helpers below turn what happened into an
 * outcome with the same rules everywhere:
 * - crash: killed by a signal (SIGSEGV, SIGABRT, V8 out of memory), exit code >= 128;
 * - hang: no answer within the case's time limit;
 * - garbage: exit 0 (or a "success" answer) where an error was due, a non-finite
 *   number (JSON `null` in a numeric place) on stdout, or a check of the result failed;
 * - data-lost: rows of an index lost or duplicated (the case checks);
 * - unclear-error: it failed, but not with one line naming the file or field, or with
 *   a stack trace, "internal error", the wrong exit code, or a multi-line dump;
 * - clean-error / correct: what we want.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { REPO } from "../harness/paths.js";

export const OUTCOMES = ["clean-error", "correct", "unclear-error", "crash", "hang", "garbage", "data-lost"] as const;
export type Outcome = (typeof OUTCOMES)[number];

export type Area = "checkpoint" | "config" | "image" | "text" | "cli" | "index" | "server" | "train" | "cache";

export interface CaseResult {
  outcome: Outcome;
  /** Why: the line printed, the exit code, what check failed. */
  detail: string;
}

export interface HostileCase {
  /** Unique, short, kebab-case: `ckpt-duplicate-tensor-name`. */
  id: string;
  area: Area;
  /** What a good implementation does: the campaign counts a case as passed when the outcome matches. */
  expect: "clean-error" | "correct";
  /** Per-case time limit for {@link runCli} and friends (default {@link DEFAULT_TIMEOUT_MS}). */
  timeoutMs?: number;
  run(): Promise<CaseResult>;
}

export const DEFAULT_TIMEOUT_MS = 20_000;
export const BIN = join(REPO, "dist", "cli", "main.js");

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

export interface CliOptions {
  /** Written to the child's stdin, then closed (default: stdin closed at once). */
  stdin?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  /** Run the child as this user and group (only when the tests run as root: e.g. to meet permission checks). */
  uid?: number;
  gid?: number;
  /**
   * Send this signal to the child once its stdout has produced `afterLines` lines (default 1):
   * an interrupt in the middle of a run, triggered by its progress rather than by a clock.
   */
  signalAfterOutput?: { signal: NodeJS.Signals; afterLines?: number };
  /** Most stdout kept, in characters (default 4 Mi; the rest is dropped). */
  stdoutCap?: number;
  /** Close our end of the child's stdout after its first line (the reader going away: `| head -1`). */
  closeStdoutAfterFirstLine?: boolean;
}

/** Run `node dist/cli/main.js ...args` with a hard time limit (the child is killed at the limit: a hang). */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return runProcess(process.execPath, [BIN, ...args], opts);
}

/** Run any command with a hard time limit; stdout/stderr are capped at 4 MiB each. */
export function runProcess(cmd: string, args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? REPO,
      env: { ...process.env, HF_HUB_OFFLINE: "1", NO_COLOR: "1", ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    const cap = 4 << 20;
    let stdout = "";
    let stderr = "";
    let signalled = false;
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (stdout.length < (opts.stdoutCap ?? cap)) stdout += d;
      const sig = opts.signalAfterOutput;
      if (sig && !signalled && stdout.split("\n").length - 1 >= (sig.afterLines ?? 1)) {
        signalled = true;
        child.kill(sig.signal);
      }
      if (opts.closeStdoutAfterFirstLine && stdout.includes("\n")) child.stdout.destroy();
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => { if (stderr.length < cap) stderr += d; });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.stdin.on("error", () => undefined); // a child that exits before reading stdin
    child.stdin.end(opts.stdin ?? "");
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal: timedOut ? null : signal, stdout, stderr, timedOut, ms: performance.now() - t0 });
    });
  });
}

/** Lines of stderr that are not progress-bar noise. */
function stderrLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.trim().length > 0);
}

/**
 * Every JSON value on stdout, line by line; a line that is not JSON is returned as a
 * string. A numeric place holding `null` is reported by {@link nonFinite}.
 */
export function jsonLines(stdout: string): unknown[] {
  return stdout.split("\n").filter((l) => l.length > 0).map((l) => {
    try {
      return JSON.parse(l) as unknown;
    } catch {
      return l;
    }
  });
}

/** A description of the first non-finite number (JSON null inside an array or under a numeric key) in `v`, or null. */
export function nonFinite(v: unknown, path = "$"): string | null {
  if (v === null) return path;
  if (typeof v === "number") return Number.isFinite(v) ? null : path;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const r = nonFinite(v[i], `${path}[${i}]`);
      if (r) return r;
    }
    return null;
  }
  if (typeof v === "object") {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      // Fields that are legitimately null in our outputs (none today) would be listed here.
      const r = nonFinite(x, `${path}.${k}`);
      if (r) return r;
    }
  }
  return null;
}

/** `expected`: an exit code >= 128 that the case asks for (130 after an interrupt) is not a crash. */
function crashOrHang(r: CliResult, expected?: number): CaseResult | null {
  if (r.timedOut) return { outcome: "hang", detail: `no exit within the time limit (${Math.round(r.ms)} ms)` };
  if (r.signal) return { outcome: "crash", detail: `killed by ${r.signal}` };
  if (r.code !== null && r.code >= 128 && r.code !== expected) return { outcome: "crash", detail: `exit ${r.code}` };
  if (/FATAL ERROR|Segmentation fault|Aborted|core dumped|heap out of memory/i.test(r.stderr)) {
    return { outcome: "crash", detail: stderrLines(r.stderr)[0] ?? "" };
  }
  return null;
}

export interface ErrorExpectation {
  /** Exit code due (default 2 for fatal problems; 1 when the run continues past bad inputs). */
  code?: number;
  /** Each must appear in the one error line (case-insensitive for strings). */
  mentions?: Array<string | RegExp>;
  /**
   * stdout that is allowed (e.g. good inputs still printed when one input fails). By default
   * stdout must be empty; with this set, stdout must hold finite JSON only.
   */
  allowStdout?: boolean;
  /** More than one error line is allowed (several bad inputs, each with its line). */
  lines?: number;
}

function mentionsAll(line: string, mentions: Array<string | RegExp>): string | null {
  for (const m of mentions) {
    const ok = typeof m === "string" ? line.toLowerCase().includes(m.toLowerCase()) : m.test(line);
    if (!ok) return String(m);
  }
  return null;
}

/** A fatal or per-input error is due: one clear line on stderr naming the subject, the right exit code, no stack. */
export function expectCleanError(r: CliResult, e: ErrorExpectation = {}): CaseResult {
  const bad = crashOrHang(r);
  if (bad) return bad;
  const out = jsonLines(r.stdout);
  const nf = out.map((v) => nonFinite(v)).find((x) => x !== null);
  if (nf) return { outcome: "garbage", detail: `non-finite number on stdout at ${nf}` };
  const want = e.code ?? 2;
  if (r.code === 0) return { outcome: "garbage", detail: `exit 0 where an error was due; stdout: ${r.stdout.slice(0, 200)}` };
  const lines = stderrLines(r.stderr);
  const first = lines[0] ?? "";
  if (r.code !== want) return { outcome: "unclear-error", detail: `exit ${r.code}, expected ${want}: ${first}` };
  if (!e.allowStdout && r.stdout.trim().length > 0) return { outcome: "garbage", detail: `stdout not empty on a fatal error: ${r.stdout.slice(0, 200)}` };
  if (/\n\s+at |internal error|Error: .*\n.*\.(js|ts):\d+/.test(r.stderr)) return { outcome: "unclear-error", detail: `stack trace or internal error: ${first}` };
  const maxLines = (e.lines ?? 1) + (want === 1 ? 1 : 0); // exit 1 adds the "N inputs failed" summary line
  if (lines.length === 0) return { outcome: "unclear-error", detail: "nothing on stderr" };
  if (lines.length > maxLines) return { outcome: "unclear-error", detail: `${lines.length} lines on stderr: ${first} | ${lines[1]}` };
  const missing = mentionsAll(lines.join("\n"), e.mentions ?? []);
  if (missing) return { outcome: "unclear-error", detail: `the message does not mention ${missing}: ${first}` };
  if (first.length > 400) return { outcome: "unclear-error", detail: `a ${first.length}-character line: ${first.slice(0, 120)}…` };
  return { outcome: "clean-error", detail: first };
}

/**
 * A correct result is due: exit `code` (default 0), finite JSON on stdout, and `check`
 * (returns a failure description, or null when the output is right).
 */
export function expectCorrect(r: CliResult, check: (lines: unknown[], r: CliResult) => string | null, code = 0): CaseResult {
  const bad = crashOrHang(r, code);
  if (bad) return bad;
  const out = jsonLines(r.stdout);
  const nf = out.map((v) => nonFinite(v)).find((x) => x !== null);
  if (nf) return { outcome: "garbage", detail: `non-finite number on stdout at ${nf}` };
  if (r.code !== code) return { outcome: "unclear-error", detail: `exit ${r.code}, expected ${code}: ${stderrLines(r.stderr)[0] ?? ""}` };
  const why = check(out, r);
  if (why) return { outcome: "garbage", detail: why };
  return { outcome: "correct", detail: `exit ${r.code}` };
}

/**
 * A library call that must throw one clear {@link SiglipError}-style message (any error with a
 * message naming the subject; a TypeError/RangeError from deep inside is unclear).
 */
export async function expectThrows(fn: () => unknown, mentions: Array<string | RegExp>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<CaseResult> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<CaseResult>((res) => {
    timer = setTimeout(() => res({ outcome: "hang", detail: `no answer within ${timeoutMs} ms` }), timeoutMs);
  });
  const attempt = (async (): Promise<CaseResult> => {
    try {
      const v = await fn();
      return { outcome: "garbage", detail: `no error; returned ${String(v).slice(0, 120)}` };
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const name = e instanceof Error ? e.name : typeof e;
      if (name !== "SiglipError") return { outcome: "unclear-error", detail: `${name}: ${msg}` };
      if (msg.includes("\n")) return { outcome: "unclear-error", detail: `multi-line message: ${msg.split("\n")[0]}` };
      const missing = mentionsAll(msg, mentions);
      if (missing) return { outcome: "unclear-error", detail: `the message does not mention ${missing}: ${msg}` };
      return { outcome: "clean-error", detail: msg };
    }
  })();
  const r = await Promise.race([attempt, hang]);
  clearTimeout(timer);
  return r;
}

/** Wrap a library call whose result `check` verifies (null = right). */
export async function expectReturns<T>(fn: () => Promise<T> | T, check: (v: T) => string | null): Promise<CaseResult> {
  try {
    const v = await fn();
    const why = check(v);
    return why ? { outcome: "garbage", detail: why } : { outcome: "correct", detail: "ok" };
  } catch (e) {
    return { outcome: "unclear-error", detail: `threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}` };
  }
}

/** Run cases with bounded concurrency, in order of definition; a case that throws counts as unclear. */
export async function runCases(cases: HostileCase[], concurrency = 2, onDone?: (c: HostileCase, r: CaseResult) => void): Promise<Map<string, CaseResult>> {
  const results = new Map<string, CaseResult>();
  let next = 0;
  async function lane(): Promise<void> {
    while (next < cases.length) {
      const c = cases[next++]!;
      let r: CaseResult;
      try {
        r = await c.run();
      } catch (e) {
        r = { outcome: "unclear-error", detail: `the case itself threw: ${e instanceof Error ? e.message : String(e)}` };
      }
      results.set(c.id, r);
      onDone?.(c, r);
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
  return results;
}

// ---------------------------------------------------------------------------------- HTTP
// For the server area: a request with a hard time limit, and the same outcome rules as above
// applied to a status code and a JSON error body `{"error": {"message", "type", "param", "code"}}`.

export interface HttpResult {
  /** HTTP status, or 0 when no response came (connection refused or reset, time limit). */
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
  timedOut: boolean;
  /** Why no response came (status 0). */
  error?: string;
  ms: number;
}

/** `fetch` with a hard time limit (`timeoutMs`, default {@link DEFAULT_TIMEOUT_MS}); never throws. */
export async function httpRequest(url: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<HttpResult> {
  const t0 = performance.now();
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, init.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  try {
    const r = await fetch(url, { ...init, signal: ac.signal });
    const text = await r.text();
    let json: unknown;
    try {
      json = JSON.parse(text) as unknown;
    } catch {
      json = undefined;
    }
    return { status: r.status, headers: r.headers, text, json, timedOut: false, ms: performance.now() - t0 };
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const error = timedOut ? "no response within the time limit" : `${(e as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ""}`;
    return { status: 0, headers: new Headers(), text: "", json: undefined, timedOut, error, ms: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
  }
}

export interface HttpErrorExpectation {
  /** The exact status due. */
  status: number;
  /** Each must appear in `error.message` (case-insensitive for strings). */
  mentions?: Array<string | RegExp>;
  /** When given, `error.param` must be exactly this (the field named). */
  param?: string | null;
}

/** One clear error is due: the exact status, a one-line JSON error that names the field, nothing non-finite. */
export function expectHttpError(r: HttpResult, e: HttpErrorExpectation): CaseResult {
  if (r.timedOut) return { outcome: "hang", detail: `no response within the time limit (${Math.round(r.ms)} ms)` };
  if (r.status === 0) return { outcome: "unclear-error", detail: `no response: ${r.error}` };
  if (r.status >= 200 && r.status < 300) return { outcome: "garbage", detail: `HTTP ${r.status} where an error was due: ${r.text.slice(0, 200)}` };
  const nf = r.json !== undefined ? nonFinite(stripNullable(r.json)) : null;
  if (nf) return { outcome: "garbage", detail: `non-finite number in the body at ${nf}` };
  const err = (r.json as { error?: { message?: unknown; param?: unknown } } | undefined)?.error;
  const msg = typeof err?.message === "string" ? err.message : null;
  if (msg === null) return { outcome: "unclear-error", detail: `HTTP ${r.status} without a JSON error message: ${r.text.slice(0, 200)}` };
  if (r.status !== e.status) return { outcome: "unclear-error", detail: `HTTP ${r.status}, expected ${e.status}: ${msg}` };
  if (msg.includes("\n") || /\n\s+at |internal error|\.(js|ts):\d+/.test(msg)) return { outcome: "unclear-error", detail: `stack trace, internal error or several lines: ${msg.split("\n")[0]}` };
  if (msg.length > 400) return { outcome: "unclear-error", detail: `a ${msg.length}-character message: ${msg.slice(0, 120)}…` };
  const missing = mentionsAll(msg, e.mentions ?? []);
  if (missing) return { outcome: "unclear-error", detail: `the message does not mention ${missing}: ${msg}` };
  if (e.param !== undefined && err?.param !== e.param) return { outcome: "unclear-error", detail: `param ${JSON.stringify(err?.param)}, expected ${JSON.stringify(e.param)}: ${msg}` };
  return { outcome: "clean-error", detail: `HTTP ${r.status}: ${msg}` };
}

/** A correct answer is due: the status (default 200), a body with no non-finite number, and `check` (null = right). */
export function expectHttpCorrect(r: HttpResult, check: (body: any, r: HttpResult) => string | null, status = 200): CaseResult {
  if (r.timedOut) return { outcome: "hang", detail: `no response within the time limit (${Math.round(r.ms)} ms)` };
  if (r.status === 0) return { outcome: "unclear-error", detail: `no response: ${r.error}` };
  if (r.status !== status) {
    const msg = (r.json as { error?: { message?: string } } | undefined)?.error?.message ?? r.text.slice(0, 200);
    return { outcome: "unclear-error", detail: `HTTP ${r.status}, expected ${status}: ${msg}` };
  }
  const nf = r.json !== undefined ? nonFinite(stripNullable(r.json)) : null;
  if (nf) return { outcome: "garbage", detail: `non-finite number in the body at ${nf}` };
  const why = check(r.json, r);
  return why ? { outcome: "garbage", detail: why } : { outcome: "correct", detail: `HTTP ${r.status}` };
}

/** The error shape's `param` and `code` are legitimately null; drop them before looking for non-finite numbers. */
function stripNullable(v: unknown): unknown {
  const err = (v as { error?: Record<string, unknown> } | null)?.error;
  if (err && typeof err === "object") {
    const { param: _p, code: _c, ...rest } = err;
    return { ...(v as Record<string, unknown>), error: rest };
  }
  return v;
}
