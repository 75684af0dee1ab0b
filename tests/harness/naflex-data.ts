/** A small mixed-aspect image–caption folder for NaFlex training runs (PNGs + metadata.jsonl). */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { synthesizeMixed, toRgb8 } from "../../src/train/synthetic.js";
import { tempDir } from "./files.js";

/** The NaFlex test checkpoint: patch 4, a 16×16 learned position grid. */
export const NAFLEX_SIZES = [[16, 24], [24, 16], [20, 20]] as const;

/** What a manifest row may carry besides the image and caption. */
export interface NaflexPairExtras {
  /** LocCa regions of pair i (boxes in its pixels, width × height). */
  regions?: (i: number, width: number, height: number, caption: string) => Array<{ box: number[]; text: string }>;
  /** The language of pair i. */
  lang?: (i: number) => string;
}

/** Write `n` scenes of mixed aspect ratios (16×24, 24×16, 20×20) into a new folder; returns it. */
export async function writeNaflexPairs(n = 12, seed = 5, extras: NaflexPairExtras = {}): Promise<string> {
  const dir = tempDir("siglip2-naflex-data-");
  const pairs = synthesizeMixed(n, NAFLEX_SIZES, seed);
  const lines: string[] = [];
  for (const [i, p] of pairs.entries()) {
    const img = toRgb8(p.pixels, p.width, p.height);
    await sharp(Buffer.from(img.data), { raw: { width: img.width, height: img.height, channels: 3 } }).png().toFile(join(dir, `img${i}.png`));
    const row: Record<string, unknown> = { file_name: `img${i}.png`, text: p.caption };
    if (extras.regions) row["regions"] = extras.regions(i, p.width, p.height, p.caption);
    if (extras.lang) row["lang"] = extras.lang(i);
    lines.push(JSON.stringify(row));
  }
  writeFileSync(join(dir, "metadata.jsonl"), `${lines.join("\n")}\n`);
  return dir;
}
