/**
 * Building and updating an image index.
 *
 * A run:
 * 1. cleans up after an interrupted run: where a path has two rows (killed between
 *    writing a changed file's new row and deleting its old one) the newest is kept;
 * 2. walks the folders; a file whose size and mtime match its row is unchanged and
 *    is not even read;
 * 3. for the others, in batches of `batchSize` files: hashes each file (SHA-256,
 *    streamed). If the content is already in the table (a touched, copied or renamed
 *    file) its stored vector is reused; the rest are embedded. The batch's rows are
 *    written in ONE LanceDB commit, then the rows they replace are deleted;
 * 4. deletes the rows of files that are gone (under the folders given only). Rows
 *    under a folder or file that exists but could not be read are kept, and a run
 *    that would remove more than half of the rows under one of its folders (an
 *    unmounted disk, an emptied mount point) is refused before anything is written,
 *    unless `prune` is set;
 * 5. compacts the table;
 * 6. builds, refreshes or retrains the ANN index when the table's size asks for it.
 *
 * Videos (src/search/video.ts) are processed after the images, one per commit: their frames
 * are sampled and embedded (streamed through ffmpeg), and all frame rows of a video are
 * written in that one commit, so a video is in the table completely or not at all. A changed
 * video's new frames get a new gen and then its older rows are deleted, as for an image; a
 * video with the content of one already indexed (touched, copied, renamed) reuses its frames.
 * Without ffmpeg, new and changed videos are skipped with one line (their old rows stay) and
 * the images are indexed.
 *
 * Rows of a table written before the filter columns existed (width = META_UNREAD) are
 * processed like touched files: hashed, their vector reused, their header read.
 *
 * A file that changes while it is being indexed (its size or mtime differ after it
 * was embedded from what the walk saw) is not written: its hash and vector may be of
 * different contents. It is reported, and the next run indexes it.
 *
 * Every commit leaves a consistent table, so a run killed at any point (Ctrl-C,
 * kill -9, power loss) loses at most the batch in flight, and the next run picks up
 * exactly what is left. Unreadable files are reported through `onError` and skipped.
 */
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import type { SigLIP2 } from "../api.js";
import { SiglipError } from "../errors.js";
import { assertSameModel, type EmbeddingSetup } from "./identity.js";
import { ImageStore, META_UNREAD, extOf, type AnnSettings, type FileMeta, type ImageRow, type StoredImage } from "./store.js";
import { readFileMeta } from "./file-meta.js";
import { profileFromEnv, type IndexStage, type StageTimer } from "./index-profile.js";
import { shownPath } from "./paths.js";
import { isUnder, sha256File, walkImages, type WalkedFile } from "./walk.js";
import { DEFAULT_VIDEO_SAMPLING, embedVideo, ffmpegAvailable, ffmpegMissingMessage, isVideoPath, probeVideo, type VideoSampling } from "./video.js";

/** Files per write batch (one LanceDB commit each). */
export const DEFAULT_INDEX_BATCH = 32;
/** Compact the table after this many write batches (each batch adds a fragment). */
const COMPACT_EVERY = 64;

export interface IndexOptions {
  /** Files per write batch (default 32). */
  batchSize?: number;
  /** NaFlex patch budget for the image calls. */
  maxPatches?: number;
  /** Folders never entered while walking (the database folder is always excluded). */
  exclude?: string[];
  /** An unreadable file or folder (one call each; the run goes on). */
  onError?: (e: SiglipError) => void;
  /** What the run will do, once the folders are walked. */
  onPlan?: (plan: IndexPlan) => void;
  /** Files processed so far out of `plan.toProcess`. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Remove the rows of files that are gone even when that is more than half of the
   * rows under one of the folders (default false: such a run is refused, so that an
   * unmounted disk or an emptied mount point does not wipe its rows).
   */
  prune?: boolean;
  /** ANN index settings (threshold etc.; see {@link ImageStore.ensureAnnIndex}). */
  ann?: AnnSettings;
  /** Checked between batches: true stops the run cleanly (Ctrl-C). */
  shouldStop?: () => boolean;
  /**
   * How videos are sampled (see src/search/video.ts; default one frame every 2 s, at most
   * 1000), or false to leave videos out of the walk. Applies to new and changed videos:
   * unchanged ones keep their frames (re-sample with a rebuild).
   */
  videos?: VideoSampling | false;
  /** Test hook: true makes ffmpeg count as missing. */
  noFfmpeg?: boolean;
  /** Test hook: runs after a batch is committed and before the rows it replaces are deleted. */
  afterWrite?: (batch: number) => void | Promise<void>;
  /** Stage timers (src/search/index-profile.ts); also on with SIGLIP2_INDEX_PROFILE=1, which prints them on stderr. */
  profile?: StageTimer;
}

export interface IndexPlan {
  /** Image files found. */
  found: number;
  /** Files that need reading (new or with a different size or mtime). */
  toProcess: number;
  unchanged: number;
  /** Rows whose files are gone. */
  toRemove: number;
  /** Duplicate rows (an interrupted run, or two writers), really removed. */
  recovered: number;
}

export interface IndexSummary {
  found: number;
  unchanged: number;
  /** New paths written. */
  added: number;
  /** Known paths whose content changed. */
  updated: number;
  /** Known paths with a new mtime/size but the same content (no embedding). */
  touched: number;
  /** New or changed files whose content was already in the table (vector reused, not embedded). */
  reused: number;
  /** Images embedded by the model (unreadable ones not counted). */
  embedded: number;
  /** Rows deleted because their files are gone or can no longer be read. */
  removed: number;
  /** Unreadable files (reported through onError), and videos skipped for want of ffmpeg. */
  failed: number;
  /** Videos written (new, changed or touched). */
  videos: number;
  /** Video frames embedded by the model. */
  frames: number;
  /** Duplicate rows (an interrupted run, or two writers), really removed. */
  recovered: number;
  /** Rows in the table afterwards. */
  total: number;
  /** True when shouldStop ended the run early (re-run to finish). */
  interrupted: boolean;
  /** What the run did to the ANN index (see {@link ImageStore.ensureAnnIndex}). */
  ann: "none" | "built" | "retrained" | "refreshed" | "current";
}

/**
 * Open (or create) the table for writing with this model, refusing a table that
 * another model built.
 */
export async function openForIndexing(dbPath: string, table: string, setup: EmbeddingSetup, options: { rebuild?: boolean } = {}): Promise<ImageStore> {
  const store = await ImageStore.open(dbPath, table, { create: setup, rebuild: Boolean(options.rebuild) });
  try {
    assertSameModel(store.meta, setup, store.where, "index");
  } catch (e) {
    store.close();
    throw e;
  }
  return store;
}

/** A file the walk found new or changed, with the row it replaces (if any). */
interface Pending {
  file: WalkedFile;
  prev?: ImageRow;
  /** The SHA-256 the file had when it was enqueued (queue workers): another hash is a changed file, not written. */
  expected?: string;
}

/** A pending file whose content was hashed and header read. */
type Hashed = Pending & { sha256: string; meta: FileMeta };

/** A batch hashed ahead of its turn: the files read, and the ones that could not be. */
interface Prepared {
  hashed: Hashed[];
  failures: Array<[Pending, SiglipError]>;
}

/** The state one run carries from step to step. */
interface IndexRun {
  model: SigLIP2;
  store: ImageStore;
  options: IndexOptions;
  onError: (e: SiglipError) => void;
  summary: IndexSummary;
  /** The row of each path, as the table holds it now. */
  state: Map<string, ImageRow>;
  /** Content hashes the table holds (a vector to reuse). */
  knownHashes: Set<string>;
  /** The generation of the last batch written. */
  gen: number;
  /** Time `fn` as `stage` (a pass-through unless profiling). */
  time: <T>(stage: IndexStage, fn: () => Promise<T>) => Promise<T>;
  /** How videos are sampled; undefined: videos are not indexed. */
  sampling?: VideoSampling;
}

/** Index (or update the index of) the image files under `roots`. */
export async function buildIndex(model: SigLIP2, store: ImageStore, roots: string[], options: IndexOptions = {}): Promise<IndexSummary> {
  if (model.dim !== store.meta.dim) throw new SiglipError("index", `${store.where} holds ${store.meta.dim}-dim vectors; the model gives ${model.dim}`);
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_INDEX_BATCH);
  const summary: IndexSummary = {
    found: 0, unchanged: 0, added: 0, updated: 0, touched: 0, reused: 0, embedded: 0, removed: 0, failed: 0, videos: 0, frames: 0, recovered: 0, total: 0, interrupted: false, ann: "none",
  };
  const envProfile = options.profile ? undefined : profileFromEnv();
  const prof = options.profile ?? envProfile;
  const time = <T>(stage: IndexStage, fn: () => Promise<T>): Promise<T> => (prof ? prof.time(stage, fn) : fn());
  const run = await time("recover", () => recover(model, store, options, summary, time)); // 1.
  const { pending: all, gone } = await plan(run, roots); // 2.
  const videos = all.filter((p) => run.sampling && isVideoPath(p.file.path));
  const pending = videos.length > 0 ? all.filter((p) => !(run.sampling && isVideoPath(p.file.path))) : all;

  // 3. Batches: hash, reuse or embed, write (one commit), delete the replaced rows, one step
  // after the other. SIGLIP2_INDEX_PREFETCH=1 hashes the next batch and reads its headers
  // while this one embeds (read-only: a file that changes meanwhile is caught by the check
  // after embedding); it measured slower on 2 cores (bench/index-profile.ts), so it is off.
  const serial = process.env["SIGLIP2_INDEX_PREFETCH"] !== "1";
  let ahead: Promise<Prepared> | undefined;
  let done = 0;
  let batches = 0;
  for (let s = 0; s < pending.length; s += batchSize) {
    if (options.shouldStop?.()) {
      summary.interrupted = true;
      break;
    }
    const batch = pending.slice(s, s + batchSize);
    const prepared = ahead ?? prepareBatch(run, batch, serial);
    const next = pending.slice(s + batchSize, s + 2 * batchSize);
    ahead = !serial && next.length > 0 ? prepareBatch(run, next, serial) : undefined;
    ahead?.catch(() => undefined); // awaited next turn; not an unhandled rejection if this batch fails first
    await indexBatch(run, batches, await prepared);
    batches++;
    done += batch.length;
    options.onProgress?.(done, all.length);
    if (batches % COMPACT_EVERY === 0) await time("compact", () => store.compact());
  }
  // 3b. Videos, one commit each.
  for (const v of videos) {
    if (summary.interrupted || options.shouldStop?.()) {
      summary.interrupted = true;
      break;
    }
    if (!(await indexVideo(run, v, batches))) {
      summary.interrupted = true;
      break;
    }
    batches++;
    done++;
    options.onProgress?.(done, all.length);
    if (batches % COMPACT_EVERY === 0) await time("compact", () => store.compact());
  }

  // 4. Files that are gone.
  if (!summary.interrupted && options.shouldStop?.()) summary.interrupted = true;
  if (!summary.interrupted && gone.length > 0) {
    await time("delete", () => store.deletePaths(gone));
    summary.removed += gone.length;
  }
  // 5. Merge the batches' fragments.
  if (batches > 0 || summary.removed > 0 || summary.recovered > 0) await time("compact", () => store.compact());
  // 6. The ANN index, once the table is big enough.
  if (!summary.interrupted) summary.ann = await time("ann", () => store.ensureAnnIndex(options.ann));
  summary.total = await store.count();
  if (envProfile) process.stderr.write(`${JSON.stringify({ index_profile: envProfile.report() })}\n`);
  return summary;
}

/** A file of a queued batch (src/search/queue.ts): what the walk on the enqueuing machine saw, and its hash then. */
export interface QueuedFile extends WalkedFile {
  sha256: string;
}

/**
 * Index one batch of queued files into a table that other writers (queue workers on other
 * machines) update at the same time, through the same per-batch path as {@link buildIndex}.
 * Idempotent: a batch delivered twice (a worker that died mid-batch) changes nothing the
 * second time.
 * 1. reads the rows of the batch's paths only; where a path has several (a writer killed
 *    between its commit and its delete), the newest `gen` is kept and the others deleted
 *    (by path and `gen`, never by row address, which a concurrent compaction changes);
 * 2. a file whose newest row has its size and mtime is unchanged (an already written batch);
 * 3. the rest go through the batch step of a local run: hashed again (a hash other than
 *    `sha256` is reported as changed and not written), vectors reused for known content or
 *    embedded, written in ONE commit with generation `gen`, then the rows they replace
 *    (`gen` lower than this batch's) deleted.
 * `gen` must be larger than every generation written before (queue.ts takes it from one
 * Redis counter shared by all workers).
 */
export async function indexQueuedBatch(
  model: SigLIP2,
  store: ImageStore,
  files: QueuedFile[],
  options: { gen: number; maxPatches?: number; video?: VideoSampling; onError?: (e: SiglipError) => void; afterWrite?: IndexOptions["afterWrite"] },
): Promise<IndexSummary> {
  if (model.dim !== store.meta.dim) throw new SiglipError("index", `${store.where} holds ${store.meta.dim}-dim vectors; the model gives ${model.dim}`);
  const summary: IndexSummary = {
    found: files.length, unchanged: 0, added: 0, updated: 0, touched: 0, reused: 0, embedded: 0, removed: 0, failed: 0, videos: 0, frames: 0, recovered: 0, total: 0, interrupted: false, ann: "none",
  };
  const rows = await store.rowsByPaths(files.map((f) => f.path));
  const state = new Map<string, ImageRow>();
  for (const r of rows) {
    const k = state.get(r.path);
    if (!k || r.gen > k.gen) state.set(r.path, r);
  }
  const older = new Map<number, Set<string>>(); // newest gen → paths that also have older rows
  for (const r of rows) {
    const newest = state.get(r.path)!.gen;
    if (r.gen >= newest) continue;
    older.set(newest, (older.get(newest) ?? new Set()).add(r.path));
    summary.recovered++;
  }
  for (const [gen, paths] of older) await store.deletePaths([...paths], gen);
  const knownHashes = new Set<string>(files.map((f) => f.sha256));
  const pending: Pending[] = [];
  for (const f of files) {
    const prev = state.get(f.path);
    const file: WalkedFile = { path: f.path, size: f.size, mtimeMs: f.mtimeMs };
    if (prev && prev.size === f.size && prev.mtimeMs === f.mtimeMs && prev.meta?.width !== META_UNREAD) summary.unchanged++;
    else pending.push(prev ? { file, prev, expected: f.sha256 } : { file, expected: f.sha256 });
  }
  if (pending.length > 0) {
    const runOptions: IndexOptions = {};
    if (options.maxPatches !== undefined) runOptions.maxPatches = options.maxPatches;
    if (options.afterWrite) runOptions.afterWrite = options.afterWrite;
    const run: IndexRun = { model, store, options: runOptions, onError: options.onError ?? (() => {}), summary, state, knownHashes, gen: options.gen - 1, time: (_stage, fn) => fn() };
    if (options.video) {
      // A video job (queue.ts: one video each): its frames in one commit, as in a local run.
      run.sampling = options.video;
      for (const p of pending) await indexVideo(run, p, 0);
    } else await indexBatch(run, 0, await prepareBatch(run, pending, true));
  }
  return summary;
}

/** Step 1: keep the newest row of each path (an interrupted run leaves two) and read the table's state. */
async function recover(model: SigLIP2, store: ImageStore, options: IndexOptions, summary: IndexSummary, time: IndexRun["time"]): Promise<IndexRun> {
  const { kept: state, removed } = await store.removeSuperseded(await store.rows());
  summary.recovered = removed;
  const knownHashes = new Set<string>();
  for (const r of state.values()) knownHashes.add(r.sha256);
  const onError = options.onError ?? (() => {});
  const run: IndexRun = { model, store, options, onError, summary, state, knownHashes, gen: ImageStore.maxGen([...state.values()]), time };
  if (options.videos !== false) run.sampling = options.videos ?? DEFAULT_VIDEO_SAMPLING;
  return run;
}

/**
 * Step 2: walk the folders and compare with the table: unchanged files (same size and
 * mtime) are counted, new or changed ones are pending, rows of files that are gone (under
 * the walked folders, not under one that could not be read) are to be removed. A mass
 * removal is refused here, before anything is written. Reports the plan.
 */
async function plan(run: IndexRun, roots: string[]): Promise<{ pending: Pending[]; gone: string[] }> {
  const { store, options, summary, state } = run;
  const absRoots = [...new Set(roots.map((r) => resolve(r)))];
  const unseen: string[] = []; // folders and files that exist but could not be read
  const files = await run.time("walk", () => walkImages(roots, {
    videos: run.sampling !== undefined,
    exclude: [store.dbPath, ...(options.exclude ?? [])],
    onError: (e) => (summary.failed++, run.onError(e)),
    onSkip: (p) => unseen.push(p),
  }));
  summary.found = files.length;
  const pending: Pending[] = [];
  const seen = new Set<string>();
  for (const f of files) {
    seen.add(f.path);
    const prev = state.get(f.path);
    if (prev && prev.size === f.size && prev.mtimeMs === f.mtimeMs && prev.meta?.width !== META_UNREAD) summary.unchanged++;
    else pending.push(prev ? { file: f, prev } : { file: f });
  }
  let gone = [...state.keys()].filter((p) => !seen.has(p) && absRoots.some((r) => isUnder(p, r)) && !unseen.some((u) => isUnder(p, u)));
  // With --no-videos, the rows of videos left out of this walk (a table indexed with videos, re-run with
  // --no-videos) are not "gone": the walk did not look for them.
  if (run.sampling === undefined) gone = gone.filter((p) => !isVideoPath(p) || state.get(p)?.timeS === undefined);
  if (!options.prune && gone.length > 0) refuseMassRemoval(store, absRoots, [...state.keys()], gone);
  // New or changed videos without ffmpeg: one line for all, their old rows stay, the images go on.
  let kept = pending;
  if (run.sampling !== undefined && (options.noFfmpeg || !ffmpegAvailable())) {
    const skipped = pending.filter((p) => isVideoPath(p.file.path));
    if (skipped.length > 0) {
      kept = pending.filter((p) => !isVideoPath(p.file.path));
      summary.failed += skipped.length;
      run.onError(new SiglipError("image", ffmpegMissingMessage(skipped.length)));
    }
  }
  options.onPlan?.({ found: files.length, toProcess: kept.length, unchanged: summary.unchanged, toRemove: gone.length, recovered: summary.recovered });
  return { pending: kept, gone };
}

/** Step 3, one batch (hashed by {@link prepareBatch}): find or compute the vectors, write the rows in one commit, delete what they replace. */
async function indexBatch(run: IndexRun, batchNo: number, prepared: Prepared): Promise<void> {
  const { store, summary } = run;
  const stale: string[] = []; // rows of files that changed into something unreadable
  const fail = (p: Pending, e: SiglipError): void => {
    summary.failed++;
    run.onError(e);
    if (p.prev) stale.push(p.file.path);
  };
  for (const [p, e] of prepared.failures) fail(p, e);
  const hashed = prepared.hashed.filter((h) => h.expected === undefined || h.expected === h.sha256 || changedSinceEnqueued(run, h));
  const { vectors, toEmbed, failedHash } = await batchVectors(run, hashed);
  run.gen++;
  const { rows, replaced } = await batchRows(run, hashed, vectors, toEmbed, failedHash, fail);
  await run.time("write", () => store.add(rows)); // the batch's one commit
  await run.options.afterWrite?.(batchNo);
  if (replaced.length > 0) await run.time("delete", () => store.deletePaths(replaced, run.gen));
  if (stale.length > 0) {
    await run.time("delete", () => store.deletePaths(stale));
    summary.removed += stale.length;
  }
  for (const r of rows) {
    run.knownHashes.add(r.sha256);
    run.state.set(r.path, r);
  }
  for (const p of stale) run.state.delete(p);
}

/** A queued file whose content is not what was enqueued: reported, not written, its old row kept (false: leave it out). */
function changedSinceEnqueued(run: IndexRun, h: Pick<Hashed, "file" | "sha256" | "expected">): false {
  run.summary.failed++;
  run.onError(new SiglipError("image", `cannot index ${shownPath(h.file.path)}: its content changed after it was enqueued (SHA-256 ${h.sha256.slice(0, 12)}, enqueued as ${h.expected!.slice(0, 12)}); enqueue it again to index its new content`, { subject: h.file.path }));
  return false;
}

/**
 * Step 3b, one video (also a queue's video job, {@link indexQueuedBatch}; a hash other than the
 * enqueued one is reported, not written): hash it; reuse the frames of a video with the same content (touched,
 * copied, renamed) or sample and embed its frames; write all its frame rows in ONE commit;
 * then delete the rows they replace. A video that fails (damaged, ffmpeg error, changed while
 * read) writes nothing; its old rows are removed as for an image that became unreadable.
 * Returns false when `shouldStop` interrupted it (nothing written).
 */
async function indexVideo(run: IndexRun, p: Pending, batchNo: number): Promise<boolean> {
  const { store, summary } = run;
  const fail = (e: SiglipError): void => {
    summary.failed++;
    run.onError(e);
    if (p.prev) stale = true;
  };
  let stale = false;
  const path = p.file.path;
  try {
    const sha256 = await sha256File(path);
    if (p.expected !== undefined && p.expected !== sha256) {
      changedSinceEnqueued(run, { file: p.file, sha256, expected: p.expected });
      return true;
    }
    const touched = p.prev !== undefined && p.prev.sha256 === sha256;
    let frames = run.knownHashes.has(sha256) ? await store.framesByHash(sha256) : [];
    let meta = p.prev?.meta;
    const reused = frames.length > 0;
    if (!reused || meta === undefined || meta.width === META_UNREAD) {
      const maxPatches = run.options.maxPatches;
      if (!reused) {
        const out = await embedVideo(run.model, path, run.sampling!, { ...(maxPatches !== undefined ? { maxPatches } : {}), ...(run.options.shouldStop ? { shouldStop: run.options.shouldStop } : {}) });
        if (!out) return false;
        frames = out.frames;
        summary.frames += frames.length;
        meta = { ext: extOf(path), width: out.info.width, height: out.info.height, ...(out.info.createdMs !== undefined ? { takenMs: out.info.createdMs } : {}) };
      } else {
        const info = await probeVideo(path);
        meta = { ext: extOf(path), width: info.width, height: info.height, ...(info.createdMs !== undefined ? { takenMs: info.createdMs } : {}) };
      }
    }
    const now = await stat(path).catch((e: unknown) => e as NodeJS.ErrnoException);
    if (now instanceof Error) throw new SiglipError("image", `cannot read ${shownPath(path)}: vanished while indexing`, { subject: path });
    if (now.size !== p.file.size || now.mtimeMs !== p.file.mtimeMs) {
      summary.failed++;
      run.onError(new SiglipError("image", `cannot index ${shownPath(path)}: it changed while being indexed; run the same command again to index its new content`, { subject: path }));
      return true;
    }
    run.gen++;
    const rows: StoredImage[] = frames.map((f) => ({ path, size: p.file.size, mtimeMs: p.file.mtimeMs, sha256, gen: run.gen, vector: f.vector, meta: meta!, timeS: f.timeS }));
    await store.add(rows); // the video's one commit
    await run.options.afterWrite?.(batchNo);
    if (p.prev) await store.deletePaths([path], run.gen);
    summary.videos++;
    if (!p.prev) summary.added++;
    else if (touched) summary.touched++;
    else summary.updated++;
    if (reused && !touched) summary.reused++;
    run.knownHashes.add(sha256);
    const { vector: _v, ...row } = rows[0]!;
    run.state.set(path, row);
  } catch (e) {
    if (!(e instanceof SiglipError) || e.code === "workers") throw e; // "workers": the whole run stops
    fail(e);
  }
  if (stale) {
    await store.deletePaths([path]);
    summary.removed++;
    run.state.delete(path);
  }
  return true;
}

/** SHA-256 and header (filter columns) of each file, both at once unless `serial`; an unreadable one goes to `failures`. */
async function prepareBatch(run: IndexRun, batch: Pending[], serial: boolean): Promise<Prepared> {
  const out: Prepared = { hashed: [], failures: [] };
  for (const p of batch) {
    try {
      const hash = () => run.time("hash", () => sha256File(p.file.path));
      const header = () => run.time("meta", () => readFileMeta(p.file.path));
      const [sha256, meta] = serial ? [await hash(), await header()] : await Promise.all([hash(), header()]);
      out.hashed.push({ ...p, sha256, meta });
    } catch (e) {
      if (!(e instanceof SiglipError)) throw e;
      out.failures.push([p, e]);
    }
  }
  return out;
}

/**
 * The vector of each content hash: reused from the table when it holds that content,
 * else embedded (each distinct content once, from the first path that has it).
 * `toEmbed`: hash → the path embedded; `failedHash`: hash → why embedding it failed.
 */
async function batchVectors(run: IndexRun, hashed: Hashed[]): Promise<{ vectors: Map<string, Float32Array>; toEmbed: Map<string, string>; failedHash: Map<string, SiglipError> }> {
  const vectors = await run.time("lookup", () => run.store.vectorsByHash(hashed.filter((h) => run.knownHashes.has(h.sha256)).map((h) => h.sha256)));
  const toEmbed = new Map<string, string>(); // sha256 → path
  for (const h of hashed) if (!vectors.has(h.sha256) && !toEmbed.has(h.sha256)) toEmbed.set(h.sha256, h.file.path);
  const failedHash = new Map<string, SiglipError>();
  if (toEmbed.size > 0) {
    const paths = [...toEmbed.values()];
    const hashes = [...toEmbed.keys()];
    const maxPatches = run.options.maxPatches;
    const out = await run.time("embed", () => run.model.imageFeaturesSettled(paths, maxPatches !== undefined ? { maxPatches } : {}));
    out.forEach((r, i) => {
      if (r instanceof SiglipError) failedHash.set(hashes[i]!, r);
      else {
        vectors.set(hashes[i]!, r.embedding);
        run.summary.embedded++;
      }
    });
  }
  return { vectors, toEmbed, failedHash };
}

/**
 * The rows to write (generation `run.gen`) and the paths whose old rows they replace,
 * counting added / touched / updated / reused. A file that failed, vanished or changed
 * since the walk is left out (its old row stays, except for failures: see `fail`).
 */
async function batchRows(
  run: IndexRun,
  hashed: Hashed[],
  vectors: Map<string, Float32Array>,
  toEmbed: Map<string, string>,
  failedHash: Map<string, SiglipError>,
  fail: (p: Pending, e: SiglipError) => void,
): Promise<{ rows: StoredImage[]; replaced: string[] }> {
  const { summary } = run;
  const rows: StoredImage[] = [];
  const replaced: string[] = [];
  for (const h of hashed) {
    const err = failedHash.get(h.sha256);
    if (err) {
      fail(h, toEmbed.get(h.sha256) === h.file.path ? err : new SiglipError("image", `cannot read image ${shownPath(h.file.path)}: same content as ${shownPath(toEmbed.get(h.sha256)!)}, which failed`, { subject: h.file.path }));
      continue;
    }
    // The file must still be what the walk saw: otherwise its hash, its vector and its
    // size/mtime may describe different contents. Its old row (if any) stays.
    const now = await run.time("recheck", () => stat(h.file.path).catch((e: unknown) => e as NodeJS.ErrnoException));
    if (now instanceof Error) {
      fail(h, new SiglipError("image", `cannot read ${shownPath(h.file.path)}: vanished while indexing`, { subject: h.file.path }));
      continue;
    }
    if (now.size !== h.file.size || now.mtimeMs !== h.file.mtimeMs) {
      summary.failed++;
      run.onError(new SiglipError("image", `cannot index ${shownPath(h.file.path)}: it changed while being indexed; run the same command again to index its new content`, { subject: h.file.path }));
      continue;
    }
    rows.push({ path: h.file.path, size: h.file.size, mtimeMs: h.file.mtimeMs, sha256: h.sha256, gen: run.gen, vector: vectors.get(h.sha256)!, meta: h.meta });
    if (!h.prev) summary.added++;
    else if (h.prev.sha256 === h.sha256) summary.touched++;
    else summary.updated++;
    if (toEmbed.get(h.sha256) !== h.file.path && !(h.prev && h.prev.sha256 === h.sha256)) summary.reused++;
    if (h.prev) replaced.push(h.file.path);
  }
  return { rows, replaced };
}

/**
 * Refuse a run that would remove more than half of the rows under one of its folders
 * (see {@link IndexOptions.prune}).
 */
function refuseMassRemoval(store: ImageStore, roots: string[], paths: string[], gone: string[]): void {
  for (const root of roots) {
    const held = paths.filter((p) => isUnder(p, root)).length;
    const lost = gone.filter((p) => isUnder(p, root)).length;
    if (lost > 0 && lost * 2 > held) {
      const all = lost === held;
      throw new SiglipError(
        "index",
        `refusing to remove ${all ? `all ${held}` : `${lost} of the ${held}`} rows under ${shownPath(root)} from ${store.where}: their files are gone (${all ? "an empty folder, or a disk that is not mounted?" : "a disk that is not fully mounted?"}); no image was indexed or removed; pass --prune to remove them`,
        { subject: root },
      );
    }
  }
}
