/**
 * `model.safetensors.index.json`, the index of a sharded checkpoint (the format
 * `transformers` writes with `save_pretrained(max_shard_size=...)`):
 *
 * ```
 * { "metadata": { "total_size": N }, "weight_map": { "<tensor name>": "<shard file>", ... } }
 * ```
 *
 * The one parser of it, used by the checkpoint loader (src/weights/checkpoint.ts), the
 * checkpoint fingerprint (src/weights/fingerprint.ts) and the Hub download
 * (src/hub/download.ts), so the three agree on which indexes are valid.
 *
 * Rule for shard names: a plain file name in the checkpoint folder. Refused: empty
 * names, `.` and `..`, any `/` or `\` (so no sub-folders, no absolute paths, no escaping
 * the folder), Windows drive prefixes (`C:`) and NUL. `transformers` itself only ever
 * writes flat names (`model-00001-of-00002.safetensors`).
 */
import { join } from "node:path";
import { SiglipError } from "../errors.js";
import { readJsonFile } from "./json-file.js";
import { clip, shown } from "./safetensors.js";

/** The file name of the index in a checkpoint folder. */
export const SHARD_INDEX_FILE = "model.safetensors.index.json";

/** A parsed, validated shard index. */
export interface ShardIndex {
  /** The index file it was read from (for messages). */
  path: string;
  /** `[tensor name, shard file]`, in the index's order. */
  entries: Array<[string, string]>;
  /** The distinct shard files, in order of first appearance. */
  shards: string[];
}

/** True for a shard name the rule above accepts. */
export function isValidShardName(s: unknown): s is string {
  return typeof s === "string" && s.length > 0 && s !== "." && s !== ".." && !/[/\\\0]/.test(s) && !/^[A-Za-z]:/.test(s);
}

/** Validates the parsed JSON of an index read from `path`. */
export function parseShardIndex(json: unknown, path: string): ShardIndex {
  const map = json !== null && typeof json === "object" && !Array.isArray(json) ? (json as { weight_map?: unknown }).weight_map : undefined;
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    throw new SiglipError("checkpoint", `${path}: has no weight_map object`, { subject: path });
  }
  const raw = Object.entries(map as Record<string, unknown>);
  if (raw.length === 0) throw new SiglipError("checkpoint", `${path}: weight_map lists no tensors`, { subject: path });
  for (const [name, shard] of raw) {
    if (!isValidShardName(shard)) {
      throw new SiglipError(
        "checkpoint",
        `${path}: tensor ${clip(name)} has an invalid shard name ${shown(shard)} (expected a file name in the checkpoint folder, no path)`,
        { subject: path },
      );
    }
  }
  const entries = raw as Array<[string, string]>;
  return { path, entries, shards: [...new Set(entries.map(([, f]) => f))] };
}

/** Reads and validates the index file at `path` (errors name it; see readJsonFile for the limits). */
export function readShardIndex(path: string): ShardIndex {
  return parseShardIndex(readJsonFile(path), path);
}

/** The index file of the checkpoint folder `dir`. */
export function shardIndexPath(dir: string): string {
  return join(dir, SHARD_INDEX_FILE);
}
