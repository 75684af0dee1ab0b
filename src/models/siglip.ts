/**
 * SigLIP / SigLIP 2 fixed-resolution image tower and the text tower (shared by
 * NaFlex checkpoints), built as ONNX graphs from config + checkpoint weights.
 *
 * Reference: transformers `models/siglip/modeling_siglip.py`
 * (SiglipVisionEmbeddings, SiglipVisionTransformer, SiglipTextEmbeddings,
 * SiglipTextTransformer); spec §1.3 and §1.6. Tensor names mirror the checkpoint keys.
 */
import { Graph } from "../graph/graph.js";
import { CARRY_IN, CARRY_OUT, Pipeline, ort, type CacheSpec, type RuntimeOptions } from "../graph/runtime.js";
import { SiglipError } from "../errors.js";
import type { Checkpoint, WeightStore } from "../weights/checkpoint.js";
import { contentIdentity } from "../weights/fingerprint.js";
import { fixresGrid, type TextConfig, type VisionConfig } from "../weights/config.js";
import {
  WeightLoader, encoderLayer, encoderLayerBytes, encoderLayerShapes, mapHead, mapHeadShapes, type BuildMode, type LayerDims, type LayerMask,
} from "./blocks.js";

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
}

/** Graph build mode for inference towers. */
export function buildMode(opts: TowerOptions): BuildMode {
  return { fused: opts.fused ?? true, int8: opts.dtype === "int8" };
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

/** Runtime options for a tower: fused/int8 graphs need only onnxruntime's basic optimisations. */
export function runtimeOptions(opts: TowerOptions): TowerOptions {
  const m = buildMode(opts);
  return { optimizationLevel: m.fused || m.int8 ? "basic" : "all", ...opts };
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

const DEFAULT_STAGE_BYTES = 1.5 * 1024 ** 3;

export function dims(c: VisionConfig | TextConfig): LayerDims {
  return { hidden: c.hidden_size, inter: c.intermediate_size, heads: c.num_attention_heads, eps: c.layer_norm_eps, act: c.hidden_act };
}

/** Name a value as a graph output. */
export function emit(g: Graph, value: string, name: string, dimsOut: Array<number | string>): void {
  g.node("Identity", [value], { outputs: [name] });
  g.output(name, "float32", dimsOut);
}

/** A key-padding mask fed to every stage: (B, S) int32, 1 = real token, 0 = padding. */
export interface KeyMaskInput {
  name: string;
  dims: Array<number | string>;
}

/** Declare the int32 key mask input of a stage and derive its additive (B, 1, 1, S) form. */
function maskInputs(g: Graph, m: KeyMaskInput): LayerMask {
  const keep = g.input(m.name, "int32", m.dims);
  const f = g.op("Cast", [keep], { to: { int: 1 } }); // float32
  const additive = g.reshape(g.mul(g.sub(g.constF(1), f), g.constF(-3.4028234663852886e38)), [0, 1, 1, -1]);
  return { keep, additive };
}

/**
 * Encoder stack split into stages by weight size. `begin` builds the embeddings in
 * the first graph and returns (B, S, D); `end` builds the outputs in the last one.
 * With `keyMask`, every stage takes the mask as an input and every layer uses it.
 */
export function buildStages(
  store: WeightStore,
  name: string,
  prefix: string,
  c: VisionConfig | TextConfig,
  seq: number | string,
  opts: TowerOptions,
  begin: (w: WeightLoader) => string,
  end: (w: WeightLoader, x: string, mask?: LayerMask) => void,
  keyMask?: KeyMaskInput,
): Graph[] {
  const d = dims(c);
  const layerBytes = encoderLayerBytes(d);
  const budget = opts.maxStageBytes ?? DEFAULT_STAGE_BYTES;
  const mode = buildMode(opts);
  const stages: Graph[] = [];
  const open = (): [Graph, WeightLoader, LayerMask | undefined] => {
    const g = new Graph(`${name}.${stages.length}`);
    return [g, new WeightLoader(g, store, mode), keyMask ? maskInputs(g, keyMask) : undefined];
  };
  let [g, w, mask] = open();
  let x = begin(w);
  const hsDims = ["batch", seq, d.hidden];
  if (opts.outputHiddenStates) emit(g, x, "hidden_states.0", hsDims);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    if (g.initializerBytes > 0 && g.initializerBytes + layerBytes > budget) {
      emit(g, x, CARRY_OUT, hsDims);
      stages.push(g);
      [g, w, mask] = open();
      x = g.input(CARRY_IN, "float32", hsDims);
    }
    x = encoderLayer(w, x, `${prefix}.encoder.layers.${i}`, d, mask);
    if (opts.outputHiddenStates) emit(g, x, `hidden_states.${i + 1}`, hsDims);
  }
  end(w, x, mask);
  stages.push(g);
  return stages;
}

export function readOutputs(out: Record<string, ort.Tensor>, layers: number, withHidden: boolean): TowerOutput {
  const r: TowerOutput = { pooled: out["pooler_output"]!.data as Float32Array, lastHiddenState: out["last_hidden_state"]!.data as Float32Array };
  if (withHidden) {
    r.hiddenStates = Array.from({ length: layers + 1 }, (_, i) => out[`hidden_states.${i}`]!.data as Float32Array);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Vision tower, fixed resolution (model_type "siglip")

/**
 * Checkpoint keys and shapes of an image tower: both families share every tensor
 * except the shapes of the patch embedding weight and the position table.
 */
export function visionShapes(v: VisionConfig, patchWeight: number[], positions: number): Array<[string, number[]]> {
  const D = v.hidden_size;
  const out: Array<[string, number[]]> = [
    ["vision_model.embeddings.patch_embedding.weight", patchWeight],
    ["vision_model.embeddings.patch_embedding.bias", [D]],
    ["vision_model.embeddings.position_embedding.weight", [positions, D]],
    ["vision_model.post_layernorm.weight", [D]],
    ["vision_model.post_layernorm.bias", [D]],
  ];
  for (let i = 0; i < v.num_hidden_layers; i++) out.push(...encoderLayerShapes(`vision_model.encoder.layers.${i}`, { hidden: D, inter: v.intermediate_size }));
  out.push(...mapHeadShapes("vision_model.head", { hidden: D, inter: v.intermediate_size }));
  return out;
}

/** Checkpoint keys and shapes the FixRes image tower needs (conv patch embedding, G² positions). */
export function fixresVisionShapes(v: VisionConfig): Array<[string, number[]]> {
  return visionShapes(v, [v.hidden_size, v.num_channels, v.patch_size, v.patch_size], fixresGrid(v) ** 2);
}

/** Both image towers need the MAP head: it produces the pooled embedding. */
export function requireHead(ckpt: Checkpoint): void {
  if (!ckpt.config.vision_config.vision_use_head) {
    throw new SiglipError("checkpoint", `${ckpt.dir}/config.json: vision_use_head=false checkpoints have no pooled image embedding`, { subject: ckpt.dir });
  }
}

/** Image tower of a fixed-resolution checkpoint: pixel_values (B, 3, R, R) → pooled (B, D). */
export class FixresVisionTower {
  private constructor(
    readonly config: VisionConfig,
    private readonly pipeline: Pipeline,
    private readonly withHidden: boolean,
  ) {}

  static async load(ckpt: Checkpoint, opts: TowerOptions = {}): Promise<FixresVisionTower> {
    const v = ckpt.config.vision_config;
    requireHead(ckpt);
    const store = ckpt.weights;
    checkLayerCount(ckpt, "vision_model", "vision_config", v.num_hidden_layers);
    store.checkAll(fixresVisionShapes(v));
    const D = v.hidden_size;
    const P = v.patch_size;
    const G = fixresGrid(v);
    const N = G * G;
    const R = v.image_size;
    const build = () => buildStages(store, "vision", "vision_model", v, N, opts,
      (w) => {
        const g = w.g;
        const px = g.input("pixel_values", "float32", ["batch", 3, R, R]);
        // Conv2d(3→D, kernel P, stride P, no padding): trailing pixels that do not fill a patch are dropped.
        const conv = g.op("Conv", [px, w.tensor("vision_model.embeddings.patch_embedding.weight", [D, 3, P, P]), w.tensor("vision_model.embeddings.patch_embedding.bias", [D])], {
          kernel_shape: { ints: [P, P] }, strides: { ints: [P, P] },
        }); // (B, D, G, G)
        const patches = g.transpose(g.reshape(conv, [0, D, N]), [0, 2, 1]); // (B, N, D), row-major grid
        return g.add(patches, w.tensor("vision_model.embeddings.position_embedding.weight", [N, D]));
      },
      (w, x) => {
        const last = w.layerNorm(x, "vision_model.post_layernorm", D, v.layer_norm_eps); // (B, N, D)
        emit(w.g, last, "last_hidden_state", ["batch", N, D]);
        emit(w.g, mapHead(w, last, "vision_model.head", dims(v)), "pooler_output", ["batch", D]);
      });
    const pipeline = await Pipeline.cached(towerKey("vision-fixres", ckpt, opts), build, runtimeOptions(opts));
    return new FixresVisionTower(v, pipeline, opts.outputHiddenStates ?? false);
  }

  get stageCount(): number {
    return this.pipeline.stageCount;
  }

  /** Encode preprocessed images (each (3, R, R) float32) as one batch. */
  async encode(pixelValues: Float32Array[]): Promise<VisionResult[]> {
    const R = this.config.image_size;
    const per = 3 * R * R;
    const batch = new Float32Array(pixelValues.length * per);
    pixelValues.forEach((p, i) => batch.set(p, i * per));
    const out = await this.run(batch, pixelValues.length);
    const D = this.config.hidden_size;
    const G = fixresGrid(this.config);
    const n = G * G * D;
    return pixelValues.map((_, i) => ({
      pooled: out.pooled.slice(i * D, (i + 1) * D),
      gridH: G,
      gridW: G,
      patches: out.lastHiddenState.slice(i * n, (i + 1) * n),
    }));
  }

  /** Run on a batch of preprocessed images, (batch, 3, R, R) float32. */
  async run(pixelValues: Float32Array, batch: number): Promise<TowerOutput> {
    const R = this.config.image_size;
    const t = new ort.Tensor("float32", pixelValues, [batch, 3, R, R]);
    const out = await this.pipeline.run({ pixel_values: t });
    return readOutputs(out, this.config.num_hidden_layers, this.withHidden);
  }

  async release(): Promise<void> {
    await this.pipeline.release();
  }
}

// ---------------------------------------------------------------------------------------------
// Text tower (both families)

/** Checkpoint keys and shapes the text tower needs. */
export function textShapes(t: TextConfig): Array<[string, number[]]> {
  const D = t.hidden_size;
  const out: Array<[string, number[]]> = [
    ["text_model.embeddings.token_embedding.weight", [t.vocab_size, D]],
    ["text_model.embeddings.position_embedding.weight", [t.max_position_embeddings, D]],
    ["text_model.final_layer_norm.weight", [D]],
    ["text_model.final_layer_norm.bias", [D]],
    ["text_model.head.weight", [t.projection_size, D]],
    ["text_model.head.bias", [t.projection_size]],
  ];
  for (let i = 0; i < t.num_hidden_layers; i++) out.push(...encoderLayerShapes(`text_model.encoder.layers.${i}`, { hidden: D, inter: t.intermediate_size }));
  return out;
}

/**
 * Text tower: input_ids (B, T) → head output (B, projection_size). No attention mask;
 * pooled at the last position. The 256k-row token table stays on disk: the rows a
 * batch needs are read and gathered here, the graph starts at the embeddings.
 */
export class TextTower {
  private constructor(
    readonly config: TextConfig,
    private readonly store: WeightStore,
    private readonly pipeline: Pipeline,
    private readonly withHidden: boolean,
  ) {}

  static async load(ckpt: Checkpoint, opts: TowerOptions = {}): Promise<TextTower> {
    const t = ckpt.config.text_config;
    const store = ckpt.weights;
    checkLayerCount(ckpt, "text_model", "text_config", t.num_hidden_layers);
    store.checkAll(textShapes(t));
    const D = t.hidden_size;
    const T = t.max_position_embeddings;
    const build = () => buildStages(store, "text", "text_model", t, T, opts,
      (w) => {
        const emb = w.g.input("inputs_embeds", "float32", ["batch", T, D]);
        return w.g.add(emb, w.tensor("text_model.embeddings.position_embedding.weight", [T, D])); // (B, T, D)
      },
      (w, x) => {
        const g = w.g;
        const last = w.layerNorm(x, "text_model.final_layer_norm", D, t.layer_norm_eps); // (B, T, D)
        emit(g, last, "last_hidden_state", ["batch", T, D]);
        const pooled = g.gather(last, g.init(g.fresh("last_position"), BigInt64Array.of(BigInt(T - 1)), []), 1); // (B, D)
        emit(g, w.linear(pooled, "text_model.head", D, t.projection_size), "pooler_output", ["batch", t.projection_size]);
      });
    const pipeline = await Pipeline.cached(towerKey("text", ckpt, opts), build, runtimeOptions(opts));
    return new TextTower(t, store, pipeline, opts.outputHiddenStates ?? false);
  }

  get sequenceLength(): number {
    return this.config.max_position_embeddings;
  }

  /** Token embeddings for a flat (B·T) id array, reading only the distinct rows from disk. */
  embedTokens(ids: ArrayLike<number>): Float32Array {
    const D = this.config.hidden_size;
    const unique = [...new Set(Array.from(ids))];
    const rows = this.store.rowsFloat32("text_model.embeddings.token_embedding.weight", unique);
    const at = new Map(unique.map((id, i) => [id, i]));
    const out = new Float32Array(ids.length * D);
    for (let i = 0; i < ids.length; i++) {
      const r = at.get(ids[i]!)!;
      out.set(rows.subarray(r * D, (r + 1) * D), i * D);
    }
    return out;
  }

  /** Run on token ids, flat (batch·T) with T = max_position_embeddings. */
  async run(ids: ArrayLike<number>, batch: number): Promise<TowerOutput> {
    const T = this.sequenceLength;
    if (ids.length !== batch * T) throw new Error(`internal: expected ${batch}×${T} token ids, got ${ids.length}`);
    const emb = new ort.Tensor("float32", this.embedTokens(ids), [batch, T, this.config.hidden_size]);
    const out = await this.pipeline.run({ inputs_embeds: emb });
    return readOutputs(out, this.config.num_hidden_layers, this.withHidden);
  }

  async release(): Promise<void> {
    await this.pipeline.release();
  }
}
