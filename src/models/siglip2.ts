/**
 * SigLIP 2 NaFlex image tower (model_type "siglip2"): variable patch grids that keep
 * an image's aspect ratio, a linear patch embedding, a learned position grid
 * resized per image, and a key-padding mask in every layer and in the MAP head.
 * The text tower is the shared one in ./siglip.ts.
 *
 * Reference: transformers `models/siglip2/modeling_siglip2.py`
 * (Siglip2VisionEmbeddings, Siglip2VisionModel, Siglip2MultiheadAttentionPoolingHead);
 * spec §1.4. Tensor names mirror the checkpoint keys.
 *
 * Batches are padded only to the longest sequence in the batch (not to the patch
 * budget): padded keys are masked, so valid outputs do not depend on the padding.
 */
import { Pipeline, ort } from "../graph/runtime.js";
import type { Dim } from "../graph/graph.js";
import type { NaflexPatches } from "../preprocess/naflex.js";
import type { Checkpoint } from "../weights/checkpoint.js";
import type { VisionConfig } from "../weights/config.js";
import { positionsInGraph, resizePositionGrid } from "./position-resize.js";
import { visionHead } from "./siglip.js";
import {
  buildStages, checkLayerCount, readOutputs, requireHead, runtimeOptions, towerKey, towerShapes,
  type TowerDef, type TowerOptions, type TowerOutput, type VisionResult,
} from "./tower.js";

/** Options for NaFlex towers. */
export interface NaflexTowerOptions extends TowerOptions {
  /** Reproduce PyTorch-CPU's w = 1 position-resize quirk (spec §1.4), for parity with transformers on CPU. Off by default. */
  torchCpuCompat?: boolean;
}

/**
 * The NaFlex image tower: patch rows (B, L, 3·P·P) → linear patch embedding + resized
 * positions (fed as an input) → encoder (key-masked) → post-LN → key-masked MAP head.
 * For inference the position table is read and resized by {@link NaflexVisionTower}, not the
 * graph; training graphs resize it in the graph (`o.resizeInGraph`), so that it gets a gradient.
 */
export function naflexVision(v: VisionConfig, o: NaflexGraphOptions = {}): TowerDef {
  const D = v.hidden_size;
  const F = v.num_channels * v.patch_size * v.patch_size;
  const N = v.num_patches;
  const seq: Dim = o.length ?? "seq";
  return {
    name: "vision",
    prefix: "vision_model",
    config: v,
    seq,
    pooledDim: D,
    embeddings: (p, batch) => {
      const g = p.g;
      const e = p.at("embeddings");
      const px = g.input("pixel_values", "float32", [batch, seq, F]);
      // Linear(3·P·P → D) on channel-fastest patch rows (padding rows become just the bias).
      const patches = e.linear("patch_embedding", F, D)(px); // (B, L, D)
      let pos: string;
      if (o.resizeInGraph) {
        // the learned grid (N, D) resized to each image's spatial_shapes (h, w), in the graph
        const table = e.tensor("position_embedding.weight", [N, D]);
        const spatial = g.input(SPATIAL_SHAPES_INPUT, "int64", [batch, 2]); // (B, 2): (h, w) patches
        const rows = typeof seq === "number"
          ? g.init(g.fresh("seq_length"), BigInt64Array.of(BigInt(seq)), [])
          : g.op("Squeeze", [g.op("Slice", [g.op("Shape", [px]), g.constI64([1]), g.constI64([2]), g.constI64([0])]), g.constI64([0])]);
        pos = positionsInGraph(g, table, v, spatial, rows); // (B, L, D)
      } else {
        pos = g.input("position_embeddings", "float32", [batch, seq, D]);
      }
      return g.add(patches, pos); // (B, L, D)
    },
    head: visionHead(v),
    keyMask: { name: "key_mask", dims: ["batch", seq] },
  };
}

/** Graph input of the in-graph position resize: (B, 2) int64 grid (rows, cols) per image, as transformers' `spatial_shapes`. */
export const SPATIAL_SHAPES_INPUT = "spatial_shapes";

/** How {@link naflexVision} is built. */
export interface NaflexGraphOptions {
  /** A fixed sequence length L (training graphs have static shapes); default symbolic. */
  length?: number;
  /**
   * Resize the position grid inside the graph (training: the table is a parameter and gets its
   * gradient; export: transformers' inputs), from `spatial_shapes` (B, 2) with
   * ./position-resize.ts `positionsInGraph`. Default false: the caller feeds
   * `position_embeddings` (B, L, D), resized by
   * src/models/position-resize.ts bit-exactly as PyTorch does (inference).
   */
  resizeInGraph?: boolean;
}

/**
 * Checkpoint keys and shapes the NaFlex image tower needs, in parameter order: what its
 * training graph asks for (the learned position grid (num_patches, D) after the patch
 * embedding, where the FixRes tower asks for its table).
 */
export function naflexVisionShapes(v: VisionConfig): Array<[string, number[]]> {
  return towerShapes(naflexVision(v, { resizeInGraph: true, length: 1 }));
}

/** Inputs of one padded batch, as fed to the graph. */
export interface NaflexBatch {
  /** (B, L, 3·P·P) patches, zero rows after each image's valid rows. */
  pixelValues: Float32Array;
  /** (B, L, D) resized position embeddings; rows after the valid ones repeat row 0. */
  positions: Float32Array;
  /** (B, L) key mask: 1 for real patches, 0 for padding. */
  keyMask: Int32Array;
  batch: number;
  length: number;
}

/** Image tower of a NaFlex checkpoint: patchified images → pooled (B, D) and patch features. */
export class NaflexVisionTower {
  private constructor(
    readonly config: VisionConfig,
    /** The learned position table (num_patches, D). */
    private readonly positionTable: Float32Array,
    private readonly pipeline: Pipeline,
    private readonly opts: NaflexTowerOptions,
  ) {}

  static async load(ckpt: Checkpoint, opts: NaflexTowerOptions = {}): Promise<NaflexVisionTower> {
    const v = ckpt.config.vision_config;
    requireHead(ckpt);
    const store = ckpt.weights;
    checkLayerCount(ckpt, "vision_model", "vision_config", v.num_hidden_layers);
    store.checkAll(naflexVisionShapes(v));
    const D = v.hidden_size;
    const build = () => buildStages({ store, tower: naflexVision(v), options: opts });
    const pipeline = await Pipeline.cached(towerKey("vision-naflex", ckpt, opts), build, runtimeOptions(opts));
    const table = store.float32("vision_model.embeddings.position_embedding.weight", [v.num_patches, D]);
    return new NaflexVisionTower(v, table, pipeline, opts);
  }

  /** Side of the learned position grid (√num_patches). */
  get positionGridSize(): number {
    return Math.round(Math.sqrt(this.config.num_patches));
  }

  /** The position table resized to an (h, w) grid: (h·w, D). */
  positions(h: number, w: number): Float32Array {
    const o: { torchCpuCompat?: boolean } = {};
    if (this.opts.torchCpuCompat !== undefined) o.torchCpuCompat = this.opts.torchCpuCompat;
    return resizePositionGrid(this.positionTable, this.positionGridSize, this.config.hidden_size, h, w, o);
  }

  /** Pad images to a common length (default: the longest in the batch) and build the graph inputs. */
  prepareBatch(images: NaflexPatches[], length?: number): NaflexBatch {
    const D = this.config.hidden_size;
    const F = 3 * this.config.patch_size * this.config.patch_size;
    const L = length ?? Math.max(...images.map((p) => p.gridH * p.gridW));
    const B = images.length;
    const pixelValues = new Float32Array(B * L * F);
    const positions = new Float32Array(B * L * D);
    const keyMask = new Int32Array(B * L);
    images.forEach((p, b) => {
      const n = p.gridH * p.gridW;
      if (n > L) throw new Error(`internal: image with ${n} patches in a batch padded to ${L}`);
      pixelValues.set(p.patches, b * L * F);
      const pos = this.positions(p.gridH, p.gridW);
      positions.set(pos, b * L * D);
      for (let r = n; r < L; r++) positions.set(pos.subarray(0, D), (b * L + r) * D); // padding rows: row 0
      keyMask.fill(1, b * L, b * L + n);
    });
    return { pixelValues, positions, keyMask, batch: B, length: L };
  }

  /** Run one prepared batch. */
  async run(b: NaflexBatch): Promise<TowerOutput> {
    const D = this.config.hidden_size;
    const F = 3 * this.config.patch_size * this.config.patch_size;
    const out = await this.pipeline.run({
      pixel_values: new ort.Tensor("float32", b.pixelValues, [b.batch, b.length, F]),
      position_embeddings: new ort.Tensor("float32", b.positions, [b.batch, b.length, D]),
      key_mask: new ort.Tensor("int32", b.keyMask, [b.batch, b.length]),
    });
    return readOutputs(out, this.config.num_hidden_layers, this.opts.outputHiddenStates ?? false);
  }

  /** Encode patchified images as one batch padded to the longest. */
  async encode(images: NaflexPatches[]): Promise<VisionResult[]> {
    const b = this.prepareBatch(images);
    const out = await this.run(b);
    const D = this.config.hidden_size;
    return images.map((p, i) => {
      const n = p.gridH * p.gridW;
      const start = i * b.length * D;
      return {
        pooled: out.pooled.slice(i * D, (i + 1) * D),
        gridH: p.gridH,
        gridW: p.gridW,
        patches: out.lastHiddenState.slice(start, start + n * D),
      };
    });
  }

  get stageCount(): number {
    return this.pipeline.stageCount;
  }

  async release(): Promise<void> {
    await this.pipeline.release();
  }
}
