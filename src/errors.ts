/**
 * Errors that the CLI and the library report to users as one clear line.
 *
 * Every problem caused by user input (a bad image, a broken checkpoint, a missing
 * tensor, an offline Hub) is thrown as a {@link SiglipError}. Its message names the
 * file or tensor and the problem; the CLI prints just that message (no stack trace
 * unless `--debug`). Anything else that escapes is a bug in this package.
 */
export class SiglipError extends Error {
  /** A short machine-readable category, e.g. `"image"`, `"checkpoint"`, `"hub"`, `"input"`. */
  readonly code: string;
  /** The file, tensor or input the problem is about, when there is one. */
  readonly subject?: string;

  constructor(code: string, message: string, options?: { subject?: string; cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "SiglipError";
    this.code = code;
    if (options?.subject !== undefined) this.subject = options.subject;
  }
}

/** True when `e` is a {@link SiglipError}. */
export function isSiglipError(e: unknown): e is SiglipError {
  return e instanceof SiglipError;
}

/** The message of any thrown value, for one-line reports. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/**
 * Throw a {@link SiglipError} (code `"non-finite"`) naming `subject` when any value is NaN
 * or ±Infinity: a non-finite output is never printed or returned as if it were a result.
 */
export function assertFinite(values: ArrayLike<number>, subject: string, what = "output"): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) {
      throw new SiglipError("non-finite", `${subject}: the ${what} is not finite (${v} at index ${i}); the checkpoint or its config produces NaN/Inf`, { subject });
    }
  }
}
