/**
 * The Web Worker side of `siglip2/web` (bundled as dist/web/siglip2.worker.js): one SigLIP2 model
 * per worker, driven by {@link SigLIP2Worker} (src/web/worker-client.ts) with messages
 * `{ id, method, args }` → `{ id, result }` or `{ id, error: { code, message, subject } }`, and
 * `{ progress }` for download progress. Decoding, preprocessing and onnxruntime all run here, so
 * the page's main thread stays responsive.
 *
 * Reference: HTML Web Workers (`postMessage`, structured clone; Blob, File, ImageBitmap and
 * ImageData cross as they are).
 */
import { SiglipError } from "../errors.js";
import { SigLIP2, type WebLoadOptions } from "./index.js";

interface Request {
  id: number;
  method: "load" | "embedImages" | "embedTexts" | "similarity" | "classify" | "close";
  args: unknown[];
}

let model: SigLIP2 | null = null;

function errorData(e: unknown): { code: string; message: string; subject?: string } {
  if (e instanceof SiglipError) return e.subject !== undefined ? { code: e.code, message: e.message, subject: e.subject } : { code: e.code, message: e.message };
  return { code: "internal", message: e instanceof Error ? e.message : String(e) };
}

async function handle(req: Request): Promise<unknown> {
  if (req.method === "load") {
    const [url, options] = req.args as [string, WebLoadOptions];
    model = await SigLIP2.load(url, { ...options, onProgress: (p) => postMessage({ progress: p }) });
    return { backend: model.backend, threads: model.threads, webgpuOffered: model.webgpuOffered, dim: model.dim, isNaflex: model.isNaflex };
  }
  if (!model) throw new SiglipError("input", "the worker has no model: call SigLIP2Worker.load first");
  const m = model;
  switch (req.method) {
    case "embedImages":
      return m.embedImages(...(req.args as Parameters<SigLIP2["embedImages"]>));
    case "embedTexts":
      return m.embedTexts(...(req.args as Parameters<SigLIP2["embedTexts"]>));
    case "similarity":
      return m.similarity(...(req.args as Parameters<SigLIP2["similarity"]>));
    case "classify":
      return m.classify(...(req.args as Parameters<SigLIP2["classify"]>));
    case "close":
      model = null;
      return m.close();
  }
}

addEventListener("message", (ev: MessageEvent<Request>) => {
  const req = ev.data;
  handle(req).then(
    (result) => postMessage({ id: req.id, result }),
    (e: unknown) => postMessage({ id: req.id, error: errorData(e) }),
  );
});
