/**
 * Held-out scene evaluations (src/train/scenes/eval.ts, used by tools/ablate-locca.ts) on stand-in
 * models whose answers are known: an oracle scores 100 %, a model that confuses everything scores 0,
 * and the wiring (which image goes with which text, which region is asked for) is what is tested.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SiglipError } from "../src/errors.js";
import type { RgbImage } from "../src/preprocess/decode.js";
import { DENSE_CLASSES, generateScenes, patchLabels, sceneDenseProbe, sceneLabels, sceneLocate, sceneRetrieval, sceneZeroShot, type SceneModel, type SceneRecord } from "../src/train/scenes/index.js";

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
});
