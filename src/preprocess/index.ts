/**
 * Image preprocessing (spec §4): decoding, the bit-exact antialiased bilinear resampler,
 * normalisation and the fixed-resolution `SiglipImageProcessor` pipeline.
 */
import { SiglipError } from "../errors.js";
import { assertFitsModel, resizeTarget, type ImageProcessorConfig } from "./config.js";
import type { RgbImage } from "./decode.js";
import { normalizeToChw } from "./normalize.js";
import { resizeRgb, type ResizeBackend } from "./resize.js";

export { decodeImage, DEFAULT_MAX_PIXELS, type DecodeOptions, type RgbImage } from "./decode.js";
export {
  resizeRgb,
  triangleWeights,
  triangleWeightsF32,
  type AxisWeights,
  type AxisWeightsF32,
  type ResizeBackend,
} from "./resize.js";
export { normalizeToChw } from "./normalize.js";
export { assertFitsModel, fitFixedConfigToModel, parseImageProcessorConfig, resizeTarget, RESAMPLE_BILINEAR, type ImageProcessorConfig } from "./config.js";
export {
  naflexTargetSize,
  parseNaflexProcessorConfig,
  preprocessNaflex,
  type NaflexPatches,
  type NaflexProcessorConfig,
} from "./naflex.js";

/**
 * Full fixed-resolution pipeline (spec §4.2): resize to the configured size (no aspect
 * ratio kept, no crop; see {@link resizeTarget} for `shortest_edge` configs), then rescale
 * and normalise. Returns (3, H, W) float32, bit-exact with the chosen transformers backend.
 */
export function preprocessFixed(img: RgbImage, cfg: ImageProcessorConfig, backend: ResizeBackend = "torch"): Float32Array {
  const [h, w] = resizeTarget(cfg, img.height, img.width);
  if (!(h >= 1 && w >= 1)) {
    throw new SiglipError("image", `image of ${img.width}×${img.height} pixels resizes to an empty ${w}×${h} image`);
  }
  assertFitsModel(cfg, img.height, img.width);
  const resized = cfg.doResize ? resizeRgb(img, h, w, backend) : img;
  return normalizeToChw(resized, cfg, backend);
}
