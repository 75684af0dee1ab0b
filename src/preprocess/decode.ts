/**
 * Image decoding (spec §4.1): encoded file or bytes → RGB uint8 (HWC), with sharp/libvips.
 *
 * Only decoding happens here: sharp never resizes. EXIF orientation is applied (like
 * `transformers.image_utils.load_image` does for paths) and the result is converted to
 * RGB the way PIL's `convert("RGB")` does: grey → replicated, palette → looked up, alpha
 * dropped without compositing. Embedded ICC profiles are ignored (PIL ignores them too).
 */
import { readFile, stat } from "node:fs/promises";
import sharp, { type Metadata, type OutputInfo } from "sharp";
import { SiglipError } from "../errors.js";
import { fileKind } from "../weights/safetensors.js";

/** A decoded image: `height` × `width` RGB pixels, uint8, row-major HWC (`data.length === height * width * 3`). */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Default decompression-bomb guard: sharp's own default, 0x3FFF × 0x3FFF pixels (about 268 megapixels). */
export const DEFAULT_MAX_PIXELS = 0x3fff * 0x3fff;

export interface DecodeOptions {
  /** Name used in error messages (defaults to the path, or `"<image bytes>"` for bytes). */
  name?: string;
  /** Refuse images with more than this many pixels (width × height, from the header). `Infinity` disables the check. */
  maxPixels?: number;
}

/** Containers accepted by {@link decodeImage} (sharp's `metadata().format` names). */
const SUPPORTED_FORMATS = new Set(["jpeg", "png", "webp", "gif", "tiff", "heif"]);

function imageError(name: string, problem: string, cause?: unknown): SiglipError {
  return new SiglipError("image", `cannot read image ${name}: ${problem}`, {
    subject: name,
    ...(cause !== undefined ? { cause } : {}),
  });
}

function describeSharpError(name: string, e: unknown, maxPixels: number): SiglipError {
  const msg = e instanceof Error ? e.message : String(e);
  if (/unsupported image format/i.test(msg)) {
    return imageError(name, "not an image or an unsupported format (supported: JPEG, PNG, WebP, GIF, AVIF, TIFF)", e);
  }
  if (/pixel limit/i.test(msg)) {
    return imageError(name, `too many pixels (limit ${maxPixels}; raise maxPixels to allow larger images)`, e);
  }
  if (/corrupt header/i.test(msg)) return imageError(name, "corrupt image header (invalid size or format fields)", e);
  const detail = msg.replace(/\s+/g, " ").replace(/[\s:]+$/, "").trim();
  return imageError(name, `corrupt or truncated image data${detail ? ` (${detail})` : ""}`, e);
}

/** Largest encoded image file read (the pixel limit, checked after the header, bounds the decoded size). */
const MAX_IMAGE_FILE_BYTES = 2 ** 31;

async function readInput(input: string | Uint8Array, name: string): Promise<Uint8Array> {
  if (typeof input !== "string") {
    if (!(input instanceof Uint8Array)) throw imageError(name, "expected a file path or a Uint8Array of encoded bytes");
    if (input.length === 0) throw imageError(name, "empty data (0 bytes)");
    return input;
  }
  let size: number;
  try {
    const st = await stat(input);
    if (!st.isFile()) throw imageError(name, `is ${fileKind(st)}, not an image file`);
    if (st.size > MAX_IMAGE_FILE_BYTES) throw imageError(name, `file of ${st.size} bytes is larger than the ${MAX_IMAGE_FILE_BYTES / 2 ** 30} GiB an encoded image may have`);
    size = st.size;
  } catch (e) {
    if (e instanceof SiglipError) throw e;
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (code === "ENOENT" || code === "ENOTDIR") throw imageError(name, "file not found", e);
    if (code === "EACCES" || code === "EPERM") throw imageError(name, "permission denied", e);
    throw imageError(name, `cannot access the file (${e instanceof Error ? e.message : String(e)})`, e);
  }
  if (size === 0) throw imageError(name, "empty file (0 bytes)");
  try {
    const buf = await readFile(input);
    if (buf.length === 0) throw imageError(name, "empty file (0 bytes)");
    return buf;
  } catch (e) {
    if (e instanceof SiglipError) throw e;
    throw imageError(name, `cannot read the file (${e instanceof Error ? e.message : String(e)})`, e);
  }
}

/** (a·b)/255 rounded, as Pillow's MULDIV255 macro computes it. */
function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/** Pillow's `cmyk2rgb` (convert("RGB") of a CMYK image): naive, no colour profile; extra channels ignored. */
function cmykToRgb(src: Uint8Array, channels: number, out: Uint8Array, n: number): void {
  for (let i = 0, j = 0; i < n; i++, j += channels) {
    const nk = 255 - src[j + 3]!;
    for (let c = 0; c < 3; c++) {
      const v = nk - mulDiv255(src[j + c]!, nk);
      out[3 * i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
}

/**
 * Decode a file path or encoded bytes (JPEG, PNG, WebP, GIF (first frame), AVIF, TIFF (first
 * page)) to RGB uint8, applying EXIF orientation and converting like PIL's
 * `convert("RGB")`: grey → replicated, palette → looked up, alpha dropped without
 * compositing, CMYK → RGB with PIL's naive formula, 16-bit → 8-bit (libvips' conversion,
 * not PIL's clipping for 16-bit grey). Every problem with the input throws a
 * {@link SiglipError} with code `"image"` whose message names the file (`options.name`).
 */
export async function decodeImage(input: string | Uint8Array, options?: DecodeOptions): Promise<RgbImage> {
  const name = options?.name ?? (typeof input === "string" ? input : "<image bytes>");
  const maxPixels = options?.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(maxPixels > 0)) throw new RangeError(`maxPixels must be a positive number, got ${maxPixels}`);
  const bytes = await readInput(input, name);
  const meta = await checkHeader(bytes, name, maxPixels);
  // CMYK (JPEG, TIFF): keep the stored ink values and convert like PIL (no colour management).
  const cmyk = meta.space === "cmyk";
  const { data, info } = await decodeRaw(bytes, name, maxPixels, cmyk);
  return toRgb(data, info, cmyk, name);
}

/** The header (no pixel limit, so a too-large image is reported with its size): format, size and pixel count checked. */
async function checkHeader(bytes: Uint8Array, name: string, maxPixels: number): Promise<Metadata> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { autoOrient: true, limitInputPixels: false, pages: 1, page: 0 }).metadata();
  } catch (e) {
    throw describeSharpError(name, e, maxPixels);
  }
  if (!SUPPORTED_FORMATS.has(meta.format) || (meta.format === "heif" && meta.compression !== "av1")) {
    const what = meta.format === "heif" ? `HEIF with ${meta.compression ?? "unknown"} compression` : meta.format;
    throw imageError(name, `unsupported format ${what} (supported: JPEG, PNG, WebP, GIF, AVIF, TIFF)`);
  }
  const w0 = meta.width ?? 0;
  const h0 = meta.height ?? 0;
  if (w0 <= 0 || h0 <= 0) throw imageError(name, `zero-size image (${w0}×${h0})`);
  if (w0 * h0 > maxPixels) {
    throw imageError(name, `too many pixels (${w0}×${h0} = ${w0 * h0}, limit ${maxPixels}; raise maxPixels to allow it)`);
  }
  return meta;
}

/** The first frame/page, EXIF-oriented, as raw 8-bit samples (ink values for CMYK). */
async function decodeRaw(bytes: Uint8Array, name: string, maxPixels: number, cmyk: boolean): Promise<{ data: Buffer; info: OutputInfo }> {
  const limit = Number.isFinite(maxPixels) ? Math.floor(maxPixels) : false;
  const open = () =>
    sharp(bytes, {
      autoOrient: true,
      ignoreIcc: true,
      failOn: "error", // like PIL: decoder warnings (e.g. extraneous JPEG bytes) pass, truncation and corruption fail
      limitInputPixels: limit,
      pages: 1,
      page: 0,
    });
  try {
    const pipeline = cmyk ? open().pipelineColourspace("cmyk").toColourspace("cmyk") : open();
    return await pipeline.raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw describeSharpError(name, e, maxPixels);
  }
}

/** Raw samples → RGB like PIL's `convert("RGB")`: grey replicated, alpha dropped (no compositing), CMYK naive. */
function toRgb(data: Buffer, info: OutputInfo, cmyk: boolean, name: string): RgbImage {
  const { width, height, channels } = info;
  if (width <= 0 || height <= 0) throw imageError(name, `zero-size image (${width}×${height})`);
  const n = width * height;
  if (data.length !== n * channels) {
    throw imageError(name, `decoder returned ${data.length} bytes for ${width}×${height}×${channels}`);
  }
  // RGB: sharp's buffer is the image's own, kept as it is (no copy of a 6 MP photo's 18 MB),
  // unless it is a view into a larger (pooled) allocation.
  if (!cmyk && channels === 3 && data.byteOffset === 0 && data.buffer.byteLength === data.length) {
    return { width, height, data: new Uint8Array(data.buffer) };
  }
  const out = new Uint8Array(n * 3);
  if (cmyk) {
    if (channels < 4) throw imageError(name, `CMYK image with ${channels} channels`);
    cmykToRgb(data, channels, out, n);
    return { width, height, data: out };
  }
  switch (channels) {
    case 1: // grey
    case 2: // grey + alpha: drop alpha
      for (let i = 0, j = 0; i < n; i++, j += channels) {
        const v = data[j]!;
        out[3 * i] = v;
        out[3 * i + 1] = v;
        out[3 * i + 2] = v;
      }
      break;
    case 3:
      out.set(data);
      break;
    case 4: // RGBA: drop alpha, no compositing
      for (let i = 0, j = 0; i < n; i++, j += 4) {
        out[3 * i] = data[j]!;
        out[3 * i + 1] = data[j + 1]!;
        out[3 * i + 2] = data[j + 2]!;
      }
      break;
    default:
      throw imageError(name, `unsupported number of channels (${channels})`);
  }
  return { width, height, data: out };
}
