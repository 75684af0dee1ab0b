/**
 * POST /v1/embeddings (OpenAI-compatible): `input` is a text, a list of texts, or a list mixing
 * texts and images (`{"image": <data URL or base64>}`); embeddings in input order, as float
 * lists or base64 float32 (`encoding_format`).
 */
import { setImmediate as nextTurn } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import { TOKENIZE_SLICE_MS, all, finite, type ServerContext } from "../context.js";
import { bodyObject, checkDimensions, commonFields, float32ToBase64, optional, optionalBoolean, parseEmbeddingInput, parseEncodingFormat } from "../inputs.js";

export function embeddingsRoute(app: FastifyInstance, ctx: ServerContext): void {
  const { modelName, maxInputs } = ctx.cfg;
  app.post("/v1/embeddings", async (req, reply) => {
    const body = bodyObject(req.body);
    const inputs = parseEmbeddingInput(optional(body, "input"), maxInputs);
    const format = parseEncodingFormat(body);
    checkDimensions(body, ctx.model.dim);
    commonFields(body);
    const truncate = optionalBoolean(body, "truncate") ?? true;
    const ac = ctx.deadline(reply);
    const signal = ac.signal;
    const textIdx: number[] = [];
    const imageIdx: number[] = [];
    inputs.forEach((x, i) => (x.kind === "text" ? textIdx : imageIdx).push(i));
    const prepared = await ctx.prepareTexts(textIdx.map((i) => (inputs[i] as { text: string }).text), (k) => `input[${textIdx[k]}]`, truncate, signal);
    const [textEmb, imageEmb] = await all<[Float32Array[], Float32Array[]]>(ac, [
      ctx.texts.submit(prepared.ids, signal),
      ctx.embedImages(imageIdx.map((i) => (inputs[i] as { bytes: Uint8Array }).bytes), signal, (k) => `input[${imageIdx[k]}]`),
    ]);
    const embs: Float32Array[] = new Array(inputs.length);
    textIdx.forEach((i, k) => (embs[i] = textEmb[k]!));
    imageIdx.forEach((i, k) => (embs[i] = imageEmb[k]!));
    finite(embs, (i) => `input[${i}]`, "embedding");
    // Serialised a slice at a time too: 2048 embeddings of a real model are millions of numbers.
    const items: string[] = [];
    let t0 = performance.now();
    for (let index = 0; index < embs.length; index++) {
      const e = embs[index]!;
      items.push(JSON.stringify({ object: "embedding", index, embedding: format === "base64" ? float32ToBase64(e) : Array.from(e) }));
      if (performance.now() - t0 > TOKENIZE_SLICE_MS) {
        await nextTurn();
        if (signal.aborted) throw signal.reason;
        t0 = performance.now();
      }
    }
    const usage = { prompt_tokens: prepared.tokens, total_tokens: prepared.tokens, truncated_inputs: prepared.truncated };
    return reply.type("application/json; charset=utf-8").send(`{"object":"list","data":[${items.join(",")}],"model":${JSON.stringify(modelName)},"usage":${JSON.stringify(usage)}}`);
  });
}
