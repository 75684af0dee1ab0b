/**
 * The safetensors format (https://github.com/huggingface/safetensors#format), independent of
 * where the bytes live: the header validation (one copy, for local files and HTTP), the
 * {@link ByteSource} interface of positional reads, a reader over it, and dtype conversion.
 * Pure: no Node module, so the browser bundle (src/web) uses it as is; the local-file side
 * (fs, regular files only) is src/weights/safetensors.ts.
 *
 * Layout: 8-byte little-endian u64 header length N, N bytes of JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: {...} }`,
 * then the data block; offsets are relative to the start of the data block.
 *
 * The whole header is validated before any tensor is used, refusing everything the
 * reference implementation (Python `safetensors`) refuses: a length bound, UTF-8, a JSON
 * object starting with `{`, no duplicate keys, string-to-string `__metadata__`, known
 * dtypes, shape × dtype size = byte length, and a data block that the tensors cover
 * exactly (no overlaps, no unused gaps, nothing after the last tensor).
 */
import { SiglipError } from "../errors.js";
import { findDuplicateKey } from "./json-keys.js";

/** Element types that can appear in a safetensors file. */
export type SafetensorsDType =
  | "F64" | "F32" | "F16" | "BF16"
  | "I64" | "I32" | "I16" | "I8" | "U64" | "U32" | "U16" | "U8" | "BOOL";

export const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

/** Header entry of one tensor. `begin`/`end` are absolute file offsets. */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

/** Largest header we accept (the reference implementation uses the same 100 MB bound). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Number of elements of a shape (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function bad(file: string, problem: string): SiglipError {
  return new SiglipError("checkpoint", `${file}: malformed safetensors file: ${problem}`, { subject: file });
}

/** A JSON value shown in an error message, cut to `max` characters. */
export function shown(v: unknown, max = 60): string {
  const s = typeof v === "number" ? String(v) : JSON.stringify(v) ?? String(v);
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** A name (tensor, key) in an error message: as is, quoted only when it holds control characters, cut to `max`. */
export function clip(name: string, max = 80): string {
  const s = /[\u0000-\u001f\u007f\u2028\u2029]/.test(name) ? JSON.stringify(name) : name;
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Element types that hold real numbers (the ones a model weight may have). */
export const FLOAT_DTYPES: ReadonlySet<SafetensorsDType> = new Set(["F32", "F16", "BF16", "F64"]);

/**
 * Positional reads of a file's bytes, wherever it lives: a local file (src/weights/safetensors.ts
 * `FileSource`), an HTTP URL read with range requests (src/web/http-source.ts). `name` names the
 * file in every message.
 */
export interface ByteSource {
  readonly name: string;
  /** Size of the file in bytes. */
  readonly size: number;
  /** `length` bytes at `offset` (a fresh array; a short read is an error naming the file). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A {@link ByteSource} that can also read synchronously (a local file, bytes already in memory). */
export interface SyncByteSource extends ByteSource {
  /** `length` bytes at `offset`, into `into` when given (at its start), else into a fresh array. */
  readSync(offset: number, length: number, into?: Uint8Array): Uint8Array;
  close?(): void;
}

/**
 * An opened, validated safetensors file read through a {@link SyncByteSource}. Tensors are
 * read one at a time with positional reads: the file is never copied into memory as a whole.
 */
export class SafetensorsReader {
  readonly path: string;
  readonly size: number;
  readonly metadata: Record<string, string>;
  private readonly tensors: Map<string, TensorInfo>;
  private source: SyncByteSource | null;

  constructor(source: SyncByteSource, header: SafetensorsHeader) {
    this.source = source;
    this.path = source.name;
    this.size = source.size;
    this.tensors = header.tensors;
    this.metadata = header.metadata;
  }

  /** Names of all tensors in the file. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SiglipError("checkpoint", `${this.path}: tensor ${name} is missing`, { subject: name });
    return t;
  }

  /** Raw little-endian bytes of a tensor (a fresh, aligned buffer). */
  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    return this.readRange(t.begin, t.end - t.begin, new Uint8Array(t.end - t.begin));
  }

  /** Read `length` bytes at absolute file offset `position` into `into`. */
  readRange(position: number, length: number, into: Uint8Array): Uint8Array {
    if (this.source === null) throw new Error(`${this.path} is closed`);
    this.source.readSync(position, length, into);
    return into;
  }

  /** A tensor converted to float32 (F32, F16, BF16, F64 and integer types accepted). */
  readFloat32(name: string): Float32Array {
    const t = this.info(name);
    const out = new Float32Array(numel(t.shape));
    if (t.dtype === "F32") {
      this.readRange(t.begin, t.end - t.begin, new Uint8Array(out.buffer));
      return out;
    }
    convertToFloat32(this.readBytes(name), t.dtype, out, 0);
    return out;
  }

  /**
   * Rows `rows` of a 2-D tensor as float32, (rows.length, cols) row-major, reading only
   * those rows (used for the 256k-row token table).
   */
  readRowsFloat32(name: string, rows: ArrayLike<number>): Float32Array {
    const t = this.info(name);
    const { rowBytes, cols } = rowLayout(this.path, t, rows);
    const out = new Float32Array(rows.length * cols);
    const buf = new Uint8Array(rowBytes);
    for (let i = 0; i < rows.length; i++) {
      this.readRange(t.begin + rows[i]! * rowBytes, rowBytes, buf);
      convertToFloat32(buf, t.dtype, out, i * cols);
    }
    return out;
  }

  close(): void {
    if (this.source !== null) {
      this.source.close?.();
      this.source = null;
    }
  }
}

/** Bytes per row and columns of the 2-D tensor `t`; every id in `rows` checked against its row count. */
export function rowLayout(path: string, t: TensorInfo, rows: ArrayLike<number>): { rowBytes: number; cols: number } {
  if (t.shape.length !== 2) throw new SiglipError("checkpoint", `${path}: tensor ${t.name} is not 2-D`, { subject: t.name });
  const [nRows, cols] = t.shape as [number, number];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (!Number.isInteger(r) || r < 0 || r >= nRows) {
      throw new SiglipError("input", `token id ${r} is outside the table ${t.name} (${nRows} rows)`, { subject: t.name });
    }
  }
  return { rowBytes: cols * DTYPE_BYTES[t.dtype], cols };
}

/** The parsed, validated header of a safetensors file: its tensors (absolute offsets) and `__metadata__`. */
export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/**
 * Step 1 of the header: the 8-byte little-endian length prefix of a `size`-byte file,
 * checked against the bound and the file size. Returns the header's length in bytes.
 */
export function headerLength(path: string, size: number, prefix: Uint8Array): number {
  if (size < 8) throw bad(path, `file is ${size} bytes, too short for the 8-byte header length`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw bad(path, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLen = Number(n);
  if (headerLen < 2) throw bad(path, `header length ${headerLen} is too small`);
  if (8 + headerLen > size) throw bad(path, `header length ${headerLen} runs past the end of the ${size}-byte file (truncated?)`);
  return headerLen;
}

/**
 * Step 2 of the header: the `headerLen` JSON bytes that follow the prefix. A JSON object
 * `{ name: { dtype, shape, data_offsets }, …, "__metadata__"?: { k: string } }` whose
 * tensors cover the data block exactly. Checked step by step; every problem is one line.
 */
export function parseHeaderBytes(path: string, size: number, headerBuf: Uint8Array): SafetensorsHeader {
  const header = headerJson(path, headerBuf);
  const dataStart = 8 + headerBuf.length;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (raw !== null) metadata = parseMetadata(path, raw); // null: None, as Python reads it
      continue;
    }
    tensors.set(name, parseEntry(path, name, raw, dataStart, size));
  }
  checkDense(path, tensors, dataStart, size);
  return { tensors, metadata };
}

/** Read and validate the header of `source` with its synchronous reads (a local file). */
export function readHeaderSync(source: SyncByteSource): SafetensorsHeader {
  const len = headerLength(source.name, source.size, source.size >= 8 ? source.readSync(0, 8) : new Uint8Array(8));
  return parseHeaderBytes(source.name, source.size, source.readSync(8, len));
}

/** Read and validate the header of `source` with two positional reads (over HTTP: two range requests). */
export async function readHeader(source: ByteSource): Promise<SafetensorsHeader> {
  const len = headerLength(source.name, source.size, source.size >= 8 ? await source.read(0, 8) : new Uint8Array(8));
  return parseHeaderBytes(source.name, source.size, await source.read(8, len));
}

/** Decode the header bytes as a JSON object without duplicate keys. */
function headerJson(path: string, headerBuf: Uint8Array): Record<string, unknown> {
  if (headerBuf[0] !== 0x7b) throw bad(path, "header does not start with '{'");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBuf);
  } catch {
    throw bad(path, "header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw bad(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) throw bad(path, "header is not a JSON object");
  const dup = findDuplicateKey(text);
  if (dup) {
    throw bad(path, dup.path === "$" ? `tensor ${clip(dup.key)} is listed twice in the header` : `key ${clip(dup.key)} appears twice in ${clip(dup.path)}`);
  }
  return header as Record<string, unknown>;
}

/** `__metadata__`: an object of string values. */
function parseMetadata(path: string, raw: unknown): Record<string, string> {
  if (typeof raw !== "object" || Array.isArray(raw)) throw bad(path, "__metadata__ is not an object");
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v !== "string") throw bad(path, `__metadata__ value of ${clip(k)} is not a string (${shown(v)})`);
  }
  return raw as Record<string, string>;
}

/** One tensor entry: a known dtype, a shape, and offsets inside the data block spanning exactly its bytes. */
function parseEntry(path: string, name: string, raw: unknown, dataStart: number, size: number): TensorInfo {
  const tn = clip(name);
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw bad(path, `entry ${tn} is not an object`);
  const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof e.dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, e.dtype)) throw bad(path, `tensor ${tn} has unknown dtype ${shown(e.dtype)}`);
  const dtype = e.dtype as SafetensorsDType;
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(path, `tensor ${tn} has an invalid shape ${shown(e.shape)}`);
  }
  const shape = e.shape as number[];
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
    throw bad(path, `tensor ${tn} has invalid data_offsets ${shown(off)}`);
  }
  const [b, en] = off as [number, number];
  if (en > size - dataStart) throw bad(path, `tensor ${tn} ends at byte ${dataStart + en}, past the end of the ${size}-byte file (truncated?)`);
  const expected = numel(shape) * DTYPE_BYTES[dtype];
  if (en - b !== expected) {
    throw bad(path, `tensor ${tn}: ${dtype} × [${clip(shape.join(", "))}] needs ${expected} bytes but data_offsets span ${en - b}`);
  }
  return { name, dtype, shape, begin: dataStart + b, end: dataStart + en };
}

/**
 * The tensors must cover the data block exactly, in order: no overlaps, no unused gaps,
 * nothing after the last one (what the reference implementation enforces).
 */
function checkDense(path: string, tensors: ReadonlyMap<string, TensorInfo>, dataStart: number, size: number): void {
  const sorted = [...tensors.values()].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let pos = dataStart;
  let prev: TensorInfo | undefined;
  for (const cur of sorted) {
    if (cur.begin < pos) throw bad(path, `tensors ${clip(prev!.name)} and ${clip(cur.name)} overlap`);
    if (cur.begin > pos) {
      const where = prev ? `between tensors ${clip(prev.name)} and ${clip(cur.name)}` : `before the first tensor ${clip(cur.name)}`;
      throw bad(path, `${cur.begin - pos} unused bytes ${where} (the data block must be dense)`);
    }
    pos = cur.end;
    prev = cur;
  }
  if (pos !== size) throw bad(path, `${size - pos} unused bytes after the last tensor (the data block must end with it)`);
}

/** Convert little-endian raw bytes of `dtype` into float32, writing at `out[offset...]`. */
export function convertToFloat32(bytes: Uint8Array, dtype: SafetensorsDType, out: Float32Array, offset: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  switch (dtype) {
    case "F32":
      for (let i = 0; i < n; i++) out[offset + i] = view.getFloat32(i * 4, true);
      return;
    case "F64":
      for (let i = 0; i < n; i++) out[offset + i] = view.getFloat64(i * 8, true);
      return;
    case "F16":
      for (let i = 0; i < n; i++) out[offset + i] = halfToFloat(view.getUint16(i * 2, true));
      return;
    case "BF16": {
      const u32 = new Uint32Array(1);
      const f32 = new Float32Array(u32.buffer);
      for (let i = 0; i < n; i++) {
        u32[0] = view.getUint16(i * 2, true) << 16;
        out[offset + i] = f32[0]!;
      }
      return;
    }
    case "I64":
      for (let i = 0; i < n; i++) out[offset + i] = Number(view.getBigInt64(i * 8, true));
      return;
    case "I32":
      for (let i = 0; i < n; i++) out[offset + i] = view.getInt32(i * 4, true);
      return;
    case "I16":
      for (let i = 0; i < n; i++) out[offset + i] = view.getInt16(i * 2, true);
      return;
    case "I8":
      for (let i = 0; i < n; i++) out[offset + i] = view.getInt8(i);
      return;
    case "U64":
      for (let i = 0; i < n; i++) out[offset + i] = Number(view.getBigUint64(i * 8, true));
      return;
    case "U32":
      for (let i = 0; i < n; i++) out[offset + i] = view.getUint32(i * 4, true);
      return;
    case "U16":
      for (let i = 0; i < n; i++) out[offset + i] = view.getUint16(i * 2, true);
      return;
    case "U8":
    case "BOOL":
      for (let i = 0; i < n; i++) out[offset + i] = bytes[i]!;
      return;
  }
}

/** IEEE 754 binary16 → number (exact). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
