/**
 * Hostile and careless `siglip2 caption` / `siglip2 locate` runs: empty, blank and huge queries,
 * bad images, and checkpoints whose decoder.safetensors is missing, corrupt, of the wrong format
 * or shapes, or non-finite. Each must be one clear line (exit 2 fatal, exit 1 per image).
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GemmaTokenizer } from "../../src/tokenizer/gemma.js";
import type { NamedTensor } from "../../src/train/checkpoint.js";
import { loccaCheckpoint, scriptDecoder } from "../harness/locca-checkpoint.js";
import { FIXTURES } from "../harness/paths.js";
import { expectCleanError, expectCorrect, runCli, type HostileCase } from "./harness.js";

const IMG = join(FIXTURES, "images", "photo_200x300.png");
const BAD = join(FIXTURES, "images", "bad_truncated.png");

const edit = (f: (t: NamedTensor[], m: Record<string, string>) => void) => () => loccaCheckpoint({ edit: f });
const find = (t: NamedTensor[], n: string) => t.find((x) => x.name === `decoder.${n}`)!;

function fatal(id: string, ckpt: () => string, args: string[], mentions: Array<string | RegExp>, area: HostileCase["area"] = "checkpoint"): HostileCase {
  return {
    id,
    area,
    expect: "clean-error",
    run: async () => {
      const dir = ckpt();
      const r = await runCli([args[0]!, "--model", dir, ...args.slice(1)]);
      return expectCleanError(r, { code: 2, mentions: mentions.map((m) => (m === "DIR" ? dir : m)) });
    },
  };
}

const good = () => loccaCheckpoint();

export const cases: HostileCase[] = [
  // --- the checkpoint's decoder -----------------------------------------------------------
  fatal("locca-no-decoder", () => loccaCheckpoint({ decoder: false }), ["caption", IMG], ["DIR", "has no LocCa decoder", "--objectives sigmoid,locca"]),
  fatal("locca-no-decoder-locate", () => loccaCheckpoint({ decoder: false }), ["locate", "red", IMG], ["has no LocCa decoder"]),
  fatal("locca-decoder-garbage", () => {
    const dir = loccaCheckpoint({ decoder: false });
    writeFileSync(join(dir, "decoder.safetensors"), Buffer.from("not a safetensors file at all"));
    return dir;
  }, ["caption", IMG], ["decoder.safetensors"]),
  fatal("locca-decoder-truncated", () => {
    const dir = loccaCheckpoint();
    const p = join(dir, "decoder.safetensors");
    writeFileSync(p, readFileSync(p).subarray(0, 4000));
    return dir;
  }, ["caption", IMG], ["decoder.safetensors"]),
  fatal("locca-decoder-empty-file", () => {
    const dir = loccaCheckpoint({ decoder: false });
    writeFileSync(join(dir, "decoder.safetensors"), "");
    return dir;
  }, ["caption", IMG], ["decoder.safetensors"]),
  fatal("locca-decoder-is-directory", () => {
    const dir = loccaCheckpoint({ decoder: false });
    mkdirSync(join(dir, "decoder.safetensors"));
    return dir;
  }, ["caption", IMG], ["decoder.safetensors"]),
  fatal("locca-decoder-no-metadata", edit((_, m) => {
    for (const k of Object.keys(m)) delete m[k];
  }), ["caption", IMG], ["not a LocCa decoder"]),
  fatal("locca-decoder-wrong-version", edit((_, m) => (m["version"] = "7")), ["caption", IMG], ["version", "not supported"]),
  fatal("locca-decoder-wrong-bins", edit((_, m) => (m["box_bins"] = "1000")), ["locate", "red", IMG], ["box_bins", "500"]),
  fatal("locca-decoder-wrong-layers", edit((_, m) => (m["layers"] = "3")), ["caption", IMG], ["3 decoder layers", "config gives 1"]),
  fatal("locca-decoder-missing-tensor", edit((t) => t.splice(t.findIndex((x) => x.name === "decoder.final_layer_norm.bias"), 1)), ["caption", IMG], ["missing tensor", "decoder.final_layer_norm.bias"]),
  fatal("locca-decoder-wrong-shape", edit((t) => {
    const h = find(t, "lm_head.weight");
    h.shape = [1000, 32];
    h.data = h.data.slice(0, 1000 * 32);
  }), ["caption", IMG], ["decoder.lm_head.weight", "shape", "1024, 32"]),
  fatal("locca-decoder-vision-width-mismatch", edit((t) => {
    const k = find(t, "layers.0.cross_attn.k_proj.weight");
    k.shape = [32, 16];
    k.data = k.data.slice(0, 32 * 16);
  }), ["caption", IMG], ["cross_attn.k_proj.weight", "shape"]),
  fatal("locca-decoder-extra-layer", edit((t) => {
    t.push({ name: "decoder.layers.1.layer_norm1.weight", shape: [32], data: new Float32Array(32) });
  }), ["caption", IMG], ["decoder.layers.1.layer_norm1.weight", "1 decoder layers"]),
  fatal("locca-decoder-tower-tensor", edit((t) => {
    t.push({ name: "text_model.head.bias", shape: [32], data: new Float32Array(32) });
  }), ["caption", IMG], ["not a decoder.* tensor"]),
  fatal("locca-decoder-nan", edit((t) => (find(t, "lm_head.weight").data[5] = NaN)), ["caption", IMG], ["decoder.lm_head.weight", "non-finite"]),
  fatal("locca-decoder-inf-token-row", edit((t) => (find(t, "embed_tokens.weight").data[2 * 32] = Infinity)), ["caption", IMG], ["embed_tokens", "non-finite"]),

  // --- queries and options ----------------------------------------------------------------
  fatal("locca-empty-query", good, ["locate", "", IMG], ["empty"], "text"),
  fatal("locca-blank-query", good, ["locate", "   ", IMG], ["empty"], "text"),
  fatal("locca-huge-query", good, ["locate", "red ".repeat(5000), IMG], ["too long", "positions"], "text"),
  fatal("locca-query-with-separator", good, ["locate", "a dog : a cat", IMG], ['" : "'], "text"),
  fatal("locca-locate-no-images", good, ["locate", "red"], ["no images"], "cli"),
  fatal("locca-caption-no-images", good, ["caption"], ["no images"], "cli"),
  fatal("locca-beam-0", good, ["caption", "--beam", "0", IMG], ["--beam"], "cli"),
  fatal("locca-beam-huge", good, ["caption", "--beam", "1000", IMG], ["--beam"], "cli"),
  fatal("locca-max-tokens-abc", good, ["caption", "--max-tokens", "abc", IMG], ["--max-tokens"], "cli"),

  // --- per image ------------------------------------------------------------------------------
  {
    id: "locca-caption-bad-image",
    area: "image",
    expect: "clean-error",
    run: async () => {
      const r = await runCli(["caption", "--model", good(), IMG, BAD]);
      return expectCleanError(r, { code: 1, mentions: ["bad_truncated.png"], allowStdout: true });
    },
  },
  {
    id: "locca-locate-answer-not-a-box",
    area: "image",
    expect: "clean-error",
    run: async () => {
      const r = await runCli(["locate", "--model", good(), "--max-tokens", "6", "red", IMG]);
      return expectCleanError(r, { code: 1, mentions: ["photo_200x300.png", "not a box"] });
    },
  },
  {
    id: "locca-locate-missing-image",
    area: "image",
    expect: "clean-error",
    run: async () => {
      const dir = good();
      const gone = join(dir, "gone.png");
      rmSync(gone, { force: true });
      const r = await runCli(["locate", "--model", dir, "red", gone]);
      return expectCleanError(r, { code: 1, mentions: ["gone.png"] });
    },
  },
  {
    id: "locca-locate-unicode-query",
    area: "text",
    expect: "correct",
    run: async () => {
      const q = "🐕 rouge à gauche";
      const tok = GemmaTokenizer.fromJSON(JSON.parse(readFileSync(join(FIXTURES, "models", "fixres-f32", "tokenizer.json"), "utf8")));
      const ids = (t: string) => tok.tokenize(t, { lowercase: false });
      const dir = loccaCheckpoint({ edit: (t) => scriptDecoder(t, ids(`ARef: ${q} :`).length, [...ids(" 0 0 499 499"), tok.eosId]) });
      const r = await runCli(["locate", "--model", dir, q, IMG]);
      return expectCorrect(r, (lines) => {
        const l = lines[0] as { query?: string; box?: number[] } | undefined;
        return lines.length === 1 && l?.query === q && JSON.stringify(l.box?.map((v) => Math.round(v * 1e6) / 1e6)) === JSON.stringify([0.3, 0.2, 299.7, 199.8]) ? null : `unexpected output ${JSON.stringify(lines)}`;
      });
    },
  },
];
