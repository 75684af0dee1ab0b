/**
 * What the command modules (index, search, serve) borrow from main.ts: the shared
 * model options, model loading, and the per-input error report (which makes the
 * exit code 1).
 */
import type { Command } from "commander";
import type { SigLIP2 } from "../api.js";
import type { SiglipError } from "../errors.js";

/** The options withModelOptions defines (as main.ts's loadModel reads them). */
export interface ModelOpts {
  model: string;
  threads?: number;
  resampler?: "torch" | "pil";
  batchSize?: number;
  lowercase: boolean;
  offline?: boolean;
  revision?: string;
  maxPatches?: number;
  torchCpuCompat?: boolean;
  dtype?: "fp32" | "int8";
  workers?: number;
}

export interface CliContext {
  /** Add --model and the other model options to a command. */
  withModelOptions(cmd: Command): Command;
  /** Load the model these options name. */
  loadModel(o: ModelOpts): Promise<SigLIP2>;
  /** Report one bad input on stderr (the run goes on; the exit code becomes 1). */
  reportInput(e: SiglipError): void;
}

export const PROG = "siglip2";

/** A note on stderr. */
export function note(msg: string): void {
  process.stderr.write(`${PROG}: ${msg}\n`);
}

/** Default table name (src/search/store.ts DEFAULT_TABLE; repeated here so that --help does not load LanceDB). */
export const DEFAULT_TABLE = "images";
export const DEFAULT_DB_HELP = "$SIGLIP2_DB, else ~/.cache/siglip2/db";
