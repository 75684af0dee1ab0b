/**
 * NaFlex training data (model_type "siglip2"): every example gets its own patch budget, drawn
 * uniformly from the run's budgets (`--max-patches` list or range) by an RNG seeded with
 * (seed, step), so a resumed run draws the same budgets. Each image is resized by the NaFlex
 * pipeline (src/preprocess/naflex.ts: aspect ratio kept, the largest size within its budget) and
 * patchified; its grid is its `spatial_shapes` row.
 *
 * Batching: a micro-batch keeps the trainer's seeded random order and is PADDED to one length
 * with masks (not grouped by grid). Why: (1) the batch order stays a pure function of (seed, step)
 * — grouping by grid would couple batch composition to aspect ratio, so the sigmoid loss would
 * only ever contrast images of one shape (a shortcut the paper's batches do not offer; big_vision
 * pads every image to the sequence length too); (2) the key mask makes padding exact — valid
 * outputs do not depend on padding rows (tests/naflex-train.test.ts puts random values there). The
 * cost is the padded rows; NaFlex's size search fills each budget nearly completely. Training
 * graphs have static shapes, so the padded length is the longest example rounded up to a multiple
 * of {@link LENGTH_GRANULE} (at most the largest budget): one graph per length, a handful per run.
 */
import { SiglipError } from "../errors.js";
import { preprocessNaflex, type NaflexPatches, type NaflexProcessorConfig } from "../preprocess/naflex.js";
import type { RgbImage } from "../preprocess/decode.js";
import type { ImageInput } from "../tasks/image-pipeline.js";
import type { GemmaTokenizer } from "../tokenizer/gemma.js";
import { clampRegions, decoderTokenizer, tokenizeCaptions, type LoccaData, type PairDataset, type Region } from "./data.js";
import type { Rng } from "./rng.js";
import type { Batch } from "./session.js";

/** Padded lengths are multiples of this (bounding the number of training graphs of a run). */
export const LENGTH_GRANULE = 16;

/** The patch budgets of a run: a list, or every integer of a range. */
export type PatchBudgets = { list: readonly number[] } | { min: number; max: number };

/** Parse `--max-patches`: "64,128,256" (a list) or "64-256" (a range). One line on a bad value. */
export function parsePatchBudgets(text: string): PatchBudgets {
  const bad = (why: string): never => {
    throw new SiglipError("usage", `--max-patches ${JSON.stringify(text)}: ${why} (expected a list like 64,128,256 or a range like 64-256)`);
  };
  const int = (s: string): number => {
    const t = s.trim();
    if (!/^\d+$/.test(t)) bad(`${JSON.stringify(t)} is not a positive integer`);
    const v = Number(t);
    if (v < 1 || v > 65536) bad(`${v} is outside 1…65536`);
    return v;
  };
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  if (m) {
    const [min, max] = [int(m[1]!), int(m[2]!)];
    if (min > max) bad(`the range ${min}-${max} is empty`);
    return { min, max };
  }
  if (text.trim() === "") bad("empty");
  return { list: [...new Set(text.split(",").map(int))].sort((a, b) => a - b) };
}

/** The largest budget of a run. */
export function maxBudget(b: PatchBudgets): number {
  return "list" in b ? b.list[b.list.length - 1]! : b.max;
}

/** One budget, uniformly. */
export function drawBudget(b: PatchBudgets, rng: Rng): number {
  return "list" in b ? b.list[rng.int(b.list.length)]! : b.min + rng.int(b.max - b.min + 1);
}

/** The padded length of a micro-batch whose longest example has `longest` patches. */
export function paddedLength(longest: number, b: PatchBudgets): number {
  return Math.min(maxBudget(b), Math.ceil(longest / LENGTH_GRANULE) * LENGTH_GRANULE);
}

/** Pad patchified images to `length` rows: patches (n, L, F) with zero rows, grids, key mask. */
export function padNaflex(images: readonly NaflexPatches[], length: number): Pick<Batch, "pixelValues" | "naflex"> {
  const F = images[0]!.patches.length / (images[0]!.gridH * images[0]!.gridW);
  const n = images.length;
  const px = new Float32Array(n * length * F);
  const spatial = new BigInt64Array(2 * n);
  const mask = new Int32Array(n * length);
  images.forEach((p, j) => {
    const k = p.gridH * p.gridW;
    if (k > length) throw new Error(`internal: ${k} patches in a batch padded to ${length}`);
    px.set(p.patches, j * length * F);
    spatial[2 * j] = BigInt(p.gridH);
    spatial[2 * j + 1] = BigInt(p.gridW);
    mask.fill(1, j * length, j * length + k);
  });
  return { pixelValues: px, naflex: { length, spatialShapes: spatial, keyMask: mask } };
}

/** What a NaFlex dataset can feed besides the sigmoid loss. */
export interface NaflexPairsOptions {
  /**
   * The LocCa objective: the decoder's vocabulary size and each pair's regions (boxes in the
   * pixels of its original image, clamped to it; `sources[i]` names pair i in errors).
   */
  locca?: { vocab: number; regions?: ReadonlyArray<readonly Region[]>; sources?: readonly string[] };
  /** Each pair's language (the language mix, ./lang-mix.ts). */
  langs?: readonly string[];
  /** Pair i's original image as a curation teacher reads it (a path, bytes or pixels; ./curate.ts). */
  image?: (i: number) => ImageInput;
}

/** Image–caption pairs for NaFlex training: decoded images (kept), patchified per draw. */
export class NaflexPairs implements PairDataset {
  private readonly ids: BigInt64Array;
  private readonly cache = new Map<number, RgbImage>();
  readonly locca?: LoccaData;
  readonly langs?: readonly string[];
  readonly image?: (i: number) => ImageInput;

  /** `decodeAt(i)` decodes image i (called once per image). */
  constructor(
    private readonly decodeAt: (i: number) => Promise<RgbImage>,
    private readonly captions: readonly string[],
    private readonly processor: NaflexProcessorConfig,
    tok: GemmaTokenizer,
    private readonly seqLen: number,
    lowercase = true,
    o: NaflexPairsOptions = {},
  ) {
    this.ids = tokenizeCaptions(tok, captions, seqLen, lowercase);
    if (o.image) this.image = o.image;
    if (o.langs) {
      if (o.langs.length !== captions.length) throw new Error("internal: langs and captions differ in length");
      this.langs = o.langs;
    }
    const lo = o.locca;
    if (lo) {
      // boxes are in the original image's pixels: the decoder's box text is relative to it, as
      // `locate` maps answers back onto it (the NaFlex resize keeps the aspect ratio)
      this.locca = {
        ...decoderTokenizer(tok, lo.vocab),
        row: async (i) => {
          const img = await this.rgb(i);
          const regions = clampRegions(lo.regions?.[i] ?? [], img.width, img.height, lo.sources?.[i] ?? `pair ${i}`);
          return { row: { text: captions[i]!, regions }, width: img.width, height: img.height };
        },
      };
    }
  }

  get size(): number {
    return this.captions.length;
  }

  caption(i: number): string {
    return this.captions[i]!;
  }

  private async rgb(i: number): Promise<RgbImage> {
    let img = this.cache.get(i);
    if (!img) {
      img = await this.decodeAt(i);
      this.cache.set(i, img);
    }
    return img;
  }

  /** Image i patchified within `budget` patches. */
  async patches(i: number, budget: number): Promise<NaflexPatches> {
    return preprocessNaflex(await this.rgb(i), this.processor, budget);
  }

  /** Without `o.budgets`, every image gets the processor's `max_num_patches`. */
  async batch(indices: readonly number[], o?: { budgets: readonly number[]; lengths: PatchBudgets }): Promise<Batch> {
    const budgets = o?.budgets ?? indices.map(() => this.processor.maxNumPatches);
    const lengths = o?.lengths ?? { list: [this.processor.maxNumPatches] };
    const imgs = await Promise.all(indices.map((idx, j) => this.patches(idx, budgets[j]!)));
    const longest = Math.max(...imgs.map((p) => p.gridH * p.gridW));
    const ids = new BigInt64Array(indices.length * this.seqLen);
    indices.forEach((idx, j) => ids.set(this.ids.subarray(idx * this.seqLen, (idx + 1) * this.seqLen), j * this.seqLen));
    return { ...padNaflex(imgs, paddedLength(longest, lengths)), inputIds: ids, n: indices.length };
  }
}
