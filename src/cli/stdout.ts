/**
 * stdout closed by its reader (`siglip2 embed ... | head -1`). By default the CLI then exits at
 * once and quietly (exit 0, or 1 when inputs failed): nothing more can be delivered. A command
 * with work to keep (train saves its checkpoint) registers a handler instead.
 */
import { PROG } from "./context.js";

let handler: (() => void) | null = null;

/** Call `fn` (instead of exiting) when stdout is closed by the reader; null restores the default. */
export function onStdoutClosed(fn: (() => void) | null): void {
  handler = fn;
}

/** Install the EPIPE policy on process.stdout; `failed()` tells whether inputs failed so far. */
export function guardStdout(failed: () => boolean): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE" || e.code === "ERR_STREAM_DESTROYED") {
      if (handler) return handler();
      process.exit(failed() ? 1 : 0);
    }
    process.stderr.write(`${PROG}: cannot write to stdout (${e.message})\n`);
    process.exit(2);
  });
}
