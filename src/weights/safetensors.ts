/**
 * safetensors files on the local disk: the fs {@link ByteSource} (regular files only: a FIFO,
 * a device or a directory is refused without blocking) and {@link SafetensorsFile}, the
 * synchronous reader the Node library uses. The format itself (header validation, dtypes,
 * row reads) is src/weights/safetensors-format.ts, shared with the browser's HTTP reader.
 *
 * Reference: https://github.com/huggingface/safetensors#format.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from "node:fs";
import { SiglipError } from "../errors.js";
import { bad, readHeaderSync, SafetensorsReader, type SafetensorsHeader, type SyncByteSource } from "./safetensors-format.js";

export * from "./safetensors-format.js";

/** What kind of file system object `st` is, for "not a regular file" messages. */
export function fileKind(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/**
 * Open `path` for reading only if it is a regular file (following symlinks). The open
 * does not block on a FIFO (O_NONBLOCK), and the check is made on the opened descriptor.
 */
export function openRegularFile(path: string, what: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SiglipError("checkpoint", `${path}: cannot open ${what} (${code ?? String(e)})`, { subject: path, cause: e });
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new SiglipError("checkpoint", `${path}: ${what} is ${fileKind(st)}, not a regular file`, { subject: path });
  }
  return { fd, size: st.size };
}

/** `readSync` until `length` bytes are read; a short file or an I/O error is a one-line error naming the file. */
export function readFully(path: string, fd: number, into: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = readSync(fd, into, offset + done, length - done, position + done);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SiglipError("checkpoint", `${path}: read failed at byte ${position + done} (${code ?? String(e)})`, { subject: path, cause: e });
    }
    if (n <= 0) throw bad(path, `unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

/** A local regular file as a {@link SyncByteSource} (positional reads on one descriptor). */
export class FileSource implements SyncByteSource {
  readonly name: string;
  readonly size: number;
  private fd: number | null;

  constructor(path: string, what = "weights file") {
    const { fd, size } = openRegularFile(path, what);
    this.name = path;
    this.fd = fd;
    this.size = size;
  }

  readSync(offset: number, length: number, into: Uint8Array = new Uint8Array(length)): Uint8Array {
    if (this.fd === null) throw new Error(`${this.name} is closed`);
    readFully(this.name, this.fd, into, 0, length, offset);
    return into;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    try {
      return Promise.resolve(this.readSync(offset, length));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

/** One opened local safetensors file. Call {@link SafetensorsFile.close} when done. */
export class SafetensorsFile extends SafetensorsReader {
  private constructor(source: FileSource, header: SafetensorsHeader) {
    super(source, header);
  }

  /** Open and validate `path`. Throws a {@link SiglipError} naming the file on any problem. */
  static open(path: string): SafetensorsFile {
    const source = new FileSource(path);
    try {
      return new SafetensorsFile(source, readHeaderSync(source));
    } catch (e) {
      source.close();
      throw e;
    }
  }
}
