/**
 * `siglip2 serve --model M [--host 127.0.0.1] [--port 8080] [--db [PATH]]`: the
 * embedding server (src/server/app.ts). SIGINT/SIGTERM shut it down gracefully:
 * no new connections, in-flight requests finish, then the process exits 0.
 */
import type { Command } from "commander";
import { isIP } from "node:net";
import { SiglipError } from "../errors.js";
import type { ImageStore } from "../search/store.js";
import type { ServerOptions } from "../server/app.js";
import { MAX_TIMEOUT_MS, SERVER_DEFAULTS } from "../server/defaults.js";
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

function intOpt(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new SiglipError("usage", `${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v.slice(0, 40))}`);
    return n;
  };
}

function numOpt(name: string, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || n > max) throw new SiglipError("usage", `${name} must be a positive number up to ${max}, got ${JSON.stringify(v.slice(0, 40))}`);
    return n;
  };
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));
}

async function cmdServe(ctx: CliContext, o: ServeOpts): Promise<void> {
  // Option conflicts are usage errors before the model loads, not a silent cap.
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
  const apiKey = o.apiKey ?? (process.env["SIGLIP2_API_KEY"]?.trim() || undefined);
  const { assertSameModel, embeddingSetup, modelName } = await import("../search/identity.js");
  const { ImageStore, defaultDbPath } = await import("../search/store.js");
  const { createServer } = await import("../server/app.js");
  // libvips' operation cache (up to 50 MB) only helps when the same file is read again;
  // a server decodes new bytes every time, so it would just hold memory.
  (await import("sharp")).default.cache(false);
  const model = await ctx.loadModel({ ...o, batchSize: o.batchSize ?? o.maxBatchSize });
  let store: ImageStore | undefined;
  try {
    if (o.db !== undefined) {
      const dbPath = o.db === true ? defaultDbPath() : o.db;
      store = await ImageStore.open(dbPath, o.table, { readConsistencyInterval: 5 });
      const setup = await embeddingSetup(model, modelName(o.model), {
        resampler: store.meta.resampler,
        ...(store.meta.maxPatches !== undefined ? { maxPatches: store.meta.maxPatches } : {}),
      });
      assertSameModel(store.meta, setup, store.where, "search");
    }
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
    const app = createServer(model, sopts);
    let address: string;
    try {
      address = await app.listen({ host: o.host, port: o.port });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === "EADDRINUSE" ? "the port is in use" : code === "EACCES" ? "permission denied" : (e as Error).message;
      throw new SiglipError("usage", `cannot listen on ${o.host}:${o.port}: ${why}`);
    }
    if (!isLoopback(o.host) && apiKey === undefined) {
      note(`warning: listening on ${o.host} without an API key; anyone who can reach this port can use the server (set --api-key or SIGLIP2_API_KEY)`);
    }
    note(`serving ${model.modelId} on ${address} (search: ${store ? store.where : "off, pass --db"}; API key: ${apiKey !== undefined ? "required" : "none"}${o.cors !== undefined ? `; CORS: ${o.cors}` : ""})`);
    await new Promise<void>((resolve) => {
      let closing = false;
      const shutdown = (sig: string) => {
        if (closing) {
          note(`${sig} again: exiting now`);
          process.exit(130);
        }
        closing = true;
        note(`${sig}: shutting down; finishing in-flight requests`);
        const force = setTimeout(() => {
          note(`requests still running after ${o.shutdownTimeoutMs} ms; exiting`);
          process.exit(1);
        }, o.shutdownTimeoutMs);
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
    .option("--port <port>", "port (0 picks a free one)", intOpt("--port", 0, 65535), 8080)
    .option("--db [path]", `enable POST /v1/search on this index (bare --db: ${DEFAULT_DB_HELP})`)
    .option("--table <name>", "table in the database", DEFAULT_TABLE)
    .option("--api-key <key>", "require Authorization: Bearer <key> (default: $SIGLIP2_API_KEY; none if unset)")
    .option("--max-batch-size <n>", "most inputs merged into one forward pass", intOpt("--max-batch-size", 1), 32)
    .option("--max-wait-ms <ms>", "how long a request waits for others to join its batch", intOpt("--max-wait-ms", 0, 60_000), 5)
    .option("--max-queue <n>", "most inputs waiting per tower; beyond it requests get 429", intOpt("--max-queue", 1), SERVER_DEFAULTS.maxQueue)
    .option("--max-inputs <n>", "most inputs (or labels) per request, at most --max-queue; beyond it 413", intOpt("--max-inputs", 1), SERVER_DEFAULTS.maxInputs)
    .option("--body-limit-mb <mb>", "largest request body; beyond it 413", numOpt("--body-limit-mb", 4096), 20)
    .option("--timeout-ms <ms>", "per-request time limit once the body has arrived, queueing included; beyond it 504", intOpt("--timeout-ms", 1, MAX_TIMEOUT_MS), SERVER_DEFAULTS.requestTimeoutMs)
    .option("--body-timeout-ms <ms>", "the request body must arrive within this time; beyond it 408", intOpt("--body-timeout-ms", 1, MAX_TIMEOUT_MS), SERVER_DEFAULTS.bodyTimeoutMs)
    .option("--cors <origins>", 'answer browsers from these origins: "*" or a comma-separated list such as https://app.example')
    .option("--shutdown-timeout-ms <ms>", "on SIGINT/SIGTERM, how long in-flight requests may take to finish", intOpt("--shutdown-timeout-ms", 1, MAX_TIMEOUT_MS), 30_000)
    .option("--log", "log every request (JSON, on stderr)")
    .action((opts: ServeOpts) => cmdServe(ctx, opts));
}
