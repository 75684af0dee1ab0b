/**
 * Training graphs of a fixed-resolution SigLIP model (model_type "siglip"): both towers, the
 * sigmoid loss and the backward pass from src/graph/autodiff.ts in one graph, so one
 * onnxruntime session returns the loss and every gradient.
 *
 * The towers are the inference ones (src/models/siglip.ts `fixresVision`, `textModel`, built
 * by src/models/tower.ts `towerForward`; spec §1), built on the training parameter source
 * `InputParams` (src/models/params.ts): every parameter a graph INPUT named by its checkpoint
 * key, in checkpoint layout, recorded in the order the graph asks for it — that order is the
 * parameter list ({@link paramSpecs}) of checkpoints, initialisation and optimiser state.
 */
import { backward } from "../graph/autodiff.js";
import { Graph, type Dim } from "../graph/graph.js";
import { InputParams, type ParamSpec } from "../models/params.js";
import { fixresVision, textModel } from "../models/siglip.js";
import { towerForward } from "../models/tower.js";
import type { SiglipConfig } from "../weights/config.js";
import { chunkedSigmoidLoss, l2normalize, sigmoidLoss } from "./loss.js";


export type Tower = "vision" | "text";

/** Which parameters a tower owns (by checkpoint key prefix). `logit_scale` / `logit_bias` belong to neither. */
export function towerOf(name: string): Tower | null {
  if (name.startsWith("vision_model.")) return "vision";
  if (name.startsWith("text_model.")) return "text";
  return null;
}

function requireFixres(c: SiglipConfig): void {
  if (c.model_type !== "siglip") throw new Error("training supports fixed-resolution (model_type \"siglip\") checkpoints only");
}

/** Pooled output (B, D) of one tower, built on the training source. */
function pooled(p: InputParams, c: SiglipConfig, tower: Tower, batch: Dim): string {
  return towerForward(p, tower === "vision" ? fixresVision(c.vision_config) : textModel(c.text_config), batch).pooled;
}

/** The two towers' embeddings (n, D), L2-normalised, and the loss scalars t' and b: what a training graph asks for. */
function forward(p: InputParams, c: SiglipConfig, batch: Dim): { zimg: string; ztxt: string; scale: string; bias: string } {
  const zimg = l2normalize(p.g, pooled(p, c, "vision", batch));
  const ztxt = l2normalize(p.g, pooled(p, c, "text", batch));
  return { zimg, ztxt, scale: p.tensor("logit_scale", [1]), bias: p.tensor("logit_bias", [1]) };
}

/**
 * Every parameter of a FixRes SigLIP model, in a fixed order (vision, text, t', b): the
 * parameters the training graph asks for, in the order it asks (see src/models/params.ts).
 */
export function paramSpecs(c: SiglipConfig): ParamSpec[] {
  requireFixres(c);
  const p = InputParams.root(new Graph("siglip.params"));
  forward(p, c, 1);
  return [...p.specs];
}

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
}

/** A built training graph: inputs are the parameters, `pixel_values` and `input_ids`. */
export interface TrainGraph {
  graph: Graph;
  params: ParamSpec[];
  /** Names of the differentiated parameters; output `grad.NAME` for each. */
  trainable: string[];
}

/** Forward + sigmoid loss + backward in one graph. Outputs: `loss`, `grad.<param>` (and `logits`). */
export function buildTrainGraph(c: SiglipConfig, o: TrainGraphOptions): TrainGraph {
  requireFixres(c);
  const g = new Graph("siglip.train");
  const p = InputParams.root(g);
  const n = o.batch;
  const { zimg, ztxt, scale, bias } = forward(p, c, n);
  const params = [...p.specs];
  const specs = new Map(params.map((s) => [s.name, s]));
  const trainable = params.filter(o.trainable ?? (() => true)).map((p) => p.name);
  let loss: string;
  let grads: Record<string, string>;
  if (o.lossChunk === undefined) {
    const full = sigmoidLoss(g, zimg, ztxt, scale, bias, n);
    loss = full.loss;
    if (o.outputLogits) {
      g.node("Identity", [full.logits], { outputs: ["logits"] });
      g.output("logits", "float32", [n, n]);
    }
    grads = backward(g, [{ value: loss }], trainable);
  } else {
    const ch = chunkedSigmoidLoss(g, zimg, ztxt, scale, bias, n, o.lossChunk);
    loss = ch.loss;
    const towerParams = trainable.filter((p) => p !== "logit_scale" && p !== "logit_bias");
    grads = backward(g, [{ value: zimg, grad: ch.dZimg }, { value: ztxt, grad: ch.dZtxt }], towerParams);
    if (trainable.includes("logit_scale")) grads["logit_scale"] = ch.dLogitScale;
    if (trainable.includes("logit_bias")) grads["logit_bias"] = ch.dLogitBias;
  }
  g.node("Identity", [loss], { outputs: ["loss"] });
  g.output("loss", "float32", []);
  for (const name of trainable) {
    g.node("Identity", [grads[name]!], { outputs: [`grad.${name}`] });
    g.output(`grad.${name}`, "float32", specs.get(name)!.shape);
  }
  return { graph: g, params, trainable };
}

/** Forward-only graph of one tower (any batch size): parameters as inputs → `embeds` (B, D), L2-normalised. */
export function buildEmbedGraph(c: SiglipConfig, tower: Tower): { graph: Graph; params: ParamSpec[] } {
  requireFixres(c);
  const g = new Graph(`siglip.${tower}.embed`);
  const p = InputParams.root(g);
  g.node("Identity", [l2normalize(g, pooled(p, c, tower, "batch"))], { outputs: ["embeds"] });
  const D = tower === "vision" ? c.vision_config.hidden_size : c.text_config.projection_size;
  g.output("embeds", "float32", ["batch", D]);
  return { graph: g, params: [...p.specs] };
}
