/**
 * Standalone ONNX export: each tower as ONE self-contained ONNX model (weights as
 * initializers, or ONNX external data above a size threshold) in the folder layout that
 * transformers.js reads — `onnx/vision_model{suffix}.onnx`, `onnx/text_model{suffix}.onnx`
 * next to the checkpoint's config.json, preprocessor_config.json and tokenizer files — so
 * that plain onnxruntime, transformers.js and immich-style loaders can run what we build.
 *
 * The graphs are the inference towers of ./siglip.ts and ./siglip2.ts, built once more
 * through {@link WeightLoader} by {@link buildStages} with an unlimited stage size, with
 * two changes at the edges that a standalone model needs:
 * - text: the token table goes into the graph (`input_ids` (B, T) int64 → Gather), where
 *   our runtime reads the rows from disk and feeds `inputs_embeds`;
 * - NaFlex: the inputs of transformers' `Siglip2VisionModel` — `pixel_values` (B, N, C·P²),
 *   `pixel_attention_mask` (B, N) int32, `spatial_shapes` (B, 2) int64 — with the position
 *   grid resized inside the graph (./position-resize.ts `positionsInGraph`), where our runtime resizes it in
 *   TypeScript (./position-resize.ts) and feeds `position_embeddings`.
 * Outputs are `last_hidden_state` and `pooler_output` (what transformers.js's
 * SiglipVisionModel / SiglipTextModel return), with a dynamic batch axis (and patch axis).
 *
 * References: transformers.js `DEFAULT_DTYPE_SUFFIX_MAPPING` (fp32 → "", int8 → "_int8")
 * and `transformers.js_config.use_external_data_format` (`<file>.onnx_data`); ONNX
 * external data (onnx.proto TensorProto.external_data); transformers
 * `Siglip2VisionEmbeddings.resize_positional_embeddings` (bilinear, antialias, align_corners=False).
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Dim, Graph } from "../graph/graph.js";
import { writeModelFiles } from "../graph/graph.js";
import { SiglipError } from "../errors.js";
import type { Checkpoint } from "../weights/checkpoint.js";
import type { VisionConfig } from "../weights/config.js";
import type { Int8Options } from "./loader.js";
import type { ParamSource, TokenInputs } from "./params.js";
import { fixresVision, textModel } from "./siglip.js";
import { naflexVision } from "./siglip2.js";
import { buildStages, checkLayerCount, requireHead, towerShapes, type TowerDef } from "./tower.js";

export type ExportTower = "vision" | "text";

export interface ExportOptions {
  /** Weight precision: fp32 (default) or int8 (per-column int8 MatMuls, file suffix `_int8`). */
  dtype?: "fp32" | "int8";
  /** Towers to write (default both). */
  towers?: ExportTower[];
  /**
   * Use onnxruntime's fused contrib ops (Attention, FastGelu) in fp32. Default false: fp32
   * models use standard ONNX ops only (any ONNX runtime). int8 always uses onnxruntime's
   * contrib ops: DynamicQuantizeMatMul, FastGelu and (by default) MultiHeadAttention.
   */
  fused?: boolean;
  /** int8 graph variants (./loader.ts `Int8Options`; default the loader's). */
  int8?: Int8Options;
  /** Write weights as ONNX external data (`<file>_data`) when a model's initializers exceed this many bytes (default 2 GiB − 64 MiB: protobuf's 2 GiB limit). */
  externalAboveBytes?: number;
}

/** One written file. */
export interface ExportedFile {
  /** Path relative to the output folder. */
  file: string;
  bytes: number;
}

export interface ExportReport {
  dir: string;
  dtype: "fp32" | "int8";
  naflex: boolean;
  files: ExportedFile[];
}

/** Largest model kept in one protobuf file (protobuf messages are limited to 2 GiB). */
export const DEFAULT_EXTERNAL_ABOVE = 2 * 1024 ** 3 - 64 * 1024 ** 2;

/** Checkpoint files copied next to `onnx/` when present (transformers.js reads them). */
export const SIDE_FILES = ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

/** transformers.js's file-name suffix for a dtype. */
export function dtypeSuffix(dtype: "fp32" | "int8"): string {
  return dtype === "int8" ? "_int8" : "";
}

/**
 * A source that puts the token table into the graph: `input_ids` (B, T) int64 → Gather
 * of `token_embedding.weight` (vocab, D), fp32 in every mode. Everything else is the
 * wrapped source's.
 */
function withTokenTable(p: ParamSource): ParamSource {
  const wrapped: ParamSource = {
    g: p.g,
    at: (name) => withTokenTable(p.at(name)),
    tensor: (name, shape, o) => p.tensor(name, shape, o),
    linear: (name, inF, outF) => p.linear(name, inF, outF),
    layerNorm: (name, dim, eps) => p.layerNorm(name, dim, eps),
    packedLinear: (w, b, parts, inF, outF, o) => p.packedLinear(w, b, parts, inF, outF, o),
    tokenEmbeddings: (name: string, vocab: number, dim: number, batch: Dim, seq: Dim, o: TokenInputs = {}) => {
      const ids = p.g.input(o.ids ?? "input_ids", "int64", [batch, seq]); // (B, T)
      return p.g.gather(p.tensor(name, [vocab, dim]), ids, 0); // (B, T, D)
    },
  };
  if (p.fusedLinearGelu) wrapped.fusedLinearGelu = p.fusedLinearGelu.bind(p);
  if (p.fusedSelfAttention) wrapped.fusedSelfAttention = p.fusedSelfAttention.bind(p);
  return wrapped;
}

/** The text tower with `input_ids` as its input. */
export function exportTextTower(def: TowerDef): TowerDef {
  return { ...def, embeddings: (p, batch) => def.embeddings(withTokenTable(p), batch) };
}

/** The NaFlex image tower with transformers' Siglip2VisionModel inputs and the in-graph position resize. */
export function exportNaflexTower(v: VisionConfig): TowerDef {
  return { ...naflexVision(v, { resizeInGraph: true }), keyMask: { name: "pixel_attention_mask", dims: ["batch", "seq"] } };
}

/** Build one tower as a single standalone graph. */
export function exportGraph(ckpt: Checkpoint, tower: ExportTower, opts: ExportOptions = {}): Graph {
  const cfg = ckpt.config;
  const store = ckpt.weights;
  let def: TowerDef;
  if (tower === "vision") {
    requireHead(ckpt);
    checkLayerCount(ckpt, "vision_model", "vision_config", cfg.vision_config.num_hidden_layers);
    def = cfg.model_type === "siglip2" ? exportNaflexTower(cfg.vision_config) : fixresVision(cfg.vision_config);
  } else {
    checkLayerCount(ckpt, "text_model", "text_config", cfg.text_config.num_hidden_layers);
    def = exportTextTower(textModel(cfg.text_config));
  }
  store.checkAll(towerShapes(def));
  const stages = buildStages({ store, tower: def, options: { maxStageBytes: Infinity, dtype: opts.dtype ?? "fp32", fused: opts.fused ?? false, ...(opts.int8 ? { int8: opts.int8 } : {}) } });
  if (stages.length !== 1) throw new Error(`internal: export built ${stages.length} stages`);
  return stages[0]!;
}

function fileSize(p: string): number {
  return statSync(p).size;
}

/**
 * Write the export folder: the side files, then `onnx/<tower>_model{suffix}.onnx` per tower
 * (with `…onnx_data` above the external-data threshold, recorded in config.json's
 * `transformers.js_config.use_external_data_format`).
 */
export function exportModel(ckpt: Checkpoint, outDir: string, opts: ExportOptions = {}): ExportReport {
  const dtype = opts.dtype ?? "fp32";
  const towers = opts.towers ?? ["vision", "text"];
  const limit = opts.externalAboveBytes ?? DEFAULT_EXTERNAL_ABOVE;
  if (existsSync(outDir) && !statSync(outDir).isDirectory()) {
    throw new SiglipError("usage", `--out ${outDir}: exists and is not a directory`, { subject: outDir });
  }
  mkdirSync(join(outDir, "onnx"), { recursive: true });
  const files: ExportedFile[] = [];
  const external: Record<string, boolean> = {};
  for (const tower of towers) {
    const g = exportGraph(ckpt, tower, opts);
    const name = `${tower}_model${dtypeSuffix(dtype)}.onnx`;
    const path = join(outDir, "onnx", name);
    if (g.initializerBytes > limit) {
      writeModelFiles(g, path, { minExternalBytes: 1024, dataFile: `${name}_data` });
      external[name] = true;
      files.push({ file: `onnx/${name}`, bytes: fileSize(path) }, { file: `onnx/${name}_data`, bytes: fileSize(`${path}_data`) });
    } else {
      rmSync(`${path}_data`, { force: true }); // a previous export's external data
      writeFileSync(path, g.toModelBytes());
      files.push({ file: `onnx/${name}`, bytes: fileSize(path) });
    }
  }
  for (const f of SIDE_FILES) {
    const src = join(ckpt.dir, f);
    if (!existsSync(src)) continue;
    const dst = join(outDir, f);
    if (f === "config.json") {
      const cfg = JSON.parse(readFileSync(src, "utf8")) as Record<string, unknown>;
      const prev = (cfg["transformers.js_config"] ?? {}) as Record<string, unknown>;
      const js: Record<string, unknown> = { ...prev };
      delete js["use_external_data_format"];
      if (Object.keys(external).length > 0) js["use_external_data_format"] = external;
      if (Object.keys(js).length > 0) cfg["transformers.js_config"] = js;
      else delete cfg["transformers.js_config"];
      writeFileSync(dst, `${JSON.stringify(cfg, null, 2)}\n`);
    } else {
      copyFileSync(src, dst);
    }
    files.push({ file: f, bytes: fileSize(dst) });
  }
  return { dir: outDir, dtype, naflex: ckpt.config.model_type === "siglip2", files };
}
