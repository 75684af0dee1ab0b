/**
 * Browser image inputs → {@link RgbImage} (HWC uint8), the input of our resampler and
 * normaliser (src/preprocess). The browser only decodes: `createImageBitmap` with colour
 * management off (`colorSpaceConversion: "none"`, `premultiplyAlpha: "none"`, EXIF orientation
 * applied as sharp does on Node), drawn at its natural size on an OffscreenCanvas and read back
 * with `getImageData` in sRGB — the canvas never resizes. Alpha is dropped without compositing,
 * as src/preprocess/decode.ts does (PIL's `convert("RGB")`).
 *
 * A canvas stores premultiplied pixels, so the colour of a pixel whose alpha is below 255 can
 * come back rounded (0 alpha: black). For images with alpha, {@link decodeBlob} therefore
 * prefers WebCodecs' `ImageDecoder`, whose frames are not premultiplied, when the browser has it.
 *
 * Reference: HTML `createImageBitmap` options, WebCodecs `ImageDecoder`/`VideoFrame.copyTo`.
 */
import { SiglipError } from "../errors.js";
import type { RgbImage } from "../preprocess/decode.js";

/** What the browser API takes as an image. */
export type WebImageInput = Blob | ImageBitmap | ImageData | RgbImage | string | URL;

/** Default limit on decoded pixels (as DEFAULT_MAX_PIXELS on Node). */
export const WEB_MAX_PIXELS = 0x3fff * 0x3fff;

function imageError(name: string, problem: string, cause?: unknown): SiglipError {
  return new SiglipError("image", `cannot read image ${name}: ${problem}`, { subject: name, ...(cause !== undefined ? { cause } : {}) });
}

/** RGBA (any alpha) → RGB, alpha dropped without compositing. */
export function rgbaToRgb(rgba: Uint8Array | Uint8ClampedArray, width: number, height: number): RgbImage {
  const n = width * height;
  const out = new Uint8Array(n * 3);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    out[3 * i] = rgba[j]!;
    out[3 * i + 1] = rgba[j + 1]!;
    out[3 * i + 2] = rgba[j + 2]!;
  }
  return { width, height, data: out };
}

function isRgbImage(x: unknown): x is RgbImage {
  return typeof x === "object" && x !== null && (x as RgbImage).data instanceof Uint8Array && Number.isInteger((x as RgbImage).width) && Number.isInteger((x as RgbImage).height);
}

/** Pixels of a bitmap drawn at its natural size (never scaled) on an OffscreenCanvas. */
function bitmapPixels(bmp: ImageBitmap, name: string): RgbImage {
  return rgbaToRgb(bitmapRgba(bmp, name), bmp.width, bmp.height);
}

/** RGBA of a bitmap drawn at its natural size on an OffscreenCanvas (premultiplied inside: alpha < 255 rounds colours). */
function bitmapRgba(bmp: ImageBitmap, name: string): Uint8ClampedArray {
  const { width, height } = bmp;
  if (width <= 0 || height <= 0) throw imageError(name, `zero-size image (${width}×${height})`);
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { colorSpace: "srgb", willReadFrequently: true, alpha: true });
  if (!ctx) throw imageError(name, "no 2D canvas context in this browser");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bmp, 0, 0); // natural size: no resampling
  return ctx.getImageData(0, 0, width, height, { colorSpace: "srgb" }).data;
}

/** Pixels of `blob` through WebCodecs (unpremultiplied RGBA), or null when the browser cannot. */
async function decodeWithImageDecoder(blob: Blob, name: string): Promise<{ rgba: Uint8Array; width: number; height: number } | null> {
  const Dec = (globalThis as { ImageDecoder?: { new (init: unknown): { decode(o?: unknown): Promise<{ image: VideoFrameLike }>; close(): void }; isTypeSupported(t: string): Promise<boolean> } }).ImageDecoder;
  if (!Dec || !blob.type || !(await Dec.isTypeSupported(blob.type).catch(() => false))) return null;
  let dec: { decode(o?: unknown): Promise<{ image: VideoFrameLike }>; close(): void } | null = null;
  try {
    dec = new Dec({ data: blob.stream(), type: blob.type, colorSpaceConversion: "none", premultiplyAlpha: "none", preferAnimation: false });
    const { image } = await dec.decode({ frameIndex: 0 });
    try {
      const w = image.displayWidth;
      const h = image.displayHeight;
      if (image.format !== "RGBA" && image.format !== "RGBX" && image.format !== "BGRA" && image.format !== "BGRX") return null; // YUV (JPEG): the canvas path
      if (w !== image.codedWidth || h !== image.codedHeight) return null; // a rotated or cropped frame: the canvas path
      const buf = new Uint8Array(w * h * 4);
      await image.copyTo(buf);
      if (image.format.startsWith("BGR")) for (let i = 0; i < buf.length; i += 4) [buf[i], buf[i + 2]] = [buf[i + 2]!, buf[i]!];
      return { rgba: buf, width: w, height: h };
    } finally {
      image.close();
    }
  } catch (e) {
    void name;
    void e;
    return null; // the canvas path reports the problem
  } finally {
    dec?.close();
  }
}

interface VideoFrameLike {
  format: string | null;
  codedWidth: number;
  codedHeight: number;
  displayWidth: number;
  displayHeight: number;
  copyTo(dest: Uint8Array, options?: unknown): Promise<unknown>;
  close(): void;
}

/** Decode an encoded image (PNG, JPEG, WebP, GIF, AVIF …) with the browser's decoders. */
export async function decodeBlob(blob: Blob, name: string, maxPixels = WEB_MAX_PIXELS): Promise<RgbImage> {
  if (blob.size === 0) throw imageError(name, "empty data (0 bytes)");
  let bmp: ImageBitmap;
  try {
    bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image" });
  } catch (e) {
    throw imageError(name, "not an image, an unsupported format, or corrupt data", e);
  }
  try {
    if (bmp.width * bmp.height > maxPixels) throw imageError(name, `too many pixels (${bmp.width}×${bmp.height}, limit ${maxPixels})`);
    const canvas = bitmapRgba(bmp, name);
    const exact = /^image\/(png|webp|gif)$/.test(blob.type) && hasTranslucency(canvas) ? await decodeWithImageDecoder(blob, name) : null;
    // ImageDecoder's frame is unpremultiplied but not EXIF-oriented: use it only when it agrees
    // with the (oriented) canvas on every opaque pixel, i.e. the orientation is the identity.
    if (exact && exact.width === bmp.width && exact.height === bmp.height && agreesWhereOpaque(canvas, exact.rgba)) return rgbaToRgb(exact.rgba, exact.width, exact.height);
    return rgbaToRgb(canvas, bmp.width, bmp.height);
  } finally {
    bmp.close();
  }
}

/** True when some pixel has alpha below 255 (its colour may have been rounded by the canvas). */
function hasTranslucency(rgba: Uint8ClampedArray): boolean {
  for (let j = 3; j < rgba.length; j += 4) if (rgba[j]! < 255) return true;
  return false;
}

/** Same alpha everywhere and the same colour on every opaque pixel. */
function agreesWhereOpaque(canvas: Uint8ClampedArray, exact: Uint8Array): boolean {
  if (canvas.length !== exact.length) return false;
  for (let j = 0; j < canvas.length; j += 4) {
    if (canvas[j + 3] !== exact[j + 3]) return false;
    if (canvas[j + 3] === 255 && (canvas[j] !== exact[j] || canvas[j + 1] !== exact[j + 1] || canvas[j + 2] !== exact[j + 2])) return false;
  }
  return true;
}

/** The name of an input in messages. */
export function webImageName(input: WebImageInput, i: number): string {
  if (typeof input === "string") return input.length > 80 ? `${input.slice(0, 80)}…` : input;
  if (input instanceof URL) return input.href;
  if (typeof File !== "undefined" && input instanceof File) return input.name || `image ${i}`;
  return `image ${i}`;
}

/** Any browser image input → RGB pixels. URLs are fetched; bad inputs are a SiglipError naming them. */
export async function toRgbImage(input: WebImageInput, name: string, maxPixels = WEB_MAX_PIXELS): Promise<RgbImage> {
  if (isRgbImage(input)) return input;
  if (typeof ImageData !== "undefined" && input instanceof ImageData) return rgbaToRgb(input.data, input.width, input.height);
  if (typeof ImageBitmap !== "undefined" && input instanceof ImageBitmap) return bitmapPixels(input, name);
  if (input instanceof Blob) return decodeBlob(input, name, maxPixels);
  if (typeof input === "string" || input instanceof URL) {
    let r: Response;
    try {
      r = await fetch(input);
    } catch (e) {
      throw imageError(name, `cannot fetch (${e instanceof Error ? e.message : String(e)})`, e);
    }
    if (!r.ok) throw imageError(name, `HTTP ${r.status}`);
    return decodeBlob(await r.blob(), name, maxPixels);
  }
  throw imageError(name, "expected a Blob, File, ImageBitmap, ImageData, URL or {width, height, data} RGB pixels");
}
