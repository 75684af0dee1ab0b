/**
 * Training graphs of a fixed-resolution SigLIP model (model_type "siglip"): both towers built
 * from standard ONNX ops with every parameter as a graph INPUT (named by its checkpoint key,
 * in the checkpoint layout), the sigmoid loss, and the backward pass from
 * src/graph/autodiff.ts, so one onnxruntime session returns the loss and every gradient.
 *
 * The architecture is the inference one (src/models/blocks.ts, siglip.ts; spec §1): pre-LN
 * encoder layers, tanh/erf GELU MLP, MAP-head image pooling, last-position text pooling with
 * a linear head. Differences that only concern training: the token table is gathered inside
 * the graph (so it gets a gradient), Linear weights are transposed in the graph (so gradients
 * come back as (out, in)), and the MAP head's packed in_proj is sliced in the graph.
 */
import { backward } from "../graph/autodiff.js";
import { Graph } from "../graph/graph.js";
import { attention, gelu, type LayerDims } from "../models/blocks.js";
import { fixresGrid, type SiglipConfig, type TextConfig, type VisionConfig } from "../weights/config.js";
import { chunkedSigmoidLoss, l2normalize, sigmoidLoss } from "./loss.js";

/** One trainable tensor: checkpoint key, shape, and whether weight decay applies (kernels only). */
export interface ParamSpec {
  name: string;
  shape: number[];
  /** big_vision's default decay mask (kernel regex): Dense and Conv kernels, not biases, LayerNorm, embeddings, probe, t, b. */
  decay: boolean;
}

export type Tower = "vision" | "text";

/** Which parameters a tower owns (by checkpoint key prefix). `logit_scale` / `logit_bias` belong to neither. */
export function towerOf(name: string): Tower | null {
  if (name.startsWith("vision_model.")) return "vision";
  if (name.startsWith("text_model.")) return "text";
  return null;
}

function layerParams(key: string, D: number, M: number): ParamSpec[] {
  const out: ParamSpec[] = [];
  for (const ln of ["layer_norm1", "layer_norm2"]) out.push({ name: `${key}.${ln}.weight`, shape: [D], decay: false }, { name: `${key}.${ln}.bias`, shape: [D], decay: false });
  for (const p of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
    out.push({ name: `${key}.self_attn.${p}.weight`, shape: [D, D], decay: true }, { name: `${key}.self_attn.${p}.bias`, shape: [D], decay: false });
  }
  out.push(
    { name: `${key}.mlp.fc1.weight`, shape: [M, D], decay: true }, { name: `${key}.mlp.fc1.bias`, shape: [M], decay: false },
    { name: `${key}.mlp.fc2.weight`, shape: [D, M], decay: true }, { name: `${key}.mlp.fc2.bias`, shape: [D], decay: false },
  );
  return out;
}

/** Every parameter of a FixRes SigLIP model, in a fixed order (vision, text, t', b). */
export function paramSpecs(c: SiglipConfig): ParamSpec[] {
  if (c.model_type !== "siglip") throw new Error("training supports fixed-resolution (model_type \"siglip\") checkpoints only");
  const v = c.vision_config;
  const t = c.text_config;
  const D = v.hidden_size;
  const P = v.patch_size;
  const N = fixresGrid(v) ** 2;
  const out: ParamSpec[] = [
    { name: "vision_model.embeddings.patch_embedding.weight", shape: [D, 3, P, P], decay: true },
    { name: "vision_model.embeddings.patch_embedding.bias", shape: [D], decay: false },
    { name: "vision_model.embeddings.position_embedding.weight", shape: [N, D], decay: false },
  ];
  for (let i = 0; i < v.num_hidden_layers; i++) out.push(...layerParams(`vision_model.encoder.layers.${i}`, D, v.intermediate_size));
  out.push({ name: "vision_model.post_layernorm.weight", shape: [D], decay: false }, { name: "vision_model.post_layernorm.bias", shape: [D], decay: false });
  const h = "vision_model.head";
  out.push(
    { name: `${h}.probe`, shape: [1, 1, D], decay: false },
    { name: `${h}.attention.in_proj_weight`, shape: [3 * D, D], decay: true },
    { name: `${h}.attention.in_proj_bias`, shape: [3 * D], decay: false },
    { name: `${h}.attention.out_proj.weight`, shape: [D, D], decay: true },
    { name: `${h}.attention.out_proj.bias`, shape: [D], decay: false },
    { name: `${h}.layernorm.weight`, shape: [D], decay: false },
    { name: `${h}.layernorm.bias`, shape: [D], decay: false },
    { name: `${h}.mlp.fc1.weight`, shape: [v.intermediate_size, D], decay: true },
    { name: `${h}.mlp.fc1.bias`, shape: [v.intermediate_size], decay: false },
    { name: `${h}.mlp.fc2.weight`, shape: [D, v.intermediate_size], decay: true },
    { name: `${h}.mlp.fc2.bias`, shape: [D], decay: false },
  );
  const Dt = t.hidden_size;
  out.push(
    { name: "text_model.embeddings.token_embedding.weight", shape: [t.vocab_size, Dt], decay: false },
    { name: "text_model.embeddings.position_embedding.weight", shape: [t.max_position_embeddings, Dt], decay: false },
  );
  for (let i = 0; i < t.num_hidden_layers; i++) out.push(...layerParams(`text_model.encoder.layers.${i}`, Dt, t.intermediate_size));
  out.push(
    { name: "text_model.final_layer_norm.weight", shape: [Dt], decay: false },
    { name: "text_model.final_layer_norm.bias", shape: [Dt], decay: false },
    { name: "text_model.head.weight", shape: [t.projection_size, Dt], decay: true },
    { name: "text_model.head.bias", shape: [t.projection_size], decay: false },
    { name: "logit_scale", shape: [1], decay: false },
    { name: "logit_bias", shape: [1], decay: false },
  );
  return out;
}

/** Builds tower graphs whose parameters are graph inputs. */
class ParamGraph {
  private readonly declared = new Set<string>();

  constructor(readonly g: Graph, private readonly specs: Map<string, ParamSpec>) {}

  /** The graph input of a parameter (declared on first use). */
  p(name: string): string {
    if (!this.declared.has(name)) {
      const s = this.specs.get(name);
      if (!s) throw new Error(`internal: unknown parameter ${name}`);
      this.g.input(name, "float32", s.shape);
      this.declared.add(name);
    }
    return name;
  }

  /** PyTorch Linear: x·Wᵀ + b with W (out, in) as stored. */
  linear(x: string, key: string): string {
    return this.g.add(this.g.matmul(x, this.g.transpose(this.p(`${key}.weight`), [1, 0])), this.p(`${key}.bias`));
  }

  layerNorm(x: string, key: string, eps: number): string {
    return this.g.layerNorm(x, this.p(`${key}.weight`), this.p(`${key}.bias`), eps);
  }

  mlp(x: string, key: string, d: LayerDims): string {
    return this.linear(gelu(this.g, this.linear(x, `${key}.fc1`), d.act), `${key}.fc2`);
  }

  encoderLayer(x: string, key: string, d: LayerDims): string {
    const g = this.g;
    const h = this.layerNorm(x, `${key}.layer_norm1`, d.eps);
    const q = this.linear(h, `${key}.self_attn.q_proj`);
    const k = this.linear(h, `${key}.self_attn.k_proj`);
    const v = this.linear(h, `${key}.self_attn.v_proj`);
    const x1 = g.add(x, this.linear(attention(g, q, k, v, d), `${key}.self_attn.out_proj`));
    return g.add(x1, this.mlp(this.layerNorm(x1, `${key}.layer_norm2`, d.eps), `${key}.mlp`, d));
  }

  /** MAP head: the probe attends over x (B, S, D); y = a + MLP(LN(a)); returns (B, D). */
  mapHead(x: string, key: string, d: LayerDims): string {
    const g = this.g;
    const D = d.hidden;
    const W = this.p(`${key}.attention.in_proj_weight`);
    const Bv = this.p(`${key}.attention.in_proj_bias`);
    const part = (src: string, i: number): string => {
      const w = g.op("Slice", [W, g.constI64([i * D]), g.constI64([(i + 1) * D]), g.constI64([0])]);
      const b = g.op("Slice", [Bv, g.constI64([i * D]), g.constI64([(i + 1) * D]), g.constI64([0])]);
      return g.add(g.matmul(src, g.transpose(w, [1, 0])), b);
    };
    const q = part(this.p(`${key}.probe`), 0); // (1, 1, D), broadcast over the batch
    const k = part(x, 1);
    const v = part(x, 2);
    const a = this.linear(attention(g, q, k, v, d), `${key}.attention.out_proj`); // (B, 1, D)
    const y = g.add(a, this.mlp(this.layerNorm(a, `${key}.layernorm`, d.eps), `${key}.mlp`, d));
    return g.reshape(y, [-1, D]);
  }
}

const layerDims = (c: VisionConfig | TextConfig): LayerDims => ({
  hidden: c.hidden_size, inter: c.intermediate_size, heads: c.num_attention_heads, eps: c.layer_norm_eps, act: c.hidden_act,
});

/** Image tower: pixel_values (B, 3, R, R) → pooled (B, D). */
function visionTower(pg: ParamGraph, v: VisionConfig, batch: number | string): string {
  const g = pg.g;
  const D = v.hidden_size;
  const R = v.image_size;
  const N = fixresGrid(v) ** 2;
  const px = g.input("pixel_values", "float32", [batch, 3, R, R]);
  const conv = g.op("Conv", [px, pg.p("vision_model.embeddings.patch_embedding.weight"), pg.p("vision_model.embeddings.patch_embedding.bias")], {
    kernel_shape: { ints: [v.patch_size, v.patch_size] }, strides: { ints: [v.patch_size, v.patch_size] },
  });
  let x = g.add(g.transpose(g.reshape(conv, [0, D, N]), [0, 2, 1]), pg.p("vision_model.embeddings.position_embedding.weight"));
  const d = layerDims(v);
  for (let i = 0; i < v.num_hidden_layers; i++) x = pg.encoderLayer(x, `vision_model.encoder.layers.${i}`, d);
  const last = pg.layerNorm(x, "vision_model.post_layernorm", v.layer_norm_eps);
  return pg.mapHead(last, "vision_model.head", d);
}

/** Text tower: input_ids (B, T) int64 → head output (B, projection_size). */
function textTower(pg: ParamGraph, t: TextConfig, batch: number | string): string {
  const g = pg.g;
  const T = t.max_position_embeddings;
  const ids = g.input("input_ids", "int64", [batch, T]);
  let x = g.add(g.gather(pg.p("text_model.embeddings.token_embedding.weight"), ids, 0), pg.p("text_model.embeddings.position_embedding.weight"));
  const d = layerDims(t);
  for (let i = 0; i < t.num_hidden_layers; i++) x = pg.encoderLayer(x, `text_model.encoder.layers.${i}`, d);
  const last = pg.layerNorm(x, "text_model.final_layer_norm", t.layer_norm_eps);
  const pooled = g.gather(last, g.init(g.fresh("last_position"), BigInt64Array.of(BigInt(T - 1)), []), 1);
  return pg.linear(pooled, "text_model.head");
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
  const params = paramSpecs(c);
  const specs = new Map(params.map((p) => [p.name, p]));
  const g = new Graph("siglip.train");
  const pg = new ParamGraph(g, specs);
  const n = o.batch;
  const zimg = l2normalize(g, visionTower(pg, c.vision_config, n));
  const ztxt = l2normalize(g, textTower(pg, c.text_config, n));
  const scale = pg.p("logit_scale");
  const bias = pg.p("logit_bias");
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
  const specs = new Map(paramSpecs(c).map((p) => [p.name, p]));
  const g = new Graph(`siglip.${tower}.embed`);
  const pg = new ParamGraph(g, specs);
  const pooled = tower === "vision" ? visionTower(pg, c.vision_config, "batch") : textTower(pg, c.text_config, "batch");
  g.node("Identity", [l2normalize(g, pooled)], { outputs: ["embeds"] });
  const D = tower === "vision" ? c.vision_config.hidden_size : c.text_config.projection_size;
  g.output("embeds", "float32", ["batch", D]);
  const used = new Set(g.view().inputs.map((i) => i.name));
  return { graph: g, params: [...specs.values()].filter((p) => used.has(p.name)) };
}
