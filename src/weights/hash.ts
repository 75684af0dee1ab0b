/**
 * The SHA-256 of a file's bytes, streamed in 4 MiB reads (constant memory). The one
 * implementation, used by the checkpoint fingerprint, the Hub download (an LFS ETag is the
 * SHA-256 of the content) and the search index (files are keyed by content).
 *
 * Errors are Node's own (ENOENT, EACCES, EISDIR ...): each caller words them for its layer.
 */
import { open } from "node:fs/promises";
import { createHash } from "node:crypto";

const CHUNK = 4 << 20;

/** Hex SHA-256 (64 lowercase digits) of the file at `path`. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  const fh = await open(path, "r");
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest("hex");
}
