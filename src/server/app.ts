/**
 * The embedding server: a fastify app around one loaded model.
 *
 * ```ts
 * const app = createServer(model, { apiKey: "secret" });
 * await app.listen({ host: "127.0.0.1", port: 8080 });
 * ...
 * await app.close(); // stops accepting, finishes in-flight requests, drains the batchers
 * ```
 *
 * Endpoints (see README "Server" and GET /openapi.json): POST /v1/embeddings
 * (OpenAI-compatible), POST /v1/classify, POST /v1/search (with a store),
 * GET /v1/models, GET /health, GET /stats, GET /openapi.json.
 *
 * Texts and images from concurrent requests are merged into model calls by two
 * {@link MicroBatcher}s that share a {@link Gate} (one forward pass at a time).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { fastify, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { DEFAULT_TEMPLATE, applyTemplate, type SigLIP2 } from "../api.js";
import { SiglipError } from "../errors.js";
import { searchByVector, checkK, DEFAULT_K } from "../search/search.js";
import type { ImageStore } from "../search/store.js";
import { ClosedError, Gate, MicroBatcher, QueueFullError, type BatcherStats } from "./batcher.js";
import {
  HttpError, badRequest, bodyObject, float32ToBase64, parseEmbeddingInput, parseImageList, parseImageRef, parseStringList,
} from "./inputs.js";
import { LruCache } from "./lru.js";
import { openApiDocument } from "./openapi.js";

export interface ServerOptions {
  /** Model id reported by /v1/models and echoed when a request names none (default: the name the model was loaded by). */
  modelName?: string;
  /** Most items per model call (default 32). */
  maxBatchSize?: number;
  /** How long a waiting item waits for others to join its batch, in ms (default 5). */
  maxWaitMs?: number;
  /** Most items waiting per tower before requests get 429 (default 1024). */
  maxQueue?: number;
  /** Most inputs (texts + images, or labels) per request; more is 413 (default 256, at most maxQueue). */
  maxInputs?: number;
  /** Largest request body in bytes; more is 413 (default 20 MiB). */
  bodyLimit?: number;
  /** Per-request time limit in ms, queueing included; over it is 504 (default 30 000). */
  requestTimeoutMs?: number;
  /** Require `Authorization: Bearer <apiKey>` on every endpoint except /health and /openapi.json. */
  apiKey?: string;
  /** An open index: enables POST /v1/search. Its model must be the served model (checked by the caller). */
  store?: ImageStore;
  /** Label embeddings kept (per template and label; default 4096). */
  labelCacheSize?: number;
  /** fastify's logger (default off). */
  logger?: boolean | Record<string, unknown>;
  /** Called when a batch starts (tests, metrics). */
  onBatch?: (kind: "text" | "image", size: number) => void;
}

/** Counters served at GET /stats. */
export interface ServerStats {
  model: string;
  uptimeS: number;
  draining: boolean;
  requests: Record<string, number>;
  batches: { text: BatcherStats; image: BatcherStats };
  labelCache: { size: number; hits: number; misses: number };
  memory: NodeJS.MemoryUsage;
}

const OPEN_ROUTES = new Set(["/health", "/openapi.json"]);

function errorBody(message: string, type: string, param: string | null = null, code: string | null = null) {
  return { error: { message, type, param, code } };
}

function statusType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 404) return "not_found_error";
  if (status === 413) return "invalid_request_error";
  if (status === 429) return "rate_limit_error";
  if (status === 503) return "service_unavailable";
  if (status === 504) return "timeout_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

class TimeoutError extends Error {
  constructor(ms: number) {
    super(`request timed out after ${ms} ms`);
    this.name = "TimeoutError";
  }
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/** Build the server (not yet listening). */
export function createServer(model: SigLIP2, options: ServerOptions = {}): FastifyInstance {
  const modelName = options.modelName ?? model.modelId;
  const maxQueue = options.maxQueue ?? 1024;
  // A request larger than the whole queue could never be served: it is a 413, not a 429.
  const maxInputs = Math.min(options.maxInputs ?? 256, maxQueue);
  const timeoutMs = options.requestTimeoutMs ?? 30_000;
  const started = Date.now();
  const gate = new Gate();
  const common = { maxBatchSize: options.maxBatchSize ?? 32, maxWaitMs: options.maxWaitMs ?? 5, maxQueue, gate };
  const texts = new MicroBatcher<string, Float32Array>({
    ...common,
    run: (items) => model.embedTexts(items),
    onBatch: (n) => options.onBatch?.("text", n),
  });
  const images = new MicroBatcher<Uint8Array, Float32Array | SiglipError>({
    ...common,
    run: (items) => model.embedImagesSettled(items),
    onBatch: (n) => options.onBatch?.("image", n),
  });
  const labels = new LruCache<string, Float32Array>(options.labelCacheSize ?? 4096);
  const requests: Record<string, number> = {};
  let draining = false;
  const keyDigest = options.apiKey !== undefined ? digest(options.apiKey) : null;

  const app = fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? 20 * 1024 * 1024,
    requestTimeout: timeoutMs + 10_000, // receiving the request (slow clients)
    return503OnClosing: true,
    forceCloseConnections: "idle",
  });

  // ------------------------------------------------------------------ plumbing
  app.addHook("onRequest", async (req, reply) => {
    if (keyDigest === null || OPEN_ROUTES.has(req.url.split("?")[0]!)) return;
    const h = req.headers.authorization ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(h);
    if (!m || !timingSafeEqual(digest(m[1]!.trim()), keyDigest)) {
      reply.header("www-authenticate", 'Bearer realm="siglip2"');
      throw new HttpError(401, m ? "invalid API key" : "missing API key: send Authorization: Bearer <key>", "authentication_error");
    }
  });
  app.addHook("onResponse", async (_req, reply) => {
    const k = String(reply.statusCode);
    requests[k] = (requests[k] ?? 0) + 1;
  });
  app.addHook("preClose", async () => {
    draining = true;
  });
  // While draining, close each connection after its response: a keep-alive connection
  // that turns idle after close() began would otherwise hold the shutdown open.
  app.addHook("onSend", async (_req, reply, payload) => {
    if (draining) reply.header("connection", "close");
    return payload;
  });
  app.addHook("onClose", async () => {
    await Promise.all([texts.close(), images.close()]);
  });

  app.setErrorHandler((err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof HttpError) return reply.code(err.statusCode).send(errorBody(err.message, err.type, err.param, err.code));
    if (err instanceof QueueFullError) return reply.code(429).header("retry-after", "1").send(errorBody(err.message, "rate_limit_error", null, "queue_full"));
    if (err instanceof ClosedError) return reply.code(503).send(errorBody(err.message, "service_unavailable"));
    if (err instanceof TimeoutError) return reply.code(504).send(errorBody(err.message, "timeout_error"));
    if (err instanceof SiglipError) {
      const client = ["input", "image", "usage"].includes(err.code);
      if (!client) req.log.error(err);
      return reply.code(client ? 400 : 500).send(errorBody(err.message, client ? "invalid_request_error" : "server_error"));
    }
    const status = (err as FastifyError).statusCode;
    if (typeof status === "number" && status >= 400 && status < 500) {
      let msg = err.message;
      if ((err as FastifyError).code === "FST_ERR_CTP_BODY_TOO_LARGE") msg = `request body too large (limit ${app.initialConfig.bodyLimit} bytes)`;
      if ((err as FastifyError).code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") msg = `unsupported content type ${JSON.stringify(req.headers["content-type"] ?? "")}; send application/json`;
      return reply.code(status).send(errorBody(msg, statusType(status)));
    }
    req.log.error(err);
    return reply.code(500).send(errorBody(`internal error: ${err.message}`, "server_error"));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(`no route ${req.method} ${req.url.split("?")[0]}`, "not_found_error"));
  });

  /**
   * Abort on the request's deadline, or when the client goes away. The caller also
   * aborts it when one part of a request fails, so its other queued items leave the queue.
   */
  function deadline(reply: FastifyReply): AbortController {
    const ac = new AbortController();
    const t = setTimeout(() => ac.abort(new TimeoutError(timeoutMs)), timeoutMs);
    const gone = () => {
      clearTimeout(t);
      if (!reply.raw.writableFinished) ac.abort(new Error("client closed the connection"));
    };
    reply.raw.once("close", gone);
    reply.raw.once("finish", () => {
      clearTimeout(t);
      reply.raw.off("close", gone);
    });
    return ac;
  }

  /** Run the parts of a request together; when one fails, withdraw the others. */
  async function all<T extends readonly unknown[]>(ac: AbortController, parts: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
    try {
      return (await Promise.all(parts)) as unknown as T;
    } catch (e) {
      if (!ac.signal.aborted) ac.abort(e);
      throw e;
    }
  }

  async function embedImages(bytes: Uint8Array[], signal: AbortSignal, param: (i: number) => string): Promise<Float32Array[]> {
    const out = await images.submit(bytes, signal);
    return out.map((r, i) => {
      if (r instanceof SiglipError) throw badRequest(`${param(i)}: ${r.message.replace(/^cannot read image <image bytes>: /, "cannot read the image: ")}`, param(i));
      return r;
    });
  }

  /** Label prompt embeddings: cached ones from the LRU, the others embedded (batched with other texts). */
  async function labelEmbeddings(ls: string[], template: string, signal: AbortSignal): Promise<Float32Array[]> {
    const prompts = ls.map((l) => applyTemplate(template, l));
    const have = new Map<string, Float32Array>();
    for (const p of prompts) {
      const e = labels.get(p);
      if (e) have.set(p, e);
    }
    const missing = [...new Set(prompts.filter((p) => !have.has(p)))];
    if (missing.length > 0) {
      const embs = await texts.submit(missing, signal);
      missing.forEach((p, i) => {
        have.set(p, embs[i]!);
        labels.set(p, embs[i]!);
      });
    }
    return prompts.map((p) => have.get(p)!);
  }

  // ------------------------------------------------------------------ routes
  app.get("/health", async () => ({ status: draining ? "draining" : "ok", model: modelName, uptime_s: Math.round((Date.now() - started) / 1000) }));

  app.get("/v1/models", async () => ({
    object: "list",
    data: [{ id: modelName, object: "model", created: Math.floor(started / 1000), owned_by: "siglip2", dimensions: model.dim, naflex: model.isNaflex }],
  }));

  // `?gc=1` runs a full garbage collection first when node was started with --expose-gc
  // (bench/serve-load.ts uses it to tell retained memory from garbage awaiting collection).
  app.get("/stats", async (req): Promise<ServerStats> => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if ((req.query as Record<string, string> | undefined)?.["gc"] === "1" && typeof gc === "function") gc();
    return {
      model: modelName,
      uptimeS: (Date.now() - started) / 1000,
      draining,
      requests: { ...requests },
      batches: { text: texts.stats(), image: images.stats() },
      labelCache: labels.stats(),
      memory: process.memoryUsage(),
    };
  });

  app.get("/openapi.json", async () => openApiDocument({ modelName, search: options.store !== undefined, auth: keyDigest !== null }));

  app.post("/v1/embeddings", async (req, reply) => {
    const body = bodyObject(req.body);
    const inputs = parseEmbeddingInput(body["input"], maxInputs);
    const format = body["encoding_format"] ?? "float";
    if (format !== "float" && format !== "base64") throw badRequest(`"encoding_format" must be "float" or "base64", got ${JSON.stringify(format)}`, "encoding_format");
    const dims = body["dimensions"];
    if (dims !== undefined && dims !== model.dim) throw badRequest(`"dimensions": this model gives ${model.dim}-dimensional embeddings only`, "dimensions");
    if (body["model"] !== undefined && typeof body["model"] !== "string") throw badRequest(`"model" must be a string`, "model");
    const ac = deadline(reply);
    const signal = ac.signal;
    const textIdx: number[] = [];
    const imageIdx: number[] = [];
    inputs.forEach((x, i) => (x.kind === "text" ? textIdx : imageIdx).push(i));
    const textList = textIdx.map((i) => (inputs[i] as { text: string }).text);
    const [textEmb, imageEmb, ids] = await all<[Float32Array[], Float32Array[], Int32Array[]]>(ac, [
      texts.submit(textList, signal),
      embedImages(imageIdx.map((i) => (inputs[i] as { bytes: Uint8Array }).bytes), signal, (k) => `input[${imageIdx[k]}]`),
      textList.length > 0 ? model.tokenize(textList) : Promise.resolve([]),
    ]);
    const embs: Float32Array[] = new Array(inputs.length);
    textIdx.forEach((i, k) => (embs[i] = textEmb[k]!));
    imageIdx.forEach((i, k) => (embs[i] = imageEmb[k]!));
    let tokens = 0;
    for (const t of ids) for (const id of t) if (id !== 0) tokens++;
    return {
      object: "list",
      data: embs.map((e, index) => ({ object: "embedding", index, embedding: format === "base64" ? float32ToBase64(e) : Array.from(e) })),
      model: (body["model"] as string | undefined) ?? modelName,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  });

  app.post("/v1/classify", async (req, reply) => {
    const body = bodyObject(req.body);
    const imgs = parseImageList(body["images"], "images", maxInputs);
    const ls = parseStringList(body["labels"], "labels", maxInputs);
    const template = body["template"] ?? DEFAULT_TEMPLATE;
    if (typeof template !== "string") throw badRequest(`"template" must be a string with {} where the label goes`, "template");
    if (!template.includes("{}")) throw badRequest(`"template" ${JSON.stringify(template)} has no {} placeholder for the label`, "template");
    const ac = deadline(reply);
    const [labelEmb, imgEmb] = await all<[Float32Array[], Float32Array[]]>(ac, [
      labelEmbeddings(ls, template, ac.signal),
      embedImages(imgs, ac.signal, (i) => `images[${i}]`),
    ]);
    const scores = model.scoreLabels(imgEmb, ls, labelEmb);
    return { object: "list", model: (body["model"] as string | undefined) ?? modelName, data: scores.map((s, index) => ({ index, scores: s })) };
  });

  if (options.store) {
    const store = options.store;
    app.post("/v1/search", async (req, reply) => {
      const body = bodyObject(req.body);
      const k = body["k"] ?? DEFAULT_K;
      if (typeof k !== "number") throw badRequest(`"k" must be a number`, "k");
      checkK(k);
      const hasQuery = body["query"] !== undefined;
      const hasImage = body["image"] !== undefined;
      if (hasQuery === hasImage) throw badRequest(`give exactly one of "query" (a text) or "image" (a data: URL or base64)`);
      const signal = deadline(reply).signal;
      let hits;
      if (hasQuery) {
        if (typeof body["query"] !== "string") throw badRequest(`"query" must be a string`, "query");
        const [q] = await texts.submit([body["query"]], signal);
        hits = await searchByVector(model, store, q!, "text", k);
      } else {
        const [q] = await embedImages([parseImageRef(body["image"], "image")], signal, () => "image");
        hits = await searchByVector(model, store, q!, "image", k);
      }
      return {
        object: "list",
        model: modelName,
        data: hits.map((h) => ({ rank: h.rank, path: h.path, cosine: h.cosine, ...(h.probability !== undefined ? { probability: h.probability } : {}) })),
      };
    });
  }
  return app;
}
