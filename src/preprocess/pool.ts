/**
 * A small pool of worker threads that decode and preprocess images, so that image
 * preparation overlaps with inference (onnxruntime runs on its own threads).
 * Results are identical to preparing on the main thread (same code, ./task.ts).
 */
import { Worker } from "node:worker_threads";
import { SiglipError } from "../errors.js";
import { errorFromData, type PrepareTask, type Prepared } from "./task.js";

interface Pending {
  resolve: (p: Prepared) => void;
  reject: (e: Error) => void;
}

/** Worker threads running {@link prepareImage}. Call {@link PreprocessPool.close} when done. */
export class PreprocessPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private rr = 0;

  constructor(size: number) {
    // Under tsx (tests) this module is a .ts file: run the worker source through the same loader.
    const ts = import.meta.url.endsWith(".ts");
    const url = new URL(ts ? "./worker.ts" : "./worker.js", import.meta.url);
    for (let i = 0; i < size; i++) {
      const w = new Worker(url, { execArgv: ts ? ["--import", "tsx"] : [] });
      w.unref();
      w.on("message", (m: { id: number; ok?: Prepared; error?: { code: string; message: string; subject?: string } }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.ok) p.resolve(m.ok);
        else if (m.error!.code === "internal") p.reject(new Error(m.error!.message));
        else p.reject(errorFromData(m.error!));
      });
      w.on("error", (e) => {
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
      this.workers.push(w);
    }
  }

  get size(): number {
    return this.workers.length;
  }

  /** Prepare one image on the next worker. Rejects with a SiglipError for bad images. */
  prepare(task: PrepareTask): Promise<Prepared> {
    const id = this.next++;
    const w = this.workers[this.rr++ % this.workers.length]!;
    return new Promise<Prepared>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, task });
    });
  }

  async close(): Promise<void> {
    for (const p of this.pending.values()) p.reject(new SiglipError("internal", "preprocessing pool closed"));
    this.pending.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
