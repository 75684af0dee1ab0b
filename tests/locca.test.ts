/**
 * The LocCa decoder and loss on our engine against the PyTorch reference
 * (tools/reference/locca_goldens.py: float64 autograd on the tiny fixres-f32 towers), the
 * vocabulary-chunked loss against the full one, and the recipe's checks (training-recipe §8.2
 * items 10, 11, 13, 14, 16).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { backward } from "../src/graph/autodiff.js";
import { Graph } from "../src/graph/graph.js";
import { ort } from "../src/graph/runtime.js";
import { decoderConfig, loccaDecoder, selfAttentionMask } from "../src/models/locca.js";
import { InputParams } from "../src/models/params.js";
import { chunkedLoccaLoss, loccaLoss } from "../src/train/locca-loss.js";
import { paramSpecs } from "../src/train/model.js";
import { Rng } from "../src/train/rng.js";
import { TrainSession, type Batch } from "../src/train/session.js";
import { GOLD_LENGTH, GOLD_SEQUENCES, loccaGolden, loccaStep, maxErr } from "./harness/locca-golden.js";
import { FIXTURES } from "./harness/paths.js";

const readJson = (): string => readFileSync(join(FIXTURES, "goldens", "locca-grads.json"), "utf8");

const e = (x: number): string => x.toExponential(1);

describe("LocCa decoder: config and parameters", () => {
  it("sizes from the text config; decoder.* appended after the towers in the reference's order", () => {
    const g = loccaGolden();
    const c = g.ckpt.config;
    const dc = decoderConfig(c.text_config, c.vision_config);
    assert.deepEqual([dc.hidden, dc.inter, dc.heads, dc.layers, dc.positions, dc.vocab, dc.maskToken, dc.memoryDim], [32, 64, 4, 1, 64, 1024, 1024, 32]);
    const base = paramSpecs(c);
    assert.deepEqual(g.specs.slice(0, base.length), base, "tower parameters unchanged and first");
    const dec = g.specs.slice(base.length);
    const refNames = (JSON.parse(readJson()) as { parameters: string[] }).parameters.filter((n) => n.startsWith("decoder."));
    assert.deepEqual(dec.map((s) => s.name), refNames);
    assert.equal(g.specs.length, 120);
    const byName = new Map(g.specs.map((s) => [s.name, s]));
    assert.deepEqual(byName.get("decoder.embed_tokens.weight")!.shape, [1025, 32]);
    assert.deepEqual(byName.get("decoder.layers.0.cross_attn.k_proj.weight")!.shape, [32, 32]);
    assert.deepEqual(byName.get("decoder.lm_head.weight")!.shape, [1024, 32]);
    assert.equal(byName.get("decoder.lm_head.weight")!.decay, true);
    assert.equal(byName.get("decoder.embed_tokens.weight")!.decay, false);
  });
});

describe("LocCa vs PyTorch autograd (fixres-f32, 4 images, 8 sequences of 12)", () => {
  const g = loccaGolden();
  const ref = (k: string): Float32Array => g.gold.readFloat32(k);
  const manifest = JSON.parse(readJson()) as { loss: number; sigmoid_loss: number; locca_loss: number };
  for (const variant of ["full logits (autodiff)", "vocabulary chunks of 128 (custom gradient)"]) {
    it(variant, async (t) => {
      const r = await loccaStep(g, variant.startsWith("full") ? { outputLogits: true } : { vocabChunk: 128 });
      const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `${what} ${a} vs torch ${b}`);
      close(r.loss, manifest.loss, "loss");
      close(r.sigmoidLoss!, manifest.sigmoid_loss, "sigmoid loss");
      close(r.loccaLoss!, manifest.locca_loss, "LocCa loss");
      const ps = maxErr(r.loccaPerSequence!, ref("locca_per_sequence"));
      assert.ok(ps.abs <= 1e-5 * Math.max(1, ps.scale), `per-sequence losses: max-abs ${e(ps.abs)}`);
      if (variant.startsWith("full")) {
        const lg = maxErr(r.decoderLogits!, ref("decoder_logits"));
        assert.ok(lg.abs <= 1e-4 * Math.max(1, lg.scale), `decoder logits: max-abs ${e(lg.abs)} (‖ref‖∞ ${e(lg.scale)})`);
        t.diagnostic(`decoder logits: max-abs ${e(lg.abs)}, ‖ref‖∞ ${e(lg.scale)}`);
      }
      assert.equal(r.grads.size, 120, "every parameter has a gradient");
      const worst = { tower: { abs: 0, rel: 0, name: "" }, decoder: { abs: 0, rel: 0, name: "" } };
      for (const [name, v] of r.grads) {
        const m = maxErr(v, ref(`grad.${name}`));
        const rel = m.abs / Math.max(1, m.scale);
        // same rule as tests/train-grads.test.ts: 1e-5 of the tensor's largest gradient (or absolute below 1)
        assert.ok(m.abs <= 1e-5 * Math.max(1, m.scale), `${name}: max-abs ${e(m.abs)} (‖ref‖∞ ${e(m.scale)})`);
        const w = name.startsWith("decoder.") ? worst.decoder : worst.tower;
        if (rel >= w.rel) Object.assign(w, { abs: Math.max(w.abs, m.abs), rel, name });
      }
      t.diagnostic(`losses: |Δ| ${e(Math.abs(r.loss - manifest.loss))} total, ${e(Math.abs(r.loccaLoss! - manifest.locca_loss))} LocCa`);
      t.diagnostic(`tower gradients (88): worst max-abs/max(1,‖ref‖∞) ${e(worst.tower.rel)} (${worst.tower.name})`);
      t.diagnostic(`decoder gradients (32): worst max-abs/max(1,‖ref‖∞) ${e(worst.decoder.rel)} (${worst.decoder.name})`);
    });
  }
});

/** Loss and gradients (w.r.t. h, W, b) of the full and the chunked LocCa loss on the same inputs. */
async function lossGraphs(d: { S: number; L: number; D: number; V: number }, chunk: number | undefined, feeds: Record<string, ort.Tensor>) {
  const g = new Graph("locca-loss");
  const h = g.input("h", "float32", [d.S, d.L, d.D]);
  const w = g.input("w", "float32", [d.V, d.D]);
  const b = g.input("b", "float32", [d.V]);
  const targets = g.input("targets", "int64", [d.S, d.L]);
  const weights = g.input("weights", "float32", [d.S, d.L]);
  let outs: Record<string, string>;
  if (chunk === undefined) {
    const logits = g.add(g.matmul(h, g.transpose(w, [1, 0])), b);
    const l = loccaLoss(g, logits, targets, weights, { vocab: d.V });
    const gr = backward(g, [{ value: l.loss }], [h, w, b]);
    outs = { loss: l.loss, per: l.perSequence, dh: gr[h]!, dw: gr[w]!, db: gr[b]! };
  } else {
    const l = chunkedLoccaLoss(g, h, w, b, targets, weights, { sequences: d.S, length: d.L, hidden: d.D, vocab: d.V }, chunk);
    outs = { loss: l.loss, per: l.perSequence, dh: l.dHidden, dw: l.dWeight, db: l.dBias };
  }
  const shapes: Record<string, number[]> = { loss: [], per: [d.S], dh: [d.S, d.L, d.D], dw: [d.V, d.D], db: [d.V] };
  for (const [k, v] of Object.entries(outs)) {
    g.node("Identity", [v], { outputs: [k] });
    g.output(k, "float32", shapes[k]!);
  }
  const s = await ort.InferenceSession.create(g.toModelBytes());
  const r = await s.run(feeds);
  await s.release();
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.data as Float32Array]));
}

describe("LocCa loss: vocabulary-chunked = full (item 14)", () => {
  it("vocab 1000: chunks of 128, 333 and 1000 match the full loss and its gradients (h, lm_head W and b) to 1e-6; empty rows left out", async () => {
    const d = { S: 4, L: 6, D: 16, V: 1000 };
    const rng = new Rng(11);
    const N = d.S * d.L;
    const weights = new Float32Array(N);
    for (let s = 0; s < d.S; s++) for (let l = 0; l < d.L; l++) weights[s * d.L + l] = l >= 1 && l < 6 - s && s < 3 ? 1 : 0; // prefix 1, then pad; row 3 empty
    const feeds = {
      h: new ort.Tensor("float32", Float32Array.from({ length: N * d.D }, () => rng.normal()), [d.S, d.L, d.D]),
      w: new ort.Tensor("float32", Float32Array.from({ length: d.V * d.D }, () => 0.5 * rng.normal()), [d.V, d.D]),
      b: new ort.Tensor("float32", Float32Array.from({ length: d.V }, () => rng.normal()), [d.V]),
      targets: new ort.Tensor("int64", BigInt64Array.from({ length: N }, (_, i) => BigInt((i * 389 + 7) % d.V)), [d.S, d.L]),
      weights: new ort.Tensor("float32", weights, [d.S, d.L]),
    };
    const full = await lossGraphs(d, undefined, feeds);
    const per = full["per"]!;
    assert.equal(per[3], 0, "an empty row contributes 0");
    assert.ok(Math.abs(full["loss"]![0]! - (per[0]! + per[1]! + per[2]!) / 3) <= 1e-6 * full["loss"]![0]!, "mean over the non-empty rows");
    for (const chunk of [128, 333, 1000]) {
      const ch = await lossGraphs(d, chunk, feeds);
      for (const k of ["loss", "per", "dh", "dw", "db"]) {
        const m = maxErr(ch[k]!, full[k]!);
        assert.ok(m.abs <= 1e-6 * Math.max(1, m.scale), `chunk ${chunk} ${k}: max-abs ${e(m.abs)} (‖full‖∞ ${e(m.scale)})`);
      }
    }
  });
});

/** The golden batch with some decoder arrays replaced. */
function withDecoder(b: Batch, patch: Partial<NonNullable<Batch["decoder"]>>): Batch {
  return { ...b, decoder: { ...b.decoder!, ...patch } };
}

const L = GOLD_LENGTH;

describe("LocCa decoder behaviour (items 10, 11, 13, 16)", () => {
  const g = loccaGolden();
  const causal = Array.from(g.batch.decoder!.causal, Number);
  const logitsOf = async (b: Batch) => (await loccaStep(g, { outputLogits: true }, b)).decoderLogits!;
  const V = 1024;
  const rowPos = (logits: Float32Array, s: number, l: number) => logits.subarray((s * L + l) * V, (s * L + l + 1) * V);
  const sameRow = (a: Float32Array, b: Float32Array) => maxErr(a, b).abs <= 1e-6;

  it("causal rows: changing the tokens after position k leaves the logits at positions ≤ k unchanged (item 10)", async () => {
    const base = await logitsOf(g.batch);
    const k = 4;
    const ids = g.batch.decoder!.inputIds.slice();
    for (let s = 0; s < GOLD_SEQUENCES; s++) if (causal[s]) for (let l = k + 1; l < L; l++) ids[s * L + l] = BigInt(3 + ((s * 31 + l * 7) % 1000));
    const after = await logitsOf(withDecoder(g.batch, { inputIds: ids }));
    for (let s = 0; s < GOLD_SEQUENCES; s++) {
      if (!causal[s]) continue;
      for (let l = 0; l <= k; l++) assert.ok(sameRow(rowPos(base, s, l), rowPos(after, s, l)), `row ${s} position ${l} changed`);
      assert.ok(!sameRow(rowPos(base, s, L - 1), rowPos(after, s, L - 1)), `row ${s}: the last position should see the change`);
    }
  });

  it("parallel rows do not depend on the target text; they see every position (item 11)", async () => {
    const base = await loccaStep(g, { outputLogits: true });
    const targets = g.batch.decoder!.targets.slice();
    for (let s = 0; s < GOLD_SEQUENCES; s++) if (!causal[s]) for (let l = 0; l < L; l++) targets[s * L + l] = BigInt((s * 97 + l * 13 + 5) % V);
    const after = await loccaStep(g, { outputLogits: true }, withDecoder(g.batch, { targets }));
    for (let s = 0; s < GOLD_SEQUENCES; s++) for (let l = 0; l < L; l++) assert.ok(sameRow(rowPos(base.decoderLogits!, s, l), rowPos(after.decoderLogits!, s, l)), `row ${s} position ${l}`);
    assert.notEqual(base.loccaLoss, after.loccaLoss, "the targets still define the loss");
    // a parallel row attends to every position: a token at its last position reaches its first
    const ids = g.batch.decoder!.inputIds.slice();
    for (let s = 0; s < GOLD_SEQUENCES; s++) ids[s * L + L - 1] = 17n;
    const probe = await logitsOf(withDecoder(g.batch, { inputIds: ids }));
    for (let s = 0; s < GOLD_SEQUENCES; s++) {
      assert.equal(sameRow(rowPos(base.decoderLogits!, s, 0), rowPos(probe, s, 0)), causal[s] === 1, `row ${s} (${causal[s] ? "causal" : "parallel"}) position 0`);
    }
  });

  it("pad tokens (weight 0) do not change the loss (item 13)", async () => {
    const base = await loccaStep(g, {});
    const d = g.batch.decoder!;
    const ids = d.inputIds.slice();
    const targets = d.targets.slice();
    let changed = 0;
    for (let s = 0; s < GOLD_SEQUENCES; s++) {
      if (!causal[s]) continue;
      // pad = the trailing weight-0 positions
      for (let l = L - 1; l >= 0 && d.weights[s * L + l] === 0; l--) {
        ids[s * L + l] = BigInt(7 + l);
        targets[s * L + l] = BigInt(500 + l);
        changed++;
      }
    }
    assert.ok(changed > 10);
    const after = await loccaStep(g, {}, withDecoder(g.batch, { inputIds: ids, targets }));
    assert.ok(Math.abs(after.loss - base.loss) <= 1e-6 * base.loss, `${after.loss} vs ${base.loss}`);
    const m = maxErr(after.loccaPerSequence!, base.loccaPerSequence!);
    assert.ok(m.abs <= 1e-6, `per-sequence max-abs ${e(m.abs)}`);
    // appending 4 pad positions (L = 16): the causal rows' losses stay. (Parallel rows attend to
    // every position, pads included, as the reference does, so their context changes.)
    const L2 = L + 4;
    const widen = <T extends BigInt64Array | Float32Array>(a: T): T => {
      const out = new (a.constructor as new (n: number) => T)(GOLD_SEQUENCES * L2);
      for (let s = 0; s < GOLD_SEQUENCES; s++) out.set(a.subarray(s * L, (s + 1) * L) as never, s * L2);
      return out;
    };
    const wide = await loccaStep(g, { length: L2 }, withDecoder(g.batch, { inputIds: widen(d.inputIds), targets: widen(d.targets), weights: widen(d.weights) }));
    for (let s = 0; s < GOLD_SEQUENCES; s++) {
      if (causal[s]) assert.ok(Math.abs(wide.loccaPerSequence![s]! - base.loccaPerSequence![s]!) <= 1e-6 * base.loccaPerSequence![s]!, `row ${s} with 4 more pads`);
    }
  });

  it("the decoder fed image tokens directly: changing one patch token changes that sequence's logits only (item 16)", async () => {
    const c = g.ckpt.config;
    const dc = decoderConfig(c.text_config, c.vision_config);
    const P = 16;
    const gr = new Graph("decoder");
    const p = InputParams.root(gr);
    const dec = loccaDecoder(p, dc, GOLD_SEQUENCES, L);
    const memory = gr.input("memory", "float32", [GOLD_SEQUENCES, P, dc.memoryDim]);
    const causalIn = gr.input("decoder_causal", "int64", [GOLD_SEQUENCES]);
    gr.node("Identity", [dec.head(dec.hidden(memory, selfAttentionMask(gr, causalIn, L)))], { outputs: ["logits"] });
    gr.output("logits", "float32", [GOLD_SEQUENCES, L, V]);
    const sess = await ort.InferenceSession.create(gr.toModelBytes());
    const rng = new Rng(3);
    const mem = Float32Array.from({ length: GOLD_SEQUENCES * P * dc.memoryDim }, () => rng.normal());
    const run = async (m: Float32Array) => {
      const feeds: Record<string, ort.Tensor> = {
        memory: new ort.Tensor("float32", m, [GOLD_SEQUENCES, P, dc.memoryDim]),
        decoder_causal: new ort.Tensor("int64", g.batch.decoder!.causal, [GOLD_SEQUENCES]),
        decoder_input_ids: new ort.Tensor("int64", g.batch.decoder!.inputIds, [GOLD_SEQUENCES, L]),
      };
      for (const sp of p.specs) feeds[sp.name] = new ort.Tensor("float32", g.params.get(sp.name)!, sp.shape);
      return (await sess.run(feeds))["logits"]!.data as Float32Array;
    };
    const base = await run(mem);
    const changed = mem.slice();
    const seq = 2;
    for (let k = 0; k < dc.memoryDim; k++) changed[(seq * P + 9) * dc.memoryDim + k] += 0.5; // patch 9 of sequence 2
    const after = await run(changed);
    await sess.release();
    for (let s = 0; s < GOLD_SEQUENCES; s++) {
      for (let l = 0; l < L; l++) assert.equal(sameRow(rowPos(base, s, l), rowPos(after, s, l)), s !== seq, `sequence ${s} position ${l}`);
    }
  });

  it("cross-attention reads the un-pooled post-LN tokens, not the MAP head (item 16)", async () => {
    const s = await TrainSession.create(g.ckpt.config, {
      batch: 4, threads: 1, objectives: ["locca"], locca: { sequences: GOLD_SEQUENCES, length: L },
    });
    const r = await s.step(g.params, g.batch);
    await s.release();
    assert.ok(Math.abs(r.loss - r.loccaLoss!) <= 1e-6 * r.loss, "LocCa alone");
    const zero = (n: string) => r.grads.get(n)!.every((v) => v === 0);
    for (const n of r.grads.keys()) {
      if (n.startsWith("vision_model.head.") || n.startsWith("text_model.") || n === "logit_scale" || n === "logit_bias") assert.ok(zero(n), `${n} should get no LocCa gradient`);
    }
    for (const n of ["vision_model.post_layernorm.weight", "vision_model.encoder.layers.0.mlp.fc1.weight", "vision_model.embeddings.patch_embedding.weight", "decoder.layers.0.cross_attn.k_proj.weight"]) {
      assert.ok(!zero(n), `${n} should get a LocCa gradient`);
    }
  });
});
