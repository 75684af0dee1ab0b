/**
 * The NaFlex training goldens (tools/reference/naflex_train_goldens.py, naflex_locca_goldens.py):
 * their batches as our trainer takes them.
 */
import { join } from "node:path";
import type { LoccaGraphOptions } from "../../src/train/model.js";
import { TrainSession, type Batch, type StepResult } from "../../src/train/session.js";
import { Checkpoint } from "../../src/weights/checkpoint.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import { goldenDecoderBatch, towersAndDecoder } from "./locca-golden.js";
import { FIXTURES } from "./paths.js";

export const naflexGold = (): SafetensorsFile => SafetensorsFile.open(join(FIXTURES, "goldens", "naflex-train-grads.safetensors"));
export const naflexCheckpoint = (): Checkpoint => new Checkpoint(join(FIXTURES, "models", "naflex-f32"));

/** The golden's 4 images (grids 4×5, 2×8, 5×3, 1×18 padded to 20 rows) and texts. */
export function naflexGoldenBatch(gold: SafetensorsFile): Batch {
  const mask = Int32Array.from(gold.readFloat32("inputs.pixel_attention_mask"));
  const n = 4;
  return {
    pixelValues: gold.readFloat32("inputs.pixel_values"),
    inputIds: BigInt64Array.from(gold.readFloat32("inputs.input_ids"), (v) => BigInt(v)),
    n,
    naflex: { length: mask.length / n, keyMask: mask, spatialShapes: BigInt64Array.from(gold.readFloat32("inputs.spatial_shapes"), (v) => BigInt(v)) },
  };
}

/**
 * The NaFlex + LocCa golden (tools/reference/naflex_locca_goldens.py): the NaFlex batch above
 * with locca_goldens.py's 8 decoder sequences of 12 tokens, and the towers' and decoder's values.
 */
export function naflexLoccaGolden() {
  const gold = SafetensorsFile.open(join(FIXTURES, "goldens", "naflex-locca-grads.safetensors"));
  const ckpt = naflexCheckpoint();
  const batch: Batch = { ...naflexGoldenBatch(naflexGold()), decoder: goldenDecoderBatch(gold) };
  return { gold, ckpt, batch, ...towersAndDecoder(ckpt, "naflex-locca-decoder.safetensors") };
}

/** One training step of the NaFlex + LocCa golden batch (8 sequences of 12, padded to 20 patch rows). */
export async function naflexLoccaStep(g: ReturnType<typeof naflexLoccaGolden>, locca: Partial<LoccaGraphOptions> = {}, batch: Batch = g.batch): Promise<StepResult> {
  const s = await TrainSession.create(g.ckpt.config, {
    batch: 4, patches: batch.naflex!.length, threads: 1, objectives: ["sigmoid", "locca"],
    locca: { sequences: 8, length: 12, ...locca },
  });
  try {
    return await s.step(g.params, batch);
  } finally {
    await s.release();
  }
}
