/**
 * Helpers shared by the two image-processor config parsers (./config.ts for
 * SiglipImageProcessor, ./naflex.ts for Siglip2ImageProcessor): transformers 5.x
 * semantics for absent keys (class default) and explicit nulls (`None`).
 */
import { SiglipError } from "../errors.js";

export type Triple = [number, number, number];

/** PIL resampling codes, for error messages. */
export const RESAMPLE_NAMES: Record<number, string> = {
  0: "nearest",
  1: "lanczos",
  2: "bilinear",
  3: "bicubic",
  4: "box",
  5: "hamming",
};

export function fail(source: string, problem: string): never {
  throw new SiglipError("checkpoint", `${source}: ${problem}`, { subject: source });
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A boolean switch: absent → class default; null → false (HF keeps the None, which is falsy). */
export function bool(v: unknown, dflt: boolean, source: string, key: string): boolean {
  if (v === undefined) return dflt;
  if (v === null) return false;
  if (typeof v !== "boolean") fail(source, `${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

export function triple(v: unknown, dflt: Triple, source: string, key: string): Triple {
  if (v === undefined || v === null) return [...dflt];
  if (typeof v === "number" && Number.isFinite(v)) return [v, v, v];
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "number" && Number.isFinite(x))) {
    return [v[0] as number, v[1] as number, v[2] as number];
  }
  fail(source, `${key} must be a number or a list of 3 numbers, got ${JSON.stringify(v)}`);
}

/** The rescale and normalise settings both processors share. */
export interface RescaleNormalize {
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: Triple;
  imageStd: Triple;
}

/**
 * Parse `do_rescale`, `rescale_factor`, `do_normalize`, `image_mean`, `image_std`. A null
 * value that a switched-on step needs is an error (HF raises "... must be specified if ... is True").
 */
export function parseRescaleNormalize(j: Record<string, unknown>, dflt: RescaleNormalize, source: string): RescaleNormalize {
  const doRescale = bool(j["do_rescale"], dflt.doRescale, source, "do_rescale");
  const doNormalize = bool(j["do_normalize"], dflt.doNormalize, source, "do_normalize");
  const needed = (key: string, flag: string) => fail(source, `${key} is null but ${flag} is true`);
  let rescaleFactor = dflt.rescaleFactor;
  const rf = j["rescale_factor"];
  if (rf === null) {
    if (doRescale) needed("rescale_factor", "do_rescale");
  } else if (rf !== undefined) {
    if (typeof rf !== "number" || !Number.isFinite(rf) || rf === 0) {
      fail(source, `rescale_factor must be a non-zero number, got ${JSON.stringify(rf)}`);
    }
    rescaleFactor = rf;
  }
  if (doNormalize && (j["image_mean"] === null || j["image_std"] === null)) {
    needed(j["image_mean"] === null ? "image_mean" : "image_std", "do_normalize");
  }
  const imageMean = triple(j["image_mean"], dflt.imageMean, source, "image_mean");
  const imageStd = triple(j["image_std"], dflt.imageStd, source, "image_std");
  if (doNormalize && imageStd.some((s) => s === 0)) fail(source, "image_std contains 0 (division by zero)");
  return { doRescale, rescaleFactor, doNormalize, imageMean, imageStd };
}
