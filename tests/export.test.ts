/**
 * `siglip2 export` (src/models/export.ts, src/cli/export-cmd.ts): the exported folders run on a
 * plain onnxruntime-node InferenceSession (not our runtime) and give our embeddings (fp32 and
 * int8) and the transformers goldens (tools/reference/make_fixtures.py), NaFlex included with
 * the in-graph position resize; weights above the threshold go to ONNX external data.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import * as ort from "onnxruntime-node";
import { SigLIP2 } from "../src/api.js";
import { exportModel } from "../src/models/export.js";
import type { NaflexVisionTower } from "../src/models/siglip2.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { FIXTURES, REPO } from "./harness/paths.js";

const tmp = mkdtempSync(join(tmpdir(), "siglip2-export-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const modelDir = (name: string): string => join(FIXTURES, "models", name);

function golden(name: string): { f32(k: string): Float32Array; i64(k: string): BigInt64Array; i32(k: string): Int32Array; shape(k: string): number[]; close(): void } {
  const f = SafetensorsFile.open(join(FIXTURES, "goldens", `${name}.safetensors`));
  const bytes = (k: string): ArrayBuffer => {
    const b = f.readBytes(k);
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  };
  return {
    f32: (k) => new Float32Array(bytes(k)),
    i64: (k) => new BigInt64Array(bytes(k)),
    i32: (k) => new Int32Array(bytes(k)),
    shape: (k) => f.info(k).shape,
    close: () => f.close(),
  };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d;
  }
  return m;
}

/** L2-normalise each row of width d. */
function normalizeRows(x: Float32Array, d: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[r * d + j]! ** 2;
    const n = Math.sqrt(s);
    for (let j = 0; j < d; j++) out[r * d + j] = x[r * d + j]! / n;
  }
  return out;
}

const flat = (rows: Float32Array[]): Float32Array => {
  const out = new Float32Array(rows.reduce((a, r) => a + r.length, 0));
  let o = 0;
  for (const r of rows) {
    out.set(r, o);
    o += r.length;
  }
  return out;
};

/** Smallest row cosine of two (n, d) arrays. */
function minCos(a: Float32Array, b: Float32Array, d: number): number {
  let m = 1;
  for (let r = 0; r < a.length / d; r++) {
    let ab = 0, aa = 0, bb = 0;
    for (let j = 0; j < d; j++) {
      const x = a[r * d + j]!, y = b[r * d + j]!;
      ab += x * y; aa += x * x; bb += y * y;
    }
    m = Math.min(m, ab / Math.sqrt(aa * bb));
  }
  return m;
}

async function runSession(path: string, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(path);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/** Our own pooled outputs (L2-normalised) and the export's, for text ids (n, T) of a golden. */
async function textPair(model: SigLIP2, file: string, ids: BigInt64Array, n: number, T: number): Promise<[Float32Array, Float32Array]> {
  const out = await runSession(file, { input_ids: new ort.Tensor("int64", ids, [n, T]) });
  const P = model.config.text_config.projection_size;
  const tower = await model.textTower();
  const ours = await tower.run(Array.from(ids, Number), n);
  return [normalizeRows(out["pooler_output"]!.data as Float32Array, P), normalizeRows(ours.pooled, P)];
}

describe("siglip2 export: fixed resolution (fixres-f32)", () => {
  const out = join(tmp, "fixres");
  const report = exportModel(new Checkpoint(modelDir("fixres-f32")), out);
  const g = golden("fixres-f32");
  after(() => g.close());

  it("writes the transformers.js layout with the checkpoint's configs", () => {
    assert.deepEqual(report.files.map((f) => f.file).sort(), [
      "config.json", "onnx/text_model.onnx", "onnx/vision_model.onnx", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
    ]);
    for (const f of report.files) assert.equal(statSync(join(out, f.file)).size, f.bytes);
    assert.equal(readFileSync(join(out, "tokenizer.json"), "utf8"), readFileSync(join(modelDir("fixres-f32"), "tokenizer.json"), "utf8"));
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(cfg["model_type"], "siglip");
    assert.equal(cfg["transformers.js_config"], undefined, "no external data, no use_external_data_format");
  });

  it("the ONNX files declare transformers.js's inputs and outputs, with a dynamic batch", async () => {
    const v = await ort.InferenceSession.create(join(out, "onnx/vision_model.onnx"));
    const t = await ort.InferenceSession.create(join(out, "onnx/text_model.onnx"));
    assert.deepEqual([v.inputNames, v.outputNames], [["pixel_values"], ["last_hidden_state", "pooler_output"]]);
    assert.deepEqual([t.inputNames, t.outputNames], [["input_ids"], ["last_hidden_state", "pooler_output"]]);
    await v.release();
    await t.release();
  });

  it("plain onnxruntime on the export gives our embeddings (≤ 1e-6) and the transformers goldens (≤ 1e-5)", async () => {
    const model = await SigLIP2.load(modelDir("fixres-f32"));
    try {
      const D = model.config.vision_config.hidden_size;
      const px = g.f32("image.pixel_values");
      const [n, , R] = g.shape("image.pixel_values") as [number, number, number];
      const res = await runSession(join(out, "onnx/vision_model.onnx"), { pixel_values: new ort.Tensor("float32", px, [n, 3, R, R]) });
      const vt = await model.visionTower();
      const ours = await (vt as { run(p: Float32Array, b: number): Promise<{ pooled: Float32Array }> }).run(px, n);
      const exp = normalizeRows(res["pooler_output"]!.data as Float32Array, D);
      const dOurs = maxAbsDiff(exp, normalizeRows(ours.pooled, D));
      const dGold = maxAbsDiff(exp, g.f32("image.embeds"));
      assert.ok(dOurs <= 1e-6, `image vs ours: ${dOurs}`);
      assert.ok(dGold <= 1e-5, `image vs transformers: ${dGold}`);

      const ids = g.i64("text.input_ids");
      const [tn, T] = g.shape("text.input_ids") as [number, number];
      const [te, to] = await textPair(model, join(out, "onnx/text_model.onnx"), ids, tn, T);
      const tOurs = maxAbsDiff(te, to);
      const tGold = maxAbsDiff(te, g.f32("text.embeds"));
      assert.ok(tOurs <= 1e-6, `text vs ours: ${tOurs}`);
      assert.ok(tGold <= 1e-5, `text vs transformers: ${tGold}`);
      process.stderr.write(`# fixres-f32 fp32 export: image vs ours ${dOurs.toExponential(2)}, vs transformers ${dGold.toExponential(2)}; text vs ours ${tOurs.toExponential(2)}, vs transformers ${tGold.toExponential(2)}\n`);
    } finally {
      await model.close();
    }
  });

  it("int8: the export gives our int8 embeddings and stays close to transformers", async () => {
    const out8 = join(tmp, "fixres-int8");
    const r8 = exportModel(new Checkpoint(modelDir("fixres-f32")), out8, { dtype: "int8" });
    assert.deepEqual(r8.files.filter((f) => f.file.startsWith("onnx/")).map((f) => f.file).sort(), ["onnx/text_model_int8.onnx", "onnx/vision_model_int8.onnx"]);
    const model = await SigLIP2.load(modelDir("fixres-f32"), { dtype: "int8" });
    try {
      const D = model.config.vision_config.hidden_size;
      const px = g.f32("image.pixel_values");
      const [n, , R] = g.shape("image.pixel_values") as [number, number, number];
      const res = await runSession(join(out8, "onnx/vision_model_int8.onnx"), { pixel_values: new ort.Tensor("float32", px, [n, 3, R, R]) });
      const vt = await model.visionTower();
      const ours = await (vt as { run(p: Float32Array, b: number): Promise<{ pooled: Float32Array }> }).run(px, n);
      const exp = normalizeRows(res["pooler_output"]!.data as Float32Array, D);
      const dOurs = maxAbsDiff(exp, normalizeRows(ours.pooled, D));
      const cGold = minCos(exp, g.f32("image.embeds"), D);
      assert.ok(dOurs <= 1e-5, `int8 image vs our int8: ${dOurs}`);
      // the tiny fixture (D = 32, O(1) weights) is harder on int8 than real checkpoints; our own int8 tower measures the same
      assert.ok(cGold >= 0.95, `int8 image vs transformers fp32: min cosine ${cGold}`);
      const ids = g.i64("text.input_ids");
      const [tn, T] = g.shape("text.input_ids") as [number, number];
      const [te, to] = await textPair(model, join(out8, "onnx/text_model_int8.onnx"), ids, tn, T);
      const tOurs = maxAbsDiff(te, to);
      assert.ok(tOurs <= 1e-5, `int8 text vs our int8: ${tOurs}`);
      process.stderr.write(`# fixres-f32 int8 export: image vs our int8 ${dOurs.toExponential(2)}, min cos vs transformers fp32 ${cGold.toFixed(5)}; text vs our int8 ${tOurs.toExponential(2)}\n`);
    } finally {
      await model.close();
    }
  });

  it("above the threshold the weights go to <file>.onnx_data, which onnxruntime reads", async () => {
    const outX = join(tmp, "fixres-external");
    const rx = exportModel(new Checkpoint(modelDir("fixres-f32")), outX, { towers: ["vision"], externalAboveBytes: 1000 });
    assert.deepEqual(rx.files.filter((f) => f.file.startsWith("onnx/")).map((f) => f.file), ["onnx/vision_model.onnx", "onnx/vision_model.onnx_data"]);
    const small = statSync(join(outX, "onnx/vision_model.onnx")).size;
    const whole = statSync(join(out, "onnx/vision_model.onnx")).size;
    assert.ok(small < whole / 2, `model file ${small} bytes, the single-file one ${whole}`);
    const cfg = JSON.parse(readFileSync(join(outX, "config.json"), "utf8")) as Record<string, Record<string, unknown>>;
    assert.deepEqual(cfg["transformers.js_config"], { use_external_data_format: { "vision_model.onnx": true } });
    const px = g.f32("image.pixel_values");
    const [n, , R] = g.shape("image.pixel_values") as [number, number, number];
    const feeds = { pixel_values: new ort.Tensor("float32", px, [n, 3, R, R]) };
    const a = await runSession(join(outX, "onnx/vision_model.onnx"), feeds);
    const b = await runSession(join(out, "onnx/vision_model.onnx"), feeds);
    assert.equal(maxAbsDiff(a["pooler_output"]!.data as Float32Array, b["pooler_output"]!.data as Float32Array), 0);
    // exporting again below the threshold leaves no stale data file and no external-data note
    exportModel(new Checkpoint(modelDir("fixres-f32")), outX, { towers: ["vision"] });
    assert.ok(!existsSync(join(outX, "onnx/vision_model.onnx_data")));
    assert.equal((JSON.parse(readFileSync(join(outX, "config.json"), "utf8")) as Record<string, unknown>)["transformers.js_config"], undefined);
  });

  it("--fused (onnxruntime contrib ops) gives the same embeddings", async () => {
    const outF = join(tmp, "fixres-fused");
    exportModel(new Checkpoint(modelDir("fixres-f32")), outF, { towers: ["vision"], fused: true });
    const px = g.f32("image.pixel_values");
    const [n, , R] = g.shape("image.pixel_values") as [number, number, number];
    const res = await runSession(join(outF, "onnx/vision_model.onnx"), { pixel_values: new ort.Tensor("float32", px, [n, 3, R, R]) });
    const D = g.shape("image.embeds")[1]!;
    const d = maxAbsDiff(normalizeRows(res["pooler_output"]!.data as Float32Array, D), g.f32("image.embeds"));
    assert.ok(d <= 1e-5, `fused vs transformers: ${d}`);
  });
});

describe("siglip2 export: NaFlex (naflex-f32), dynamic patch count, position resize in the graph", () => {
  const out = join(tmp, "naflex");
  exportModel(new Checkpoint(modelDir("naflex-f32")), out);
  const g = golden("naflex-f32");
  after(() => g.close());
  const man = JSON.parse(readFileSync(join(FIXTURES, "goldens", "naflex-f32.json"), "utf8")) as {
    images: string[];
    budgets: Record<string, { max_num_patches: number }>;
    quirk_image: { path: string; budget: number };
  };

  it("declares Siglip2VisionModel's inputs", async () => {
    const v = await ort.InferenceSession.create(join(out, "onnx/vision_model.onnx"));
    assert.deepEqual([v.inputNames.slice().sort(), v.outputNames], [["pixel_attention_mask", "pixel_values", "spatial_shapes"], ["last_hidden_state", "pooler_output"]]);
    await v.release();
  });

  it("gives our embeddings (≤ 1e-6) and the transformers goldens (≤ 1e-5) at every patch budget, batched to the budget as transformers pads", async () => {
    const model = await SigLIP2.load(modelDir("naflex-f32"));
    try {
      const D = model.config.vision_config.hidden_size;
      const F = 3 * model.config.vision_config.patch_size ** 2;
      const vt = (await model.visionTower()) as NaflexVisionTower;
      const decoded = await Promise.all(man.images.map((p) => model.decode(join(REPO, p))));
      const lines: string[] = [];
      for (const [key, b] of Object.entries(man.budgets)) {
        const M = b.max_num_patches;
        const patches = decoded.map((d) => model.naflexPatches(d, M));
        const batch = vt.prepareBatch(patches, M); // padded to M, as transformers' processor does
        const spatial = BigInt64Array.from(patches.flatMap((p) => [BigInt(p.gridH), BigInt(p.gridW)]));
        assert.deepEqual(Array.from(spatial), Array.from(g.i64(`${key}.spatial_shapes`)));
        const res = await runSession(join(out, "onnx/vision_model.onnx"), {
          pixel_values: new ort.Tensor("float32", batch.pixelValues, [batch.batch, M, F]),
          pixel_attention_mask: new ort.Tensor("int32", batch.keyMask, [batch.batch, M]),
          spatial_shapes: new ort.Tensor("int64", spatial, [batch.batch, 2]),
        });
        const ours = await vt.run(batch);
        const exp = normalizeRows(res["pooler_output"]!.data as Float32Array, D);
        const dOurs = maxAbsDiff(exp, normalizeRows(ours.pooled, D));
        const dGold = maxAbsDiff(exp, g.f32(`${key}.embeds`));
        assert.ok(dOurs <= 1e-6, `${key}: vs ours ${dOurs}`);
        assert.ok(dGold <= 1e-5, `${key}: vs transformers ${dGold}`);
        lines.push(`${key} vs ours ${dOurs.toExponential(2)}, vs transformers ${dGold.toExponential(2)}`);
      }
      // a shorter padding than the budget gives the same pooled output (the patch axis is dynamic)
      const patches = decoded.map((d) => model.naflexPatches(d, 64));
      const tight = vt.prepareBatch(patches);
      const res = await runSession(join(out, "onnx/vision_model.onnx"), {
        pixel_values: new ort.Tensor("float32", tight.pixelValues, [tight.batch, tight.length, F]),
        pixel_attention_mask: new ort.Tensor("int32", tight.keyMask, [tight.batch, tight.length]),
        spatial_shapes: new ort.Tensor("int64", BigInt64Array.from(patches.flatMap((p) => [BigInt(p.gridH), BigInt(p.gridW)])), [tight.batch, 2]),
      });
      const dTight = maxAbsDiff(normalizeRows(res["pooler_output"]!.data as Float32Array, D), g.f32("m64.embeds"));
      assert.ok(dTight <= 1e-5, `m64 padded to ${tight.length}: ${dTight}`);

      // a 4×1000 image: a 250×1 grid (w = 1, width downsampled 16 → 1): transformers' mathematically correct value
      const q = man.quirk_image;
      const qp = model.naflexPatches(await model.decode(join(REPO, q.path)), q.budget);
      const qb = vt.prepareBatch([qp]);
      const qr = await runSession(join(out, "onnx/vision_model.onnx"), {
        pixel_values: new ort.Tensor("float32", qb.pixelValues, [1, qb.length, F]),
        pixel_attention_mask: new ort.Tensor("int32", qb.keyMask, [1, qb.length]),
        spatial_shapes: new ort.Tensor("int64", BigInt64Array.of(BigInt(qp.gridH), BigInt(qp.gridW)), [1, 2]),
      });
      const qe = normalizeRows(qr["pooler_output"]!.data as Float32Array, D);
      const dQuirk = maxAbsDiff(qe, g.f32("quirk_m256.embeds_correct"));
      const dQuirkOurs = maxAbsDiff(qe, normalizeRows((await vt.run(qb)).pooled, D));
      assert.ok(dQuirk <= 1e-5 && dQuirkOurs <= 1e-6, `250×1 grid: vs transformers (correct resize) ${dQuirk}, vs ours ${dQuirkOurs}`);
      lines.push(`250×1 grid vs ours ${dQuirkOurs.toExponential(2)}, vs transformers ${dQuirk.toExponential(2)}`);

      const ids = g.i64("text.input_ids");
      const [tn, T] = g.shape("text.input_ids") as [number, number];
      const [te, to] = await textPair(model, join(out, "onnx/text_model.onnx"), ids, tn, T);
      const tOurs = maxAbsDiff(te, to);
      const tGold = maxAbsDiff(te, g.f32("text.embeds"));
      assert.ok(tOurs <= 1e-6 && tGold <= 1e-5, `text: vs ours ${tOurs}, vs transformers ${tGold}`);
      process.stderr.write(`# naflex-f32 fp32 export: ${lines.join("; ")}; text vs ours ${tOurs.toExponential(2)}, vs transformers ${tGold.toExponential(2)}\n`);
    } finally {
      await model.close();
    }
  });
});

describe("siglip2 export: NaFlex int8", () => {
  it("gives our int8 embeddings", async () => {
    const out = join(tmp, "naflex-int8");
    exportModel(new Checkpoint(modelDir("naflex-f32")), out, { dtype: "int8", towers: ["vision"] });
    const model = await SigLIP2.load(modelDir("naflex-f32"), { dtype: "int8" });
    const g = golden("naflex-f32");
    try {
      const D = model.config.vision_config.hidden_size;
      const F = 3 * model.config.vision_config.patch_size ** 2;
      const vt = (await model.visionTower()) as NaflexVisionTower;
      const man = JSON.parse(readFileSync(join(FIXTURES, "goldens", "naflex-f32.json"), "utf8")) as { images: string[] };
      const patches = await Promise.all(man.images.map(async (p) => model.naflexPatches(await model.decode(join(REPO, p)), 64)));
      const b = vt.prepareBatch(patches);
      const res = await runSession(join(out, "onnx/vision_model_int8.onnx"), {
        pixel_values: new ort.Tensor("float32", b.pixelValues, [b.batch, b.length, F]),
        pixel_attention_mask: new ort.Tensor("int32", b.keyMask, [b.batch, b.length]),
        spatial_shapes: new ort.Tensor("int64", BigInt64Array.from(patches.flatMap((p) => [BigInt(p.gridH), BigInt(p.gridW)])), [b.batch, 2]),
      });
      const exp = normalizeRows(res["pooler_output"]!.data as Float32Array, D);
      const dOurs = maxAbsDiff(exp, normalizeRows((await vt.run(b)).pooled, D));
      const cGold = minCos(exp, g.f32("m64.embeds"), D);
      // The export resizes the position grid in the graph (float32), we resize it in TypeScript: the two
      // differ by ~1e-7, which can move an activation across an int8 rounding step of the dynamic
      // quantiser on some CPUs (AVX-512 kernels: max |Δ| 4e-3 at D = 32). So: equal, or a flip or two.
      const cOurs = minCos(exp, normalizeRows((await vt.run(b)).pooled, D), D);
      assert.ok(dOurs <= 1e-5 || cOurs >= 0.9995, `naflex int8 vs our int8: max |Δ| ${dOurs}, min cosine ${cOurs}`);
      // int8 itself costs this much on the tiny fixture (D = 32, white-noise position table): a sanity bound only
      assert.ok(cGold >= 0.85, `naflex int8 vs transformers fp32: min cosine ${cGold}`);
      process.stderr.write(`# naflex-f32 int8 export: vs our int8 ${dOurs.toExponential(2)} (min cos ${cOurs.toFixed(6)}), min cos vs transformers fp32 ${cGold.toFixed(5)}\n`);
    } finally {
      g.close();
      await model.close();
    }
  });
});

describe("siglip2 export: transformers.js (@huggingface/transformers, onnxruntime-node) loads the folder", () => {
  it("offline from a local folder: same token ids, same embeddings where no resize happens; external data too", async () => {
    const tjs = await import("@huggingface/transformers");
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = tmp;
    const root = join(tmp, "tjs");
    exportModel(new Checkpoint(modelDir("fixres-f32")), join(root, "single"));
    exportModel(new Checkpoint(modelDir("fixres-f32")), join(root, "external"), { externalAboveBytes: 1000 });
    const ours = await SigLIP2.load(modelDir("fixres-f32"));
    try {
      const texts = ["A photo of two cats sleeping on a red sofa.", "a dog", "两只猫睡在红色的沙发上", ""];
      const ourIds = await ours.tokenize(texts, { lowercase: false }); // transformers.js's GemmaTokenizer does not lowercase
      const ourText = flat(await ours.embedTexts(texts, { lowercase: false }));
      // 32×32 at image_size 32: no resize, so the pixels are the same in both libraries
      const image = join(FIXTURES, "model-inputs", "noise_32x32.png");
      const [ourImage] = await ours.embedImages([image]);
      const P = ours.config.text_config.projection_size;
      const D = ours.config.vision_config.hidden_size;
      const lines: string[] = [];
      for (const id of ["tjs/single", "tjs/external"]) {
        const tok = await tjs.AutoTokenizer.from_pretrained(id);
        const enc = tok(texts, { padding: "max_length", max_length: 64, truncation: true }) as { input_ids: { data: BigInt64Array } };
        assert.deepEqual(Array.from(enc.input_ids.data, Number), ourIds.flatMap((r) => Array.from(r)), `${id}: token ids`);
        const text = await tjs.SiglipTextModel.from_pretrained(id, { dtype: "fp32", device: "cpu" });
        const t = (await text(enc)) as { pooler_output: { data: Float32Array } };
        const dText = maxAbsDiff(normalizeRows(t.pooler_output.data, P), ourText);
        const vision = await tjs.SiglipVisionModel.from_pretrained(id, { dtype: "fp32", device: "cpu" });
        const proc = await tjs.AutoProcessor.from_pretrained(id);
        const px = await proc(await tjs.RawImage.read(image));
        const v = (await vision(px)) as { pooler_output: { data: Float32Array } };
        const dImage = maxAbsDiff(normalizeRows(v.pooler_output.data, D), ourImage!);
        assert.ok(dText <= 1e-6 && dImage <= 1e-6, `${id}: text ${dText}, image ${dImage}`);
        lines.push(`${id} text ${dText.toExponential(2)}, image ${dImage.toExponential(2)}`);
        await Promise.all([text.dispose(), vision.dispose()]);
      }
      process.stderr.write(`# transformers.js on the export vs ours (max-abs, normalised): ${lines.join("; ")}\n`);
    } finally {
      await ours.close();
    }
  });
});

describe("siglip2 export (CLI)", () => {
  const bin = join(REPO, "dist", "cli", "main.js");
  const run = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });

  it("writes the folder and prints one JSON line per file", () => {
    const out = join(tmp, "cli");
    const r = run(["export", "--model", modelDir("fixres-f32"), "--out", out, "--towers", "text"]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { file: string; bytes: number });
    assert.ok(lines.some((l) => l.file === "onnx/text_model.onnx"));
    assert.ok(!existsSync(join(out, "onnx/vision_model.onnx")));
  });

  it("bad usage is one line and exit 2", () => {
    for (const [args, re] of [
      [["export", "--model", modelDir("fixres-f32"), "--out", join(tmp, "x"), "--towers", "audio"], /--towers.*audio/],
      [["export", "--model", modelDir("fixres-f32"), "--out", join(tmp, "y"), "--dtype", "fp16"], /fp16/],
      [["export", "--model", modelDir("fixres-f32"), "--out", join(FIXTURES, "models", "fixres-f32", "config.json")], /not a directory/],
      [["export", "--model", join(tmp, "missing"), "--out", join(tmp, "z")], /missing/],
    ] as const) {
      const r = run([...args]);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
  });
});
