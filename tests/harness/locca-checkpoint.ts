/**
 * A checkpoint with a LocCa decoder for the inference tests: a copy of the tiny fixres-f32
 * checkpoint plus tests/fixtures/goldens/locca-decoder.safetensors (the PyTorch golden's decoder
 * weights) rewritten as `decoder.safetensors` with the format metadata (src/models/locca-infer.ts).
 */
import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { safetensorsBytes, type NamedTensor } from "../../src/train/checkpoint.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import { FIXTURES } from "./paths.js";

export const DECODER_METADATA = { format: "siglip2-locca-decoder", version: "1", layers: "1", box_bins: "500" };

/** The golden decoder tensors (name, shape, values), in file order. */
export function goldenDecoderTensors(): NamedTensor[] {
  const f = SafetensorsFile.open(join(FIXTURES, "goldens", "locca-decoder.safetensors"));
  try {
    return f.names().map((name) => ({ name, shape: [...f.info(name).shape], data: f.readFloat32(name) }));
  } finally {
    f.close();
  }
}

/** A fresh temp checkpoint folder; `decoder` = false leaves the decoder out, a function edits the tensors/metadata. */
export function loccaCheckpoint(o: { decoder?: boolean; edit?: (t: NamedTensor[], m: Record<string, string>) => void } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "siglip2-locca-ckpt-"));
  cpSync(join(FIXTURES, "models", "fixres-f32"), dir, { recursive: true });
  if (o.decoder === false) return dir;
  const tensors = goldenDecoderTensors();
  const meta: Record<string, string> = { ...DECODER_METADATA };
  o.edit?.(tensors, meta);
  writeFileSync(join(dir, "decoder.safetensors"), safetensorsBytes(tensors, meta));
  return dir;
}
