/**
 * Training with the LocCa decoder (issue 11 item 2): the trainer's objectives and freeze lists,
 * decoder init, decoder.safetensors beside a transformers-loadable model.safetensors, exact
 * resume, fine-tuning from a saved decoder, manifests with regions and COCO annotation files,
 * and the CLI flags. The decoder's loss and gradients themselves are checked against PyTorch
 * in tests/locca.test.ts.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import sharp from "sharp";
import { SiglipError } from "../src/errors.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { DECODER_FILE, loadDecoderParams } from "../src/train/checkpoint.js";
import { readCoco } from "../src/train/coco.js";
import { FilePairs, InMemoryPairs, readManifest, type Region } from "../src/train/data.js";
import { initDecoderParams, initParams } from "../src/train/init.js";
import { paramSpecs, type Objective, type Tower } from "../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { startingParams, type Params } from "../src/train/session.js";
import { synthesize } from "../src/train/synthetic.js";
import { Trainer, type TrainConfig } from "../src/train/trainer.js";
import { Rng } from "../src/train/rng.js";
import { parseImageProcessorConfig } from "../src/preprocess/index.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { decoderFileBoxFormat } from "../src/models/locca-infer.js";
import { parseBoxText, type BoxFormat } from "../src/tasks/boxes.js";
import { tempDir } from "./harness/files.js";
import { REPO } from "./harness/paths.js";
import { SOURCE_FIXTURE } from "./harness/trained-fixture.js";

const OBJ: Objective[] = ["sigmoid", "locca"];
const copy = (p: Params): Params => new Map([...p].map(([k, v]) => [k, v.slice()]));

async function setUp() {
  const ckpt = new Checkpoint(SOURCE_FIXTURE);
  const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
  const pairs = synthesize(16, 32, 11);
  const regions: Region[][] = pairs.map((_, i) => (i % 3 === 2 ? [] : [{ box: [2, 3, 20, 25], text: "a shape" }, { box: [0, 0, 31, 16], text: "the top" }]));
  const data = new InMemoryPairs(pairs.map((p) => p.pixels), pairs.map((p) => p.caption), tok, 64, { locca: { vocab: 1024, regions } });
  const specs = paramSpecs(ckpt.config, { objectives: OBJ });
  const params = startingParams(ckpt.weights, SOURCE_FIXTURE, specs, 5).params;
  const make = (o: { freeze?: readonly Tower[]; objectives?: Objective[]; accum?: number; steps?: number; p?: Params; extra?: Partial<TrainConfig> } = {}) =>
    Trainer.create(ckpt.config, copy(o.p ?? params), {
      batchSize: 8, accumSteps: o.accum ?? 1, steps: o.steps ?? 4, seed: 2, freeze: o.freeze ?? [], threads: 1, objectives: o.objectives ?? OBJ,
      optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-3, warmupSteps: 1, totalSteps: o.steps ?? 4 },
      ...o.extra,
    });
  return { ckpt, data, specs, params, make };
}

describe("LocCa training: trainer, decoder checkpoint, resume", async () => {
  const s = await setUp();
  const configJson = readFileSync(join(SOURCE_FIXTURE, "config.json"), "utf8");

  it("decoder init: N(0, 0.02) kernels and tables, LN 1/0, biases 0, lm_head zero; the same fresh decoder from scratch and for a fine-tune", () => {
    const d = initDecoderParams(s.specs, 5);
    const names = s.specs.filter((x) => x.name.startsWith("decoder.")).map((x) => x.name);
    assert.deepEqual([...d.keys()], names);
    assert.ok(d.get("decoder.lm_head.weight")!.every((v) => v === 0) && d.get("decoder.lm_head.bias")!.every((v) => v === 0));
    assert.ok(d.get("decoder.final_layer_norm.weight")!.every((v) => v === 1) && d.get("decoder.layers.0.layer_norm3.bias")!.every((v) => v === 0));
    const w = d.get("decoder.embed_tokens.weight")!; // (V + 1, D) = 1025 × 32 draws
    const mean = w.reduce((a, b) => a + b, 0) / w.length;
    const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
    assert.ok(Math.abs(std - 0.02) < 0.001 && Math.abs(mean) < 0.001, `std ${std}, mean ${mean}`);
    const scratch = initParams(s.specs, 5);
    for (const n of names) assert.deepEqual(scratch.get(n), d.get(n), n);
    for (const n of names) assert.deepEqual(s.params.get(n), d.get(n), n); // no decoder.safetensors in the source: fresh
    // the towers' init does not depend on the decoder being on
    const plain = initParams(paramSpecs(s.ckpt.config), 5);
    for (const [n, v] of plain) assert.deepEqual(scratch.get(n), v, n);
  });

  it("the first LocCa loss is ln V (zero-init lm_head: uniform predictions); both parts are logged and summed", async () => {
    const t = await s.make();
    const info = await t.trainStep(s.data);
    assert.ok(Math.abs(info.loccaLoss! - Math.log(1024)) < 1e-5, String(info.loccaLoss));
    assert.ok(Number.isFinite(info.sigmoidLoss!) && info.sigmoidLoss! > 0);
    assert.ok(Math.abs(info.loss - info.sigmoidLoss! - info.loccaLoss!) < 1e-4);
    assert.deepEqual(Object.keys(t.history[0]!).sort(), ["gradNorm", "loccaLoss", "loss", "lr", "sigmoidLoss", "step"]);
    await t.release();
  });

  it("--freeze vision,text: only the decoder trains (towers, t' and b bit-identical); the sigmoid loss is reported, not trained", async () => {
    const t = await s.make({ freeze: ["vision", "text"] });
    assert.ok(t.optimizer.trainable.every((n) => n.startsWith("decoder.")));
    assert.equal(t.optimizer.trainable.length, s.specs.filter((x) => x.name.startsWith("decoder.")).length);
    for (let k = 0; k < 3; k++) {
      const info = await t.trainStep(s.data);
      assert.ok(Number.isFinite(info.sigmoidLoss!));
      assert.ok(Math.abs(info.loss - info.loccaLoss!) < 1e-6, "the trained loss is LocCa's alone");
    }
    for (const [n, v] of t.params) {
      if (n.startsWith("decoder.")) continue;
      assert.deepEqual(v, s.params.get(n), n);
    }
    for (const n of ["decoder.lm_head.weight", "decoder.layers.0.cross_attn.q_proj.weight", "decoder.embed_tokens.weight"]) {
      assert.notDeepEqual(t.params.get(n), s.params.get(n), `${n} changed`);
    }
    await t.release();
  });

  it("--objectives locca: the decoder and the image tower up to its final LN train; the MAP head, text tower, t' and b stay bit-identical", async () => {
    const t = await s.make({ objectives: ["locca"] });
    const tr = new Set(t.optimizer.trainable);
    const reached = (n: string): boolean => n.startsWith("decoder.") || (n.startsWith("vision_model.") && !n.startsWith("vision_model.head."));
    for (const x of s.specs) assert.equal(tr.has(x.name), reached(x.name), x.name);
    await t.trainStep(s.data);
    await t.trainStep(s.data);
    for (const [n, v] of t.params) if (!reached(n)) assert.deepEqual(v, s.params.get(n), n);
    assert.notDeepEqual(t.params.get("vision_model.encoder.layers.0.mlp.fc1.weight"), s.params.get("vision_model.encoder.layers.0.mlp.fc1.weight"));
    await t.release();
  });

  it("arefRows 3 (task mix): 3 referring-expression rows per example with regions, S = 5m; the default keeps 1 and S = 3m", async () => {
    const ld = s.data.locca!;
    const aref = ld.tokenize("ARef:");
    const count = async (t: Trainer) => {
      // the private row builder the training step uses (rows of micro-batch 0..7 under one RNG)
      const d = await (t["decoderRows"] as Trainer["decoderRows"]).call(t, s.data, [0, 1, 2, 3, 4, 5, 6, 7], new Rng(3));
      const L = d.inputIds.length / d.causal.length;
      let arefRows = 0;
      let used = 0;
      for (let r = 0; r < d.causal.length; r++) {
        const row = Array.from(d.targets.subarray(r * L, (r + 1) * L), Number);
        if (d.weights.subarray(r * L, (r + 1) * L).some((w) => w > 0)) used++;
        if (aref.every((id, k) => row[k] === id)) arefRows++;
      }
      return { S: d.causal.length, arefRows, used };
    };
    // examples 2 and 5 have no regions: 6 of the 8 get an ARef (and a GCap) row
    const one = await s.make();
    assert.deepEqual(await count(one), { S: 24, arefRows: 6, used: 8 + 6 + 6 });
    await one.release();
    const three = await s.make({ extra: { arefRows: 3 } });
    assert.deepEqual(await count(three), { S: 40, arefRows: 18, used: 8 + 18 + 6 });
    const a = await three.trainStep(s.data);
    const b = await three.trainStep(s.data);
    assert.ok(Number.isFinite(a.loccaLoss!) && b.loccaLoss! < a.loccaLoss!, `${a.loccaLoss} → ${b.loccaLoss}`);
    await three.release();
    for (const bad of [0, 1.5]) await assert.rejects(s.make({ extra: { arefRows: bad } }), (e: unknown) => e instanceof SiglipError && e.code === "usage" && /--aref-rows/.test(e.message));
    await assert.rejects(s.make({ objectives: ["sigmoid"], extra: { arefRows: 2 } }), (e: unknown) => e instanceof SiglipError && e.code === "usage" && /LocCa/.test(e.message));
  });

  it("freezeParams: the named tensor (the image position table) stays bit-identical while the rest of the tower trains; an unknown name is a usage error", async () => {
    const pos = "vision_model.embeddings.position_embedding.weight";
    const t = await s.make({ extra: { freezeParams: [pos] } });
    assert.ok(!t.optimizer.trainable.includes(pos));
    await t.trainStep(s.data);
    await t.trainStep(s.data);
    assert.deepEqual(t.params.get(pos), s.params.get(pos));
    assert.notDeepEqual(t.params.get("vision_model.embeddings.patch_embedding.weight"), s.params.get("vision_model.embeddings.patch_embedding.weight"));
    await t.release();
    const free = await s.make();
    assert.ok(free.optimizer.trainable.includes(pos));
    await free.release();
    await assert.rejects(s.make({ extra: { freezeParams: ["vision_model.nope"] } }), (e: unknown) => e instanceof SiglipError && e.code === "usage" && /no parameter named "vision_model.nope"/.test(e.message));
  });

  it("nothing to train: --freeze vision,text with sigmoid only is a usage error; unknown objectives too", async () => {
    await assert.rejects(s.make({ freeze: ["vision", "text"], objectives: ["sigmoid"] }), (e: unknown) => e instanceof SiglipError && e.code === "usage" && /nothing to train/.test(e.message));
    await assert.rejects(s.make({ objectives: ["contrastive" as Objective] }), /unknown objective "contrastive"/);
  });

  it("saves decoder.safetensors beside a model.safetensors without decoder keys; resume is bit-for-bit; a fine-tune loads the saved decoder", async () => {
    const ref = await s.make({ accum: 2 });
    while (ref.step < 4) await ref.trainStep(s.data);
    const dir = tempDir();
    const first = await s.make({ accum: 2 });
    while (first.step < 2) await first.trainStep(s.data);
    first.save(dir, configJson, SOURCE_FIXTURE);
    await first.release();
    const model = SafetensorsFile.open(join(dir, "model.safetensors"));
    assert.ok(model.names().length > 0 && !model.names().some((n) => n.startsWith("decoder.")));
    model.close();
    const dec = SafetensorsFile.open(join(dir, DECODER_FILE));
    assert.deepEqual([...dec.names()].sort(), s.specs.filter((x) => x.name.startsWith("decoder.")).map((x) => x.name).sort());
    assert.deepEqual(dec.metadata, { format: "siglip2-locca-decoder", version: "1", layers: "1", box_bins: "500", step: "2" });
    dec.close();
    const opt = SafetensorsFile.open(join(dir, "optimizer.safetensors"));
    assert.ok(opt.has("m.decoder.lm_head.weight") && opt.has("v.decoder.layers.0.mlp.fc2.weight"));
    opt.close();

    const second = await s.make({ accum: 2 });
    second.resume(dir);
    while (second.step < 4) await second.trainStep(s.data);
    for (const [n, v] of ref.params) assert.deepEqual(second.params.get(n), v, n);
    for (const n of ref.optimizer.trainable) assert.deepEqual(second.optimizer.v.get(n), ref.optimizer.v.get(n), n);
    assert.deepEqual(second.history, ref.history);
    await second.release();
    await ref.release();

    // fine-tune: starting from the saved checkpoint loads its decoder, not a fresh one
    const ck = new Checkpoint(dir);
    const start = startingParams(ck.weights, dir, s.specs, 5);
    assert.equal(start.decoder, "loaded");
    const saved = loadDecoderParams(dir, s.specs)!;
    assert.deepEqual(start.params.get("decoder.lm_head.weight"), saved.get("decoder.lm_head.weight"));
    assert.ok(saved.get("decoder.lm_head.weight")!.some((v) => v !== 0));
    ck.close();
    // a decoder file of another format is refused in one line
    const other = tempDir();
    writeFileSync(join(other, DECODER_FILE), readFileSync(join(dir, "model.safetensors")));
    assert.throws(() => loadDecoderParams(other, s.specs), /not a LocCa decoder file/);
  });

  it("boxFormat padded: the rows write 3-digit boxes (same draws as canonical), decoder.safetensors records box_format, resume checks it", async () => {
    const tok = await GemmaTokenizer.fromFile(s.ckpt.tokenizerPath());
    const boxes = async (t: Trainer, format: BoxFormat) => {
      const d = await (t["decoderRows"] as Trainer["decoderRows"]).call(t, s.data, [0, 1, 2, 3, 4, 5, 6, 7], new Rng(3));
      const L = d.inputIds.length / d.causal.length;
      const out: Array<readonly number[]> = [];
      for (let r = 0; r < d.causal.length; r++) {
        const row = Array.from(d.targets.subarray(r * L, (r + 1) * L), Number).filter((id, k) => d.weights[r * L + k]! > 0 && id !== tok.eosId);
        const text = tok.decode(row);
        const m = / : ([0-9 ]+)$/.exec(text) ?? /^ ?([0-9 ]+) : /.exec(text); // ARef: "… : box", GCap: "box : …"
        if (!m) continue;
        const p = parseBoxText(m[1]!, format);
        assert.ok(p.ok, `${format}: ${JSON.stringify(text)}`);
        if (format === "padded") assert.match(m[1]!.trim(), /^[0-9]{3} [0-9]{3} [0-9]{3} [0-9]{3}$/);
        out.push(p.box);
      }
      return out;
    };
    const canonical = await s.make();
    const padded = await s.make({ extra: { boxFormat: "padded" } });
    const bc = await boxes(canonical, "canonical");
    assert.equal(bc.length, 12); // 6 examples with regions: an ARef and a GCap row each
    assert.deepEqual(await boxes(padded, "padded"), bc);
    await canonical.release();
    await padded.trainStep(s.data);
    const dir = tempDir();
    padded.save(dir, configJson, SOURCE_FIXTURE);
    await padded.release();
    const dec = SafetensorsFile.open(join(dir, DECODER_FILE));
    assert.deepEqual(dec.metadata, { format: "siglip2-locca-decoder", version: "1", layers: "1", box_bins: "500", step: "1", box_format: "padded" });
    dec.close();
    assert.equal(decoderFileBoxFormat(dir), "padded");
    const again = await s.make();
    assert.throws(() => again.resume(dir), (e: unknown) => e instanceof SiglipError && e.code === "usage" && /boxFormat "padded" → unset/.test(e.message));
    await again.release();
    await assert.rejects(s.make({ extra: { boxFormat: "hex" as BoxFormat } }), (e: unknown) => e instanceof SiglipError && e.code === "usage" && e.message === '--box-format must be canonical or padded (got "hex")');
  });

  it("the decoder rows are a pure function of (seed, step): two runs give identical parameters", async () => {
    const a = await s.make({ freeze: ["vision", "text"], steps: 2 });
    const b = await s.make({ freeze: ["vision", "text"], steps: 2 });
    for (const t of [a, b]) while (t.step < 2) await t.trainStep(s.data);
    assert.deepEqual(a.params.get("decoder.lm_head.weight"), b.params.get("decoder.lm_head.weight"));
    await a.release();
    await b.release();
  });
});

/** A PNG of w × h pixels. */
async function png(path: string, w: number, h: number, shade: number): Promise<void> {
  await sharp(Buffer.alloc(w * h * 3, shade), { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

describe("LocCa data: manifest regions and COCO files", () => {
  it("manifest regions are validated with file:line; boxes are clamped to the decoded image's own size", async () => {
    const dir = tempDir();
    await png(join(dir, "wide.png"), 64, 32, 90);
    const good = `{"image":"wide.png","text":"a wide image","regions":[{"box":[-5,2,70,20],"text":"the bar"}]}\n`;
    writeFileSync(join(dir, "metadata.jsonl"), good);
    const recs = readManifest(dir);
    assert.deepEqual(recs[0]!.regions, [{ box: [-5, 2, 70, 20], text: "the bar" }]);
    const ckpt = new Checkpoint(SOURCE_FIXTURE);
    const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
    const proc = parseImageProcessorConfig(ckpt.preprocessorConfig, 32);
    const fp = new FilePairs(recs, proc, tok, 64, true, 1024);
    const row = await fp.locca!.row(0);
    assert.deepEqual(row, { row: { text: "a wide image", regions: [{ box: [0, 2, 64, 20], text: "the bar" }] }, width: 64, height: 32 });
    assert.deepEqual(fp.locca!.specials, { pad: 0, eos: 1, bos: 2, mask: 1024 });
    ckpt.close();
    const bad = (regions: string, why: RegExp) => {
      writeFileSync(join(dir, "metadata.jsonl"), `${good}{"image":"wide.png","text":"b","regions":${regions}}\n`);
      assert.throws(() => readManifest(dir), (e: unknown) => e instanceof SiglipError && /metadata\.jsonl:2: /.test(e.message) && why.test(e.message) && !e.message.includes("\n"));
    };
    bad(`[{"box":[10,0,5,8],"text":"x"}]`, /region 0: box \[10, 0, 5, 8\] needs x0 < x1/);
    bad(`[{"box":[0,9,5,9],"text":"x"}]`, /needs y0 < y1/);
    bad(`[{"box":[0,0,"5",8],"text":"x"}]`, /coordinate "5" is not a finite number/);
    bad(`[{"box":[0,0,5],"text":"x"}]`, /"box" must be \[x0, y0, x1, y1\]/);
    bad(`[{"box":[0,0,5,8]}]`, /"text" must be a non-empty string/);
    bad(`{"box":[0,0,5,8]}`, /"regions" is a object|"regions" is an? object/);
    bad(`[1e999]`, /region 0 is a number/);
    // wholly outside the image: found when the image is decoded
    writeFileSync(join(dir, "metadata.jsonl"), `{"image":"wide.png","text":"a","regions":[{"box":[100,0,120,8],"text":"x"}]}\n`);
    const out = new FilePairs(readManifest(dir), proc, tok, 64, true, 1024);
    await assert.rejects(out.locca!.row(0), /metadata\.jsonl:1: region 0 box \[100, 0, 120, 8\] lies outside the 64×32 image/);
  });

  it("COCO captions + instances: one pair per caption with every box as a region (category names); instances alone caption with the names", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "val"));
    await png(join(dir, "val", "1.png"), 40, 30, 10);
    await png(join(dir, "val", "2.png"), 40, 30, 200);
    const images = [{ id: 1, file_name: "1.png", width: 40, height: 30 }, { id: 2, file_name: "2.png", width: 40, height: 30 }];
    const categories = [{ id: 7, name: "dog" }, { id: 9, name: "frisbee" }];
    writeFileSync(join(dir, "captions.json"), JSON.stringify({ images, annotations: [{ id: 1, image_id: 1, caption: "a dog" }, { id: 2, image_id: 1, caption: "a dog playing" }, { id: 3, image_id: 2, caption: "grass" }] }));
    writeFileSync(join(dir, "instances.json"), JSON.stringify({ images, categories, annotations: [{ id: 5, image_id: 1, bbox: [1, 2, 10, 20], category_id: 7 }, { id: 6, image_id: 1, bbox: [20, 5, 5.5, 4], category_id: 9 }] }));
    const both = readManifest(`${join(dir, "captions.json")},${join(dir, "instances.json")}`, { images: join(dir, "val") });
    const dogRegions = [{ box: [1, 2, 11, 22], text: "dog" }, { box: [20, 5, 25.5, 9], text: "frisbee" }];
    assert.deepEqual(both.map((r) => [r.image, r.caption, r.regions]), [
      [join(dir, "val", "1.png"), "a dog", dogRegions], [join(dir, "val", "1.png"), "a dog playing", dogRegions], [join(dir, "val", "2.png"), "grass", []],
    ]);
    const alone = readCoco([join(dir, "instances.json")], join(dir, "val"));
    assert.deepEqual(alone.map((r) => r.caption), ["dog, frisbee"]);
    const bad = (obj: unknown, why: RegExp) => {
      const f = join(dir, "bad.json");
      writeFileSync(f, typeof obj === "string" ? obj : JSON.stringify(obj));
      assert.throws(() => readManifest(f), (e: unknown) => e instanceof SiglipError && e.message.includes("bad.json") && why.test(e.message) && !e.message.includes("\n"));
    };
    bad("{", /not valid JSON/);
    bad([], /top level is an array/);
    bad({ annotations: [] }, /"images" is missing/);
    bad({ images, categories, annotations: [{ id: 4, image_id: 1, bbox: [0, 0, 0, 5], category_id: 7 }] }, /annotations\[0\] \(id 4\): bbox \[0, 0, 0, 5\] has no area/);
    bad({ images, categories, annotations: [{ image_id: 1, bbox: [0, 0, "a", 5], category_id: 7 }] }, /annotations\[0\]: bbox value "a" is not a finite number/);
    bad({ images, categories, annotations: [{ image_id: 1, bbox: [0, 0, 3, 5], category_id: 8 }] }, /category_id 8 is not in categories/);
    bad({ images, annotations: [{ image_id: 3, caption: "x" }] }, /image_id 3, which is not in images/);
    bad({ images, annotations: [{ image_id: 1 }] }, /neither "caption" nor "bbox"/);
    bad({ images: [{ id: 1 }], annotations: [] }, /images\[0\]: "file_name" must be a non-empty string/);
    bad({ images, annotations: [] }, /no image has a caption or a box/);
  });
});

describe("siglip2 train --objectives sigmoid,locca (CLI, COCO data)", async () => {
  const BIN = join(REPO, "dist", "cli", "main.js");
  const dir = tempDir();
  const pairs = synthesize(8, 32, 5);
  const images: unknown[] = [];
  const annotations: unknown[] = [];
  for (const [i, p] of pairs.entries()) {
    const rgb = Buffer.alloc(32 * 32 * 3);
    for (let c = 0; c < 3; c++) for (let k = 0; k < 32 * 32; k++) rgb[k * 3 + c] = Math.round((p.pixels[c * 1024 + k]! * 0.5 + 0.5) * 255);
    await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(dir, `img${i}.png`));
    images.push({ id: i, file_name: `img${i}.png` });
    annotations.push({ id: 100 + i, image_id: i, caption: p.caption });
    annotations.push({ id: 200 + i, image_id: i, bbox: [4, 4, 16 + i, 12], category_id: 1 + (i % 2) });
  }
  writeFileSync(join(dir, "coco.json"), JSON.stringify({ images, annotations, categories: [{ id: 1, name: "shape" }, { id: 2, name: "thing" }] }));
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, "train", "--model", SOURCE_FIXTURE, "--threads", "1", "--data", join(dir, "coco.json"), ...args], { encoding: "utf8" });

  it("logs both losses, writes decoder.safetensors; --freeze vision,text keeps model.safetensors' tensors as they were", () => {
    const out = tempDir();
    const r = run("--out", out, "--steps", "2", "--batch-size", "4", "--objectives", "sigmoid,locca", "--freeze", "vision,text", "--vocab-chunk", "300", "--lr", "1e-3");
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    for (const l of lines.slice(0, 2)) {
      for (const k of ["loss", "sigmoid_loss", "locca_loss"]) assert.ok(Number.isFinite(l[k]), k);
      assert.equal(l.loss, l.locca_loss);
    }
    assert.ok(Math.abs(lines[0].locca_loss - Math.log(1024)) < 1e-5, "zero-init head, vocabulary-chunked loss");
    assert.ok(existsSync(join(out, DECODER_FILE)));
    const a = SafetensorsFile.open(join(out, "model.safetensors"));
    const b = SafetensorsFile.open(join(SOURCE_FIXTURE, "model.safetensors"));
    assert.deepEqual([...a.names()].sort(), [...b.names()].sort());
    for (const n of b.names()) assert.deepEqual(a.readFloat32(n), b.readFloat32(n), n);
    a.close();
    b.close();
    const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8"));
    assert.deepEqual([state.run.freeze, state.run.objectives, state.run.vocabChunk], ["vision,text", ["sigmoid", "locca"], 300]);
  });

  it("--stop-at + --resume with LocCa (both towers training, accumulation) equals an uninterrupted run, byte for byte", () => {
    const args = ["--steps", "3", "--batch-size", "4", "--accum-steps", "2", "--objectives", "sigmoid,locca", "--lr", "1e-3", "--seed", "4"];
    const full = tempDir();
    const a = run("--out", full, ...args);
    assert.equal(a.status, 0, a.stderr);
    const split = tempDir();
    assert.equal(run("--out", split, ...args, "--stop-at", "1").status, 0);
    const b = run("--out", split, ...args, "--resume");
    assert.equal(b.status, 0, b.stderr);
    for (const f of ["model.safetensors", DECODER_FILE, "optimizer.safetensors"]) assert.deepEqual(readFileSync(join(split, f)), readFileSync(join(full, f)), f);
    // a sigmoid-only fine-tune of this checkpoint carries its decoder along unchanged
    const next = tempDir();
    const c = spawnSync(process.execPath, [BIN, "train", "--model", full, "--threads", "1", "--data", join(dir, "coco.json"), "--out", next, "--steps", "1", "--batch-size", "4"], { encoding: "utf8" });
    assert.equal(c.status, 0, c.stderr);
    assert.deepEqual(readFileSync(join(next, DECODER_FILE)), readFileSync(join(full, DECODER_FILE)));
  });

  it("--box-format padded is recorded in decoder.safetensors and kept by a fine-tune; a bad value or no LocCa objective is one line", () => {
    const base = ["--steps", "1", "--batch-size", "4", "--lr", "1e-3"];
    const out = tempDir();
    const r = run("--out", out, ...base, "--objectives", "sigmoid,locca", "--box-format", "padded");
    assert.equal(r.status, 0, r.stderr);
    const meta = () => { const f = SafetensorsFile.open(join(out, DECODER_FILE)); try { return f.metadata; } finally { f.close(); } };
    assert.equal(meta()["box_format"], "padded");
    assert.equal(JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).run.boxFormat, "padded");
    // fine-tuning that decoder (no --box-format) keeps its format
    const next = tempDir();
    const c = spawnSync(process.execPath, [BIN, "train", "--model", out, "--threads", "1", "--data", join(dir, "coco.json"), "--out", next, ...base, "--objectives", "sigmoid,locca", "--freeze", "vision,text"], { encoding: "utf8" });
    assert.equal(c.status, 0, c.stderr);
    const f = SafetensorsFile.open(join(next, DECODER_FILE));
    assert.equal(f.metadata["box_format"], "padded");
    f.close();
    const bad = run("--out", tempDir(), ...base, "--objectives", "sigmoid,locca", "--box-format", "hex");
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--box-format.*hex.*(canonical|padded)/);
    assert.ok(!/\n\s+at /.test(bad.stderr), bad.stderr);
    const noLocca = run("--out", tempDir(), ...base, "--box-format", "padded");
    assert.notEqual(noLocca.status, 0);
    assert.equal(noLocca.stderr.trim().split("\n").length, 1, noLocca.stderr);
    assert.match(noLocca.stderr, /--box-format applies to the LocCa decoder/);
  });

  it("--memory-position: a new decoder gets sincos2d (recorded, and locate reads it); none is left out of the file; a fine-tune keeps the loaded decoder's; a bad value is one line", async () => {
    const base = ["--steps", "1", "--batch-size", "4", "--lr", "1e-3", "--objectives", "sigmoid,locca"];
    const meta = (d: string) => { const f = SafetensorsFile.open(join(d, DECODER_FILE)); try { return f.metadata; } finally { f.close(); } };
    const fresh = tempDir();
    assert.equal(run("--out", fresh, ...base).status, 0);
    assert.equal(meta(fresh)["memory_position"], "sincos2d");
    assert.equal(JSON.parse(readFileSync(join(fresh, "trainer_state.json"), "utf8")).run.memoryPosition, "sincos2d");
    const { LoccaDecoderModel } = await import("../src/models/locca-infer.js");
    const ck = new Checkpoint(fresh);
    const dec = await LoccaDecoderModel.load(ck, { cacheDir: null });
    assert.equal(dec.config.memoryPosition, "sincos2d");
    await dec.release();
    ck.close();
    const none = tempDir();
    assert.equal(run("--out", none, ...base, "--memory-position", "none").status, 0);
    assert.equal(meta(none)["memory_position"], undefined);
    const next = tempDir();
    const c = spawnSync(process.execPath, [BIN, "train", "--model", none, "--threads", "1", "--data", join(dir, "coco.json"), "--out", next, ...base, "--freeze", "vision,text"], { encoding: "utf8" });
    assert.equal(c.status, 0, c.stderr);
    assert.equal(meta(next)["memory_position"], undefined, "the fine-tuned decoder keeps none");
    const bad = run("--out", tempDir(), ...base, "--memory-position", "rope");
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--memory-position.*rope.*(none|sincos2d)/);
    assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
  });
});

describe("runSynthetic with objectives (for the ablation)", () => {
  it("sigmoid,locca: both parts on the curve; the LocCa loss starts at ln V and falls", async () => {
    const { runSynthetic } = await import("../src/train/experiment.js");
    const r = await runSynthetic({
      tokenizerPath: join(SOURCE_FIXTURE, "tokenizer.json"), trainPairs: 128, testImages: 16, steps: 30, batchSize: 8, lr: 3e-3, warmupSteps: 3, seed: 3,
      width: 32, layers: 2, threads: 1, objectives: ["sigmoid", "locca"],
    });
    assert.ok(Math.abs(r.curve[0]!.loccaLoss! - Math.log(1024)) < 1e-5);
    const tail = r.curve.slice(-5).reduce((a, c) => a + c.loccaLoss!, 0) / 5;
    assert.ok(tail < Math.log(1024) - 1, `LocCa loss ${r.curve[0]!.loccaLoss} → ${tail}`);
    assert.ok(r.curve.every((c) => Number.isFinite(c.sigmoidLoss!) && Math.abs(c.loss - c.sigmoidLoss! - c.loccaLoss!) < 1e-4));
    process.stderr.write(`# synthetic + LocCa: locca_loss ${r.curve[0]!.loccaLoss!.toFixed(3)} → ${tail.toFixed(3)} over ${r.curve.length} steps; ${r.seconds.toFixed(1)} s\n`);
  });
});
