/** Worker-thread entry point: runs {@link prepareImage} for the pool in ./pool.ts. */
import { parentPort } from "node:worker_threads";
import { SiglipError } from "../errors.js";
import { errorToData, prepareImage, type PrepareTask } from "./task.js";

parentPort!.on("message", async (msg: { id: number; task: PrepareTask }) => {
  try {
    const r = await prepareImage(msg.task);
    parentPort!.postMessage({ id: msg.id, ok: r }, [r.data.buffer as ArrayBuffer]);
  } catch (e) {
    const err = e instanceof SiglipError ? errorToData(e) : { code: "internal", message: e instanceof Error ? e.message : String(e) };
    parentPort!.postMessage({ id: msg.id, error: err });
  }
});
