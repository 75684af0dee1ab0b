/**
 * LocCa inference against the PyTorch reference: the inference decoder (src/models/locca-infer.ts
 * on a WeightLoader) against the training golden's logits (tools/reference/locca_goldens.py), greedy
 * and beam decoding (src/tasks/caption.ts) against tools/reference/locca_decode_goldens.py, and the
 * library / CLI contract of caption and locate on a temp checkpoint (tests/harness/locca-checkpoint.ts).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { FixresVisionTower } from "../src/models/siglip.js";
import { LoccaDecoderModel } from "../src/models/locca-infer.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { loccaCheckpoint } from "./harness/locca-checkpoint.js";
import { FIXTURES } from "./harness/paths.js";

const gold = SafetensorsFile.open(join(FIXTURES, "goldens", "locca-grads.safetensors"));
const N = 4;
const S = 8;
const LG = 12;
const V = 1024;

async function imageTokens(ckpt: Checkpoint): Promise<Float32Array[]> {
  const px = gold.readFloat32("inputs.pixel_values");
  const per = px.length / N;
  const tower = await FixresVisionTower.load(ckpt);
  try {
    const r = await tower.encode(Array.from({ length: N }, (_, i) => px.slice(i * per, (i + 1) * per)));
    return r.map((x) => x.patches);
  } finally {
    await tower.release();
  }
}

describe("LocCa inference decoder", () => {
  const dir = loccaCheckpoint();
  const ckpt = new Checkpoint(dir);
  after(() => ckpt.close());

  for (const fused of [true, false]) {
    it(`logits of the causal rows equal the PyTorch golden (fused ${fused})`, async () => {
      const memory = (await imageTokens(ckpt)).map((patches) => ({ patches }));
      const dec = await LoccaDecoderModel.load(ckpt, { fused, cacheDir: null });
      try {
        const ids = gold.readFloat32("inputs.decoder_input_ids");
        const causal = gold.readFloat32("inputs.decoder_causal");
        const image = gold.readFloat32("inputs.decoder_image");
        const ref = gold.readFloat32("decoder_logits"); // (S, LG, V)
        const rows = [...Array(S).keys()].filter((s) => causal[s] === 1);
        assert.equal(rows.length, 6);
        const out = await dec.logits(
          rows.map((s) => ({ ids: Array.from(ids.subarray(s * LG, (s + 1) * LG)), image: image[s]! })),
          memory,
          rows.map(() => [...Array(LG).keys()]),
        );
        let worst = 0;
        rows.forEach((s, r) => {
          for (let k = 0; k < LG * V; k++) {
            const want = ref[s * LG * V + k]!;
            const err = Math.abs(out[r * LG * V + k]! - want) / Math.max(1, Math.abs(want));
            worst = Math.max(worst, err);
          }
        });
        assert.ok(worst <= 1e-4, `max relative error ${worst}`);
      } finally {
        await dec.release();
      }
    });
  }
});
