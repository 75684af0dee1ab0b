/**
 * Guard against onnxruntime's command-line crash.
 *
 * libonnxruntime (1.30, Linux) reads `/proc/self/cmdline` once per process, at the first
 * session creation (device/OS information it collects next to `/etc/machine-id`), and runs a
 * libstdc++ `std::regex` over it. libstdc++'s regex executor recurses once per character, so a
 * command line of about limit/280 bytes (≈ 30 KB under the usual 8 MiB stack, 15 KB in a
 * worker thread's 4 MiB) overflows the stack of the creating thread: the process dies with
 * SIGSEGV, nothing printed. Setting `process.title` does not help: the kernel still returns the
 * whole argv area.
 *
 * {@link assertCommandLineSafe} turns that crash into one clear error before the first session
 * is created; the CLI avoids it altogether by re-launching itself with a short command line
 * (src/cli/relaunch.ts).
 */
import { readFileSync } from "node:fs";
import { isMainThread, resourceLimits } from "node:worker_threads";
import { SiglipError } from "../errors.js";

/** Stack bytes per command-line byte we allow (the crash needs about 280; 512 leaves a margin). */
export const STACK_BYTES_PER_CMDLINE_BYTE = 512;

/** Node's default worker-thread stack (resourceLimits.stackSizeMb default: 4 MiB). */
const DEFAULT_WORKER_STACK = 4 << 20;

/** The soft stack limit of this process in bytes (`ulimit -s`), Infinity when unlimited, null when unknown. */
export function stackLimitBytes(limits?: string): number | null {
  let text = limits;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      return null;
    }
  }
  const m = /^Max stack size\s+(\S+)/m.exec(text);
  if (!m) return null;
  if (m[1] === "unlimited") return Infinity;
  const n = Number(m[1]);
  return Number.isFinite(n) && n > 0 ? n : null;
}

/** The stack of the thread that would create the first session: the main thread's limit, or a worker's own stack. */
function threadStackBytes(): number {
  if (!isMainThread) {
    const mb = resourceLimits.stackSizeMb;
    return typeof mb === "number" && mb > 0 ? mb * (1 << 20) : DEFAULT_WORKER_STACK;
  }
  // Unknown limit (no /proc/self/limits): assume the common 8 MiB.
  return stackLimitBytes() ?? 8 << 20;
}

/**
 * The longest command line (bytes of `/proc/self/cmdline`) that onnxruntime can scan safely on
 * this thread: the stack size / {@link STACK_BYTES_PER_CMDLINE_BYTE}. Infinity on platforms
 * without the problem (not Linux) and with an unlimited main-thread stack.
 */
export function safeCommandLineBytes(): number {
  if (process.platform !== "linux") return Infinity;
  return Math.floor(threadStackBytes() / STACK_BYTES_PER_CMDLINE_BYTE);
}

/** Bytes of this process's command line as the kernel reports it (what onnxruntime reads); 0 when unreadable. */
export function commandLineBytes(): number {
  try {
    return readFileSync("/proc/self/cmdline").length;
  } catch {
    return 0;
  }
}

let passed = false;

/**
 * Throw a SiglipError (code "cmdline") instead of letting onnxruntime overflow the stack when
 * this process's command line is too long for it. Called before every session creation;
 * after the first check passes, onnxruntime has read the command line and nothing can go wrong
 * any more, so later calls return at once.
 */
export function assertCommandLineSafe(): void {
  if (passed || process.platform !== "linux") return;
  const bytes = commandLineBytes();
  const limit = safeCommandLineBytes();
  if (bytes > limit) {
    const stack = threadStackBytes();
    throw new SiglipError(
      "cmdline",
      `the command line of this process is ${bytes} bytes, more than onnxruntime can scan safely with a ${Math.round(stack / (1 << 20))} MiB stack ` +
        `(${limit} bytes; onnxruntime 1.30 reads /proc/self/cmdline with a recursive regex and would crash with SIGSEGV): ` +
        `pass long input lists through a file or stdin instead of argv, or raise the stack limit (ulimit -s)`,
      { subject: "/proc/self/cmdline" },
    );
  }
  passed = true;
}
