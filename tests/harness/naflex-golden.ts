/** The NaFlex training golden (tools/reference/naflex_train_goldens.py): its batch as our trainer takes it. */
import { join } from "node:path";
import type { Batch } from "../../src/train/session.js";
import { Checkpoint } from "../../src/weights/checkpoint.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
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
