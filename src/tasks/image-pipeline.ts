/**
 * The image pipeline behind every image call of the library (SigLIP2.imageFeaturesSettled):
 * inputs in, per input either its features or the SiglipError that explains why it could not
 * be read, in input order.
 *
 * Scheduling (spec: batching is invisible in the results, see tests/naflex-parity.test.ts):
 *
 * - Windowed prefetch: inputs are decoded and preprocessed one window at a time; window k+1 is
 *   prepared (in worker threads, or on the main thread while onnxruntime computes) while
 *   window k runs through the tower.
 * - NaFlex grouping: a window holds {@link GROUP_WINDOW_BATCHES} batches; its images are
 *   sorted by sequence length and batched with similar lengths, each batch padded only to its
 *   longest image. Fixed-resolution windows are one batch.
 * - Settled results: a bad input (unreadable, too large, non-finite output) is a SiglipError
 *   in its slot, never a thrown error; other errors (bugs, onnxruntime failures) are thrown,
 *   and so is a SiglipError of code "workers" (the preprocessing worker threads cannot start:
 *   no image is to blame, the whole call fails with that one error).
 *
 * The checkpoint's preprocessing settings and the worker pool stay with the caller, which
 * passes a `prepare` function (one input → its model input).
 */
import { SiglipError, assertFinite } from "../errors.js";
import type { FixresVisionTower, VisionResult } from "../models/siglip.js";
import { NaflexVisionTower } from "../models/siglip2.js";
import type { RgbImage } from "../preprocess/index.js";
import type { Prepared } from "../preprocess/task.js";
import { l2normalize } from "./similarity.js";

/** An image: a file path, encoded bytes (JPEG, PNG, WebP, GIF, AVIF, TIFF) or decoded RGB pixels. */
export type ImageInput = string | Uint8Array | RgbImage;

/** Options for embedding calls. */
export interface EmbedOptions {
  /** L2-normalise (default true). `false` returns the raw pooled output. */
  normalize?: boolean;
}

/** Options for image calls. */
export interface ImageOptions extends EmbedOptions {
  /** NaFlex only: patch budget for this call. */
  maxPatches?: number;
  /** Also return patch features (default false). */
  patches?: boolean;
}

/** One image's outputs. */
export interface ImageFeatures {
  /** The image embedding (L2-normalised unless `normalize: false`). */
  embedding: Float32Array;
  /** Patch grid (rows, columns): the fixed grid, or the image's NaFlex grid. */
  gridH: number;
  gridW: number;
  /**
   * Patch features when requested: the last hidden state (after the final LayerNorm)
   * of every valid patch, (gridH·gridW, D) row-major; patch n is at row ⌊n / gridW⌋,
   * column n mod gridW.
   */
  patches?: Float32Array;
}

/** One input's settled result: its features, or why it could not be read. */
export type ImageResult = ImageFeatures | SiglipError;

/** Called as results become final: inputs done so far (a prefix of the input list) and all slots. */
export type ImageProgress = (done: number, results: ImageResult[]) => void;

/** How many batches of NaFlex images are sorted by length together (shape grouping). */
export const GROUP_WINDOW_BATCHES = 4;

/** What the pipeline needs from the model. */
export interface ImagePipeline {
  tower: FixresVisionTower | NaflexVisionTower;
  /** Images per forward pass (at least 1). */
  batchSize: number;
  /** Decode and preprocess one input for the tower; rejects with a SiglipError for a bad input. */
  prepare: (input: ImageInput) => Promise<Prepared>;
  /**
   * True while `prepare` hands work to worker threads (asked after each input is started): a
   * window's inputs are then prepared concurrently, else one at a time.
   */
  parallel: () => boolean;
}

/** Run the pipeline over `images`; see the module comment. */
export async function runImagePipeline(
  p: ImagePipeline,
  images: ImageInput[],
  options: ImageOptions = {},
  onBatch?: ImageProgress,
): Promise<ImageResult[]> {
  const { tower } = p;
  const naflex = tower instanceof NaflexVisionTower;
  const bs = Math.max(1, p.batchSize);
  const window = naflex ? bs * GROUP_WINDOW_BATCHES : bs;
  const results: ImageResult[] = new Array(images.length);
  const finish = (i: number, r: VisionResult): void => {
    // A non-finite output (weights that overflow float32 activations, a degenerate config)
    // is an error naming the input, never a result.
    const subject = imageName(images[i]!, i);
    try {
      assertFinite(r.pooled, subject, "image embedding");
      const f: ImageFeatures = { embedding: options.normalize === false ? r.pooled : l2normalize(r.pooled), gridH: r.gridH, gridW: r.gridW };
      assertFinite(f.embedding, subject, "normalised image embedding (a zero vector?)");
      if (options.patches) {
        assertFinite(r.patches, subject, "patch features");
        f.patches = r.patches;
      }
      results[i] = f;
    } catch (e) {
      if (!(e instanceof SiglipError)) throw e;
      results[i] = e;
    }
  };
  // Prepare window k+1 (in workers, or on the main thread while onnxruntime computes) during window k.
  const prepareWindow = async (start: number): Promise<Array<{ i: number; p: Prepared }>> => {
    const end = Math.min(start + window, images.length);
    const jobs: Array<Promise<{ i: number; p: Prepared } | null>> = [];
    for (let i = start; i < end; i++) {
      jobs.push(p.prepare(images[i]!).then(
        (prepared) => ({ i, p: prepared }),
        (e: unknown) => {
          if (!(e instanceof SiglipError) || e.code === "workers") throw e;
          results[i] = namedError(e, images[i]!);
          return null;
        },
      ));
      if (!p.parallel()) await jobs[jobs.length - 1]; // main thread: one at a time
    }
    return (await Promise.all(jobs)).filter((x): x is { i: number; p: Prepared } => x !== null);
  };
  // A prefetched window is awaited on the next turn; if it rejects first (the workers cannot
  // start) or this window's forward pass throws, its rejection must not be an unhandled one.
  const prefetch = (start: number): Promise<Array<{ i: number; p: Prepared }>> => {
    const w = prepareWindow(start);
    w.catch(() => undefined);
    return w;
  };
  let next: Promise<Array<{ i: number; p: Prepared }>> | null = prefetch(0);
  for (let s = 0; s < images.length; s += window) {
    const prepared = await next!;
    next = s + window < images.length ? prefetch(s + window) : null;
    if (naflex) {
      // Shortest first; equal lengths keep input order (deterministic batches).
      prepared.sort((a, b) => a.p.data.length - b.p.data.length || a.i - b.i);
      for (let k = 0; k < prepared.length; k += bs) {
        const group = prepared.slice(k, k + bs);
        const out = await tower.encode(group.map(({ p: x }) => ({ patches: x.data, gridH: x.gridH, gridW: x.gridW })));
        group.forEach((g, j) => finish(g.i, out[j]!));
      }
    } else if (prepared.length > 0) {
      const out = await tower.encode(prepared.map(({ p: x }) => x.data));
      prepared.forEach((g, j) => finish(g.i, out[j]!));
    }
    onBatch?.(Math.min(s + window, images.length), results);
  }
  return results;
}

/** The embeddings of settled results (errors kept in their slots). */
export function settledEmbeddings(results: ImageResult[]): Array<Float32Array | SiglipError> {
  return results.map((r) => (r instanceof SiglipError ? r : r.embedding));
}

/** How an image input is named in messages: its path, else its position. */
function imageName(input: ImageInput, i: number): string {
  return typeof input === "string" ? input : `image ${i}`;
}

/** A per-image error that names its file: messages from preprocessing that do not are prefixed with the path. */
function namedError(e: SiglipError, input: ImageInput): SiglipError {
  if (typeof input !== "string" || e.message.includes(input)) return e;
  return new SiglipError(e.code, `${input}: ${e.message}`, { subject: input, cause: e });
}
