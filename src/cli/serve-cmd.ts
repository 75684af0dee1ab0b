/**
 * `siglip2 serve --model M [--host 127.0.0.1] [--port 8080] [--db [PATH]]`: the
 * embedding server (src/server/app.ts); with --db also search and the web UI at `/`.
 * SIGINT/SIGTERM shut it down gracefully: no new connections, in-flight requests finish,
 * then the process exits 0.
 */
import type { Command } from "commander";
import { isIP } from "node:net";
import { SiglipError } from "../errors.js";
import type { FastifyInstance } from "fastify";
import type { SigLIP2 } from "../api.js";
import type { ImageStore } from "../search/store.js";
import type { ServerOptions } from "../server/app.js";
import { MAX_TIMEOUT_MS, SERVER_DEFAULTS } from "../server/defaults.js";
import { intOption, numOption } from "./args.js";
import { DEFAULT_DB_HELP, DEFAULT_TABLE, note, type CliContext, type ModelOpts } from "./context.js";

interface ServeOpts extends ModelOpts {
  host: string;
  port: number;
  db?: string | true;
  table: string;
  apiKey?: string;
  maxBatchSize: number;
  maxWaitMs: number;
  maxQueue: number;
  maxInputs: number;
  bodyLimitMb: number;
  timeoutMs: number;
  bodyTimeoutMs: number;
  shutdownTimeoutMs: number;
  cors?: string;
  log?: boolean;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));
}

/** Option conflicts are usage errors before the model loads, not a silent cap. */
async function checkServeOptions(o: ServeOpts): Promise<void> {
  if (o.maxInputs > o.maxQueue) {
    throw new SiglipError("usage", `--max-inputs ${o.maxInputs} is larger than --max-queue ${o.maxQueue}: a request that large could never be queued; raise --max-queue or lower --max-inputs`);
  }
  if (o.apiKey !== undefined && o.apiKey.trim().length === 0) throw new SiglipError("usage", "--api-key is empty");
  const { parseCorsOrigins } = await import("../server/app.js");
  try {
    parseCorsOrigins(o.cors);
  } catch (e) {
    throw new SiglipError("usage", `--cors: ${(e as Error).message}`);
  }
}

/** With --db: the index, checked to be built with the served model and preprocessing. */
async function openIndex(model: SigLIP2, o: ServeOpts): Promise<ImageStore | undefined> {
  if (o.db === undefined) return undefined;
  const { assertSameModel, embeddingSetup, modelName } = await import("../search/identity.js");
  const { ImageStore, defaultDbPath } = await import("../search/store.js");
  const dbPath = o.db === true ? defaultDbPath() : o.db;
  const store = await ImageStore.open(dbPath, o.table, { readConsistencyInterval: 5 });
  try {
    const setup = await embeddingSetup(model, modelName(o.model), {
      resampler: store.meta.resampler,
      ...(store.meta.maxPatches !== undefined ? { maxPatches: store.meta.maxPatches } : {}),
    });
    assertSameModel(store.meta, setup, store.where, "search");
  } catch (e) {
    store.close();
    throw e;
  }
  return store;
}

/** The flags as createServer options. */
function serverOptions(o: ServeOpts, apiKey: string | undefined, store: ImageStore | undefined): ServerOptions {
  const sopts: ServerOptions = {
    maxBatchSize: o.maxBatchSize,
    maxWaitMs: o.maxWaitMs,
    maxQueue: o.maxQueue,
    maxInputs: o.maxInputs,
    bodyLimit: Math.round(o.bodyLimitMb * 1024 * 1024),
    requestTimeoutMs: o.timeoutMs,
    bodyTimeoutMs: o.bodyTimeoutMs,
    logger: o.log ? { level: "info", stream: process.stderr } : false,
  };
  if (apiKey !== undefined) sopts.apiKey = apiKey;
  if (store) sopts.store = store;
  if (o.cors !== undefined) sopts.cors = o.cors;
  return sopts;
}

/** Listen on --host/--port; a port in use or refused is one usage line. */
async function listen(app: FastifyInstance, o: ServeOpts): Promise<string> {
  try {
    return await app.listen({ host: o.host, port: o.port });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "EADDRINUSE" ? "the port is in use" : code === "EACCES" ? "permission denied" : (e as Error).message;
    throw new SiglipError("usage", `cannot listen on ${o.host}:${o.port}: ${why}`);
  }
}

/**
 * Resolve once the server has shut down: the first SIGINT/SIGTERM closes it (in-flight requests
 * finish; exit 1 after `shutdownTimeoutMs`), a second exits at once (130).
 */
function untilSignalled(app: FastifyInstance, shutdownTimeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    let closing = false;
    const shutdown = (sig: string) => {
      if (closing) {
        note(`${sig} again: exiting now`);
        process.exit(130);
      }
      closing = true;
      note(`${sig}: shutting down; finishing in-flight requests`);
      const force = setTimeout(() => {
        note(`requests still running after ${shutdownTimeoutMs} ms; exiting`);
        process.exit(1);
      }, shutdownTimeoutMs);
      force.unref();
      app.close().then(() => {
        clearTimeout(force);
        process.off("SIGINT", onInt);
        process.off("SIGTERM", onTerm);
        resolve();
      });
    };
    const onInt = () => shutdown("SIGINT");
    const onTerm = () => shutdown("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
  });
}

async function cmdServe(ctx: CliContext, o: ServeOpts): Promise<void> {
  await checkServeOptions(o);
  const apiKey = o.apiKey ?? (process.env["SIGLIP2_API_KEY"]?.trim() || undefined);
  const { createServer } = await import("../server/app.js");
  // libvips' operation cache (up to 50 MB) only helps when the same file is read again;
  // a server decodes new bytes every time, so it would just hold memory.
  (await import("sharp")).default.cache(false);
  const model = await ctx.loadModel({ ...o, batchSize: o.batchSize ?? o.maxBatchSize });
  let store: ImageStore | undefined;
  try {
    store = await openIndex(model, o);
    const app = createServer(model, serverOptions(o, apiKey, store));
    const address = await listen(app, o);
    if (!isLoopback(o.host) && apiKey === undefined) {
      note(`warning: listening on ${o.host} without an API key; anyone who can reach this port can use the server (set --api-key or SIGLIP2_API_KEY)`);
    }
    note(`serving ${model.modelId} on ${address} (search: ${store ? store.where : "off, pass --db"}; API key: ${apiKey !== undefined ? "required" : "none"}${o.cors !== undefined ? `; CORS: ${o.cors}` : ""})`);
    if (store) note(`web UI: ${address}/`);
    await untilSignalled(app, o.shutdownTimeoutMs);
    note("stopped");
  } finally {
    store?.close();
    await model.close();
  }
}

export function registerServeCommand(program: Command, ctx: CliContext): void {
  ctx
    .withModelOptions(program.command("serve").description("HTTP server: OpenAI-compatible /v1/embeddings, /v1/classify, /v1/search (see /openapi.json)"))
    .option("--host <host>", "address to listen on (loopback by default)", "127.0.0.1")
    .option("--port <port>", "port (0 picks a free one)", intOption("--port", { min: 0, max: 65535, range: true }), 8080)
    .option("--db [path]", `enable POST /v1/search and the web UI at / on this index (bare --db: ${DEFAULT_DB_HELP})`)
    .option("--table <name>", "table in the database", DEFAULT_TABLE)
    .option("--api-key <key>", "require Authorization: Bearer <key> (default: $SIGLIP2_API_KEY; none if unset)")
    .option("--max-batch-size <n>", "most inputs merged into one forward pass", intOption("--max-batch-size", { min: 1, range: true }), 32)
    .option("--max-wait-ms <ms>", "how long a request waits for others to join its batch", intOption("--max-wait-ms", { min: 0, max: 60_000, range: true }), 5)
    .option("--max-queue <n>", "most inputs waiting per tower; beyond it requests get 429", intOption("--max-queue", { min: 1, range: true }), SERVER_DEFAULTS.maxQueue)
    .option("--max-inputs <n>", "most inputs (or labels) per request, at most --max-queue; beyond it 413", intOption("--max-inputs", { min: 1, range: true }), SERVER_DEFAULTS.maxInputs)
    .option("--body-limit-mb <mb>", "largest request body; beyond it 413", numOption("--body-limit-mb", { min: 0, minExclusive: true, max: 4096, describe: "a positive number up to 4096" }), 20)
    .option("--timeout-ms <ms>", "per-request time limit once the body has arrived, queueing included; beyond it 504", intOption("--timeout-ms", { min: 1, max: MAX_TIMEOUT_MS, range: true }), SERVER_DEFAULTS.requestTimeoutMs)
    .option("--body-timeout-ms <ms>", "the request body must arrive within this time; beyond it 408", intOption("--body-timeout-ms", { min: 1, max: MAX_TIMEOUT_MS, range: true }), SERVER_DEFAULTS.bodyTimeoutMs)
    .option("--cors <origins>", 'answer browsers from these origins: "*" or a comma-separated list such as https://app.example')
    .option("--shutdown-timeout-ms <ms>", "on SIGINT/SIGTERM, how long in-flight requests may take to finish", intOption("--shutdown-timeout-ms", { min: 1, max: MAX_TIMEOUT_MS, range: true }), 30_000)
    .option("--log", "log every request (JSON, on stderr)")
    .action((opts: ServeOpts) => cmdServe(ctx, opts));
}
