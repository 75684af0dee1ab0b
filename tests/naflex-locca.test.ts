/**
 * LocCa on a NaFlex tower (model_type "siglip2"): the decoder's cross-attention sees only each
 * image's real patches (the tower's key mask), and with memory_position "sincos2d" each image's
 * tokens get the code of its own grid. Against PyTorch float64 autograd
 * (tools/reference/naflex_locca_goldens.py: transformers' Siglip2Model + locca_goldens.py's decoder):
 * the losses, the decoder logits and every gradient of both towers and the decoder, with the full and
 * the vocabulary-chunked LocCa loss; padding further with other contents changes nothing. Then
 * `siglip2 train --objectives sigmoid,locca` on a NaFlex checkpoint with the language mix: exact
 * resume, and `locate` / `caption` on the trained checkpoint.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SigLIP2 } from "../src/api.js";
import type { Batch } from "../src/train/session.js";
import { decoderFileMetadata } from "../src/models/locca-infer.js";
import { tempDir } from "./harness/files.js";
import { maxErr } from "./harness/locca-golden.js";
import { writeNaflexPairs } from "./harness/naflex-data.js";
import { naflexLoccaGolden, naflexLoccaStep } from "./harness/naflex-golden.js";
import { FIXTURES, REPO } from "./harness/paths.js";

const g = naflexLoccaGolden();

/** The golden batch padded to `length` rows, the new rows filled with `fill`. */
function padFurther(b: Batch, length: number, fill: number): Batch {
  const nf = b.naflex!;
  const F = b.pixelValues.length / (b.n * nf.length);
  const px = new Float32Array(b.n * length * F).fill(fill);
  const mask = new Int32Array(b.n * length);
  for (let i = 0; i < b.n; i++) {
    px.set(b.pixelValues.subarray(i * nf.length * F, (i + 1) * nf.length * F), i * length * F);
    mask.set(nf.keyMask.subarray(i * nf.length, (i + 1) * nf.length), i * length);
  }
  return { ...b, pixelValues: px, naflex: { ...nf, length, keyMask: mask } };
}

describe("LocCa on a NaFlex tower vs PyTorch autograd (naflex-f32, 4 grids padded to 20, 8 decoder rows)", () => {
  for (const [label, prefix, memoryPosition] of [["no position code", "", "none"], ["memory position sincos2d (each image's own grid)", "pos.", "sincos2d"]] as const) {
    for (const vocabChunk of [undefined, 128]) {
      it(`${label}, ${vocabChunk === undefined ? "full LocCa loss" : "vocabulary chunks of 128"}: losses, logits and all 120 gradients`, async () => {
        const r = await naflexLoccaStep(g, { memoryPosition, ...(vocabChunk === undefined ? { outputLogits: true } : { vocabChunk }) });
        for (const [k, got] of [["loss", r.loss], ["sigmoid_loss", r.sigmoidLoss!], ["locca_loss", r.loccaLoss!]] as const) {
          const ref = g.gold.readFloat32(`${prefix}${k}`)[0]!;
          assert.ok(Math.abs(got - ref) <= 1e-5 * Math.max(1, Math.abs(ref)), `${k}: ${got} vs torch ${ref}`);
        }
        const per = maxErr(r.loccaPerSequence!, g.gold.readFloat32(`${prefix}locca_per_sequence`));
        assert.ok(per.abs <= 1e-5 * Math.max(1, per.scale), `per-sequence loss ${per.abs}`);
        if (r.decoderLogits) {
          const d = maxErr(r.decoderLogits, g.gold.readFloat32(`${prefix}decoder_logits`));
          assert.ok(d.abs <= 1e-5 * Math.max(1, d.scale), `decoder logits max-abs ${d.abs}`);
        }
        assert.equal(r.grads.size, 120, "every tower and decoder parameter has a gradient");
        for (const [name, grad] of r.grads) {
          const d = maxErr(grad, g.gold.readFloat32(`${prefix}grad.${name}`));
          // the position table's gradient is small (‖ref‖∞ ≈ 1e-2): hold it to its own scale
          const tol = name === "vision_model.embeddings.position_embedding.weight" ? 1e-5 * d.scale : 1e-5 * Math.max(1, d.scale);
          assert.ok(d.abs <= tol, `${name}: max-abs ${d.abs.toExponential(2)} (‖ref‖∞ ${d.scale.toExponential(2)})`);
        }
      });
    }
  }

  it("the code and the mask matter: without the key mask in the cross-attention, or with one code for every grid, the LocCa loss moves", async () => {
    const ref = g.gold.readFloat32("pos.locca_loss")[0]!;
    // the plain golden differs from the coded one: the per-image code is not a no-op
    assert.ok(Math.abs(g.gold.readFloat32("locca_loss")[0]! - ref) > 1e-3);
    // an all-ones key mask lets the decoder see the padding rows (the tower sees them too: its loss moves as well)
    const b = g.batch;
    const open = { ...b, naflex: { ...b.naflex!, keyMask: new Int32Array(b.naflex!.keyMask.length).fill(1) } };
    const r = await naflexLoccaStep(g, { memoryPosition: "sincos2d" }, open);
    assert.ok(Math.abs(r.loccaLoss! - ref) > 1e-3, `${r.loccaLoss} vs ${ref}`);
  });

  it("padding further, with other contents, gives the same losses and gradients (the masks make padding exact)", async () => {
    const a = await naflexLoccaStep(g, { memoryPosition: "sincos2d" });
    const b = await naflexLoccaStep(g, { memoryPosition: "sincos2d" }, padFurther(g.batch, 32, 0.7));
    assert.ok(Math.abs(a.loss - b.loss) <= 1e-5, `${a.loss} vs ${b.loss}`);
    assert.ok(Math.abs(a.loccaLoss! - b.loccaLoss!) <= 1e-5);
    for (const [name, grad] of a.grads) {
      const d = maxErr(b.grads.get(name)!, grad);
      assert.ok(d.abs <= 1e-5 * Math.max(1, d.scale), `${name}: ${d.abs}`);
    }
  });
});

describe("siglip2 train --objectives sigmoid,locca on a NaFlex checkpoint (CLI)", async () => {
  const BIN = join(REPO, "dist", "cli", "main.js");
  // mixed grids (16×24, 24×16, 20×20 px in 4-px patches), one region per image, two languages
  const data = await writeNaflexPairs(12, 5, {
    regions: (_i, w, h, caption) => [{ box: [1, 2, Math.round(w / 2), Math.round(h / 2)], text: caption }],
    lang: (i) => (i % 3 === 0 ? "de" : "en"),
  });
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, "train", "--model", join(FIXTURES, "models", "naflex-f32"), "--data", data, "--threads", "1", ...args], { encoding: "utf8" });
  const common = ["--steps", "4", "--batch-size", "4", "--lr", "1e-3", "--seed", "3", "--max-patches", "8-30", "--objectives", "sigmoid,locca", "--lang-mix", "en=0.5,other=0.5"];

  it("trains the decoder on mixed grids (sincos2d code), --stop-at + --resume is byte-exact, the mix is reported, locate and caption run on the result", async () => {
    const full = tempDir();
    const a = run("--out", full, ...common);
    assert.equal(a.status, 0, a.stderr);
    const lines = a.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const steps = lines.filter((l) => typeof l["locca_loss"] === "number");
    assert.equal(steps.length, 4);
    for (const l of steps) assert.ok(Number.isFinite(l["locca_loss"]) && (l["locca_loss"] as number) > 0 && Number.isFinite(l["sigmoid_loss"]));
    const last = lines[lines.length - 1]! as { lang_mix?: { requested: Record<string, number>; realised: Record<string, number>; counts: Record<string, number> } };
    assert.ok(last.lang_mix, a.stdout);
    assert.equal(Object.values(last.lang_mix.counts).reduce((x, y) => x + y, 0), 16, "4 steps × 4 examples");
    assert.deepEqual(decoderFileMetadata(full), { boxFormat: "canonical", memoryPosition: "sincos2d" });
    const split = tempDir();
    assert.equal(run("--out", split, ...common, "--stop-at", "2").status, 0);
    const b = run("--out", split, ...common, "--resume");
    assert.equal(b.status, 0, b.stderr);
    for (const f of ["model.safetensors", "decoder.safetensors", "optimizer.safetensors"]) {
      assert.deepEqual(readFileSync(join(split, f)), readFileSync(join(full, f)), f);
    }
    // the trained NaFlex checkpoint locates and captions through the public API
    const m = await SigLIP2.load(full);
    try {
      assert.ok(m.isNaflex);
      const img = join(data, "img1.png"); // 24×16
      const [r] = await m.locate("the shape", [img]);
      const [x0, y0, x1, y1] = r!.box;
      assert.ok(0 <= x0 && x0 <= x1 && x1 <= 24 && 0 <= y0 && y0 <= y1 && y1 <= 16, `box ${r!.box}`);
      assert.ok(r!.score > 0 && r!.score <= 1);
      const [c] = await m.caption([img], { maxTokens: 4 });
      assert.equal(typeof c!.caption, "string");
      assert.ok(c!.score > 0 && c!.score <= 1);
    } finally {
      await m.close();
    }
  });
});
