/**
 * POST /v1/classify: zero-shot classification, every label's logit and sigmoid probability per
 * image (sorted). Label prompts are cached per filled-in prompt in the server's LRU
 * (ServerOptions.labelCacheSize); the rest are embedded with other requests' texts.
 */
import type { FastifyInstance } from "fastify";
import { DEFAULT_TEMPLATE, applyTemplate } from "../../api.js";
import { all, finite, type ServerContext } from "../context.js";
import { badRequest, bodyObject, commonFields, optional, optionalBoolean, optionalString, parseImageList, parseStringList, preview } from "../inputs.js";

/** Label prompt embeddings: cached ones from the LRU, the others embedded (batched with other texts). */
async function labelEmbeddings(ctx: ServerContext, ls: string[], template: string, truncate: boolean, signal: AbortSignal): Promise<Float32Array[]> {
  const prompts = ls.map((l) => applyTemplate(template, l));
  const have = new Map<string, Float32Array>();
  for (const p of prompts) {
    const e = ctx.labels.get(p);
    if (e) have.set(p, e);
  }
  const missing = [...new Set(prompts.filter((p) => !have.has(p)))];
  if (missing.length > 0) {
    const prepared = await ctx.prepareTexts(missing, (i) => `labels[${prompts.indexOf(missing[i]!)}]`, truncate, signal);
    const embs = await ctx.texts.submit(prepared.ids, signal);
    finite(embs, (i) => `labels[${prompts.indexOf(missing[i]!)}]`, "label embedding");
    missing.forEach((p, i) => {
      have.set(p, embs[i]!);
      ctx.labels.set(p, embs[i]!);
    });
  }
  return prompts.map((p) => have.get(p)!);
}

export function classifyRoute(app: FastifyInstance, ctx: ServerContext): void {
  const { modelName, maxInputs } = ctx.cfg;
  app.post("/v1/classify", async (req, reply) => {
    const body = bodyObject(req.body);
    const imgs = parseImageList(optional(body, "images"), "images", maxInputs);
    const ls = parseStringList(optional(body, "labels"), "labels", maxInputs);
    const template = optionalString(body, "template") ?? DEFAULT_TEMPLATE;
    if (!template.includes("{}")) throw badRequest(`"template" ${preview(template)} has no {} placeholder for the label`, "template");
    commonFields(body);
    const truncate = optionalBoolean(body, "truncate") ?? true;
    const ac = ctx.deadline(reply);
    const [labelEmb, imgEmb] = await all<[Float32Array[], Float32Array[]]>(ac, [
      labelEmbeddings(ctx, ls, template, truncate, ac.signal),
      ctx.embedImages(imgs, ac.signal, (i) => `images[${i}]`),
    ]);
    finite(imgEmb, (i) => `images[${i}]`, "embedding");
    const scores = ctx.model.scoreLabels(imgEmb, ls, labelEmb);
    finite(scores.map((row) => row.flatMap((x) => [x.logit, x.probability])), (i) => `images[${i}]`, "label scores");
    return { object: "list", model: modelName, data: scores.map((s, index) => ({ index, scores: s })) };
  });
}
