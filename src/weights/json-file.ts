/**
 * Reading the small JSON files of a checkpoint (config.json, preprocessor_config.json,
 * the shard index) with errors that name the file: only a regular file of bounded size
 * is read (a FIFO or a device is refused without blocking), and it must be UTF-8.
 */
import { closeSync } from "node:fs";
import { SiglipError } from "../errors.js";
import { openRegularFile, readFully, shown } from "./safetensors.js";

/** Largest JSON file read from a checkpoint (config.json, preprocessor_config.json, the shard index). */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

/**
 * Read and parse a JSON file, with errors naming the file. Only a regular file of at
 * most {@link MAX_JSON_BYTES} is read (a FIFO or a device is refused without blocking);
 * it must be UTF-8.
 */
export function readJsonFile(path: string): unknown {
  const { fd, size } = openRegularFile(path, "JSON file");
  let bytes: Buffer;
  try {
    if (size > MAX_JSON_BYTES) {
      throw new SiglipError("checkpoint", `${path}: ${size} bytes is too large for a JSON config (limit ${MAX_JSON_BYTES})`, { subject: path });
    }
    bytes = Buffer.alloc(size);
    readFully(path, fd, bytes, 0, size, 0);
  } finally {
    closeSync(fd);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new SiglipError("checkpoint", `${path}: not valid UTF-8`, { subject: path });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SiglipError("checkpoint", `${path}: not valid JSON (${shown((e as Error).message, 120)})`, { subject: path, cause: e });
  }
}
