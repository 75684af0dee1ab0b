/**
 * Parameter sources: where the blocks of src/models/blocks.ts get their weights from.
 *
 * The model is written once, against {@link ParamSource} (like candle's `VarBuilder`: a
 * graph plus a key prefix, `at("mlp")` descends one level). Each block first asks for its
 * parameters by checkpoint key (in checkpoint-list order), then applies them; what asking
 * means is the source's business:
 * - `WeightLoader` (./loader.ts, inference): checkpoint tensors become initializers,
 *   with the fp32 / int8 / fused-contrib-op choices.
 * - {@link InputParams} (here, training; also used to list the tensors a tower needs):
 *   every parameter is a graph INPUT named by its key, recorded as a {@link ParamSpec}
 *   in the order asked for — that list *is* the training parameter list. Linear weights
 *   stay (out, in) and are transposed in the graph (gradients come back in checkpoint
 *   layout), packed projections are sliced in the graph, and the token table is gathered
 *   in the graph (so it gets a gradient).
 *
 * Reference: candle-nn `VarBuilder` (prefixes), PyTorch `nn.Linear` / `nn.LayerNorm` layouts.
 */
import type { Dim, Graph } from "../graph/graph.js";

/** A layer with its parameters bound: graph value in, graph value out. */
export type Layer = (x: string) => string;

/** One trainable tensor: checkpoint key, shape, and whether weight decay applies (kernels only). */
export interface ParamSpec {
  name: string;
  shape: number[];
  /** big_vision's default decay mask (kernel regex): Dense and Conv kernels, not biases, LayerNorm, embeddings, probe, t, b. */
  decay: boolean;
}

/** Multi-head self-attention before out_proj: h (B, S, D) and an optional key mask → (B, S, D). */
export type AttentionLayer = (h: string, mask?: LayerMask) => string;

/** A key-padding mask in the two forms the attention paths use. */
export interface LayerMask {
  /** (B, S) int32, 1 = real key, 0 = padding (fused Attention op). */
  keep: string;
  /** (B, 1, 1, S) float32, 0 or a large negative (standard path, MAP head). */
  additive: string;
}

/** Where a block's parameters come from (see the module comment). Names are relative to the prefix. */
export interface ParamSource {
  readonly g: Graph;
  /** The same source one level down: keys become `prefix.name.…`. */
  at(name: string): ParamSource;
  /** A tensor used as-is (embeddings, probe, conv kernel: `decay` marks a kernel). */
  tensor(name: string, shape: number[], o?: { decay?: boolean }): string;
  /** PyTorch Linear `name` (weight (out, in), bias (out)): `x·Wᵀ + b`. */
  linear(name: string, inF: number, outF: number): Layer;
  /** LayerNorm `name` over the last axis (weight, bias (dim)). */
  layerNorm(name: string, dim: number, eps: number): Layer;
  /**
   * A Linear stored packed (weight (parts·outF, inF), bias (parts·outF)): one layer per
   * part, in row-block order. Parts named in `fp32` stay fp32 even in int8 mode.
   */
  packedLinear(weight: string, bias: string, parts: string[], inF: number, outF: number, o?: { fp32?: string[] }): Layer[];
  /**
   * Token embeddings (B, T, D) of table `name` (vocab, dim): how ids reach the graph is the
   * source's choice (graph input `o.ids`, default "input_ids", or embeddings `o.embeds`,
   * default "inputs_embeds"; the LocCa decoder names its own).
   */
  tokenEmbeddings(name: string, vocab: number, dim: number, batch: Dim, seq: Dim, o?: TokenInputs): string;
  /** fc1 + tanh-GELU as one fused op, or null where the source does not fuse (the block composes linear and gelu). */
  fusedLinearGelu?(name: string, inF: number, outF: number): Layer | null;
  /** q/k/v projections + attention as one fused op, or null where the source does not fuse. */
  fusedSelfAttention?(hidden: number, heads: number): AttentionLayer | null;
}

/** Graph input names of a token table's ids (training) or gathered rows (inference). */
export interface TokenInputs {
  ids?: string;
  embeds?: string;
}

const join = (prefix: string, name: string): string => (prefix ? `${prefix}.${name}` : name);

/** State shared by an {@link InputParams} and every source derived from it with `at`. */
interface Recorded {
  specs: ParamSpec[];
  byName: Map<string, ParamSpec>;
}

/**
 * Parameters as graph inputs named by checkpoint key, in checkpoint layout (training, and
 * listing the tensors a tower needs). {@link specs} holds every parameter asked for, in order.
 */
export class InputParams implements ParamSource {
  private constructor(readonly g: Graph, private readonly prefix: string, private readonly rec: Recorded) {}

  static root(g: Graph): InputParams {
    return new InputParams(g, "", { specs: [], byName: new Map() });
  }

  /** Every parameter asked for so far (through this source or any `at` of it), in order. */
  get specs(): readonly ParamSpec[] {
    return this.rec.specs;
  }

  at(name: string): InputParams {
    return new InputParams(this.g, join(this.prefix, name), this.rec);
  }

  tensor(name: string, shape: number[], o: { decay?: boolean } = {}): string {
    const key = join(this.prefix, name);
    const seen = this.rec.byName.get(key);
    if (seen) {
      if (seen.shape.join() !== shape.join()) throw new Error(`internal: parameter ${key} asked for as [${shape}] and [${seen.shape}]`);
      return key;
    }
    const spec: ParamSpec = { name: key, shape, decay: o.decay ?? false };
    this.rec.specs.push(spec);
    this.rec.byName.set(key, spec);
    return this.g.input(key, "float32", shape);
  }

  linear(name: string, inF: number, outF: number): Layer {
    const w = this.tensor(`${name}.weight`, [outF, inF], { decay: true }); // (out, in)
    const b = this.tensor(`${name}.bias`, [outF]);
    return (x) => this.g.add(this.g.matmul(x, this.g.transpose(w, [1, 0])), b);
  }

  layerNorm(name: string, dim: number, eps: number): Layer {
    const w = this.tensor(`${name}.weight`, [dim]);
    const b = this.tensor(`${name}.bias`, [dim]);
    return (x) => this.g.layerNorm(x, w, b, eps);
  }

  packedLinear(weight: string, bias: string, parts: string[], inF: number, outF: number): Layer[] {
    const W = this.tensor(weight, [parts.length * outF, inF], { decay: true }); // (parts·out, in)
    const B = this.tensor(bias, [parts.length * outF]);
    const g = this.g;
    return parts.map((_, i) => (x: string) => {
      const rows = (t: string): string => g.op("Slice", [t, g.constI64([i * outF]), g.constI64([(i + 1) * outF]), g.constI64([0])]);
      const w = rows(W); // (out, in)
      const b = rows(B); // (out)
      return g.add(g.matmul(x, g.transpose(w, [1, 0])), b);
    });
  }

  tokenEmbeddings(name: string, vocab: number, dim: number, batch: Dim, seq: Dim, o: TokenInputs = {}): string {
    const ids = this.g.input(o.ids ?? "input_ids", "int64", [batch, seq]); // (B, T)
    return this.g.gather(this.tensor(name, [vocab, dim]), ids, 0); // (B, T, D)
  }
}
