/**
 * Library API: raw vs normalised outputs, tower laziness (image-only use never needs
 * the text weights and vice versa), label-embedding cache, decoded-pixel inputs,
 * and in-memory image bytes.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { LABEL_CACHE_SETS, SigLIP2, applyTemplate } from "../src/api.js";
import { SiglipError } from "../src/errors.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { listCache } from "../src/graph/model-cache.js";
import { copyFixture, writeSafetensors } from "./harness/files.js";
import { FIXTURES, REPO } from "./harness/paths.js";
import { loadManifest } from "./harness/parity.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const man = loadManifest("fixres-f32");
const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "fixres-f32.safetensors"));
const img = (i: number) => join(REPO, man.images[i]!);

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A copy of the fixture whose weights keep only the tensors matching `keep`. */
function partialCheckpoint(keep: (name: string) => boolean): string {
  const d = copyFixture("fixres-f32");
  const src = SafetensorsFile.open(join(d, "model.safetensors"));
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const n of src.names()) if (keep(n)) tensors[n] = { shape: src.info(n).shape, data: src.readFloat32(n) };
  src.close();
  writeSafetensors(join(d, "model.safetensors"), tensors);
  return d;
}

describe("library API", () => {
  it("normalize:false returns transformers' un-normalised pooler outputs", async () => {
    const m = await SigLIP2.load(F32);
    const [a] = await m.embedImages([img(2)], { normalize: false });
    assert.ok(maxAbs(a!, golden.readFloat32("image.pooler_output").subarray(2 * 32, 3 * 32)) < 1e-4);
    const [t] = await m.embedTexts([man.texts[3]!], { normalize: false, lowercase: false });
    assert.ok(maxAbs(t!, golden.readFloat32("text.pooler_output").subarray(3 * 32, 4 * 32)) < 1e-4);
    await m.close();
  });

  it("image-only use works on a checkpoint without any text tensors", async () => {
    const d = partialCheckpoint((n) => n.startsWith("vision_model."));
    const m = await SigLIP2.load(d);
    const [e] = await m.embedImages([img(0)]);
    assert.ok(maxAbs(e!, golden.readFloat32("image.embeds").subarray(0, 32)) < 1e-5);
    await assert.rejects(m.embedTexts(["x"]), (err: unknown) => err instanceof SiglipError && /text_model\./.test(err.message));
    await m.close();
  });

  it("text-only use works on a checkpoint without any vision tensors", async () => {
    const d = partialCheckpoint((n) => n.startsWith("text_model."));
    const m = await SigLIP2.load(d);
    const [e] = await m.embedTexts([man.texts[0]!], { lowercase: false });
    assert.ok(maxAbs(e!, golden.readFloat32("text.embeds").subarray(0, 32)) < 1e-5);
    await m.close();
  });

  it("label embeddings are cached per label set and template", async () => {
    const m = await SigLIP2.load(F32);
    let calls = 0;
    const orig = m.embedTexts.bind(m);
    m.embedTexts = async (...a: Parameters<typeof orig>) => (calls++, orig(...a));
    const a = await m.labelEmbeddings(["cat", "dog"]);
    const b = await m.labelEmbeddings(["cat", "dog"]);
    assert.equal(a, b);
    assert.equal(calls, 1);
    await m.labelEmbeddings(["cat", "dog"], { template: "a {}" });
    await m.labelEmbeddings(["dog", "cat"]);
    assert.equal(calls, 3);
    await m.close();
  });

  it("the label-set cache is bounded: the least recently used set is dropped first", async () => {
    const m = await SigLIP2.load(F32);
    let calls = 0;
    m.embedTexts = async (texts: string[]) => (calls++, texts.map(() => new Float32Array(4)));
    const first = await m.labelEmbeddings(["set 0"]);
    for (let i = 1; i < LABEL_CACHE_SETS; i++) await m.labelEmbeddings([`set ${i}`]);
    assert.equal(calls, LABEL_CACHE_SETS);
    assert.equal(await m.labelEmbeddings(["set 0"]), first); // still cached, and now the most recent
    await m.labelEmbeddings(["one more"]); // evicts "set 1", the least recently used
    assert.equal(calls, LABEL_CACHE_SETS + 1);
    await m.labelEmbeddings(["set 0"]);
    assert.equal(calls, LABEL_CACHE_SETS + 1);
    await m.labelEmbeddings(["set 1"]);
    assert.equal(calls, LABEL_CACHE_SETS + 2);
    await m.close();
  });

  it("accepts encoded bytes and decoded pixels as well as paths", async () => {
    const m = await SigLIP2.load(F32);
    const bytes = new Uint8Array(readFileSync(img(2)));
    const rgb = await m.decode(img(2));
    const [a, b, c] = await m.embedImages([img(2), bytes, rgb]);
    assert.deepEqual(a, b);
    assert.deepEqual(a, c);
    await m.close();
  });

  it("a batch gives the same embeddings as one image at a time", async () => {
    const m = await SigLIP2.load(F32, { imageBatchSize: 3 });
    const paths = man.images.map((p) => join(REPO, p));
    const batched = await m.embedImages(paths);
    for (let i = 0; i < paths.length; i++) {
      const [single] = await m.embedImages([paths[i]!]);
      assert.ok(maxAbs(single!, batched[i]!) < 1e-6, paths[i]);
    }
    await m.close();
  });

  it("templates need a {} placeholder", () => {
    assert.equal(applyTemplate("This is a photo of {}.", "cat"), "This is a photo of cat.");
    assert.throws(() => applyTemplate("a photo", "cat"), SiglipError);
  });
});

describe("model cache", () => {
  it("a second load uses the cached ONNX files; changed weights never hit a stale entry", async () => {
    const cacheDir = join(copyFixture("fixres-f32"), "..", "cache");
    const d = copyFixture("fixres-f32");
    const first = await SigLIP2.load(d, { tower: { cacheDir } });
    const [a] = await first.embedImages([img(2)]);
    await first.close();
    const entries = readdirSync(cacheDir).filter((n) => n !== "hashes");
    assert.equal(entries.length, 1);
    assert.ok(readdirSync(join(cacheDir, entries[0]!)).includes("stage-0.onnx.data"));

    const second = await SigLIP2.load(d, { tower: { cacheDir } });
    const [b] = await second.embedImages([img(2)]);
    await second.close();
    assert.deepEqual(b, a);
    assert.equal(listCache(cacheDir).length, 1, "the second load built nothing new");

    // rewrite the weights with a changed patch embedding: a new cache entry, new results
    const src = SafetensorsFile.open(join(d, "model.safetensors"));
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const n of src.names()) tensors[n] = { shape: src.info(n).shape, data: src.readFloat32(n) };
    src.close();
    tensors["vision_model.embeddings.patch_embedding.bias"]!.data[0]! += 1;
    writeSafetensors(join(d, "model.safetensors"), tensors);
    const third = await SigLIP2.load(d, { tower: { cacheDir } });
    const [c] = await third.embedImages([img(2)]);
    await third.close();
    assert.equal(listCache(cacheDir).length, 2);
    assert.ok(maxAbs(c!, a!) > 1e-4);
    const nocache = await SigLIP2.load(d, { tower: { cacheDir: null } });
    const [e] = await nocache.embedImages([img(2)]);
    await nocache.close();
    assert.ok(maxAbs(e!, c!) < 1e-7);
  });
});
