/**
 * The multilingual mix (src/train/lang-mix.ts): parsing, the realised mix of many batches
 * against the request, `other`, determinism per (seed, step), languages with too few rows,
 * unknown keys, and the trainer's counts of the examples it trains on (after curation).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SiglipError } from "../src/errors.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import type { TeacherModel } from "../src/train/curate.js";
import { InMemoryPairs } from "../src/train/data.js";
import { LangMixSampler, countLangs, langMixString, parseLangMix, shares } from "../src/train/lang-mix.js";
import { paramSpecs } from "../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { loadParams } from "../src/train/session.js";
import { synthesize } from "../src/train/synthetic.js";
import { Trainer } from "../src/train/trainer.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { FIXTURES } from "./harness/paths.js";

const usageError = (re: RegExp) => (e: unknown) => e instanceof SiglipError && e.code === "usage" && re.test(e.message);

/** 900 en rows, then 100 each of de, es, fr, zh (interleaved). */
const LANGS = Array.from({ length: 1300 }, (_, i) => (i % 13 < 9 ? "en" : ["de", "es", "fr", "zh"][i % 13 - 9]!));

describe("--lang-mix parsing", () => {
  it("reads LANG=WEIGHT pairs and other", () => {
    assert.deepEqual(parseLangMix("en=0.9,other=0.1"), { weights: { en: 0.9 }, other: 0.1 });
    assert.deepEqual(parseLangMix(" zh=1 , pt-br=2.5e-1 "), { weights: { zh: 1, "pt-br": 0.25 } });
    assert.equal(langMixString(parseLangMix("zh=1,other=2,de=0.5")), "de=0.5,zh=1,other=2");
  });

  it("bad specs are one clear line", () => {
    assert.throws(() => parseLangMix("en"), usageError(/"en" is not LANG=WEIGHT/));
    assert.throws(() => parseLangMix("en=x"), usageError(/weight of en must be a finite number ≥ 0, got "x"/));
    assert.throws(() => parseLangMix("en=NaN"), usageError(/weight of en/));
    assert.throws(() => parseLangMix("en=-0.1"), usageError(/weight of en/));
    assert.throws(() => parseLangMix("en=0,other=0"), usageError(/every weight is 0/));
    assert.throws(() => parseLangMix("en=1,en=1"), usageError(/en given twice/));
    assert.throws(() => parseLangMix("other=1,other=1"), usageError(/other given twice/));
    assert.throws(() => parseLangMix("e n=1"), usageError(/not LANG=WEIGHT|not a language code/));
    assert.throws(() => parseLangMix(""), usageError(/empty/));
  });
});

describe("language-mix sampler", () => {
  it("en=0.9,other=0.1: the realised mix of 300 batches is within 3σ of the request", () => {
    const s = new LangMixSampler(parseLangMix("en=0.9,other=0.1"), LANGS);
    assert.deepEqual(s.requested, { en: 0.9, de: 0.025, es: 0.025, fr: 0.025, zh: 0.025 });
    const counts: Record<string, number> = {};
    for (let step = 0; step < 300; step++) countLangs(LANGS, s.indices(32, 11, step), counts);
    const got = shares(counts);
    const N = 300 * 32;
    for (const [l, p] of Object.entries(s.requested)) {
      const tol = 3 * Math.sqrt((p * (1 - p)) / N);
      assert.ok(Math.abs(got[l]! - p) < tol, `${l}: realised ${got[l]} vs requested ${p} (±${tol.toFixed(4)})`);
    }
    // and far from what uniform sampling over the rows gives (en 9/13 ≈ 0.69)
    assert.ok(got["en"]! > 0.88);
  });

  it("a language with no weight (not named, no other) is never drawn", () => {
    const s = new LangMixSampler(parseLangMix("de=3,zh=1"), LANGS);
    assert.equal(s.requested["en"], 0);
    const counts = countLangs(LANGS, Array.from({ length: 50 }, (_, k) => s.indices(16, 2, k)).flat());
    assert.deepEqual(Object.keys(counts).sort(), ["de", "zh"]);
    assert.ok(Math.abs(shares(counts)["de"]! - 0.75) < 0.06);
  });

  it("a pure function of (seed, step), distinct rows within a batch", () => {
    const s = new LangMixSampler(parseLangMix("en=0.5,other=0.5"), LANGS);
    const b = s.indices(64, 5, 7);
    assert.deepEqual(new LangMixSampler(parseLangMix("en=0.5,other=0.5"), LANGS).indices(64, 5, 7), b);
    assert.equal(new Set(b).size, 64);
    assert.notDeepEqual(s.indices(64, 5, 8), b);
    assert.notDeepEqual(s.indices(64, 6, 7), b);
  });

  it("a language with fewer rows than a batch draws gives its extra slots to the others", () => {
    const langs = [...Array(20).fill("en"), "zh", "zh", "zh"];
    const s = new LangMixSampler(parseLangMix("zh=0.99,en=0.01"), langs);
    for (let step = 0; step < 20; step++) {
      const c = countLangs(langs, s.indices(8, 1, step));
      assert.deepEqual(c, { zh: 3, en: 5 });
    }
    assert.throws(() => new LangMixSampler(parseLangMix("zh=1"), langs).indices(4, 1, 0), usageError(/batch of 4 needs 4 rows of the weighted languages; the data has 3/));
  });

  it("keys the data does not have, and other with nothing left, are one clear line", () => {
    assert.throws(() => new LangMixSampler(parseLangMix("ja=1"), LANGS, "m.jsonl"), usageError(/no row of m.jsonl has lang "ja" \(its languages: en, de, es, fr, zh\)/));
    assert.throws(() => new LangMixSampler(parseLangMix("en=1,other=1"), ["en", "en"]), usageError(/other has weight 1 but every language/));
  });
});

describe("trainer with a language mix", () => {
  it("counts the languages it trains on: after curation, not as drawn", async () => {
    const dir = join(FIXTURES, "models", "fixres-f32");
    const ckpt = new Checkpoint(dir);
    const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
    const n = 40;
    const pairs = synthesize(n, 32, 3);
    const langs = Array.from({ length: n }, (_, i) => (i % 2 ? "zh" : "en"));
    // A teacher that finds the zh pairs easy (image = text) and the en pairs hard (image = −text):
    // curation should keep mostly zh although half of each super-batch is en.
    const row = (x: string) => Number(x.split(":")[1]);
    const e = (i: number, sign: number) => Float32Array.from({ length: n }, (_, k) => (k === i ? sign : 0));
    const teacher: TeacherModel = {
      embedImages: async (xs) => xs.map((x) => e(row(x as string), 1)),
      embedTexts: async (xs) => xs.map((x) => e(row(x), langs[row(x)] === "zh" ? 1 : -1)),
      logitParams: () => ({ logitScale: Math.log(10), logitBias: -10 }),
    };
    const data = new InMemoryPairs(pairs.map((p) => p.pixels), pairs.map((_, i) => `pair:${i}`), tok, ckpt.config.text_config.max_position_embeddings, {
      images: pairs.map((_, i) => `image:${i}`), langs,
    });
    const trainer = await Trainer.create(ckpt.config, loadParams(ckpt.weights, paramSpecs(ckpt.config)), {
      batchSize: 4, accumSteps: 1, steps: 6, seed: 1, freeze: "none", threads: 1,
      optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-4, totalSteps: 6, warmupSteps: 0 },
      langMix: parseLangMix("en=1,zh=1"), curate: { teacher, ratio: 0.5, teacherId: "stub" },
    });
    try {
      for (let k = 0; k < 6; k++) {
        const s = await trainer.trainStep(data);
        assert.equal(Object.values(s.langs!).reduce((a, b) => a + b, 0), 4);
      }
      const got = trainer.realisedLangs();
      assert.equal((got["zh"] ?? 0) + (got["en"] ?? 0), 24);
      assert.ok((got["zh"] ?? 0) >= 20, `realised ${JSON.stringify(got)}`);
      assert.deepEqual(trainer.requestedLangs, { en: 0.5, zh: 0.5 });
    } finally {
      await trainer.release();
      ckpt.close();
    }
  });
});
