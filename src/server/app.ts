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
 * GET /v1/models, GET /v1/models/{id}, GET /health, GET /stats, GET /openapi.json.
 *
 * Texts are tokenized on the event loop in short slices (the tokenizer reads only the start of a
 * long text), then texts and images from concurrent requests are merged into model calls by two
 * {@link MicroBatcher}s that share a {@link Gate} (one forward pass at a time).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { PassThrough } from "node:stream";
import { setImmediate as nextTurn } from "node:timers/promises";
import { fastify, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { DEFAULT_TEMPLATE, applyTemplate, type SigLIP2 } from "../api.js";
import { SiglipError, assertFinite } from "../errors.js";
import { searchByVector, DEFAULT_K, MAX_K } from "../search/search.js";
import type { ImageStore } from "../search/store.js";
import { ClosedError, Gate, MicroBatcher, QueueFullError, type BatcherStats } from "./batcher.js";
import {
  HttpError, badRequest, bodyObject, checkDimensions, float32ToBase64, jsonShapeProblem, optional, optionalBoolean, optionalString,
  parseEmbeddingInput, parseEncodingFormat, parseImageList, parseImageRef, parseStringList, preview,
} from "./inputs.js";
import { MAX_TIMEOUT_MS, SERVER_DEFAULTS } from "./defaults.js";
import { LruCache } from "../lru.js";
import { settledEmbeddings } from "../tasks/image-pipeline.js";
import { openApiDocument } from "./openapi.js";

export interface ServerOptions {
  /** Model id reported by /v1/models and in every response (default: the name the model was loaded by). */
  modelName?: string;
  /** Most items per model call (default 32). */
  maxBatchSize?: number;
  /** How long a waiting item waits for others to join its batch, in ms (default 5). */
  maxWaitMs?: number;
  /** Most items waiting per tower before requests get 429 (default 4096). */
  maxQueue?: number;
  /**
   * Most inputs (texts + images, or labels) per request; more is 413 (default 2048, as OpenAI).
   * Larger than `maxQueue` is an error: such a request could never be queued.
   */
  maxInputs?: number;
  /** Largest request body in bytes; more is 413 (default 20 MiB). */
  bodyLimit?: number;
  /** Per-request time limit in ms once the body has arrived, queueing included; over it is 504 (default 30 000). */
  requestTimeoutMs?: number;
  /** The whole request body must arrive within this many ms (slow clients); over it is 408 (default 30 000). */
  bodyTimeoutMs?: number;
  /** Require `Authorization: Bearer <apiKey>` on every endpoint except /health and /openapi.json. */
  apiKey?: string;
  /** Answer browsers from these origins (CORS): `"*"` for any, or a list of origins like `https://app.example`. */
  cors?: string | string[];
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
/** Longest stretch of tokenizing (or serialising) before the event loop gets a turn (ms). */
const TOKENIZE_SLICE_MS = 8;

function errorBody(message: string, type: string, param: string | null = null, code: string | null = null) {
  return { error: { message, type, param, code } };
}

function statusType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 404) return "not_found_error";
  if (status === 408) return "timeout_error";
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

/** The client went away: its work is dropped, and there is nobody to answer. */
class ClientGoneError extends Error {
  constructor() {
    super("client closed the connection");
    this.name = "ClientGoneError";
  }
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

function firstLine(s: string, max = 200): string {
  const l = s.split("\n")[0]!;
  return l.length > max ? `${l.slice(0, max)}…` : l;
}

function positiveInt(name: string, v: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(v) || v < 1 || v > max) throw new SiglipError("usage", `server option ${name} must be an integer from 1 to ${max}, got ${v}`);
  return v;
}

/**
 * The allowed CORS origins: null (CORS off), "*", or a set of exact origins. Each must be an
 * origin (scheme://host[:port], nothing after it).
 */
export function parseCorsOrigins(cors: string | string[] | undefined): "*" | Set<string> | null {
  if (cors === undefined) return null;
  const list = (Array.isArray(cors) ? cors : [cors]).flatMap((c) => c.split(",")).map((c) => c.trim()).filter((c) => c.length > 0);
  if (list.length === 0) throw new SiglipError("usage", `CORS origin list is empty (give "*" or origins like https://app.example)`);
  if (list.includes("*")) return "*";
  for (const o of list) {
    let ok = false;
    try {
      ok = new URL(o).origin === o;
    } catch {
      ok = false;
    }
    if (!ok) throw new SiglipError("usage", `CORS origin ${JSON.stringify(o.slice(0, 100))} is not an origin (scheme://host[:port], e.g. https://app.example or http://localhost:3000, or "*")`);
  }
  return new Set(list);
}

/**
 * Build the server (not yet listening). Throws a SiglipError (code "usage") for inconsistent
 * options, e.g. `maxInputs` larger than `maxQueue`.
 */
export function createServer(model: SigLIP2, options: ServerOptions = {}): FastifyInstance {
  const D = SERVER_DEFAULTS;
  const modelName = options.modelName ?? model.modelId;
  const maxQueue = positiveInt("maxQueue", options.maxQueue ?? D.maxQueue);
  const maxInputs = positiveInt("maxInputs", options.maxInputs ?? D.maxInputs);
  if (maxInputs > maxQueue) {
    throw new SiglipError("usage", `maxInputs (${maxInputs}) is larger than maxQueue (${maxQueue}): a request that large could never be queued; raise maxQueue or lower maxInputs`);
  }
  const timeoutMs = positiveInt("requestTimeoutMs", options.requestTimeoutMs ?? D.requestTimeoutMs, MAX_TIMEOUT_MS);
  const bodyTimeoutMs = positiveInt("bodyTimeoutMs", options.bodyTimeoutMs ?? D.bodyTimeoutMs, MAX_TIMEOUT_MS);
  const bodyLimit = positiveInt("bodyLimit", options.bodyLimit ?? D.bodyLimit);
  if (options.apiKey !== undefined && options.apiKey.trim().length === 0) throw new SiglipError("usage", "the API key is empty");
  const corsOrigins = parseCorsOrigins(options.cors);
  // Request bodies need 4 levels, a handful of keys per object and 2 containers per input.
  const jsonLimits = { maxDepth: 32, maxKeys: 256, maxContainers: 2 * maxInputs + 64 };
  const textLength = model.config.text_config.max_position_embeddings;
  const started = Date.now();
  const gate = new Gate();
  const maxWaitMs = options.maxWaitMs ?? D.maxWaitMs;
  if (!(Number.isFinite(maxWaitMs) && maxWaitMs >= 0 && maxWaitMs <= 60_000)) throw new SiglipError("usage", `server option maxWaitMs must be from 0 to 60000 ms, got ${maxWaitMs}`);
  const common = { maxBatchSize: positiveInt("maxBatchSize", options.maxBatchSize ?? D.maxBatchSize), maxWaitMs, maxQueue, gate };
  // Texts arrive tokenized (see prepareTexts), so a batch is only the forward pass.
  const texts = new MicroBatcher<Int32Array, Float32Array>({
    ...common,
    run: (items) => model.embedTokenIds(items),
    onBatch: (n) => options.onBatch?.("text", n),
  });
  const images = new MicroBatcher<Uint8Array, Float32Array | SiglipError>({
    ...common,
    run: async (items) => settledEmbeddings(await model.imageFeaturesSettled(items)),
    onBatch: (n) => options.onBatch?.("image", n),
  });
  const labels = new LruCache<string, Float32Array>(options.labelCacheSize ?? D.labelCacheSize);
  const requests: Record<string, number> = {};
  let draining = false;
  const keyDigest = options.apiKey !== undefined ? digest(options.apiKey.trim()) : null;

  const app = fastify({
    logger: options.logger ?? false,
    bodyLimit,
    // node's own limits, the backstop for slow clients: the headers within 10 s, the whole
    // request a little after bodyTimeoutMs (the preParsing hook below answers 408 first),
    // checked every second (node's default is every 30 s).
    requestTimeout: bodyTimeoutMs + 5_000,
    http: { headersTimeout: Math.min(10_000, bodyTimeoutMs + 5_000), connectionsCheckingInterval: 1_000 },
    return503OnClosing: false, // the onRequest hook answers 503 in our error shape
    forceCloseConnections: "idle",
    // Requests fastify refuses before routing (a malformed %-escape in the path), in our shape.
    frameworkErrors: (err, _req, reply) => {
      void (reply as FastifyReply).code(400).send(errorBody(`bad request URL: ${firstLine(err.message)}`, "invalid_request_error", null, "bad_url"));
    },
    // Malformed HTTP, oversized headers, node's own timeouts: answered on the socket, in our shape.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === "ECONNRESET" || socket.destroyed) return;
      const [status, text, message] =
        err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? [408, "Request Timeout", "the request did not arrive in time"]
          : err.code === "HPE_HEADER_OVERFLOW" ? [431, "Request Header Fields Too Large", "the request headers are too large (16 KiB at most)"]
            : [400, "Bad Request", `malformed HTTP request (${err.code ?? "parse error"})`];
      const body = JSON.stringify(errorBody(message, statusType(status)));
      if (socket.writable) socket.write(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      socket.destroy(err);
    },
  });

  // ------------------------------------------------------------------ plumbing
  // Bodies are JSON only: fastify's text/plain parser would turn a text body into a string
  // (then a confusing "must be an object"); without a parser it is the 415 it should be.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    let text = body as string;
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a byte-order mark, as some Windows tools send
    if (text.trim().length === 0) return done(badRequest("the request body is empty; send a JSON object"), undefined);
    const shape = jsonShapeProblem(text, jsonLimits);
    if (shape !== null) return done(shape, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(badRequest(`the request body is not valid JSON (${firstLine(e instanceof Error ? e.message : String(e), 160)})`), undefined);
    }
  });

  app.addHook("onRequest", async (req, reply) => {
    if (corsOrigins !== null) {
      const origin = req.headers.origin;
      if (origin !== undefined && (corsOrigins === "*" || corsOrigins.has(origin))) {
        reply.header("access-control-allow-origin", corsOrigins === "*" ? "*" : origin);
        reply.header("access-control-expose-headers", "retry-after");
      }
      if (corsOrigins !== "*") reply.header("vary", "Origin");
      if (req.method === "OPTIONS") return; // preflight: browsers send no credentials
    }
    const route = req.routeOptions.url;
    if (draining && route !== "/health") throw new ClosedError();
    if (keyDigest !== null && !(route !== undefined && OPEN_ROUTES.has(route))) {
      const h = req.headers.authorization ?? "";
      const m = /^Bearer\s+(\S.*)$/i.exec(h);
      // Both sides are SHA-256 digests: equal length, and the comparison takes the same time
      // wherever they differ.
      if (!m || !timingSafeEqual(digest(m[1]!.trim()), keyDigest)) {
        reply.header("www-authenticate", 'Bearer realm="siglip2"');
        const why = m ? "invalid API key" : h === "" ? "missing API key: send Authorization: Bearer <key>" : "the Authorization header is not a Bearer token: send Authorization: Bearer <key>";
        throw new HttpError(401, why, "authentication_error");
      }
    }
    const enc = req.headers["content-encoding"];
    if (enc !== undefined && enc.trim().toLowerCase() !== "identity") {
      reply.header("connection", "close");
      throw new HttpError(415, `Content-Encoding ${preview(enc)} is not supported; send the body uncompressed`, "invalid_request_error", null, "unsupported_encoding");
    }
  });
  // A slow body is cut off at bodyTimeoutMs with a 408 (the stream fastify reads errors out).
  app.addHook("preParsing", async (req, reply, payload) => {
    const out = new PassThrough();
    const timer = setTimeout(() => {
      payload.unpipe(out);
      reply.header("connection", "close");
      out.destroy(new HttpError(408, `the request body did not arrive within ${bodyTimeoutMs} ms`, "timeout_error", null, "body_timeout"));
    }, bodyTimeoutMs);
    const stop = () => clearTimeout(timer);
    out.once("end", stop);
    out.once("close", stop);
    reply.raw.once("close", stop);
    payload.once("error", (e) => out.destroy(e));
    payload.pipe(out);
    return out;
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
    if (err instanceof ClosedError) return reply.code(503).header("connection", "close").send(errorBody(err.message, "service_unavailable", null, "shutting_down"));
    if (err instanceof TimeoutError) return reply.code(504).send(errorBody(err.message, "timeout_error", null, "timeout"));
    if (err instanceof ClientGoneError) return reply.code(499).send(errorBody(err.message, "invalid_request_error"));
    if (err instanceof SiglipError) {
      const client = ["input", "image", "usage"].includes(err.code);
      if (!client) req.log.error(err);
      return reply.code(client ? 400 : 500).send(errorBody(firstLine(err.message, 400), client ? "invalid_request_error" : "server_error", null, err.code));
    }
    const status = (err as FastifyError).statusCode;
    if (typeof status === "number" && status >= 400 && status < 500) {
      const code = (err as FastifyError).code;
      let msg = firstLine(err.message);
      if (code === "FST_ERR_CTP_BODY_TOO_LARGE") msg = `request body too large (limit ${bodyLimit} bytes)`;
      if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") msg = `unsupported content type ${preview(req.headers["content-type"] ?? "")}; send application/json`;
      if (code === "FST_ERR_CTP_INVALID_CONTENT_LENGTH") msg = "the request body's length does not match its Content-Length header";
      return reply.code(status).send(errorBody(msg, statusType(status)));
    }
    req.log.error(err);
    return reply.code(500).send(errorBody(`internal error: ${firstLine(err.message)}`, "server_error"));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(`no route ${req.method} ${req.url.split("?")[0]!.slice(0, 200)}`, "not_found_error"));
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
      if (!reply.raw.writableFinished) ac.abort(new ClientGoneError());
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

  interface PreparedTexts {
    ids: Int32Array[];
    /** Tokens the model reads: content kept plus <eos>, summed. */
    tokens: number;
    /** Texts cut to fit the model's window. */
    truncated: number;
  }

  /**
   * Tokenize texts a slice at a time, letting the event loop run in between (a request may hold
   * 2048 texts, each up to the body limit; the tokenizer reads only the start of a long one).
   * With `truncate: false`, a text longer than the window is a 400 naming it.
   */
  async function prepareTexts(list: string[], param: (i: number) => string, truncate: boolean, signal: AbortSignal): Promise<PreparedTexts> {
    const out: PreparedTexts = { ids: [], tokens: 0, truncated: 0 };
    let t0 = performance.now();
    for (let i = 0; i < list.length; i++) {
      const [d] = await model.tokenizeDetailed([list[i]!]);
      if (d!.truncated) {
        if (!truncate) {
          throw badRequest(
            `${param(i)}: the text is longer than the model's ${textLength - 1}-token limit; shorten it, or leave out "truncate": false to have it cut to fit`,
            param(i),
            "text_too_long",
          );
        }
        out.truncated++;
      }
      out.tokens += d!.contentTokens + 1;
      out.ids.push(d!.ids);
      if (performance.now() - t0 > TOKENIZE_SLICE_MS) {
        await nextTurn();
        if (signal.aborted) throw signal.reason;
        t0 = performance.now();
      }
    }
    return out;
  }

  async function embedImages(bytes: Uint8Array[], signal: AbortSignal, param: (i: number) => string): Promise<Float32Array[]> {
    const out = await images.submit(bytes, signal);
    return out.map((r, i) => {
      if (r instanceof SiglipError) throw badRequest(`${param(i)}: ${r.message.replace(/^cannot read image <image bytes>: /, "cannot read the image: ")}`, param(i));
      return r;
    });
  }

  /** Never serialise NaN or ±Infinity (JSON would turn them into null): a 500 naming the input. */
  function finite(vs: ArrayLike<number>[], param: (i: number) => string, what: string): void {
    vs.forEach((v, i) => assertFinite(v, param(i), what));
  }

  /** Label prompt embeddings: cached ones from the LRU, the others embedded (batched with other texts). */
  async function labelEmbeddings(ls: string[], template: string, truncate: boolean, signal: AbortSignal): Promise<Float32Array[]> {
    const prompts = ls.map((l) => applyTemplate(template, l));
    const have = new Map<string, Float32Array>();
    for (const p of prompts) {
      const e = labels.get(p);
      if (e) have.set(p, e);
    }
    const missing = [...new Set(prompts.filter((p) => !have.has(p)))];
    if (missing.length > 0) {
      const prepared = await prepareTexts(missing, (i) => `labels[${prompts.indexOf(missing[i]!)}]`, truncate, signal);
      const embs = await texts.submit(prepared.ids, signal);
      finite(embs, (i) => `labels[${prompts.indexOf(missing[i]!)}]`, "label embedding");
      missing.forEach((p, i) => {
        have.set(p, embs[i]!);
        labels.set(p, embs[i]!);
      });
    }
    return prompts.map((p) => have.get(p)!);
  }

  /** The fields every POST accepts and ignores or checks: `model` (any name; one model is served), `user`. */
  function commonFields(body: Record<string, unknown>): void {
    optionalString(body, "model");
    optionalString(body, "user");
  }

  // ------------------------------------------------------------------ routes
  app.get("/health", async (_req, reply) => {
    if (draining) reply.code(503);
    return { status: draining ? "draining" : "ok", model: modelName, uptime_s: Math.round((Date.now() - started) / 1000) };
  });

  const modelCard = () => ({
    id: modelName, object: "model", created: Math.floor(started / 1000), owned_by: "siglip2", dimensions: model.dim, naflex: model.isNaflex,
  });
  app.get("/v1/models", async () => ({ object: "list", data: [modelCard()] }));
  // The SDKs' models.retrieve(id): ids may hold "/" (Hub ids), sent as is or as %2F.
  app.get("/v1/models/*", async (req) => {
    const id = (req.params as Record<string, string>)["*"] ?? "";
    if (id !== modelName) {
      throw new HttpError(404, `model ${preview(id)} is not served here; this server serves ${JSON.stringify(modelName)}`, "not_found_error", "model", "model_not_found");
    }
    return modelCard();
  });

  if (corsOrigins !== null) {
    app.options("*", async (req, reply) => {
      const asked = req.headers["access-control-request-headers"];
      const allow = typeof asked === "string" && asked.length <= 1000 && /^[\w\-, ]*$/.test(asked) && asked.trim().length > 0 ? asked : "authorization, content-type";
      return reply
        .code(204)
        .header("access-control-allow-methods", "GET, POST, OPTIONS")
        .header("access-control-allow-headers", allow)
        .header("access-control-max-age", "600")
        .send();
    });
  }

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
    const inputs = parseEmbeddingInput(optional(body, "input"), maxInputs);
    const format = parseEncodingFormat(body);
    checkDimensions(body, model.dim);
    commonFields(body);
    const truncate = optionalBoolean(body, "truncate") ?? true;
    const ac = deadline(reply);
    const signal = ac.signal;
    const textIdx: number[] = [];
    const imageIdx: number[] = [];
    inputs.forEach((x, i) => (x.kind === "text" ? textIdx : imageIdx).push(i));
    const prepared = await prepareTexts(textIdx.map((i) => (inputs[i] as { text: string }).text), (k) => `input[${textIdx[k]}]`, truncate, signal);
    const [textEmb, imageEmb] = await all<[Float32Array[], Float32Array[]]>(ac, [
      texts.submit(prepared.ids, signal),
      embedImages(imageIdx.map((i) => (inputs[i] as { bytes: Uint8Array }).bytes), signal, (k) => `input[${imageIdx[k]}]`),
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

  app.post("/v1/classify", async (req, reply) => {
    const body = bodyObject(req.body);
    const imgs = parseImageList(optional(body, "images"), "images", maxInputs);
    const ls = parseStringList(optional(body, "labels"), "labels", maxInputs);
    const template = optionalString(body, "template") ?? DEFAULT_TEMPLATE;
    if (!template.includes("{}")) throw badRequest(`"template" ${preview(template)} has no {} placeholder for the label`, "template");
    commonFields(body);
    const truncate = optionalBoolean(body, "truncate") ?? true;
    const ac = deadline(reply);
    const [labelEmb, imgEmb] = await all<[Float32Array[], Float32Array[]]>(ac, [
      labelEmbeddings(ls, template, truncate, ac.signal),
      embedImages(imgs, ac.signal, (i) => `images[${i}]`),
    ]);
    finite(imgEmb, (i) => `images[${i}]`, "embedding");
    const scores = model.scoreLabels(imgEmb, ls, labelEmb);
    finite(scores.map((row) => row.flatMap((x) => [x.logit, x.probability])), (i) => `images[${i}]`, "label scores");
    return { object: "list", model: modelName, data: scores.map((s, index) => ({ index, scores: s })) };
  });

  if (options.store) {
    const store = options.store;
    app.post("/v1/search", async (req, reply) => {
      const body = bodyObject(req.body);
      const k = optional(body, "k") ?? DEFAULT_K;
      if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > MAX_K) throw badRequest(`"k" must be an integer from 1 to ${MAX_K}, got ${preview(k)}`, "k");
      const query = optional(body, "query");
      const image = optional(body, "image");
      if ((query === undefined) === (image === undefined)) throw badRequest(`give exactly one of "query" (a text) or "image" (a data: URL or base64)`, query === undefined ? "query" : "image");
      commonFields(body);
      const truncate = optionalBoolean(body, "truncate") ?? true;
      const signal = deadline(reply).signal;
      let hits;
      if (query !== undefined) {
        if (typeof query !== "string") throw badRequest(`"query" must be a string, got ${preview(query)}`, "query");
        const prepared = await prepareTexts([query], () => "query", truncate, signal);
        const [q] = await texts.submit(prepared.ids, signal);
        assertFinite(q!, "query", "embedding");
        hits = await searchByVector(model, store, q!, "text", k);
      } else {
        const [q] = await embedImages([parseImageRef(image, "image")], signal, () => "image");
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
  return app;
}
