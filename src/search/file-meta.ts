/**
 * What the filter columns of the index hold for one image file (see store.ts "Filter
 * columns"): its extension, its pixel size after EXIF orientation and its EXIF capture
 * time. sharp reads the header only (no decode); a file whose header says nothing keeps
 * NULLs (it is still indexed: the embedding decides, not this).
 */
import sharp from "sharp";
import { extOf, type FileMeta } from "./store.js";

/** The filter columns of one file; never throws (unknown fields stay undefined). */
export async function readFileMeta(path: string): Promise<FileMeta> {
  const meta: FileMeta = { ext: extOf(path) };
  try {
    const m = await sharp(path, { failOn: "none" }).metadata();
    const w = m.autoOrient?.width ?? m.width;
    const h = m.autoOrient?.height ?? m.height;
    if (Number.isInteger(w) && Number.isInteger(h)) {
      meta.width = w;
      meta.height = h;
    }
    const taken = m.exif ? exifTakenMs(m.exif) : undefined;
    if (taken !== undefined) meta.takenMs = taken;
  } catch {
    // an unreadable header: the embedding step reports the file
  }
  return meta;
}

const TAG_EXIF_IFD = 0x8769;
const TAG_DATETIME_ORIGINAL = 0x9003;
const TAG_OFFSET_TIME_ORIGINAL = 0x9011;
const TYPE_ASCII = 2;
const TYPE_LONG = 4;

/**
 * EXIF DateTimeOriginal (with OffsetTimeOriginal when present; else the wall-clock time is
 * read as UTC) as ms since the epoch, from sharp's `metadata().exif` buffer ("Exif\0\0" and
 * a TIFF structure). Undefined when absent or malformed; every offset is bounds-checked.
 */
export function exifTakenMs(exif: Uint8Array): number | undefined {
  let base = 0;
  if (exif.length >= 6 && String.fromCharCode(...exif.subarray(0, 4)) === "Exif") base = 6;
  const b = Buffer.from(exif.buffer, exif.byteOffset, exif.byteLength);
  if (b.length < base + 8) return undefined;
  const order = b.toString("latin1", base, base + 2);
  if (order !== "II" && order !== "MM") return undefined;
  const le = order === "II";
  const u16 = (o: number) => (o + 2 <= b.length ? (le ? b.readUInt16LE(o) : b.readUInt16BE(o)) : -1);
  const u32 = (o: number) => (o + 4 <= b.length ? (le ? b.readUInt32LE(o) : b.readUInt32BE(o)) : -1);
  /** The entries of the IFD at TIFF offset `off`: tag → absolute offset of its entry. */
  const ifd = (off: number): Map<number, number> => {
    const out = new Map<number, number>();
    const at = base + off;
    const n = u16(at);
    for (let i = 0; i >= 0 && i < n && i < 1000; i++) {
      const e = at + 2 + 12 * i;
      if (e + 12 > b.length) break;
      out.set(u16(e), e);
    }
    return out;
  };
  const ascii = (entry: number | undefined): string | undefined => {
    if (entry === undefined || u16(entry + 2) !== TYPE_ASCII) return undefined;
    const count = u32(entry + 4);
    if (count < 0 || count > 64) return undefined;
    const start = count <= 4 ? entry + 8 : base + u32(entry + 8);
    if (start < 0 || start + count > b.length) return undefined;
    return b.toString("latin1", start, start + count).replace(/\0.*$/s, "").trim();
  };
  const ifd0 = u32(base + 4);
  if (ifd0 < 8) return undefined;
  const ptr = ifd(ifd0).get(TAG_EXIF_IFD);
  if (ptr === undefined || u16(ptr + 2) !== TYPE_LONG) return undefined;
  const exifIfd = ifd(u32(ptr + 8));
  return parseExifDate(ascii(exifIfd.get(TAG_DATETIME_ORIGINAL)), ascii(exifIfd.get(TAG_OFFSET_TIME_ORIGINAL)));
}

/** "YYYY:MM:DD HH:MM:SS" (+ an optional "+HH:MM" offset) → ms since the epoch, or undefined. */
export function parseExifDate(dt: string | undefined, offset?: string): number | undefined {
  const m = dt ? /^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})/.exec(dt) : null;
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  if (y < 1800 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return undefined;
  let ms = Date.UTC(y, mo - 1, d, h, mi, s);
  const o = offset ? /^([+-])(\d{2}):(\d{2})$/.exec(offset) : null;
  if (o) ms -= (o[1] === "-" ? -1 : 1) * (Number(o[2]) * 60 + Number(o[3])) * 60_000;
  return Number.isFinite(ms) ? ms : undefined;
}
