/**
 * Hostile checkpoints: safetensors files Python `safetensors` refuses, weights that are
 * not regular files, non-finite and huge weights, integer dtypes, shard indexes that
 * escape the folder, and config ↔ weights mismatches.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { copyFixture, safetensorsBytes } from "../harness/files.js";
import { expectCleanError, expectReturns, expectThrows, type CaseResult, type HostileCase } from "./harness.js";
import { WeightStore } from "../../src/weights/checkpoint.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import {
  IMG_47x61, apiRun, classify, embedImage, embedText, readRaw, setF32, withConfig, withTensors, withWeightBytes, writeRaw, type RawTensor,
} from "./weights-kit.js";

const W = "model.safetensors";
const PATCH_BIAS = "vision_model.embeddings.patch_embedding.bias";
const TOKENS = "text_model.embeddings.token_embedding.weight";
const isRoot = process.getuid?.() === 0;

/** Raw file bytes: a header object followed by `data`, with the header given as a string. */
function rawHeader(header: string, data: Uint8Array, lenOverride?: bigint): Buffer {
  const h = Buffer.from(header, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** A tiny file with one F32 tensor `a` of 4 values (valid unless changed). */
function tiny(extra: Record<string, unknown> = {}, data: Uint8Array = new Uint8Array(16)): Buffer {
  return Buffer.from(safetensorsBytes({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] }, ...extra }, data));
}

/** A library case: SafetensorsFile.open on raw bytes must throw naming the file and `needle`. */
function openCase(id: string, bytes: Uint8Array, needle: string | RegExp): HostileCase {
  return {
    id,
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      const p = join(dir, "x.safetensors");
      writeFileSync(p, bytes);
      return expectThrows(() => SafetensorsFile.open(p), [p, needle]);
    },
  };
}

/** A CLI case on fixres-f32 with damaged weight bytes: exit 2, one line naming model.safetensors and `needle`. */
function cliWeightsCase(id: string, damage: (t: Map<string, RawTensor>, meta: unknown) => Buffer, needle: string | RegExp, cmd: "text" | "image" = "text", via: "cli" | "api" = "api"): HostileCase {
  return {
    id,
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const src = copyFixture("fixres-f32");
      const { tensors, metadata } = readRaw(join(src, W));
      const dir = withWeightBytes("fixres-f32", damage(tensors, metadata));
      if (via === "api") return expectThrows(() => apiRun(dir, cmd), [join(dir, W), needle]);
      const r = cmd === "text" ? await embedText(dir) : await embedImage(dir);
      return expectCleanError(r, { mentions: [join(dir, W), needle] });
    },
  };
}

/** Header + data of `tensors` with the header given as JSON text (to inject duplicates). */
function denseParts(tensors: Map<string, RawTensor>): { entries: string[]; data: Buffer } {
  const entries: string[] = [];
  let off = 0;
  for (const [k, t] of tensors) {
    entries.push(`${JSON.stringify(k)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] })}`);
    off += t.bytes.length;
  }
  return { entries, data: Buffer.concat([...tensors.values()].map((t) => t.bytes)) };
}

/** A weights case that runs the tower on bad values and must name the tensor. */
function nonFiniteWeight(id: string, fixture: string, tensor: string, bits: (r: RawTensor) => void, cmd: "text" | "image" | "classify", via: "cli" | "api" = "api"): HostileCase {
  return {
    id,
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors(fixture, (t) => bits(t.get(tensor)!));
      if (via === "api") return expectThrows(() => apiRun(dir, cmd), [tensor, "non-finite"]);
      const r = cmd === "text" ? await embedText(dir) : cmd === "image" ? await embedImage(dir) : await classify(dir);
      return expectCleanError(r, { mentions: [tensor, "non-finite"] });
    },
  };
}

/** A sharded-index case: the fixres-sharded copy with its index edited. */
function indexCase(id: string, edit: (idx: { weight_map: Record<string, unknown> } & Record<string, unknown>, dir: string) => unknown, needle: string | RegExp, via: "cli" | "api" = "api"): HostileCase {
  return {
    id,
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-sharded");
      const p = join(dir, "model.safetensors.index.json");
      const idx = JSON.parse(readFileSync(p, "utf8"));
      const replaced = edit(idx, dir);
      if (replaced !== null) writeFileSync(p, typeof replaced === "string" ? replaced : JSON.stringify(replaced ?? idx));
      if (via === "api") return expectThrows(() => apiRun(dir, "text"), [needle]);
      return expectCleanError(await embedText(dir), { mentions: [needle] });
    },
  };
}

const cases: HostileCase[] = [
  // --- what Python safetensors refuses ------------------------------------------------------
  cliWeightsCase("ckpt-duplicate-tensor-name", (t, meta) => {
    const { entries, data } = denseParts(t);
    // the patch-embedding bias listed twice: the second copy points at another tensor's bytes
    const other = entries.find((e) => e.startsWith(JSON.stringify("vision_model.post_layernorm.bias")))!;
    const fake = `${JSON.stringify(PATCH_BIAS)}${other.slice(other.indexOf(":"))}`;
    return rawHeader(`{"__metadata__":${JSON.stringify(meta)},${entries.join(",")},${fake}}`, data);
  }, /tensor vision_model\.embeddings\.patch_embedding\.bias is listed twice/, "image", "cli"),
  cliWeightsCase("ckpt-duplicate-key-in-entry", (t) => {
    const { entries, data } = denseParts(t);
    entries[0] = entries[0]!.replace(`"dtype":"F32"`, `"dtype":"F16","dtype":"F32"`);
    return rawHeader(`{${entries.join(",")}}`, data);
  }, /key dtype appears twice/, "text", "api"),
  cliWeightsCase("ckpt-int32-relabelled", (t, meta) => {
    t.get(PATCH_BIAS)!.dtype = "I32"; // same byte count: F32 bits read as integers near 1e9
    const { entries, data } = denseParts(t);
    return rawHeader(`{"__metadata__":${JSON.stringify(meta)},${entries.join(",")}}`, data);
  }, `${PATCH_BIAS} has dtype I32`, "image", "cli"),
  cliWeightsCase("ckpt-u32-relabelled-token-table", (t) => {
    t.get(TOKENS)!.dtype = "U32";
    const { entries, data } = denseParts(t);
    return rawHeader(`{${entries.join(",")}}`, data);
  }, `${TOKENS} has dtype U32`),
  cliWeightsCase("ckpt-bool-relabelled", (t) => {
    const r = t.get("text_model.final_layer_norm.bias")!;
    t.set("text_model.final_layer_norm.bias", { dtype: "BOOL", shape: [r.bytes.length], bytes: r.bytes });
    const { entries, data } = denseParts(t);
    return rawHeader(`{${entries.join(",")}}`, data);
  }, "text_model.final_layer_norm.bias has shape [128], expected [32]"),
  cliWeightsCase("ckpt-invalid-utf8-name", (t) => {
    const { entries, data } = denseParts(t);
    const head = Buffer.from(`{${entries.join(",")},"bad`, "utf8");
    const tail = Buffer.from(`":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`, "utf8");
    const h = Buffer.concat([head, Buffer.from([0xff, 0xfe]), tail]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    return Buffer.concat([len, h, data]);
  }, "not valid UTF-8"),
  openCase("ckpt-invalid-utf8-metadata", (() => {
    const h = Buffer.concat([Buffer.from(`{"__metadata__":{"format":"`), Buffer.from([0xc3, 0x28]), Buffer.from(`"},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    return Buffer.concat([len, h, new Uint8Array(16)]);
  })(), "not valid UTF-8"),
  openCase("ckpt-metadata-number-value", tiny({ __metadata__: { format: "pt", step: 3 } }), /__metadata__ value of step is not a string/),
  openCase("ckpt-metadata-object-value", tiny({ __metadata__: { nested: { a: "b" } } }), /__metadata__ value of nested is not a string/),
  openCase("ckpt-metadata-array", tiny({ __metadata__: ["pt"] }), "__metadata__ is not an object"),
  openCase("ckpt-gap-between-tensors", Buffer.from(safetensorsBytes({
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [2], data_offsets: [12, 20] },
  }, new Uint8Array(20))), /4 unused bytes between tensors a and b/),
  openCase("ckpt-gap-before-first-tensor", Buffer.from(safetensorsBytes({ a: { dtype: "F32", shape: [4], data_offsets: [8, 24] } }, new Uint8Array(24))), /8 unused bytes before the first tensor a/),
  openCase("ckpt-trailing-bytes", tiny({}, new Uint8Array(20)), /4 unused bytes after the last tensor/),
  openCase("ckpt-overlap", Buffer.from(safetensorsBytes({
    a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
    b: { dtype: "F32", shape: [2], data_offsets: [8, 16] },
  }, new Uint8Array(16))), "overlap"),
  openCase("ckpt-header-leading-space", rawHeader(` {"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, new Uint8Array(16)), "does not start with '{'"),
  openCase("ckpt-header-array", rawHeader(`[1,2]`, new Uint8Array(0)), "does not start with '{'"),
  openCase("ckpt-header-not-json", rawHeader(`{"a":`, new Uint8Array(0)), "not valid JSON"),
  openCase("ckpt-huge-header-claim", rawHeader(`{}`, new Uint8Array(0), 1n << 62n), "exceeds"),
  openCase("ckpt-header-past-end", rawHeader(`{}`, new Uint8Array(0), 4096n), "runs past the end"),
  openCase("ckpt-zero-byte-file", new Uint8Array(0), "too short"),
  openCase("ckpt-unknown-dtype", tiny({ b: { dtype: "F8_E4M3", shape: [0], data_offsets: [16, 16] } }), "unknown dtype"),
  openCase("ckpt-shape-size-mismatch", tiny({ b: { dtype: "F32", shape: [3], data_offsets: [16, 16] } }), "needs 12 bytes"),
  openCase("ckpt-fractional-shape", tiny({ b: { dtype: "F32", shape: [1.5], data_offsets: [16, 16] } }), "invalid shape"),
  openCase("ckpt-huge-shape-entries", tiny({ b: { dtype: "F32", shape: [2 ** 53, 2 ** 53], data_offsets: [16, 16] } }), "invalid shape"),
  openCase("ckpt-entry-not-object", tiny({ b: [1, 2, 3] }), "entry b is not an object"),
  openCase("ckpt-tensor-name-newline", tiny({ "b\nc": { dtype: "F32", shape: [3], data_offsets: [16, 16] } }), /"b\\nc"/),
  {
    id: "ckpt-truncated-data",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      truncateSync(join(dir, W), 200_000);
      return expectThrows(() => apiRun(dir, "text"), [join(dir, W), "truncated"]);
    },
  },

  // --- weights that are not regular files ---------------------------------------------------
  {
    id: "ckpt-fifo-weights",
    area: "checkpoint",
    expect: "clean-error",
    timeoutMs: 10_000,
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, W));
      execFileSync("mkfifo", [join(dir, W)]);
      return expectCleanError(await embedText(dir, { timeoutMs: 10_000 }), { mentions: [join(dir, W), "a FIFO, not a regular file"] });
    },
  },
  {
    id: "ckpt-tokenizer-fifo",
    area: "checkpoint",
    expect: "clean-error",
    timeoutMs: 10_000,
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, "tokenizer.json"));
      execFileSync("mkfifo", [join(dir, "tokenizer.json")]);
      return expectCleanError(await embedText(dir, { timeoutMs: 10_000 }), { mentions: [join(dir, "tokenizer.json"), "a FIFO, not a regular file"] });
    },
  },
  {
    id: "ckpt-symlink-dev-zero",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, W));
      symlinkSync("/dev/zero", join(dir, W));
      return expectThrows(() => apiRun(dir, "text"), [join(dir, W), "a character device"]);
    },
  },
  {
    id: "ckpt-directory-as-weights",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, W));
      mkdirSync(join(dir, W));
      return expectThrows(() => apiRun(dir, "text"), [join(dir, W), "a directory, not a regular file"]);
    },
  },
  {
    id: "ckpt-dangling-symlink",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, W));
      symlinkSync(join(dir, "nowhere.safetensors"), join(dir, W));
      return expectThrows(() => apiRun(dir, "text"), [join(dir, W), "ENOENT"]);
    },
  },
  {
    // as root, permissions do not stop reading: then the run must simply work
    id: "ckpt-unreadable-weights",
    area: "checkpoint",
    expect: isRoot ? "correct" : "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      chmodSync(join(dir, W), 0o000);
      return isRoot
        ? expectReturns(() => apiRun(dir, "text"), (v) => (v.startsWith("embedding ") ? null : v))
        : expectThrows(() => apiRun(dir, "text"), [join(dir, W), "EACCES"]);
    },
  },

  // --- non-finite, huge and integer weights -------------------------------------------------
  nonFiniteWeight("ckpt-nan-f32-vision", "fixres-f32", PATCH_BIAS, (r) => r.bytes.writeFloatLE(NaN, 4), "image", "cli"),
  nonFiniteWeight("ckpt-inf-f32-text", "fixres-f32", "text_model.head.bias", (r) => r.bytes.writeFloatLE(-Infinity, 0), "text"),
  nonFiniteWeight("ckpt-nan-bits-f16", "fixres-f16", "vision_model.encoder.layers.1.mlp.fc1.weight", (r) => r.bytes.writeUInt16LE(0x7e00, 10), "image"),
  nonFiniteWeight("ckpt-inf-bits-bf16", "fixres-bf16", "text_model.encoder.layers.0.self_attn.q_proj.weight", (r) => r.bytes.writeUInt16LE(0x7f80, 2), "text"),
  nonFiniteWeight("ckpt-nan-token-row", "fixres-f32", TOKENS, (r) => r.bytes.writeFloatLE(NaN, (857 * 32 + 3) * 4), "text"),
  nonFiniteWeight("ckpt-nan-naflex-position-table", "naflex-f32", "vision_model.embeddings.position_embedding.weight", (r) => r.bytes.writeFloatLE(NaN, 0), "image"),
  {
    id: "ckpt-f64-beyond-float32",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => {
        const r = t.get(PATCH_BIAS)!;
        const f64 = Buffer.alloc(r.bytes.length * 2);
        for (let i = 0; i < r.bytes.length / 4; i++) f64.writeDoubleLE(i === 7 ? 1e300 : r.bytes.readFloatLE(i * 4), i * 8);
        t.set(PATCH_BIAS, { dtype: "F64", shape: r.shape, bytes: f64 });
      });
      return expectThrows(() => apiRun(dir, "image"), [PATCH_BIAS, "Infinity at index 7"]);
    },
  },
  {
    // huge but finite weights overflow float32 activations: a per-image error naming the image
    id: "ckpt-huge-finite-weights-image",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => setF32(t, "vision_model.head.mlp.fc2.weight", 3e38, -1));
      return expectCleanError(await embedImage(dir), { code: 1, mentions: [IMG_47x61, "not finite"] });
    },
  },
  {
    id: "ckpt-huge-finite-weights-text",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => setF32(t, "text_model.head.weight", 3e38, -1));
      return expectThrows(() => apiRun(dir, "text"), [`text "a cat"`, "not finite"]);
    },
  },
  {
    // a zero pooled vector cannot be normalised: an error naming the image, not NaN
    id: "ckpt-zero-pooled-output",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => {
        for (const n of ["attention.out_proj.weight", "attention.out_proj.bias", "mlp.fc2.weight", "mlp.fc2.bias"]) setF32(t, `vision_model.head.${n}`, 0, -1);
      });
      return expectThrows(() => apiRun(dir, "image"), [IMG_47x61, "zero vector"]);
    },
  },
  {
    id: "ckpt-logit-scale-1000",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => setF32(t, "logit_scale", 1000));
      return expectCleanError(await classify(dir), { mentions: [join(dir, W), "logit_scale 1000", "overflows"] });
    },
  },
  {
    // exp(300) overflows float32 but not float64: finite logits, probabilities 0 or 1
    id: "ckpt-logit-scale-300",
    area: "checkpoint",
    expect: "correct",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => setF32(t, "logit_scale", 300));
      return expectReturns(() => apiRun(dir, "classify"), (v) => {
        const s = (JSON.parse(v) as Array<Array<{ logit: number; probability: number }>>)[0];
        if (!s || s.length !== 2) return "no scores";
        if (!s.every((x) => Math.abs(x.logit) > 1e100 && (x.probability === 0 || x.probability === 1))) return `scores ${JSON.stringify(s)}`;
        return null;
      });
    },
  },
  nonFiniteWeight("ckpt-logit-scale-nan", "fixres-f32", "logit_scale", (r) => r.bytes.writeFloatLE(NaN, 0), "classify"),
  {
    id: "ckpt-logit-bias-inf",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => setF32(t, "logit_bias", Infinity));
      return expectThrows(() => apiRun(dir, "classify"), ["logit_bias", "non-finite"]);
    },
  },

  // --- shapes and tensors ---------------------------------------------------------------------
  {
    id: "ckpt-zero-length-tensor",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => t.set("text_model.head.weight", { dtype: "F32", shape: [0, 32], bytes: Buffer.alloc(0) }));
      return expectThrows(() => apiRun(dir, "text"), ["text_model.head.weight has shape [0, 32], expected [32, 32]"]);
    },
  },
  {
    id: "ckpt-right-numel-wrong-shape",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => { t.get("vision_model.head.attention.in_proj_weight")!.shape = [32, 96]; });
      return expectThrows(() => apiRun(dir, "image"), ["in_proj_weight has shape [32, 96], expected [96, 32]"]);
    },
  },
  {
    id: "ckpt-missing-tensor",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => t.delete("vision_model.encoder.layers.1.self_attn.k_proj.bias"));
      return expectThrows(() => apiRun(dir, "image"), [join(dir, W), "missing tensor vision_model.encoder.layers.1.self_attn.k_proj.bias"]);
    },
  },
  {
    // the weights hold two text layers, the config claims one: refused, not silently truncated
    id: "ckpt-more-layers-than-config",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withConfig("fixres-f32", (c) => { c.text_config.num_hidden_layers = 1; });
      return expectThrows(() => apiRun(dir, "text"), ["text_config.num_hidden_layers is 1", "has 2 text_model encoder layers"]);
    },
  },
  {
    id: "ckpt-extra-layer-index",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = withTensors("fixres-f32", (t) => {
        const r = t.get("vision_model.encoder.layers.1.layer_norm1.bias")!;
        t.set("vision_model.encoder.layers.7.layer_norm1.bias", { ...r, bytes: Buffer.from(r.bytes) });
      });
      return expectThrows(() => apiRun(dir, "image"), ["vision_config.num_hidden_layers is 2", "3 vision_model encoder layers (indices up to 7)"]);
    },
  },

  // --- sharded indexes --------------------------------------------------------------------------
  indexCase("ckpt-index-subfolder-shard", (i) => { i.weight_map["logit_scale"] = "sub/model-00001-of-00003.safetensors"; }, /invalid shard name "sub\/model-00001/),
  indexCase("ckpt-index-absolute-shard", (i) => { i.weight_map["logit_scale"] = "/etc/passwd"; }, /invalid shard name "\/etc\/passwd"/),
  indexCase("ckpt-index-dotdot-shard", (i) => { i.weight_map["logit_scale"] = ".."; }, /invalid shard name "\.\."/, "cli"),
  indexCase("ckpt-index-dot-shard", (i) => { i.weight_map["logit_scale"] = "."; }, /invalid shard name "\."/),
  indexCase("ckpt-index-escape-shard", (i) => { i.weight_map["logit_scale"] = "../fixres-f32/model.safetensors"; }, /invalid shard name/),
  indexCase("ckpt-index-empty-shard-name", (i) => { i.weight_map["logit_scale"] = ""; }, /invalid shard name ""/),
  indexCase("ckpt-index-number-shard", (i) => { i.weight_map["logit_scale"] = 7; }, /invalid shard name 7/),
  indexCase("ckpt-index-missing-shard", (i) => { i.weight_map["logit_scale"] = "model-00009-of-00003.safetensors"; }, /model-00009-of-00003\.safetensors: shard listed in .* is missing/),
  indexCase("ckpt-index-tensor-not-in-shard", (i) => { i.weight_map["logit_scale"] = "model-00003-of-00003.safetensors"; }, /tensor logit_scale listed in .* is not in this shard/),
  indexCase("ckpt-index-weight-map-array", (i) => { i.weight_map = ["model-00001-of-00003.safetensors"] as never; }, "has no weight_map object"),
  indexCase("ckpt-index-weight-map-empty", (i) => { i.weight_map = {}; }, "lists no tensors"),
  indexCase("ckpt-index-not-json", () => "{\"weight_map\": {", "not valid JSON"),
  indexCase("ckpt-index-is-directory", (_i, dir) => {
    rmSync(join(dir, "model.safetensors.index.json"));
    mkdirSync(join(dir, "model.safetensors.index.json", "x"), { recursive: true });
    return null;
  }, "a directory, not a regular file"),
  {
    id: "ckpt-index-shard-is-fifo",
    area: "checkpoint",
    expect: "clean-error",
    timeoutMs: 10_000,
    run: async () => {
      const dir = copyFixture("fixres-sharded");
      const p = join(dir, "model-00002-of-00003.safetensors");
      rmSync(p);
      execFileSync("mkfifo", [p]);
      return expectCleanError(await embedText(dir, { timeoutMs: 10_000 }), { mentions: [p, "a FIFO"] });
    },
  },
  {
    // a tokenizer with ids beyond the token table: the text is named, not a bare table index
    id: "ckpt-tokenizer-beyond-vocab",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      const p = join(dir, "tokenizer.json");
      const tok = JSON.parse(readFileSync(p, "utf8"));
      tok.added_tokens.push({ id: 5000, content: "<zzz>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: false });
      writeFileSync(p, JSON.stringify(tok));
      const { SigLIP2 } = await import("../../src/api.js");
      const m = await SigLIP2.load(dir);
      try {
        return await expectThrows(() => m.embedTexts(["a <zzz> cat"]), ['text "a <zzz> cat"', "token id 5000", "vocab_size 1024"]);
      } finally {
        await m.close();
      }
    },
  },
  {
    id: "ckpt-sharded-still-works",
    area: "checkpoint",
    expect: "correct",
    run: async () => expectReturns(() => apiRun(copyFixture("fixres-sharded"), "text"), (v) => (v.startsWith("embedding ") ? null : v)),
  },
  {
    // WeightStore directly: tensors listed in no index entry but present in a shard stay readable
    id: "ckpt-index-library-dotdot",
    area: "checkpoint",
    expect: "clean-error",
    run: async (): Promise<CaseResult> => {
      const dir = copyFixture("fixres-sharded");
      const p = join(dir, "model.safetensors.index.json");
      const idx = JSON.parse(readFileSync(p, "utf8"));
      idx.weight_map["logit_bias"] = "..";
      writeFileSync(p, JSON.stringify(idx));
      return expectThrows(() => WeightStore.openDir(dir), [p, "invalid shard name"]);
    },
  },
];

/** Every integer dtype relabelling a float tensor of the same byte size is refused, naming the tensor. */
for (const [dtype, bytesPer] of [["I32", 4], ["U32", 4], ["I16", 2], ["U16", 2], ["I64", 8], ["U8", 1], ["I8", 1]] as const) {
  cases.push({
    id: `ckpt-dtype-${dtype.toLowerCase()}-weight`,
    area: "checkpoint",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      const p = join(dir, W);
      const { tensors, metadata } = readRaw(p);
      const r = tensors.get("vision_model.post_layernorm.weight")!;
      r.dtype = dtype;
      r.shape = [r.bytes.length / bytesPer];
      writeRaw(p, tensors, metadata);
      return expectThrows(() => WeightStore.openDir(dir).float32("vision_model.post_layernorm.weight"), [p, `has dtype ${dtype}`]);
    },
  });
}

export { cases };
