/** Test helpers: temporary folders, fixture copies and a tiny safetensors writer. */
import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { FIXTURES } from "./paths.js";

export function tempDir(prefix = "siglip2-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Copy a fixture checkpoint to a temporary folder (to damage it safely). */
export function copyFixture(name: string): string {
  const dir = join(tempDir(), name);
  cpSync(join(FIXTURES, "models", name), dir, { recursive: true });
  return dir;
}

/** Build safetensors bytes from a raw header object and a data block. */
export function safetensorsBytes(header: unknown, data: Uint8Array, headerLenOverride?: bigint): Uint8Array {
  const h = Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLenOverride ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** Write F32 tensors as a valid safetensors file. */
export function writeSafetensors(path: string, tensors: Record<string, { shape: number[]; data: Float32Array }>): void {
  const header: Record<string, unknown> = {};
  const chunks: Uint8Array[] = [];
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [off, off + bytes.length] };
    chunks.push(bytes);
    off += bytes.length;
  }
  writeFileSync(path, safetensorsBytes(header, Buffer.concat(chunks)));
}

/** A small random-noise PNG (xorshift pixels, deterministic per seed). */
export async function noisePng(seed: number, w = 12, h = 12): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < px.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    px[i] = s & 255;
  }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}
