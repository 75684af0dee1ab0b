/**
 * Self-distillation (SILC) and masked prediction (TIPS), src/train/distill.ts and views.ts:
 * the teacher's head outputs, centring, the two losses and every gradient (towers, heads, mask
 * token) against PyTorch float64 (tools/reference/distill_goldens.py), the EMA and centre
 * updates, masking, the crop resampler, the switch at 80% and resume across it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import sharp from "sharp";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { InMemoryPairs } from "../src/train/data.js";
import {
  DEFAULT_DISTILL, DISTILL_FILE, TeacherSession, checkDistill, distillSpecs, emaUpdate, initDistillParams, isDistillParam,
  switchStep, teacherProbs, type DistillConfig,
} from "../src/train/distill.js";
import { paramSpecs } from "../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { Rng } from "../src/train/rng.js";
import { TrainSession, loadParams, type Params } from "../src/train/session.js";
import { synthesize } from "../src/train/synthetic.js";
import { Trainer } from "../src/train/trainer.js";
import { cropResize, makeViews, maskedCount, patchMasks, randomCropBox } from "../src/train/views.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { tempDir } from "./harness/files.js";
import { maxErr } from "./harness/locca-golden.js";
import { distillGolden as golden, distillManifest as manifest, goldenCentreUpdate } from "./harness/distill-golden.js";
import { REPO } from "./harness/paths.js";
import { SOURCE_FIXTURE } from "./harness/trained-fixture.js";

const copy = (p: Params): Params => new Map([...p].map(([k, v]) => [k, v.slice()]));
/** |a − ref| ≤ tol·max(1, ‖ref‖∞). */
function close(a: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string): void {
  const m = maxErr(a, ref);
  assert.ok(m.abs <= tol * Math.max(1, m.scale), `${what}: max-abs ${m.abs.toExponential(2)} (‖ref‖∞ ${m.scale.toExponential(2)})`);
}

describe("self-distillation + masked prediction vs PyTorch float64", async () => {
  const g = golden();
  const K = manifest.head.out;

  it("teacher: head outputs of the global view, centred and sharpened probabilities, centre update", async () => {
    const t = await TeacherSession.create(g.v, manifest.head, { threads: 1 });
    const out = await t.run(g.teacher, g.batch.distill!.global, manifest.images);
    await t.release();
    close(out.sd, g.gold.readFloat32("teacher_sd"), 1e-5, "teacher_sd");
    close(out.mp, g.gold.readFloat32("teacher_mp"), 1e-5, "teacher_mp");
    // probabilities from the golden's own head outputs: the centring/softmax arithmetic alone
    close(teacherProbs(g.gold.readFloat32("teacher_sd"), K, g.gold.readFloat32("center.sd"), manifest.teacher_temp), g.gold.readFloat32("sd_teacher_probs"), 1e-5, "P_t (image)");
    close(teacherProbs(g.gold.readFloat32("teacher_mp"), K, g.gold.readFloat32("center.mp"), manifest.teacher_temp), g.gold.readFloat32("mp_teacher_probs"), 1e-5, "P_t (patch)");
    // centring matters: without it the probabilities differ
    assert.ok(maxErr(teacherProbs(g.gold.readFloat32("teacher_sd"), K, new Float32Array(K), manifest.teacher_temp), g.gold.readFloat32("sd_teacher_probs")).abs > 1e-3);
    for (const which of ["sd", "mp"] as const) close(goldenCentreUpdate(g.gold, which), g.gold.readFloat32(`center_after.${which}`), 1e-6, `centre ${which}`);
  });

  it("the losses and every gradient (towers, t', b, both heads, the mask token) match autograd", async () => {
    const s = await TrainSession.create(g.ckpt.config, { batch: manifest.images, threads: 1, distill: g.opts });
    const r = await s.step(g.params, g.batch);
    for (const k of ["loss", "sigmoid_loss", "sd_loss", "mp_loss"] as const) {
      const got = k === "loss" ? r.loss : k === "sigmoid_loss" ? r.sigmoidLoss! : k === "sd_loss" ? r.sdLoss! : r.mpLoss!;
      assert.ok(Math.abs(got - g.gold.readFloat32(k)[0]!) < 1e-5 * Math.max(1, got), `${k}: ${got} vs ${g.gold.readFloat32(k)[0]}`);
    }
    assert.equal(r.grads.size, 103);
    for (const [name, grad] of r.grads) close(grad, g.gold.readFloat32(`grad.${name}`), 1e-5, `grad.${name}`);
    for (const name of ["distill.mask_token", "distill.sd_head.last_layer.weight", "distill.mp_head.fc1.weight", "vision_model.embeddings.position_embedding.weight", "vision_model.head.probe"]) {
      assert.ok(r.grads.get(name)!.some((x) => x !== 0), `${name} has a gradient`);
    }

    // MP at masked positions only: a different teacher target at an unmasked patch changes nothing
    const mask = g.batch.distill!.mask;
    const unmasked = mask.indexOf(0);
    const masked = mask.indexOf(1);
    const moved = (at: number) => {
      const t = g.batch.distill!.mpTarget.slice();
      const row = [...t.subarray(at * K, (at + 1) * K)];
      t.fill(0, at * K, (at + 1) * K);
      t[at * K + row.indexOf(Math.min(...row))] = 1; // all mass on the teacher's least likely output
      return { ...g.batch, distill: { ...g.batch.distill!, mpTarget: t } };
    };
    const a = await s.step(g.params, moved(unmasked));
    assert.equal(a.mpLoss, r.mpLoss);
    const b = await s.step(g.params, moved(masked));
    assert.ok(Math.abs(b.mpLoss! - r.mpLoss!) > 1e-4, `${b.mpLoss} vs ${r.mpLoss}`);
    // the sigmoid loss sees the original images only: other views leave it unchanged
    const views = makeViews(g.batch.pixelValues, manifest.images, { imageSize: 32, globalCrop: [0.4, 1], localCrop: [0.05, 0.4], localSize: 16, localViews: 2 }, new Rng(3));
    const c = await s.step(g.params, { ...g.batch, distill: { ...g.batch.distill!, local: views.local, global: views.global } });
    assert.equal(c.sigmoidLoss, r.sigmoidLoss);
    assert.notEqual(c.sdLoss, r.sdLoss);
    await s.release();
  });

  it("EMA: θ_t ← μθ_t + (1−μ)θ_s elementwise (golden), μ = 0 copies the student, μ = 1 keeps the teacher", () => {
    const t = copy(g.teacher);
    emaUpdate(t, g.params, manifest.ema_momentum);
    assert.equal(t.size, [...g.params.keys()].filter((n) => n.startsWith("vision_model.")).length + 14); // the image tower + 2 heads × 7
    for (const [n, v] of t) close(v, g.gold.readFloat32(`ema.${n}`), 1e-6, `ema ${n}`);
    const zero = copy(g.teacher);
    emaUpdate(zero, g.params, 0);
    for (const [n, v] of zero) assert.deepEqual(v, g.params.get(n), n);
    const one = copy(g.teacher);
    emaUpdate(one, g.params, 1);
    for (const [n, v] of one) assert.deepEqual(v, g.teacher.get(n), n);
    assert.ok(![...t.keys()].includes("distill.mask_token"), "the teacher has no mask token");
  });

  it("crop + resize equals torch interpolate(bilinear, antialias) of the box, flipped", () => {
    const out = cropResize(g.gold.readFloat32("crop.src"), 3, 32, 32, { top: 3, left: 5, height: 13, width: 20, flip: true }, 16);
    close(out, g.gold.readFloat32("crop.out"), 1e-6, "crop");
  });
});

describe("views and masks", () => {
  it("crop boxes lie inside the image with area in range (or the whole image), flips are p = 0.5", () => {
    const rng = new Rng(9);
    let flips = 0;
    for (let i = 0; i < 2000; i++) {
      const b = randomCropBox(64, 64, [0.05, 0.4], rng);
      assert.ok(b.top >= 0 && b.left >= 0 && b.top + b.height <= 64 && b.left + b.width <= 64);
      const f = (b.height * b.width) / 4096;
      assert.ok(f > 0.03 && f < 0.45, String(f)); // rounding of the sides widens the range a little
      flips += b.flip ? 1 : 0;
    }
    assert.ok(Math.abs(flips / 2000 - 0.5) < 0.04);
  });

  it("masks: exactly round(0.5·N) patches per image, different per image and step", () => {
    const m = patchMasks(5, 16, 0.5, new Rng(1));
    for (let i = 0; i < 5; i++) assert.equal(m.subarray(i * 16, (i + 1) * 16).reduce((a, b) => a + b, 0), 8);
    assert.notDeepEqual(m.subarray(0, 16), m.subarray(16, 32));
    assert.equal(maskedCount(49, 0.5), 25);
    assert.equal(maskedCount(2, 0.01), 1);
    assert.equal(maskedCount(2, 0.99), 1);
  });

  it("settings: bad values are one usage line; the switch step is the first with step/T ≥ start", () => {
    const v = new Checkpoint(SOURCE_FIXTURE).config.vision_config;
    assert.equal(checkDistill(DEFAULT_DISTILL, v).localSize, 16); // 96/224 of 32 px in 8-px patches: 1.7 → 2 patches
    for (const bad of [{ start: 1 }, { emaMomentum: 1.5 }, { localCrop: [0.5, 0.1] as const }, { localSize: 3 }, { localViews: 0 }, { studentTemp: 0 }, { maskRatio: 1 }]) {
      assert.throws(() => checkDistill({ ...DEFAULT_DISTILL, ...bad } as DistillConfig, v), (e: Error & { code?: string }) => e.code === "usage" && !e.message.includes("\n"));
    }
    assert.equal(switchStep(0.8, 10), 8);
    assert.equal(switchStep(0.8, 5), 4);
    assert.equal(switchStep(0.8, 7), 6); // 5.6 → 6
    assert.equal(switchStep(0, 7), 0);
  });
});

describe("the switch at 80% and resume across it", async () => {
  const ckpt = new Checkpoint(SOURCE_FIXTURE);
  const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
  const pairs = synthesize(16, 32, 11);
  const data = new InMemoryPairs(pairs.map((p) => p.pixels), pairs.map((p) => p.caption), tok, 64);
  const params = loadParams(ckpt.weights, paramSpecs(ckpt.config));
  const configJson = readFileSync(join(SOURCE_FIXTURE, "config.json"), "utf8");
  const distill: DistillConfig = { ...DEFAULT_DISTILL, localViews: 2, head: { hidden: 16, bottleneck: 8, out: 32 } };
  const make = (steps: number, d: DistillConfig = distill) => Trainer.create(ckpt.config, copy(params), {
    batchSize: 4, accumSteps: 1, steps, seed: 2, freeze: "none", threads: 1, distill: d,
    optimizer: { ...DEFAULT_OPTIMIZER, warmupSteps: 1, totalSteps: steps },
  });

  it("before: no heads, teacher or their state; at the switch: teacher = student bit for bit, fresh heads, zero moments; after: all losses", async () => {
    const t = await make(5); // switch at step 4
    assert.equal(t.distillStart, 4);
    for (let i = 0; i < 4; i++) {
      const info = await t.trainStep(data);
      assert.equal(t.distill, null);
      assert.equal(info.sdLoss, undefined);
      assert.ok(![...t.params.keys()].some(isDistillParam) && !t.optimizer.trainable.some(isDistillParam));
    }
    assert.deepEqual(Object.keys(t.history[3]!).sort(), ["gradNorm", "loss", "lr", "step"]);
    await t.prepareStep();
    const d = t.distill!;
    assert.ok(d);
    const names = distillSpecs(ckpt.config.vision_config, distill.head).map((s) => s.name);
    assert.deepEqual(t.specs.slice(-names.length).map((s) => s.name), names); // added after the existing parameters
    for (const [n, v] of d.teacher) assert.deepEqual(v, t.params.get(n), `teacher ${n} = student`);
    assert.equal(d.teacher.size, [...t.params.keys()].filter((n) => n.startsWith("vision_model.")).length + names.length - 1);
    const fresh = initDistillParams(t.specs, 2);
    for (const n of names) {
      assert.deepEqual(t.params.get(n), fresh.get(n), n);
      assert.ok(t.optimizer.m.get(n)!.every((x) => x === 0) && t.optimizer.v.get(n)!.every((x) => x === 0), `${n} moments zero`);
    }
    assert.ok(d.sdCenter.every((x) => x === 0) && d.mpCenter.every((x) => x === 0));
    const before = copy(t.params);
    const info = await t.trainStep(data);
    assert.ok(info.sdLoss! > 0 && info.mpLoss! > 0 && info.sigmoidLoss! > 0);
    assert.ok(Math.abs(info.loss - info.sigmoidLoss! - 0.25 * (info.sdLoss! + 0.25 * info.mpLoss!)) < 1e-4);
    // fresh state: the first update of a new parameter moves each element by lr·sched·(≈1) (Adam's bias-corrected first step)
    const lr = t.history[4]!.lr;
    const w = "distill.sd_head.fc2.bias"; // no decay
    const moved = t.params.get(w)!.map((x, i) => Math.abs(x - before.get(w)![i]!) / lr);
    assert.ok(moved.every((x) => x === 0 || Math.abs(x - 1) < 1e-3), String(moved.slice(0, 4)));
    // the EMA: the teacher moved towards the new student (μ = 0.996)
    const n = "vision_model.post_layernorm.weight";
    const exp = before.get(n)!.map((x, i) => 0.996 * x + 0.004 * t.params.get(n)![i]!);
    close(d.teacher.get(n)!, exp, 1e-6, "ema after the step");
    assert.ok(d.sdCenter.some((x) => x !== 0));

    // saved: heads + teacher + centres in distill.safetensors, none of it in model.safetensors
    const dir = tempDir();
    t.save(dir, configJson, SOURCE_FIXTURE);
    const model = SafetensorsFile.open(join(dir, "model.safetensors"));
    assert.ok(!model.names().some((x) => isDistillParam(x) || x.startsWith("teacher.")));
    model.close();
    const f = SafetensorsFile.open(join(dir, DISTILL_FILE));
    assert.ok(names.every((x) => f.has(x)) && f.has("center.sd") && f.has("teacher.vision_model.head.probe") && f.has("teacher.distill.mp_head.last_layer.weight"));
    assert.equal(f.metadata["step"], "5");
    f.close();
    await t.release();
  });

  it("resume before and after the switch continues bit for bit", async () => {
    const ref = await make(6); // switch at 5 (4.8 → 5)
    while (ref.step < 6) await ref.trainStep(data);
    for (const stop of [3, 5]) {
      const dir = tempDir();
      const a = await make(6);
      while (a.step < stop) await a.trainStep(data);
      a.save(dir, configJson, SOURCE_FIXTURE);
      await a.release();
      const b = await make(6);
      b.resume(dir);
      while (b.step < 6) await b.trainStep(data);
      for (const [n, v] of ref.params) assert.deepEqual(b.params.get(n), v, `${stop}: ${n}`);
      for (const [n, v] of ref.distill!.teacher) assert.deepEqual(b.distill!.teacher.get(n), v, `${stop}: teacher ${n}`);
      assert.deepEqual(b.distill!.sdCenter, ref.distill!.sdCenter);
      for (const n of ref.optimizer.trainable) assert.deepEqual(b.optimizer.m.get(n), ref.optimizer.m.get(n), `${stop}: m ${n}`);
      assert.deepEqual(b.history, ref.history);
      await b.release();
    }
    await ref.release();
    // other distillation settings are refused on resume in one line
    const dir = tempDir();
    const a = await make(6);
    await a.trainStep(data);
    a.save(dir, configJson, SOURCE_FIXTURE);
    await a.release();
    const c = await make(6, { ...distill, emaMomentum: 0.99 });
    assert.throws(() => c.resume(dir), /distill\.emaMomentum 0\.996 → 0\.99/);
    await c.release();
  });
});

describe("siglip2 train --distill (CLI)", async () => {
  const BIN = join(REPO, "dist", "cli", "main.js");
  const dir = tempDir();
  const pairs = synthesize(8, 32, 5);
  const rows: string[] = [];
  for (const [i, p] of pairs.entries()) {
    const rgb = Buffer.alloc(32 * 32 * 3);
    for (let c = 0; c < 3; c++) for (let k = 0; k < 32 * 32; k++) rgb[k * 3 + c] = Math.round((p.pixels[c * 1024 + k]! * 0.5 + 0.5) * 255);
    await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(dir, `img${i}.png`));
    rows.push(JSON.stringify({ image: `img${i}.png`, caption: p.caption }));
  }
  writeFileSync(join(dir, "data.jsonl"), `${rows.join("\n")}\n`);
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, "train", "--model", SOURCE_FIXTURE, "--threads", "1", "--data", join(dir, "data.jsonl"), ...args], { encoding: "utf8" });

  it("switches on at --distill-start, logs the parts, --stop-at + --resume across the switch is byte-exact, transformers-layout model.safetensors", () => {
    const args = ["--steps", "3", "--batch-size", "4", "--lr", "1e-3", "--distill", "--distill-start", "0.5", "--local-views", "2", "--distill-head", "16,8,32", "--ema-momentum", "0.99"];
    const full = tempDir();
    const a = run("--out", full, ...args);
    assert.equal(a.status, 0, a.stderr);
    const lines = a.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines[0].sd_loss, undefined); // step 1: before the switch (step 2 of 3 = 0.5 of the run)
    assert.equal(lines[1].sd_loss, undefined);
    assert.ok(lines[2].sd_loss > 0 && lines[2].mp_loss > 0 && lines[2].sigmoid_loss > 0);
    const split = tempDir();
    assert.equal(run("--out", split, ...args, "--stop-at", "2").status, 0);
    assert.ok(!existsSync(join(split, DISTILL_FILE)));
    const b = run("--out", split, ...args, "--resume");
    assert.equal(b.status, 0, b.stderr);
    for (const f of ["model.safetensors", DISTILL_FILE, "optimizer.safetensors"]) assert.deepEqual(readFileSync(join(split, f)), readFileSync(join(full, f)), f);
    const m = SafetensorsFile.open(join(full, "model.safetensors"));
    const src = SafetensorsFile.open(join(SOURCE_FIXTURE, "model.safetensors"));
    assert.deepEqual([...m.names()].sort(), [...src.names()].sort());
    m.close();
    src.close();
    const state = JSON.parse(readFileSync(join(full, "trainer_state.json"), "utf8"));
    assert.equal(state.run.distill.emaMomentum, 0.99);
  });

  it("distillation flags without --distill, and bad values, are one usage line", () => {
    for (const [args, re] of [
      [["--local-views", "4"], /--local-views applies to self-distillation; add --distill/],
      [["--distill", "--local-crop", "0.5"], /--local-crop "0\.5": expected 2 comma-separated numbers/],
      [["--distill", "--global-crop", "0.5,0.1"], /--global-crop 0\.5,0\.1 must be two area fractions/],
      [["--distill", "--distill-head", "8,4,x"], /--distill-head "8,4,x": expected 3 comma-separated integers/],
      [["--distill", "--freeze", "vision"], /cannot be combined with --freeze vision/],
    ] as const) {
      const r = run("--out", tempDir(), "--steps", "1", "--batch-size", "4", ...args);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
  });
});
