/**
 * A small pool of worker threads that decode and preprocess images, so that image
 * preparation overlaps with inference (onnxruntime runs on its own threads).
 * Results are identical to preparing on the main thread (same code, ./task.ts).
 *
 * Two ways a worker can fail, handled differently:
 *
 * - It dies on an image (an uncaught exception, `process.exit`, running out of its heap) after
 *   it started: the image it was working on is rejected with a SiglipError naming that image,
 *   the images queued behind it are handed to a fresh worker, and later images use a fresh
 *   worker too.
 * - It never starts: it exits or errors before posting `{ ready: true }` (./worker.ts posts it
 *   once its modules are loaded), or it is not ready within {@link workerStartTimeoutMs}. No
 *   image is blamed; its jobs go to a fresh worker. When no worker of the pool has ever
 *   started, or {@link MAX_START_FAILURES} starts fail in a row, the pool gives up: every
 *   pending and later job is rejected with one SiglipError, code "workers", that says to run
 *   with `--workers 0` (callers abort the run on it: src/tasks/image-pipeline.ts).
 */
import { Worker } from "node:worker_threads";
import { SiglipError } from "../errors.js";
import { errorFromData, type PrepareTask, type Prepared } from "./task.js";

/** How long a worker may take to load before it counts as a failed start (milliseconds). */
export const DEFAULT_WORKER_START_TIMEOUT_MS = 120_000;
/** The environment variable that overrides {@link DEFAULT_WORKER_START_TIMEOUT_MS}. */
export const START_TIMEOUT_ENV = "SIGLIP2_WORKER_START_TIMEOUT_MS";
/** Failed starts in a row after which the pool gives up (once some worker has started). */
export const MAX_START_FAILURES = 3;
const MAX_START_TIMEOUT_MS = 86_400_000;

/**
 * The start timeout from `SIGLIP2_WORKER_START_TIMEOUT_MS` (unset or empty: the default).
 * Anything but a whole number of milliseconds from 1 to 86400000 is a SiglipError (code "usage").
 */
export function workerStartTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[START_TIMEOUT_ENV];
  if (raw === undefined || raw.trim() === "") return DEFAULT_WORKER_START_TIMEOUT_MS;
  const v = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(v) || v < 1 || v > MAX_START_TIMEOUT_MS) {
    throw new SiglipError("usage", `${START_TIMEOUT_ENV} must be a whole number of milliseconds from 1 to ${MAX_START_TIMEOUT_MS}, got ${JSON.stringify(raw.slice(0, 100))}`);
  }
  return v;
}

/** The error every job gets once the pool has given up on starting workers. */
export function workersError(why: string): SiglipError {
  return new SiglipError("workers", `cannot start the image preprocessing worker threads (${why}); run again with --workers 0 to preprocess on the main thread`);
}

interface Pending {
  task: PrepareTask;
  resolve: (p: Prepared) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  /** Jobs posted to this worker, in the order it runs them (it runs one at a time). */
  jobs: Map<number, Pending>;
  /** True once the worker posted `{ ready: true }` (its modules loaded). */
  ready: boolean;
  /** True once its end was handled (exit, start timeout, give-up): later events are ignored. */
  done: boolean;
  /** Why it stopped (from its 'error' event), reported when it exits. */
  failure?: string;
  /** Start timeout, cleared when it becomes ready. */
  timer?: NodeJS.Timeout;
}

type WorkerMessage = { ready?: true; id?: number; ok?: Prepared; error?: { code: string; message: string; subject?: string } };

/** A name for the input of a task in messages. */
function inputName(t: PrepareTask): string {
  return typeof t.input === "string" ? t.input : t.input instanceof Uint8Array ? "<image bytes>" : "<decoded image>";
}

/** Worker threads running {@link prepareImage}. Call {@link PreprocessPool.close} when done. */
export class PreprocessPool {
  private readonly slots: Array<Slot | null>;
  private next = 0;
  private rr = 0;
  private closed = false;
  /** The worker module (./worker.js), or under tsx a script that loads ./worker.ts through tsx. */
  private readonly entry: { url: URL } | { script: string };
  private readonly startTimeoutMs: number;
  /** True once any worker of this pool became ready. */
  private everStarted = false;
  /** Failed starts since a worker last became ready. */
  private startFailures = 0;
  /** Set when the pool gave up starting workers: every job is rejected with it. */
  private broken: SiglipError | null = null;

  constructor(size: number) {
    this.startTimeoutMs = workerStartTimeoutMs();
    // Under tsx (tests, `npx tsx src/cli/main.ts`) this module is a .ts file. A worker started
    // with execArgv ["--import", "tsx"] does not get tsx's loader (Node 20: "Unknown file
    // extension .ts"), so the worker runs a small script that imports worker.ts with tsx's
    // tsImport; tsx is resolved here, from this package, not from the current directory.
    if (import.meta.url.endsWith(".ts")) {
      const api = import.meta.resolve("tsx/esm/api");
      const worker = new URL("./worker.ts", import.meta.url).href;
      this.entry = { script: `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(worker)}, ${JSON.stringify(import.meta.url)}));` };
    } else {
      this.entry = { url: new URL("./worker.js", import.meta.url) };
    }
    this.slots = Array.from({ length: Math.max(1, size) }, () => null);
    for (let i = 0; i < this.slots.length; i++) this.slots[i] = this.spawn(i);
  }

  private spawn(index: number): Slot {
    const worker = "url" in this.entry ? new Worker(this.entry.url) : new Worker(this.entry.script, { eval: true });
    worker.unref();
    const slot: Slot = { worker, jobs: new Map(), ready: false, done: false };
    slot.timer = setTimeout(() => {
      if (slot.done || slot.ready) return;
      slot.failure = `a worker thread was not ready after ${this.startTimeoutMs} ms; ${START_TIMEOUT_ENV} sets that limit`;
      this.onStartFailure(index, slot);
      void worker.terminate().catch(() => undefined);
    }, this.startTimeoutMs);
    slot.timer.unref(); // a job in flight keeps the process alive (the worker is ref'd), not this timer
    worker.on("message", (m: WorkerMessage) => {
      if (slot.done) return;
      if (m.ready) {
        slot.ready = true;
        clearTimeout(slot.timer);
        this.everStarted = true;
        this.startFailures = 0;
        return;
      }
      const p = slot.jobs.get(m.id!);
      if (!p) return;
      slot.jobs.delete(m.id!);
      if (slot.jobs.size === 0) worker.unref(); // an idle pool does not keep the process alive
      if (m.ok) p.resolve(m.ok);
      else if (m.error!.code === "internal") p.reject(new Error(m.error!.message));
      else p.reject(errorFromData(m.error!));
    });
    worker.on("error", (e) => {
      slot.failure ??= e instanceof Error ? e.message : String(e);
    });
    worker.on("exit", (code) => {
      if (slot.done) return;
      slot.failure ??= `it exited with code ${code}`;
      if (slot.ready) this.onDeath(index, slot);
      else this.onStartFailure(index, slot);
    });
    return slot;
  }

  /** Take a slot out of the pool; returns its jobs (in order). */
  private retire(index: number, slot: Slot): Array<[number, Pending]> {
    slot.done = true;
    clearTimeout(slot.timer);
    if (this.slots[index] === slot) this.slots[index] = null;
    const jobs = [...slot.jobs.entries()];
    slot.jobs.clear();
    return jobs;
  }

  /** A started worker ended: fail the image it was working on, re-post the others to a fresh worker. */
  private onDeath(index: number, slot: Slot): void {
    const jobs = this.retire(index, slot);
    if (this.closed) return;
    const [first, ...rest] = jobs;
    if (first) {
      const name = inputName(first[1].task);
      first[1].reject(new SiglipError("image", `cannot read image ${name}: the preprocessing worker thread died while reading it (${slot.failure})`, { subject: name }));
    }
    for (const [id, p] of rest) this.post(id, p);
  }

  /** A worker failed to start: no image is blamed; give up, or re-post its jobs to a fresh worker. */
  private onStartFailure(index: number, slot: Slot): void {
    const jobs = this.retire(index, slot);
    if (this.closed) return;
    this.startFailures++;
    if (!this.everStarted || this.startFailures >= MAX_START_FAILURES) {
      this.giveUp(slot.failure!, jobs);
      return;
    }
    for (const [id, p] of jobs) this.post(id, p);
  }

  /** Stop every worker and reject every job, now and later, with one "workers" error. */
  private giveUp(why: string, jobs: Array<[number, Pending]>): void {
    const err = workersError(why);
    this.broken = err;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i];
      if (!s) continue;
      jobs.push(...this.retire(i, s));
      void s.worker.terminate().catch(() => undefined);
    }
    for (const [, p] of jobs) p.reject(err);
  }

  get size(): number {
    return this.slots.length;
  }

  /**
   * Prepare one image on the next worker. Rejects with a SiglipError for bad images, and with
   * one of code "workers" for every image once the pool cannot start its workers.
   */
  prepare(task: PrepareTask): Promise<Prepared> {
    if (this.closed) return Promise.reject(new SiglipError("internal", "preprocessing pool closed"));
    if (this.broken) return Promise.reject(this.broken);
    const id = this.next++;
    return new Promise<Prepared>((resolve, reject) => this.post(id, { task, resolve, reject }));
  }

  private post(id: number, p: Pending): void {
    const index = this.rr++ % this.slots.length;
    const slot = this.slots[index] ?? (this.slots[index] = this.spawn(index));
    slot.jobs.set(id, p);
    slot.worker.ref(); // a job in flight keeps the process alive until its answer (or the worker's death)
    slot.worker.postMessage({ id, task: p.task });
  }

  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots.filter((s): s is Slot => s !== null);
    for (const s of slots) {
      s.done = true;
      clearTimeout(s.timer);
      for (const p of s.jobs.values()) p.reject(new SiglipError("internal", "preprocessing pool closed"));
      s.jobs.clear();
    }
    this.slots.fill(null);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}
