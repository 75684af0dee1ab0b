/**
 * The committed demo model (models/siglip2-demo, trained by tools/make-demo-model.ts with our own
 * trainer): transformers loads the checkpoint our trainer wrote, and its token ids, embeddings and
 * logits for the two committed example images and texts in five languages are ours
 * (goldens: tools/reference/demo_goldens.py). And the model has learned something: its captions
 * and zero-shot labels of the example scenes name the shapes the renderer drew.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { SigLIP2 } from "../src/api.js";
import { boxIoU } from "../src/tasks/metrics.js";
import { generateScenes } from "../src/train/scenes/index.js";
import { FIXTURES, REPO } from "./harness/paths.js";

const DEMO = join(REPO, "models", "siglip2-demo");
const golden = JSON.parse(readFileSync(join(FIXTURES, "goldens", "demo-model.json"), "utf8")) as {
  images: string[]; texts: string[]; input_ids: number[][]; image_embeds: number[][]; text_embeds: number[][]; logits_per_image: number[][];
};

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

describe("demo model (models/siglip2-demo)", () => {
  let model: SigLIP2;
  const images = golden.images.map((f) => join(DEMO, f));
  after(async () => model?.close());

  it("tokenizes like transformers' Siglip2Tokenizer on the same files", async () => {
    model = await SigLIP2.load(DEMO);
    const ids = await model.tokenize(golden.texts);
    assert.deepEqual(ids.map((r) => [...r]), golden.input_ids);
  });

  it("embeds images and texts as transformers does (max |Δ| ≤ 1e-5), logits included", async () => {
    const ie = await model.embedImages(images);
    const te = await model.embedTexts(golden.texts);
    for (let i = 0; i < ie.length; i++) assert.ok(maxAbs(ie[i]!, golden.image_embeds[i]!) <= 1e-5, `image ${i}: ${maxAbs(ie[i]!, golden.image_embeds[i]!)}`);
    for (let i = 0; i < te.length; i++) assert.ok(maxAbs(te[i]!, golden.text_embeds[i]!) <= 1e-5, `text ${i}: ${maxAbs(te[i]!, golden.text_embeds[i]!)}`);
    const { logits } = model.similarity(ie, te);
    for (let i = 0; i < logits.length; i++) assert.ok(maxAbs(logits[i]!, golden.logits_per_image[i]!) <= 1e-4, `logits ${i}`);
  });

  it("has learned the scenes: example-2 (one green triangle) is classified and captioned as such", async () => {
    const [scores] = await model.classify([images[1]!], ["red circle", "green triangle", "blue square", "yellow star", "green square", "blue triangle"]);
    assert.equal(scores![0]!.label, "green triangle");
    const [cap] = await model.caption([images[1]!]);
    assert.equal(cap!.caption, "a green triangle");
  });

  it("locates: the README's query finds the green square of example-1 (IoU ≥ 0.5 with the renderer's box)", async () => {
    // example-1 is scene 0 of tools/make-demo-model.ts's examples (seed SEED + 4, 128 px); its
    // regions are the renderer's boxes. A decoder that ignored where things are would miss it.
    const [scene] = generateScenes({ seed: 20261202 + 4, count: 2, size: 128, langs: ["en"] });
    const truth = scene!.regions.find((r) => r.text === "the green square")!;
    const [hit] = await model.locate("the green square", [images[0]!]);
    const iou = boxIoU(hit!.box, truth.box);
    assert.ok(iou >= 0.5, `IoU ${iou.toFixed(3)}: box ${JSON.stringify(hit!.box)} vs ${JSON.stringify(truth.box)}`);
  });

  it("constrained decoding turns an answer that is not a box into one (the query \"red circle\", which training never phrased so)", async () => {
    const [free] = await model.locateSettled("red circle", [images[0]!], { constrained: false });
    assert.ok(free instanceof Error && /is not a box: " 1 218 108 240 200"/.test(free.message), String(free));
    const [boxed] = await model.locateSettled("red circle", [images[0]!]);
    assert.ok(!(boxed instanceof Error), String(boxed));
    const [x0, y0, x1, y1] = boxed.box;
    assert.ok(0 <= x0 && x0 <= x1 && x1 <= 128 && 0 <= y0 && y0 <= y1 && y1 <= 128, JSON.stringify(boxed.box));
  });
});
