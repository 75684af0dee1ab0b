/**
 * Searching an index: text → image (any language) and image → image.
 *
 * LanceDB finds the nearest rows by cosine distance (an exact scan unless an ANN
 * index was added); the scores are then recomputed in float64 from the stored
 * vectors with the library's own similarity maths:
 * - `cosine`: dot product of the two L2-normalised embeddings;
 * - `probability` (text queries only): sigmoid(cosine · exp(logit_scale) + logit_bias),
 *   SigLIP's calibrated image–text match probability. It is not defined for two
 *   images (the model never learned an image–image bias and temperature), so image
 *   queries report the cosine only.
 */
import type { ImageInput, SigLIP2 } from "../api.js";
import { SiglipError } from "../errors.js";
import { dot } from "../tasks/similarity.js";
import type { ImageStore, NearestRow } from "./store.js";

export const DEFAULT_K = 10;
export const MAX_K = 10_000;
/** Extra rows fetched so that transient duplicate rows of one path do not shorten the list. */
const DUPLICATE_HEADROOM = 8;

export interface SearchHit {
  rank: number;
  path: string;
  cosine: number;
  /** Text queries only: the sigmoid match probability. */
  probability?: number;
  size: number;
  mtimeMs: number;
  sha256: string;
}

export function checkK(k: number): number {
  if (!Number.isInteger(k) || k < 1 || k > MAX_K) throw new SiglipError("usage", `k must be an integer from 1 to ${MAX_K}, got ${k}`);
  return k;
}

/** Throw a usage error for an empty (or blank) text query: it would rank the images by nothing. */
export function checkQuery(text: string): string {
  if (typeof text !== "string" || text.trim() === "") throw new SiglipError("usage", "the text query is empty: give words to search for (or search by example with an image)");
  return text;
}

/** Rank the stored images against a query embedding of the given kind. */
export async function searchByVector(model: SigLIP2, store: ImageStore, query: Float32Array, kind: "text" | "image", k = DEFAULT_K): Promise<SearchHit[]> {
  checkK(k);
  // Fetch more rows until k distinct paths are found or the table is exhausted: rows
  // left by an interrupted run (two for one path) must not shorten the list.
  let newest = new Map<string, NearestRow>();
  for (let limit = k + DUPLICATE_HEADROOM; ; limit *= 4) {
    const near = await store.nearest(query, limit);
    newest = new Map<string, NearestRow>();
    for (const r of near) {
      const o = newest.get(r.path);
      if (!o || r.gen > o.gen) newest.set(r.path, r);
    }
    if (newest.size >= k || near.length < limit) break;
  }
  const rows = [...newest.values()];
  const probs = kind === "text" && rows.length > 0 ? model.similarity(rows.map((r) => r.vector), [query]).probabilities.map((p) => p[0]!) : undefined;
  const hits = rows.map((r, i) => {
    const h: SearchHit = { rank: 0, path: r.path, cosine: dot(r.vector, query), size: r.size, mtimeMs: r.mtimeMs, sha256: r.sha256 };
    if (probs) h.probability = probs[i]!;
    return h;
  });
  hits.sort((a, b) => b.cosine - a.cosine || (a.path < b.path ? -1 : 1));
  return hits.slice(0, k).map((h, i) => ({ ...h, rank: i + 1 }));
}

/** Text → image search (the text is lowercased unless the model was loaded with lowercase: false). */
export async function searchText(model: SigLIP2, store: ImageStore, text: string, k = DEFAULT_K): Promise<SearchHit[]> {
  checkK(k);
  checkQuery(text);
  const [q] = await model.embedTexts([text]);
  return searchByVector(model, store, q!, "text", k);
}

/** Image → image search. A bad query image throws its SiglipError. */
export async function searchImage(model: SigLIP2, store: ImageStore, image: ImageInput, k = DEFAULT_K, options: { maxPatches?: number } = {}): Promise<SearchHit[]> {
  checkK(k);
  const [q] = await model.imageFeaturesSettled([image], options.maxPatches !== undefined ? { maxPatches: options.maxPatches } : {});
  if (q instanceof SiglipError) throw q;
  return searchByVector(model, store, q!.embedding, "image", k);
}
