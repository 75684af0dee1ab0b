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

/**
 * A fresh temp checkpoint folder (a copy of `base`, default fixres-f32; naflex-f32 has the same
 * decoder sizes); `decoder` = false leaves the decoder out, `edit` changes the tensors/metadata.
 */
export function loccaCheckpoint(o: { base?: string; decoder?: boolean; edit?: (t: NamedTensor[], m: Record<string, string>) => void } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "siglip2-locca-ckpt-"));
  cpSync(join(FIXTURES, "models", o.base ?? "fixres-f32"), dir, { recursive: true });
  if (o.decoder === false) return dir;
  const tensors = goldenDecoderTensors();
  const meta: Record<string, string> = { ...DECODER_METADATA };
  o.edit?.(tensors, meta);
  writeFileSync(join(dir, "decoder.safetensors"), safetensorsBytes(tensors, meta));
  return dir;
}

/**
 * Turn the decoder into a script (test only): whatever the image, the token predicted after
 * position `start + j` is `ids[j]`. Every residual branch is zeroed (out_proj, fc2), the token
 * table too, so the final hidden state at position t is LN(e_(t mod D)) of a one-hot position
 * row; lm_head row `ids[j]` is LN(e_(start+j)), giving that token a logit ≈ D and the others ≤ 0.
 * `start` is the position of the prompt's last token (= the prompt's length, BOS being at 0).
 */
export function scriptDecoder(t: NamedTensor[], start: number, ids: readonly number[]): void {
  const get = (n: string) => t.find((x) => x.name === `decoder.${n}`)!;
  for (const x of t) if (/out_proj|fc2|embed_tokens/.test(x.name)) x.data.fill(0);
  const pos = get("position_embedding.weight");
  const [L, D] = pos.shape as [number, number];
  if (ids.length > D) throw new Error(`a script of ${ids.length} tokens does not fit ${D} directions`);
  pos.data.fill(0);
  for (let p = 0; p < L; p++) pos.data[p * D + (p % D)] = 1;
  get("final_layer_norm.weight").data.fill(1);
  get("final_layer_norm.bias").data.fill(0);
  const head = get("lm_head.weight");
  head.data.fill(0);
  get("lm_head.bias").data.fill(0);
  const mean = 1 / D;
  const sd = Math.sqrt(mean * (1 - mean) + 1e-6);
  ids.forEach((id, j) => {
    const k = (start + j) % D;
    for (let d = 0; d < D; d++) head.data[id * D + d]! += ((d === k ? 1 : 0) - mean) / sd;
  });
}
