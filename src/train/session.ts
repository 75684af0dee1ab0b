/**
 * Runs a training graph: parameters (Float32Arrays by checkpoint key) and a batch in, loss and
 * gradients out. One onnxruntime session per graph; the optimiser update is plain JS
 * (src/train/optim.ts).
 */
import { ort } from "../graph/runtime.js";
import { sessionOptions, type SessionSettings } from "../graph/session-options.js";
import type { WeightStore } from "../weights/checkpoint.js";
import type { ParamSpec } from "../models/params.js";
import { SPATIAL_SHAPES_INPUT } from "../models/siglip2.js";
import { LOCCA_INPUTS, buildEmbedGraph, buildTrainGraph, type Tower, type TrainGraphOptions } from "./model.js";
import type { SiglipConfig } from "../weights/config.js";
import { isDecoderParam, loadDecoderParams } from "./checkpoint.js";
import { DISTILL_INPUTS, type DistillBatch } from "./distill.js";
import { fixresGrid } from "../weights/config.js";
import { memoryGrid, memoryPositionCode } from "../models/locca.js";
import { LruCache } from "../lru.js";
import { initDecoderParams } from "./init.js";

/** Parameter values by checkpoint key. */
export type Params = Map<string, Float32Array>;

/** Read every parameter of `specs` from a checkpoint (shape-checked, converted to float32). */
export function loadParams(store: WeightStore, specs: readonly ParamSpec[]): Params {
  const out: Params = new Map();
  for (const s of specs) out.set(s.name, store.float32(s.name, s.shape).slice());
  return out;
}

/**
 * The starting parameters of a run from checkpoint folder `dir`: the towers from its weights
 * and, when `specs` has the LocCa decoder, the decoder from `dir/decoder.safetensors`
 * (fine-tune) or fresh from ./init.ts with `seed`. `decoder` says which (null: no decoder).
 */
export function startingParams(store: WeightStore, dir: string, specs: readonly ParamSpec[], seed: number): { params: Params; decoder: "loaded" | "initialised" | null } {
  const towers = specs.filter((s) => !isDecoderParam(s.name));
  const params = loadParams(store, towers);
  if (towers.length === specs.length) return { params, decoder: null };
  const loaded = loadDecoderParams(dir, specs);
  for (const [n, v] of loaded ?? initDecoderParams(specs, seed)) params.set(n, v);
  return { params, decoder: loaded ? "loaded" : "initialised" };
}

/** Training sessions choose only the thread count (default: every CPU, as inference). */
export type SessionOptions = Pick<SessionSettings, "threads">;

function paramFeeds(specs: readonly ParamSpec[], params: Params, names: readonly string[]): Record<string, ort.Tensor> {
  const bySpec = new Map(specs.map((s) => [s.name, s]));
  const feeds: Record<string, ort.Tensor> = {};
  for (const n of names) {
    const s = bySpec.get(n);
    const v = params.get(n);
    if (!s || !v) throw new Error(`internal: no value for parameter ${n}`);
    feeds[n] = new ort.Tensor("float32", v, s.shape);
  }
  return feeds;
}

/** A batch as the graphs take it. */
export interface Batch {
  /** (n, 3, R, R) normalised pixels; NaFlex: (n, L, 3·P·P) patch rows, zero after each image's valid rows. */
  pixelValues: Float32Array;
  /** (n, T) token ids. */
  inputIds: BigInt64Array;
  n: number;
  /** The LocCa sequences (graphs with that objective): S rows of L tokens. */
  decoder?: DecoderBatch;
  /** Views, masks and teacher targets (graphs with self-distillation, ./distill.ts). */
  distill?: DistillBatch;
  /** NaFlex checkpoints: the grids and key mask of the padded patch rows. */
  naflex?: NaflexInputs;
}

/** The NaFlex inputs of a batch of n images padded to L patch rows (transformers' Siglip2VisionModel inputs). */
export interface NaflexInputs {
  /** Padded patch length L. */
  length: number;
  /** (n, 2) grid (rows, cols) of each image. */
  spatialShapes: BigInt64Array;
  /** (n, L) 1 for real patches, 0 for padding. */
  keyMask: Int32Array;
}

/** Feed the image inputs of a batch: FixRes (n, 3, R, R), or NaFlex patches, grids and key mask. */
function imageFeeds(config: SiglipConfig, batch: Pick<Batch, "pixelValues" | "naflex">, n: number, feeds: Record<string, ort.Tensor>): void {
  const v = config.vision_config;
  if (config.model_type !== "siglip2") {
    feeds["pixel_values"] = new ort.Tensor("float32", batch.pixelValues, [n, 3, v.image_size, v.image_size]);
    return;
  }
  const nf = batch.naflex;
  if (!nf) throw new Error("internal: a NaFlex model needs batches with NaFlex inputs");
  feeds["pixel_values"] = new ort.Tensor("float32", batch.pixelValues, [n, nf.length, v.num_channels * v.patch_size * v.patch_size]);
  feeds[SPATIAL_SHAPES_INPUT] = new ort.Tensor("int64", nf.spatialShapes, [n, 2]);
  feeds[NAFLEX_KEY_MASK] = new ort.Tensor("int32", nf.keyMask, [n, nf.length]);
}

/** The key-mask input of NaFlex graphs. */
const NAFLEX_KEY_MASK = "key_mask";

/** S decoder sequences of L tokens (see LOCCA_INPUTS in ./model.ts). */
export interface DecoderBatch {
  /** (S, L) decoder inputs. */
  inputIds: BigInt64Array;
  /** (S, L) targets. */
  targets: BigInt64Array;
  /** (S, L) loss weights (0 on prefix and pad). */
  weights: Float32Array;
  /** (S) 1 = causal row, 0 = parallel row. */
  causal: BigInt64Array;
  /** (S) index of each sequence's image in the batch. */
  image: BigInt64Array;
}

export interface StepResult {
  loss: number;
  /** Gradients of the trainable parameters (fresh arrays). */
  grads: Params;
  logits?: Float32Array;
  /** The sigmoid part of the loss. */
  sigmoidLoss?: number;
  /** With LocCa: its part of the loss, the per-sequence losses (S) and, when asked for, the decoder logits (S, L, V). */
  loccaLoss?: number;
  loccaPerSequence?: Float32Array;
  decoderLogits?: Float32Array;
  /** With SD/MP: the two unweighted losses. */
  sdLoss?: number;
  mpLoss?: number;
}

/** Loss and gradients of one micro-batch. */
export class TrainSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly params: ParamSpec[],
    readonly trainable: string[],
    private readonly config: SiglipConfig,
    readonly batch: number,
    private readonly inputs: string[],
    private readonly locca?: { sequences: number; length: number },
    /** NaFlex: the padded patch length the graph was built for. */
    readonly patches?: number,
    private readonly distill?: { views: number; size: number; out: number },
  ) {}

  static async create(config: SiglipConfig, o: TrainGraphOptions & SessionOptions): Promise<TrainSession> {
    const tg = buildTrainGraph(config, o);
    const inputs = tg.graph.view().inputs.map((i) => i.name);
    const session = await ort.InferenceSession.create(tg.graph.toModelBytes(), sessionOptions({ threads: o.threads }));
    const locca = o.objectives?.includes("locca") && o.locca ? { sequences: o.locca.sequences, length: o.locca.length } : undefined;
    const d = o.distill ? { views: o.distill.localViews, size: o.distill.localSize, out: o.distill.head.out } : undefined;
    return new TrainSession(session, tg.params, tg.trainable, config, o.batch, inputs, locca, o.patches, d);
  }

  async step(params: Params, batch: Batch): Promise<StepResult> {
    if (batch.n !== this.batch) throw new Error(`internal: training graph built for batch ${this.batch}, got ${batch.n}`);
    if (this.patches !== undefined && batch.naflex?.length !== this.patches) {
      throw new Error(`internal: training graph built for ${this.patches} patch rows, got ${batch.naflex?.length}`);
    }
    const T = this.config.text_config.max_position_embeddings;
    const dataInputs = new Set<string>(["pixel_values", "input_ids", SPATIAL_SHAPES_INPUT, NAFLEX_KEY_MASK, ...Object.values(LOCCA_INPUTS), ...Object.values(DISTILL_INPUTS)]);
    const feeds = paramFeeds(this.params, params, this.inputs.filter((n) => !dataInputs.has(n)));
    imageFeeds(this.config, batch, batch.n, feeds);
    feeds["input_ids"] = new ort.Tensor("int64", batch.inputIds, [batch.n, T]);
    if (this.locca) {
      const d = batch.decoder;
      if (!d) throw new Error("internal: this training graph has the LocCa objective; the batch has no decoder sequences");
      const { sequences: S, length: L } = this.locca;
      feeds[LOCCA_INPUTS.ids] = new ort.Tensor("int64", d.inputIds, [S, L]);
      feeds[LOCCA_INPUTS.targets] = new ort.Tensor("int64", d.targets, [S, L]);
      feeds[LOCCA_INPUTS.weights] = new ort.Tensor("float32", d.weights, [S, L]);
      feeds[LOCCA_INPUTS.causal] = new ort.Tensor("int64", d.causal, [S]);
      feeds[LOCCA_INPUTS.image] = new ort.Tensor("int64", d.image, [S]);
      if (this.inputs.includes(LOCCA_INPUTS.memoryPosition)) feeds[LOCCA_INPUTS.memoryPosition] = this.memoryCodes(batch);
    }
    if (this.distill) {
      const d = batch.distill;
      if (!d) throw new Error("internal: this training graph has self-distillation; the batch has no views");
      const { views: V, size: r, out: K } = this.distill;
      const n = batch.n;
      const R = this.config.vision_config.image_size;
      const N = fixresGrid(this.config.vision_config) ** 2;
      feeds[DISTILL_INPUTS.local] = new ort.Tensor("float32", d.local, [n * V, 3, r, r]);
      feeds[DISTILL_INPUTS.global] = new ort.Tensor("float32", d.global, [n, 3, R, R]);
      feeds[DISTILL_INPUTS.mask] = new ort.Tensor("float32", d.mask, [n, N]);
      feeds[DISTILL_INPUTS.sdTarget] = new ort.Tensor("float32", d.sdTarget, [n, K]);
      feeds[DISTILL_INPUTS.mpTarget] = new ort.Tensor("float32", d.mpTarget, [n, N, K]);
    }
    const out = await this.session.run(feeds);
    const grads: Params = new Map();
    for (const n of this.trainable) grads.set(n, out[`grad.${n}`]!.data as Float32Array);
    const r: StepResult = { loss: Number(out["loss"]!.data[0]), grads };
    if (out["logits"]) r.logits = out["logits"].data as Float32Array;
    if (out["sigmoid_loss"]) r.sigmoidLoss = Number(out["sigmoid_loss"].data[0]);
    if (out["locca_loss"]) r.loccaLoss = Number(out["locca_loss"].data[0]);
    if (out["locca_per_sequence"]) r.loccaPerSequence = out["locca_per_sequence"].data as Float32Array;
    if (out["decoder_logits"]) r.decoderLogits = out["decoder_logits"].data as Float32Array;
    if (out["sd_loss"]) r.sdLoss = Number(out["sd_loss"].data[0]);
    if (out["mp_loss"]) r.mpLoss = Number(out["mp_loss"].data[0]);
    return r;
  }

  /** Memory position codes by (h, w) grid (bounded: "every cache of this project is bounded"). */
  private readonly codes = new LruCache<string, Float32Array>(64);

  /** NaFlex + LocCa with a position code: (n, P, Dv), each image's code of its own grid, zero rows on its padding. */
  private memoryCodes(batch: Batch): ort.Tensor {
    const nf = batch.naflex;
    if (!nf) throw new Error("internal: a NaFlex LocCa graph needs batches with NaFlex inputs");
    const Dv = this.config.vision_config.hidden_size;
    const R = memoryGrid(this.config);
    const out = new Float32Array(batch.n * nf.length * Dv);
    for (let i = 0; i < batch.n; i++) {
      const h = Number(nf.spatialShapes[2 * i]);
      const w = Number(nf.spatialShapes[2 * i + 1]);
      const key = `${h}x${w}`;
      let code = this.codes.get(key);
      if (!code) {
        code = memoryPositionCode(Dv, h, w, R);
        this.codes.set(key, code);
      }
      out.set(code, i * nf.length * Dv);
    }
    return new ort.Tensor("float32", out, [batch.n, nf.length, Dv]);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** L2-normalised embeddings of one tower from in-memory parameters (for evaluation during training). */
export class EmbedSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly params: ParamSpec[],
    private readonly config: SiglipConfig,
    readonly tower: Tower,
  ) {}

  static async create(config: SiglipConfig, tower: Tower, o: SessionOptions = {}): Promise<EmbedSession> {
    const eg = buildEmbedGraph(config, tower);
    const session = await ort.InferenceSession.create(eg.graph.toModelBytes(), sessionOptions({ threads: o.threads }));
    return new EmbedSession(session, eg.params, config, tower);
  }

  /**
   * Embed `n` items: pixel values (n, 3, R, R) for the vision tower, ids (n, T) for the text
   * tower; NaFlex images as a padded batch (`{pixelValues, naflex}`, see {@link Batch}).
   */
  async embed(params: Params, data: Float32Array | BigInt64Array | Pick<Batch, "pixelValues" | "naflex">, n: number): Promise<Float32Array> {
    const feeds = paramFeeds(this.params, params, this.params.map((p) => p.name));
    if (this.tower === "vision") {
      imageFeeds(this.config, data instanceof Float32Array ? { pixelValues: data } : (data as Pick<Batch, "pixelValues" | "naflex">), n, feeds);
    } else {
      feeds["input_ids"] = new ort.Tensor("int64", data as BigInt64Array, [n, this.config.text_config.max_position_embeddings]);
    }
    const out = await this.session.run(feeds);
    return out["embeds"]!.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
