/**
 * What every route shares: the options (checked once, {@link resolveConfig}), the two
 * micro-batchers (texts and images, one forward pass at a time through a shared Gate), the
 * label cache, the counters of GET /stats, and the request helpers: deadlines, tokenizing in
 * event-loop slices, image embedding with per-input errors.
 */
import { setImmediate as nextTurn } from "node:timers/promises";
import type { FastifyReply } from "fastify";
import type { SigLIP2 } from "../api.js";
import { SiglipError, assertFinite } from "../errors.js";
import { LruCache } from "../lru.js";
import type { ImageStore } from "../search/store.js";
import { settledEmbeddings } from "../tasks/image-pipeline.js";
import { apiKeyDigest } from "./auth.js";
import { Gate, MicroBatcher, type BatcherStats } from "./batcher.js";
import { parseCorsOrigins, type CorsOrigins } from "./cors.js";
import { MAX_TIMEOUT_MS, SERVER_DEFAULTS } from "./defaults.js";
import { ClientGoneError, TimeoutError } from "./errors.js";
import { badRequest, type JsonShapeLimits } from "./inputs.js";

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
  /** Require `Authorization: Bearer <apiKey>` on every endpoint except /health, /openapi.json and the web UI's page and script. */
  apiKey?: string;
  /** Answer browsers from these origins (CORS): `"*"` for any, or a list of origins like `https://app.example`. */
  cors?: string | string[];
  /** An open index: enables POST /v1/search and the web UI (GET /, /v1/thumbnails, /v1/index). Its model must be the served model (checked by the caller). */
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

/** The options with defaults applied, checked. */
export interface ServerConfig {
  modelName: string;
  maxQueue: number;
  maxInputs: number;
  /** requestTimeoutMs. */
  timeoutMs: number;
  bodyTimeoutMs: number;
  bodyLimit: number;
  maxWaitMs: number;
  maxBatchSize: number;
  labelCacheSize: number;
  corsOrigins: CorsOrigins;
  /** SHA-256 of the API key, or null when auth is off. */
  keyDigest: Buffer | null;
  /** Request bodies need 4 levels, a handful of keys per object and 2 containers per input. */
  jsonLimits: JsonShapeLimits;
}

function positiveInt(name: string, v: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(v) || v < 1 || v > max) throw new SiglipError("usage", `server option ${name} must be an integer from 1 to ${max}, got ${v}`);
  return v;
}

/** Apply defaults and check the options; a SiglipError (code "usage") names the first bad one. */
export function resolveConfig(model: SigLIP2, options: ServerOptions): ServerConfig {
  const D = SERVER_DEFAULTS;
  const maxQueue = positiveInt("maxQueue", options.maxQueue ?? D.maxQueue);
  const maxInputs = positiveInt("maxInputs", options.maxInputs ?? D.maxInputs);
  if (maxInputs > maxQueue) {
    throw new SiglipError("usage", `maxInputs (${maxInputs}) is larger than maxQueue (${maxQueue}): a request that large could never be queued; raise maxQueue or lower maxInputs`);
  }
  const timeoutMs = positiveInt("requestTimeoutMs", options.requestTimeoutMs ?? D.requestTimeoutMs, MAX_TIMEOUT_MS);
  const bodyTimeoutMs = positiveInt("bodyTimeoutMs", options.bodyTimeoutMs ?? D.bodyTimeoutMs, MAX_TIMEOUT_MS);
  const bodyLimit = positiveInt("bodyLimit", options.bodyLimit ?? D.bodyLimit);
  const keyDigest = apiKeyDigest(options.apiKey);
  const corsOrigins = parseCorsOrigins(options.cors);
  const maxWaitMs = options.maxWaitMs ?? D.maxWaitMs;
  if (!(Number.isFinite(maxWaitMs) && maxWaitMs >= 0 && maxWaitMs <= 60_000)) throw new SiglipError("usage", `server option maxWaitMs must be from 0 to 60000 ms, got ${maxWaitMs}`);
  const maxBatchSize = positiveInt("maxBatchSize", options.maxBatchSize ?? D.maxBatchSize);
  return {
    modelName: options.modelName ?? model.modelId,
    maxQueue, maxInputs, timeoutMs, bodyTimeoutMs, bodyLimit, maxWaitMs, maxBatchSize,
    labelCacheSize: options.labelCacheSize ?? D.labelCacheSize,
    corsOrigins,
    keyDigest,
    jsonLimits: { maxDepth: 32, maxKeys: 256, maxContainers: 2 * maxInputs + 64 },
  };
}

/** Longest stretch of tokenizing (or serialising) before the event loop gets a turn (ms). */
export const TOKENIZE_SLICE_MS = 8;

/** Texts tokenized for the text batcher. */
export interface PreparedTexts {
  ids: Int32Array[];
  /** Tokens the model reads: content kept plus <eos>, summed. */
  tokens: number;
  /** Texts cut to fit the model's window. */
  truncated: number;
}

/** The state shared by the routes of one server. */
export class ServerContext {
  readonly started = Date.now();
  /** Set when close() begins: new requests get 503, /health reports "draining". */
  draining = false;
  /** Responses by status code (GET /stats). */
  readonly requests: Record<string, number> = {};
  /** Texts arrive tokenized (see {@link prepareTexts}), so a batch is only the forward pass. */
  readonly texts: MicroBatcher<Int32Array, Float32Array>;
  readonly images: MicroBatcher<Uint8Array, Float32Array | SiglipError>;
  /** Label prompt embeddings, per filled-in prompt. */
  readonly labels: LruCache<string, Float32Array>;
  private readonly textLength: number;

  constructor(
    readonly model: SigLIP2,
    readonly cfg: ServerConfig,
    readonly options: ServerOptions,
  ) {
    const common = { maxBatchSize: cfg.maxBatchSize, maxWaitMs: cfg.maxWaitMs, maxQueue: cfg.maxQueue, gate: new Gate() };
    this.texts = new MicroBatcher<Int32Array, Float32Array>({
      ...common,
      run: (items) => model.embedTokenIds(items),
      onBatch: (n) => options.onBatch?.("text", n),
    });
    this.images = new MicroBatcher<Uint8Array, Float32Array | SiglipError>({
      ...common,
      run: async (items) => settledEmbeddings(await model.imageFeaturesSettled(items)),
      onBatch: (n) => options.onBatch?.("image", n),
    });
    this.labels = new LruCache<string, Float32Array>(cfg.labelCacheSize);
    this.textLength = model.config.text_config.max_position_embeddings;
  }

  /**
   * Abort on the request's deadline, or when the client goes away. The caller also
   * aborts it when one part of a request fails, so its other queued items leave the queue.
   */
  deadline(reply: FastifyReply): AbortController {
    const ac = new AbortController();
    const timeoutMs = this.cfg.timeoutMs;
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

  /**
   * Tokenize texts a slice at a time, letting the event loop run in between (a request may hold
   * 2048 texts, each up to the body limit; the tokenizer reads only the start of a long one).
   * With `truncate: false`, a text longer than the window is a 400 naming it.
   */
  async prepareTexts(list: string[], param: (i: number) => string, truncate: boolean, signal: AbortSignal): Promise<PreparedTexts> {
    const out: PreparedTexts = { ids: [], tokens: 0, truncated: 0 };
    let t0 = performance.now();
    for (let i = 0; i < list.length; i++) {
      const [d] = await this.model.tokenizeDetailed([list[i]!]);
      if (d!.truncated) {
        if (!truncate) {
          throw badRequest(
            `${param(i)}: the text is longer than the model's ${this.textLength - 1}-token limit; shorten it, or leave out "truncate": false to have it cut to fit`,
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

  /** Embed encoded images through the image batcher; an unreadable one is a 400 naming its parameter. */
  async embedImages(bytes: Uint8Array[], signal: AbortSignal, param: (i: number) => string): Promise<Float32Array[]> {
    const out = await this.images.submit(bytes, signal);
    return out.map((r, i) => {
      if (r instanceof SiglipError) throw badRequest(`${param(i)}: ${r.message.replace(/^cannot read image <image bytes>: /, "cannot read the image: ")}`, param(i));
      return r;
    });
  }
}

/** Run the parts of a request together; when one fails, withdraw the others. */
export async function all<T extends readonly unknown[]>(ac: AbortController, parts: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  try {
    return (await Promise.all(parts)) as unknown as T;
  } catch (e) {
    if (!ac.signal.aborted) ac.abort(e);
    throw e;
  }
}

/** Never serialise NaN or ±Infinity (JSON would turn them into null): a 500 naming the input. */
export function finite(vs: ArrayLike<number>[], param: (i: number) => string, what: string): void {
  vs.forEach((v, i) => assertFinite(v, param(i), what));
}
