/**
 * The LocCa decoder (SigLIP 2 §2.2; training-recipe §2): a pre-LN transformer decoder beside
 * the two towers that captions / refers / grounds from the image tower's un-pooled tokens.
 * Written once against a {@link ParamSource} (./params.ts), like the towers: the training graph
 * (src/train/model.ts) builds it on `InputParams`, inference (`caption` / `locate`) on a
 * `WeightLoader`.
 *
 * Architecture (the oracle is tools/reference/locca_goldens.py; names are its state-dict keys):
 * - sizes from the text config: width, MLP width, heads and activation of the text tower,
 *   `layers = max(1, ⌊text layers / 2⌋)`, a learned position table of
 *   `max_position_embeddings` rows, the text vocabulary V as output, and a token table of
 *   V + 1 rows whose last row is the mask token of parallel prediction;
 * - per layer: x += SelfAttn(LN1 x) (causal, or all keys for parallel rows: one additive mask
 *   per row, {@link selfAttentionMask}); x += CrossAttn(LN2 x, image tokens) (the vision
 *   tower's post-LN `last_hidden_state`, before the MAP head; k/v projections are (D, Dv));
 *   x += MLP(LN3 x); then a final LN and `lm_head` (V, D) + bias.
 * - `memoryPosition` "sincos2d" (a decoder option, recorded in decoder.safetensors): a fixed
 *   2-D sine–cosine code of each image token's place ({@link memoryPositionCode}) is added to
 *   the image tokens before every cross-attention's key and value projections (DETR-style; no
 *   parameters). Without it ("none", every older decoder) the decoder sees where a token is only
 *   through what the tower kept of its position embedding, which at small scale was too little
 *   to place boxes (README, "LocCa").
 *
 * Parameter order (= training order, appended after the towers' with the `decoder.` prefix):
 * embed_tokens, position_embedding, per layer layer_norm1, self_attn q/k/v/out, layer_norm2,
 * cross_attn q/k/v/out, layer_norm3, mlp fc1/fc2; final_layer_norm; lm_head. This is the
 * reference's `named_parameters()` order.
 */
import type { Dim, Graph } from "../graph/graph.js";
import type { SiglipConfig, TextConfig, VisionConfig } from "../weights/config.js";
import { dims, mlp, multiHeadAttention, sincosCode, type LayerDims } from "./blocks.js";
import { MASK_FILTER } from "./loader.js";
import type { Layer, ParamSource } from "./params.js";

/** Checkpoint key prefix of the decoder's parameters. */
export const DECODER_PREFIX = "decoder";

/** Graph input names of a decoder graph (training: ids; inference: gathered token rows). */
export const DECODER_IDS = "decoder_input_ids";
export const DECODER_EMBEDS = "decoder_inputs_embeds";

/** How the decoder's cross-attention is told where each image token is (see the module comment). */
export type MemoryPosition = "none" | "sincos2d";
export const MEMORY_POSITIONS: readonly MemoryPosition[] = ["none", "sincos2d"];
export function isMemoryPosition(v: unknown): v is MemoryPosition {
  return typeof v === "string" && (MEMORY_POSITIONS as readonly string[]).includes(v);
}

/** Hyper-parameters of the decoder. */
export interface DecoderConfig extends LayerDims {
  layers: number;
  /** Rows of the position table (text max_position_embeddings): the longest sequence. */
  positions: number;
  /** Output vocabulary V (text vocab_size); the token table has V + 1 rows. */
  vocab: number;
  /** Id of the mask token (= V, the token table's last row). */
  maskToken: number;
  /** Width Dv of the image tokens cross-attended to. */
  memoryDim: number;
  /** The position code added to the image tokens ("none": nothing). */
  memoryPosition: MemoryPosition;
}

/** The decoder's sizes, derived from the text and vision configs (see the module comment). */
export function decoderConfig(text: TextConfig, vision: VisionConfig, memoryPosition: MemoryPosition = "none"): DecoderConfig {
  return {
    ...dims(text),
    layers: Math.max(1, Math.floor(text.num_hidden_layers / 2)),
    positions: text.max_position_embeddings,
    vocab: text.vocab_size,
    maskToken: text.vocab_size,
    memoryDim: vision.hidden_size,
    memoryPosition,
  };
}

/**
 * Side R of the tower's reference position grid: the fixed grid (FixRes), or the √n × √n grid
 * of the learned NaFlex positions, which the tower resizes to each image's grid.
 */
export function memoryGrid(c: SiglipConfig): number {
  const v = c.vision_config;
  return c.model_type === "siglip2" ? Math.round(Math.sqrt(v.num_patches)) : Math.floor(v.image_size / v.patch_size);
}

/**
 * The code added to the image tokens of one image (`memoryPosition` "sincos2d"): (rows, Dv)
 * row-major, the tokens of an h × w patch grid first (row-major, as the tower orders them),
 * zero rows after (padding). The token at grid row y, column x sits at the fractional place
 * `(y + ½)·R/h − ½, (x + ½)·R/w − ½` of the R × R reference grid ({@link memoryGrid}): on the
 * fixed grid (h = w = R) that is the integer cell (y, x), and a NaFlex grid is stretched onto the
 * same range as the tower stretches its learned positions. Then {@link sincosCode} of width Dv.
 */
export function memoryPositionCode(width: number, h: number, w: number, grid: number, rows = h * w): Float32Array {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1 || rows < h * w) throw new Error(`internal: memory grid ${h}×${w} in ${rows} rows`);
  const ys = new Float64Array(h * w);
  const xs = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      ys[y * w + x] = ((y + 0.5) * grid) / h - 0.5;
      xs[y * w + x] = ((x + 0.5) * grid) / w - 0.5;
    }
  }
  const out = new Float32Array(rows * width);
  out.set(sincosCode(ys, xs, width));
  return out;
}

/** The decoder with its parameters bound. */
export interface LoccaDecoder {
  /**
   * Final-LN hidden states (S, L, D) of the S decoder sequences: `memory` (S, P, Dv) the
   * image tokens of each sequence's image ({@link gatherPerSequence}), `selfMask` the additive
   * (S, 1, L, L) mask of {@link selfAttentionMask}, `memoryMask` an optional additive
   * (S, 1, 1, P) key mask (NaFlex: valid patches only), `memoryPos` the position code
   * (S or 1, P, Dv) of {@link memoryPositionCode}, required when `memoryPosition` is not "none".
   */
  hidden(memory: string, selfMask: string, memoryMask?: string, memoryPos?: string): string;
  /** lm_head: (…, D) → logits (…, V). */
  head: Layer;
}

/** One decoder layer under `p`: x (S, L, D) → (S, L, D). */
function decoderLayer(p: ParamSource, c: DecoderConfig): (x: string, memory: string, selfMask: string, memoryMask?: string) => string {
  const g = p.g;
  const D = c.hidden;
  const ln1 = p.layerNorm("layer_norm1", D, c.eps);
  const selfAttn = multiHeadAttention(p.at("self_attn"), c);
  const selfOut = p.at("self_attn").linear("out_proj", D, D);
  const ln2 = p.layerNorm("layer_norm2", D, c.eps);
  const crossAttn = multiHeadAttention(p.at("cross_attn"), c, c.memoryDim);
  const crossOut = p.at("cross_attn").linear("out_proj", D, D);
  const ln3 = p.layerNorm("layer_norm3", D, c.eps);
  const ff = mlp(p.at("mlp"), c);
  return (x, memory, selfMask, memoryMask) => {
    const h = ln1(x);
    const x1 = g.add(x, selfOut(selfAttn(h, h, selfMask)));
    const x2 = g.add(x1, crossOut(crossAttn(ln2(x1), memory, memoryMask)));
    return g.add(x2, ff(ln3(x2)));
  };
}

/**
 * The decoder under `root.at("decoder")` for `batch` sequences of `length` tokens (≤ positions).
 * Asks for every parameter (in the order of the module comment) and declares the token input
 * (training: `decoder_input_ids` (S, L) int64; inference: `decoder_inputs_embeds` (S, L, D)).
 */
export function loccaDecoder(root: ParamSource, c: DecoderConfig, batch: Dim, length: number): LoccaDecoder {
  if (!Number.isInteger(length) || length < 1 || length > c.positions) {
    throw new Error(`internal: decoder length ${length} outside 1..${c.positions} (max_position_embeddings)`);
  }
  const p = root.at(DECODER_PREFIX);
  const g = p.g;
  const D = c.hidden;
  const tokens = p.tokenEmbeddings("embed_tokens.weight", c.vocab + 1, D, batch, length, { ids: DECODER_IDS, embeds: DECODER_EMBEDS }); // (S, L, D)
  const table = p.tensor("position_embedding.weight", [c.positions, D]);
  const layers = Array.from({ length: c.layers }, (_, i) => decoderLayer(p.at(`layers.${i}`), c));
  const norm = p.layerNorm("final_layer_norm", D, c.eps);
  const head = p.linear("lm_head", D, c.vocab);
  return {
    hidden: (memory, selfMask, memoryMask, memoryPos) => {
      if ((c.memoryPosition !== "none") !== (memoryPos !== undefined)) throw new Error(`internal: decoder memoryPosition ${c.memoryPosition} with${memoryPos === undefined ? "out" : ""} a position code`);
      if (memoryPos !== undefined) memory = g.add(memory, memoryPos); // (S, P, Dv): the place of every image token
      const pos = length === c.positions ? table : g.op("Slice", [table, g.constI64([0]), g.constI64([length]), g.constI64([0])]); // (L, D)
      let x = g.add(tokens, pos);
      for (const layer of layers) x = layer(x, memory, selfMask, memoryMask);
      return norm(x);
    },
    head,
  };
}

/**
 * Additive self-attention mask (S, 1, L, L) from per-sequence flags `causal` (S) int64:
 * a causal row (1) masks the keys after each query, a parallel row (0) sees every position.
 */
export function selfAttentionMask(g: Graph, causal: string, length: number): string {
  const upper = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) upper[i * length + j] = MASK_FILTER;
  const up = g.init(g.fresh("causal_upper"), upper, [1, 1, length, length]);
  const flag = g.reshape(g.op("Cast", [causal], { to: { int: 1 } }), [-1, 1, 1, 1]); // (S, 1, 1, 1) float32
  return g.mul(flag, up);
}

/** Rows of a per-image tensor (N, …) for each sequence: `image` (S) int64 → (S, …). */
export function gatherPerSequence(g: Graph, perImage: string, image: string): string {
  return g.gather(perImage, image, 0);
}
