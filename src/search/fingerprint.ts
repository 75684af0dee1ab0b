/**
 * A checkpoint fingerprint: which weights (and preprocessing) produced a vector.
 *
 * Two checkpoints stored under the same name (a re-downloaded revision, a fine-tune
 * written over the old folder) must not share an index, so the name alone is not
 * enough. Hashing every weight byte of a 4 GB checkpoint on each run is too slow, so
 * the fingerprint covers what identifies one cheaply:
 * - config.json and preprocessor_config.json (architecture, image size, normalisation);
 * - for every safetensors file: its size, its whole header (names, dtypes, shapes,
 *   offsets) and the first and last 1 MiB of tensor data.
 * A fine-tune changes (nearly) every tensor, so the sampled bytes change too.
 */
import { createHash, type Hash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { SiglipError } from "../errors.js";

const SAMPLE_BYTES = 1 << 20;

async function hashWeightFile(h: Hash, path: string, name: string): Promise<void> {
  const fh = await open(path, "r").catch((e: unknown) => {
    throw new SiglipError("checkpoint", `${path}: cannot open (${e instanceof Error ? e.message : String(e)})`, { subject: path });
  });
  try {
    const { size } = await fh.stat();
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (size < 8 || headerLen > size - 8) throw new SiglipError("checkpoint", `${path}: truncated or not a safetensors file`, { subject: path });
    const header = Buffer.alloc(headerLen);
    await fh.read(header, 0, headerLen, 8);
    h.update(`${name}\0${size}\0`).update(header);
    const dataStart = 8 + headerLen;
    const dataLen = size - dataStart;
    const first = Buffer.alloc(Math.min(SAMPLE_BYTES, dataLen));
    await fh.read(first, 0, first.length, dataStart);
    h.update(first);
    if (dataLen > SAMPLE_BYTES) {
      const last = Buffer.alloc(Math.min(SAMPLE_BYTES, dataLen - SAMPLE_BYTES));
      await fh.read(last, 0, last.length, size - last.length);
      h.update(last);
    }
  } finally {
    await fh.close();
  }
}

/** The fingerprint (64 hex digits) of the checkpoint in `dir`. */
export async function checkpointFingerprint(dir: string): Promise<string> {
  const h = createHash("sha256");
  for (const f of ["config.json", "preprocessor_config.json"]) {
    const p = join(dir, f);
    h.update(`${f}\0`);
    if (existsSync(p)) h.update(readFileSync(p));
  }
  const index = join(dir, "model.safetensors.index.json");
  let files: string[];
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = (JSON.parse(readFileSync(index, "utf8")) as { weight_map: Record<string, string> }).weight_map;
    } catch {
      throw new SiglipError("checkpoint", `${index}: not valid JSON with a weight_map`, { subject: index });
    }
    files = [...new Set(Object.values(map))].sort();
  } else {
    files = ["model.safetensors"];
  }
  for (const f of files) await hashWeightFile(h, join(dir, f), f);
  return h.digest("hex");
}
