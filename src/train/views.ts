/**
 * Augmented views for self-distillation and masked prediction (SigLIP 2 §2.3, SILC / TIPS;
 * training-recipe §3): one global (teacher) view and V local (student) views per image, and
 * the random patch masks of masked prediction.
 *
 * A view is a random resized crop of the image as the batch holds it — the normalised
 * (3, R, R) pixels of the original view, so every dataset can feed it — resized with our
 * resampler's antialiased triangle weights (src/preprocess/resize.ts `triangleWeights`, the
 * float64 coefficients of torch `interpolate(bilinear, antialias=True)`), then flipped
 * horizontally with p = 0.5. The crop follows torchvision `RandomResizedCrop`: up to ten
 * draws of an area fraction in `scale` and a log-uniform aspect ratio in [3/4, 4/3], a
 * whole-image crop when none fits. SILC's colour jitter, blur and solarisation are left out
 * (documented deviation: the scene images are flat-coloured shapes; the crops and flips are
 * what the local → global consistency needs).
 *
 * Every draw comes from the caller's {@link Rng} (one per step, seeded by (seed, step)), so a
 * resumed run sees the same views.
 */
import { triangleWeights } from "../preprocess/resize.js";
import type { Rng } from "./rng.js";

/** An area range (fractions of the image), e.g. [0.05, 0.4]. */
export type CropScale = readonly [number, number];

/** A crop box in pixels of the source: rows [top, top + height), columns [left, left + width). */
export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
  flip: boolean;
}

/** torchvision `RandomResizedCrop.get_params` on an H×W image, plus a flip draw. */
export function randomCropBox(H: number, W: number, scale: CropScale, rng: Rng): CropBox {
  const area = H * W;
  const lr0 = Math.log(3 / 4);
  const lr1 = Math.log(4 / 3);
  let box: Omit<CropBox, "flip"> = { top: 0, left: 0, height: H, width: W };
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(lr0, lr1));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= W && h <= H) {
      box = { top: rng.int(H - h + 1), left: rng.int(W - w + 1), height: h, width: w };
      break;
    }
  }
  return { ...box, flip: rng.next() < 0.5 };
}

/**
 * Crop `box` of `src` (C, H, W) and resize it to (C, out, out): width pass, then height pass,
 * float64 accumulation over each output sample's support only (the taps outside it are zero:
 * the sums equal the dense matrix product bit for bit), float32 result; `box.flip` mirrors
 * the columns.
 */
export function cropResize(src: Float32Array, C: number, H: number, W: number, box: CropBox, out: number): Float32Array {
  const { top, left, height: h, width: w } = box;
  const wx = triangleWeights(w, out); // out samples over the crop's w columns
  const wy = triangleWeights(h, out); // out samples over its h rows
  const tmp = new Float64Array(h * out); // one channel after the width pass: (h, out)
  const dst = new Float32Array(C * out * out);
  for (let c = 0; c < C; c++) {
    const base = c * H * W;
    for (let y = 0; y < h; y++) {
      const row = base + (top + y) * W + left;
      for (let x = 0; x < out; x++) {
        const k0 = wx.start[x]!;
        const wk = wx.weights[x]!;
        let s = 0;
        for (let k = 0; k < wk.length; k++) s += wk[k]! * src[row + k0 + k]!;
        tmp[y * out + (box.flip ? out - 1 - x : x)] = s;
      }
    }
    for (let y = 0; y < out; y++) {
      const k0 = wy.start[y]!;
      const wk = wy.weights[y]!;
      for (let x = 0; x < out; x++) {
        let s = 0;
        for (let k = 0; k < wk.length; k++) s += wk[k]! * tmp[(k0 + k) * out + x]!;
        dst[c * out * out + y * out + x] = s;
      }
    }
  }
  return dst;
}

/** What {@link makeViews} draws. */
export interface ViewOptions {
  /** Side R of the batch's images (and of the global view). */
  imageSize: number;
  globalCrop: CropScale;
  localCrop: CropScale;
  /** Side of the local views. */
  localSize: number;
  localViews: number;
}

/** The views of a batch of n images. */
export interface Views {
  /** (n, 3, R, R): one global view per image. */
  global: Float32Array;
  /** (n·V, 3, r, r): image-major (image i's views are rows i·V … i·V + V − 1). */
  local: Float32Array;
}

/** One global and V local views of each image of `pixels` (n, 3, R, R). */
export function makeViews(pixels: Float32Array, n: number, o: ViewOptions, rng: Rng): Views {
  const R = o.imageSize;
  const r = o.localSize;
  const per = 3 * R * R;
  if (pixels.length !== n * per) throw new Error(`internal: ${pixels.length} pixel values for ${n} images of ${R}²`);
  const global = new Float32Array(n * per);
  const local = new Float32Array(n * o.localViews * 3 * r * r);
  for (let i = 0; i < n; i++) {
    const img = pixels.subarray(i * per, (i + 1) * per);
    global.set(cropResize(img, 3, R, R, randomCropBox(R, R, o.globalCrop, rng), R), i * per);
    for (let v = 0; v < o.localViews; v++) {
      local.set(cropResize(img, 3, R, R, randomCropBox(R, R, o.localCrop, rng), r), (i * o.localViews + v) * 3 * r * r);
    }
  }
  return { global, local };
}

/** Patches masked per image: round(ratio · N), at least 1 and at most N − 1 (some patch stays visible, some is predicted). */
export function maskedCount(N: number, ratio: number): number {
  return Math.min(N - 1, Math.max(1, Math.round(ratio * N)));
}

/**
 * Random patch masks (n, N) float32 (1 = masked): exactly {@link maskedCount} patches of each
 * image, chosen uniformly (random, not block-wise: the paper does not say; recipe §3).
 */
export function patchMasks(n: number, N: number, ratio: number, rng: Rng): Float32Array {
  const k = maskedCount(N, ratio);
  const out = new Float32Array(n * N);
  for (let i = 0; i < n; i++) for (const j of rng.permutation(N).slice(0, k)) out[i * N + j] = 1;
  return out;
}
