/**
 * Held-out scene evaluations (src/train/scenes/eval.ts, used by tools/ablate-recipe.ts) on stand-in
 * models whose answers are known: an oracle scores 100 %, a model that confuses everything scores 0,
 * and the wiring (which image goes with which text, which region is asked for) is what is tested.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SiglipError } from "../src/errors.js";
import type { RgbImage } from "../src/preprocess/decode.js";
import {
  compareSeeds, DENSE_CLASSES, generateScenes, meanSd, patchLabels, sceneDenseProbe, sceneEncoderReport, sceneLabels, sceneLocate, sceneRetrieval, sceneZeroShot, type SceneModel, type SceneRecord,
} from "../src/train/scenes/index.js";

// Images are stand-ins: each carries its record's index in its first byte.
const imagesOf = (records: readonly SceneRecord[]): RgbImage[] => records.map((_, i) => ({ width: 1, height: 1, data: Uint8Array.of(i, 0, 0) }));
const oneHot = (k: number, d: number) => { const v = new Float32Array(d); v[k] = 1; return v; };

/** A model whose image embedding is the one-hot of `imageKey(record)` and text embedding the one-hot of `textKey(text)`. */
function stand(records: readonly SceneRecord[], o: { imageKey: (r: SceneRecord) => number; textKey: (t: string) => number; dim: number; box?: (r: SceneRecord, q: string) => [number, number, number, number] | null; patchShift?: number }): SceneModel {
  const rec = (im: RgbImage) => records[im.data[0]!]!;
  return {
    embedImages: async (ims) => ims.map((im) => oneHot(o.imageKey(rec(im)), o.dim)),
    embedTexts: async (ts) => ts.map((t) => oneHot(o.textKey(t), o.dim)),
    imageFeatures: async (ims) => ims.map((im) => {
      const lab = patchLabels(rec(im).spec, 8);
      const patches = new Float32Array(64 * DENSE_CLASSES.length);
      lab.forEach((c, p) => { patches[p * DENSE_CLASSES.length + ((c + (o.patchShift ?? 0)) % DENSE_CLASSES.length)] = 1; });
      return { gridH: 8, gridW: 8, patches };
    }),
    locateSettled: async (q, ims) => ims.map((im) => {
      const b = o.box?.(rec(im), q) ?? null;
      return b === null ? new SiglipError("output", "no box") : { box: b, score: 1 };
    }),
  };
}

describe("scene evaluations", () => {
  const single = generateScenes({ seed: 5, count: 48, maxObjects: 1 });
  const multi = generateScenes({ seed: 6, count: 30 });
  const labels = sceneLabels();
  const classOf = (r: SceneRecord) => labels.classes.findIndex((c) => c.colour === r.spec.objects[0]!.colour && c.shape === r.spec.objects[0]!.shape);

  it("zero-shot: an oracle is right in every language, a model off by one class never is", async () => {
    const promptClass = (t: string) => Object.values(labels.languages).map((l) => l.prompts.indexOf(t)).find((k) => k >= 0)!;
    const oracle = await sceneZeroShot(stand(single, { imageKey: classOf, textKey: promptClass, dim: 16 }), single, imagesOf(single));
    assert.deepEqual(oracle, { en: 1, de: 1, es: 1, fr: 1, zh: 1 });
    const off = await sceneZeroShot(stand(single, { imageKey: (r) => (classOf(r) + 1) % 16, textKey: promptClass, dim: 16 }), single, imagesOf(single), ["en", "zh"]);
    assert.deepEqual(off, { en: 0, zh: 0 });
  });

  it("retrieval: each scene's caption pairs with its own image; a shifted pairing scores 0", async () => {
    const seen = new Set<string>();
    const uniq = multi.filter((r) => !seen.has(r.caption) && seen.add(r.caption)); // distinct captions: no ties
    assert.ok(uniq.length >= 10);
    const pos = (r: SceneRecord) => uniq.indexOf(r);
    const captionIndex = (t: string) => uniq.findIndex((r) => r.caption === t);
    const ok = await sceneRetrieval(stand(uniq, { imageKey: pos, textKey: captionIndex, dim: uniq.length }), uniq, imagesOf(uniq));
    assert.deepEqual(ok, { imageToText: 1, textToImage: 1 });
    const bad = await sceneRetrieval(stand(uniq, { imageKey: (r) => (pos(r) + 1) % uniq.length, textKey: captionIndex, dim: uniq.length }), uniq, imagesOf(uniq));
    assert.deepEqual(bad, { imageToText: 0, textToImage: 0 });
  });

  it("locate: the first region's text is asked; its box is a hit, a wrong box or no answer a miss", async () => {
    const first = await sceneLocate(stand(multi, { imageKey: () => 0, textKey: () => 0, dim: 1, box: (r, q) => (q === r.regions[0]!.text ? [...r.regions[0]!.box] : null) }), multi, imagesOf(multi));
    assert.deepEqual(first, { accuracy: 1, meanIoU: 1, unanswered: 0 });
    const none = await sceneLocate(stand(multi, { imageKey: () => 0, textKey: () => 0, dim: 1, box: () => null }), multi, imagesOf(multi));
    assert.equal(none.accuracy, 0);
    assert.equal(none.unanswered, multi.length);
    const corner = await sceneLocate(stand(multi, { imageKey: () => 0, textKey: () => 0, dim: 1, box: () => [0, 0, 1, 1] }), multi, imagesOf(multi));
    assert.equal(corner.accuracy, 0);
  });

  it("dense probe: features that encode the patch's class (in any fixed order) give mIoU 1", async () => {
    const train = { records: multi.slice(0, 20), images: imagesOf(multi).slice(0, 20) };
    const test = { records: multi.slice(20), images: imagesOf(multi).slice(20) };
    // the stand-in indexes records by the image's first byte: give it the full list
    const m = stand(multi, { imageKey: () => 0, textKey: () => 0, dim: 1, patchShift: 2 });
    const r = await sceneDenseProbe(m, train, test, { steps: 200, lr: 0.1 });
    assert.equal(r.pixelAccuracy, 1);
    assert.equal(r.mIoU, 1);
  });

  it("encoder report: the three evaluations on their own sets, zero-shot averaged over the languages asked", async () => {
    const promptClass = (t: string) => Object.values(labels.languages).map((l) => l.prompts.indexOf(t)).find((k) => k >= 0) ?? -1;
    const seen = new Set<string>();
    const uniq = multi.filter((r) => promptClass(r.caption) < 0 && !seen.has(r.caption) && seen.add(r.caption));
    const pool = [...single, ...uniq]; // one list, so that each stand-in image names its record
    const images = imagesOf(pool);
    const sets = {
      zeroShot: { records: single, images: images.slice(0, single.length) },
      retrieval: { records: uniq, images: images.slice(single.length) },
      denseTrain: { records: uniq.slice(0, 10), images: images.slice(single.length, single.length + 10) },
      denseTest: { records: uniq.slice(10), images: images.slice(single.length + 10) },
    };
    const dim = 16 + uniq.length;
    const textKey = (t: string) => (promptClass(t) >= 0 ? promptClass(t) : 16 + uniq.findIndex((r) => r.caption === t));
    const oracle = stand(pool, { imageKey: (r) => (single.includes(r) ? classOf(r) : 16 + uniq.indexOf(r)), textKey, dim, patchShift: 1 });
    const r = await sceneEncoderReport(oracle, sets, { langs: ["en", "zh"], probe: { steps: 200, lr: 0.1 } });
    assert.deepEqual(r, { zeroShot: 1, zeroShotPerLang: { en: 1, zh: 1 }, imageToText: 1, textToImage: 1, denseMIoU: 1 });
    // zero-shot wrong everywhere, retrieval still right: the report keeps the evaluations apart
    const off = stand(pool, { imageKey: (r) => (single.includes(r) ? (classOf(r) + 1) % 16 : 16 + uniq.indexOf(r)), textKey, dim, patchShift: 1 });
    const o = await sceneEncoderReport(off, sets, { probe: { steps: 200, lr: 0.1 } });
    assert.equal(o.zeroShot, 0);
    assert.deepEqual(Object.keys(o.zeroShotPerLang), ["en", "de", "es", "fr", "zh"]);
    assert.equal(o.imageToText, 1);
  });
});

describe("seed statistics", () => {
  it("meanSd: the mean and the n − 1 standard deviation; 0 for one seed", () => {
    const r = meanSd([2, 4, 4, 4, 5, 5, 7, 9]);
    assert.equal(r.mean, 5);
    assert.ok(Math.abs(r.sd - Math.sqrt(32 / 7)) < 1e-12);
    assert.deepEqual(meanSd([0.3]), { mean: 0.3, sd: 0 });
    assert.throws(() => meanSd([]), /no values/);
  });

  it("compareSeeds: within noise below 2 sd of the noisier arm, seeds counted both ways", () => {
    const near = compareSeeds([1, 2, 3], [2, 3, 4]); // Δ 1, sd 1
    assert.deepEqual(near, { delta: 1, sd: 1, withinNoise: true, above: 3, below: 0, seeds: 3 });
    const far = compareSeeds([1, 2, 3], [4, 5, 6]); // Δ 3 > 2
    assert.equal(far.withinNoise, false);
    const mixed = compareSeeds([0.5, 0.5, 0.5], [0.4, 0.5, 0.9]); // the noisier arm sets the scale
    assert.equal(mixed.above, 1);
    assert.equal(mixed.below, 1);
    assert.ok(Math.abs(mixed.sd - meanSd([0.4, 0.5, 0.9]).sd) < 1e-15);
    assert.equal(mixed.withinNoise, true);
    const exact = compareSeeds([0.2, 0.2], [0.3, 0.3]); // no spread: any gap is outside noise
    assert.equal(exact.withinNoise, false);
    assert.equal(compareSeeds([0, 0], [0, 0]).withinNoise, true); // equal arms, no spread
    assert.equal(compareSeeds([0.1], [0.9]).withinNoise, true); // one seed: no noise estimate
    assert.throws(() => compareSeeds([1, 2], [1]), /same non-zero number/);
  });
});
