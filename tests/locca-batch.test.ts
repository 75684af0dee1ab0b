/**
 * LocCa decoder sequences from prompts (src/train/locca-batch.ts): tokens, BOS shift, prefix
 * weight 0, padding, truncation, the per-example parallel choice for captions only
 * (training-recipe §8.2 item 12), and a built batch through the training graph.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { arefPrompt, capPrompt, gcapPrompt } from "../src/tasks/boxes.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { buildDecoderBatch, buildSequence, chooseParallel } from "../src/train/locca-batch.js";
import { Rng } from "../src/train/rng.js";
import { locCaTargets } from "../src/train/scenes/locca.js";
import { TrainSession } from "../src/train/session.js";
import { loccaGolden } from "./harness/locca-golden.js";
import { REPO } from "./harness/paths.js";

const gemma = GemmaTokenizer.fromJSON(JSON.parse(readFileSync(join(REPO, "node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json"), "utf8")));
const SP = { pad: 0, eos: 1, bos: 2, mask: 256000 };
const tok = (s: string): number[] => gemma.tokenize(s);
/** A toy tokenizer for the tiny model (vocab 1024): one id per word. */
const toy = (s: string): number[] => s.split(" ").filter(Boolean).map((w) => 3 + ([...w].reduce((a, c) => a * 31 + c.charCodeAt(0), 7) % 1000));

describe("LocCa sequences from prompts", () => {
  it("causal caption: BOS shift, prefix weight 0, EOS, pad (Gemma tokens)", () => {
    const p = capPrompt("a red circle");
    const ids = tok(p.text);
    const prefix = tok(p.prefix).length;
    assert.ok(prefix >= 1 && prefix < ids.length);
    const s = buildSequence(p, tok, 16, SP, false);
    const n = ids.length + 1;
    assert.deepEqual(s.targets, [...ids, 1, ...new Array(16 - n).fill(0)]);
    assert.deepEqual(s.inputIds, [2, ...ids, ...new Array(16 - n).fill(0)]);
    assert.deepEqual(s.weights, s.targets.map((_, k) => (k >= prefix && k < n ? 1 : 0)));
    assert.equal(s.causal, true);
  });

  it("parallel caption: every input the mask token; same targets and weights", () => {
    const p = capPrompt("a red circle");
    const c = buildSequence(p, tok, 16, SP, false);
    const s = buildSequence(p, tok, 16, SP, true);
    assert.deepEqual(s.inputIds, new Array(16).fill(SP.mask));
    assert.deepEqual(s.targets, c.targets);
    assert.deepEqual(s.weights, c.weights);
    assert.equal(s.causal, false);
    assert.throws(() => buildSequence(arefPrompt("a dog", [1, 2, 3, 4]), tok, 16, SP, true));
  });

  it("truncation keeps EOS last; ARef/GCap boxes are in the targets", () => {
    const p = gcapPrompt([12, 40, 300, 410], "a long caption with many words in it");
    const s = buildSequence(p, tok, 6, SP, false);
    assert.equal(s.targets.length, 6);
    assert.equal(s.targets[5], 1);
    assert.ok(s.weights.every((w, k) => w === (k >= tok(p.prefix).length ? 1 : 0)));
    const full = buildSequence(p, tok, 64, SP, false);
    assert.deepEqual(full.targets.slice(0, tok(p.text).length), tok("GCap: 12 40 300 410 : a long caption with many words in it"));
  });

  it("parallel prediction: captions only, rate 0.5 ± 0.02 over 10k draws (item 12)", () => {
    const rng = new Rng(12);
    let k = 0;
    for (let i = 0; i < 10_000; i++) if (chooseParallel("cap", rng)) k++;
    assert.ok(Math.abs(k / 10_000 - 0.5) <= 0.02, `rate ${k / 10_000}`);
    for (let i = 0; i < 1000; i++) {
      assert.equal(chooseParallel("aref", rng), false);
      assert.equal(chooseParallel("gcap", rng), false);
    }
    // and per example in a batch
    const rows = Array.from({ length: 2000 }, () => ({ cap: capPrompt("a cat"), aref: arefPrompt("a cat", [1, 2, 3, 4]), gcap: null }));
    const b = buildDecoderBatch(rows, { length: 8, specials: SP, tokenize: tok, rng: new Rng(4) });
    let par = 0;
    for (let i = 0; i < 2000; i++) if (b.causal[i] === 0n) par++;
    for (let i = 2000; i < b.used; i++) assert.equal(b.causal[i], 1n, "ARef rows are causal");
    assert.ok(Math.abs(par / 2000 - 0.5) <= 0.04, `batch rate ${par / 2000}`);
  });

  it("a scene batch through the training graph: empty rows do not change the loss", async () => {
    const g = loccaGolden();
    const rng = new Rng(1);
    const rows = [
      { text: "a red circle", regions: [{ box: [1, 2, 20, 30] as const, text: "red circle" }] },
      { text: "two blue squares" },
      { text: "a green star left of a circle", regions: [{ box: [0, 0, 16, 16] as const, text: "green star" }, { box: [16, 8, 32, 24] as const, text: "circle" }] },
      { text: "nothing" },
    ].map((r) => locCaTargets(r, 32, 32, rng));
    const L = 20;
    const sp = { pad: 0, eos: 1, bos: 2, mask: 1024 };
    const loss = async (S: number) => {
      const d = buildDecoderBatch(rows, { length: L, sequences: S, specials: sp, tokenize: toy, rng: new Rng(9) });
      const s = await TrainSession.create(g.ckpt.config, { batch: 4, threads: 1, objectives: ["sigmoid", "locca"], locca: { sequences: S, length: L, vocabChunk: 256 } });
      const r = await s.step(g.params, { ...g.batch, decoder: d });
      await s.release();
      return { r, used: d.used };
    };
    const tight = await loss(8);
    assert.equal(tight.used, 8);
    const padded = await loss(12);
    assert.ok(Number.isFinite(tight.r.loccaLoss!) && tight.r.loccaLoss! > 0);
    assert.ok(Math.abs(padded.r.loccaLoss! - tight.r.loccaLoss!) <= 1e-6 * tight.r.loccaLoss!, `${padded.r.loccaLoss} vs ${tight.r.loccaLoss}`);
    const gw = padded.r.grads.get("decoder.lm_head.weight")!;
    const gt = tight.r.grads.get("decoder.lm_head.weight")!;
    let m = 0;
    for (let i = 0; i < gw.length; i++) m = Math.max(m, Math.abs(gw[i]! - gt[i]!));
    assert.ok(m <= 1e-7, `lm_head gradient ${m}`);
  });
});
