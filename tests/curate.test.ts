/**
 * ACID curation (src/train/curate.ts) against the float64 PyTorch goldens of
 * tools/reference/curate_goldens.py: the per-example losses and learnability scores (from
 * embeddings, and end to end from two checkpoints of different image size and width through
 * our engine), the top-k selection with its tie rule, the trainer's selection at step 0, and a
 * planted-signal check that curation keeps what the teacher finds easy and the student does not;
 * a NaFlex student (its scores equal our inference engine's, `siglip2 train` with curation).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SigLIP2 } from "../src/api.js";
import { SiglipError } from "../src/errors.js";
import { decodeImage, parseImageProcessorConfig, parseNaflexProcessorConfig } from "../src/preprocess/index.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { Curator, checkRatio, exampleLosses, select, superBatchSize, topK, type TeacherModel } from "../src/train/curate.js";
import { FilePairs, type PairRecord } from "../src/train/data.js";
import { paramSpecs } from "../src/train/model.js";
import { NaflexPairs } from "../src/train/naflex-data.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { loadParams } from "../src/train/session.js";
import { Trainer } from "../src/train/trainer.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { tempDir } from "./harness/files.js";
import { writeNaflexPairs } from "./harness/naflex-data.js";
import { FIXTURES, REPO } from "./harness/paths.js";

interface Side { image: number[]; text: number[]; dim: number; scale: number; bias: number }
const golden = JSON.parse(readFileSync(join(FIXTURES, "goldens", "curate.json"), "utf8")) as {
  math: { n: number; keep: number; student: Side; teacher: Side; student_losses: number[]; teacher_losses: number[]; scores: number[]; selected: number[] };
  models: { student_model: string; teacher_model: string; images: string[]; captions: string[]; keep: number; student_ids: number[][]; teacher_ids: number[][]; student_losses: number[]; teacher_losses: number[]; scores: number[]; selected: number[] };
};

const maxRel = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  return m;
};

describe("curation maths (float64 golden)", () => {
  const g = golden.math;
  it("per-example losses of student and teacher (different widths) match PyTorch", () => {
    const s = exampleLosses(g.student.image, g.student.text, g.n, g.student.dim, g.student.scale, g.student.bias);
    const t = exampleLosses(g.teacher.image, g.teacher.text, g.n, g.teacher.dim, g.teacher.scale, g.teacher.bias);
    assert.ok(maxRel(s, g.student_losses) < 1e-12, `student ${maxRel(s, g.student_losses)}`);
    assert.ok(maxRel(t, g.teacher_losses) < 1e-12, `teacher ${maxRel(t, g.teacher_losses)}`);
    const sel = select(Array.from({ length: g.n }, (_, i) => 100 + i), s, t, g.keep);
    assert.ok(maxRel(sel.scores, g.scores) < 1e-12);
    assert.deepEqual(sel.indices, g.selected.map((p) => 100 + p));
  });

  it("the losses sum to n times the batch's big_vision loss", () => {
    // n = 2, zimg = ztxt = I (training-recipe §8.2 case A): L = 0.6931925794591621
    const l = exampleLosses([1, 0, 0, 1], [1, 0, 0, 1], 2, 2, 10, -10);
    assert.ok(Math.abs(l[0]! + l[1]! - 2 * 0.6931925794591621) < 1e-14);
    // image 0 and 1 identical (case B): an image row counts its own pairs, a text column its own
    const b = exampleLosses([1, 0, 1, 0], [1, 0, 0, 1], 2, 2, 10, -10);
    assert.ok(Math.abs(b[0]! + b[1]! - 2 * 5.693192579459162) < 1e-12);
    assert.ok(b[1]! > b[0]!, "the example whose image matches the other caption has the larger loss");
  });

  it("top-k: the highest scores, ties to the lower position, returned in position order", () => {
    assert.deepEqual(topK([1, 3, 3, 2], 2), [1, 2]);
    assert.deepEqual(topK([0, 5, 5, 5, 1], 2), [1, 2]);
    assert.deepEqual(topK([0, 0, 0, 0, 0, 0], 3), [0, 1, 2]);
    assert.deepEqual(topK([-1, -Infinity, 4, Infinity], 2), [2, 3]);
    assert.deepEqual(topK([2, 1], 2), [0, 1]);
  });

  it("a teacher equal to the student scores 0 everywhere and keeps the first k", () => {
    const l = exampleLosses(golden.math.student.image, golden.math.student.text, 10, 6, 10, -3);
    const sel = select([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], l, l.slice(), 4);
    assert.deepEqual([...sel.scores], new Array(10).fill(0));
    assert.deepEqual(sel.indices, [9, 8, 7, 6]);
    assert.equal(sel.stats.scoreKept, 0);
  });

  it("planted signal: kept = hard for the student and easy for the teacher, not merely hard", () => {
    // 16 examples. 0..3 learnable: the student's text is the negative of its image (cos −1),
    // the teacher's equals it (cos +1). 4..7 noisy: cos −1 for both. 8..15: random for both.
    let seed = 7;
    const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
    const n = 16;
    const d = 24;
    const unit = (v: number[]) => { const s = Math.hypot(...v); return v.map((x) => x / s); };
    const e = (i: number, sign = 1) => Array.from({ length: d }, (_, k) => (k === i ? sign : 0));
    const si: number[] = [], st: number[] = [], ti: number[] = [], tt: number[] = [];
    for (let i = 0; i < n; i++) {
      if (i < 8) {
        si.push(...e(i)); st.push(...e(i, -1));
        ti.push(...e(i)); tt.push(...e(i, i < 4 ? 1 : -1));
      } else {
        si.push(...unit(Array.from({ length: d }, rnd))); st.push(...unit(Array.from({ length: d }, rnd)));
        ti.push(...unit(Array.from({ length: d }, rnd))); tt.push(...unit(Array.from({ length: d }, rnd)));
      }
    }
    const student = exampleLosses(si, st, n, d, 10, -10);
    const sel = select(Array.from({ length: n }, (_, i) => i), student, exampleLosses(ti, tt, n, d, 10, -10), 4);
    assert.deepEqual(sel.indices, [0, 1, 2, 3]);
    assert.ok(sel.stats.scoreKept > sel.stats.scoreAll);
    assert.ok(sel.stats.teacherKept < sel.stats.teacherAll);
    // the hardest examples for the student alone are not the same: the noisy ones tie with them
    assert.ok(topK(student, 8).every((i) => i < 8));
  });

  it("ratios outside (0, 1] are one clear line; super-batch = round(B / F)", () => {
    for (const r of [0, -0.5, 1.0001, NaN, Infinity]) {
      assert.throws(() => checkRatio(r), (e: unknown) => e instanceof SiglipError && e.code === "usage" && /--curate-ratio must be a number in \(0, 1\]/.test(e.message));
    }
    assert.equal(superBatchSize(32, 0.5), 64);
    assert.equal(superBatchSize(3, 0.3), 10);
    assert.equal(superBatchSize(5, 1), 5);
    assert.equal(superBatchSize(32, 0.75), 43);
  });
});

describe("curation through our engine (two checkpoints, float64 golden)", () => {
  const g = golden.models;
  const studentDir = join(FIXTURES, "..", "..", g.student_model);
  const teacherDir = join(FIXTURES, "..", "..", g.teacher_model);
  let teacher: SigLIP2;
  let ckpt: Checkpoint;
  let data: FilePairs;
  before(async () => {
    teacher = await SigLIP2.load(teacherDir, { threads: 1 });
    ckpt = new Checkpoint(studentDir);
    const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
    const records: PairRecord[] = g.images.map((f, i) => ({ image: join(FIXTURES, "images", f), caption: g.captions[i]! }));
    data = new FilePairs(records, parseImageProcessorConfig(ckpt.preprocessorConfig, ckpt.config.vision_config.image_size), tok, ckpt.config.text_config.max_position_embeddings);
  });
  after(async () => {
    await teacher.close();
    ckpt.close();
  });

  it("both sides tokenise the captions as transformers did", async () => {
    const b = await data.batch(g.images.map((_, i) => i));
    assert.deepEqual(Array.from(b.inputIds, Number), g.student_ids.flat());
    assert.deepEqual((await teacher.tokenize(g.captions)).map((r) => [...r]), g.teacher_ids);
  });

  it("student (32 px, width 32) and teacher (30 px, width 40) losses, scores and selection match PyTorch", async () => {
    const params = loadParams(ckpt.weights, paramSpecs(ckpt.config));
    const cur = await Curator.create(ckpt.config, teacher, 0.5, 1);
    try {
      const idx = g.images.map((_, i) => i);
      const sel = await cur.select(params, data, idx, g.keep);
      assert.ok(maxRel(sel.student, g.student_losses) < 2e-5, `student ${maxRel(sel.student, g.student_losses)}`);
      assert.ok(maxRel(sel.teacher, g.teacher_losses) < 2e-5, `teacher ${maxRel(sel.teacher, g.teacher_losses)}`);
      assert.deepEqual(sel.indices, g.selected);
      // the order of the super-batch changes nothing but the order
      const rev = await cur.select(params, data, [...idx].reverse(), g.keep);
      assert.deepEqual([...rev.indices].sort(), [...g.selected].sort());
    } finally {
      await cur.release();
    }
  });

  it("the trainer's step 0 keeps the golden top half and logs its statistics", async () => {
    const params = loadParams(ckpt.weights, paramSpecs(ckpt.config));
    const trainer = await Trainer.create(ckpt.config, params, {
      batchSize: 4, accumSteps: 1, steps: 2, seed: 3, freeze: "none", threads: 1,
      optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-3, totalSteps: 2, warmupSteps: 0 },
      curate: { teacher, ratio: 0.5, teacherId: "fixres-odd" },
    });
    try {
      const s = await trainer.trainStep(data);
      const c = s.curation!;
      const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
      assert.equal(c.superBatch, 8);
      assert.equal(c.kept, 4);
      assert.ok(Math.abs(c.scoreKept - mean(g.selected.map((i) => g.scores[i]!))) < 1e-4);
      assert.ok(Math.abs(c.scoreAll - mean(g.scores)) < 1e-4);
      assert.ok(Math.abs(c.threshold - Math.min(...g.selected.map((i) => g.scores[i]!))) < 1e-4);
      assert.deepEqual(trainer.history[0]!.curation, c);
      const s1 = await trainer.trainStep(data); // the student moved: scored again, still a top half
      assert.ok(s1.curation!.scoreKept >= s1.curation!.scoreAll);
    } finally {
      await trainer.release();
    }
  });

  it("a teacher whose embeddings have two widths is one clear line", async () => {
    const bad: TeacherModel = {
      embedImages: async (xs) => xs.map(() => new Float32Array([1, 0, 0])),
      embedTexts: async (xs) => xs.map(() => new Float32Array([1, 0])),
      logitParams: () => ({ logitScale: 0, logitBias: 0 }),
    };
    const cur = await Curator.create(ckpt.config, bad, 0.5, 1);
    try {
      await assert.rejects(cur.teacherLosses(data, [0, 1]), (e: unknown) => e instanceof SiglipError && /image embeddings have 3 values, text embeddings 2/.test(e.message));
    } finally {
      await cur.release();
    }
  });
});

describe("curation with a NaFlex student (naflex-f32; teacher: the FixRes fixres-odd)", () => {
  const g = golden.models;
  const naflexDir = join(FIXTURES, "models", "naflex-f32");
  const paths = g.images.map((f) => join(FIXTURES, "images", f));
  let teacher: SigLIP2;
  let student: SigLIP2;
  let ckpt: Checkpoint;
  let data: NaflexPairs;
  before(async () => {
    teacher = await SigLIP2.load(join(FIXTURES, "..", "..", g.teacher_model), { threads: 1 });
    student = await SigLIP2.load(naflexDir, { threads: 1 });
    ckpt = new Checkpoint(naflexDir);
    const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
    const processor = parseNaflexProcessorConfig(ckpt.preprocessorConfig, ckpt.config.vision_config.patch_size);
    data = new NaflexPairs((i) => decodeImage(paths[i]!), g.captions, processor, tok, ckpt.config.text_config.max_position_embeddings, true, { image: (i) => paths[i]! });
  });
  after(async () => {
    await teacher.close();
    await student.close();
    ckpt.close();
  });

  it("the student's per-example losses are those of our inference engine's embeddings of the same images (at max_num_patches)", async () => {
    const params = loadParams(ckpt.weights, paramSpecs(ckpt.config));
    const cur = await Curator.create(ckpt.config, teacher, 0.5, 1);
    try {
      const idx = paths.map((_, i) => i);
      const got = await cur.studentLosses(params, data, idx);
      const img = await student.embedImages(paths);
      const txt = await student.embedTexts(g.captions);
      const { logitScale, logitBias } = student.logitParams();
      const d = img[0]!.length;
      const want = exampleLosses(Float32Array.from(img.flatMap((e) => [...e])), Float32Array.from(txt.flatMap((e) => [...e])), idx.length, d, Math.exp(logitScale), logitBias);
      assert.ok(maxRel(got, want) < 1e-4, `student ${maxRel(got, want)}`);
      // the teacher reads the original files through its own (FixRes) preprocessing: the golden's values
      const sel = await cur.select(params, data, idx, g.keep);
      assert.ok(maxRel(sel.teacher, g.teacher_losses) < 2e-5, `teacher ${maxRel(sel.teacher, g.teacher_losses)}`);
      assert.equal(sel.indices.length, g.keep);
    } finally {
      await cur.release();
    }
  });

  it("siglip2 train on a NaFlex checkpoint with --curate-teacher logs the selection of every step", async () => {
    const dir = await writeNaflexPairs(8, 3);
    const out = join(tempDir(), "out");
    const r = spawnSync(process.execPath, [join(REPO, "dist", "cli", "main.js"), "train", "--model", naflexDir, "--data", dir, "--out", out, "--threads", "1",
      "--steps", "2", "--batch-size", "4", "--lr", "1e-3", "--seed", "1", "--max-patches", "8-30", "--curate-teacher", join(FIXTURES, "..", "..", g.teacher_model), "--curate-ratio", "0.5"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { step: number; curation?: { super_batch: number; kept: number; score_kept: number; score_all: number } });
    const steps = lines.slice(0, -1); // then the run's summary line
    assert.deepEqual(steps.map((l) => l.step), [1, 2]);
    for (const s of steps) {
      assert.equal(s.curation!.super_batch, 8);
      assert.equal(s.curation!.kept, 4);
      assert.ok(s.curation!.score_kept >= s.curation!.score_all);
    }
  });
});
