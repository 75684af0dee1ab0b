/**
 * Training end to end: the optimiser maths, exact resume, checkpoints that our engine and
 * transformers load with the same embeddings, the learning proof on the synthetic dataset,
 * and the `siglip2 train` command.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import sharp from "sharp";
import { FixresVisionTower, TextTower } from "../src/models/siglip.js";
import { loadTrainingState, saveCheckpoint } from "../src/train/checkpoint.js";
import { runSynthetic } from "../src/train/experiment.js";
import { paramSpecs } from "../src/train/model.js";
import { AdamW, clipByGlobalNorm, scheduleMultiplier, type OptimizerConfig } from "../src/train/optim.js";
import { EmbedSession, loadParams, TrainSession, type Params } from "../src/train/session.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { InMemoryPairs } from "../src/train/data.js";
import { synthesize } from "../src/train/synthetic.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { tempDir } from "./harness/files.js";
import { FIXTURES, REPO } from "./harness/paths.js";
import { SOURCE_FIXTURE, TRAINED_FIXTURE, TRAINED_STEPS, trainFixture } from "./harness/trained-fixture.js";

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

/**
 * The element ranges of parameter `name` (of `length` values) whose true gradient is zero (the
 * attention key biases: whole k_proj.bias tensors, and the middle third of the MAP head's packed
 * in_proj_bias), and the other ranges.
 */
function zeroGradientSlices(name: string, length: number): { zero: Array<[number, number]>; rest: Array<[number, number]>; all: Array<[number, number]> } {
  if (name.endsWith(".self_attn.k_proj.bias")) return { zero: [[0, length]], rest: [], all: [[0, length]] };
  if (name.endsWith(".attention.in_proj_bias")) {
    const d = length / 3;
    return { zero: [[d, 2 * d]], rest: [[0, d], [2 * d, length]], all: [[0, d], [d, 2 * d], [2 * d, length]] };
  }
  return { zero: [], rest: [[0, length]], all: [[0, length]] };
}

describe("optimiser", () => {
  const base: OptimizerConfig = { lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01, decayConvention: "big_vision", clipNorm: 0, warmupSteps: 0, totalSteps: 10 };
  const specs = [{ name: "w", shape: [2], decay: true }, { name: "b", shape: [2], decay: false }];

  it("warm-up + cosine schedule (recipe §8.2 #28)", () => {
    const s = (k: number) => scheduleMultiplier(k, 10, 100);
    assert.equal(s(0), 0);
    assert.ok(Math.abs(s(5) - 0.5) < 1e-12);
    assert.ok(Math.abs(s(10) - 1) < 1e-12);
    assert.ok(Math.abs(s(55) - 0.5) < 1e-12);
    assert.ok(Math.abs(s(100)) < 1e-12);
  });

  it("global-norm clipping: norm 10 → 1, norm 0.5 untouched (#30)", () => {
    const g: Params = new Map([["a", Float32Array.of(6, 0)], ["b", Float32Array.of(0, 8)]]);
    assert.ok(Math.abs(clipByGlobalNorm(g, 1) - 10) < 1e-6);
    assert.ok(Math.abs(g.get("a")![0]! - 0.6) < 1e-6 && Math.abs(g.get("b")![1]! - 0.8) < 1e-6);
    const h: Params = new Map([["a", Float32Array.of(0.3, 0.4)]]);
    clipByGlobalNorm(h, 1);
    assert.deepEqual(Array.from(h.get("a")!), [Math.fround(0.3), Math.fround(0.4)]);
  });

  it("weight decay: big_vision = sched·wd·θ (not ×lr), torch = sched·lr·wd·θ, kernels only (#29)", () => {
    for (const conv of ["big_vision", "torch"] as const) {
      const opt = new AdamW({ ...base, decayConvention: conv }, specs, ["w", "b"]);
      const p: Params = new Map([["w", Float32Array.of(2, -4)], ["b", Float32Array.of(2, -4)]]);
      opt.update(p, new Map([["w", new Float32Array(2)], ["b", new Float32Array(2)]])); // zero gradient: decay only
      const f = conv === "big_vision" ? 0.01 : 0.1 * 0.01;
      assert.ok(maxAbs(p.get("w")!, [2 * (1 - f), -4 * (1 - f)]) < 1e-6, conv);
      assert.deepEqual(Array.from(p.get("b")!), [2, -4], "no decay on biases");
    }
  });

  it("Adam step: bias-corrected first step moves each weight by lr·sign(g)", () => {
    const opt = new AdamW({ ...base, weightDecay: 0 }, specs, ["w"]);
    const p: Params = new Map([["w", Float32Array.of(1, 1)], ["b", Float32Array.of(0, 0)]]);
    opt.update(p, new Map([["w", Float32Array.of(3, -0.002)]]));
    assert.ok(maxAbs(p.get("w")!, [0.9, 1.1]) < 1e-5);
    assert.equal(opt.step, 1);
  });
});

describe("training run, checkpoints and resume (fixres-f32)", async () => {
  const { trainer, configJson } = await trainFixture();

  it("transformers loads our trained checkpoint: our engine's embeddings match its golden", async () => {
    const gold = SafetensorsFile.open(join(FIXTURES, "goldens", "trained-f32.safetensors"));
    const ckpt = new Checkpoint(TRAINED_FIXTURE);
    const vision = await FixresVisionTower.load(ckpt, { threads: 1 });
    const text = await TextTower.load(ckpt, { threads: 1 });
    const px = gold.readFloat32("inputs.pixel_values");
    const ids = Array.from(gold.readFloat32("inputs.input_ids"));
    const img = await vision.run(px, 4);
    const txt = await text.run(ids, 4);
    const norm = (x: Float32Array, d: number) => {
      const out = new Float32Array(x.length);
      for (let r = 0; r < x.length / d; r++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += x[r * d + i]! ** 2;
        for (let i = 0; i < d; i++) out[r * d + i] = x[r * d + i]! / Math.sqrt(s);
      }
      return out;
    };
    const refImgPooled = gold.readFloat32("image_pooler_output");
    const scale = (x: Float32Array) => Math.max(1, ...Array.from(x, Math.abs));
    assert.ok(maxAbs(img.pooled, refImgPooled) <= 1e-4 * scale(refImgPooled));
    assert.ok(maxAbs(txt.pooled, gold.readFloat32("text_pooler_output")) <= 1e-4 * scale(gold.readFloat32("text_pooler_output")));
    assert.ok(maxAbs(norm(img.pooled, 32), gold.readFloat32("image_embeds")) <= 1e-5);
    assert.ok(maxAbs(norm(txt.pooled, 32), gold.readFloat32("text_embeds")) <= 1e-5);
    await vision.release();
    await text.release();
    ckpt.close();
    gold.close();
  });

  it("the only parameters with a zero true gradient are the attention key biases (softmax is shift-invariant per query)", async () => {
    // q·(k + b_k) adds the same q·b_k to every score of a query row, which softmax ignores: the
    // gradient of b_k is exactly 0, and what onnxruntime returns is round-off noise.
    const ckpt = new Checkpoint(SOURCE_FIXTURE);
    const specs = paramSpecs(ckpt.config);
    const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
    const pairs = synthesize(8, 32, 11);
    const data = new InMemoryPairs(pairs.map((p) => p.pixels), pairs.map((p) => p.caption), tok, 64);
    const session = await TrainSession.create(ckpt.config, { batch: 8, trainable: () => true, threads: 1 });
    const { grads } = await session.step(loadParams(ckpt.weights, specs), await data.batch([0, 1, 2, 3, 4, 5, 6, 7]));
    await session.release();
    ckpt.close();
    const absMax = (a: ArrayLike<number>): number => Math.max(...Array.from(a, Math.abs));
    const gmax = Math.max(...[...grads.values()].map(absMax));
    const zero = [...grads].filter(([, g]) => absMax(g) <= 1e-7 * gmax).map(([n]) => n).sort();
    assert.deepEqual(zero, [...grads.keys()].filter((n) => n.endsWith(".self_attn.k_proj.bias")).sort());
    assert.equal(zero.length, 4);
    for (const [n, g] of grads) if (!zero.includes(n)) assert.ok(absMax(g) > 1e-4 * gmax, n); // a clear gap
    // the MAP head's nn.MultiheadAttention packs q, k, v biases: only the k slice has a zero gradient
    const [qs, ks, vs] = zeroGradientSlices("vision_model.head.attention.in_proj_bias", 96).all;
    const inProj = grads.get("vision_model.head.attention.in_proj_bias")!;
    assert.ok(absMax(inProj.subarray(...ks)) <= 1e-7 * gmax);
    assert.ok(absMax(inProj.subarray(...qs)) > 1e-4 * gmax && absMax(inProj.subarray(...vs)) > 1e-4 * gmax);
  });

  it("the committed trained-f32 checkpoint is what our trainer writes (re-run, 6 steps)", () => {
    // Adam divides the round-off noise of a zero gradient by its own scale, so the key biases
    // move by CPU-dependent amounts: for them only the drift bound lr·steps is well defined.
    // Every other value must match to 1e-5.
    const ckpt = new Checkpoint(TRAINED_FIXTURE);
    const committed = loadParams(ckpt.weights, trainer.specs);
    const src = new Checkpoint(SOURCE_FIXTURE);
    const initial = loadParams(src.weights, trainer.specs);
    const bound = trainer.config.optimizer.lr * TRAINED_STEPS;
    let checked = 0;
    for (const [n, v] of trainer.params) {
      const c = committed.get(n)!;
      const i0 = initial.get(n)!;
      const zs = zeroGradientSlices(n, v.length);
      for (const [a, b] of zs.zero) {
        assert.ok(maxAbs(v.subarray(a, b), i0.subarray(a, b)) <= bound, `${n}: our drift`);
        assert.ok(maxAbs(c.subarray(a, b), i0.subarray(a, b)) <= bound, `${n}: committed drift`);
      }
      for (const [a, b] of zs.rest) {
        assert.ok(maxAbs(v.subarray(a, b), c.subarray(a, b)) <= 1e-5, `${n}[${a}:${b}]`);
        checked += b - a;
      }
    }
    assert.ok(checked > 0.99 * [...trainer.params.values()].reduce((t, v) => t + v.length, 0));
    ckpt.close();
    src.close();
  });

  it("a saved checkpoint loads in our inference engine with the embeddings of the in-memory parameters", async () => {
    const dir = tempDir();
    trainer.save(dir, configJson, SOURCE_FIXTURE);
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "optimizer.safetensors", "trainer_state.json"]) assert.ok(existsSync(join(dir, f)), f);
    assert.equal(readFileSync(join(dir, "config.json"), "utf8"), configJson, "config.json copied verbatim");
    const ckpt = new Checkpoint(dir);
    const vision = await FixresVisionTower.load(ckpt, { threads: 1 });
    const pairs = synthesize(3, 32, 99);
    const px = new Float32Array(3 * 3 * 32 * 32);
    pairs.forEach((p, i) => px.set(p.pixels, i * 3 * 32 * 32));
    const pooled = (await vision.run(px, 3)).pooled;
    const emb = await EmbedSession.create(ckpt.config, "vision", { threads: 1 });
    const ours = await emb.embed(trainer.params, px, 3);
    for (let r = 0; r < 3; r++) {
      const row = pooled.subarray(r * 32, (r + 1) * 32);
      const n = Math.hypot(...row);
      assert.ok(maxAbs(row.map((v) => v / n), ours.subarray(r * 32, (r + 1) * 32)) <= 1e-5);
    }
    await vision.release();
    await emb.release();
    ckpt.close();
  });

  it("resume after interruption gives bit-identical parameters and optimiser state", async () => {
    const dir = tempDir();
    const { Trainer } = await import("../src/train/trainer.js");
    const { GemmaTokenizer } = await import("../src/tokenizer/gemma.js");
    const { InMemoryPairs } = await import("../src/train/data.js");
    const ckpt = new Checkpoint(SOURCE_FIXTURE);
    const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
    const pairs = synthesize(32, 32, 11);
    const data = new InMemoryPairs(pairs.map((p) => p.pixels), pairs.map((p) => p.caption), tok, 64);
    const make = async () => Trainer.create(ckpt.config, loadParams(ckpt.weights, paramSpecs(ckpt.config)), { ...trainer.config });
    const first = await make();
    while (first.step < 3) await first.trainStep(data);
    first.save(dir, configJson, SOURCE_FIXTURE);
    await first.release();
    const second = await make();
    second.resume(dir);
    assert.equal(second.step, 3);
    while (second.step < TRAINED_STEPS) await second.trainStep(data);
    for (const [n, v] of trainer.params) assert.deepEqual(second.params.get(n), v, n);
    for (const n of trainer.optimizer.trainable) assert.deepEqual(second.optimizer.m.get(n), trainer.optimizer.m.get(n), n);
    assert.deepEqual(second.history.map((h) => h.loss), trainer.history.map((h) => h.loss));
    await second.release();
    // a half-written save is detected
    const st = JSON.parse(readFileSync(join(dir, "trainer_state.json"), "utf8"));
    writeFileSync(join(dir, "trainer_state.json"), JSON.stringify({ ...st, step: 2 }));
    const third = await make();
    assert.throws(() => loadTrainingState(dir, third.specs, third.params, third.optimizer), /interrupted save/);
    await third.release();
    ckpt.close();
  });

  it("saving a checkpoint without optimiser state still loads", () => {
    const dir = tempDir();
    saveCheckpoint(dir, { configJson, specs: trainer.specs, params: trainer.params });
    const ckpt = new Checkpoint(dir);
    ckpt.weights.checkAll(trainer.specs.map((s) => [s.name, s.shape] as const));
    ckpt.close();
  });
});

describe("learning proof: tiny SigLIP from scratch on synthetic shapes (short run)", () => {
  it("held-out zero-shot accuracy rises well above chance in en, de and es; the loss falls", async () => {
    const r = await runSynthetic({
      tokenizerPath: join(SOURCE_FIXTURE, "tokenizer.json"), trainPairs: 1024, testImages: 192, steps: 400, batchSize: 32,
      lr: 3e-3, warmupSteps: 20, seed: 7, threads: 2,
    });
    const first = r.curve.slice(0, 20).reduce((a, c) => a + c.loss, 0) / 20;
    const last = r.curve.slice(-20).reduce((a, c) => a + c.loss, 0) / 20;
    process.stderr.write(`# synthetic: loss ${first.toFixed(3)} → ${last.toFixed(3)}; zero-shot before ${JSON.stringify(r.before)} after ${JSON.stringify(r.after)} (chance ${r.chance}); ${r.seconds.toFixed(1)} s\n`);
    assert.ok(last < first - 0.5, `loss ${first} → ${last}`);
    for (const lang of ["en", "de", "es"] as const) {
      assert.ok(r.after[lang] >= 3 * r.chance, `${lang}: ${r.after[lang]} < 3 × chance`);
      assert.ok(r.after[lang] >= r.before[lang] + 0.1, `${lang}: ${r.before[lang]} → ${r.after[lang]}`);
    }
  });
});

describe("siglip2 train (CLI)", async () => {
  const BIN = join(REPO, "dist", "cli", "main.js");
  const data = tempDir();
  const pairs = synthesize(16, 32, 5);
  const lines: string[] = [];
  const csv = ["image,caption"];
  for (const [i, p] of pairs.entries()) {
    const rgb = Buffer.alloc(32 * 32 * 3);
    for (let c = 0; c < 3; c++) for (let k = 0; k < 32 * 32; k++) rgb[k * 3 + c] = Math.round((p.pixels[c * 1024 + k]! * 0.5 + 0.5) * 255);
    await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(data, `img${i}.png`));
    lines.push(JSON.stringify({ file_name: `img${i}.png`, text: p.caption }));
    csv.push(`img${i}.png,"${p.caption.replace(/"/g, '""')}"`);
  }
  writeFileSync(join(data, "metadata.jsonl"), `${lines.join("\n")}\n`);
  writeFileSync(join(data, "pairs.csv"), `${csv.join("\n")}\n`);
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, "train", "--model", SOURCE_FIXTURE, "--threads", "1", ...args], { encoding: "utf8" });
  const common = ["--steps", "4", "--batch-size", "8", "--accum-steps", "2", "--lr", "1e-3", "--seed", "1"];

  it("trains, logs JSON lines, writes a loadable checkpoint; --stop-at + --resume equals an uninterrupted run", () => {
    const full = tempDir();
    const a = run("--data", data, "--out", full, ...common);
    assert.equal(a.status, 0, a.stderr);
    const out = a.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(out.length, 5);
    assert.deepEqual(out.map((o) => o.step), [1, 2, 3, 4, 4]);
    for (const o of out.slice(0, 4)) for (const k of ["loss", "lr", "grad_norm", "pairs_per_s"]) assert.ok(Number.isFinite(o[k]), k);
    assert.deepEqual(out[4], { done: true, out: full, step: 4 });
    const split = tempDir();
    const b1 = run("--data", join(data, "pairs.csv"), "--out", split, ...common, "--stop-at", "2");
    assert.equal(b1.status, 0, b1.stderr);
    const again = run("--data", join(data, "pairs.csv"), "--out", split, ...common);
    assert.equal(again.status, 2, "refuses to overwrite a run without --resume");
    assert.match(again.stderr, /--resume/);
    const b2 = run("--data", join(data, "pairs.csv"), "--out", split, ...common, "--resume");
    assert.equal(b2.status, 0, b2.stderr);
    assert.deepEqual(readFileSync(join(split, "model.safetensors")), readFileSync(join(full, "model.safetensors")));
    assert.deepEqual(readFileSync(join(split, "optimizer.safetensors")), readFileSync(join(full, "optimizer.safetensors")));
    const ckpt = new Checkpoint(full); // the Hub layout our engine loads
    ckpt.weights.checkAll(paramSpecs(ckpt.config).map((s) => [s.name, s.shape] as const));
    assert.ok(existsSync(join(full, "tokenizer.json")) && existsSync(join(full, "preprocessor_config.json")));
    ckpt.close();
  });

  it("--freeze vision (LiT) leaves the image tower bit-identical and trains the text tower", () => {
    const out = tempDir();
    const r = run("--data", data, "--out", out, "--steps", "2", "--batch-size", "8", "--freeze", "vision", "--lr", "1e-3", "--loss-chunk", "3");
    assert.equal(r.status, 0, r.stderr);
    const before = new Checkpoint(SOURCE_FIXTURE);
    const after = new Checkpoint(out);
    const specs = paramSpecs(before.config);
    const p0 = loadParams(before.weights, specs);
    const p1 = loadParams(after.weights, specs);
    for (const s of specs) {
      if (s.name.startsWith("vision_model.")) assert.deepEqual(p1.get(s.name), p0.get(s.name), s.name);
    }
    assert.ok(maxAbs(p1.get("text_model.head.weight")!, p0.get("text_model.head.weight")!) > 0);
    before.close();
    after.close();
  });

  it("reports a bad manifest in one line and exits 2", () => {
    const bad = tempDir();
    writeFileSync(join(bad, "captions.jsonl"), '{"image": "a.png"}\n');
    const r = run("--data", bad, "--out", tempDir());
    assert.equal(r.status, 2);
    assert.match(r.stderr, /captions\.jsonl:1: no caption field/);
  });
});
