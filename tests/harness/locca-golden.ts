/**
 * The LocCa golden (tools/reference/locca_goldens.py, PyTorch float64 autograd) as our
 * training session sees it: the tiny fixres-f32 towers, the decoder weights, and the batch
 * (4 images, 8 decoder sequences of 12 tokens). Shared by tests/locca.test.ts and
 * tools/gradcheck-table.ts.
 */
import { join } from "node:path";
import { paramSpecs, type LoccaGraphOptions } from "../../src/train/model.js";
import { TrainSession, loadParams, type Batch, type DecoderBatch, type Params, type StepResult } from "../../src/train/session.js";
import { Checkpoint } from "../../src/weights/checkpoint.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import { FIXTURES } from "./paths.js";

export const GOLD_IMAGES = 4;
export const GOLD_SEQUENCES = 8;
export const GOLD_LENGTH = 12;

const big = (a: Float32Array): BigInt64Array => BigInt64Array.from(a, (v) => BigInt(v));

/** A LocCa golden's decoder sequences (`inputs.decoder_*`, the names of locca_goldens.py). */
export function goldenDecoderBatch(gold: SafetensorsFile): DecoderBatch {
  return {
    inputIds: big(gold.readFloat32("inputs.decoder_input_ids")),
    targets: big(gold.readFloat32("inputs.decoder_targets")),
    weights: gold.readFloat32("inputs.decoder_weights"),
    causal: big(gold.readFloat32("inputs.decoder_causal")),
    image: big(gold.readFloat32("inputs.decoder_image")),
  };
}

/** Parameters of towers + decoder: the towers from `ckpt`, the decoder from the golden's decoder file. */
export function towersAndDecoder(ckpt: Checkpoint, decoderFile: string): { specs: ReturnType<typeof paramSpecs>; params: Params } {
  const dec = SafetensorsFile.open(join(FIXTURES, "goldens", decoderFile));
  const specs = paramSpecs(ckpt.config, { objectives: ["sigmoid", "locca"] });
  const params: Params = loadParams(ckpt.weights, specs.filter((s) => !s.name.startsWith("decoder.")));
  for (const s of specs) if (s.name.startsWith("decoder.")) params.set(s.name, dec.readFloat32(s.name).slice());
  return { specs, params };
}

/** The golden file, the checkpoint, the batch and the parameter values (towers + decoder). */
export function loccaGolden() {
  const gold = SafetensorsFile.open(join(FIXTURES, "goldens", "locca-grads.safetensors"));
  const ckpt = new Checkpoint(join(FIXTURES, "models", "fixres-f32"));
  const batch: Batch = {
    pixelValues: gold.readFloat32("inputs.pixel_values"),
    inputIds: big(gold.readFloat32("inputs.input_ids")),
    n: GOLD_IMAGES,
    decoder: goldenDecoderBatch(gold),
  };
  return { gold, ckpt, batch, ...towersAndDecoder(ckpt, "locca-decoder.safetensors") };
}

/** One training step of the golden batch with both objectives. */
export async function loccaStep(
  g: ReturnType<typeof loccaGolden>, locca: Partial<LoccaGraphOptions> = {}, batch: Batch = g.batch,
): Promise<StepResult> {
  const s = await TrainSession.create(g.ckpt.config, {
    batch: GOLD_IMAGES, threads: 1, objectives: ["sigmoid", "locca"],
    locca: { sequences: GOLD_SEQUENCES, length: GOLD_LENGTH, ...locca },
  });
  try {
    return await s.step(g.params, batch);
  } finally {
    await s.release();
  }
}

/** max |a − ref| and ‖ref‖∞ of one tensor. */
export function maxErr(a: ArrayLike<number>, ref: ArrayLike<number>): { abs: number; scale: number } {
  let abs = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    abs = Math.max(abs, Math.abs(ref[i]! - a[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  return { abs, scale };
}
