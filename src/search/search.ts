/**
 * Searching an index: text → image (any language) and image → image.
 *
 * LanceDB finds the nearest rows by cosine distance among the rows that pass the
 * filters (an exact scan, or IVF-PQ candidates re-ranked on the stored vectors once
 * the table has an ANN index; `exact` forces the scan); the scores are then recomputed
 * in float64 from the stored vectors with the library's own similarity maths:
 * - `cosine`: dot product of the two L2-normalised embeddings;
 * - `probability` (text queries only): sigmoid(cosine · exp(logit_scale) + logit_bias),
 *   SigLIP's calibrated image–text match probability. It is not defined for two
 *   images (the model never learned an image–image bias and temperature), so image
 *   queries report the cosine only, and so do combined queries (see {@link combineQueries}).
 *
 * A video is one hit: its best-scoring frame (of its newest version), with that frame's time
 * in `timeS`. So k hits are k different files, images or videos.
 *
 * Query arithmetic (as rclip's --add/--subtract): q = normalise(Σᵢ wᵢ · eᵢ), where eᵢ is
 * the L2-normalised embedding of term i (a text or an image) and wᵢ its weight: 1 for the
 * main query and each `plus` term, −1 for each `minus` term, or the weight written after
 * the last colon ("people:0.5" → w = 0.5 for a plus term, −0.5 for a minus term).
 */
import type { ImageInput, SigLIP2 } from "../api.js";
import { SiglipError } from "../errors.js";
import { dot } from "../tasks/similarity.js";
import { filterSql, type SearchFilters } from "./filters.js";
import type { ImageStore, NearestRow, NearestOptions } from "./store.js";

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
  /** Video hits: the time (seconds from the start) of the best-matching frame. Absent for images. */
  timeS?: number;
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

/** How to search: filters applied inside the query, and the exact scan. */
export interface SearchOptions {
  filters?: SearchFilters;
  /** Scan every row exactly even when the table has an ANN index. */
  exact?: boolean;
}

/** The store's query options for these search options. */
function nearestOptions(o: SearchOptions): NearestOptions {
  const where = o.filters ? filterSql(o.filters) : undefined;
  return { ...(where !== undefined ? { where } : {}), ...(o.exact ? { exact: true } : {}) };
}

/**
 * Rank the stored images against a query embedding of the given kind ("combined": a
 * sum of several, see {@link combineQueries}; cosines only).
 */
export async function searchByVector(model: SigLIP2, store: ImageStore, query: Float32Array, kind: "text" | "image" | "combined", k = DEFAULT_K, options: SearchOptions = {}): Promise<SearchHit[]> {
  checkK(k);
  const nopts = nearestOptions(options);
  // Fetch more rows until k distinct paths are found or the table is exhausted: rows
  // left by an interrupted run (two for one path) and the other frames of a video must not
  // shorten the list. Per path: the newest version, and in it the row of the largest float64
  // cosine, i.e. a video's best frame.
  let newest = new Map<string, NearestRow>();
  for (let limit = k + DUPLICATE_HEADROOM; ; limit *= 4) {
    const near = await store.nearest(query, limit, nopts);
    newest = new Map<string, NearestRow>();
    for (const r of near) {
      const o = newest.get(r.path);
      if (!o || r.gen > o.gen || (r.gen === o.gen && r.timeS !== undefined && dot(r.vector, query) > dot(o.vector, query))) newest.set(r.path, r);
    }
    if (newest.size >= k || near.length < limit) break;
  }
  const rows = [...newest.values()];
  const probs = kind === "text" && rows.length > 0 ? model.similarity(rows.map((r) => r.vector), [query]).probabilities.map((p) => p[0]!) : undefined;
  const hits = rows.map((r, i) => {
    const h: SearchHit = { rank: 0, path: r.path, cosine: dot(r.vector, query), size: r.size, mtimeMs: r.mtimeMs, sha256: r.sha256 };
    if (probs) h.probability = probs[i]!;
    if (r.timeS !== undefined) h.timeS = r.timeS;
    return h;
  });
  hits.sort((a, b) => b.cosine - a.cosine || (a.path < b.path ? -1 : 1));
  return hits.slice(0, k).map((h, i) => ({ ...h, rank: i + 1 }));
}

/** Text → image search (the text is lowercased unless the model was loaded with lowercase: false). */
export async function searchText(model: SigLIP2, store: ImageStore, text: string, k = DEFAULT_K, options: SearchOptions = {}): Promise<SearchHit[]> {
  checkK(k);
  checkQuery(text);
  const [q] = await model.embedTexts([text]);
  return searchByVector(model, store, q!, "text", k, options);
}

/** Image → image search. A bad query image throws its SiglipError. */
export async function searchImage(model: SigLIP2, store: ImageStore, image: ImageInput, k = DEFAULT_K, options: SearchOptions & { maxPatches?: number } = {}): Promise<SearchHit[]> {
  checkK(k);
  const [q] = await model.imageFeaturesSettled([image], options.maxPatches !== undefined ? { maxPatches: options.maxPatches } : {});
  if (q instanceof SiglipError) throw q;
  return searchByVector(model, store, q!.embedding, "image", k, options);
}

/** One term of a combined query: a text, an image or an embedding already computed, with its weight. */
export type QueryTerm = { text: string; weight: number } | { image: ImageInput; weight: number } | { embedding: Float32Array; weight: number };

/**
 * "people:0.5" → { value: "people", weight: 0.5 }: the weight after the last colon when it
 * is a number, else 1 (so "a:b" stays the text "a:b"). `sign` −1 makes a minus term.
 */
export function parseWeighted(term: string, sign: 1 | -1 = 1): { value: string; weight: number } {
  const m = /^(.*):\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*$/is.exec(term);
  const value = m ? m[1]! : term;
  const weight = m ? Number(m[2]) : 1;
  if (!Number.isFinite(weight) || weight === 0) throw new SiglipError("usage", `the weight of ${JSON.stringify(value)} must be a non-zero number, got ${m![2]}`);
  if (value.trim() === "") throw new SiglipError("usage", `a query term is empty: ${JSON.stringify(term)}`);
  return { value, weight: sign * weight };
}

/**
 * The combined query vector: normalise(Σ wᵢ · eᵢ) over the terms' L2-normalised
 * embeddings (texts in one batch, images in one batch). Terms that cancel out (a zero
 * sum) are a usage error, not a NaN ranking.
 */
export async function combineQueries(model: SigLIP2, terms: QueryTerm[], options: { maxPatches?: number } = {}): Promise<Float32Array> {
  if (terms.length === 0) throw new SiglipError("usage", "no query: give a text, --image, --plus or --minus");
  const texts = terms.filter((t): t is { text: string; weight: number } => "text" in t);
  const images = terms.filter((t): t is { image: ImageInput; weight: number } => "image" in t);
  const given = terms.filter((t): t is { embedding: Float32Array; weight: number } => "embedding" in t);
  for (const t of texts) checkQuery(t.text);
  const tv = texts.length > 0 ? await model.embedTexts(texts.map((t) => t.text)) : [];
  const iv = images.length > 0 ? await model.imageFeaturesSettled(images.map((t) => t.image), options.maxPatches !== undefined ? { maxPatches: options.maxPatches } : {}) : [];
  const sum = new Float64Array(model.dim);
  const addTerm = (e: Float32Array, w: number) => {
    let n = 0;
    for (let i = 0; i < e.length; i++) n += e[i]! * e[i]!;
    const s = w / Math.sqrt(n);
    for (let i = 0; i < e.length; i++) sum[i]! += s * e[i]!;
  };
  for (const t of given) {
    if (t.embedding.length !== model.dim) throw new SiglipError("input", `a query embedding has ${t.embedding.length} dims; the model gives ${model.dim}`);
    addTerm(t.embedding, t.weight);
  }
  texts.forEach((t, i) => addTerm(tv[i]!, t.weight));
  images.forEach((t, i) => {
    const r = iv[i]!;
    if (r instanceof SiglipError) throw r;
    addTerm(r.embedding, t.weight);
  });
  let n = 0;
  for (let i = 0; i < sum.length; i++) n += sum[i]! * sum[i]!;
  n = Math.sqrt(n);
  if (!(n > 1e-6)) throw new SiglipError("usage", "the query terms cancel out (their weighted sum is zero): change the weights");
  return Float32Array.from(sum, (x) => x / n);
}

/**
 * Search with several terms: one plain text (or image) query keeps its usual meaning and
 * scores; two or more are combined ({@link combineQueries}) and report cosines only.
 */
export async function searchTerms(model: SigLIP2, store: ImageStore, terms: QueryTerm[], k = DEFAULT_K, options: SearchOptions & { maxPatches?: number } = {}): Promise<SearchHit[]> {
  checkK(k);
  const only = terms.length === 1 && terms[0]!.weight === 1 ? terms[0]! : undefined;
  if (only && "text" in only) return searchText(model, store, only.text, k, options);
  if (only && "image" in only) return searchImage(model, store, only.image, k, options);
  const q = await combineQueries(model, terms, options);
  return searchByVector(model, store, q, "combined", k, options);
}
