/**
 * Evaluation metrics (src/tasks/metrics.ts) on toys whose answers are known by hand
 * (training-recipe.md §8.2 items 34–35), plus the tie and protocol rules a wrong metric breaks.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { accuracyAtIoU, boxIoU, classificationMetrics, ensembleClassEmbeddings, pessimisticRank, retrievalMetrics } from "../src/tasks/metrics.js";
import { Rng } from "../src/train/rng.js";

const f32 = (...v: number[]) => Float32Array.from(v);
const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);

describe("zero-shot classification metrics", () => {
  it("an image equal to its class's mean prompt embedding is always right (item 34)", () => {
    const rng = new Rng(3); const rnd = () => rng.next();
    const unit = (d: number) => { const v = Float32Array.from({ length: d }, () => rnd() - 0.5); const n = Math.hypot(...v); return v.map((x) => x / n); };
    const perClass = Array.from({ length: 6 }, () => Array.from({ length: 4 }, () => unit(16)));
    const classes = ensembleClassEmbeddings(perClass);
    const scores = classes.map((im) => classes.map((c) => dot(im, c)));
    const m = classificationMetrics(scores, [0, 1, 2, 3, 4, 5], ["a", "b", "c", "d", "e", "f"]);
    assert.equal(m.top1, 1);
    assert.equal(m.meanPerClassTop1, 1);
  });

  it("prompt ensembling normalises the mean (a longer prompt vector does not dominate)", () => {
    const [e] = ensembleClassEmbeddings([[f32(1, 0), f32(0, 1)]]);
    assert.ok(Math.abs(e![0]! - Math.SQRT1_2) < 1e-7 && Math.abs(e![1]! - Math.SQRT1_2) < 1e-7);
  });

  it("top-1, top-5 and per-class numbers on a hand-made case", () => {
    // 7 classes; image 0 (class 0) right; image 1 (class 1) second; image 2 (class 1) sixth
    const s = [
      [9, 1, 2, 3, 4, 5, 6],
      [9, 8, 1, 2, 3, 4, 5],
      [9, 1, 8, 7, 6, 5, 4],
    ];
    const m = classificationMetrics(s, [0, 1, 1], ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
    assert.equal(m.top1, 1 / 3);
    assert.equal(m.top5, 2 / 3);
    assert.deepEqual(m.perClass.slice(0, 2), [{ label: "c0", n: 1, top1: 1, top5: 1 }, { label: "c1", n: 2, top1: 0, top5: 0.5 }]);
    assert.equal(m.meanPerClassTop1, 0.5); // mean over the two classes with images
  });

  it("ties count against the right answer: a constant model scores 0, not 100%", () => {
    const m = classificationMetrics([[1, 1, 1], [1, 1, 1]], [0, 2], ["a", "b", "c"]);
    assert.equal(m.top1, 0);
    assert.equal(pessimisticRank([1, 1, 1], 1), 2);
  });

  it("bad shapes and labels are one clear error", () => {
    assert.throws(() => classificationMetrics([[1, 2]], [5], ["a", "b"]), /label 5 is not a class index/);
    assert.throws(() => classificationMetrics([[1, 2]], [0, 1], ["a", "b"]), /1 score rows for 2 labels/);
  });
});

describe("retrieval metrics", () => {
  it("identity similarity gives R@1 = 1 both ways (item 35)", () => {
    const n = 10;
    const sim = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
    const m = retrievalMetrics(sim, [...Array(n).keys()]);
    assert.equal(m.imageToText["R@1"], 1);
    assert.equal(m.textToImage["R@1"], 1);
  });

  it("a random similarity gives R@1 ≈ 1/n", () => {
    const rng = new Rng(11); const rnd = () => rng.next();
    const n = 40;
    let sum = 0;
    const trials = 50;
    for (let k = 0; k < trials; k++) {
      const sim = Array.from({ length: n }, () => Array.from({ length: n }, () => rnd()));
      sum += retrievalMetrics(sim, [...Array(n).keys()]).textToImage["R@1"]!;
    }
    assert.ok(Math.abs(sum / trials - 1 / n) < 0.012, `mean R@1 ${sum / trials}`);
  });

  it("several captions per image: image→text is a hit when any of its captions ranks in", () => {
    // 2 images, 4 texts: texts 0,1 of image 0; texts 2,3 of image 1
    const sim = [
      [0.1, 0.9, 0.5, 0.2], // image 0: best text is 1 (its own) → hit@1
      [0.8, 0.1, 0.3, 0.2], // image 1: its texts rank 2nd and 3rd → miss@1, hit@5
    ];
    const m = retrievalMetrics(sim, [0, 0, 1, 1], [1, 2]);
    assert.deepEqual(m.imageToText, { "R@1": 0.5, "R@2": 1 });
    // text→image: t0 → image 1 (wrong), t1 → image 0 (right), t2 → image 0 (wrong), t3 → tie 0.2/0.2 (counted wrong)
    assert.deepEqual(m.textToImage, { "R@1": 0.25, "R@2": 1 });
  });
});

describe("referring-expression accuracy", () => {
  it("IoU of known boxes", () => {
    assert.equal(boxIoU([0, 0, 2, 2], [1, 1, 3, 3]), 1 / 7);
    assert.equal(boxIoU([0, 0, 1, 1], [2, 2, 3, 3]), 0);
    assert.equal(boxIoU([0, 0, 4, 4], [0, 0, 4, 4]), 1);
    assert.equal(boxIoU([0, 0, 0, 4], [0, 0, 0, 4]), 0, "empty boxes");
  });

  it("Acc@0.5 counts IoU ≥ 0.5 (the boundary included)", () => {
    // IoU of [0,0,2,1] with [0,0,1,1] is exactly 0.5
    assert.equal(accuracyAtIoU([[0, 0, 2, 1], [5, 5, 6, 6]], [[0, 0, 1, 1], [0, 0, 1, 1]]), 0.5);
  });
});
