/**
 * Safetensors reader and checkpoint loader: header validation, dtype conversion,
 * sharded indexes, missing or mis-shaped tensors, sparse configs.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync, truncateSync, writeFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SiglipError } from "../src/errors.js";
import { Checkpoint, WeightStore } from "../src/weights/checkpoint.js";
import { parseConfig } from "../src/weights/config.js";
import { SafetensorsFile, halfToFloat } from "../src/weights/safetensors.js";
import { isValidShardName, parseShardIndex } from "../src/weights/shard-index.js";
import { sha256File } from "../src/weights/hash.js";
import { checkpointFingerprint } from "../src/weights/fingerprint.js";
import { expandHome, expandPath } from "../src/user-dirs.js";
import { createHash } from "node:crypto";
import { FixresVisionTower, TextTower } from "../src/models/siglip.js";
import { copyFixture, safetensorsBytes, tempDir, writeSafetensors } from "./harness/files.js";
import { FIXTURES } from "./harness/paths.js";

const model = (n: string) => join(FIXTURES, "models", n);

function rejects(fn: () => unknown, ...needles: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SiglipError, `expected SiglipError, got ${String(e)}`);
    for (const n of needles) assert.ok(e.message.includes(n), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(n)}`);
    assert.ok(!e.message.includes("\n"), "message must be one line");
    return true;
  });
}

describe("safetensors header validation", () => {
  const dir = tempDir();
  const data = new Uint8Array(16);
  const cases: Array<[string, Uint8Array, string]> = [
    ["short.safetensors", new Uint8Array(5), "too short"],
    ["hugehdr.safetensors", safetensorsBytes({}, data, 1n << 40n), "exceeds"],
    ["pastend.safetensors", safetensorsBytes({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, data, 5000n), "past the end"],
    ["notjson.safetensors", (() => { const b = Buffer.from("{not json!!"); const l = Buffer.alloc(8); l.writeBigUInt64LE(BigInt(b.length)); return Buffer.concat([l, b]); })(), "not valid JSON"],
    ["dtype.safetensors", safetensorsBytes({ a: { dtype: "F8", shape: [4], data_offsets: [0, 16] } }, data), "unknown dtype"],
    ["shape.safetensors", safetensorsBytes({ a: { dtype: "F32", shape: [5], data_offsets: [0, 16] } }, data), "needs 20 bytes"],
    ["offsets.safetensors", safetensorsBytes({ a: { dtype: "F32", shape: [8], data_offsets: [0, 32] } }, data), "past the end"],
    ["overlap.safetensors", safetensorsBytes({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] }, b: { dtype: "F32", shape: [2], data_offsets: [8, 16] } }, data), "overlap"],
    ["negshape.safetensors", safetensorsBytes({ a: { dtype: "F32", shape: [-4], data_offsets: [0, 16] } }, data), "invalid shape"],
  ];
  for (const [file, bytes, needle] of cases) {
    it(`rejects ${file} (${needle})`, () => {
      const p = join(dir, file);
      writeFileSync(p, bytes);
      rejects(() => SafetensorsFile.open(p), p, needle);
    });
  }

  it("rejects a truncated real checkpoint, naming the file", () => {
    const d = copyFixture("fixres-f32");
    const p = join(d, "model.safetensors");
    truncateSync(p, Math.floor(statSync(p).size / 2));
    rejects(() => new Checkpoint(d).weights, p, "truncated");
  });

  it("reads F32 values and converts F16/BF16 exactly", () => {
    const f32 = SafetensorsFile.open(join(model("fixres-f32"), "model.safetensors"));
    const f16 = SafetensorsFile.open(join(model("fixres-f16"), "model.safetensors"));
    const bf16 = SafetensorsFile.open(join(model("fixres-bf16"), "model.safetensors"));
    const k = "vision_model.encoder.layers.0.mlp.fc1.weight";
    assert.equal(f16.info(k).dtype, "F16");
    assert.equal(bf16.info(k).dtype, "BF16");
    const a = f32.readFloat32(k), b = f16.readFloat32(k), c = bf16.readFloat32(k);
    // F16/BF16 are the same weights rounded: within half an ulp of each format.
    for (let i = 0; i < a.length; i++) {
      assert.ok(Math.abs(a[i]! - b[i]!) <= Math.abs(a[i]!) * 2 ** -11 + 2 ** -25, `f16 ${i}`);
      assert.ok(Math.abs(a[i]! - c[i]!) <= Math.abs(a[i]!) * 2 ** -8 + 1e-38, `bf16 ${i}`);
    }
    // and BF16 is exactly the top 16 bits of a float32
    const u = new Uint32Array(c.buffer);
    for (let i = 0; i < u.length; i++) assert.equal(u[i]! & 0xffff, 0);
    for (const f of [f32, f16, bf16]) f.close();
  });

  it("decodes binary16 special values", () => {
    assert.equal(halfToFloat(0x3c00), 1);
    assert.equal(halfToFloat(0xc000), -2);
    assert.equal(halfToFloat(0x0001), 2 ** -24);
    assert.equal(halfToFloat(0x7bff), 65504);
    assert.equal(halfToFloat(0x7c00), Infinity);
    assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  });

  it("reads single rows of a 2-D tensor without loading it", () => {
    const f = SafetensorsFile.open(join(model("fixres-f32"), "model.safetensors"));
    const k = "text_model.embeddings.token_embedding.weight";
    const all = f.readFloat32(k);
    const D = f.info(k).shape[1]!;
    const rows = f.readRowsFloat32(k, [5, 0, 1023]);
    assert.deepEqual(Array.from(rows.subarray(0, D)), Array.from(all.subarray(5 * D, 6 * D)));
    assert.deepEqual(Array.from(rows.subarray(2 * D)), Array.from(all.subarray(1023 * D, 1024 * D)));
    assert.throws(() => f.readRowsFloat32(k, [1024]), SiglipError);
    f.close();
  });
});

describe("checkpoints", () => {
  it("a sharded checkpoint exposes the same tensors as the single file", () => {
    const a = WeightStore.openDir(model("fixres-f32"));
    const b = WeightStore.openDir(model("fixres-sharded"));
    assert.deepEqual(a.names().sort(), b.names().sort());
    for (const n of a.names()) assert.deepEqual(a.float32(n), b.float32(n), n);
  });

  it("a missing shard is named", () => {
    const d = copyFixture("fixres-sharded");
    rmSync(join(d, "model-00002-of-00003.safetensors"));
    rejects(() => new Checkpoint(d).weights, "model-00002-of-00003.safetensors", "missing");
  });

  it("no weights at all is a clear error", () => {
    const d = copyFixture("fixres-f32");
    rmSync(join(d, "model.safetensors"));
    rejects(() => new Checkpoint(d).weights, d, "no weights found");
  });

  it("missing config.json is named", () => {
    const d = copyFixture("fixres-f32");
    rmSync(join(d, "config.json"));
    rejects(() => new Checkpoint(d), join(d, "config.json"));
  });

  it("a missing tensor is named before any graph is built", async () => {
    const d = copyFixture("fixres-f32");
    const src = SafetensorsFile.open(join(d, "model.safetensors"));
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const n of src.names()) if (n !== "vision_model.encoder.layers.1.mlp.fc2.bias") tensors[n] = { shape: src.info(n).shape, data: src.readFloat32(n) };
    src.close();
    writeSafetensors(join(d, "model.safetensors"), tensors);
    await assert.rejects(FixresVisionTower.load(new Checkpoint(d)), (e: unknown) => e instanceof SiglipError && e.message.includes("vision_model.encoder.layers.1.mlp.fc2.bias") && e.message.includes("missing"));
    // the text tower does not need that tensor and still loads
    await (await TextTower.load(new Checkpoint(d))).release();
  });

  it("a mis-shaped tensor is named with both shapes", async () => {
    const d = copyFixture("fixres-f32");
    const src = SafetensorsFile.open(join(d, "model.safetensors"));
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const n of src.names()) tensors[n] = { shape: src.info(n).shape, data: src.readFloat32(n) };
    src.close();
    const k = "text_model.head.weight";
    tensors[k] = { shape: [16, 64], data: tensors[k]!.data };
    writeSafetensors(join(d, "model.safetensors"), tensors);
    await assert.rejects(TextTower.load(new Checkpoint(d)), (e: unknown) => e instanceof SiglipError && e.message.includes(k) && e.message.includes("[16, 64]") && e.message.includes("expected [32, 32]"));
  });
});

describe("config", () => {
  it("applies the transformers class defaults to a sparse config", () => {
    const c = parseConfig({ model_type: "siglip", text_config: { vocab_size: 256000 }, vision_config: { image_size: 512 } });
    assert.equal(c.text_config.hidden_size, 768);
    assert.equal(c.text_config.projection_size, 768);
    assert.equal(c.text_config.max_position_embeddings, 64);
    assert.equal(c.text_config.layer_norm_eps, 1e-6);
    assert.equal(c.vision_config.patch_size, 16);
    assert.equal(c.vision_config.num_hidden_layers, 12);
    assert.equal(c.vision_config.image_size, 512);
    assert.equal(c.vision_config.hidden_act, "gelu_pytorch_tanh");
  });

  it("the committed fixture configs are sparse (defaults must be applied)", () => {
    const raw = JSON.parse(readFileSync(join(model("fixres-f32"), "config.json"), "utf8"));
    assert.equal(raw.vision_config.layer_norm_eps, undefined);
    const c = new Checkpoint(model("fixres-f32")).config;
    assert.equal(c.vision_config.layer_norm_eps, 1e-6);
  });

  it("rejects configs that are not SigLIP", () => {
    rejects(() => parseConfig({ model_type: "clip" }, "x/config.json"), "x/config.json", "not a SigLIP");
    rejects(() => parseConfig({ model_type: "siglip", text_config: { hidden_size: 30, num_attention_heads: 4 } }, "c.json"), "not divisible");
    rejects(() => parseConfig({ model_type: "siglip", vision_config: { hidden_act: "relu" } }, "c.json"), "hidden_act");
  });
});

describe("the shard index (one parser: loader, fingerprint, Hub download)", () => {
  it("accepts plain file names, lists each shard once in order of first appearance", () => {
    const idx = parseShardIndex({ weight_map: { a: "s2.safetensors", b: "s1.safetensors", c: "s2.safetensors" } }, "/x/index.json");
    assert.deepEqual(idx.shards, ["s2.safetensors", "s1.safetensors"]);
    assert.deepEqual(idx.entries, [["a", "s2.safetensors"], ["b", "s1.safetensors"], ["c", "s2.safetensors"]]);
  });
  it("refuses sub-folders, absolute paths, . and .., drive letters, NUL, empty and non-string names", () => {
    for (const bad of ["sub/s.safetensors", "/etc/passwd", "..", ".", "../x.safetensors", "C:x.safetensors", "a\\b", "a\0b", "", 7, null]) {
      assert.equal(isValidShardName(bad), false, `accepted ${JSON.stringify(bad)}`);
      rejects(() => parseShardIndex({ weight_map: { t: bad } }, "/x/index.json"), "/x/index.json", "invalid shard name");
    }
    for (const good of ["model-00001-of-00002.safetensors", "..hidden", "a.b"]) assert.equal(isValidShardName(good), true, good);
  });
  it("refuses an index without a weight_map object or with an empty one", () => {
    rejects(() => parseShardIndex(null, "/i"), "has no weight_map object");
    rejects(() => parseShardIndex({ weight_map: [] }, "/i"), "has no weight_map object");
    rejects(() => parseShardIndex({ weight_map: {} }, "/i"), "weight_map lists no tensors");
  });
  it("the fingerprint applies the same rule as the loader (a sub-folder shard is refused, not hashed)", async () => {
    const d = copyFixture("fixres-sharded");
    const p = join(d, "model.safetensors.index.json");
    const idx = JSON.parse(readFileSync(p, "utf8")) as { weight_map: Record<string, string> };
    const [first] = Object.keys(idx.weight_map);
    idx.weight_map[first!] = "sub/" + idx.weight_map[first!];
    writeFileSync(p, JSON.stringify(idx));
    await assert.rejects(checkpointFingerprint(d), /invalid shard name "sub\//);
    rejects(() => WeightStore.openDir(d), "invalid shard name");
  });
});

describe("shared file helpers", () => {
  it("sha256File is the SHA-256 of the bytes, across read chunks", async () => {
    const d = tempDir();
    const p = join(d, "blob");
    const bytes = Buffer.alloc((4 << 20) + 12345, 7);
    writeFileSync(p, bytes);
    assert.equal(await sha256File(p), createHash("sha256").update(bytes).digest("hex"));
  });
  it("expandHome expands ~ and ~/ only; expandPath adds $VAR", () => {
    assert.equal(expandHome("~", "/h"), "/h");
    assert.equal(expandHome("~/m", "/h"), "/h/m");
    assert.equal(expandHome("~user/m", "/h"), "~user/m");
    assert.equal(expandHome("a/~/b", "/h"), "a/~/b");
    assert.equal(expandPath("~/$X/${Y}/$Z", { X: "x", Y: "y" }, "/h"), "/h/x/y/$Z");
  });
});
