/**
 * Photo-like JPEGs for the benchmarks: a smooth colour field plus texture, which compresses
 * like a photo (the generator of bench/run.ts's 64-photo folder, with the sizes as a parameter).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";

/** bench/run.ts's mix: 0.16 to 1.9 MP. */
export const PHOTO_SIZES: ReadonlyArray<readonly [number, number]> = [[640, 480], [480, 640], [1024, 768], [800, 800], [1280, 720], [300, 500], [1600, 1200], [500, 333]];

/** The raw RGB pixels of photo `i` at w×h. */
function photoPixels(w: number, h: number, i: number): Buffer {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const k = (y * w + x) * 3;
    raw[k] = (x * 255 / w + i * 7) & 255;
    raw[k + 1] = (y * 255 / h + i * 13) & 255;
    raw[k + 2] = ((x ^ y) + i) & 255;
  }
  return raw;
}

/**
 * Write photos `photo_<i>.jpg` for i in [from, to) into `dir` (kept when already there), photo i
 * at `sizes[i % sizes.length]`; returns their paths. `sub`: files per sub-folder (0: none).
 */
export async function writePhotos(dir: string, from: number, to: number, sizes: ReadonlyArray<readonly [number, number]> = PHOTO_SIZES, sub = 0): Promise<string[]> {
  const paths: string[] = [];
  for (let i = from; i < to; i++) {
    const folder = sub > 0 ? join(dir, `d${String(Math.floor(i / sub)).padStart(3, "0")}`) : dir;
    const p = join(folder, `photo_${String(i).padStart(5, "0")}.jpg`);
    paths.push(p);
    if (existsSync(p)) continue;
    mkdirSync(folder, { recursive: true });
    const [w, h] = sizes[i % sizes.length]!;
    await sharp(photoPixels(w, h, i), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 88 }).toFile(p);
  }
  return paths;
}
