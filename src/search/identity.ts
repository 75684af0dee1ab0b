/**
 * Which model a table belongs to, and the checks that keep vectors of two models
 * (or two preprocessing settings) out of one table.
 */
import { statSync } from "node:fs";
import { resolve } from "node:path";
import type { SigLIP2 } from "../api.js";
import { SiglipError } from "../errors.js";
import { expandHome } from "../user-dirs.js";
import { checkpointFingerprint } from "./fingerprint.js";
import type { TableMeta } from "./store.js";

/** The identity of a loaded model and the image settings it embeds with. */
export type EmbeddingSetup = Omit<TableMeta, "format" | "createdAt">;

/**
 * The name to record for `--model`: an existing local directory becomes an absolute
 * path (so `search` can load it from anywhere); anything else (a Hub id) is kept.
 */
export function modelName(arg: string): string {
  const p = expandHome(arg);
  try {
    if (statSync(p).isDirectory()) return resolve(p);
  } catch {
    /* not a local path */
  }
  return arg;
}

/** The setup of a loaded model: fingerprint, dimension, resampler, weight precision and (NaFlex) patch budget. */
export async function embeddingSetup(
  model: SigLIP2,
  name: string,
  options: { revision?: string; resampler?: "torch" | "pil"; maxPatches?: number; dtype?: "fp32" | "int8" } = {},
): Promise<EmbeddingSetup> {
  const s: EmbeddingSetup = {
    model: name,
    fingerprint: await checkpointFingerprint(model.checkpoint.dir),
    dim: model.dim,
    modelType: model.config.model_type,
    resampler: options.resampler ?? "torch",
    dtype: options.dtype ?? "fp32",
  };
  if (options.revision !== undefined) s.revision = options.revision;
  if (model.isNaflex) s.maxPatches = options.maxPatches ?? model.naflexProcessorConfig.maxNumPatches;
  return s;
}

function short(fp: string): string {
  return fp.slice(0, 12);
}

/**
 * Refuse a model that is not the one a table was built with. `purpose` tailors the
 * advice: an index run can use another table or rebuild; a search or a server can
 * use the table's own model.
 */
export function assertSameModel(meta: TableMeta, setup: EmbeddingSetup, where: string, purpose: "index" | "search"): void {
  const advice = purpose === "index"
    ? "use another --table or --db, or --rebuild to replace the table"
    : "omit --model to use the table's own model, or pass the model it was built with";
  if (meta.fingerprint !== setup.fingerprint) {
    const what = meta.model === setup.model
      ? `a different checkpoint under the same name ${setup.model} (fingerprint ${short(meta.fingerprint)}, now ${short(setup.fingerprint)})`
      : `model ${meta.model} (fingerprint ${short(meta.fingerprint)}), not ${setup.model} (fingerprint ${short(setup.fingerprint)})`;
    throw new SiglipError("index", `${where} was built with ${what}; vectors of two models are never mixed: ${advice}`);
  }
  if (purpose === "index" && meta.resampler !== setup.resampler) {
    throw new SiglipError("index", `${where} was built with --resampler ${meta.resampler}, not ${setup.resampler}; use the same setting, another --table, or --rebuild`);
  }
  if (purpose === "index" && (meta.dtype ?? "fp32") !== (setup.dtype ?? "fp32")) {
    throw new SiglipError("index", `${where} was built with --dtype ${meta.dtype ?? "fp32"}, not ${setup.dtype ?? "fp32"}; use the same setting, another --table, or --rebuild`);
  }
  if (purpose === "index" && meta.maxPatches !== setup.maxPatches) {
    throw new SiglipError("index", `${where} was built with --max-patches ${meta.maxPatches}, not ${setup.maxPatches}; use the same budget, another --table, or --rebuild`);
  }
}
