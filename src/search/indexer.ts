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
import { ImageStore, META_UNREAD, extOf, type AnnSettings, type ImageRow, type StoredImage } from "./store.js";
import { readFileMeta } from "./file-meta.js";
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
}

/** A pending file whose content was hashed. */
type Hashed = Pending & { sha256: string };

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
  const run = await recover(model, store, options, summary); // 1.
  const { pending: all, gone } = await plan(run, roots); // 2.
  const videos = all.filter((p) => run.sampling && isVideoPath(p.file.path));
  const pending = videos.length > 0 ? all.filter((p) => !(run.sampling && isVideoPath(p.file.path))) : all;

  // 3. Batches: hash, reuse or embed, write (one commit), delete the replaced rows.
  let done = 0;
  let batches = 0;
  for (let s = 0; s < pending.length; s += batchSize) {
    if (options.shouldStop?.()) {
      summary.interrupted = true;
      break;
    }
    const batch = pending.slice(s, s + batchSize);
    await indexBatch(run, batch, batches);
    batches++;
    done += batch.length;
    options.onProgress?.(done, all.length);
    if (batches % COMPACT_EVERY === 0) await store.compact();
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
    if (batches % COMPACT_EVERY === 0) await store.compact();
  }

  // 4. Files that are gone.
  if (!summary.interrupted && options.shouldStop?.()) summary.interrupted = true;
  if (!summary.interrupted && gone.length > 0) {
    await store.deletePaths(gone);
    summary.removed += gone.length;
  }
  // 5. Merge the batches' fragments.
  if (batches > 0 || summary.removed > 0 || summary.recovered > 0) await store.compact();
  // 6. The ANN index, once the table is big enough.
  if (!summary.interrupted) summary.ann = await store.ensureAnnIndex(options.ann);
  summary.total = await store.count();
  return summary;
}

/** Step 1: keep the newest row of each path (an interrupted run leaves two) and read the table's state. */
async function recover(model: SigLIP2, store: ImageStore, options: IndexOptions, summary: IndexSummary): Promise<IndexRun> {
  const { kept: state, removed } = await store.removeSuperseded(await store.rows());
  summary.recovered = removed;
  const knownHashes = new Set<string>();
  for (const r of state.values()) knownHashes.add(r.sha256);
  const onError = options.onError ?? (() => {});
  const run: IndexRun = { model, store, options, onError, summary, state, knownHashes, gen: ImageStore.maxGen([...state.values()]) };
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
  const files = await walkImages(roots, {
    videos: run.sampling !== undefined,
    exclude: [store.dbPath, ...(options.exclude ?? [])],
    onError: (e) => (summary.failed++, run.onError(e)),
    onSkip: (p) => unseen.push(p),
  });
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

/** Step 3, one batch: hash, find or compute the vectors, write the rows in one commit, delete what they replace. */
async function indexBatch(run: IndexRun, batch: Pending[], batchNo: number): Promise<void> {
  const { store, summary } = run;
  const stale: string[] = []; // rows of files that changed into something unreadable
  const fail = (p: Pending, e: SiglipError): void => {
    summary.failed++;
    run.onError(e);
    if (p.prev) stale.push(p.file.path);
  };
  const hashed = await hashBatch(batch, fail);
  const { vectors, toEmbed, failedHash } = await batchVectors(run, hashed);
  run.gen++;
  const { rows, replaced } = await batchRows(run, hashed, vectors, toEmbed, failedHash, fail);
  await store.add(rows); // the batch's one commit
  await run.options.afterWrite?.(batchNo);
  if (replaced.length > 0) await store.deletePaths(replaced, run.gen);
  if (stale.length > 0) {
    await store.deletePaths(stale);
    summary.removed += stale.length;
  }
  for (const r of rows) {
    run.knownHashes.add(r.sha256);
    run.state.set(r.path, r);
  }
  for (const p of stale) run.state.delete(p);
}

/**
 * Step 3b, one video: hash it; reuse the frames of a video with the same content (touched,
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
    if (!(e instanceof SiglipError)) throw e;
    fail(e);
  }
  if (stale) {
    await store.deletePaths([path]);
    summary.removed++;
    run.state.delete(path);
  }
  return true;
}

/** SHA-256 of each file; an unreadable one is reported through `fail` and left out. */
async function hashBatch(batch: Pending[], fail: (p: Pending, e: SiglipError) => void): Promise<Hashed[]> {
  const hashed: Hashed[] = [];
  for (const p of batch) {
    try {
      hashed.push({ ...p, sha256: await sha256File(p.file.path) });
    } catch (e) {
      if (!(e instanceof SiglipError)) throw e;
      fail(p, e);
    }
  }
  return hashed;
}

/**
 * The vector of each content hash: reused from the table when it holds that content,
 * else embedded (each distinct content once, from the first path that has it).
 * `toEmbed`: hash → the path embedded; `failedHash`: hash → why embedding it failed.
 */
async function batchVectors(run: IndexRun, hashed: Hashed[]): Promise<{ vectors: Map<string, Float32Array>; toEmbed: Map<string, string>; failedHash: Map<string, SiglipError> }> {
  const vectors = await run.store.vectorsByHash(hashed.filter((h) => run.knownHashes.has(h.sha256)).map((h) => h.sha256));
  const toEmbed = new Map<string, string>(); // sha256 → path
  for (const h of hashed) if (!vectors.has(h.sha256) && !toEmbed.has(h.sha256)) toEmbed.set(h.sha256, h.file.path);
  const failedHash = new Map<string, SiglipError>();
  if (toEmbed.size > 0) {
    const paths = [...toEmbed.values()];
    const hashes = [...toEmbed.keys()];
    const maxPatches = run.options.maxPatches;
    const out = await run.model.imageFeaturesSettled(paths, maxPatches !== undefined ? { maxPatches } : {});
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
    const now = await stat(h.file.path).catch((e: unknown) => e as NodeJS.ErrnoException);
    if (now instanceof Error) {
      fail(h, new SiglipError("image", `cannot read ${shownPath(h.file.path)}: vanished while indexing`, { subject: h.file.path }));
      continue;
    }
    if (now.size !== h.file.size || now.mtimeMs !== h.file.mtimeMs) {
      summary.failed++;
      run.onError(new SiglipError("image", `cannot index ${shownPath(h.file.path)}: it changed while being indexed; run the same command again to index its new content`, { subject: h.file.path }));
      continue;
    }
    rows.push({ path: h.file.path, size: h.file.size, mtimeMs: h.file.mtimeMs, sha256: h.sha256, gen: run.gen, vector: vectors.get(h.sha256)!, meta: await readFileMeta(h.file.path) });
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
