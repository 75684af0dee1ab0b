/**
 * Training graphs of a SigLIP model — fixed resolution (model_type "siglip") or NaFlex ("siglip2",
 * the position-grid resize and the key masks in the graph, padded to a static length): both towers, the
 * sigmoid loss, optionally the LocCa decoder and its loss (src/models/locca.ts,
 * ./locca-loss.ts), and the backward pass from src/graph/autodiff.ts in one graph, so one
 * onnxruntime session returns the loss and every gradient.
 *
 * The towers are the inference ones (src/models/siglip.ts `fixresVision`, `textModel`, built
 * by src/models/tower.ts `towerForward`; spec §1), built on the training parameter source
 * `InputParams` (src/models/params.ts): every parameter a graph INPUT named by its checkpoint
 * key, in checkpoint layout, recorded in the order the graph asks for it — that order is the
 * parameter list ({@link paramSpecs}) of checkpoints, initialisation and optimiser state.
 */
import { backward, type Seed } from "../graph/autodiff.js";
import { Graph, type Dim } from "../graph/graph.js";
import { DECODER_PREFIX, decoderConfig, gatherPerSequence, loccaDecoder, memoryGrid, memoryPositionCode, selfAttentionMask, type MemoryPosition } from "../models/locca.js";
import { InputParams, type ParamSpec } from "../models/params.js";
import { fixresVision, textModel } from "../models/siglip.js";
import { naflexVision } from "../models/siglip2.js";
import { towerForward, type TowerDef } from "../models/tower.js";
import type { SiglipConfig } from "../weights/config.js";
import { distillLosses, type DistillGraphOptions } from "./distill.js";
import { chunkedLoccaLoss, loccaLoss } from "./locca-loss.js";
import { chunkedSigmoidLoss, l2normalize, sigmoidLoss } from "./loss.js";


export type Tower = "vision" | "text";

/** Which parameters a tower owns (by checkpoint key prefix). `logit_scale` / `logit_bias` belong to neither. */
export function towerOf(name: string): Tower | null {
  if (name.startsWith("vision_model.")) return "vision";
  if (name.startsWith("text_model.")) return "text";
  return null;
}

/**
 * The image tower of a config: FixRes, or NaFlex (model_type "siglip2") with the position grid
 * resized in the graph (so the table gets its gradient) at patch length `length` (a number
 * in training graphs, whose shapes are static; symbolic in embedding graphs).
 */
function visionDef(c: SiglipConfig, length?: number): TowerDef {
  if (c.model_type !== "siglip2") return fixresVision(c.vision_config);
  return naflexVision(c.vision_config, length === undefined ? { resizeInGraph: true } : { resizeInGraph: true, length });
}

/** NaFlex training graphs need their padded patch length; FixRes ones have none. */
function checkLength(c: SiglipConfig, length: number | undefined): void {
  if (c.model_type === "siglip2" && length === undefined) throw new Error("internal: a NaFlex training graph needs TrainGraphOptions.patches (its padded length)");
  if (c.model_type === "siglip" && length !== undefined) throw new Error("internal: TrainGraphOptions.patches is for NaFlex (model_type \"siglip2\") checkpoints");
}

/** Last hidden state (B, S, D) and pooled output (B, D) of one tower, built on the training source. */
function towerOut(p: InputParams, c: SiglipConfig, tower: Tower, batch: Dim, length?: number): ReturnType<typeof towerForward> {
  return towerForward(p, tower === "vision" ? visionDef(c, length) : textModel(c.text_config), batch);
}

const pooled = (p: InputParams, c: SiglipConfig, tower: Tower, batch: Dim): string => towerOut(p, c, tower, batch).pooled;

/**
 * The two towers' embeddings (n, D), L2-normalised, the loss scalars t' and b, the image
 * tokens (n, P, Dv) (post-LN, before the MAP head: what the LocCa decoder attends to), and for
 * NaFlex the additive key mask of the padded patches (n, 1, 1, P).
 */
function forward(p: InputParams, c: SiglipConfig, batch: Dim, length?: number): { zimg: string; ztxt: string; scale: string; bias: string; imageTokens: string; imageMask?: string } {
  const vision = towerOut(p, c, "vision", batch, length);
  const zimg = l2normalize(p.g, vision.pooled);
  const ztxt = l2normalize(p.g, pooled(p, c, "text", batch));
  const out: ReturnType<typeof forward> = { zimg, ztxt, scale: p.tensor("logit_scale", [1]), bias: p.tensor("logit_bias", [1]), imageTokens: vision.last };
  if (vision.mask) out.imageMask = vision.mask.additive;
  return out;
}

/** Training objectives: the sigmoid loss (always in a SigLIP model) and the LocCa decoder loss. */
export type Objective = "sigmoid" | "locca";

/** Which objectives a graph has (default: sigmoid only). */
function objectivesOf(o: { objectives?: readonly Objective[] }): { sigmoid: boolean; locca: boolean } {
  const list = o.objectives ?? ["sigmoid"];
  if (list.length === 0) throw new Error("internal: a training graph needs at least one objective");
  return { sigmoid: list.includes("sigmoid"), locca: list.includes("locca") };
}

/**
 * Every parameter of a FixRes SigLIP model, in a fixed order (vision, text, t', b, then the
 * LocCa decoder's `decoder.*` when that objective is on): the parameters the training graph
 * asks for, in the order it asks (see src/models/params.ts).
 */
export function paramSpecs(c: SiglipConfig, o: { objectives?: readonly Objective[]; distill?: DistillGraphOptions } = {}): ParamSpec[] {
  const p = InputParams.root(new Graph("siglip.params"));
  forward(p, c, 1, c.model_type === "siglip2" ? 1 : undefined);
  if (objectivesOf(o).locca) loccaDecoder(p, decoderConfig(c.text_config, c.vision_config), 1, 1);
  if (o.distill) distillLosses(p, c.vision_config, 1, o.distill); // the distill.* heads and mask token, last
  return [...p.specs];
}

/** Shape of the LocCa part of a training batch: S decoder sequences of L tokens. */
export interface LoccaGraphOptions {
  /** Decoder sequences S per micro-batch (captions + referring expressions + grounded captions). */
  sequences: number;
  /** Decoder sequence length L (≤ text max_position_embeddings). */
  length: number;
  /** Use the vocabulary-chunked loss with this many rows per chunk (default: full logits, autodiff). */
  vocabChunk?: number;
  /** Also output `decoder_logits` (S, L, V) (full loss only). */
  outputLogits?: boolean;
  /** The decoder's image-token position code (src/models/locca.ts; default "none"). */
  memoryPosition?: MemoryPosition;
}

/** Graph inputs of the LocCa objective (the golden's names, tools/reference/locca_goldens.py). */
export const LOCCA_INPUTS = {
  ids: "decoder_input_ids", // (S, L) int64: BOS-shifted tokens, or the mask token in parallel rows
  targets: "decoder_targets", // (S, L) int64
  weights: "decoder_weights", // (S, L) float32: 0 on prefix and pad
  causal: "decoder_causal", // (S) int64: 1 causal, 0 parallel
  image: "decoder_image", // (S) int64: the image of each sequence
  memoryPosition: "decoder_memory_position", // NaFlex with a position code: (n, P, Dv) float32, each image's code (./session.ts)
} as const;

/** Options of a training graph. */
export interface TrainGraphOptions {
  /** Micro-batch size n (static). */
  batch: number;
  /** Parameters to differentiate (default: all). Frozen ones are still inputs, fed as constants. */
  trainable?: (p: ParamSpec) => boolean;
  /** Use the chunked loss with this block size (default: the full n×n loss, differentiated by autodiff). */
  lossChunk?: number;
  /** Also output the (n, n) logits (full loss only). */
  outputLogits?: boolean;
  /** Objectives (default ["sigmoid"]); the total loss is their unweighted sum. */
  objectives?: readonly Objective[];
  /** Required with the "locca" objective. */
  locca?: LoccaGraphOptions;
  /** Self-distillation + masked prediction (./distill.ts), with the {@link DISTILL_INPUTS}; its params come last. */
  distill?: DistillGraphOptions;
  /** NaFlex (model_type "siglip2") only, and required there: the padded patch length L of the micro-batch. */
  patches?: number;
}

/**
 * A built training graph: inputs are the parameters, `pixel_values`, `input_ids` and, with
 * LocCa, the {@link LOCCA_INPUTS}.
 */
export interface TrainGraph {
  graph: Graph;
  params: ParamSpec[];
  /** Names of the differentiated parameters; output `grad.NAME` for each. */
  trainable: string[];
}

/**
 * Forward + losses + backward in one graph. Outputs: `loss` (the sum of the objectives),
 * `grad.<param>`, `sigmoid_loss`, with SD/MP `sd_loss` and `mp_loss` (unweighted), and with
 * LocCa `locca_loss`, `locca_per_sequence` (S)
 * (and `logits` / `decoder_logits` when asked for).
 *
 * Each objective contributes its own seeds to one backward pass: a full loss its scalar, a
 * chunked loss its hand-written gradients (the custom-gradient boundary of autodiff.ts).
 */
export function buildTrainGraph(c: SiglipConfig, o: TrainGraphOptions): TrainGraph {
  checkLength(c, o.patches);
  const obj = objectivesOf(o);
  const g = new Graph("siglip.train");
  const p = InputParams.root(g);
  const n = o.batch;
  const { zimg, ztxt, scale, bias, imageTokens, imageMask } = forward(p, c, n, o.patches);
  const lo = o.locca;
  if (obj.locca && !lo) throw new Error("internal: the locca objective needs TrainGraphOptions.locca");
  const dc = decoderConfig(c.text_config, c.vision_config, lo?.memoryPosition);
  const decoder = obj.locca ? loccaDecoder(p, dc, lo!.sequences, lo!.length) : null;
  // SD/MP: the student's local and masked views through the same tower, the heads (./distill.ts)
  if (o.distill && o.patches !== undefined) throw new Error("internal: self-distillation is FixRes only (no NaFlex training graph with distill)");
  const distill = o.distill ? distillLosses(p, c.vision_config, n, o.distill) : null;
  const params = [...p.specs];
  const specs = new Map(params.map((s) => [s.name, s]));
  const trainable = params.filter(o.trainable ?? (() => true)).map((p) => p.name);
  const seeds: Seed[] = [];
  const direct: Record<string, string> = {}; // gradients written by hand, not by autodiff
  const parts: string[] = [];

  let sigLoss: string;
  if (o.lossChunk === undefined) {
    const full = sigmoidLoss(g, zimg, ztxt, scale, bias, n);
    sigLoss = full.loss;
    if (o.outputLogits) emitValue(g, full.logits, "logits", [n, n]);
    if (obj.sigmoid) seeds.push({ value: sigLoss });
  } else {
    const ch = chunkedSigmoidLoss(g, zimg, ztxt, scale, bias, n, o.lossChunk);
    sigLoss = ch.loss;
    if (obj.sigmoid) {
      seeds.push({ value: zimg, grad: ch.dZimg }, { value: ztxt, grad: ch.dZtxt });
      direct["logit_scale"] = ch.dLogitScale;
      direct["logit_bias"] = ch.dLogitBias;
    }
  }
  if (obj.sigmoid) parts.push(sigLoss);
  emitValue(g, sigLoss, "sigmoid_loss", []);

  if (decoder && lo) {
    const S = lo.sequences;
    const L = lo.length;
    const targets = g.input(LOCCA_INPUTS.targets, "int64", [S, L]);
    const weights = g.input(LOCCA_INPUTS.weights, "float32", [S, L]);
    const causal = g.input(LOCCA_INPUTS.causal, "int64", [S]);
    const image = g.input(LOCCA_INPUTS.image, "int64", [S]);
    let memoryPos: string | undefined;
    if (dc.memoryPosition !== "none" && o.patches === undefined) {
      const R = memoryGrid(c);
      memoryPos = g.init(g.fresh("memory_position"), memoryPositionCode(dc.memoryDim, R, R, R), [1, R * R, dc.memoryDim]); // (1, P, Dv), constant
    } else if (dc.memoryPosition !== "none") {
      // NaFlex: every image has its own grid, so its code is an input (zero rows on the padding)
      memoryPos = gatherPerSequence(g, g.input(LOCCA_INPUTS.memoryPosition, "float32", [n, o.patches!, dc.memoryDim]), image); // (S, P, Dv)
    }
    // NaFlex: the cross-attention sees each image's real patches only (the tower's key mask)
    const memoryMask = imageMask === undefined ? undefined : gatherPerSequence(g, imageMask, image); // (S, 1, 1, P)
    const hidden = decoder.hidden(gatherPerSequence(g, imageTokens, image), selfAttentionMask(g, causal, L), memoryMask, memoryPos); // (S, L, D)
    let loc: { loss: string; perSequence: string };
    if (lo.vocabChunk === undefined) {
      const logits = decoder.head(hidden); // (S, L, V)
      loc = loccaLoss(g, logits, targets, weights, { vocab: dc.vocab });
      if (lo.outputLogits) emitValue(g, logits, "decoder_logits", [S, L, dc.vocab]);
      seeds.push({ value: loc.loss });
    } else {
      // the lm_head tensors by key (InputParams hands back the inputs it already made)
      const head = p.at(DECODER_PREFIX).at("lm_head");
      const w = head.tensor("weight", [dc.vocab, dc.hidden], { decay: true });
      const b = head.tensor("bias", [dc.vocab]);
      const ch = chunkedLoccaLoss(g, hidden, w, b, targets, weights, { sequences: S, length: L, hidden: dc.hidden, vocab: dc.vocab }, lo.vocabChunk);
      loc = ch;
      seeds.push({ value: hidden, grad: ch.dHidden }, { value: w, grad: ch.dWeight }, { value: b, grad: ch.dBias });
    }
    parts.push(loc.loss);
    emitValue(g, loc.loss, "locca_loss", []);
    emitValue(g, loc.perSequence, "locca_per_sequence", [S]);
  }

  if (distill) {
    seeds.push({ value: distill.loss });
    parts.push(distill.loss);
    emitValue(g, distill.sd, "sd_loss", []);
    emitValue(g, distill.mp, "mp_loss", []);
  }

  const loss = parts.reduce((acc, v) => g.add(acc, v));
  const grads = backward(g, seeds, trainable.filter((name) => !(name in direct)));
  for (const [name, v] of Object.entries(direct)) if (trainable.includes(name)) grads[name] = v;
  emitValue(g, loss, "loss", []);
  for (const name of trainable) emitValue(g, grads[name]!, `grad.${name}`, specs.get(name)!.shape);
  return { graph: g, params, trainable };
}

/** Name a value as a float32 graph output. */
function emitValue(g: Graph, value: string, name: string, shape: number[]): void {
  g.node("Identity", [value], { outputs: [name] });
  g.output(name, "float32", shape);
}

/** Forward-only graph of one tower (any batch size): parameters as inputs → `embeds` (B, D), L2-normalised. */
export function buildEmbedGraph(c: SiglipConfig, tower: Tower): { graph: Graph; params: ParamSpec[] } {
  const g = new Graph(`siglip.${tower}.embed`);
  const p = InputParams.root(g);
  g.node("Identity", [l2normalize(g, pooled(p, c, tower, "batch"))], { outputs: ["embeds"] });
  const D = tower === "vision" ? c.vision_config.hidden_size : c.text_config.projection_size;
  g.output("embeds", "float32", ["batch", D]);
  return { graph: g, params: [...p.specs] };
}
