/**
 * Image–caption pairs for training: a folder plus a JSONL or CSV manifest, or pairs held in
 * memory (the synthetic dataset). Batches are assembled by index, so the data order is a pure
 * function of (seed, step) and a resumed run sees exactly the batches it would have seen.
 *
 * Rows may carry regions for the LocCa objective (src/train/trainer.ts): `regions` is a list of
 * `{box: [x0, y0, x1, y1], text}` in the image's original pixels (after EXIF orientation). A
 * dataset with the {@link LoccaData} side gives each row's caption, regions and image size; the
 * decoder's texts are tokenised without lowercasing ({@link decoderTokenizer}).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { SiglipError } from "../errors.js";
import { decodeImage, preprocessFixed, type ImageProcessorConfig } from "../preprocess/index.js";
import type { PixelBox } from "../tasks/boxes.js";
import type { ImageInput } from "../tasks/image-pipeline.js";
import type { GemmaTokenizer } from "../tokenizer/gemma.js";
import { readCoco } from "./coco.js";
import { Rng, mixSeed } from "./rng.js";
import type { RegionRow } from "./scenes/locca.js";
import type { Batch } from "./session.js";
import type { DecoderSpecials } from "./locca-batch.js";
import type { PatchBudgets } from "./naflex-data.js";

/** One box–text pair of an image (pixels of the original image). */
export interface Region {
  box: PixelBox;
  text: string;
}

/** What the LocCa objective needs of a dataset. */
export interface LoccaData {
  /** Caption, regions (boxes clamped to the image) and size of row i. */
  row(i: number): Promise<{ row: RegionRow; width: number; height: number }>;
  /** Content ids of a decoder text (no BOS / EOS). */
  tokenize(text: string): number[];
  specials: DecoderSpecials;
}

/** Gemma's `<bos>` id (SigLIP 2 tokenizers: pad 0, eos 1, bos 2). */
export const GEMMA_BOS = 2;

/** The decoder's tokenisation: Gemma content ids, not lowercased (the prompts "Cap:", "ARef:", "GCap:" keep their case). */
export function decoderTokenizer(tok: GemmaTokenizer, vocab: number): Pick<LoccaData, "tokenize" | "specials"> {
  return { tokenize: (t) => tok.tokenize(t, { lowercase: false }), specials: { pad: tok.padId, eos: tok.eosId, bos: GEMMA_BOS, mask: vocab } };
}

/**
 * Clamp row `source`'s boxes to a `width` × `height` image; a box with no area left (wholly
 * outside the image) is an error naming the row.
 */
export function clampRegions(regions: readonly Region[], width: number, height: number, source: string): Region[] {
  return regions.map((r, k) => {
    const [x0, y0, x1, y1] = r.box;
    const c: PixelBox = [Math.min(Math.max(x0, 0), width), Math.min(Math.max(y0, 0), height), Math.min(Math.max(x1, 0), width), Math.min(Math.max(y1, 0), height)];
    if (!(c[0] < c[2] && c[1] < c[3])) {
      throw new SiglipError("usage", `${source}: region ${k} box [${r.box.join(", ")}] lies outside the ${width}×${height} image`, { subject: source });
    }
    return { box: c, text: r.text };
  });
}

/**
 * Check one `regions` value of a manifest row: an array of `{box: [x0, y0, x1, y1], text}`,
 * finite coordinates, x0 < x1 and y0 < y1, a non-empty text. Returns the reason, or null.
 */
export function regionProblem(v: unknown): string | null {
  if (!Array.isArray(v)) return `"regions" is ${describe(v)}, not an array`;
  for (const [k, r] of v.entries()) {
    if (r === null || typeof r !== "object" || Array.isArray(r)) return `region ${k} is ${describe(r)}, not an object {box, text}`;
    const { box, text } = r as { box?: unknown; text?: unknown };
    if (!Array.isArray(box) || box.length !== 4) return `region ${k}: "box" must be [x0, y0, x1, y1] (4 numbers)`;
    for (const c of box) if (typeof c !== "number" || !Number.isFinite(c)) return `region ${k}: box coordinate ${JSON.stringify(c) ?? String(c)} is not a finite number`;
    const [x0, y0, x1, y1] = box as number[];
    if (!(x0! < x1!)) return `region ${k}: box [${box.join(", ")}] needs x0 < x1`;
    if (!(y0! < y1!)) return `region ${k}: box [${box.join(", ")}] needs y0 < y1`;
    if (typeof text !== "string" || text.trim() === "") return `region ${k}: "text" must be a non-empty string`;
  }
  return null;
}

/** A dataset of n pairs that can assemble any batch. */
export interface PairDataset {
  readonly size: number;
  /** The caption of pair i (for logging and evaluation). */
  caption(i: number): string;
  /** NaFlex datasets (./naflex-data.ts) take each example's patch budget and the run's budgets (for the padded length). */
  batch(indices: readonly number[], naflex?: { budgets: readonly number[]; lengths: PatchBudgets }): Promise<Batch>;
  /** Present when the rows can feed the LocCa objective. */
  readonly locca?: LoccaData;
  // --- curation and language mix (./curate.ts, ./lang-mix.ts) ---
  /** The original image of pair i, for a curation teacher that preprocesses it its own way. */
  image?(i: number): ImageInput;
  /** The language of every pair (manifest `lang`); absent when some row has none. */
  readonly langs?: readonly string[];
}

/** Indices of global batch `step` (0-based): epochs are seeded permutations; incomplete last batches are dropped. */
export function batchIndices(size: number, batch: number, seed: number, step: number): number[] {
  const perEpoch = Math.floor(size / batch);
  if (perEpoch < 1) throw new SiglipError("usage", `the dataset has ${size} pairs, fewer than one batch of ${batch}`);
  const epoch = Math.floor(step / perEpoch);
  const k = step % perEpoch;
  return new Rng(mixSeed(seed, epoch)).permutation(size).slice(k * batch, (k + 1) * batch);
}

/** Tokenize captions to a flat (n, T) int64 array. */
export function tokenizeCaptions(tok: GemmaTokenizer, captions: readonly string[], length: number, lowercase = true): BigInt64Array {
  const ids = tok.encodeBatch([...captions], { length, lowercase });
  return BigInt64Array.from(ids, (v) => BigInt(v));
}

/** Pairs whose pixels are already preprocessed, (3, R, R) each. */
export class InMemoryPairs implements PairDataset {
  private readonly ids: BigInt64Array;
  readonly locca?: LoccaData;
  readonly langs?: readonly string[];
  private readonly originals?: readonly ImageInput[];

  /**
   * With `o.locca`, the rows also feed the LocCa objective: `regions[i]` (boxes in the pixels of
   * an image of `size`, default the (R, R) of the pixels) and the decoder vocabulary size.
   * `o.images`: the original images (for a curation teacher); `o.langs`: each pair's language.
   */
  constructor(
    private readonly pixels: Float32Array[], private readonly captions: string[], tok: GemmaTokenizer, private readonly seqLen: number,
    o?: { locca?: { vocab: number; regions?: ReadonlyArray<readonly Region[]>; size?: number }; images?: readonly ImageInput[]; langs?: readonly string[] },
  ) {
    if (pixels.length !== captions.length) throw new Error("internal: pixels and captions differ in length");
    if (o?.images && o.images.length !== pixels.length) throw new Error("internal: images and pixels differ in length");
    if (o?.langs && o.langs.length !== pixels.length) throw new Error("internal: langs and pixels differ in length");
    if (o?.images) this.originals = o.images;
    if (o?.langs) this.langs = o.langs;
    this.ids = tokenizeCaptions(tok, captions, seqLen);
    const lo = o?.locca;
    if (lo) {
      const side = lo.size ?? Math.round(Math.sqrt(pixels[0]!.length / 3));
      this.locca = {
        ...decoderTokenizer(tok, lo.vocab),
        row: async (i) => ({ row: { text: captions[i]!, regions: lo.regions?.[i] ?? [] }, width: side, height: side }),
      };
    }
  }

  get size(): number {
    return this.pixels.length;
  }

  caption(i: number): string {
    return this.captions[i]!;
  }

  get image(): ((i: number) => ImageInput) | undefined {
    const o = this.originals;
    return o ? (i) => o[i]! : undefined;
  }

  async batch(indices: readonly number[]): Promise<Batch> {
    const per = this.pixels[0]!.length;
    const px = new Float32Array(indices.length * per);
    const ids = new BigInt64Array(indices.length * this.seqLen);
    indices.forEach((idx, j) => {
      px.set(this.pixels[idx]!, j * per);
      ids.set(this.ids.subarray(idx * this.seqLen, (idx + 1) * this.seqLen), j * this.seqLen);
    });
    return { pixelValues: px, inputIds: ids, n: indices.length };
  }
}

/** One manifest record. */
export interface PairRecord {
  image: string;
  caption: string;
  /** Where it was read: `FILE:LINE` (for error messages). */
  source?: string;
  /** Boxes with texts (LocCa), in the image's original pixels. */
  regions?: Region[];
  /** Language code of the caption (manifest `lang`, for --lang-mix). */
  lang?: string;
}

const IMAGE_KEYS = ["image", "file_name", "file", "path", "filename"];
const CAPTION_KEYS = ["caption", "text", "label"];
const MANIFEST_NAMES = ["metadata.jsonl", "captions.jsonl", "metadata.csv", "captions.csv"];

/** Split one CSV line (RFC 4180 quotes, "" escapes); null when a quote is not closed. */
function csvFields(line: string): string[] | null {
  const out: string[] = [];
  let cur = "";
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (q) {
      if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; } else if (ch === '"') q = false;
      else cur += ch;
    } else if (ch === '"') q = true;
    else if (ch === ",") { out.push(cur); cur = ""; } else cur += ch;
  }
  out.push(cur);
  return q ? null : out;
}

function describe(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : `a ${typeof v}`;
}

/**
 * Read a manifest: `DATA` is a .jsonl / .csv file, or a folder holding metadata.jsonl,
 * captions.jsonl, metadata.csv or captions.csv. JSONL lines are objects with an image key
 * (image, file_name, file, path, filename) and a caption key (caption, text, label), both
 * strings; CSV files have a header row with the same names (quoted fields may not span lines).
 * Image paths are relative to the manifest's folder. Blank lines are skipped; errors name the
 * file and line. A manifest without any pair is an error. JSONL rows may have `regions` (see
 * {@link regionProblem}). `DATA` ending in `.json` (or a comma list of them, e.g.
 * `captions.json,instances.json`) is read as COCO annotations (./coco.ts). `o.images`: the
 * folder that relative image paths are under (default: the manifest's folder).
 */
export function readManifest(data: string, o: { images?: string } = {}): PairRecord[] {
  const parts = data.split(",");
  if (parts.every((f) => f.toLowerCase().endsWith(".json"))) return readCoco(parts, o.images);
  let file = data;
  if (existsSync(data) && statSync(data).isDirectory()) {
    const found = MANIFEST_NAMES.map((n) => join(data, n)).find((p) => existsSync(p));
    if (!found) throw new SiglipError("usage", `${data}: no manifest found (expected one of ${MANIFEST_NAMES.join(", ")})`, { subject: data });
    file = found;
  }
  if (!existsSync(file)) throw new SiglipError("usage", `${file}: no such file`, { subject: file });
  if (statSync(file).isDirectory()) throw new SiglipError("usage", `${file}: is a directory, not a manifest`, { subject: file });
  const base = o.images ?? dirname(resolve(file));
  let text: string;
  try {
    text = readFileSync(file, "utf8").replace(/^\ufeff/, "");
  } catch (e) {
    throw new SiglipError("usage", `${file}: cannot read the manifest (${(e as Error).message})`, { subject: file });
  }
  const lines = text.split(/\r?\n/).map((l, i) => ({ l, n: i + 1 })).filter(({ l }) => l.trim() !== "");
  const bad = (n: number, why: string): SiglipError => new SiglipError("usage", `${file}:${n}: ${why}`, { subject: file });
  const pick = (obj: Record<string, unknown>, keys: string[], n: number, what: string): string => {
    for (const k of keys) {
      if (!(k in obj)) continue;
      if (typeof obj[k] !== "string") throw bad(n, `the ${what} field "${k}" is ${describe(obj[k])}, not a string`);
      return obj[k] as string;
    }
    throw bad(n, `no ${what} field (expected one of ${keys.join(", ")})`);
  };
  const rows: Array<{ row: Record<string, unknown>; n: number }> = [];
  if (file.toLowerCase().endsWith(".csv")) {
    const head = lines[0];
    const header = head ? csvFields(head.l)?.map((h) => h.trim()) : [];
    if (!header) throw bad(head!.n, "unterminated quote in the header");
    for (const { l, n } of lines.slice(1)) {
      const f = csvFields(l);
      if (!f) throw bad(n, "unterminated quote (quoted fields may not span lines)");
      rows.push({ row: Object.fromEntries(header.map((h, j) => [h, f[j] ?? ""])), n });
    }
  } else {
    for (const { l, n } of lines) {
      let obj: unknown;
      try {
        obj = JSON.parse(l);
      } catch (e) {
        throw bad(n, `not valid JSON (${(e as Error).message})`);
      }
      if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw bad(n, `not a JSON object (${describe(obj)})`);
      rows.push({ row: obj as Record<string, unknown>, n });
    }
  }
  if (rows.length === 0) throw new SiglipError("usage", `${file}: no image–caption pairs in the manifest`, { subject: file });
  return rows.map(({ row, n }) => {
    const img = pick(row, IMAGE_KEYS, n, "image");
    if (img.trim() === "") throw bad(n, "the image path is empty");
    const rec: PairRecord = { image: isAbsolute(img) ? img : join(base, img), caption: pick(row, CAPTION_KEYS, n, "caption"), source: `${file}:${n}` };
    if ("regions" in row) {
      const why = regionProblem(row["regions"]);
      if (why) throw bad(n, why);
      rec.regions = (row["regions"] as Array<{ box: number[]; text: string }>).map((r) => ({ box: [r.box[0]!, r.box[1]!, r.box[2]!, r.box[3]!], text: r.text }));
    }
    if ("lang" in row && row["lang"] !== "") {
      const l = row["lang"];
      if (typeof l !== "string" || l.trim() === "") throw bad(n, `"lang" is ${describe(l)}, not a language code string`);
      rec.lang = l.trim();
    }
    return rec;
  });
}

/** Check that every record's image is a readable regular file; throws one line naming the first problem and how many more there are. */
export function checkManifestImages(records: readonly PairRecord[]): void {
  const problems: string[] = [];
  for (const r of records) {
    let why: string | null = null;
    try {
      const st = statSync(r.image);
      if (st.isDirectory()) why = "is a directory";
      else if (!st.isFile()) why = "is not a regular file";
      else if (st.size === 0) why = "is empty (0 bytes)";
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      why = code === "ENOENT" || code === "ENOTDIR" ? "no such file" : code === "EACCES" ? "permission denied" : (e as Error).message;
    }
    if (why) problems.push(`${r.source ? `${r.source}: ` : ""}image ${r.image}: ${why}`);
  }
  if (problems.length > 0) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more image${problems.length > 2 ? "s" : ""} with problems)` : "";
    throw new SiglipError("usage", `${problems[0]}${more}`, { subject: records[0]?.source ?? "" });
  }
}

/** Pairs read from image files; each image is decoded and preprocessed once, then kept. */
export class FilePairs implements PairDataset {
  private readonly ids: BigInt64Array;
  private readonly cache = new Map<number, Float32Array>();
  /** Original width and height of each decoded image. */
  private readonly sizes = new Map<number, [number, number]>();
  readonly locca?: LoccaData;
  readonly langs?: readonly string[];

  /** With `decoderVocab`, the rows also feed the LocCa objective (regions from the records). */
  constructor(private readonly records: PairRecord[], private readonly processor: ImageProcessorConfig, tok: GemmaTokenizer, private readonly seqLen: number, lowercase = true, decoderVocab?: number) {
    this.ids = tokenizeCaptions(tok, records.map((r) => r.caption), seqLen, lowercase);
    if (records.every((r) => r.lang !== undefined)) this.langs = records.map((r) => r.lang!);
    if (decoderVocab !== undefined) {
      this.locca = {
        ...decoderTokenizer(tok, decoderVocab),
        row: async (i) => {
          await this.pixels(i);
          const [width, height] = this.sizes.get(i)!;
          const r = this.records[i]!;
          return { row: { text: r.caption, regions: clampRegions(r.regions ?? [], width, height, r.source ?? r.image) }, width, height };
        },
      };
    }
  }

  get size(): number {
    return this.records.length;
  }

  caption(i: number): string {
    return this.records[i]!.caption;
  }

  /** The image file of pair i. */
  image(i: number): ImageInput {
    return this.records[i]!.image;
  }

  private async pixels(i: number): Promise<Float32Array> {
    let p = this.cache.get(i);
    if (!p) {
      const img = await decodeImage(this.records[i]!.image);
      p = preprocessFixed(img, this.processor);
      this.cache.set(i, p);
      this.sizes.set(i, [img.width, img.height]);
    }
    return p;
  }

  async batch(indices: readonly number[]): Promise<Batch> {
    const first = await this.pixels(indices[0]!);
    const px = new Float32Array(indices.length * first.length);
    const ids = new BigInt64Array(indices.length * this.seqLen);
    for (let j = 0; j < indices.length; j++) {
      const idx = indices[j]!;
      px.set(await this.pixels(idx), j * first.length);
      ids.set(this.ids.subarray(idx * this.seqLen, (idx + 1) * this.seqLen), j * this.seqLen);
    }
    return { pixelValues: px, inputIds: ids, n: indices.length };
  }
}
