/**
 * The LocCa decoder for inference (`caption`, `locate`): {@link loccaDecoder} (./locca.ts, the
 * one definition that training differentiates) built on a {@link WeightLoader} over the
 * checkpoint's `decoder.safetensors`, returning next-token logits.
 *
 * Reference: tools/reference/locca_goldens.py `Decoder` (the oracle of the training graph) and
 * tools/reference/locca_decode_goldens.py (greedy and beam search on it); tests/locca-infer.test.ts.
 *
 * `decoder.safetensors` (written by `siglip2 train --objectives sigmoid,locca`, beside
 * model.safetensors so that transformers still loads the towers): tensors named `decoder.*`
 * exactly as ./locca.ts asks for them, `__metadata__`
 * `{"format":"siglip2-locca-decoder","version":"1","layers":"<n>","box_bins":"500"}`, and
 * `"box_format"` (src/tasks/boxes.ts `BoxFormat`, e.g. "padded") when the decoder was trained on
 * boxes in a format other than the default; absent = "canonical" (every older file).
 * {@link LoccaDecoderModel.boxFormat} is what `locate` parses the answer with.
 * `"memory_position"` (./locca.ts `MemoryPosition`, e.g. "sincos2d") when the decoder adds a
 * position code to the image tokens; absent = "none" (every older file).
 *
 * Graphs are built per length bucket ({@link LENGTH_BUCKETS}, capped at L =
 * `max_position_embeddings`, the position table), on first use: a call runs the smallest bucket
 * that holds its longest row, and shorter rows are right-padded, which the causal mask makes
 * invisible to the positions asked for. Each call re-runs the whole prefix (no key/value cache).
 *
 * Graph inputs: `decoder_inputs_embeds` (S, L, D) (token rows gathered here from the table on
 * disk, like the text tower), `memory` (N, P, Dv) the image tower's post-LN `last_hidden_state`
 * (before the MAP head), `memory_keep` (N, P) 1 = a real patch (NaFlex images padded to the
 * longest), `decoder_image` (S) int64 the image of each row, `decoder_positions` (S, K) int64,
 * and with a memory position code `memory_position` (N, P, Dv) (./locca.ts `memoryPositionCode`
 * of each image's grid, computed here).
 * Output: `logits` (S, K, V) at those positions.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { SiglipError } from "../errors.js";
import { Graph } from "../graph/graph.js";
import { Pipeline, ort, type CacheSpec } from "../graph/runtime.js";
import type { Checkpoint } from "../weights/checkpoint.js";
import { WeightStore } from "../weights/checkpoint.js";
import { contentIdentity } from "../weights/fingerprint.js";
import {
  decoderConfig, gatherPerSequence, isMemoryPosition, loccaDecoder, memoryGrid, memoryPositionCode, selfAttentionMask,
  DECODER_PREFIX, MEMORY_POSITIONS, type DecoderConfig, type MemoryPosition,
} from "./locca.js";
import { MASK_FILTER, WeightLoader } from "./loader.js";
import { InputParams } from "./params.js";
import { BOX_FORMATS, DEFAULT_BOX_FORMAT, isBoxFormat, type BoxFormat } from "./box-format.js";
import { buildMode, emit, runtimeOptions, type TowerOptions } from "./tower.js";

/** File name of the decoder weights in a checkpoint folder. */
export const DECODER_FILE = "decoder.safetensors";
/** `__metadata__.format` of {@link DECODER_FILE}. */
export const DECODER_FORMAT = "siglip2-locca-decoder";
export const DECODER_VERSION = "1";

/** `__metadata__` key of the decoder's box format (absent: {@link DEFAULT_BOX_FORMAT}). */
export const BOX_FORMAT_KEY = "box_format";

/** `__metadata__` key of the decoder's image-token position code (absent: "none"). */
export const MEMORY_POSITION_KEY = "memory_position";

/** The memory position code a decoder file's metadata records (absent: none); an unknown one is a one-line checkpoint error. */
export function decoderMemoryPosition(metadata: Record<string, string>, path: string): MemoryPosition {
  const v = metadata[MEMORY_POSITION_KEY];
  if (v === undefined) return "none";
  if (!isMemoryPosition(v)) throw new SiglipError("checkpoint", `${path}: unknown memory_position ${JSON.stringify(v.slice(0, 40))} (this build reads ${MEMORY_POSITIONS.join(" or ")})`, { subject: path });
  return v;
}

/** The box format a decoder file's metadata records (absent: canonical); an unknown one is a one-line checkpoint error. */
export function decoderBoxFormat(metadata: Record<string, string>, path: string): BoxFormat {
  const v = metadata[BOX_FORMAT_KEY];
  if (v === undefined) return DEFAULT_BOX_FORMAT;
  if (!isBoxFormat(v)) throw new SiglipError("checkpoint", `${path}: unknown box_format ${JSON.stringify(v.slice(0, 40))} (this build reads ${BOX_FORMATS.join(" or ")})`, { subject: path });
  return v;
}

/** The box format recorded in `dir`'s decoder.safetensors (canonical when it records none). */
export function decoderFileBoxFormat(dir: string): BoxFormat {
  return decoderFileMetadata(dir).boxFormat;
}

/** The box format and memory position code recorded in `dir`'s decoder file (one-line errors as above). */
export function decoderFileMetadata(dir: string): { boxFormat: BoxFormat; memoryPosition: MemoryPosition } {
  const path = join(dir, DECODER_FILE);
  const store = WeightStore.openFile(path);
  try {
    const m = store.metadata();
    return { boxFormat: decoderBoxFormat(m, path), memoryPosition: decoderMemoryPosition(m, path) };
  } finally {
    store.close();
  }
}

/** Row lengths the decoder graph is built for (then L itself). */
export const LENGTH_BUCKETS: readonly number[] = [16, 32];

/** Every tensor the decoder reads, in parameter order (from building it on {@link InputParams}). */
export function decoderShapes(c: DecoderConfig): Array<[string, number[]]> {
  const p = InputParams.root(new Graph("decoder.shapes"));
  loccaDecoder(p, c, 1, c.positions);
  return p.specs.map((s) => [s.name, s.shape]);
}

/** The inference graph (see the module comment). */
export function buildDecoderGraph(store: WeightStore, c: DecoderConfig, opts: TowerOptions = {}, length = c.positions): Graph {
  const g = new Graph(`locca-decoder.${length}`);
  const L = length;
  const dec = loccaDecoder(new WeightLoader(g, store, buildMode(opts)), c, "seqs", L);
  const memory = g.input("memory", "float32", ["images", "patches", c.memoryDim]); // (N, P, Dv)
  const keep = g.input("memory_keep", "float32", ["images", "patches"]); // (N, P)
  const image = g.input("decoder_image", "int64", ["seqs"]); // (S)
  const positions = g.input("decoder_positions", "int64", ["seqs", "k"]); // (S, K)
  const additive = g.reshape(g.mul(g.sub(g.constF(1), keep), g.constF(MASK_FILTER)), [0, 1, 1, -1]); // (N, 1, 1, P)
  const mem = gatherPerSequence(g, memory, image); // (S, P, Dv)
  const memMask = gatherPerSequence(g, additive, image); // (S, 1, 1, P)
  const selfMask = selfAttentionMask(g, g.constI64([1]), L); // (1, 1, L, L): every row causal
  const memPos = c.memoryPosition === "none" ? undefined : gatherPerSequence(g, g.input("memory_position", "float32", ["images", "patches", c.memoryDim]), image); // (S, P, Dv)
  const h = dec.hidden(mem, selfMask, memMask, memPos); // (S, L, D)
  const picked = g.op("GatherND", [h, g.reshape(positions, [0, 0, 1])], { batch_dims: { int: 1 } }); // (S, K, D)
  emit(g, dec.head(picked), "logits", ["seqs", "k", c.vocab]); // (S, K, V)
  return g;
}

/** One decoder row: token ids (BOS first, at most L) and the index of its image in the memory. */
export interface DecoderRow {
  ids: ArrayLike<number>;
  image: number;
}

/** Image tokens of one image: `patches` (gridH·gridW, Dv) row-major, on a gridH × gridW patch grid. */
export interface DecoderMemory {
  patches: Float32Array;
  gridH: number;
  gridW: number;
}

/** The LocCa decoder of a checkpoint, ready to run. */
export class LoccaDecoderModel {
  private readonly pipelines = new Map<number, Promise<Pipeline>>();

  private constructor(
    readonly config: DecoderConfig,
    readonly path: string,
    /** How this decoder writes boxes (its file's `box_format`, default canonical). */
    readonly boxFormat: BoxFormat,
    private readonly store: WeightStore,
    private readonly dir: string,
    private readonly opts: TowerOptions,
    /** Side of the tower's reference position grid (./locca.ts `memoryGrid`). */
    private readonly grid: number,
  ) {}

  /**
   * Open `decoder.safetensors` of `ckpt` and build the graph. A checkpoint without one, a file
   * that is not a LocCa decoder of this format (or whose `box_bins` is not `boxBins`), or tensors
   * of the wrong shape are one-line {@link SiglipError}s (code "checkpoint").
   */
  static async load(ckpt: Checkpoint, opts: TowerOptions = {}, boxBins?: number): Promise<LoccaDecoderModel> {
    const path = join(ckpt.dir, DECODER_FILE);
    if (!existsSync(path)) {
      throw new SiglipError("checkpoint", `${ckpt.dir} has no LocCa decoder (${DECODER_FILE}); train one with siglip2 train --objectives sigmoid,locca`, { subject: ckpt.dir });
    }
    const store = WeightStore.openFile(path);
    try {
      const meta = store.metadata();
      const c = decoderConfig(ckpt.config.text_config, ckpt.config.vision_config, decoderMemoryPosition(meta, path));
      checkDecoderFile(store, path, c, boxBins);
      const m = new LoccaDecoderModel(c, path, decoderBoxFormat(meta, path), store, ckpt.dir, opts, memoryGrid(ckpt.config));
      await m.pipeline(c.positions); // build problems surface at load
      return m;
    } catch (e) {
      store.close();
      throw e;
    }
  }

  /** The graph of rows up to `length` tokens (built, or found in the model cache, on first use). */
  private pipeline(length: number): Promise<Pipeline> {
    let p = this.pipelines.get(length);
    if (!p) {
      const { store, config: c, opts, path } = this;
      const spec: CacheSpec = {
        model: this.dir,
        tower: "locca-decoder",
        key: async (hashDir) => ({ tower: "locca-decoder", weights: await contentIdentity([path], hashDir), config: c, mode: buildMode(opts), length }),
      };
      p = Pipeline.cached(spec, () => [buildDecoderGraph(store, c, opts, length)], runtimeOptions(opts));
      p.catch(() => this.pipelines.delete(length));
      this.pipelines.set(length, p);
    }
    return p;
  }

  /** The memory position code of an h × w grid (unpadded), computed once per grid: decoding asks for it every token. */
  private positionCode(h: number, w: number): Float32Array {
    const key = `${h}x${w}`;
    let code = this.codes.get(key);
    if (!code) this.codes.set(key, (code = memoryPositionCode(this.config.memoryDim, h, w, this.grid)));
    return code;
  }

  private readonly codes = new Map<string, Float32Array>();

  /** Longest row (BOS included): the position table's rows. */
  get length(): number {
    return this.config.positions;
  }

  /** Token rows of the table for a flat id list, reading only the distinct rows from disk. */
  private embed(ids: ArrayLike<number>): Float32Array {
    return this.store.gatherRows(`${DECODER_PREFIX}.embed_tokens.weight`, ids, this.config.hidden);
  }

  /**
   * Logits (S, K, V) of `rows` at `positions[s]` (K per row, each < the row's length): the
   * distribution of the token after position k. `memory` holds the images the rows point to.
   */
  async logits(rows: readonly DecoderRow[], memory: readonly DecoderMemory[], positions: readonly (readonly number[])[]): Promise<Float32Array> {
    const c = this.config;
    const longest = Math.max(...rows.map((r) => r.ids.length));
    const L = [...LENGTH_BUCKETS.filter((b) => b < c.positions), c.positions].find((b) => b >= longest) ?? c.positions;
    const S = rows.length;
    const K = positions[0]?.length ?? 0;
    if (S === 0 || K === 0) throw new Error("internal: no decoder rows");
    const ids = new Array<number>(S * L).fill(0);
    const pos = new BigInt64Array(S * K);
    rows.forEach((r, s) => {
      if (r.ids.length < 1 || r.ids.length > L) throw new Error(`internal: decoder row of ${r.ids.length} tokens (1..${L})`);
      for (let k = 0; k < r.ids.length; k++) {
        const id = r.ids[k]!;
        if (!Number.isInteger(id) || id < 0 || id > c.vocab) throw new Error(`internal: decoder token id ${id}`);
        ids[s * L + k] = id;
      }
      const ps = positions[s]!;
      if (ps.length !== K) throw new Error("internal: ragged decoder positions");
      ps.forEach((p, k) => {
        if (!(p >= 0 && p < r.ids.length)) throw new Error(`internal: decoder position ${p} outside the row`);
        pos[s * K + k] = BigInt(p);
      });
    });
    const Dv = c.memoryDim;
    const P = Math.max(...memory.map((m) => m.patches.length / Dv));
    const mem = new Float32Array(memory.length * P * Dv);
    const keep = new Float32Array(memory.length * P);
    memory.forEach((m, i) => {
      if (m.patches.length !== m.gridH * m.gridW * Dv) throw new Error(`internal: decoder memory of ${m.patches.length} values on a ${m.gridH}×${m.gridW} grid`);
      mem.set(m.patches, i * P * Dv);
      keep.fill(1, i * P, i * P + m.patches.length / Dv);
    });
    const extra: Record<string, ort.Tensor> = {};
    if (c.memoryPosition !== "none") {
      const code = new Float32Array(memory.length * P * Dv);
      memory.forEach((m, i) => code.set(this.positionCode(m.gridH, m.gridW), i * P * Dv));
      extra["memory_position"] = new ort.Tensor("float32", code, [memory.length, P, Dv]);
    }
    const pipeline = await this.pipeline(L);
    const out = await pipeline.run({
      ...extra,
      decoder_inputs_embeds: new ort.Tensor("float32", this.embed(ids), [S, L, c.hidden]),
      memory: new ort.Tensor("float32", mem, [memory.length, P, Dv]),
      memory_keep: new ort.Tensor("float32", keep, [memory.length, P]),
      decoder_image: new ort.Tensor("int64", BigInt64Array.from(rows, (r) => BigInt(r.image)), [S]),
      decoder_positions: new ort.Tensor("int64", pos, [S, K]),
    });
    return out["logits"]!.data as Float32Array;
  }

  async release(): Promise<void> {
    const all = [...this.pipelines.values()];
    this.pipelines.clear();
    for (const p of all) await (await p.catch(() => null))?.release();
    this.store.close();
  }
}

/** The metadata and tensors of a decoder file must be the format above, for this checkpoint's config. */
function checkDecoderFile(store: WeightStore, path: string, c: DecoderConfig, boxBins?: number): void {
  const m = store.metadata();
  const bad = (what: string) => new SiglipError("checkpoint", `${path}: ${what}`, { subject: path });
  if (m["format"] !== DECODER_FORMAT) throw bad(`not a LocCa decoder (__metadata__.format is ${JSON.stringify(m["format"] ?? null)}, expected "${DECODER_FORMAT}")`);
  if (m["version"] !== DECODER_VERSION) throw bad(`decoder format version ${JSON.stringify(m["version"] ?? null)} is not supported (expected "${DECODER_VERSION}")`);
  if (boxBins !== undefined && m["box_bins"] !== undefined && m["box_bins"] !== String(boxBins)) {
    throw bad(`box_bins ${JSON.stringify(m["box_bins"])}: boxes are read in ${boxBins} bins`);
  }
  if (m["layers"] !== undefined && m["layers"] !== String(c.layers)) {
    throw bad(`holds ${m["layers"]} decoder layers but the config gives ${c.layers} (max(1, ⌊text_config.num_hidden_layers / 2⌋)); decoder and checkpoint do not match`);
  }
  const extra = store.names().find((n) => !n.startsWith(`${DECODER_PREFIX}.`));
  if (extra !== undefined) throw bad(`tensor ${JSON.stringify(extra.slice(0, 80))} is not a decoder.* tensor`);
  const expected = decoderShapes(c);
  const known = new Set(expected.map(([n]) => n));
  const unknown = store.names().find((n) => !known.has(n));
  if (unknown !== undefined) throw bad(`unexpected tensor ${JSON.stringify(unknown.slice(0, 80))} (the config gives ${c.layers} decoder layers)`);
  store.checkAll(expected);
}
