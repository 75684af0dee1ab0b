/** POST /v1/search (only with an open index): the `k` nearest indexed images to a text `query` or an `image`. */
import type { FastifyInstance } from "fastify";
import { assertFinite } from "../../errors.js";
import { searchByVector, DEFAULT_K, MAX_K } from "../../search/search.js";
import type { ImageStore } from "../../search/store.js";
import { finite, type ServerContext } from "../context.js";
import { badRequest, bodyObject, commonFields, optional, optionalBoolean, parseImageRef, preview } from "../inputs.js";

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
    const signal = ctx.deadline(reply).signal;
    let hits;
    if (query !== undefined) {
      if (typeof query !== "string") throw badRequest(`"query" must be a string, got ${preview(query)}`, "query");
      const prepared = await ctx.prepareTexts([query], () => "query", truncate, signal);
      const [q] = await ctx.texts.submit(prepared.ids, signal);
      assertFinite(q!, "query", "embedding");
      hits = await searchByVector(model, store, q!, "text", k);
    } else {
      const [q] = await ctx.embedImages([parseImageRef(image, "image")], signal, () => "image");
      assertFinite(q!, "image", "embedding");
      hits = await searchByVector(model, store, q!, "image", k);
    }
    finite(hits.map((h) => [h.cosine, h.probability ?? 0]), (i) => `result ${i + 1}`, "score");
    return {
      object: "list",
      model: modelName,
      data: hits.map((h) => ({ rank: h.rank, path: h.path, cosine: h.cosine, ...(h.probability !== undefined ? { probability: h.probability } : {}) })),
    };
  });
}
