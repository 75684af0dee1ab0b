/**
 * A small pool of worker threads that decode and preprocess images, so that image
 * preparation overlaps with inference (onnxruntime runs on its own threads).
 * Results are identical to preparing on the main thread (same code, ./task.ts).
 *
 * A worker that dies (an uncaught exception, `process.exit`, running out of its heap) never
 * leaves a caller waiting: the image it was working on is rejected with a SiglipError naming
 * that image, the images queued behind it are handed to a fresh worker, and later images use
 * a fresh worker too.
 */
import { Worker } from "node:worker_threads";
import { SiglipError } from "../errors.js";
import { errorFromData, type PrepareTask, type Prepared } from "./task.js";

interface Pending {
  task: PrepareTask;
  resolve: (p: Prepared) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  /** Jobs posted to this worker, in the order it runs them (it runs one at a time). */
  jobs: Map<number, Pending>;
  /** Why it stopped (from its 'error' event), reported when it exits. */
  failure?: string;
}

type WorkerMessage = { id: number; ok?: Prepared; error?: { code: string; message: string; subject?: string } };

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
  private readonly url: URL;
  private readonly execArgv: string[];

  constructor(size: number) {
    // Under tsx (tests) this module is a .ts file: run the worker source through the same loader.
    const ts = import.meta.url.endsWith(".ts");
    this.url = new URL(ts ? "./worker.ts" : "./worker.js", import.meta.url);
    this.execArgv = ts ? ["--import", "tsx"] : [];
    this.slots = Array.from({ length: Math.max(1, size) }, () => null);
    for (let i = 0; i < this.slots.length; i++) this.slots[i] = this.spawn(i);
  }

  private spawn(index: number): Slot {
    const worker = new Worker(this.url, { execArgv: this.execArgv });
    worker.unref();
    const slot: Slot = { worker, jobs: new Map() };
    worker.on("message", (m: WorkerMessage) => {
      const p = slot.jobs.get(m.id);
      if (!p) return;
      slot.jobs.delete(m.id);
      if (slot.jobs.size === 0) worker.unref(); // an idle pool does not keep the process alive
      if (m.ok) p.resolve(m.ok);
      else if (m.error!.code === "internal") p.reject(new Error(m.error!.message));
      else p.reject(errorFromData(m.error!));
    });
    worker.on("error", (e) => {
      slot.failure ??= e instanceof Error ? e.message : String(e);
    });
    worker.on("exit", (code) => this.onExit(index, slot, code));
    return slot;
  }

  /** A worker ended: fail the image it was working on, re-post the others to a fresh worker. */
  private onExit(index: number, slot: Slot, code: number): void {
    if (this.slots[index] === slot) this.slots[index] = null;
    const jobs = [...slot.jobs.entries()];
    slot.jobs.clear();
    if (this.closed) return;
    const why = slot.failure ?? `it exited with code ${code}`;
    const [first, ...rest] = jobs;
    if (first) {
      const name = inputName(first[1].task);
      first[1].reject(new SiglipError("image", `cannot read image ${name}: the preprocessing worker thread died while reading it (${why})`, { subject: name }));
    }
    for (const [id, p] of rest) this.post(id, p);
  }

  get size(): number {
    return this.slots.length;
  }

  /** Prepare one image on the next worker. Rejects with a SiglipError for bad images. */
  prepare(task: PrepareTask): Promise<Prepared> {
    if (this.closed) return Promise.reject(new SiglipError("internal", "preprocessing pool closed"));
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
      for (const p of s.jobs.values()) p.reject(new SiglipError("internal", "preprocessing pool closed"));
      s.jobs.clear();
    }
    this.slots.fill(null);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}
