/**
 * LocCa inference against the PyTorch reference: the inference decoder (src/models/locca-infer.ts
 * on a WeightLoader) against the training golden's logits (tools/reference/locca_goldens.py), greedy
 * and beam decoding (src/tasks/caption.ts) against tools/reference/locca_decode_goldens.py, and the
 * library / CLI contract of caption and locate on a temp checkpoint (tests/harness/locca-checkpoint.ts).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { FixresVisionTower } from "../src/models/siglip.js";
import { LoccaDecoderModel } from "../src/models/locca-infer.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { decode, type NextLogits } from "../src/tasks/caption.js";
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

interface DecodeGolden {
  bos: number;
  eos: number;
  eos_bias: number;
  prompts: number[][];
  length: number;
  cases: Array<{ weights: "plain" | "eos"; beam: number; lengthPenalty: number; maxTokens: number | null; results: Array<{ tokens: number[]; logProb: number; finished: boolean }> }>;
}

describe("LocCa decoding (greedy, beam) against tools/reference/locca_decode_goldens.py", () => {
  const golden = JSON.parse(readFileSync(join(FIXTURES, "goldens", "locca-decode.json"), "utf8")) as DecodeGolden;
  for (const setting of ["plain", "eos"] as const) {
    it(`${setting} weights: tokens and log-probabilities of every case`, async () => {
      const dir = loccaCheckpoint({
        edit: (t) => {
          if (setting === "eos") t.find((x) => x.name === "decoder.lm_head.bias")!.data[golden.eos]! += golden.eos_bias;
        },
      });
      const ckpt = new Checkpoint(dir);
      const memory = (await imageTokens(ckpt)).map((patches) => ({ patches }));
      const dec = await LoccaDecoderModel.load(ckpt, { cacheDir: null });
      try {
        const next: NextLogits = (rows) => dec.logits(rows, memory, rows.map((r) => [r.ids.length - 1]));
        const spec = { bos: golden.bos, eos: golden.eos, vocab: V, length: golden.length };
        const prompts = golden.prompts.map((prompt, image) => ({ prompt, image }));
        for (const c of golden.cases.filter((x) => x.weights === setting)) {
          const got = await decode(next, prompts, spec, { beam: c.beam, lengthPenalty: c.lengthPenalty, ...(c.maxTokens !== null ? { maxTokens: c.maxTokens } : {}) });
          const what = `beam ${c.beam}, α ${c.lengthPenalty}, max ${c.maxTokens}`;
          got.forEach((g, i) => {
            const want = c.results[i]!;
            assert.deepEqual(g.tokens, want.tokens, `${what}: image ${i} tokens`);
            assert.equal(g.finished, want.finished, `${what}: image ${i} finished`);
            assert.ok(Math.abs(g.logProb - want.logProb) <= 1e-4 * Math.max(1, Math.abs(want.logProb)), `${what}: image ${i} log-prob ${g.logProb} vs ${want.logProb}`);
          });
        }
      } finally {
        await dec.release();
        ckpt.close();
      }
    });
  }
});
