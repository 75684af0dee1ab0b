/**
 * `siglip2 worker --queue redis://HOST:PORT --model M [--concurrency N] [--db PATH]`: take
 * batches enqueued by `siglip2 index DIR --queue …`, embed them and write them to the shared
 * table (src/search/queue.ts). stdout: one JSON line per job done; stderr: one line per
 * problem (a job failed, a file changed since it was enqueued, Redis went away).
 * Runs until SIGINT/SIGTERM (finishing its jobs in flight), or with --until-empty until the
 * queue holds nothing to do; if Redis stays unreachable for --redis-timeout seconds, it ends its
 * LanceDB writes in flight and exits 3 with one line (code "queue-lost").
 */
import type { Command } from "commander";
import { SiglipError } from "../errors.js";
import { intOption } from "./args.js";
import { DEFAULT_TABLE, note, type CliContext, type ModelOpts } from "./context.js";

interface WorkerOpts extends ModelOpts {
  queue: string;
  queueName?: string;
  table: string;
  db?: string;
  concurrency?: number;
  lockDuration?: number;
  stalledInterval?: number;
  untilEmpty?: boolean;
  redisTimeout?: number;
}

/** --concurrency bound (src/search/queue.ts MAX_CONCURRENCY; repeated so that --help does not load BullMQ). */
const MAX_CONCURRENCY = 64;
/** --redis-timeout default and bound (src/search/queue.ts DEFAULT_REDIS_TIMEOUT_S, MAX_REDIS_TIMEOUT_S; repeated for the same reason). */
const DEFAULT_REDIS_TIMEOUT_S = 60;
const MAX_REDIS_TIMEOUT_S = 86_400;

/** The --redis-timeout option of `worker` and `index --queue`. */
export const REDIS_TIMEOUT_FLAGS = "--redis-timeout <s>";
export const REDIS_TIMEOUT_HELP = `how long Redis may stay unreachable (no answer to PING) before this run stops with one line and exit status 3 (default ${DEFAULT_REDIS_TIMEOUT_S}; at most ${MAX_REDIS_TIMEOUT_S}); a shorter outage is ridden out`;
export const redisTimeoutOption = intOption("--redis-timeout", { min: 1, max: MAX_REDIS_TIMEOUT_S, maxWhy: "a day" });

async function cmdWorker(ctx: CliContext, o: WorkerOpts): Promise<void> {
  const q = await import("../search/queue.js");
  const { embeddingSetup, modelName } = await import("../search/identity.js");
  const target = q.parseRedisUrl(o.queue);
  const name = q.checkQueueName(o.queueName ?? q.defaultQueueName(o.table));
  const redis = await q.connectRedis(target, true); // before the model loads: a wrong URL is reported at once
  let model;
  let stopRequested = false;
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((r) => (stop = r));
  const onSignal = () => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    note("stopping after the jobs in flight (press Ctrl-C again to quit at once; BullMQ re-delivers unfinished jobs)");
    stop();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const meta = await q.readQueueMeta(redis, name);
    // The queue's table fixes the image settings (resampler, patch budget, precision) unless given.
    const opts: ModelOpts = { ...o };
    if (meta && opts.resampler === undefined) opts.resampler = meta.identity.resampler;
    if (meta?.identity.maxPatches !== undefined && opts.maxPatches === undefined) opts.maxPatches = meta.identity.maxPatches;
    if (meta?.identity.dtype !== undefined && opts.dtype === undefined) opts.dtype = meta.identity.dtype;
    model = await ctx.loadModel(opts);
    const setupOpts: { revision?: string; resampler?: "torch" | "pil"; maxPatches?: number; dtype?: "fp32" | "int8" } = {};
    if (opts.revision !== undefined) setupOpts.revision = opts.revision;
    if (opts.resampler !== undefined) setupOpts.resampler = opts.resampler;
    if (opts.maxPatches !== undefined) setupOpts.maxPatches = opts.maxPatches;
    if (opts.dtype !== undefined) setupOpts.dtype = opts.dtype;
    const setup = await embeddingSetup(model, modelName(o.model), setupOpts);
    const t0 = Date.now();
    const r = await q.runWorker(model, setup, redis, target, {
      name,
      ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
      ...(o.db !== undefined ? { db: o.db } : {}),
      ...(o.lockDuration !== undefined ? { lockDuration: o.lockDuration } : {}),
      ...(o.stalledInterval !== undefined ? { stalledInterval: o.stalledInterval } : {}),
      untilEmpty: Boolean(o.untilEmpty),
      ...(o.redisTimeout !== undefined ? { redisTimeoutS: o.redisTimeout } : {}),
      stop: stopped,
      onJob: (j) => process.stdout.write(`${JSON.stringify(j)}\n`),
      onNote: note,
      ...testPause(),
    });
    note(`worker done: ${r.completed} jobs completed, ${r.failed} failed here in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (stopRequested) process.exitCode = 130;
    else if (r.failed > 0) process.exitCode = 1; // like a bad input: each failed job has its line above
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await model?.close();
    redis.disconnect();
  }
}

/**
 * Test hook (tests/search-queue.test.ts): SIGLIP2_WORKER_TEST_PAUSE_MS pauses after each batch's
 * commit, before its job completes, and says so on stderr, so that a test can `kill -9` a worker
 * in the middle of a batch. Not a user option.
 */
function testPause(): { afterWrite?: (job: string) => Promise<void> } {
  const ms = Number(process.env["SIGLIP2_WORKER_TEST_PAUSE_MS"] ?? "");
  if (!Number.isFinite(ms) || ms <= 0) return {};
  return {
    afterWrite: (job) => {
      note(`test pause after the commit of job ${job}`);
      return new Promise((r) => setTimeout(r, ms));
    },
  };
}

export function registerWorkerCommand(program: Command, ctx: CliContext): void {
  ctx
    .withModelOptions(program.command("worker").description("many machines: embed the batches that `siglip2 index DIR --queue URL` enqueued and write them to the shared table"))
    .requiredOption("--queue <url>", "the Redis of the queue: redis://HOST:PORT (redis://:PASSWORD@HOST:PORT/DB; rediss:// for TLS)")
    .option("--queue-name <name>", "the queue (default: siglip2-<table>)")
    .option("--table <name>", "the table whose queue to serve (names the default queue)", DEFAULT_TABLE)
    .option("--db <path>", "the shared DB folder as this machine mounts it (default: the folder the enqueuing run recorded)")
    .option("--concurrency <n>", `jobs at once in this process (default 1; at most ${MAX_CONCURRENCY}); the model runs one batch at a time, hashing and commits overlap`, intOption("--concurrency", { min: 1, max: MAX_CONCURRENCY, maxWhy: "the most jobs one worker process runs at once" }))
    .option("--lock-duration <ms>", "BullMQ job lock: a dead worker's job is re-delivered once its lock expires (default 30000)", intOption("--lock-duration", { min: 1000, max: 86_400_000 }))
    .option("--stalled-interval <ms>", "how often this worker looks for stalled jobs of dead workers (default 30000)", intOption("--stalled-interval", { min: 100, max: 86_400_000 }))
    .option("--until-empty", "exit once the queue holds no waiting, delayed or active job (default: run until SIGINT/SIGTERM)")
    .option(REDIS_TIMEOUT_FLAGS, `${REDIS_TIMEOUT_HELP}; the jobs not done stay queued for any worker`, redisTimeoutOption)
    .action((opts: WorkerOpts) => {
      if (opts.queue.trim() === "") throw new SiglipError("usage", "--queue: empty URL; expected redis://HOST:PORT");
      return cmdWorker(ctx, opts);
    });
}
