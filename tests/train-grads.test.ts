/**
 * Autodiff and the sigmoid loss: per-op finite-difference checks, the whole tiny SigLIP's loss
 * and every parameter gradient against PyTorch autograd (float64 goldens from
 * tools/reference/train_goldens.py), the chunked loss against the full one, and the loss
 * values of training-recipe §8.2.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { backward } from "../src/graph/autodiff.js";
import { Graph } from "../src/graph/graph.js";
import { ort } from "../src/graph/runtime.js";
import { gradCheck, opCases } from "../src/train/gradcheck.js";
import { chunkedSigmoidLoss, l2normalize, sigmoidLoss } from "../src/train/loss.js";
import { Rng } from "../src/train/rng.js";
import { TrainSession, loadParams } from "../src/train/session.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { FIXTURES } from "./harness/paths.js";

describe("autodiff: per-op gradients vs central finite differences", () => {
  for (const c of opCases()) {
    it(`${c.label} (${c.dtype})`, async () => {
      const r = await gradCheck(c.label, c.dtype, c.inputs, c.build);
      assert.ok(r.ok, `max |analytic − FD| = ${r.maxAbs.toExponential(2)} > tol ${r.tol.toExponential(2)} (gradient scale ${r.scale.toExponential(2)})`);
      assert.ok(r.checked > 0);
    });
  }
});

describe("whole model: loss and every parameter gradient vs PyTorch autograd (fixres-f32, n = 4)", () => {
  const gold = SafetensorsFile.open(join(FIXTURES, "goldens", "train-grads.safetensors"));
  const ckpt = new Checkpoint(join(FIXTURES, "models", "fixres-f32"));
  const px = gold.readFloat32("inputs.pixel_values");
  const ids = BigInt64Array.from(gold.readFloat32("inputs.input_ids"), (v) => BigInt(v));
  const refLoss = gold.readFloat32("loss")[0]!;
  const refLogits = gold.readFloat32("logits_per_image");

  for (const variant of ["full loss (autodiff)", "chunked loss, blocks of 3"]) {
    it(variant, async () => {
      const opts = variant.startsWith("full") ? { batch: 4, outputLogits: true } : { batch: 4, lossChunk: 3 };
      const s = await TrainSession.create(ckpt.config, { ...opts, threads: 1 });
      const r = await s.step(loadParams(ckpt.weights, s.params), { pixelValues: px, inputIds: ids, n: 4 });
      await s.release();
      assert.ok(Math.abs(r.loss - refLoss) <= 1e-5 * Math.max(1, Math.abs(refLoss)), `loss ${r.loss} vs torch ${refLoss}`);
      if (r.logits) for (let i = 0; i < 16; i++) assert.ok(Math.abs(r.logits[i]! - refLogits[i]!) <= 1e-4, `logit ${i}`);
      assert.equal(r.grads.size, 88, "every parameter has a gradient");
      for (const [name, g] of r.grads) {
        const ref = gold.readFloat32(`grad.${name}`);
        let maxAbs = 0;
        let scale = 0;
        for (let i = 0; i < ref.length; i++) {
          maxAbs = Math.max(maxAbs, Math.abs(ref[i]! - g[i]!));
          scale = Math.max(scale, Math.abs(ref[i]!));
        }
        // float32 compute vs float64 reference: 1e-5 of the tensor's largest gradient (or absolute below 1).
        assert.ok(maxAbs <= 1e-5 * Math.max(1, scale), `${name}: max-abs ${maxAbs.toExponential(2)} (‖ref‖∞ ${scale.toExponential(2)})`);
      }
    });
  }
});

/** Loss and gradients (w.r.t. raw embeddings, t', b) of the full and the chunked loss on the same inputs. */
async function lossGraphs(n: number, d: number, chunk: number | undefined, zi: Float32Array, zt: Float32Array, t: number, b: number) {
  const g = new Graph("loss");
  const xi = g.input("img", "float32", [n, d]);
  const xt = g.input("txt", "float32", [n, d]);
  const ls = g.input("logit_scale", "float32", [1]);
  const lb = g.input("logit_bias", "float32", [1]);
  const ni = l2normalize(g, xi);
  const nt = l2normalize(g, xt);
  let loss: string;
  let grads: Record<string, string>;
  if (chunk === undefined) {
    loss = sigmoidLoss(g, ni, nt, ls, lb, n).loss;
    grads = backward(g, [{ value: loss }], [xi, xt, ls, lb]);
  } else {
    const c = chunkedSigmoidLoss(g, ni, nt, ls, lb, n, chunk);
    loss = c.loss;
    grads = { ...backward(g, [{ value: ni, grad: c.dZimg }, { value: nt, grad: c.dZtxt }], [xi, xt]), logit_scale: c.dLogitScale, logit_bias: c.dLogitBias };
  }
  const outs = { loss, ...Object.fromEntries(Object.entries(grads).map(([k, v]) => [`d_${k}`, v])) };
  for (const [k, v] of Object.entries(outs)) {
    g.node("Identity", [v], { outputs: [k] });
    g.output(k, "float32", k === "loss" ? [] : k.startsWith("d_logit") ? [1] : [n, d]);
  }
  const s = await ort.InferenceSession.create(g.toModelBytes());
  const r = await s.run({
    img: new ort.Tensor("float32", zi, [n, d]), txt: new ort.Tensor("float32", zt, [n, d]),
    logit_scale: new ort.Tensor("float32", Float32Array.of(t), [1]), logit_bias: new ort.Tensor("float32", Float32Array.of(b), [1]),
  });
  await s.release();
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.data as Float32Array]));
}

describe("sigmoid loss", () => {
  it("chunked equals full: loss and gradients (n = 12, blocks of 4 and of 5, incl. an uneven last block)", async () => {
    const rng = new Rng(5);
    const n = 12;
    const d = 7;
    const zi = Float32Array.from({ length: n * d }, () => rng.normal());
    const zt = Float32Array.from({ length: n * d }, () => rng.normal());
    // a few matching pairs so that positives matter
    for (let i = 0; i < d * 4; i++) zt[i] = zi[i]! + 0.1 * zt[i]!;
    const full = await lossGraphs(n, d, undefined, zi, zt, Math.log(10), -3);
    for (const chunk of [4, 5]) {
      const ch = await lossGraphs(n, d, chunk, zi, zt, Math.log(10), -3);
      assert.ok(Math.abs(full["loss"]![0]! - ch["loss"]![0]!) <= 1e-6 * Math.abs(full["loss"]![0]!), `loss ${full["loss"]![0]} vs ${ch["loss"]![0]}`);
      for (const k of ["d_img", "d_txt", "d_logit_scale", "d_logit_bias"]) {
        const a = full[k]!;
        const b = ch[k]!;
        let m = 0;
        let sc = 0;
        for (let i = 0; i < a.length; i++) {
          m = Math.max(m, Math.abs(a[i]! - b[i]!));
          sc = Math.max(sc, Math.abs(a[i]!));
        }
        assert.ok(m <= 1e-6 * Math.max(1, sc), `chunk ${chunk} ${k}: max-abs ${m.toExponential(2)}`);
      }
    }
  });

  it("recipe §8.2 cases: A, B, C, orthogonal init, and ∂L/∂b, ∂L/∂t' of case A", async () => {
    const eye2 = Float32Array.of(1, 0, 0, 1);
    const A = await lossGraphs(2, 2, undefined, eye2, eye2, Math.log(10), -10);
    assert.ok(Math.abs(A["loss"]![0]! - 0.6931925794591621) < 1e-6);
    assert.ok(Math.abs(A["d_logit_bias"]![0]! - -0.49995460213129755) < 1e-6);
    assert.ok(Math.abs(A["d_logit_scale"]![0]! - -5.0) < 1e-5);
    const B = await lossGraphs(2, 2, undefined, Float32Array.of(1, 0, 1, 0), eye2, Math.log(10), -10);
    assert.ok(Math.abs(B["loss"]![0]! - 5.693192579459162) < 1e-5);
    const ones = new Float32Array(4 * 3).fill(1);
    const C = await lossGraphs(4, 3, undefined, ones, ones, Math.log(10), -10);
    assert.ok(Math.abs(C["loss"]![0]! - 2.772588722239783) < 1e-5);
    // orthogonal: image i = e_i, text i = e_{i+8} → cos = 0 everywhere
    const n = 8;
    const zi = new Float32Array(n * 16);
    const zt = new Float32Array(n * 16);
    for (let i = 0; i < n; i++) {
      zi[i * 16 + i] = 1;
      zt[i * 16 + 8 + i] = 1;
    }
    const O = await lossGraphs(n, 16, 3, zi, zt, Math.log(10), -10);
    assert.ok(Math.abs(O["loss"]![0]! - 10.000363191193737) < 1e-4);
  });

  it("stays finite for extreme logits (t = e^10)", async () => {
    const rng = new Rng(9);
    const z = Float32Array.from({ length: 4 * 5 }, () => rng.normal());
    const r = await lossGraphs(4, 5, undefined, z, z.map((v) => -v), 10, 0);
    for (const v of Object.values(r)) for (const x of v) assert.ok(Number.isFinite(x));
  });
});
