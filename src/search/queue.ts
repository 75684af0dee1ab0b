/**
 * Distributed indexing on BullMQ + Redis: `siglip2 index DIR --queue redis://…` walks,
 * hashes and enqueues batches of files; `siglip2 worker --queue redis://…`, on any number
 * of machines, embeds them and writes them to the shared LanceDB table.
 *
 * One queue serves one table. The enqueuing run records in Redis which table (DB folder,
 * table name) and which model identity ({@link TableMeta}) the queue is for; a worker
 * checks its checkpoint against that record before it takes a job, and against the
 * table's own record when it opens it, so vectors of two models are never mixed.
 *
 * A job is one batch: `{v, db, table, fingerprint, files: [{path, size, mtimeMs, sha256}]}`.
 * Its id is a hash of its content, so enqueuing the same batch again while it is queued
 * (or after it completed) adds nothing. A worker writes a batch through the indexer's
 * per-batch path ({@link indexQueuedBatch}): one LanceDB commit of new rows (generation
 * from one Redis counter, so "newest" means the same on every machine), then the delete of
 * the rows they replace. A re-delivered batch (its worker died: BullMQ's stalled-job check
 * moves it back to the queue once its lock expires) finds its rows written and changes
 * nothing but the clean-up of a half-finished batch. A file whose size, mtime or hash
 * differs from what was enqueued is reported in the job's result and not written.
 *
 * Redis keys besides BullMQ's own (`bull:<name>:*`): `siglip2:queue:<name>:meta` (the
 * record above), `:gen` (the generation counter), `:files` and `:done` (job id → files, for
 * `--status`; written by id, so a re-delivery does not count twice).
 */
import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { Queue, UnrecoverableError, WaitingError, Worker, type Job, type RedisOptions as BullRedisOptions } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import type { SigLIP2 } from "../api.js";
import { SiglipError, errorMessage } from "../errors.js";
import { assertSameModel, type EmbeddingSetup } from "./identity.js";
import { indexQueuedBatch, openForIndexing, type QueuedFile } from "./indexer.js";
import { oneLine } from "./paths.js";
import { ImageStore, META_UNREAD, lanceUri, type ImageRow, type TableMeta } from "./store.js";
import { DEFAULT_VIDEO_SAMPLING, checkSampling, ffmpegAvailable, isVideoPath, type VideoSampling } from "./video.js";
import { sha256File, walkImages } from "./walk.js";

/** Files per job (one LanceDB commit each), as for a local run. */
export const DEFAULT_QUEUE_BATCH = 32;
/** How long a connection attempt to Redis may take before it is a one-line error (ms). */
export const REDIS_CONNECT_TIMEOUT_MS = 5_000;
/**
 * BullMQ's lock on an active job (ms): renewed every half of it while the worker lives; once a
 * dead worker's lock expires, the stalled-job check (every {@link DEFAULT_STALLED_INTERVAL_MS})
 * moves the job back to the queue for another worker. BullMQ's own defaults.
 */
export const DEFAULT_LOCK_DURATION_MS = 30_000;
export const DEFAULT_STALLED_INTERVAL_MS = 30_000;
/** Times a job may stall (its worker died) and be re-delivered before it fails; BullMQ's default is 1. */
export const DEFAULT_MAX_STALLED = 3;
/** Attempts per job for ordinary failures (exponential back-off from 1 s); malformed jobs and model mismatches fail at once. */
export const JOB_ATTEMPTS = 3;
/** How long a completed job is kept in Redis (s): its payload (~5 KB per 32 files) is dropped after, its file count stays in `:done`. */
export const KEEP_COMPLETED_S = 86_400;
/** Most jobs one worker process runs at once (--concurrency). */
export const MAX_CONCURRENCY = 64;
/** Retries of a batch whose LanceDB commit conflicted with another writer's. */
const COMMIT_RETRIES = 8;
/** Default --redis-timeout (s): how long Redis may stay unreachable before a worker or an enqueue gives up (exit 3). */
export const DEFAULT_REDIS_TIMEOUT_S = 60;
/** Most --redis-timeout (s): a day. */
export const MAX_REDIS_TIMEOUT_S = 86_400;
/** Jobs per Redis round trip when enqueuing. */
const ADD_CHUNK = 500;
const JOB_FORMAT = 1;

/** A parsed `redis://[user:password@]host[:port][/db]` (or `rediss://` for TLS). */
export interface RedisTarget {
  /** The URL as shown in messages (password replaced by `***`). */
  shown: string;
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
  tls: boolean;
}

/** Parse `--queue`; anything but a Redis URL is a one-line usage error. */
export function parseRedisUrl(raw: string): RedisTarget {
  const bad = (why: string) => new SiglipError("usage", `--queue ${JSON.stringify(oneLine(raw).slice(0, 200))}: ${why}; expected redis://HOST:PORT (redis://:PASSWORD@HOST:PORT/DB; rediss:// for TLS)`);
  if (/[\x00-\x20\x7f]/.test(raw)) throw bad("spaces or control characters in the URL");
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) throw bad("not a URL");
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw bad(/^[a-z][a-z0-9+.-]*:\/\/[^/]*:[^/]*$/i.test(raw) ? "the port must be 1 to 65535" : "not a URL");
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw bad(`the scheme is ${u.protocol.replace(/:$/, "")}, not redis`);
  if (u.hostname === "") throw bad("no host");
  if (u.search !== "" || u.hash !== "") throw bad("query strings and fragments are not supported");
  const port = u.port === "" ? 6379 : Number(u.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad("the port must be 1 to 65535");
  const path = decodeURIComponent(u.pathname).replace(/^\//, "");
  if (path !== "" && !/^\d{1,4}$/.test(path)) throw bad("the path must be a database number (/0 … /9999)");
  const t: RedisTarget = {
    shown: `${u.protocol}//${u.username || u.password ? `${u.username ? decodeURIComponent(u.username) : ""}${u.password ? ":***" : ""}@` : ""}${u.host}${path !== "" ? `/${path}` : ""}`,
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port,
    db: path === "" ? 0 : Number(path),
    tls: u.protocol === "rediss:",
  };
  if (u.username) t.username = decodeURIComponent(u.username);
  if (u.password) t.password = decodeURIComponent(u.password);
  return t;
}

/** ioredis options for a target; `persistent`: keep reconnecting (workers), else give up after a few tries. */
function redisOptions(t: RedisTarget, persistent: boolean): BullRedisOptions & RedisOptions {
  const o: BullRedisOptions & RedisOptions = {
    host: t.host,
    port: t.port,
    db: t.db,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: null, // BullMQ's requirement for blocking connections
    retryStrategy: (times: number) => (persistent ? Math.min(times * 500, 5_000) : times > 5 ? null : times * 200),
  };
  if (t.username !== undefined) o.username = t.username;
  if (t.password !== undefined) o.password = t.password;
  if (t.tls) o.tls = {};
  return o;
}

/** A Redis error → the user's one line. */
function redisFailure(t: RedisTarget, e: unknown): SiglipError {
  const m = errorMessage(e);
  const code = (e as NodeJS.ErrnoException | undefined)?.code ?? "";
  let why: string;
  if (/NOAUTH|Authentication required/i.test(m)) why = "it needs a password: put it in the URL, redis://:PASSWORD@HOST:PORT";
  else if (/WRONGPASS|invalid password|invalid username-password/i.test(m)) why = "it refused the user name or password in the URL";
  else if (/NOPERM/i.test(m)) why = "the user in the URL lacks permission for BullMQ's commands";
  else if (code === "ECONNREFUSED" || /ECONNREFUSED/.test(m)) why = "connection refused (is redis-server running on that host and port?)";
  else if (code === "ENOTFOUND" || code === "EAI_AGAIN" || /ENOTFOUND|EAI_AGAIN/.test(m)) why = `unknown host ${t.host}`;
  else if (code === "ETIMEDOUT" || /ETIMEDOUT|timed? ?out/i.test(m)) why = `no answer within ${REDIS_CONNECT_TIMEOUT_MS / 1000} s (a firewall, a wrong host, or not a Redis server)`;
  else if (/EHOSTUNREACH|ENETUNREACH/.test(code + m)) why = "host unreachable";
  else if (/ERR DB index is out of range|invalid DB index/i.test(m)) why = "no such database number on that server";
  else if (/Unknown RESP type|Protocol error|unexpected response/i.test(m)) why = "the server there does not speak the Redis protocol (an HTTP server or a proxy?)";
  else why = oneLine(m).slice(0, 160) || "unknown error";
  return new SiglipError("queue", `cannot use Redis at ${t.shown}: ${why}`, { cause: e });
}

/**
 * Connect to Redis and check that it answers (PING), within {@link REDIS_CONNECT_TIMEOUT_MS}:
 * a server that is down, a wrong URL, a missing or wrong password, or something that is not
 * Redis is one line, never a hang.
 */
export async function connectRedis(t: RedisTarget, persistent = false): Promise<Redis> {
  const client = new Redis({ ...redisOptions(t, persistent), lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  let last: unknown;
  client.on("error", (e: unknown) => (last = e)); // reported through the rejection below
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })), REDIS_CONNECT_TIMEOUT_MS + 500);
  });
  try {
    await Promise.race([(async () => {
      await client.connect();
      await client.ping();
    })(), timeout]);
  } catch (e) {
    client.disconnect();
    const why = last !== undefined && /Connection is closed|Stream isn't writeable|enableOfflineQueue/i.test(errorMessage(e)) ? last : e;
    throw redisFailure(t, why);
  } finally {
    clearTimeout(timer);
  }
  // From here on: reconnect like BullMQ's own connections (workers outlive Redis restarts).
  client.options.retryStrategy = redisOptions(t, persistent).retryStrategy!;
  client.options.maxRetriesPerRequest = persistent ? null : 3;
  client.options.enableOfflineQueue = true;
  return client;
}

/**
 * Watches one connection's Redis while a worker or an enqueue runs: a PING at most every second
 * (one at a time; ioredis holds it while it reconnects and sends it once Redis is back). When no
 * PING has been answered for `timeoutMs`, {@link lost} resolves with the last reason ioredis or
 * BullMQ gave (e.g. `connect ECONNREFUSED 127.0.0.1:6379`) and the caller stops with one line
 * (code "queue-lost", exit status 3). An outage shorter than that costs nothing but, once Redis
 * answers again, one `onBack` call.
 */
export class RedisWatch {
  /** Resolves with the reason once Redis has not answered for the timeout. */
  readonly lost: Promise<string>;
  readonly timeoutMs: number;
  private lastOk = Date.now();
  private why = "";
  private pinging = false;
  private fired = false;
  /** When the connection was seen to drop (an error or a reconnect), until Redis answers again. */
  private downSince: number | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly onError = (e: unknown) => this.reason(e);
  private readonly onReconnecting = () => (this.downSince ??= Date.now());

  constructor(private readonly client: Redis, timeoutS: number, private readonly onBack?: (downS: number) => void) {
    this.timeoutMs = timeoutS * 1000;
    let fire: (why: string) => void = () => undefined;
    this.lost = new Promise<string>((r) => (fire = r));
    client.on("error", this.onError);
    client.on("reconnecting", this.onReconnecting);
    const every = Math.max(100, Math.min(1_000, this.timeoutMs / 3));
    let lastTick = Date.now();
    const tick = () => {
      const now = Date.now();
      // Time this process did not run (a blocked event loop, a suspended machine) is not Redis's silence.
      const late = now - lastTick - every;
      if (late > 1_000) this.lastOk += late;
      lastTick = now;
      if (this.fired) return;
      if (now - this.lastOk > this.timeoutMs) {
        this.fired = true;
        this.stop();
        fire(this.why || "no answer to PING");
        return;
      }
      if (this.pinging) return;
      this.pinging = true;
      client.ping().then(() => {
        this.lastOk = Date.now();
        if (this.downSince !== undefined && !this.fired) this.onBack?.((this.lastOk - this.downSince) / 1000);
        this.downSince = undefined;
      }, (e: unknown) => this.reason(e)).finally(() => (this.pinging = false));
    };
    this.timer = setInterval(tick, every);
    this.timer.unref();
  }

  /**
   * Record why Redis does not answer (the newest reason wins); with `dropped` (a connection
   * error, not a command's) the connection counts as down until a PING is answered.
   */
  reason(e: unknown, dropped = true): void {
    const m = oneLine(errorMessage(e)).slice(0, 160);
    if (m !== "") this.why = m;
    if (dropped) this.downSince ??= Date.now();
  }

  /** The seconds of the timeout, as messages say them. */
  get seconds(): string {
    return String(this.timeoutMs / 1000);
  }

  stop(): void {
    clearInterval(this.timer);
    this.client.off("error", this.onError);
    this.client.off("reconnecting", this.onReconnecting);
  }
}

/** Race `p` against the loss of Redis: rejects with `lostError(why)` once the watch fires. */
function orLost<T>(p: Promise<T>, watch: RedisWatch, lostError: (why: string) => SiglipError): Promise<T> {
  return Promise.race([p, watch.lost.then((why) => Promise.reject(lostError(why)))]);
}

/** Check a queue name (BullMQ keys are `bull:<name>:…`). */
export function checkQueueName(name: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(name)) {
    throw new SiglipError("usage", `--queue-name ${JSON.stringify(oneLine(name).slice(0, 140))}: use up to 128 letters, digits, "_", "-" and ".", starting with a letter, a digit or "_"`);
  }
  return name;
}

/** The default queue of a table. */
export function defaultQueueName(table: string): string {
  return `siglip2-${table}`;
}

/** What the enqueuing run records for the queue's workers. */
export interface QueueMeta {
  format: number;
  /** The DB folder, absolute (as the enqueuing machine sees it; workers may pass their own --db). */
  db: string;
  table: string;
  /** The table's model record. */
  identity: TableMeta;
}

function keys(name: string): { meta: string; gen: string; files: string; done: string } {
  const k = `siglip2:queue:${name}`;
  return { meta: `${k}:meta`, gen: `${k}:gen`, files: `${k}:files`, done: `${k}:done` };
}

/** The queue's record, or undefined when no `siglip2 index --queue` has used it. */
export async function readQueueMeta(redis: Redis, name: string): Promise<QueueMeta | undefined> {
  const raw = await redis.get(keys(name).meta);
  if (raw === null) return undefined;
  try {
    const m = JSON.parse(raw) as QueueMeta;
    if (typeof m.db !== "string" || typeof m.table !== "string" || typeof m.identity?.fingerprint !== "string") throw new Error("incomplete");
    return m;
  } catch {
    throw new SiglipError("queue", `queue ${name}: its record in Redis (${keys(name).meta}) is unreadable; delete that key and enqueue again`);
  }
}

/** One file of a job, as enqueued. */
export interface JobFile {
  path: string;
  size: number;
  mtimeMs: number;
  sha256: string;
}

/** A job: one batch of images for one table, or one video (`video`: how to sample its frames). */
export interface BatchJob {
  v: number;
  db: string;
  table: string;
  fingerprint: string;
  files: JobFile[];
  /** A video job (one file): the frame sampling of the enqueuing run, the same for every worker. */
  video?: VideoSampling;
}

/** Validate job data (anything can be pushed into a Redis list): a malformed job is one line. */
export function parseBatchJob(data: unknown): BatchJob {
  const bad = (why: string) => new SiglipError("queue", `malformed job data: ${why}`);
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw bad("not an object");
  const d = data as Record<string, unknown>;
  if (d["v"] !== JOB_FORMAT) throw bad(`format ${JSON.stringify(d["v"])?.slice(0, 20)}, not ${JOB_FORMAT}`);
  for (const k of ["db", "table", "fingerprint"]) if (typeof d[k] !== "string" || (d[k] as string).length === 0) throw bad(`"${k}" is not a non-empty string`);
  if (!/^[0-9a-f]{16,128}$/.test(d["fingerprint"] as string)) throw bad("\"fingerprint\" is not a hex digest");
  const files = d["files"];
  if (!Array.isArray(files) || files.length === 0) throw bad("\"files\" is not a non-empty list");
  if (files.length > 100_000) throw bad(`${files.length} files in one job`);
  const out: JobFile[] = files.map((f: unknown, i) => {
    if (f === null || typeof f !== "object") throw bad(`files[${i}] is not an object`);
    const r = f as Record<string, unknown>;
    const path = r["path"];
    if (typeof path !== "string" || !path.startsWith("/") || path.includes("\0") || resolve(path) !== path) throw bad(`files[${i}].path is not an absolute, normalised path`);
    const size = r["size"], mtimeMs = r["mtimeMs"], sha = r["sha256"];
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) throw bad(`files[${i}].size is not a byte count`);
    if (typeof mtimeMs !== "number" || !Number.isFinite(mtimeMs)) throw bad(`files[${i}].mtimeMs is not a number`);
    if (typeof sha !== "string" || !/^[0-9a-f]{64}$/.test(sha)) throw bad(`files[${i}].sha256 is not a SHA-256 hex digest`);
    return { path, size, mtimeMs, sha256: sha };
  });
  if (new Set(out.map((f) => f.path)).size !== out.length) throw bad("a path appears twice");
  const job: BatchJob = { v: JOB_FORMAT, db: d["db"] as string, table: d["table"] as string, fingerprint: d["fingerprint"] as string, files: out };
  if (d["video"] !== undefined) {
    if (out.length !== 1) throw bad(`a video job holds ${out.length} files, not 1`);
    job.video = parseSampling(d["video"], bad);
  }
  return job;
}

/** The `video` field of a job: a {@link VideoSampling} within the CLI's bounds. */
function parseSampling(v: unknown, bad: (why: string) => SiglipError): VideoSampling {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw bad("\"video\" is not an object");
  const r = v as Record<string, unknown>;
  const num = (k: string): number => {
    if (typeof r[k] !== "number") throw bad(`"video.${k}" is not a number`);
    return r[k] as number;
  };
  const s: VideoSampling = r["mode"] === "fps" ? { mode: "fps", fps: num("fps"), maxFrames: num("maxFrames") }
    : r["mode"] === "scenes" ? { mode: "scenes", threshold: num("threshold"), maxFrames: num("maxFrames") }
    : (() => { throw bad("\"video.mode\" is neither \"fps\" nor \"scenes\""); })();
  try {
    return checkSampling(s);
  } catch (e) {
    throw bad(`"video": ${errorMessage(e)}`);
  }
}

/** The content-derived id of a job (BullMQ ignores an add whose id exists). */
function jobId(job: BatchJob): string {
  const h = createHash("sha256").update(JSON.stringify([job.db, job.table, job.fingerprint, job.files.map((f) => [f.path, f.size, f.mtimeMs, f.sha256]), ...(job.video ? [job.video] : [])]));
  return `b-${h.digest("hex").slice(0, 32)}`;
}

export interface EnqueueOptions {
  name: string;
  batchSize?: number;
  /** Videos: how their frames are sampled (one job per video), or false to leave them out; default {@link DEFAULT_VIDEO_SAMPLING}, as a local run. */
  videos?: VideoSampling | false;
  /** An unreadable file or folder (the run goes on). */
  onError?: (e: SiglipError) => void;
  /** Files hashed so far out of those to enqueue. */
  onProgress?: (done: number, total: number) => void;
  /** Seconds Redis may stay unreachable before the run stops (code "queue-lost"); default {@link DEFAULT_REDIS_TIMEOUT_S}. */
  redisTimeoutS?: number;
  /** Once Redis answers again after an outage shorter than the timeout. */
  onNote?: (msg: string) => void;
  /** Test hook: runs before each round of adding jobs. */
  beforeAdd?: () => void | Promise<void>;
}

export interface EnqueueSummary {
  queue: string;
  redis: string;
  db: string;
  table: string;
  /** Files found (images, and videos unless left out). */
  files: number;
  /** Of the enqueued files, videos (one job each). */
  videos: number;
  /** Files whose row has their size and mtime (not enqueued). */
  unchanged: number;
  /** Files put into jobs. */
  enqueued: number;
  /** Jobs added. */
  batches: number;
  /** Jobs that were already in the queue (same content: a repeated run), not added again. */
  alreadyQueued: number;
  /** Unreadable files (reported through onError). */
  failed: number;
}

/**
 * Walk `roots`, skip files whose row is unchanged (same size and mtime: the local index's
 * rule), hash the rest and enqueue them in batches. The table must be open with the model's
 * identity (it is created here when missing, so that its record exists before any worker).
 */
export async function enqueueIndex(redis: Redis, target: RedisTarget, store: ImageStore, roots: string[], options: EnqueueOptions): Promise<EnqueueSummary> {
  const name = checkQueueName(options.name);
  const watch = new RedisWatch(redis, options.redisTimeoutS ?? DEFAULT_REDIS_TIMEOUT_S, (s) => options.onNote?.(backAgain(target, s)));
  const summary: EnqueueSummary = { queue: name, redis: target.shown, db: lanceUri(store.dbPath), table: store.tableName, files: 0, unchanged: 0, enqueued: 0, videos: 0, batches: 0, alreadyQueued: 0, failed: 0 };
  let queue: Queue | undefined;
  try {
    return await orLost(enqueueWatched(redis, target, store, roots, options, name, summary, watch, (q) => (queue = q)), watch, (why) =>
      new SiglipError("queue-lost", `lost the queue at ${target.shown}: no answer for ${watch.seconds} s (${why}); ${summary.batches} batches were added before; rerun the same command: it adds only the batches not queued yet`));
  } catch (e) {
    if (e instanceof SiglipError && e.code === "queue-lost") await settle(queue?.disconnect());
    throw e;
  } finally {
    watch.stop();
  }
}

async function enqueueWatched(redis: Redis, target: RedisTarget, store: ImageStore, roots: string[], options: EnqueueOptions, name: string, summary: EnqueueSummary, watch: RedisWatch, onQueue: (q: Queue) => void): Promise<EnqueueSummary> {
  const k = keys(name);
  const db = lanceUri(store.dbPath);
  const meta: QueueMeta = { format: 1, db, table: store.tableName, identity: store.meta };
  const old = await readQueueMeta(redis, name);
  if (old && (old.db !== db || old.table !== store.tableName)) {
    throw new SiglipError("queue", `queue ${name} on ${target.shown} serves ${ImageStore.describe(old.db, old.table)}, not ${store.where}; pass another --queue-name`);
  }
  if (old && old.identity.fingerprint !== store.meta.fingerprint) {
    throw new SiglipError("queue", `queue ${name} on ${target.shown} was filled for model ${old.identity.model} (fingerprint ${old.identity.fingerprint.slice(0, 12)}), the table now has ${store.meta.model} (${store.meta.fingerprint.slice(0, 12)}); pass another --queue-name`);
  }
  const onError = (e: SiglipError) => (summary.failed++, options.onError?.(e));
  const rows = await store.rows();
  const state = new Map<string, ImageRow>();
  for (const r of rows) {
    const p = state.get(r.path);
    if (!p || r.gen > p.gen) state.set(r.path, r);
  }
  const sampling = options.videos === undefined ? DEFAULT_VIDEO_SAMPLING : options.videos;
  const walked = await walkImages(roots, { videos: sampling !== false, exclude: [store.dbPath], onError });
  summary.files = walked.length;
  const todo = walked.filter((f) => {
    const prev = state.get(f.path);
    const same = prev !== undefined && prev.size === f.size && prev.mtimeMs === f.mtimeMs && prev.meta?.width !== META_UNREAD;
    if (same) summary.unchanged++;
    return !same;
  });
  // The generation counter starts above every row the table holds.
  let maxGen = 0;
  for (const r of rows) maxGen = Math.max(maxGen, r.gen);
  await redis.eval("local c = tonumber(redis.call('GET', KEYS[1]) or '0') if c < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end return 0", 1, k.gen, String(maxGen));
  await redis.set(k.meta, JSON.stringify(meta));
  const queue = new Queue(name, { connection: redisOptions(target, true) });
  onQueue(queue);
  queue.on("error", (e: unknown) => watch.reason(e, isConnectionError(e))); // otherwise surfaced by the awaited calls
  try {
    const batchSize = Math.max(1, options.batchSize ?? DEFAULT_QUEUE_BATCH);
    let hashedCount = 0;
    let batch: JobFile[] = [];
    let pendingJobs: BatchJob[] = [];
    const flushJobs = async () => {
      if (pendingJobs.length === 0) return;
      await options.beforeAdd?.();
      const jobs = pendingJobs.map((j) => ({ id: jobId(j), j }));
      const existing = await redis.pipeline(jobs.map((x) => ["exists", `bull:${name}:${x.id}`])).exec();
      const fresh = jobs.filter((_, i) => existing?.[i]?.[1] !== 1);
      summary.alreadyQueued += jobs.length - fresh.length;
      if (fresh.length > 0) {
        await queue.addBulk(fresh.map((x) => ({
          name: "batch",
          data: x.j,
          opts: { jobId: x.id, attempts: JOB_ATTEMPTS, backoff: { type: "exponential", delay: 1_000 }, removeOnComplete: { age: KEEP_COMPLETED_S } },
        })));
        await redis.hset(k.files, Object.fromEntries(fresh.map((x) => [x.id, String(x.j.files.length)])));
      }
      summary.batches += fresh.length;
      pendingJobs = [];
    };
    const flushBatch = async () => {
      if (batch.length === 0) return;
      pendingJobs.push({ v: JOB_FORMAT, db, table: store.tableName, fingerprint: store.meta.fingerprint, files: batch });
      summary.enqueued += batch.length;
      batch = [];
      if (pendingJobs.length >= ADD_CHUNK) await flushJobs();
    };
    for (const f of todo) {
      try {
        const file: JobFile = { path: f.path, size: f.size, mtimeMs: f.mtimeMs, sha256: await sha256File(f.path) };
        if (sampling !== false && isVideoPath(f.path)) {
          // A video is its own job (its frames are one commit, as in a local run).
          pendingJobs.push({ v: JOB_FORMAT, db, table: store.tableName, fingerprint: store.meta.fingerprint, files: [file], video: sampling });
          summary.enqueued++;
          summary.videos++;
          if (pendingJobs.length >= ADD_CHUNK) await flushJobs();
        } else batch.push(file);
      } catch (e) {
        if (!(e instanceof SiglipError)) throw e;
        onError(e);
      }
      options.onProgress?.(++hashedCount, todo.length);
      if (batch.length >= batchSize) await flushBatch();
    }
    await flushBatch();
    await flushJobs();
  } catch (e) {
    throw e instanceof SiglipError ? e : redisFailure(target, e);
  } finally {
    await queue.close().catch(() => undefined);
  }
  return summary;
}

/** The line of a short outage. */
function backAgain(t: RedisTarget, downS: number): string {
  return `Redis at ${t.shown} answered again after ${downS.toFixed(1)} s; going on`;
}

/** Await `p` (at most `ms`), whatever it does: clean-up after Redis is gone must not hang. */
async function settle(p: Promise<unknown> | undefined, ms = 1_000): Promise<void> {
  if (!p) return;
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise<void>((r) => (t = setTimeout(r, ms)))]);
  clearTimeout(t);
}

/** `siglip2 index --queue … --status`. */
export interface QueueStatus {
  queue: string;
  redis: string;
  db?: string;
  table?: string;
  model?: string;
  waiting: number;
  active: number;
  delayed: number;
  completed: number;
  failed: number;
  /** Files in completed jobs / in all jobs enqueued. */
  filesDone: number;
  filesTotal: number;
}

function sumValues(h: Record<string, string>): number {
  let s = 0;
  for (const v of Object.values(h)) s += Number(v) || 0;
  return s;
}

/** The queue's progress. */
export async function queueStatus(redis: Redis, target: RedisTarget, name: string, redisTimeoutS = DEFAULT_REDIS_TIMEOUT_S): Promise<QueueStatus> {
  checkQueueName(name);
  const watch = new RedisWatch(redis, redisTimeoutS);
  let queue: Queue | undefined;
  try {
    return await orLost(statusWatched(redis, target, name, watch, (q) => (queue = q)), watch, (why) =>
      new SiglipError("queue-lost", `lost the queue at ${target.shown}: no answer for ${watch.seconds} s (${why}); nothing was changed, ask again once Redis is back`));
  } catch (e) {
    if (e instanceof SiglipError && e.code === "queue-lost") await settle(queue?.disconnect());
    throw e;
  } finally {
    watch.stop();
  }
}

async function statusWatched(redis: Redis, target: RedisTarget, name: string, watch: RedisWatch, onQueue: (q: Queue) => void): Promise<QueueStatus> {
  const k = keys(name);
  const meta = await readQueueMeta(redis, name);
  const queue = new Queue(name, { connection: redisOptions(target, true) });
  onQueue(queue);
  queue.on("error", (e: unknown) => watch.reason(e, isConnectionError(e)));
  try {
    const c = await queue.getJobCounts("waiting", "active", "delayed", "prioritized", "completed", "failed");
    const s: QueueStatus = {
      queue: name,
      redis: target.shown,
      waiting: (c["waiting"] ?? 0) + (c["prioritized"] ?? 0),
      active: c["active"] ?? 0,
      delayed: c["delayed"] ?? 0,
      completed: c["completed"] ?? 0,
      failed: c["failed"] ?? 0,
      filesDone: sumValues(await redis.hgetall(k.done)),
      filesTotal: sumValues(await redis.hgetall(k.files)),
    };
    if (meta) Object.assign(s, { db: meta.db, table: meta.table, model: meta.identity.model });
    return s;
  } catch (e) {
    throw e instanceof SiglipError ? e : redisFailure(target, e);
  } finally {
    await queue.close().catch(() => undefined);
  }
}

export interface WorkerOptions {
  name: string;
  /** Jobs at once in this process (embedding is serialised; hashing and LanceDB commits overlap). */
  concurrency?: number;
  /** DB folder, instead of the one the queue records (the shared folder mounted elsewhere). */
  db?: string;
  lockDuration?: number;
  stalledInterval?: number;
  maxStalledCount?: number;
  /** Exit once the queue holds no waiting, delayed or active job. */
  untilEmpty?: boolean;
  /** Seconds Redis may stay unreachable before the worker stops (code "queue-lost"); default {@link DEFAULT_REDIS_TIMEOUT_S}. */
  redisTimeoutS?: number;
  /** One line per job done (stdout JSON in the CLI). */
  onJob?: (r: JobReport) => void;
  /** One line per problem: a job failed, a file changed, Redis went away. */
  onNote?: (msg: string) => void;
  /** Checked by the caller's signal handler: resolve to stop taking jobs. */
  stop?: Promise<void>;
  /** Test hook: runs after a batch's commit, before the delete of the rows it replaces and the job's completion. */
  afterWrite?: (jobId: string) => void | Promise<void>;
}

/** What a worker reports for one job (also the job's BullMQ return value). */
export interface JobReport {
  job: string;
  files: number;
  written: number;
  unchanged: number;
  embedded: number;
  /** Video frames embedded (a video job). */
  frames: number;
  reused: number;
  recovered: number;
  /** Files not written, with the reason (changed since enqueued, unreadable). */
  skipped: { path: string; reason: string }[];
  attempt: number;
}

/** A one-at-a-time gate (the model runs one batch at a time; other work overlaps). */
function gate(): <T>(f: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(f: () => Promise<T>): Promise<T> => {
    const run = tail.then(f, f);
    tail = run.catch(() => undefined);
    return run;
  };
}

/** True when a Redis error is the connection dropping or refused (not a command's error). */
function isConnectionError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code ?? "";
  return /^E(?:CONNREFUSED|CONNRESET|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|NOTFOUND|AI_AGAIN|CONNABORTED)$/.test(code) ||
    /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|Connection is closed|Stream isn't writeable|socket/i.test(errorMessage(e));
}

/** True when a LanceDB failure is a commit conflict with another writer (worth retrying). */
function isCommitConflict(e: unknown): boolean {
  const m = `${errorMessage(e)} ${e instanceof Error && e.cause !== undefined ? errorMessage(e.cause) : ""}`;
  return /commit conflict|conflict|retryable|concurrent (?:write|commit)|too many concurrent/i.test(m);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Check the model against the queue's record, then take jobs until stopped (or, with
 * `untilEmpty`, until the queue is empty). Returns the jobs completed here, and those that failed for good here.
 */
export async function runWorker(model: SigLIP2, setup: EmbeddingSetup, redis: Redis, target: RedisTarget, options: WorkerOptions): Promise<{ completed: number; failed: number }> {
  const name = checkQueueName(options.name);
  const k = keys(name);
  const meta = await readQueueMeta(redis, name);
  if (!meta) throw new SiglipError("queue", `queue ${name} on ${target.shown} has no index run: start one with \`siglip2 index DIR --queue ${target.shown} --model M${name.startsWith("siglip2-") ? "" : ` --queue-name ${name}`}\` (or pass the right --queue-name / --table)`);
  const where = ImageStore.describe(options.db ?? meta.db, meta.table);
  try {
    assertSameModel(meta.identity, setup, `queue ${name} (${where})`, "index");
  } catch (e) {
    if (!(e instanceof SiglipError)) throw e;
    // The worker's remedy is the table's own model (or settings), not another table.
    throw new SiglipError("queue", `${e.message.replace(/: use (?:another|the same).*$/, "")}; this worker takes no jobs: start it with --model ${meta.identity.model} (the table's model and settings)`);
  }
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) throw new SiglipError("usage", `--concurrency ${concurrency}: use 1 to ${MAX_CONCURRENCY}`);
  const stores = new Map<string, Promise<ImageStore>>();
  const storeFor = (db: string, table: string): Promise<ImageStore> => {
    const key = JSON.stringify([db, table]);
    let s = stores.get(key);
    if (!s) {
      s = openForIndexing(db, table, setup);
      s.catch(() => stores.delete(key));
      stores.set(key, s);
    }
    return s;
  };
  // Fail fast: the table must open, with this model, before any job is taken.
  await storeFor(options.db ?? meta.db, meta.table);
  const serial = gate();
  const gated = Object.create(model) as SigLIP2;
  gated.imageFeaturesSettled = (...a: Parameters<SigLIP2["imageFeaturesSettled"]>) => serial(() => model.imageFeaturesSettled(...a));
  const note = options.onNote ?? (() => {});
  // LanceDB writes in flight: after Redis is lost the worker awaits them before it returns, and
  // starts no new one (`abandoned`).
  const writes = new Set<Promise<unknown>>();
  let abandoned = false;
  // The preprocessing worker threads cannot start (code "workers"): no job can be done here, so the
  // worker stops (exit 2) instead of failing every job; the job that met it goes back to the wait
  // list for another worker.
  let fatal: SiglipError | undefined;
  let onFatal: () => void = () => {};

  const processor = async (job: Job, token?: string): Promise<JobReport> => {
    let data: BatchJob;
    try {
      data = parseBatchJob(job.data);
    } catch (e) {
      throw new UnrecoverableError(`job ${job.id}: ${errorMessage(e)}`);
    }
    if (data.fingerprint !== setup.fingerprint) {
      throw new UnrecoverableError(`job ${job.id} was enqueued for the checkpoint with fingerprint ${data.fingerprint.slice(0, 12)}, this worker has ${setup.fingerprint.slice(0, 12)} (${setup.model}); vectors of two models are never mixed`);
    }
    // Not this job's fault: failed (and retried, by this or another worker) without an attempt at it.
    if (data.video && !ffmpegAvailable()) throw new Error(`job ${job.id} is a video (${oneLine(data.files[0]!.path)}); this worker has no ffmpeg/ffprobe (apt-get install ffmpeg), so another worker (or a local siglip2 index) must take it`);
    let store: ImageStore;
    try {
      store = await storeFor(options.db ?? data.db, data.table);
    } catch (e) {
      throw e instanceof SiglipError && /built with|never mixed/.test(e.message) ? new UnrecoverableError(`job ${job.id}: ${e.message}`) : e;
    }
    for (let attempt = 0; ; attempt++) {
      const skipped: { path: string; reason: string }[] = [];
      try {
        const gen = await redis.incr(k.gen);
        if (abandoned) throw new Error("Redis was lost; the job stays queued"); // write nothing more
        // If Redis is lost from here on, this write still ends (committed or not) before the worker
        // returns: it is idempotent (rows keyed by content hash and path; a re-delivery finds them
        // and writes nothing twice), so the job, which stays queued, loses nothing either way.
        const w = indexQueuedBatch(gated, store, data.files, {
          gen,
          ...(data.video ? { video: data.video } : {}),
          ...(setup.maxPatches !== undefined ? { maxPatches: setup.maxPatches } : {}),
          onError: (e) => skipped.push({ path: e.subject ?? "", reason: oneLine(e.message) }),
          ...(options.afterWrite ? { afterWrite: () => options.afterWrite!(String(job.id)) } : {}),
        });
        writes.add(w);
        const s = await w.finally(() => writes.delete(w));
        await redis.hset(k.done, String(job.id), String(data.files.length));
        return { job: String(job.id), files: data.files.length, written: s.added + s.updated + s.touched, unchanged: s.unchanged, embedded: s.embedded, frames: s.frames, reused: s.reused, recovered: s.recovered, skipped, attempt: job.attemptsMade + 1 };
      } catch (e) {
        if (e instanceof SiglipError && e.code === "workers") {
          // Not this job's fault: it goes back to the wait list untouched (no attempt counted) for
          // another worker, this worker takes no other job, and runWorker stops with the error.
          fatal ??= e;
          await settle(worker.pause(true));
          if (token !== undefined) await settle(job.moveToWait(token));
          onFatal();
          throw new WaitingError();
        }
        if (attempt >= COMMIT_RETRIES || !isCommitConflict(e)) throw e;
        await sleep(Math.min(2_000, 50 * 2 ** attempt) * (0.5 + Math.random()));
      }
    }
  };

  const worker = new Worker(name, processor, {
    connection: redisOptions(target, true),
    concurrency,
    lockDuration: options.lockDuration ?? DEFAULT_LOCK_DURATION_MS,
    stalledInterval: options.stalledInterval ?? DEFAULT_STALLED_INTERVAL_MS,
    maxStalledCount: options.maxStalledCount ?? DEFAULT_MAX_STALLED,
    name: `${hostname()}:${process.pid}`,
    autorun: false,
  });
  let completed = 0;
  let failed = 0;
  let lastError = "";
  let lastErrorAt = 0;
  const watch = new RedisWatch(redis, options.redisTimeoutS ?? DEFAULT_REDIS_TIMEOUT_S, (sec) => note(backAgain(target, sec)));
  worker.on("error", (e: unknown) => {
    watch.reason(e, isConnectionError(e));
    // A dropped connection is the watch's to report (one line, at the timeout); anything else is noted.
    if (isConnectionError(e)) return;
    const m = oneLine(redisFailure(target, e).message);
    if (m !== lastError || Date.now() - lastErrorAt > 30_000) note(`${m} (retrying)`);
    lastError = m;
    lastErrorAt = Date.now();
  });
  worker.on("completed", (job: Job, r: JobReport) => {
    completed++;
    for (const s of r.skipped) note(s.reason);
    options.onJob?.(r);
  });
  worker.on("failed", (job: Job | undefined, e: Error) => {
    const final = !job || e instanceof UnrecoverableError || e.name === "UnrecoverableError" || job.attemptsMade >= (job.opts.attempts ?? 1);
    if (final) failed++;
    note(`${final ? "job failed" : "job failed, will be retried"}: ${oneLine(e.message).slice(0, 300)}`);
  });
  const running = worker.run();
  let lostWhy: string | undefined;
  let polling = false;
  const idle = async (): Promise<boolean> => {
    const c = await Promise.all([
      redis.llen(`bull:${name}:wait`), redis.llen(`bull:${name}:active`), redis.zcard(`bull:${name}:delayed`), redis.zcard(`bull:${name}:prioritized`),
    ]);
    return c.every((n) => n === 0);
  };
  await new Promise<void>((resolveDone) => {
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        resolveDone();
      }
    };
    options.stop?.then(finish);
    onFatal = finish;
    void running.then(finish, finish);
    void watch.lost.then((why) => {
      lostWhy = why;
      finish();
    });
    if (options.untilEmpty) {
      const poll = setInterval(() => {
        if (polling) return; // Redis is slow or away: one poll at a time
        polling = true;
        idle().then((empty) => {
          if (empty) {
            clearInterval(poll);
            finish();
          }
        }, () => undefined).finally(() => (polling = false));
      }, Math.min(1_000, options.stalledInterval ?? DEFAULT_STALLED_INTERVAL_MS));
      void running.finally(() => clearInterval(poll));
    }
  });
  if (fatal !== undefined) {
    abandoned = true;
    await Promise.allSettled([...writes]);
    watch.stop();
    await settle(worker.close(true));
    await settle(worker.disconnect());
    for (const s of stores.values()) await s.then((st) => st.close(), () => undefined);
    throw new SiglipError("workers", `${fatal.message}; ${completed} jobs done by this worker; its job went back to the queue for another worker`);
  }
  if (lostWhy !== undefined) {
    // Redis is gone: no new write starts; those in flight end (whatever Redis does) before the
    // tables close and this returns, so no LanceDB commit is cut in half. Jobs not completed stay
    // in Redis (active, then re-delivered by the stalled-job check once their lock expires).
    abandoned = true;
    await Promise.allSettled([...writes]);
    await settle(worker.close(true));
    await settle(worker.disconnect());
    for (const s of stores.values()) await s.then((st) => st.close(), () => undefined);
    throw new SiglipError("queue-lost", `lost the queue at ${target.shown}: no answer for ${watch.seconds} s (${lostWhy}); ${completed} jobs done by this worker; the rest stay queued and another worker (or this one, rerun) will take them`);
  }
  watch.stop();
  await worker.close();
  await running.catch(() => undefined);
  for (const s of stores.values()) await s.then((st) => st.close(), () => undefined);
  return { completed, failed };
}
