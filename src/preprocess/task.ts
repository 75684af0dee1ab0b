/**
 * One image's decode + preprocessing as a plain-data task, so it can run on the
 * main thread or in a worker (src/preprocess/pool.ts) with identical results.
 */
import { SiglipError } from "../errors.js";
import type { ImageProcessorConfig } from "./config.js";
import { decodeImage, type RgbImage } from "./decode.js";
import { preprocessFixed } from "./index.js";
import { preprocessNaflex, type NaflexProcessorConfig } from "./naflex.js";
import type { ResizeBackend } from "./resize.js";

/** What to do with one image. */
export interface PrepareTask {
  input: string | Uint8Array | RgbImage;
  /** Fixed resolution: (3, R, R) pixel values. NaFlex: patches within `budget`. */
  kind: "fixed" | "naflex";
  fixed?: ImageProcessorConfig;
  naflex?: NaflexProcessorConfig;
  budget?: number;
  backend: ResizeBackend;
  maxPixels?: number;
}

/** Prepared model input of one image. */
export interface Prepared {
  data: Float32Array;
  gridH: number;
  gridW: number;
}

/** Decode (paths and bytes) and preprocess one image. Throws SiglipError for bad images. */
export async function prepareImage(t: PrepareTask): Promise<Prepared> {
  let img: RgbImage;
  if (typeof t.input === "string" || t.input instanceof Uint8Array) {
    const o: { maxPixels?: number } = {};
    if (t.maxPixels !== undefined) o.maxPixels = t.maxPixels;
    img = await decodeImage(t.input, o);
  } else {
    img = t.input;
  }
  if (t.kind === "naflex") {
    const p = preprocessNaflex(img, t.naflex!, t.budget, t.backend);
    return { data: p.patches, gridH: p.gridH, gridW: p.gridW };
  }
  return { data: preprocessFixed(img, t.fixed!, t.backend), gridH: 0, gridW: 0 };
}

/** A SiglipError as plain data (for crossing a worker boundary) and back. */
export function errorToData(e: SiglipError): { code: string; message: string; subject?: string } {
  return e.subject !== undefined ? { code: e.code, message: e.message, subject: e.subject } : { code: e.code, message: e.message };
}
export function errorFromData(d: { code: string; message: string; subject?: string }): SiglipError {
  return new SiglipError(d.code, d.message, d.subject !== undefined ? { subject: d.subject } : undefined);
}
