/**
 * {@link SigLIP2Worker}: the `siglip2/web` API run in a Web Worker (src/web/worker.ts), so that
 * decoding, preprocessing and inference never block the page. Same methods as SigLIP2, all async;
 * errors come back as SiglipError (code, message, subject).
 *
 * Reference: HTML Web Workers (module workers: `new Worker(url, { type: "module" })`).
 */
import { SiglipError } from "../errors.js";
import type { FetchProgress } from "./http-source.js";
import type { WebImageInput } from "./image.js";
import type { ImageOptions } from "../tasks/image-pipeline.js";
import type { LabelScoreRow } from "../tasks/scoring.js";
import type { ClassifyOptions, WebBackend, WebLoadOptions } from "./index.js";

interface Reply {
  id?: number;
  result?: unknown;
  error?: { code: string; message: string; subject?: string };
  progress?: FetchProgress;
}

/** A SigLIP2 model living in a Web Worker. */
export class SigLIP2Worker {
  private next = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  backend: WebBackend = "wasm";
  threads = 1;
  webgpuOffered = false;
  dim = 0;
  isNaflex = false;

  private constructor(private readonly worker: Worker, private onProgress?: (p: FetchProgress) => void) {
    worker.addEventListener("message", (ev: MessageEvent<Reply>) => {
      const r = ev.data;
      if (r.progress) return this.onProgress?.(r.progress);
      const p = r.id !== undefined ? this.pending.get(r.id) : undefined;
      if (!p) return;
      this.pending.delete(r.id!);
      if (r.error) p.reject(new SiglipError(r.error.code, r.error.message, r.error.subject !== undefined ? { subject: r.error.subject } : undefined));
      else p.resolve(r.result);
    });
    worker.addEventListener("error", (ev) => {
      for (const p of this.pending.values()) p.reject(new SiglipError("runtime", `siglip2 worker failed: ${ev.message}`));
      this.pending.clear();
    });
  }

  /**
   * Start a worker (default: siglip2.worker.js next to this bundle) and load `model` in it
   * (a Hub id or a base URL; relative URLs resolve against the page).
   */
  static async load(model: string, options: WebLoadOptions & { workerUrl?: string | URL } = {}): Promise<SigLIP2Worker> {
    const { workerUrl, onProgress, ...rest } = options;
    const worker = new Worker(workerUrl ?? new URL("./siglip2.worker.js", import.meta.url), { type: "module" });
    const w = new SigLIP2Worker(worker, onProgress);
    const base = typeof location !== "undefined" ? new URL(model, location.href).href : model;
    const url = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(model) ? model : base; // Hub ids stay ids
    const info = (await w.call("load", [url, rest])) as { backend: WebBackend; threads: number; webgpuOffered: boolean; dim: number; isNaflex: boolean };
    Object.assign(w, info);
    return w;
  }

  private call(method: string, args: unknown[]): Promise<unknown> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, method, args });
    });
  }

  embedImages(images: WebImageInput[], options: ImageOptions = {}): Promise<Float32Array[]> {
    const abs = images.map((x) => (typeof x === "string" && typeof location !== "undefined" ? new URL(x, location.href).href : x));
    return this.call("embedImages", [abs, options]) as Promise<Float32Array[]>;
  }

  embedTexts(texts: string[], options: { lowercase?: boolean; normalize?: boolean } = {}): Promise<Float32Array[]> {
    return this.call("embedTexts", [texts, options]) as Promise<Float32Array[]>;
  }

  similarity(imageEmbeds: Float32Array[], textEmbeds: Float32Array[]): Promise<{ logits: number[][]; probabilities: number[][] }> {
    return this.call("similarity", [imageEmbeds, textEmbeds]) as Promise<{ logits: number[][]; probabilities: number[][] }>;
  }

  classify(images: WebImageInput[], labels: string[], options: ClassifyOptions = {}): Promise<LabelScoreRow[][]> {
    const abs = images.map((x) => (typeof x === "string" && typeof location !== "undefined" ? new URL(x, location.href).href : x));
    return this.call("classify", [abs, labels, options]) as Promise<LabelScoreRow[][]>;
  }

  /** Release the model and end the worker. */
  async close(): Promise<void> {
    await this.call("close", []).catch(() => undefined);
    this.worker.terminate();
  }
}
