/**
 * `siglip2 index DIR ... --model M [--db PATH] [--table NAME]`: build or update the
 * image index (see src/search/indexer.ts for what a run does and why it is safe to
 * interrupt). stdout: one JSON summary line; stderr: progress bar, one line per
 * unreadable file, a human summary. Videos (mp4, mov, webm, mkv) are indexed too, one row per
 * sampled frame (--video-fps, --video-scenes, --video-max-frames, --no-videos; see
 * src/search/video.ts).
 */
import type { Command } from "commander";
import { SiglipError } from "../errors.js";
import type { IndexSummary } from "../search/indexer.js";
import type { ImageStore, TableMeta } from "../search/store.js";
import { DEFAULT_DB_HELP, DEFAULT_TABLE, note, type CliContext, type ModelOpts } from "./context.js";
import { defaultDbPath } from "../user-dirs.js";
import { Progress } from "./progress.js";
import { intOption, numOption } from "./args.js";
import { REDIS_TIMEOUT_FLAGS, REDIS_TIMEOUT_HELP, redisTimeoutOption } from "./worker-cmd.js";
import { DEFAULT_SCENE_THRESHOLD, DEFAULT_VIDEO_FPS, DEFAULT_VIDEO_MAX_FRAMES, type VideoSampling } from "../search/video.js";

interface IndexOpts extends Omit<ModelOpts, "model"> {
  model?: string;
  db?: string;
  table: string;
  rebuild?: boolean;
  prune?: boolean;
  annThreshold?: number;
  queue?: string;
  queueName?: string;
  status?: boolean;
  redisTimeout?: number;
  videoFps?: number;
  videoScenes?: number | true;
  videoMaxFrames: number;
  videos: boolean;
}

/** The video sampling of the command line, or false with --no-videos. */
function samplingOf(o: IndexOpts): VideoSampling | false {
  if (!o.videos) {
    if (o.videoFps !== undefined || o.videoScenes !== undefined) throw new SiglipError("usage", "--no-videos leaves videos out; drop --video-fps / --video-scenes, or --no-videos");
    return false;
  }
  if (o.videoFps !== undefined && o.videoScenes !== undefined) throw new SiglipError("usage", "give either --video-fps (a set rate) or --video-scenes (at scene changes), not both");
  if (o.videoScenes !== undefined) return { mode: "scenes", threshold: o.videoScenes === true ? DEFAULT_SCENE_THRESHOLD : o.videoScenes, maxFrames: o.videoMaxFrames };
  return { mode: "fps", fps: o.videoFps ?? DEFAULT_VIDEO_FPS, maxFrames: o.videoMaxFrames };
}

function humanSummary(s: IndexSummary, seconds: number, where: string): string {
  const parts = [`${s.added} new`, `${s.updated} changed`, `${s.removed} removed`, `${s.unchanged} unchanged`];
  if (s.touched) parts.push(`${s.touched} touched (same content)`);
  if (s.reused) parts.push(`${s.reused} ${s.reused === 1 ? "copy" : "copies"} of indexed content (vector reused)`);
  if (s.failed) parts.push(`${s.failed} unreadable`);
  if (s.recovered) parts.push(`${s.recovered} duplicate row${s.recovered === 1 ? "" : "s"} cleaned up`);
  const ann = s.ann === "built" ? "; ANN index built" : s.ann === "retrained" ? "; ANN index retrained" : s.ann === "refreshed" ? "; ANN index refreshed" : "";
  const embedded = s.videos || s.frames ? `${s.embedded} images and ${s.frames} video frames embedded; ${s.videos} video${s.videos === 1 ? "" : "s"} written` : `${s.embedded} embedded`;
  return `${s.interrupted ? "interrupted; checked" : "checked"} ${s.found} file${s.found === 1 ? "" : "s"} in ${seconds.toFixed(1)} s (${embedded}): ${parts.join(", ")}; ${where} holds ${s.total} ${s.videos || s.frames ? "rows (images and video frames)" : "images"}${ann}`;
}

/** An existing table fixes the image settings (resampler, patch budget, precision) unless the user chose them. */
function withTableSettings(o: IndexOpts, model: string, meta: TableMeta | undefined): ModelOpts {
  const opts: ModelOpts = { ...o, model };
  if (meta && opts.resampler === undefined) opts.resampler = meta.resampler;
  if (meta?.maxPatches !== undefined && opts.maxPatches === undefined) opts.maxPatches = meta.maxPatches;
  if (meta?.dtype !== undefined && opts.dtype === undefined) opts.dtype = meta.dtype;
  return opts;
}

/** The settings that identify the embeddings (recorded in the table), from the model options. */
function setupOptions(opts: ModelOpts): { revision?: string; resampler?: "torch" | "pil"; maxPatches?: number; dtype?: "fp32" | "int8" } {
  const setupOpts: { revision?: string; resampler?: "torch" | "pil"; maxPatches?: number; dtype?: "fp32" | "int8" } = {};
  if (opts.revision !== undefined) setupOpts.revision = opts.revision;
  if (opts.dtype !== undefined) setupOpts.dtype = opts.dtype;
  if (opts.resampler !== undefined) setupOpts.resampler = opts.resampler;
  if (opts.maxPatches !== undefined) setupOpts.maxPatches = opts.maxPatches;
  return setupOpts;
}

/**
 * `siglip2 index DIR --queue redis://… --model M`: walk, hash and enqueue (src/search/queue.ts),
 * creating the table with the model's record when missing; `--status`: the queue's progress.
 */
async function cmdQueue(ctx: CliContext, roots: string[], o: IndexOpts): Promise<void> {
  const q = await import("../search/queue.js");
  const target = q.parseRedisUrl(o.queue!);
  const name = q.checkQueueName(o.queueName ?? q.defaultQueueName(o.table));
  if (o.status) {
    if (roots.length > 0) throw new SiglipError("usage", "--status takes no folders: siglip2 index --queue URL --status [--queue-name NAME | --table T]");
    const redis = await q.connectRedis(target, true);
    try {
      const s = await q.queueStatus(redis, target, name, o.redisTimeout ?? q.DEFAULT_REDIS_TIMEOUT_S);
      process.stdout.write(`${JSON.stringify(s)}\n`);
      const left = s.waiting + s.active + s.delayed;
      note(`queue ${s.queue} on ${s.redis}: ${s.filesDone} of ${s.filesTotal} files done; jobs: ${s.waiting} waiting, ${s.active} active, ${s.delayed} delayed, ${s.completed} completed, ${s.failed} failed${left === 0 && s.filesTotal > 0 ? " (finished)" : ""}`);
    } finally {
      redis.disconnect();
    }
    return;
  }
  if (roots.length === 0) throw new SiglipError("usage", "no folders given: siglip2 index DIR [DIR ...] --queue URL --model M");
  if (o.model === undefined) throw new SiglipError("usage", "--model is required to enqueue (the table records which model its vectors come from)");
  if (o.rebuild || o.prune) throw new SiglipError("usage", `--${o.rebuild ? "rebuild" : "prune"} is for local runs; with --queue, run it without --queue first`);
  const videos = samplingOf(o);
  const { embeddingSetup, modelName } = await import("../search/identity.js");
  const { openForIndexing } = await import("../search/indexer.js");
  const { ImageStore } = await import("../search/store.js");
  const { oneLine } = await import("../search/paths.js");
  const dbPath = o.db ?? defaultDbPath();
  const t0 = Date.now();
  const redis = await q.connectRedis(target, true); // before the model loads: a wrong URL is reported at once
  let model;
  let store: ImageStore | undefined;
  try {
    const opts = withTableSettings(o, o.model, await ImageStore.peekMeta(dbPath, o.table));
    model = await ctx.loadModel(opts);
    const setup = await embeddingSetup(model, modelName(o.model), setupOptions(opts));
    store = await openForIndexing(dbPath, o.table, setup);
    let progress: Progress | undefined;
    const summary = await q.enqueueIndex(redis, target, store, roots, {
      name,
      batchSize: o.batchSize ?? q.DEFAULT_QUEUE_BATCH,
      videos,
      ...(o.redisTimeout !== undefined ? { redisTimeoutS: o.redisTimeout } : {}),
      onNote: note,
      ...enqueueTestPause(),
      onError: (e) => ctx.reportInput(oneLine(e.message) !== e.message ? new SiglipError(e.code, oneLine(e.message)) : e),
      onProgress: (done, total) => {
        progress ??= new Progress(total, "hashed");
        progress.update(done);
      },
    });
    progress?.stop();
    const seconds = (Date.now() - t0) / 1000;
    process.stdout.write(`${JSON.stringify({ ...summary, model: setup.model, fingerprint: setup.fingerprint, seconds })}\n`);
    note(`enqueued ${summary.enqueued} of ${summary.files} files${summary.videos > 0 ? ` (${summary.videos} video${summary.videos === 1 ? "" : "s"}, one job each)` : ""} in ${summary.batches} batches on queue ${summary.queue} (${summary.redis}) in ${seconds.toFixed(1)} s; ${summary.unchanged} unchanged${summary.alreadyQueued ? `, ${summary.alreadyQueued} batches already queued` : ""}; start workers with: siglip2 worker --queue ${summary.redis} --model ${o.model}${o.queueName !== undefined ? ` --queue-name ${name}` : o.table !== DEFAULT_TABLE ? ` --table ${o.table}` : ""}`);
  } finally {
    store?.close();
    await model?.close();
    redis.disconnect();
  }
}

/**
 * Test hook (tests/search-queue-outage.test.ts): SIGLIP2_ENQUEUE_TEST_PAUSE_MS pauses before each
 * round of adding jobs and says so on stderr, so that a test can kill Redis mid-enqueue. Not a user option.
 */
function enqueueTestPause(): { beforeAdd?: () => Promise<void> } {
  const ms = Number(process.env["SIGLIP2_ENQUEUE_TEST_PAUSE_MS"] ?? "");
  if (!Number.isFinite(ms) || ms <= 0) return {};
  return {
    beforeAdd: () => {
      note("test pause before adding the batches");
      return new Promise((r) => setTimeout(r, ms));
    },
  };
}

async function cmdIndex(ctx: CliContext, roots: string[], o: IndexOpts): Promise<void> {
  if (o.queue !== undefined) return cmdQueue(ctx, roots, o);
  if (o.status || o.queueName !== undefined || o.redisTimeout !== undefined) throw new SiglipError("usage", `${o.status ? "--status" : o.queueName !== undefined ? "--queue-name" : "--redis-timeout"} needs --queue redis://HOST:PORT`);
  const model0 = o.model;
  if (model0 === undefined) throw new SiglipError("usage", "required option '-m, --model <model>' not specified (see siglip2 index --help)");
  if (roots.length === 0) throw new SiglipError("usage", "no folders given: siglip2 index DIR [DIR ...] --model M");
  const videos = samplingOf(o);
  // LanceDB is loaded only by the commands that use it (it adds ~0.3 s to start-up).
  const { embeddingSetup, modelName } = await import("../search/identity.js");
  const { buildIndex, DEFAULT_INDEX_BATCH, openForIndexing } = await import("../search/indexer.js");
  const { TableLock } = await import("../search/lock.js");
  const { ImageStore } = await import("../search/store.js");
  const { oneLine } = await import("../search/paths.js");
  const dbPath = o.db ?? defaultDbPath();
  const t0 = Date.now();
  const lock = TableLock.acquire(dbPath, o.table);
  let stop = false;
  const onSignal = () => {
    if (stop) {
      lock.release();
      process.exit(130);
    }
    stop = true;
    note("stopping after the current batch (press Ctrl-C again to quit at once; a re-run continues where this one stopped)");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let model;
  let store: ImageStore | undefined;
  try {
    const opts = withTableSettings(o, model0, o.rebuild ? undefined : await ImageStore.peekMeta(dbPath, o.table));
    model = await ctx.loadModel(opts);
    const setup = await embeddingSetup(model, modelName(model0), setupOptions(opts));
    store = await openForIndexing(dbPath, o.table, setup, { rebuild: Boolean(o.rebuild) });
    let progress: Progress | undefined;
    const summary = await buildIndex(model, store, roots, {
      batchSize: o.batchSize ?? DEFAULT_INDEX_BATCH,
      ...(setup.maxPatches !== undefined ? { maxPatches: setup.maxPatches } : {}),
      prune: Boolean(o.prune),
      videos,
      ...(o.annThreshold !== undefined ? { ann: { threshold: o.annThreshold } } : {}),
      // One line per bad file, even when its name holds a newline.
      onError: (e) => ctx.reportInput(oneLine(e.message) !== e.message ? new SiglipError(e.code, oneLine(e.message), e.subject !== undefined ? { subject: e.subject } : undefined) : e),
      onPlan: (plan) => {
        if (plan.recovered > 0) note(`cleaned up ${plan.recovered} duplicate row${plan.recovered === 1 ? "" : "s"} (left by an interrupted run or by two writers)`);
        progress = new Progress(plan.toProcess, "files");
      },
      onProgress: (done) => progress?.update(done),
      shouldStop: () => stop,
    });
    progress?.stop();
    const seconds = (Date.now() - t0) / 1000;
    process.stdout.write(`${JSON.stringify({ db: dbPath, table: o.table, model: setup.model, fingerprint: setup.fingerprint, ...summary, seconds })}\n`);
    note(humanSummary(summary, seconds, store.where));
    if (summary.interrupted) {
      note("interrupted: every finished batch is saved; run the same command again to finish");
      process.exitCode = 130;
    }
  } finally {
    store?.close();
    await model?.close();
    lock.release();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

export function registerIndexCommand(program: Command, ctx: CliContext): void {
  const cmd = ctx.withModelOptions(program.command("index").description("index the images under folders (recursively) for search; re-runs update only what changed"));
  // --model is checked in cmdIndex: `index --queue URL --status` loads no model.
  const modelOpt = cmd.options.find((x) => x.long === "--model");
  if (modelOpt) modelOpt.mandatory = false;
  cmd
    .argument("[dirs...]", "folders (or image files) to index")
    .option("--db <path>", `database folder (default: ${DEFAULT_DB_HELP})`)
    .option("--table <name>", "table in the database (one model per table)", DEFAULT_TABLE)
    .option("--rebuild", "drop the table first and index from scratch (e.g. to switch models)")
    .option("--prune", "remove the rows of missing files even when that is more than half of the rows under a folder (refused by default: an unmounted disk must not wipe its rows)")
    .option("--video-fps <fps>", `videos: frames sampled per second (default ${DEFAULT_VIDEO_FPS}: one every 2 s; a video longer than --video-max-frames / fps gets its frames spread over all of it)`, numOption("--video-fps", { min: 0, minExclusive: true, max: 240, describe: "a number above 0 and at most 240 (frames per second)" }))
    .option("--video-scenes [threshold]", `videos: sample the first frame and each scene change (ffmpeg scene score above THRESHOLD, default ${DEFAULT_SCENE_THRESHOLD}) instead of a set rate`, numOption("--video-scenes", { min: 0, minExclusive: true, max: 1, maxExclusive: true, describe: "a scene score between 0 and 1" }))
    .option("--video-max-frames <n>", `videos: at most this many frames per video (default ${DEFAULT_VIDEO_MAX_FRAMES})`, intOption("--video-max-frames", { min: 1, max: 1_000_000, range: true }), DEFAULT_VIDEO_MAX_FRAMES)
    .option("--no-videos", "leave video files (mp4, mov, webm, mkv) out of the walk")
    .option("--ann-threshold <rows>", "build the ANN index (IVF-PQ) once the table has this many rows (default 50000)", intOption("--ann-threshold", { min: 1, max: 1_000_000_000 }))
    .option("--queue <url>", "many machines: walk, hash and enqueue batches on this Redis (redis://HOST:PORT) for `siglip2 worker`, then return")
    .option("--queue-name <name>", "the queue (default: siglip2-<table>)")
    .option("--status", "with --queue: print the queue's progress (jobs waiting, active, completed, failed; files done of total)")
    .option(REDIS_TIMEOUT_FLAGS, `with --queue: ${REDIS_TIMEOUT_HELP}; rerunning adds only the batches not queued yet`, redisTimeoutOption)
    .addHelpText("after", "\nImages are written in batches of --batch-size files (default 32), one atomic commit each; each video's frames in one commit; interrupting is safe.\nVideos need the system ffmpeg (apt-get install ffmpeg); unchanged videos keep their frames (--rebuild to sample again with new --video-* settings).")
    .action((dirs: string[], opts: IndexOpts) => cmdIndex(ctx, dirs, opts));
}
