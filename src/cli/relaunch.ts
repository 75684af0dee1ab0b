/**
 * Command lines of any length.
 *
 * onnxruntime scans `/proc/self/cmdline` with a recursive regex at the first session and
 * overflows the stack on long command lines (src/graph/cmdline-guard.ts): `classify` over 700
 * photos, 10,000 `--text` values or one 35 KB text used to die with SIGSEGV. When this process's
 * command line is longer than what is safe, the CLI runs itself again with a short command line
 * (`node [node options] main.js`) and hands the real argv to the child through a pipe on fd 3.
 *
 * The child inherits stdin, stdout and stderr. It runs in its own session (setsid), so that a
 * signal reaches it exactly once: the parent forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT and
 * SIGWINCH, stops it on SIGTSTP and continues it on SIGCONT, and exits with the child's exit
 * code, or dies of the child's signal. A child whose parent is killed (fd 3 closes) stops as
 * on SIGTERM.
 */
import { spawn } from "node:child_process";
import { readSync } from "node:fs";
import { Socket } from "node:net";
import { constants } from "node:os";
import { commandLineBytes, safeCommandLineBytes, STACK_BYTES_PER_CMDLINE_BYTE } from "../graph/cmdline-guard.js";
import { SiglipError } from "../errors.js";

/** Environment variable naming the fd the child reads its argv from (removed once read). */
export const ARGV_FD_ENV = "SIGLIP2_ARGV_FD";
const FD = 3;

/** Signals the parent passes on to the child as they are. */
const FORWARDED: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGWINCH"];
/** Signals whose default action dumps core: the parent exits with 128 + n instead of raising them. */
const CORE_SIGNALS = new Set(["SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS"]);

/**
 * The command-line length above which the CLI re-launches itself. Re-launching costs one Node
 * start, so an unknown or unlimited stack counts as the usual 8 MiB.
 */
export function relaunchThreshold(): number {
  return Math.min(safeCommandLineBytes(), Math.floor((8 << 20) / STACK_BYTES_PER_CMDLINE_BYTE));
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * In a re-launched child: replace `process.argv` with the parent's (read from fd 3) and watch
 * fd 3 for the parent's death. Returns false in an ordinary process.
 */
export function adoptParentArgv(): boolean {
  if (process.env[ARGV_FD_ENV] !== String(FD)) return false;
  delete process.env[ARGV_FD_ENV]; // not for grandchildren
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(1 << 16);
  let complete = false;
  while (!complete) {
    let n: number;
    try {
      n = readSync(FD, buf, 0, buf.length, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EAGAIN") {
        sleepMs(2);
        continue;
      }
      throw new SiglipError("internal", `cannot read the command line from the parent process (${(e as Error).message})`);
    }
    if (n === 0) break;
    const chunk = Buffer.from(buf.subarray(0, n));
    const nl = chunk.indexOf(0x0a);
    chunks.push(nl >= 0 ? chunk.subarray(0, nl) : chunk);
    complete = nl >= 0;
  }
  let argv: unknown;
  try {
    argv = complete ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : null;
  } catch {
    argv = null;
  }
  if (!Array.isArray(argv) || argv.length < 2 || !argv.every((a) => typeof a === "string")) {
    throw new SiglipError("internal", "cannot read the command line from the parent process (it ended early)");
  }
  process.argv = argv as string[];
  const watch = new Socket({ fd: FD, readable: true, writable: false });
  watch.on("data", () => undefined);
  watch.on("error", () => undefined);
  watch.once("close", () => process.kill(process.pid, "SIGTERM")); // the parent is gone
  watch.unref();
  return true;
}

/**
 * When this process's command line is too long for onnxruntime, start the child described in
 * the module comment and return true; the caller then does nothing more (this process exits
 * when the child does). Returns false when no re-launch is needed.
 */
export function relaunchIfLong(): boolean {
  if (process.platform !== "linux" || process.env[ARGV_FD_ENV] !== undefined) return false;
  if (commandLineBytes() <= relaunchThreshold()) return false;
  const script = process.argv[1];
  if (script === undefined) return false;
  const child = spawn(process.execPath, [...process.execArgv, script], {
    stdio: ["inherit", "inherit", "inherit", "pipe"],
    env: { ...process.env, [ARGV_FD_ENV]: String(FD) },
    detached: true, // own session: terminal signals reach the parent only, which forwards them once
  });
  const pipe = child.stdio[FD] as Socket;
  pipe.on("error", () => undefined); // the child may exit before reading everything
  pipe.write(`${JSON.stringify(process.argv)}\n`);

  const handlers = new Map<NodeJS.Signals, () => void>();
  const on = (sig: NodeJS.Signals, fn: () => void): void => {
    handlers.set(sig, fn);
    process.on(sig, fn);
  };
  const kill = (sig: NodeJS.Signals): void => {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  };
  for (const sig of FORWARDED) on(sig, () => kill(sig));
  on("SIGTSTP", () => {
    kill("SIGSTOP"); // the child's session has no terminal: SIGTSTP would be ignored there
    process.kill(process.pid, "SIGSTOP");
  });
  on("SIGCONT", () => kill("SIGCONT"));

  child.on("error", (e) => {
    process.stderr.write(`siglip2: cannot start a process for the long command line (${e.message})\n`);
    process.exit(2);
  });
  child.on("exit", (code, signal) => {
    for (const [sig, fn] of handlers) process.off(sig, fn);
    pipe.destroy();
    if (signal === null) process.exit(code ?? 2);
    const n = constants.signals[signal] ?? 0;
    if (!CORE_SIGNALS.has(signal)) {
      process.kill(process.pid, signal); // die of the same signal, as if it had been us
      setTimeout(() => process.exit(128 + n), 1000);
    } else {
      process.exit(128 + n);
    }
  });
  return true;
}
