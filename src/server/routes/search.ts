/**
 * POST /v1/search (only with an open index): the `k` nearest indexed images to a text
 * `query` or an `image`, optionally combined with weighted `plus` / `minus` texts
 * ("people" or "people:0.5"), among the rows that pass `filter` (applied inside the query:
 * path_prefix, glob, after, before, taken_after, taken_before, type, min_width,
 * min_height, where; see src/search/filters.ts). `exact: true` scans every row.
 */
import type { FastifyInstance } from "fastify";
import { assertFinite } from "../../errors.js";
import { filterSql, type SearchFilters } from "../../search/filters.js";
import { combineQueries, parseWeighted, searchByVector, DEFAULT_K, MAX_K, type SearchOptions } from "../../search/search.js";
import type { ImageStore } from "../../search/store.js";
import { finite, type ServerContext } from "../context.js";
import { badRequest, bodyObject, commonFields, optional, optionalBoolean, parseImageRef, parseStringList, preview } from "../inputs.js";

/** Most plus / minus terms per request. */
const MAX_TERMS = 16;

const FILTER_KEYS: Record<string, keyof SearchFilters> = {
  path_prefix: "pathPrefix", glob: "glob", after: "after", before: "before", taken_after: "takenAfter", taken_before: "takenBefore",
  type: "types", min_width: "minWidth", min_height: "minHeight", where: "where",
};

/** The body's `filter` object → {@link SearchFilters} (checked: unknown keys and wrong types are a 400). */
function parseFilter(v: unknown): SearchFilters | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw badRequest(`"filter" must be an object, got ${preview(v)}`, "filter");
  const f: Record<string, unknown> = {};
  for (const [key, val] of Object.entries(v)) {
    const name = FILTER_KEYS[key];
    if (!name) throw badRequest(`"filter.${key}" is not a filter; use ${Object.keys(FILTER_KEYS).join(", ")}`, `filter.${key}`);
    const numeric = name === "minWidth" || name === "minHeight";
    const ok = numeric ? typeof val === "number" : name === "types" ? typeof val === "string" || (Array.isArray(val) && val.every((x) => typeof x === "string")) : typeof val === "string";
    if (!ok) throw badRequest(`"filter.${key}" must be ${numeric ? "an integer" : name === "types" ? "a string or an array of strings" : "a string"}, got ${preview(val)}`, `filter.${key}`);
    f[name] = val;
  }
  const filters = f as SearchFilters;
  filterSql(filters); // a bad value is a 400 (SiglipError "usage")
  return filters;
}

export function searchRoute(app: FastifyInstance, ctx: ServerContext, store: ImageStore): void {
  const { model } = ctx;
  const { modelName } = ctx.cfg;
  app.post("/v1/search", async (req, reply) => {
    const body = bodyObject(req.body);
    const k = optional(body, "k") ?? DEFAULT_K;
    if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > MAX_K) throw badRequest(`"k" must be an integer from 1 to ${MAX_K}, got ${preview(k)}`, "k");
    const query = optional(body, "query");
    const image = optional(body, "image");
    if ((query === undefined) === (image === undefined)) throw badRequest(`give exactly one of "query" (a text) or "image" (a data: URL or base64)`, query === undefined ? "query" : "image");
    commonFields(body);
    const truncate = optionalBoolean(body, "truncate") ?? true;
    const filters = parseFilter(optional(body, "filter"));
    const options: SearchOptions = { ...(filters ? { filters } : {}), ...(optionalBoolean(body, "exact") ? { exact: true } : {}) };
    const extra = (["plus", "minus"] as const).flatMap((key) => {
      const v = optional(body, key);
      return v === undefined ? [] : parseStringList(v, key, MAX_TERMS).map((t) => ({ ...parseWeighted(t, key === "plus" ? 1 : -1), key }));
    });
    const signal = ctx.deadline(reply).signal;
    let q: Float32Array;
    let kind: "text" | "image";
    if (query !== undefined) {
      if (typeof query !== "string") throw badRequest(`"query" must be a string, got ${preview(query)}`, "query");
      const prepared = await ctx.prepareTexts([query], () => "query", truncate, signal);
      [q] = (await ctx.texts.submit(prepared.ids, signal)) as [Float32Array];
      assertFinite(q, "query", "embedding");
      kind = "text";
    } else {
      [q] = (await ctx.embedImages([parseImageRef(image, "image")], signal, () => "image")) as [Float32Array];
      assertFinite(q, "image", "embedding");
      kind = "image";
    }
    let hits;
    if (extra.length === 0) hits = await searchByVector(model, store, q, kind, k, options);
    else {
      // The plus / minus texts through the same text batcher as the query.
      const prepared = await ctx.prepareTexts(extra.map((t) => t.value), (i) => `${extra[i]!.key} term ${i + 1}`, truncate, signal);
      const vs = await ctx.texts.submit(prepared.ids, signal);
      vs.forEach((v, i) => assertFinite(v, `${extra[i]!.key} term ${i + 1}`, "embedding"));
      const combined = await combineQueries(model, [{ embedding: q, weight: 1 }, ...vs.map((v, i) => ({ embedding: v, weight: extra[i]!.weight }))]);
      hits = await searchByVector(model, store, combined, "combined", k, options);
    }
    finite(hits.map((h) => [h.cosine, h.probability ?? 0]), (i) => `result ${i + 1}`, "score");
    return {
      object: "list",
      model: modelName,
      data: hits.map((h) => ({ rank: h.rank, path: h.path, cosine: h.cosine, ...(h.probability !== undefined ? { probability: h.probability } : {}), ...(h.timeS !== undefined ? { time_s: h.timeS } : {}) })),
    };
  });
}
