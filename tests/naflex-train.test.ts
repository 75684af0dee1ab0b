/**
 * NaFlex training (model_type "siglip2"): the training graph — the same NaFlex tower as
 * inference (src/models/siglip2.ts `naflexVision`), with the position grid resized in the graph
 * and the key mask in every layer and the MAP head — against PyTorch autograd in float64
 * (tools/reference/naflex_train_goldens.py): the loss, the logits and all 88 parameter gradients,
 * for 4 images of different grids padded to one length, with random values in the padding rows.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { TrainSession, loadParams, type Batch } from "../src/train/session.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { FIXTURES } from "./harness/paths.js";

const gold = SafetensorsFile.open(join(FIXTURES, "goldens", "naflex-train-grads.safetensors"));
const ckpt = new Checkpoint(join(FIXTURES, "models", "naflex-f32"));

function goldenBatch(): Batch {
  const mask = Int32Array.from(gold.readFloat32("inputs.pixel_attention_mask"));
  const n = 4;
  return {
    pixelValues: gold.readFloat32("inputs.pixel_values"),
    inputIds: BigInt64Array.from(gold.readFloat32("inputs.input_ids"), (v) => BigInt(v)),
    n,
    naflex: { length: mask.length / n, keyMask: mask, spatialShapes: BigInt64Array.from(gold.readFloat32("inputs.spatial_shapes"), (v) => BigInt(v)) },
  };
}

/** Max-abs difference and the reference's largest magnitude. */
function diff(a: Float32Array, ref: Float32Array): { maxAbs: number; scale: number } {
  let maxAbs = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(ref[i]! - a[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  return { maxAbs, scale };
}

describe("NaFlex training graph vs PyTorch autograd (naflex-f32, 4 grids padded to 20)", () => {
  for (const variant of ["full loss (autodiff)", "chunked loss, blocks of 3"]) {
    it(`${variant}: loss, logits and every parameter gradient, incl. the position table through the resize`, async () => {
      const b = goldenBatch();
      const opts = variant.startsWith("full") ? { batch: 4, outputLogits: true } : { batch: 4, lossChunk: 3 };
      const s = await TrainSession.create(ckpt.config, { ...opts, patches: b.naflex!.length, threads: 1 });
      const r = await s.step(loadParams(ckpt.weights, s.params), b);
      await s.release();
      const refLoss = gold.readFloat32("loss")[0]!;
      assert.ok(Math.abs(r.loss - refLoss) <= 1e-5 * Math.max(1, Math.abs(refLoss)), `loss ${r.loss} vs torch ${refLoss}`);
      if (r.logits) {
        const d = diff(r.logits, gold.readFloat32("logits_per_image"));
        assert.ok(d.maxAbs <= 1e-4, `logits max-abs ${d.maxAbs}`);
      }
      assert.equal(r.grads.size, 88, "every parameter has a gradient");
      const pos = r.grads.get("vision_model.embeddings.position_embedding.weight")!;
      assert.ok(pos.some((v) => v !== 0), "the position table gets a gradient");
      for (const [name, g] of r.grads) {
        const d = diff(g, gold.readFloat32(`grad.${name}`));
        assert.ok(d.maxAbs <= 1e-5 * Math.max(1, d.scale), `${name}: max-abs ${d.maxAbs.toExponential(2)} (‖ref‖∞ ${d.scale.toExponential(2)})`);
      }
    });
  }
});
