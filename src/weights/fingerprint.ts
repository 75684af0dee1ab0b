/**
 * Checkpoint identities.
 *
 * {@link checkpointFingerprint}: which weights (and preprocessing) produced a vector (the
 * search index records it).
 *
 * Two checkpoints stored under the same name (a re-downloaded revision, a fine-tune
 * written over the old folder) must not share an index, so the name alone is not
 * enough. Hashing every weight byte of a 4 GB checkpoint on each run is too slow, so
 * the fingerprint covers what identifies one cheaply:
 * - config.json and preprocessor_config.json (architecture, image size, normalisation);
 * - for every safetensors file: its size, its whole header (names, dtypes, shapes,
 *   offsets) and the first and last 1 MiB of tensor data.
 * A fine-tune changes (nearly) every tensor, so the sampled bytes change too.
 *
 * {@link fileContentHash} / {@link contentIdentity}: the full SHA-256 of the weight files,
 * for the ONNX model cache, which must never serve the graphs of other weights. Hashing
 * 370 MB on every start would cost more than the cached start itself, so each file's hash
 * is remembered next to the cache together with what the file system says about the file
 * (device, inode, size, and the modification and status-change times in nanoseconds),
 * and is reused while all of these are unchanged.
 *
 * Why that is sound: a write to a file updates its ctime, and ctime cannot be set by a
 * user (`touch`/`utimes` restore the mtime but set the ctime to now); replacing a file
 * (rename, copy, a new download) gives a new inode. So a content change that keeps the
 * remembered hash needs all five values unchanged. A hash is only remembered when the
 * file's mtime and ctime are older than the record itself (the "racy git" rule) and the
 * file did not change while it was being hashed, so a write in the same clock tick as the
 * hashing is not missed either.
 *
 * What it can miss: a change made without the file system noticing — the system clock
 * set back to the file's old ctime while rewriting it (root only), writes to the block
 * device under the file system, or a file system whose timestamps are coarser than the
 * cache folder's and that has no ctime (FAT: 2 s) when a same-size rewrite lands in the
 * same timestamp tick. `siglip2 cache clear` removes every remembered hash.
 */
import { createHash, type Hash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync, type BigIntStats } from "node:fs";
import { open } from "node:fs/promises";
import { basename, join } from "node:path";
import { SiglipError } from "../errors.js";
import { sha256File } from "./hash.js";
import { readShardIndex, shardIndexPath } from "./shard-index.js";

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
  // The same choice as WeightStore.openDir: model.safetensors when present, else the index.
  const index = shardIndexPath(dir);
  const single = existsSync(join(dir, "model.safetensors")) || !existsSync(index);
  const files = single ? ["model.safetensors"] : [...readShardIndex(index).shards].sort();
  for (const f of files) await hashWeightFile(h, join(dir, f), f);
  return h.digest("hex");
}

/** What the remembered hash of a file is tied to. */
interface FileStamp {
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
}

function stamp(st: BigIntStats): FileStamp {
  return { dev: String(st.dev), ino: String(st.ino), size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) };
}

function sameStamp(a: FileStamp, b: FileStamp): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** sha256File with an unopenable file named as a checkpoint problem. */
function hashFile(path: string): Promise<string> {
  return sha256File(path).catch((e: unknown) => {
    const err = e as NodeJS.ErrnoException;
    if (err.syscall !== "open") throw e;
    throw new SiglipError("checkpoint", `${path}: cannot open (${err.code ?? String(e)})`, { subject: path });
  });
}

/**
 * The SHA-256 of a file's bytes. With `memoDir`, the hash is remembered there (one small
 * JSON file per file path) and returned without reading the file while its device, inode,
 * size, mtime and ctime are unchanged (see the module comment for what that can miss).
 * `remembered` tells whether the file was read.
 */
export async function fileContentHash(path: string, memoDir: string | null): Promise<{ sha256: string; remembered: boolean }> {
  let real: string;
  let before: BigIntStats;
  try {
    real = realpathSync(path);
    before = statSync(real, { bigint: true });
  } catch (e) {
    throw new SiglipError("checkpoint", `${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { subject: path });
  }
  if (!before.isFile()) throw new SiglipError("checkpoint", `${path}: not a regular file`, { subject: path });
  const now = stamp(before);
  const memo = memoDir === null ? null : join(memoDir, `${createHash("sha256").update(real).digest("hex").slice(0, 32)}.json`);
  if (memo !== null) {
    try {
      const rec = JSON.parse(readFileSync(memo, "utf8")) as FileStamp & { path: string; sha256: string };
      const written = statSync(memo, { bigint: true }).mtimeNs;
      if (rec.path === real && sameStamp(rec, now) && before.mtimeNs < written && before.ctimeNs < written && /^[0-9a-f]{64}$/.test(rec.sha256)) {
        return { sha256: rec.sha256, remembered: true };
      }
    } catch {
      /* no record (or a damaged one): hash the file */
    }
  }
  const sha256 = await hashFile(real);
  if (memo !== null) {
    try {
      const after = stamp(statSync(real, { bigint: true }));
      if (sameStamp(after, now)) {
        mkdirSync(memoDir!, { recursive: true });
        const tmp = `${memo}.tmp-${process.pid}`;
        writeFileSync(tmp, JSON.stringify({ path: real, ...now, sha256 }));
        renameSync(tmp, memo);
      }
    } catch {
      /* a read-only cache: the hash is simply not remembered */
    }
  }
  return { sha256, remembered: false };
}

/**
 * A content identity (64 hex digits) of a set of files: the SHA-256 over each file's base
 * name and {@link fileContentHash}. Copies of a checkpoint in two folders get the same identity.
 */
export async function contentIdentity(paths: readonly string[], memoDir: string | null): Promise<string> {
  const h = createHash("sha256");
  for (const p of paths) {
    const { sha256 } = await fileContentHash(p, memoDir);
    h.update(`${basename(p)}\0${sha256}\0`);
  }
  return h.digest("hex");
}
