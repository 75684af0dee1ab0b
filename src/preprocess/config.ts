/**
 * `preprocessor_config.json` for fixed-resolution SigLIP (2) checkpoints
 * (`SiglipImageProcessor`, spec §4.2), resolved the way transformers 5.x resolves it.
 */
import { SiglipError } from "../errors.js";
import { HUB_RESCALE_NORMALIZE, RESAMPLE_BILINEAR, bool, fail, hubRescaleNormalize, isObject, parseResample, parseRescaleNormalize, posInt, shownValue } from "./config-json.js";

/** Resolved image-processor settings (SiglipImageProcessor semantics). */
export interface ImageProcessorConfig {
  doResize: boolean;
  /** Target height. With `shortestEdge` set this is only nominal (`shortestEdge`); use {@link resizeTarget}. */
  height: number;
  /** Target width. With `shortestEdge` set this is only nominal (`shortestEdge`); use {@link resizeTarget}. */
  width: number;
  /** PIL resampling code; only 2 (bilinear) is supported. */
  resample: number;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  /**
   * Set when `size` was `{shortest_edge}` (or a bare integer, which HF reads as
   * `{shortest_edge}` for SigLIP): the shorter side is resized to this and the aspect ratio
   * kept, so the output size depends on the image (see {@link resizeTarget}).
   */
  shortestEdge?: number;
  /** With `shortestEdge`: `size.longest_edge`, the cap on the longer side (HF `get_size_with_aspect_ratio`). */
  longestEdge?: number;
  /**
   * Set by {@link fitFixedConfigToModel}: the side R of the R×R images the tower takes. Each
   * preprocessed image must then be R×R ({@link assertFitsModel}).
   */
  modelSize?: number;
  /** With `modelSize`: the config file, for error messages. */
  source?: string;
}

export { RESAMPLE_BILINEAR } from "./config-json.js";

/** `SiglipImageProcessor` class defaults (transformers 5.x) for absent keys. */
const CLASS_DEFAULTS = {
  doResize: true,
  size: { height: 224, width: 224 },
  resample: 3, // PILImageResampling.BICUBIC (the SigLIP 2 Hub configs override it with 2)
  ...HUB_RESCALE_NORMALIZE,
};

/** The resize target `size` resolves to: fixed height × width, or a shortest (and longest) edge. */
interface SizeSpec {
  height: number;
  width: number;
  shortestEdge?: number;
  longestEdge?: number;
}

/**
 * `size` as `get_size_dict(size, default_to_square=False)` reads it for SigLIP:
 * `{height, width}`, `[height, width]`, `{shortest_edge}`, `{shortest_edge, longest_edge}`, or
 * an integer (= `{shortest_edge}`). Absent → the class default 224×224; null → an error when resizing.
 */
function parseSize(size: unknown, doResize: boolean, source: string): SizeSpec {
  const out: SizeSpec = { ...CLASS_DEFAULTS.size };
  if (size === null) {
    if (doResize) fail(source, "size is null but do_resize is true");
  } else if (size === undefined) {
    // class default {height: 224, width: 224}
  } else if (typeof size === "number") {
    // get_size_dict(int, default_to_square=False) -> {shortest_edge: int}
    out.shortestEdge = posInt(size, source, "size");
  } else if (Array.isArray(size)) {
    if (size.length !== 2) fail(source, `size as a list must be [height, width], got ${shownValue(size)}`);
    out.height = posInt(size[0], source, "size[0] (height)");
    out.width = posInt(size[1], source, "size[1] (width)");
  } else if (isObject(size)) {
    const keys = Object.keys(size)
      .filter((k) => size[k] !== null && size[k] !== undefined)
      .sort()
      .join(",");
    if (keys === "height,width") {
      out.height = posInt(size.height, source, "size.height");
      out.width = posInt(size.width, source, "size.width");
    } else if (keys === "shortest_edge") {
      out.shortestEdge = posInt(size.shortest_edge, source, "size.shortest_edge");
    } else if (keys === "longest_edge,shortest_edge") {
      out.shortestEdge = posInt(size.shortest_edge, source, "size.shortest_edge");
      out.longestEdge = posInt(size.longest_edge, source, "size.longest_edge");
    } else {
      fail(source, `unsupported size keys {${keys}} (supported: {height, width}, {shortest_edge}, {shortest_edge, longest_edge})`);
    }
  } else {
    fail(source, `size must be an object, a list or an integer, got ${shownValue(size)}`);
  }
  if (out.shortestEdge !== undefined) {
    out.height = out.shortestEdge;
    out.width = out.shortestEdge;
  }
  return out;
}

/**
 * Parse `preprocessor_config.json` contents with `SiglipImageProcessor` semantics (transformers
 * 5.x): absent keys take the class defaults; an explicit `null` is kept as `None` (so a null
 * `do_*` switch is off, and a null value that a switched-on step needs is an error). `size`:
 * see {@link parseSize}. Only `resample: 2` (bilinear) is supported when resizing.
 *
 * @param json  the parsed JSON, or `undefined` when the checkpoint has no preprocessor config:
 *              then the SigLIP 2 Hub settings are used (bilinear resize to `fallbackSize`²,
 *              rescale 1/255, mean = std = 0.5).
 * @param fallbackSize  the vision `image_size` from config.json.
 * @param source  file name for error messages.
 */
export function parseImageProcessorConfig(
  json: unknown | undefined,
  fallbackSize: number,
  source = "preprocessor_config.json",
): ImageProcessorConfig {
  if (json === undefined) {
    const s = posInt(fallbackSize, source, "the fallback image size (vision image_size)");
    return { doResize: true, height: s, width: s, resample: RESAMPLE_BILINEAR, ...hubRescaleNormalize() };
  }
  if (!isObject(json)) fail(source, "expected a JSON object");
  const j = json;

  const doResize = bool(j.do_resize, CLASS_DEFAULTS.doResize, source, "do_resize");
  const rescaleNormalize = parseRescaleNormalize(j, CLASS_DEFAULTS, source);
  const resample = parseResample(j.resample, CLASS_DEFAULTS.resample, doResize, "error", source);
  if (j.do_center_crop === true) fail(source, "do_center_crop is not supported by SiglipImageProcessor parity");
  if (j.do_pad === true) fail(source, "do_pad is not supported by SiglipImageProcessor parity");
  const { height, width, shortestEdge, longestEdge } = parseSize(j.size, doResize, source);

  const cfg: ImageProcessorConfig = { doResize, height, width, resample, ...rescaleNormalize };
  if (shortestEdge !== undefined) cfg.shortestEdge = shortestEdge;
  if (longestEdge !== undefined) cfg.longestEdge = longestEdge;
  return cfg;
}

/** Python's round() (half to even) for the HF size helpers. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * The (height, width) an image of `imgHeight` × `imgWidth` is resized to under `cfg`
 * (HF `get_resize_output_image_size` / `get_size_with_aspect_ratio` for `shortest_edge`
 * sizes; the fixed `height`/`width` otherwise; the input size when `doResize` is false).
 */
export function resizeTarget(cfg: ImageProcessorConfig, imgHeight: number, imgWidth: number): [number, number] {
  if (!cfg.doResize) return [imgHeight, imgWidth];
  const se = cfg.shortestEdge;
  if (se === undefined) return [cfg.height, cfg.width];
  const h = imgHeight;
  const w = imgWidth;
  if (cfg.longestEdge === undefined) {
    // get_resize_output_image_size(size=se, default_to_square=False)
    const short = w <= h ? w : h;
    const long = w <= h ? h : w;
    const newLong = Math.trunc((se * long) / short);
    return w <= h ? [newLong, se] : [se, newLong];
  }
  // get_size_with_aspect_ratio((h, w), se, longest_edge)
  let size = se;
  let rawSize: number | undefined;
  const minOrig = Math.min(h, w);
  const maxOrig = Math.max(h, w);
  if ((maxOrig / minOrig) * size > cfg.longestEdge) {
    rawSize = (cfg.longestEdge * minOrig) / maxOrig;
    size = roundHalfEven(rawSize);
  }
  let oh: number;
  let ow: number;
  if ((h <= w && h === size) || (w <= h && w === size)) {
    oh = h;
    ow = w;
  } else if (w < h) {
    ow = size;
    oh = rawSize !== undefined ? Math.trunc((rawSize * h) / w) : Math.trunc((size * h) / w);
  } else {
    oh = size;
    ow = rawSize !== undefined ? Math.trunc((rawSize * w) / h) : Math.trunc((size * w) / h);
  }
  return [oh, ow];
}

/**
 * Fit a fixed-resolution config to a tower that takes `imageSize`² images, as transformers
 * refuses a mismatch (the position table has one row per patch of an R×R image): a fixed
 * `size` other than R×R is refused here, in one line naming `source`; with `do_resize:
 * false` or a `{shortest_edge}` size the output size depends on the image, so each image is
 * checked when it is preprocessed ({@link assertFitsModel}) and an image that does not come
 * out R×R is a per-image error.
 */
export function fitFixedConfigToModel(cfg: ImageProcessorConfig, imageSize: number, source: string): ImageProcessorConfig {
  const R = imageSize;
  if (cfg.doResize && cfg.shortestEdge === undefined && (cfg.height !== R || cfg.width !== R)) {
    fail(source, `size ${cfg.height}×${cfg.width} (height×width) does not fit the model, which takes ${R}×${R} images (vision_config.image_size ${R})`);
  }
  return { ...cfg, modelSize: R, source };
}

/** Throw a per-image error when an `imgWidth`×`imgHeight` image does not come out at the model's size under `cfg`. */
export function assertFitsModel(cfg: ImageProcessorConfig, imgHeight: number, imgWidth: number): void {
  const R = cfg.modelSize;
  if (R === undefined) return;
  const [h, w] = resizeTarget(cfg, imgHeight, imgWidth);
  if (h === R && w === R) return;
  const why = !cfg.doResize ? "do_resize is false" : `size {shortest_edge: ${cfg.shortestEdge}${cfg.longestEdge !== undefined ? `, longest_edge: ${cfg.longestEdge}` : ""}} keeps the aspect ratio`;
  throw new SiglipError(
    "image",
    `a ${imgWidth}×${imgHeight} image becomes ${w}×${h} under ${cfg.source ?? "preprocessor_config.json"} (${why}), but the model takes ${R}×${R} images (vision_config.image_size)`,
  );
}

/**
 * A NaFlex processor config must cut patches of the tower's size: the patch embedding is a
 * linear layer over 3·P·P values. A different `patch_size` is refused in one line naming
 * `source` (transformers fails on the shape mismatch).
 */
export function checkNaflexFitsModel(cfg: { patchSize: number }, modelPatchSize: number, source: string): void {
  if (cfg.patchSize !== modelPatchSize) {
    fail(source, `patch_size ${cfg.patchSize} does not fit the model, whose patches are ${modelPatchSize}×${modelPatchSize} (vision_config.patch_size ${modelPatchSize})`);
  }
}
