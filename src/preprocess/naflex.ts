/**
 * NaFlex image preprocessing (`Siglip2ImageProcessor` / `Siglip2ImageProcessorPil`,
 * spec §4.5), bit-exact with either transformers backend:
 *
 *   1. target size from HF `get_image_size_for_max_num_patches` (float64 binary search),
 *   2. antialiased bilinear resize of the uint8 image to that size (spec §4.3),
 *   3. rescale + normalise with the backend's float32 recipe (spec §4.4),
 *   4. patchify channel-fastest: row `n = py·gridW + px`, column `(yIn·P + xIn)·3 + c`.
 *
 * Padding to `max_num_patches` rows (zeros), the attention mask and `spatial_shapes` are left
 * to the caller: {@link preprocessNaflex} returns only the `gridH · gridW` valid rows.
 */
import { SiglipError } from "../errors.js";
import { HUB_RESCALE_NORMALIZE, RESAMPLE_BILINEAR, bool, fail, hubRescaleNormalize, isObject, isPosInt, parseResample, parseRescaleNormalize, shownValue } from "./config-json.js";
import type { RgbImage } from "./decode.js";
import { normalizeToChw } from "./normalize.js";
import { resizeRgb, type ResizeBackend } from "./resize.js";

/** Resolved `Siglip2ImageProcessor` settings. */
export interface NaflexProcessorConfig {
  patchSize: number;
  maxNumPatches: number;
  doResize: boolean;
  /** PIL resampling code; only 2 (bilinear) is supported when resizing. */
  resample: number;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

/** `Siglip2ImageProcessor` class defaults (transformers 5.x), used for absent keys. */
const CLASS_DEFAULTS = {
  patchSize: 16,
  maxNumPatches: 256,
  doResize: true,
  resample: RESAMPLE_BILINEAR, // Siglip2 (unlike Siglip) defaults to BILINEAR
  ...HUB_RESCALE_NORMALIZE,
};

/**
 * Upper bounds on `patch_size` and `max_num_patches` in a NaFlex preprocessor config (the
 * Hub configs use 16 and 256; the patch budget of a call can still be chosen per call).
 */
export const NAFLEX_CONFIG_LIMITS = { patch_size: 1024, max_num_patches: 65536 } as const;

/** A required positive integer: absent → class default; null → error (HF fails on `None` here). */
function posIntKey(v: unknown, dflt: number, source: string, key: keyof typeof NAFLEX_CONFIG_LIMITS): number {
  if (v === undefined) return dflt;
  if (v === null) fail(source, `${key} is null (Siglip2ImageProcessor needs it)`);
  if (!isPosInt(v)) fail(source, `${key} must be a positive integer, got ${shownValue(v)}`);
  if (v > NAFLEX_CONFIG_LIMITS[key]) fail(source, `${key} ${v} is beyond the supported maximum ${NAFLEX_CONFIG_LIMITS[key]}`);
  return v;
}

/**
 * Parse a `Siglip2ImageProcessor` `preprocessor_config.json` the way transformers 5.x
 * resolves it: absent keys take the class defaults (`patch_size` 16, `max_num_patches` 256,
 * bilinear, rescale 1/255, mean = std = 0.5); an explicit `null` is kept as `None`, so a
 * null `do_*` switch is off, a null `resample` means bilinear (both backends' resize
 * default), and a null value that a switched-on step needs is an error (HF raises or
 * crashes there). `size`, `do_center_crop`, `crop_size`, `do_pad` and `do_convert_rgb` are
 * ignored, as `Siglip2ImageProcessor` ignores them (except that HF, and so this parser, refuses
 * `do_center_crop: true` without a `crop_size`).
 *
 * @param json  the parsed JSON, or `undefined` when the checkpoint has none: then the Hub
 *              NaFlex settings are used with `fallbackPatchSize`.
 * @param fallbackPatchSize  `vision_config.patch_size` from config.json.
 * @param source  file name for error messages.
 */
export function parseNaflexProcessorConfig(
  json: unknown | undefined,
  fallbackPatchSize: number,
  source = "preprocessor_config.json",
): NaflexProcessorConfig {
  if (json === undefined) {
    if (!isPosInt(fallbackPatchSize)) {
      fail(source, `the fallback patch size (vision patch_size) must be a positive integer, got ${JSON.stringify(fallbackPatchSize)}`);
    }
    return { patchSize: fallbackPatchSize, maxNumPatches: CLASS_DEFAULTS.maxNumPatches, doResize: true, resample: RESAMPLE_BILINEAR, ...hubRescaleNormalize() };
  }
  if (!isObject(json)) fail(source, "expected a JSON object");
  const j = json;

  const patchSize = posIntKey(j.patch_size, CLASS_DEFAULTS.patchSize, source, "patch_size");
  const maxNumPatches = posIntKey(j.max_num_patches, CLASS_DEFAULTS.maxNumPatches, source, "max_num_patches");
  const doResize = bool(j.do_resize, CLASS_DEFAULTS.doResize, source, "do_resize");
  const rescaleNormalize = parseRescaleNormalize(j, CLASS_DEFAULTS, source);
  // resample: null → None, which both backends' resize() treat as bilinear.
  const resample = parseResample(j.resample, CLASS_DEFAULTS.resample, doResize, "bilinear", source);

  // Siglip2ImageProcessor ignores cropping, but HF still validates it.
  if (j.do_center_crop === true && (j.crop_size === undefined || j.crop_size === null)) {
    fail(source, "do_center_crop is true but crop_size is not set");
  }

  return { patchSize, maxNumPatches, doResize, resample, ...rescaleNormalize };
}

/**
 * HF `get_image_size_for_max_num_patches` (spec §4.5 step 1), replicated literally in
 * float64: binary search for the largest scale in [eps/10, 100] whose patch-rounded size
 * fits the budget. Each side is rounded up to a multiple of `patchSize` (at least one patch).
 * Returns `[targetHeight, targetWidth]`.
 */
export function naflexTargetSize(
  height: number,
  width: number,
  patchSize: number,
  maxNumPatches: number,
  eps = 1e-5,
): [number, number] {
  for (const [name, v] of [["height", height], ["width", width], ["patchSize", patchSize], ["maxNumPatches", maxNumPatches]] as const) {
    if (!isPosInt(v)) throw new RangeError(`naflexTargetSize: ${name} must be a positive integer, got ${v}`);
  }
  const p = patchSize;
  const scaled = (scale: number, size: number): number => {
    const s = Math.ceil((size * scale) / p) * p;
    return Math.max(p, s);
  };
  let lo = eps / 10;
  let hi = 100.0;
  while (hi - lo >= eps) {
    const scale = (lo + hi) / 2;
    const th = scaled(scale, height);
    const tw = scaled(scale, width);
    if ((th / p) * (tw / p) <= maxNumPatches) lo = scale;
    else hi = scale;
  }
  return [scaled(lo, height), scaled(lo, width)];
}

/** The valid (unpadded) patch rows of one image. */
export interface NaflexPatches {
  /** (gridH · gridW, 3 · P · P) float32, row-major; within a row `(yIn·P + xIn)·3 + c` (channel fastest). */
  patches: Float32Array;
  gridH: number;
  gridW: number;
}

/**
 * The NaFlex pipeline for one image (spec §4.5 steps 1–4), bit-exact with the chosen
 * transformers backend (`"torch"` = the torchvision backend, transformers 5.x default;
 * `"pil"` = `Siglip2ImageProcessorPil`): resize to {@link naflexTargetSize} (when
 * `doResize`), rescale/normalise exactly as that backend does, then patchify channel-fastest.
 *
 * @param maxNumPatches  the patch budget (the processor call's `max_num_patches`); defaults to the config's.
 */
export function preprocessNaflex(
  img: RgbImage,
  cfg: NaflexProcessorConfig,
  maxNumPatches: number = cfg.maxNumPatches,
  backend: ResizeBackend = "torch",
): NaflexPatches {
  if (backend !== "torch" && backend !== "pil") throw new RangeError(`unknown backend "${String(backend)}"`);
  if (!isPosInt(maxNumPatches)) {
    throw new SiglipError("input", `max_num_patches must be a positive integer, got ${String(maxNumPatches)}`);
  }
  const p = cfg.patchSize;
  if (!isPosInt(p)) throw new RangeError(`patch size must be a positive integer, got ${p}`);
  if (img.data.length !== img.width * img.height * 3 || img.width < 1 || img.height < 1) {
    throw new RangeError(`RGB image of ${img.width}×${img.height} has ${img.data.length} bytes`);
  }

  let resized = img;
  if (cfg.doResize) {
    if (cfg.resample !== RESAMPLE_BILINEAR) {
      throw new SiglipError("checkpoint", `resample ${cfg.resample} is not supported; only 2 (bilinear) is implemented`);
    }
    const [th, tw] = naflexTargetSize(img.height, img.width, p, maxNumPatches);
    resized = resizeRgb(img, th, tw, backend);
  } else if (img.height % p !== 0 || img.width % p !== 0) {
    // HF fails to reshape such an image into patches.
    throw new SiglipError(
      "image",
      `image of ${img.width}×${img.height} pixels is not a multiple of the patch size ${p} and do_resize is off`,
    );
  }
  const h = resized.height;
  const w = resized.width;
  const gridH = h / p;
  const gridW = w / p;
  if (gridH * gridW > maxNumPatches) {
    throw new SiglipError(
      "image",
      `image of ${img.width}×${img.height} pixels gives ${gridH}×${gridW} = ${gridH * gridW} patches, more than max_num_patches ${maxNumPatches}`,
    );
  }

  const chw = normalizeToChw(resized, cfg, backend);
  const plane = h * w;
  const rowLen = 3 * p * p;
  const patches = new Float32Array(gridH * gridW * rowLen);
  let o = 0;
  for (let py = 0; py < gridH; py++) {
    for (let px = 0; px < gridW; px++) {
      for (let yIn = 0; yIn < p; yIn++) {
        let src = (py * p + yIn) * w + px * p;
        for (let xIn = 0; xIn < p; xIn++, src++) {
          patches[o++] = chw[src]!;
          patches[o++] = chw[plane + src]!;
          patches[o++] = chw[2 * plane + src]!;
        }
      }
    }
  }
  return { patches, gridH, gridW };
}
