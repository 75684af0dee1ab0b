/**
 * Helpers shared by the two image-processor config parsers (./config.ts for
 * SiglipImageProcessor, ./naflex.ts for Siglip2ImageProcessor): transformers 5.x
 * semantics for absent keys (class default) and explicit nulls (`None`), and the parts
 * both processors read the same way (rescale/normalise, resample, the Hub defaults).
 */
import { SiglipError } from "../errors.js";
import { channelLut } from "./normalize.js";

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

/** PIL resampling code for bilinear, the only filter this port reproduces. */
export const RESAMPLE_BILINEAR = 2;

export function fail(source: string, problem: string): never {
  throw new SiglipError("checkpoint", `${source}: ${problem}`, { subject: source });
}

/** A JSON value in an error message, cut to 60 characters (a huge string stays one short line). */
export function shownValue(v: unknown): string {
  const s = typeof v === "number" ? String(v) : JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function isPosInt(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 1;
}

/** `v` as a positive integer, else an error naming `what`. */
export function posInt(v: unknown, source: string, what: string): number {
  if (!isPosInt(v)) fail(source, `${what} must be a positive integer, got ${shownValue(v)}`);
  return v;
}

/** A boolean switch: absent → class default; null → false (HF keeps the None, which is falsy). */
export function bool(v: unknown, dflt: boolean, source: string, key: string): boolean {
  if (v === undefined) return dflt;
  if (v === null) return false;
  if (typeof v !== "boolean") fail(source, `${key} must be true or false, got ${shownValue(v)}`);
  return v;
}

export function triple(v: unknown, dflt: Triple, source: string, key: string): Triple {
  if (v === undefined || v === null) return [...dflt];
  if (typeof v === "number" && Number.isFinite(v)) return [v, v, v];
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "number" && Number.isFinite(x))) {
    return [v[0] as number, v[1] as number, v[2] as number];
  }
  fail(source, `${key} must be a number or a list of 3 numbers, got ${shownValue(v)}`);
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
 * The rescale/normalise settings of every SigLIP 2 checkpoint on the Hub (and the class
 * defaults of both processors): rescale 1/255, mean = std = 0.5 (pixels to [-1, 1]).
 */
export const HUB_RESCALE_NORMALIZE: Readonly<RescaleNormalize> = Object.freeze({
  doRescale: true,
  rescaleFactor: 1 / 255,
  doNormalize: true,
  imageMean: [0.5, 0.5, 0.5] as Triple,
  imageStd: [0.5, 0.5, 0.5] as Triple,
});

/** A fresh copy of {@link HUB_RESCALE_NORMALIZE} (its arrays are not shared). */
export function hubRescaleNormalize(): RescaleNormalize {
  const d = HUB_RESCALE_NORMALIZE;
  return { doRescale: d.doRescale, rescaleFactor: d.rescaleFactor, doNormalize: d.doNormalize, imageMean: [...d.imageMean], imageStd: [...d.imageStd] };
}

/**
 * `resample`: absent → the class default `dflt`; an integer PIL code; `null` is None, which
 * Siglip2ImageProcessor's resize treats as bilinear (`nullMeans: "bilinear"`) and
 * SiglipImageProcessor refuses when it resizes (`nullMeans: "error"`). Only bilinear is
 * implemented, so any other filter is refused when `doResize`.
 */
export function parseResample(v: unknown, dflt: number, doResize: boolean, nullMeans: "bilinear" | "error", source: string): number {
  let resample = dflt;
  if (v === null) {
    if (doResize && nullMeans === "error") fail(source, "resample is null but do_resize is true");
    resample = RESAMPLE_BILINEAR;
  } else if (v !== undefined) {
    if (typeof v !== "number" || !Number.isInteger(v)) fail(source, `resample must be an integer PIL resampling code, got ${shownValue(v)}`);
    resample = v;
  }
  if (doResize && resample !== RESAMPLE_BILINEAR) {
    const nm = RESAMPLE_NAMES[resample] ?? "unknown";
    const absent = v === undefined ? " (the SiglipImageProcessor default when the key is absent)" : "";
    fail(source, `resample ${resample} (${nm})${absent} is not supported; only 2 (bilinear) is implemented`);
  }
  return resample;
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
      fail(source, `rescale_factor must be a non-zero number, got ${shownValue(rf)}`);
    }
    rescaleFactor = rf;
  }
  if (doNormalize && (j["image_mean"] === null || j["image_std"] === null)) {
    needed(j["image_mean"] === null ? "image_mean" : "image_std", "do_normalize");
  }
  const imageMean = triple(j["image_mean"], dflt.imageMean, source, "image_mean");
  const imageStd = triple(j["image_std"], dflt.imageStd, source, "image_std");
  if (doNormalize && imageStd.some((s) => s === 0)) fail(source, "image_std contains 0 (division by zero)");
  const r: RescaleNormalize = { doRescale, rescaleFactor, doNormalize, imageMean, imageStd };
  checkFinitePixels(r, source);
  return r;
}

/**
 * Every pixel value (0–255 of each channel, through either backend's float32 recipe) must
 * map to a finite number: `rescale_factor` 1e300 or `image_std` 1e-45 would feed ±Infinity
 * or NaN to the model. Names the keys and the first value that fails.
 */
function checkFinitePixels(r: RescaleNormalize, source: string): void {
  for (const backend of ["torch", "pil"] as const) {
    for (let c = 0; c < 3; c++) {
      const lut = channelLut(c, r, backend);
      for (let x = 0; x < 256; x++) {
        const v = lut[x]!;
        if (Number.isFinite(v)) continue;
        const keys = [r.doRescale ? `rescale_factor ${r.rescaleFactor}` : "", r.doNormalize ? `image_mean[${c}] ${r.imageMean[c]}, image_std[${c}] ${r.imageStd[c]}` : ""].filter((k) => k).join(", ");
        fail(source, `${keys} map pixel value ${x} of channel ${c} to ${v} (${backend} backend); normalised pixel values must be finite`);
      }
    }
  }
}
