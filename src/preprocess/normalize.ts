/**
 * Rescale + normalise uint8 RGB to CHW float32, bit-exact with either transformers
 * backend (spec §4.4).
 *
 * torchvision backend (`TorchvisionBackend.rescale_and_normalize`): when both rescale and
 * normalise are on they are fused: `mean' = float32(mean) * float32(1/rescale_factor)` and
 * `std'` likewise (float32 tensor × Python scalar), then `(x - mean') / std'` in float32.
 * For mean = std = 0.5 and rescale 1/255 that is `(x - 127.5) / 127.5`.
 *
 * PIL backend (`PilBackend`): `v = float32(float64(x) * rescale_factor)`, then
 * `(v - float32(mean)) / float32(std)` in float32.
 *
 * JS evaluates each operation in float64 and rounds with `Math.fround`; for +, −, ×, ÷ of
 * float32 operands that equals the float32 operation (double rounding is innocuous).
 */
import type { RescaleNormalize } from "./config-json.js";
import type { RgbImage } from "./decode.js";
import type { ResizeBackend } from "./resize.js";

const f = Math.fround;

/**
 * Per-channel affine float32 recipe: out = op(x) where op depends on the backend and switches.
 * Returns the 256 values a uint8 of channel `c` maps to (used to refuse configs that give
 * non-finite pixel values, see src/preprocess/config-json.ts).
 */
export function channelLut(c: number, cfg: RescaleNormalize, backend: ResizeBackend): Float32Array {
  const lut = new Float32Array(256);
  const mean = cfg.imageMean[c]!;
  const std = cfg.imageStd[c]!;
  if (backend === "torch") {
    if (cfg.doRescale && cfg.doNormalize) {
      const inv = f(1 / cfg.rescaleFactor);
      const m = f(f(mean) * inv);
      const s = f(f(std) * inv);
      for (let x = 0; x < 256; x++) lut[x] = f(f(x - m) / s);
    } else if (cfg.doNormalize) {
      const m = f(mean);
      const s = f(std);
      for (let x = 0; x < 256; x++) lut[x] = f(f(x - m) / s);
    } else if (cfg.doRescale) {
      // uint8 tensor * Python float -> float32 result, computed as float32 x * float32(scale)
      const r = f(cfg.rescaleFactor);
      for (let x = 0; x < 256; x++) lut[x] = f(x * r);
    } else {
      for (let x = 0; x < 256; x++) lut[x] = x;
    }
  } else {
    const m = f(mean);
    const s = f(std);
    for (let x = 0; x < 256; x++) {
      // rescale: float64 multiply, then cast to float32 (numpy astype)
      const v = cfg.doRescale ? f(x * cfg.rescaleFactor) : x;
      lut[x] = cfg.doNormalize ? f(f(v - m) / s) : v;
    }
  }
  return lut;
}

/**
 * Rescale and normalise an RGB uint8 image to a (3, H, W) float32 array, bit-exact with the
 * chosen transformers backend (spec §4.4). Honours `doRescale` / `doNormalize`.
 */
export function normalizeToChw(img: RgbImage, cfg: RescaleNormalize, backend: ResizeBackend = "torch"): Float32Array {
  if (backend !== "torch" && backend !== "pil") throw new RangeError(`unknown backend "${String(backend)}"`);
  const n = img.width * img.height;
  if (img.data.length !== n * 3) throw new RangeError(`RGB image data has ${img.data.length} bytes, expected ${n * 3}`);
  const out = new Float32Array(3 * n);
  for (let c = 0; c < 3; c++) {
    const lut = channelLut(c, cfg, backend);
    const base = c * n;
    const src = img.data;
    for (let i = 0, j = c; i < n; i++, j += 3) out[base + i] = lut[src[j]!]!;
  }
  return out;
}
