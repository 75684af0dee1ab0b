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

/**
 * Test hook (never set it otherwise): `SIGLIP2_TEST_WORKER_FAULT=exit:SUBSTRING` makes this
 * worker exit, and `throw:SUBSTRING` makes it throw an uncaught exception, when it is given an
 * image path containing SUBSTRING, so that tests can check that a dying worker is handled.
 * `start:crash` makes it throw while loading (before it is ready) and `start:hang` makes it
 * never become ready (nor answer), so that tests can check workers that cannot start.
 */
const faultEnv = process.env["SIGLIP2_TEST_WORKER_FAULT"] ?? "";
if (faultEnv === "start:crash") throw new Error("test fault: the worker failed while loading");
const fault = /^(exit|throw):(.+)$/.exec(faultEnv);

function injectFault(kind: string): Promise<void> {
  if (kind === "exit") process.exit(70);
  setImmediate(() => {
    throw new Error("test fault: uncaught exception in the worker");
  });
  return new Promise(() => undefined); // the worker dies before anything else runs
}

if (faultEnv === "start:hang") {
  setInterval(() => undefined, 1 << 30); // alive, never ready, never answers
} else {
  parentPort!.on("message", (msg: { id: number; task: PrepareTask }) => {
    const faulty = fault !== null && typeof msg.task.input === "string" && msg.task.input.includes(fault[2]!);
    chain = chain.then(() => (faulty ? injectFault(fault[1]!) : handle(msg)));
  });
  // Loaded (with sharp and the preprocessing code): the pool counts this worker as started.
  parentPort!.postMessage({ ready: true });
}
