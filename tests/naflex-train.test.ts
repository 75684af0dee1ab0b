/**
 * NaFlex training (model_type "siglip2"): the training graph — the same NaFlex tower as
 * inference (src/models/siglip2.ts `naflexVision`), with the position grid resized in the graph
 * and the key mask in every layer and the MAP head — against PyTorch autograd in float64
 * (tools/reference/naflex_train_goldens.py): the loss, the logits and all 88 parameter gradients,
 * for 4 images of different grids padded to one length, with random values in the padding rows;
 * padding further changes nothing; and `siglip2 train` on a NaFlex checkpoint with per-example
 * budgets (exact resume, the position table trains, our engine loads the result).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { TrainSession, loadParams, type Batch } from "../src/train/session.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { SigLIP2 } from "../src/api.js";
import { parseNaflexProcessorConfig } from "../src/preprocess/naflex.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import type { PairDataset } from "../src/train/data.js";
import { paramSpecs } from "../src/train/model.js";
import { NaflexPairs } from "../src/train/naflex-data.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { synthesizeMixed, toRgb8 } from "../src/train/synthetic.js";
import { Trainer } from "../src/train/trainer.js";
import { tempDir } from "./harness/files.js";
import { writeNaflexPairs } from "./harness/naflex-data.js";
import { maxErr } from "./harness/locca-golden.js";
import { naflexCheckpoint, naflexGold, naflexGoldenBatch } from "./harness/naflex-golden.js";
import { FIXTURES, REPO } from "./harness/paths.js";

const gold = naflexGold();
const ckpt = naflexCheckpoint();
const goldenBatch = (): Batch => naflexGoldenBatch(gold);

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
        const d = maxErr(r.logits, gold.readFloat32("logits_per_image"));
        assert.ok(d.abs <= 1e-4, `logits max-abs ${d.abs}`);
      }
      assert.equal(r.grads.size, 88, "every parameter has a gradient");
      const pos = r.grads.get("vision_model.embeddings.position_embedding.weight")!;
      assert.ok(pos.some((v) => v !== 0), "the position table gets a gradient");
      // its gradient is small (‖ref‖∞ ≈ 1e-2): hold it to 1e-5 of its own scale, not of max(1, ·)
      const dp = maxErr(pos, gold.readFloat32("grad.vision_model.embeddings.position_embedding.weight"));
      assert.ok(dp.abs <= 1e-5 * dp.scale, `position table: max-abs ${dp.abs.toExponential(2)} (‖ref‖∞ ${dp.scale.toExponential(2)})`);
      for (const [name, g] of r.grads) {
        const d = maxErr(g, gold.readFloat32(`grad.${name}`));
        assert.ok(d.abs <= 1e-5 * Math.max(1, d.scale), `${name}: max-abs ${d.abs.toExponential(2)} (‖ref‖∞ ${d.scale.toExponential(2)})`);
      }
    });
  }
});

describe("siglip2 train on a NaFlex checkpoint (CLI)", async () => {
  const BIN = join(REPO, "dist", "cli", "main.js");
  const data = await writeNaflexPairs();
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, "train", "--model", join(FIXTURES, "models", "naflex-f32"), "--data", data, "--threads", "1", ...args], { encoding: "utf8" });
  const common = ["--steps", "4", "--batch-size", "8", "--accum-steps", "2", "--lr", "1e-3", "--seed", "1", "--max-patches", "8-30"];

  it("per-example budgets: trains the position table, --stop-at + --resume equals an uninterrupted run, the checkpoint loads", async () => {
    const full = tempDir();
    const a = run("--out", full, ...common);
    assert.equal(a.status, 0, a.stderr);
    const out = a.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(out.map((o) => o.step), [1, 2, 3, 4, 4]);
    for (const o of out.slice(0, 4)) assert.ok(Number.isFinite(o.loss) && Number.isFinite(o.grad_norm));
    const split = tempDir();
    assert.equal(run("--out", split, ...common, "--stop-at", "2").status, 0);
    const b = run("--out", split, ...common, "--resume");
    assert.equal(b.status, 0, b.stderr);
    assert.deepEqual(readFileSync(join(split, "model.safetensors")), readFileSync(join(full, "model.safetensors")));
    assert.deepEqual(readFileSync(join(split, "optimizer.safetensors")), readFileSync(join(full, "optimizer.safetensors")));
    // the position table moved (its gradient reaches it through the in-graph resize)
    const key = "vision_model.embeddings.position_embedding.weight";
    const before = ckpt.weights.float32(key, [256, 32]);
    const trained = SafetensorsFile.open(join(full, "model.safetensors"));
    const after = trained.readFloat32(key);
    trained.close();
    assert.ok(after.some((v, i) => v !== before[i]), "position table unchanged");
    // a resumed run under other budgets is refused
    const c = run("--out", split, ...common.slice(0, -1), "16,32", "--resume");
    assert.equal(c.status, 2);
    assert.match(c.stderr, /maxPatches/);
    // our engine embeds with the trained NaFlex checkpoint
    const m = await SigLIP2.load(full);
    const [e] = await m.embedImages([join(data, "img0.png")]);
    assert.ok(e!.length === 32 && e!.every(Number.isFinite));
    await m.close();
  });

  it("a padded batch gives the same loss and gradients as the same images padded further (masks make padding exact)", async () => {
    const b = goldenBatch();
    const F = b.pixelValues.length / (4 * 20);
    const L = 32;
    const px = new Float32Array(4 * L * F);
    const mask = new Int32Array(4 * L);
    for (let j = 0; j < 4; j++) {
      px.set(b.pixelValues.subarray(j * 20 * F, (j + 1) * 20 * F), j * L * F);
      for (let r = 20 * F; r < L * F; r++) px[j * L * F + r] = Math.sin(r); // different padding contents
      mask.set(b.naflex!.keyMask.subarray(j * 20, (j + 1) * 20), j * L);
    }
    const longer: Batch = { ...b, pixelValues: px, naflex: { ...b.naflex!, length: L, keyMask: mask } };
    const s20 = await TrainSession.create(ckpt.config, { batch: 4, patches: 20, threads: 1 });
    const s32 = await TrainSession.create(ckpt.config, { batch: 4, patches: L, threads: 1 });
    const params = loadParams(ckpt.weights, s20.params);
    const r20 = await s20.step(params, b);
    const r32 = await s32.step(params, longer);
    await s20.release();
    await s32.release();
    assert.ok(Math.abs(r20.loss - r32.loss) <= 1e-5, `${r20.loss} vs ${r32.loss}`);
    for (const [name, g] of r20.grads) {
      const d = maxErr(r32.grads.get(name)!, g);
      assert.ok(d.abs <= 1e-5 * Math.max(1, d.scale), `${name}: ${d.abs}`);
    }
  });
});

describe("NaFlex trainer: patch-budget draws", () => {
  /** The budgets and padded lengths of every micro-batch of a 3-step run (accum 2). */
  async function draws(budgetDraw: "example" | "batch"): Promise<Array<{ budgets: number[]; length: number }>> {
    const config = ckpt.config;
    const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
    const processor = parseNaflexProcessorConfig(ckpt.preprocessorConfig, config.vision_config.patch_size);
    const pairs = synthesizeMixed(16, [[16, 24], [24, 16], [20, 20]], 3);
    const data = new NaflexPairs(async (i) => toRgb8(pairs[i]!.pixels, pairs[i]!.width, pairs[i]!.height), pairs.map((p) => p.caption), processor, tok, config.text_config.max_position_embeddings);
    const seen: Array<{ budgets: number[]; length: number }> = [];
    const spy: PairDataset = {
      size: data.size, caption: (i) => data.caption(i),
      batch: async (idx, o) => {
        const b = await data.batch(idx, o);
        seen.push({ budgets: [...o!.budgets], length: b.naflex!.length });
        return b;
      },
    };
    const trainer = await Trainer.create(config, loadParams(ckpt.weights, paramSpecs(config)), {
      batchSize: 8, accumSteps: 2, steps: 3, seed: 4, freeze: "none", maxPatches: { list: [6, 12, 40] }, budgetDraw, threads: 1,
      optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-4, totalSteps: 3, warmupSteps: 0 },
    });
    for (let s = 0; s < 3; s++) assert.ok(Number.isFinite((await trainer.trainStep(spy)).loss));
    await trainer.release();
    return seen;
  }

  it("per example: budgets vary within a micro-batch; per batch: one budget per micro-batch and a padded length to match", async () => {
    const ex = await draws("example");
    assert.equal(ex.length, 6);
    assert.ok(ex.some((d) => new Set(d.budgets).size > 1), "per-example budgets never differ within a micro-batch");
    for (const d of ex) assert.ok(d.budgets.every((b) => [6, 12, 40].includes(b)));
    const pb = await draws("batch");
    for (const d of pb) {
      assert.equal(new Set(d.budgets).size, 1, `one budget per micro-batch: ${d.budgets}`);
      assert.ok(d.length <= Math.min(40, Math.ceil(d.budgets[0]! / 16) * 16), `padded to ${d.length} for budget ${d.budgets[0]}`);
    }
    assert.ok(new Set(pb.map((d) => d.budgets[0])).size > 1, "the per-batch budget never changes");
  });
});
