/**
 * Worker-thread entry point: runs {@link prepareImage} for the pool in ./pool.ts.
 * Tasks run one at a time: libvips keeps one error buffer per process, so two decodes
 * failing at once could swap their error details.
 */
import { parentPort } from "node:worker_threads";
import { SiglipError } from "../errors.js";
import { errorToData, prepareImage, type PrepareTask } from "./task.js";

let chain: Promise<void> = Promise.resolve();

async function handle(msg: { id: number; task: PrepareTask }): Promise<void> {
  try {
    const r = await prepareImage(msg.task);
    parentPort!.postMessage({ id: msg.id, ok: r }, [r.data.buffer as ArrayBuffer]);
  } catch (e) {
    const err = e instanceof SiglipError ? errorToData(e) : { code: "internal", message: e instanceof Error ? e.message : String(e) };
    parentPort!.postMessage({ id: msg.id, error: err });
  }
}

parentPort!.on("message", (msg: { id: number; task: PrepareTask }) => {
  chain = chain.then(() => handle(msg));
});
