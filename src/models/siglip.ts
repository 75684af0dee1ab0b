/**
 * SigLIP / SigLIP 2 fixed-resolution image tower and the text tower (shared by
 * NaFlex checkpoints), built as ONNX graphs from config + checkpoint weights.
 *
 * Reference: transformers `models/siglip/modeling_siglip.py`
 * (SiglipVisionEmbeddings, SiglipVisionTransformer, SiglipTextEmbeddings,
 * SiglipTextTransformer); spec §1.3 and §1.6. Tensor names mirror the checkpoint keys.
 */
import { Pipeline, ort } from "../graph/runtime.js";
import type { Dim } from "../graph/graph.js";
import type { Checkpoint, WeightStore } from "../weights/checkpoint.js";
import { fixresGrid, type TextConfig, type VisionConfig } from "../weights/config.js";
import { dims, mapHead } from "./blocks.js";
import type { ParamSource } from "./params.js";
import { triangleWeights } from "../preprocess/resize.js";
import {
  buildStages, checkLayerCount, readOutputs, requireHead, runtimeOptions, towerKey, towerShapes,
  type TowerDef, type TowerOptions, type TowerOutput, type VisionResult,
} from "./tower.js";

export type { TowerOptions, TowerOutput, VisionResult } from "./tower.js";

// ---------------------------------------------------------------------------------------------
// Vision tower, fixed resolution (model_type "siglip")

/** Post-LayerNorm and MAP head of both image towers (the key mask only in NaFlex). */
export function visionHead(v: VisionConfig): TowerDef["head"] {
  return (p) => {
    const norm = p.layerNorm("post_layernorm", v.hidden_size, v.layer_norm_eps); // (B, S, D)
    const head = mapHead(p.at("head"), dims(v));
    return { norm, pool: (last, mask) => head(last, mask?.additive) }; // (B, D)
  };
}

/**
 * One view of the FixRes image tower (training with self-distillation / masked prediction,
 * src/train/distill.ts). Every field is optional; without them the tower is the checkpoint's.
 */
export interface FixresView {
  /** Graph input name of the pixels (default "pixel_values"). */
  input?: string;
  /**
   * Side S of the view's pixels (default image_size). Its grid g = ⌊S / patch⌋ gets the
   * learned G×G position table resized in the graph, `pos' = Kron(Rₕ, R_w)·pos` with the
   * antialiased triangle weights of our resampler (torch `interpolate(bilinear,
   * antialias=True, align_corners=False)`), a constant matrix, so the table gets its gradient.
   */
  size?: number;
  /**
   * Masked prediction (TIPS): a (B, g²) float32 graph value, 1 where the patch embedding is
   * replaced by `token` (a (D) graph value, the learned mask token) before the position
   * embedding is added: masked slots still know where they are.
   */
  mask?: { mask: string; token: string };
}

/** The (g², G²) resize matrix of a G×G position grid to g×g (see {@link FixresView.size}). */
export function positionResizeMatrix(G: number, g: number): Float32Array {
  const w = triangleWeights(G, g);
  const r = new Float64Array(g * G); // (g, G) 1-D weights
  for (let i = 0; i < g; i++) for (let j = 0; j < w.size[i]!; j++) r[i * G + w.start[i]! + j] = w.weights[i]![j]!;
  const out = new Float32Array(g * g * G * G);
  for (let y = 0; y < g; y++) for (let x = 0; x < g; x++) {
    for (let Y = 0; Y < G; Y++) for (let X = 0; X < G; X++) out[(y * g + x) * G * G + Y * G + X] = r[y * G + Y]! * r[x * G + X]!;
  }
  return out;
}

/** The FixRes image tower: pixel_values (B, 3, R, R) → conv patches + G² positions → encoder → post-LN → MAP head. */
export function fixresVision(v: VisionConfig, view: FixresView = {}): TowerDef {
  const D = v.hidden_size;
  const P = v.patch_size;
  const G = fixresGrid(v);
  const R = view.size ?? v.image_size;
  const gv = Math.floor(R / P); // grid of this view
  const N = gv * gv;
  if (gv < 1) throw new Error(`internal: a view of ${R} px has no ${P}-px patch`);
  return {
    name: "vision",
    prefix: "vision_model",
    config: v,
    seq: N,
    pooledDim: D,
    embeddings: (p: ParamSource, batch: Dim) => {
      const g = p.g;
      const e = p.at("embeddings");
      const px = g.input(view.input ?? "pixel_values", "float32", [batch, 3, R, R]);
      // Conv2d(3→D, kernel P, stride P, no padding): trailing pixels that do not fill a patch are dropped.
      const conv = g.op("Conv", [px, e.tensor("patch_embedding.weight", [D, 3, P, P], { decay: true }), e.tensor("patch_embedding.bias", [D])], {
        kernel_shape: { ints: [P, P] }, strides: { ints: [P, P] },
      }); // (B, D, g, g)
      let patches = g.transpose(g.reshape(conv, [0, D, N]), [0, 2, 1]); // (B, N, D), row-major grid
      if (view.mask) {
        const m = g.op("Unsqueeze", [view.mask.mask, g.constI64([-1])]); // (B, N, 1)
        // (1 − m)·patch + m·token
        patches = g.add(g.mul(patches, g.sub(g.constF(1), m)), g.mul(m, view.mask.token));
      }
      let pos = e.tensor("position_embedding.weight", [G * G, D]); // (G², D)
      if (gv !== G) pos = g.matmul(g.init(g.fresh("pos_resize"), positionResizeMatrix(G, gv), [N, G * G]), pos); // (g², D)
      return g.add(patches, pos);
    },
    head: visionHead(v),
  };
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
    const tower = fixresVision(v);
    store.checkAll(towerShapes(tower));
    const build = () => buildStages({ store, tower, options: opts });
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

/**
 * The text tower: token embeddings + positions → encoder → final LN → the last position
 * through a linear head (B, projection_size). No attention mask.
 */
export function textModel(t: TextConfig): TowerDef {
  const D = t.hidden_size;
  const T = t.max_position_embeddings;
  return {
    name: "text",
    prefix: "text_model",
    config: t,
    seq: T,
    pooledDim: t.projection_size,
    embeddings: (p: ParamSource, batch: Dim) => {
      const e = p.at("embeddings");
      const tokens = e.tokenEmbeddings("token_embedding.weight", t.vocab_size, D, batch, T); // (B, T, D)
      return p.g.add(tokens, e.tensor("position_embedding.weight", [T, D])); // (B, T, D)
    },
    head: (p) => {
      const g = p.g;
      const norm = p.layerNorm("final_layer_norm", D, t.layer_norm_eps); // (B, T, D)
      const head = p.linear("head", D, t.projection_size);
      const pool = (last: string): string => {
        const pooled = g.gather(last, g.init(g.fresh("last_position"), BigInt64Array.of(BigInt(T - 1)), []), 1); // (B, D)
        return head(pooled); // (B, projection_size)
      };
      const poolRows = (rows: string): string => head(g.reshape(rows, [-1, D])); // (B, 1, D) → (B, projection_size)
      return { norm, pool, poolRows };
    },
    // the last position only: (B, T, D) → (B, 1, D)
    pooledRows: (g, x) => g.gather(x, g.init(g.fresh("last_position_row"), BigInt64Array.of(BigInt(T - 1)), [1]), 1),
  };
}

/** What {@link TextTower.run} returns: the head output, and the hidden states when asked for. */
export type TextOutput = Pick<TowerOutput, "pooled" | "hiddenStates"> & { lastHiddenState?: Float32Array };

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
    const tower = textModel(t);
    store.checkAll(towerShapes(tower));
    // fp32 without hidden states: only the pooled output is read, so the last layer computes the
    // last position only. (Not int8: its activations are quantised per tensor, and one row would
    // get another scale than the 64.) Pre-packed weights: a query's GEMMs have 64 rows, where
    // packing the weights on every run cost ~30 % of the tower's time. Idle threads do not spin:
    // a query is ~100 short kernels, and spinning threads lost 40 % on a loaded machine
    // (bench/text-latency.ts, README "Performance").
    const o: TowerOptions = { prepack: true, spin: false, ...opts, pooledOnly: !(opts.outputHiddenStates ?? false) && opts.dtype !== "int8" };
    const build = () => buildStages({ store, tower, options: o });
    const pipeline = await Pipeline.cached(towerKey("text", ckpt, o), build, runtimeOptions(o));
    return new TextTower(t, store, pipeline, opts.outputHiddenStates ?? false);
  }

  get sequenceLength(): number {
    return this.config.max_position_embeddings;
  }

  /** Token embeddings for a flat (B·T) id array, reading only the distinct rows from disk. */
  embedTokens(ids: ArrayLike<number>): Float32Array {
    return this.store.gatherRows("text_model.embeddings.token_embedding.weight", ids, this.config.hidden_size);
  }

  /**
   * Run on token ids, flat (batch·T) with T = max_position_embeddings. `lastHiddenState` and
   * `hiddenStates` only when the tower was loaded with `outputHiddenStates` (otherwise its graph
   * computes the last layer for the pooled position only).
   */
  async run(ids: ArrayLike<number>, batch: number): Promise<TextOutput> {
    const T = this.sequenceLength;
    if (ids.length !== batch * T) throw new Error(`internal: expected ${batch}×${T} token ids, got ${ids.length}`);
    const emb = new ort.Tensor("float32", this.embedTokens(ids), [batch, T, this.config.hidden_size]);
    const out = await this.pipeline.run({ inputs_embeds: emb });
    if (this.withHidden) return readOutputs(out, this.config.num_hidden_layers, true);
    return { pooled: out["pooler_output"]!.data as Float32Array };
  }

  async release(): Promise<void> {
    await this.pipeline.release();
  }
}
