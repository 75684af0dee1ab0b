/**
 * Hostile config.json files: not JSON, wrong types, absurd or inconsistent sizes, values
 * that would produce NaN, huge strings, and config files that are not regular files.
 * Each is refused in one line naming config.json (and the key), within a second.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { copyFixture } from "../harness/files.js";
import { expectCleanError, expectReturns, expectThrows, runCli, type HostileCase } from "./harness.js";
import { Checkpoint } from "../../src/weights/checkpoint.js";
import { parseConfig } from "../../src/weights/config.js";
import { apiRun, embedImage, embedText, withConfig } from "./weights-kit.js";

const CFG = "config.json";

interface CaseOpts { image?: boolean; fixture?: string; timeoutMs?: number; noFileName?: boolean }

/** CLI: `embed --text` on fixres-f32 with config.json edited; exit 2 naming config.json and `mentions`. */
function cli(id: string, edit: ((c: Record<string, any>) => void) | string, mentions: Array<string | RegExp>, opts: CaseOpts = {}): HostileCase {
  const c: HostileCase = {
    id,
    area: "config",
    expect: "clean-error",
    run: async () => {
      const dir = withConfig(opts.fixture ?? "fixres-f32", edit);
      const r = opts.image ? await embedImage(dir) : await embedText(dir, opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {});
      return expectCleanError(r, { mentions: [...(opts.noFileName ? [] : [join(dir, CFG)]), ...mentions] });
    },
  };
  if (opts.timeoutMs) c.timeoutMs = opts.timeoutMs;
  return c;
}

/** The same through the library API in-process (SigLIP2.load + embed): one SiglipError line naming config.json. */
function api(id: string, edit: ((c: Record<string, any>) => void) | string, mentions: Array<string | RegExp>, opts: CaseOpts = {}): HostileCase {
  return {
    id,
    area: "config",
    expect: "clean-error",
    run: async () => {
      const dir = withConfig(opts.fixture ?? "fixres-f32", edit);
      return expectThrows(() => apiRun(dir, opts.image ? "image" : "text"), [...(opts.noFileName ? [] : [join(dir, CFG)]), ...mentions]);
    },
  };
}

/** Library: parseConfig on a JSON value must throw naming the file and `mentions`. */
function lib(id: string, json: unknown, mentions: Array<string | RegExp>): HostileCase {
  return { id, area: "config", expect: "clean-error", run: async () => expectThrows(() => parseConfig(json, "ckpt/config.json"), ["ckpt/config.json", ...mentions]) };
}

const siglip = (t: Record<string, unknown> = {}, v: Record<string, unknown> = {}) => ({ model_type: "siglip", text_config: t, vision_config: v });

const cases: HostileCase[] = [
  // --- not a config at all --------------------------------------------------------------------
  cli("config-not-json", "{ model_type: siglip", ["not valid JSON"]),
  api("config-json-array", "[1, 2, 3]", ["not a JSON object"]),
  api("config-json-string", "\"siglip\"", ["not a JSON object"]),
  api("config-json-null", "null", ["not a JSON object"]),
  api("config-nan-literal", "{\"model_type\": \"siglip\", \"text_config\": {\"layer_norm_eps\": NaN}}", ["not valid JSON"]),
  api("config-empty-file", "", ["not valid JSON"]),
  {
    id: "config-invalid-utf8",
    area: "config",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      writeFileSync(join(dir, CFG), Buffer.concat([Buffer.from("{\"model_type\": \"sig"), Buffer.from([0xff]), Buffer.from("lip\"}")]));
      return expectThrows(() => apiRun(dir, "text"), [join(dir, CFG), "not valid UTF-8"]);
    },
  },
  {
    id: "config-fifo",
    area: "config",
    expect: "clean-error",
    timeoutMs: 10_000,
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, CFG));
      execFileSync("mkfifo", [join(dir, CFG)]);
      return expectCleanError(await embedText(dir, { timeoutMs: 10_000 }), { mentions: [join(dir, CFG), "a FIFO"] });
    },
  },
  {
    id: "config-symlink-dev-zero",
    area: "config",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, CFG));
      symlinkSync("/dev/zero", join(dir, CFG));
      return expectThrows(() => apiRun(dir, "text"), [join(dir, CFG), "a character device"]);
    },
  },
  {
    id: "config-directory",
    area: "config",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, CFG));
      mkdirSync(join(dir, CFG));
      return expectThrows(() => apiRun(dir, "text"), [join(dir, CFG), "a directory"]);
    },
  },
  {
    // a sparse 70 MB file: refused by size before anything is read
    id: "config-huge-file",
    area: "config",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      truncateSync(join(dir, CFG), 70 * 1024 * 1024);
      return expectThrows(() => apiRun(dir, "text"), [join(dir, CFG), "too large"]);
    },
  },

  // --- types ----------------------------------------------------------------------------------
  api("config-model-type-clip", (c) => { c.model_type = "clip"; }, ["model_type \"clip\" is not a SigLIP checkpoint"]),
  cli("config-model-type-huge-string", (c) => { c.model_type = "x".repeat(1_000_000); }, ["is not a SigLIP checkpoint"]),
  api("config-hidden-act-huge-string", (c) => { c.text_config.hidden_act = "g".repeat(500_000); }, ["text_config.hidden_act", "is not supported"]),
  api("config-text-config-array", (c) => { c.text_config = [1, 2]; }, ["text_config must be an object"]),
  api("config-vision-config-string", (c) => { c.vision_config = "big"; }, ["vision_config must be an object"], { image: true }),
  api("config-hidden-size-string", (c) => { c.text_config.hidden_size = "32"; }, ["text_config.hidden_size must be a finite number, got \"32\""]),
  api("config-layers-bool", (c) => { c.vision_config.num_hidden_layers = true; }, ["vision_config.num_hidden_layers must be a finite number"], { image: true }),
  api("config-use-head-string", (c) => { c.vision_config.vision_use_head = "false"; }, ["vision_config.vision_use_head must be true or false"], { image: true }),
  api("config-use-head-false", (c) => { c.vision_config.vision_use_head = false; }, ["vision_use_head=false"], { image: true, noFileName: true }),

  // --- absurd sizes: refused at once, nothing allocated -------------------------------------------
  cli("config-layers-1e7", (c) => { c.text_config.num_hidden_layers = 1e7; }, ["text_config.num_hidden_layers 10000000 is beyond the supported maximum"], { timeoutMs: 10_000 }),
  api("config-layers-1e6-vision", (c) => { c.vision_config.num_hidden_layers = 1e6; }, ["vision_config.num_hidden_layers 1000000 is beyond"], { image: true, timeoutMs: 10_000 }),
  api("config-layers-3-vs-2", (c) => { c.vision_config.num_hidden_layers = 3; }, ["vision_config.num_hidden_layers is 3 but", "has 2 vision_model encoder layers"], { image: true }),
  api("config-max-positions-1e9", (c) => { c.text_config.max_position_embeddings = 1e9; }, ["text_config.max_position_embeddings 1000000000 is beyond"], { timeoutMs: 10_000 }),
  {
    // tokenize reads no weights: the bound alone must stop it before 1e9 ids per text are allocated
    id: "config-max-positions-1e9-tokenize",
    area: "config",
    expect: "clean-error",
    timeoutMs: 10_000,
    run: async () => {
      const dir = withConfig("fixres-f32", (c) => { c.text_config.max_position_embeddings = 1e9; });
      return expectCleanError(await runCli(["tokenize", "--model", dir, "a cat"], { timeoutMs: 10_000 }), { mentions: [join(dir, CFG), "max_position_embeddings"] });
    },
  },
  api("config-max-positions-vs-weights", (c) => { c.text_config.max_position_embeddings = 128; }, ["text_model.embeddings.position_embedding.weight has shape [64, 32], expected [128, 32]"], { noFileName: true }),
  api("config-vocab-vs-weights", (c) => { c.text_config.vocab_size = 2048; }, ["token_embedding.weight has shape [1024, 32], expected [2048, 32]"], { noFileName: true }),
  api("config-vocab-2e9", (c) => { c.text_config.vocab_size = 2e9; }, ["text_config.vocab_size 2000000000 is beyond"]),
  api("config-hidden-vs-weights", (c) => { c.vision_config.hidden_size = 64; c.text_config.projection_size = 64; }, ["patch_embedding.weight has shape [32, 3, 8, 8], expected [64, 3, 8, 8]"], { image: true, noFileName: true }),
  api("config-image-size-1e6", (c) => { c.vision_config.image_size = 1e6; }, ["vision_config.image_size 1000000 is beyond"], { image: true }),
  api("config-image-size-vs-weights", (c) => { c.vision_config.image_size = 64; }, ["position_embedding.weight has shape [16, 32], expected [64, 32]"], { image: true, noFileName: true }),
  api("config-projection-mismatch", (c) => { c.text_config.projection_size = 16; }, ["text_config.projection_size 16 differs from vision_config.hidden_size 32"]),
  api("config-heads-not-divisor", (c) => { c.text_config.num_attention_heads = 5; }, ["text_config.hidden_size 32 is not divisible by num_attention_heads 5"]),
  api("config-eps-negative", (c) => { c.text_config.layer_norm_eps = -1; }, ["text_config.layer_norm_eps must be in (0, 1], got -1"]),
  api("config-eps-zero-vision", (c) => { c.vision_config.layer_norm_eps = 0; }, ["vision_config.layer_norm_eps must be in (0, 1], got 0"], { image: true }),
  api("config-eps-1e400", "{\"model_type\":\"siglip\",\"text_config\":{\"layer_norm_eps\":1e400}}", ["layer_norm_eps must be a finite number, got Infinity"]),
  api("config-naflex-num-patches-not-square", (c) => { c.vision_config.num_patches = 60; }, ["vision_config.num_patches 60 is not a square grid"], { fixture: "naflex-f32", image: true }),
  api("config-naflex-num-patches-vs-weights", (c) => { c.vision_config.num_patches = 1024; }, ["position_embedding.weight has shape [256, 32], expected [1024, 32]"], { fixture: "naflex-f32", image: true, noFileName: true }),
  api("config-num-channels-1", (c) => { c.vision_config.num_channels = 1; }, ["num_channels 1 is not supported"], { image: true }),
  {
    id: "config-sparse-still-works",
    area: "config",
    expect: "correct",
    run: async () => expectReturns(() => apiRun(withConfig("fixres-f32", (c) => { delete c.architectures; delete c.dtype; }), "text"), (v) => (v.startsWith("embedding ") ? null : v)),
  },
  {
    // layer_norm_eps inside (0, 1] is accepted (1e-12 as some exports write)
    id: "config-eps-tiny-works",
    area: "config",
    expect: "correct",
    run: async () => expectReturns(() => apiRun(withConfig("fixres-f32", (c) => { c.text_config.layer_norm_eps = 1e-12; }), "text"), (v) => (v.startsWith("embedding ") ? null : v)),
  },
  {
    // the Checkpoint constructor names config.json for a bad value
    id: "config-library-checkpoint",
    area: "config",
    expect: "clean-error",
    run: async () => {
      const dir = withConfig("fixres-f32", (c) => { c.text_config.intermediate_size = -64; });
      return expectThrows(() => new Checkpoint(dir), [join(dir, CFG), "text_config.intermediate_size must be a positive integer, got -64"]);
    },
  },
];

/** Every size key rejects negative, zero, fractional, non-number and absurd values (library, generated). */
const SIZE_KEYS: Array<["text_config" | "vision_config", string]> = [
  ["text_config", "hidden_size"], ["text_config", "intermediate_size"], ["text_config", "num_hidden_layers"],
  ["text_config", "num_attention_heads"], ["text_config", "max_position_embeddings"], ["text_config", "vocab_size"],
  ["vision_config", "hidden_size"], ["vision_config", "intermediate_size"], ["vision_config", "num_hidden_layers"],
  ["vision_config", "image_size"], ["vision_config", "patch_size"],
];
const BAD_VALUES: Array<[string, unknown, string]> = [
  ["negative", -8, "must be a positive integer"],
  ["zero", 0, "must be a positive integer"],
  ["fractional", 16.5, "must be a positive integer"],
  ["absurd", 1e15, "is beyond the supported maximum"],
];
for (const [section, key] of SIZE_KEYS) {
  for (const [label, value, needle] of BAD_VALUES) {
    const cfg = section === "text_config" ? siglip({ [key]: value }) : siglip({}, { [key]: value });
    cases.push(lib(`config-${section === "text_config" ? "text" : "vision"}-${key.replace(/_/g, "-")}-${label}`, cfg, [`${section}.${key}`, needle]));
  }
}

export { cases };
