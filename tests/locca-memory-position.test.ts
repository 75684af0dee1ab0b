/**
 * The LocCa decoder's memory position code (src/models/locca.ts `memoryPosition` "sincos2d": a
 * fixed 2-D sine–cosine code of each image token's place added to the image tokens the decoder
 * cross-attends to) against the PyTorch reference (tools/reference/locca_goldens.py, keys
 * "pos.*"): the code tables, the training step's losses, logits and all 120 gradients, the
 * inference decoder's logits from a decoder file that records it, and the file contract
 * (recorded by save, read by load, an unknown value refused in one line).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { memoryGrid, memoryPositionCode } from "../src/models/locca.js";
import { decoderFileMetadata, LoccaDecoderModel } from "../src/models/locca-infer.js";
import { FixresVisionTower } from "../src/models/siglip.js";
import { SiglipError } from "../src/errors.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { loccaCheckpoint } from "./harness/locca-checkpoint.js";
import { loccaGolden, loccaStep, maxErr } from "./harness/locca-golden.js";
import { FIXTURES } from "./harness/paths.js";
import { tinyConfigJson } from "../src/train/experiment.js";
import { parseConfig } from "../src/weights/config.js";
import { paramSpecs } from "../src/train/model.js";
import { initParams } from "../src/train/init.js";
import { Trainer } from "../src/train/trainer.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";

const manifest = JSON.parse(readFileSync(join(FIXTURES, "goldens", "locca-grads.json"), "utf8")) as { pos_loss: number; pos_locca_loss: number; locca_loss: number };
const e = (x: number): string => x.toExponential(1);

describe("LocCa memory position code (sincos2d) vs PyTorch", () => {
  const g = loccaGolden();
  const ref = (k: string): Float32Array => g.gold.readFloat32(k);

  it("code tables: the fixed 4×4 grid (integer cells) and a 3×5 grid stretched onto the 4×4 reference grid, to 1e-6", () => {
    assert.equal(memoryGrid(g.ckpt.config), 4);
    for (const [h, w] of [[4, 4], [3, 5]] as const) {
      const ours = memoryPositionCode(32, h, w, 4);
      const m = maxErr(ours, ref(`pos.code.${h}x${w}.grid4`));
      assert.equal(ours.length, h * w * 32);
      assert.ok(m.abs <= 1e-6, `${h}×${w}: max-abs ${e(m.abs)}`);
    }
    // padding rows are zero, the real rows come first
    const padded = memoryPositionCode(32, 3, 5, 4, 20);
    assert.deepEqual([...padded.subarray(0, 15 * 32)], [...memoryPositionCode(32, 3, 5, 4)]);
    assert.ok(padded.subarray(15 * 32).every((v) => v === 0));
  });

  it("training step: losses, decoder logits and all 120 gradients equal the reference with the code (and differ from the run without it)", async (t) => {
    const r = await loccaStep(g, { outputLogits: true, memoryPosition: "sincos2d" });
    assert.ok(Math.abs(r.loss - manifest.pos_loss) <= 1e-5 * Math.abs(manifest.pos_loss), `loss ${r.loss} vs ${manifest.pos_loss}`);
    assert.ok(Math.abs(r.loccaLoss! - manifest.pos_locca_loss) <= 1e-5 * manifest.pos_locca_loss, `LocCa loss ${r.loccaLoss} vs ${manifest.pos_locca_loss}`);
    assert.ok(Math.abs(manifest.pos_locca_loss - manifest.locca_loss) > 1e-2, "the code changes the loss (the golden tests something)");
    const lg = maxErr(r.decoderLogits!, ref("pos.decoder_logits"));
    assert.ok(lg.abs <= 1e-4 * Math.max(1, lg.scale), `logits max-abs ${e(lg.abs)}`);
    assert.equal(r.grads.size, 120);
    let worst = 0;
    for (const [name, v] of r.grads) {
      const m = maxErr(v, ref(`pos.grad.${name}`));
      assert.ok(m.abs <= 1e-5 * Math.max(1, m.scale), `${name}: max-abs ${e(m.abs)} (‖ref‖∞ ${e(m.scale)})`);
      worst = Math.max(worst, m.abs / Math.max(1, m.scale));
    }
    const kv = maxErr(r.grads.get("decoder.layers.0.cross_attn.k_proj.weight")!, ref("grad.decoder.layers.0.cross_attn.k_proj.weight"));
    assert.ok(kv.abs > 1e-3, "the key projection's gradient moves with the code");
    t.diagnostic(`|Δloss| ${e(Math.abs(r.loss - manifest.pos_loss))}; worst gradient max-abs/max(1,‖ref‖∞) ${e(worst)}`);
  });
});

describe("LocCa memory position code at inference (decoder.safetensors memory_position)", () => {
  const dir = loccaCheckpoint({ edit: (_t, m) => { m["memory_position"] = "sincos2d"; } });
  const ckpt = new Checkpoint(dir);
  after(() => ckpt.close());

  it("the file's memory_position is read, and the causal rows' logits equal the reference's", async () => {
    assert.deepEqual(decoderFileMetadata(dir), { boxFormat: "canonical", memoryPosition: "sincos2d" });
    const g = loccaGolden();
    const px = g.gold.readFloat32("inputs.pixel_values");
    const per = px.length / 4;
    const tower = await FixresVisionTower.load(ckpt);
    const feats = await tower.encode(Array.from({ length: 4 }, (_, i) => px.slice(i * per, (i + 1) * per)));
    await tower.release();
    const memory = feats.map((f) => ({ patches: f.patches, gridH: f.gridH, gridW: f.gridW }));
    const dec = await LoccaDecoderModel.load(ckpt, { cacheDir: null });
    assert.equal(dec.config.memoryPosition, "sincos2d");
    try {
      const ids = g.gold.readFloat32("inputs.decoder_input_ids");
      const causal = g.gold.readFloat32("inputs.decoder_causal");
      const image = g.gold.readFloat32("inputs.decoder_image");
      const want = g.gold.readFloat32("pos.decoder_logits");
      const L = 12, V = 1024;
      const rows = [...Array(8).keys()].filter((s) => causal[s] === 1);
      const out = await dec.logits(rows.map((s) => ({ ids: Array.from(ids.subarray(s * L, (s + 1) * L)), image: image[s]! })), memory, rows.map(() => [...Array(L).keys()]));
      let worst = 0;
      rows.forEach((s, r) => {
        for (let k = 0; k < L * V; k++) worst = Math.max(worst, Math.abs(out[r * L * V + k]! - want[s * L * V + k]!) / Math.max(1, Math.abs(want[s * L * V + k]!)));
      });
      assert.ok(worst <= 1e-4, `max relative error ${worst}`);
    } finally {
      await dec.release();
    }
  });

  it("an unknown memory_position is one checkpoint error naming the file and the value", async () => {
    const bad = new Checkpoint(loccaCheckpoint({ edit: (_t, m) => { m["memory_position"] = "rope"; } }));
    try {
      await assert.rejects(LoccaDecoderModel.load(bad, { cacheDir: null }), (err: unknown) =>
        err instanceof SiglipError && err.code === "checkpoint" && /decoder\.safetensors: unknown memory_position "rope" \(this build reads none or sincos2d\)$/.test(err.message) && !err.message.includes("\n"));
    } finally {
      bad.close();
    }
  });
});

describe("LocCa memory position code: a width it cannot code", () => {
  it("sincos2d on an image width that is not a multiple of 4 is one usage line, before any graph is built", async () => {
    const config = parseConfig(tinyConfigJson({ width: 42, layers: 2, heads: 6, mlp: 84, vocab: 1024, seqLen: 16, image: 32, patch: 8 }));
    const params = initParams(paramSpecs(config, { objectives: ["sigmoid", "locca"] }), 1);
    await assert.rejects(
      Trainer.create(config, params, { batchSize: 2, accumSteps: 1, steps: 1, seed: 1, freeze: [], objectives: ["sigmoid", "locca"], memoryPosition: "sincos2d", optimizer: { ...DEFAULT_OPTIMIZER, warmupSteps: 0, totalSteps: 1 } }),
      (err: unknown) => err instanceof SiglipError && err.code === "usage" && err.message === "--memory-position sincos2d needs an image width that is a multiple of 4 (at least 8); this model's is 42: use --memory-position none",
    );
  });
});
