/**
 * What every tower shares: its options and cache identity, the {@link TowerDef} that
 * describes a tower once (embeddings → encoder layers → final norm → pooling), and the two
 * ways of building one — split into inference stages of bounded weight size
 * ({@link buildStages}), or in one graph for training ({@link towerForward}).
 *
 * Reference: transformers `SiglipVisionTransformer` / `SiglipTextTransformer` forward
 * (embeddings, encoder, post/final LayerNorm, head); spec §1.3–§1.6.
 */
import { Graph, type Dim } from "../graph/graph.js";
import { CARRY_IN, CARRY_OUT, type CacheSpec, type RuntimeOptions, type ort } from "../graph/runtime.js";
import { SiglipError } from "../errors.js";
import type { Checkpoint, WeightStore } from "../weights/checkpoint.js";
import { contentIdentity } from "../weights/fingerprint.js";
import type { TextConfig, VisionConfig } from "../weights/config.js";
import { dims, encoderLayer, type LayerDims } from "./blocks.js";
import { INT8_DEFAULTS, MASK_FILTER, WeightLoader, type BuildMode, type Int8Options } from "./loader.js";
import { InputParams, type Layer, type LayerMask, type ParamSource } from "./params.js";

/** Options for building a tower. */
export interface TowerOptions extends RuntimeOptions {
  /** Also output every layer's hidden state (`hidden_states.{i}`) and `last_hidden_state`. */
  outputHiddenStates?: boolean;
  /** Split the tower into several ONNX models when its fp32 weights exceed this many bytes (default 1.5 GiB; protobuf's limit is 2 GiB). */
  maxStageBytes?: number;
  /**
   * Weight precision: "fp32" (default; exact parity) or "int8" (dynamic quantisation of every
   * linear layer: faster, smaller, cosine ≈ 0.99+ to fp32).
   */
  dtype?: "fp32" | "int8";
  /** Use onnxruntime's fused contrib ops (Attention, FastGelu) for fp32. Default true. */
  fused?: boolean;
  /** int8 graph variants (benchmarks, ablations); defaults: {@link INT8_DEFAULTS}. */
  int8?: Int8Options;
  /**
   * Only `pooler_output` (no `last_hidden_state`), for a tower with {@link TowerDef.pooledRows}
   * (the text tower): the last layer computes only the rows the pooling reads. Ignored with
   * `outputHiddenStates`. Default false.
   */
  pooledOnly?: boolean;
}

export const DEFAULT_STAGE_BYTES = 1.5 * 1024 ** 3;

/** Graph build mode for inference towers. */
export function buildMode(opts: TowerOptions): BuildMode {
  const int8 = opts.dtype === "int8";
  // the resolved int8 options are part of the mode, hence of the model-cache key
  return int8 ? { fused: opts.fused ?? true, int8, int8Options: { ...INT8_DEFAULTS, ...opts.int8 } } : { fused: opts.fused ?? true, int8 };
}

/** Runtime options for a tower: fused/int8 graphs need only onnxruntime's basic optimisations. */
export function runtimeOptions(opts: TowerOptions): TowerOptions {
  const m = buildMode(opts);
  // int8: pre-pack the quantised weights. B/16 image tower, batch 8, one process alternating
  // variants: 11-17 % less CPU per image than packing on every run, for one extra int8 copy of
  // the weights (~86 MB); fp32 gained nothing measurable for its +45 % RSS, so it stays off.
  return { optimizationLevel: m.fused || m.int8 ? "basic" : "all", ...(m.int8 ? { prepack: true } : {}), ...opts };
}

/**
 * Cache identity of a tower: the content of the weight files (not their path or mtime:
 * see src/weights/fingerprint.ts), the config, and every option that changes the graphs.
 */
export function towerKey(tower: string, ckpt: Checkpoint, opts: TowerOptions): CacheSpec {
  return {
    model: ckpt.dir,
    tower,
    key: async (hashDir) => ({
      tower,
      weights: await contentIdentity(ckpt.weights.paths(), hashDir),
      config: ckpt.config,
      mode: buildMode(opts),
      hidden: opts.outputHiddenStates ?? false,
      stage: opts.maxStageBytes ?? DEFAULT_STAGE_BYTES,
      ...(opts.pooledOnly ? { pooledOnly: true } : {}), // absent when false: earlier keys stay valid
    }),
  };
}

/**
 * The config must describe the weights on disk: `num_hidden_layers` must be the number of
 * encoder layers stored under `prefix`. Checked from tensor names alone, before any list
 * of expected tensors is made, so an absurd layer count is one line at once.
 */
export function checkLayerCount(ckpt: Checkpoint, prefix: string, section: "text_config" | "vision_config", layers: number): void {
  const store = ckpt.weights;
  const { count, max } = store.layerIndices(prefix);
  // no layers at all (a checkpoint without this tower): checkAll names the missing tensors
  if (count === 0 || (count === layers && max === layers - 1)) return;
  const held = `${count} ${prefix} encoder layer${count > 1 ? "s" : ""}${max !== count - 1 ? ` (indices up to ${max})` : ""}`;
  throw new SiglipError(
    "checkpoint",
    `${ckpt.dir}/config.json: ${section}.num_hidden_layers is ${layers} but ${store.description} has ${held}; config and weights do not match`,
    { subject: `${ckpt.dir}/config.json` },
  );
}

/** Both image towers need the MAP head: it produces the pooled embedding. */
export function requireHead(ckpt: Checkpoint): void {
  if (!ckpt.config.vision_config.vision_use_head) {
    throw new SiglipError("checkpoint", `${ckpt.dir}/config.json: vision_use_head=false checkpoints have no pooled image embedding`, { subject: ckpt.dir });
  }
}

/** A key-padding mask fed to every stage: (B, S) int32, 1 = real token, 0 = padding. */
export interface KeyMaskInput {
  name: string;
  dims: Dim[];
}

/**
 * One tower, described once. Every function gets the source at the tower's key prefix
 * (`vision_model`, `text_model`) and asks for its parameters before applying them.
 */
export interface TowerDef {
  /** Graph name ("vision", "text"): stages are `name.0`, `name.1`, … */
  name: string;
  /** Checkpoint key prefix of the tower. */
  prefix: string;
  config: VisionConfig | TextConfig;
  /** Sequence length S of the hidden states (a number, or a symbolic dim). */
  seq: Dim;
  /** Width of the pooled output. */
  pooledDim: number;
  /** Declares the tower's inputs; returns the embeddings (B, S, D). */
  embeddings(p: ParamSource, batch: Dim): string;
  /** The final LayerNorm (B, S, D) → (B, S, D) and the pooling (B, S, D) → (B, pooledDim). */
  head(p: ParamSource): { norm: Layer; pool: (last: string, mask?: LayerMask) => string; poolRows?: (rows: string) => string };
  /**
   * The rows of the hidden states the pooling reads, (B, S, D) → (B, R, D) (text: the last
   * position), with `head().poolRows` pooling the final-normed rows. Lets {@link buildStages}
   * build a pooled-only tower ({@link TowerOptions.pooledOnly}).
   */
  pooledRows?: (g: Graph, x: string) => string;
  /** With a key mask, every stage takes it as an input and every layer and the pooling use it. */
  keyMask?: KeyMaskInput;
}

/** Every tensor a tower reads, in parameter order (derived by building it against {@link InputParams}). */
export function towerShapes(def: TowerDef): Array<[string, number[]]> {
  const p = InputParams.root(new Graph(`${def.name}.shapes`));
  towerForward(p, def, 1);
  return p.specs.map((s) => [s.name, s.shape]);
}

/** fp32 bytes of one encoder layer's parameters (for splitting large towers into stages). */
export function encoderLayerBytes(d: LayerDims): number {
  const p = InputParams.root(new Graph("layer.shapes"));
  encoderLayer(p, d);
  return p.specs.reduce((acc, s) => acc + 4 * s.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * The whole tower in one graph on source `p` (training): → last hidden state (B, S, D), pooled
 * (B, pooledDim), and with a key mask its {@link LayerMask} (the LocCa decoder masks its
 * cross-attention with the same padding).
 */
export function towerForward(root: ParamSource, def: TowerDef, batch: Dim): { last: string; pooled: string; mask?: LayerMask } {
  const p = root.at(def.prefix);
  const d = dims(def.config);
  let x = def.embeddings(p, batch);
  // a key mask (NaFlex): one (B, S) input, used by every layer and the pooling, as in buildStages
  const mask = def.keyMask ? maskInputs(root.g, { name: def.keyMask.name, dims: [batch, def.seq] }) : undefined;
  for (let i = 0; i < def.config.num_hidden_layers; i++) x = encoderLayer(p.at(`encoder.layers.${i}`), d)(x, mask);
  const head = def.head(p);
  const last = head.norm(x);
  const out: { last: string; pooled: string; mask?: LayerMask } = { last, pooled: head.pool(last, mask) };
  if (mask) out.mask = mask;
  return out;
}

/** Name a value as a graph output. */
export function emit(g: Graph, value: string, name: string, dimsOut: Dim[]): void {
  g.node("Identity", [value], { outputs: [name] });
  g.output(name, "float32", dimsOut);
}

/** Declare the int32 key mask input of a stage and derive its additive (B, 1, 1, S) form. */
function maskInputs(g: Graph, m: KeyMaskInput): LayerMask {
  const keep = g.input(m.name, "int32", m.dims);
  const f = g.op("Cast", [keep], { to: { int: 1 } }); // float32
  const additive = g.reshape(g.mul(g.sub(g.constF(1), f), g.constF(MASK_FILTER)), [0, 1, 1, -1]);
  return { keep, additive };
}

/** What {@link buildStages} needs. */
export interface StageOptions {
  store: WeightStore;
  tower: TowerDef;
  options: TowerOptions;
}

/**
 * Inference graphs of a tower, with weights as initializers: the encoder stack is split
 * into stages by weight size (the first holds the embeddings, the last the head). Outputs:
 * `last_hidden_state`, `pooler_output`, and `hidden_states.{i}` when asked for; stages hand
 * the running activation over as {@link CARRY_OUT} → {@link CARRY_IN}.
 */
export function buildStages({ store, tower: def, options }: StageOptions): Graph[] {
  const d = dims(def.config);
  const layerBytes = encoderLayerBytes(d);
  const budget = options.maxStageBytes ?? DEFAULT_STAGE_BYTES;
  const mode = buildMode(options);
  const stages: Graph[] = [];
  const open = (): [Graph, ParamSource, LayerMask | undefined] => {
    const g = new Graph(`${def.name}.${stages.length}`);
    return [g, new WeightLoader(g, store, mode).at(def.prefix), def.keyMask ? maskInputs(g, def.keyMask) : undefined];
  };
  let [g, p, mask] = open();
  const pooledOnly = options.pooledOnly === true && !options.outputHiddenStates && def.pooledRows !== undefined;
  let x = def.embeddings(p, "batch");
  const hsDims = ["batch", def.seq, d.hidden];
  if (options.outputHiddenStates) emit(g, x, "hidden_states.0", hsDims);
  for (let i = 0; i < def.config.num_hidden_layers; i++) {
    if (g.initializerBytes > 0 && g.initializerBytes + layerBytes > budget) {
      emit(g, x, CARRY_OUT, hsDims);
      stages.push(g);
      [g, p, mask] = open();
      x = g.input(CARRY_IN, "float32", hsDims);
    }
    const gi = g; // the current stage's graph
    const rows = pooledOnly && i === def.config.num_hidden_layers - 1 ? { queryRows: (h: string) => def.pooledRows!(gi, h) } : {};
    x = encoderLayer(p.at(`encoder.layers.${i}`), d, rows)(x, mask);
    if (options.outputHiddenStates) emit(g, x, `hidden_states.${i + 1}`, hsDims);
  }
  const head = def.head(p);
  const last = head.norm(x);
  if (pooledOnly) {
    emit(g, head.poolRows!(last), "pooler_output", ["batch", def.pooledDim]);
  } else {
    emit(g, last, "last_hidden_state", ["batch", def.seq, d.hidden]);
    emit(g, head.pool(last, mask), "pooler_output", ["batch", def.pooledDim]);
  }
  stages.push(g);
  return stages;
}

/** What a tower run returns. Arrays are row-major float32. */
export interface TowerOutput {
  /** (B, Dout): image pooled output / text head output, not normalised. */
  pooled: Float32Array;
  /** (B, S, D) after the final LayerNorm. */
  lastHiddenState: Float32Array;
  /** Per-layer (B, S, D): index 0 = embeddings, i = output of block i (before the final LN), when requested. */
  hiddenStates?: Float32Array[];
}

/** One image's outputs from a vision tower. */
export interface VisionResult {
  /** MAP-head output (D), not normalised. */
  pooled: Float32Array;
  /** Patch grid rows and columns. */
  gridH: number;
  gridW: number;
  /** Patch features: the valid rows of last_hidden_state, (gridH·gridW, D), row-major over the grid. */
  patches: Float32Array;
}

export function readOutputs(out: Record<string, ort.Tensor>, layers: number, withHidden: boolean): TowerOutput {
  const r: TowerOutput = { pooled: out["pooler_output"]!.data as Float32Array, lastHiddenState: out["last_hidden_state"]!.data as Float32Array };
  if (withHidden) {
    r.hiddenStates = Array.from({ length: layers + 1 }, (_, i) => out[`hidden_states.${i}`]!.data as Float32Array);
  }
  return r;
}
