/**
 * `siglip2/web`: the SigLIP2 API in browsers, on onnxruntime-web.
 *
 * ```ts
 * import { SigLIP2 } from "siglip2/web";
 * const model = await SigLIP2.load("google/siglip2-base-patch16-224", { onProgress: console.log });
 * const [img] = await model.embedImages([file]);              // Blob, File, ImageBitmap, ImageData, URL
 * const scores = await model.classify([file], ["cat", "dog"]);
 * ```
 *
 * Same model code as Node: the towers are src/models (built against a WeightStore over HTTP
 * range reads, src/web/checkpoint.ts), sessions are onnxruntime-web (src/web/runtime.ts stands in
 * for src/graph/runtime.ts in the bundle), preprocessing and the tokenizer are the same pure
 * TypeScript. Weights and built ONNX stages are kept in the Cache API.
 *
 * Reference: src/api.ts (the Node class; same semantics), onnxruntime-web `env.wasm`,
 * `navigator.gpu.requestAdapter()`.
 */
import { SiglipError } from "../errors.js";
import type { Int8Options } from "../models/loader.js";
import { FixresVisionTower, TextTower } from "../models/siglip.js";
import { NaflexVisionTower } from "../models/siglip2.js";
import { checkNaflexFitsModel, fitFixedConfigToModel, parseImageProcessorConfig } from "../preprocess/config.js";
import { parseNaflexProcessorConfig, preprocessNaflex, type NaflexPatches, type NaflexProcessorConfig } from "../preprocess/naflex.js";
import { preprocessFixed } from "../preprocess/index.js";
import type { ImageProcessorConfig } from "../preprocess/config.js";
import type { RgbImage } from "../preprocess/decode.js";
import type { ResizeBackend } from "../preprocess/resize.js";
import type { Prepared } from "../preprocess/task.js";
import { runImagePipeline, type ImageFeatures, type ImageInput, type ImageOptions, type ImageResult } from "../tasks/image-pipeline.js";
import { embedTokenRows, type TextEmbedLoop } from "../tasks/text-embed.js";
import { applyTemplate, labelScores, readLogitParams, similarityTable, textName, type LabelScoreRow } from "../tasks/scoring.js";
import type { LogitParams } from "../tasks/similarity.js";
import { GemmaTokenizer } from "../tokenizer/gemma.js";
import type { Checkpoint } from "../weights/checkpoint.js";
import type { SiglipConfig } from "../weights/config.js";
import { WebCheckpoint, checkpointBaseUrl, fetchJson } from "./checkpoint.js";
import type { FetchProgress, HttpOptions } from "./http-source.js";
import { toRgbImage, webImageName, WEB_MAX_PIXELS, type WebImageInput } from "./image.js";
import { chooseOrt } from "./ort.js";
import { webRuntime } from "./runtime.js";

export type { FetchProgress } from "./http-source.js";
export type { WebImageInput } from "./image.js";
export type { ImageFeatures, ImageOptions, ImageResult } from "../tasks/image-pipeline.js";
export type { LabelScoreRow as LabelScore } from "../tasks/scoring.js";
export { SiglipError } from "../errors.js";
export { toRgbImage } from "./image.js";
export { checkpointBaseUrl } from "./checkpoint.js";
export { SigLIP2Worker } from "./worker-client.js";

/** Where sessions run. */
export type WebBackend = "webgpu" | "wasm";

export interface WebLoadOptions {
  /** Weight and config download progress (per request; `cached` when served by the Cache API). */
  onProgress?: (p: FetchProgress) => void;
  /** "auto" (default): WebGPU when `navigator.gpu.requestAdapter()` gives an adapter, else WASM. */
  backend?: "auto" | WebBackend;
  /** Hub revision when `model` is a Hub id (default "main"). */
  revision?: string;
  /** Base URL where onnxruntime-web's .wasm files are served (default: next to this bundle): `ort-wasm-simd-threaded.jsep.wasm` for WebGPU, `ort-wasm-simd-threaded.wasm` for WASM (src/web/ort.ts). */
  wasmPaths?: string;
  /** WASM threads (only when the page is crossOriginIsolated; default: navigator.hardwareConcurrency). */
  threads?: number;
  /** Largest range request when a tower's tensors are fetched (default 64 MiB). */
  maxRequestBytes?: number;
  /** Cache API: false turns off caching of weights and built ONNX. Default true. */
  cache?: boolean;
  /** Resampler arithmetic: "torch" (default, as transformers' fast processor) or "pil". */
  resampler?: ResizeBackend;
  lowercase?: boolean;
  imageBatchSize?: number;
  textBatchSize?: number;
  maxImagePixels?: number;
  maxPatches?: number;
  dtype?: "fp32" | "int8";
  /** int8 graph variants (benchmarks, ablations; src/models/loader.ts `Int8Options`). */
  int8?: Int8Options;
  /** Use onnxruntime's fused contrib ops (default true). */
  fused?: boolean;
}

export interface ClassifyOptions {
  template?: string;
  lowercase?: boolean;
}

export const DEFAULT_TEMPLATE = "This is a photo of {}.";

/** WebGPU when the browser gives an adapter (asked once). */
async function webgpuAdapter(): Promise<boolean> {
  const gpu = (globalThis.navigator as { gpu?: { requestAdapter(): Promise<unknown> } } | undefined)?.gpu;
  if (!gpu) return false;
  try {
    return (await gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
}

/** The tensors each tower reads (by key prefix), fetched before it is built. */
const TOWER_PREFIXES: Record<string, string[]> = {
  "vision-fixres": ["vision_model."],
  "vision-naflex": ["vision_model."],
  text: ["text_model."],
};
const TOKEN_TABLE = "text_model.embeddings.token_embedding.weight";
const NAFLEX_POSITIONS = "vision_model.embeddings.position_embedding.weight";

let loadChain: Promise<unknown> = Promise.resolve();

/** A SigLIP / SigLIP 2 checkpoint loaded in the browser. */
export class SigLIP2 {
  private vision?: Promise<FixresVisionTower | NaflexVisionTower>;
  private text?: Promise<TextTower>;
  private tokenizerP?: Promise<GemmaTokenizer>;
  private imageCfg?: ImageProcessorConfig;
  private naflexCfg?: NaflexProcessorConfig;
  private readonly labelCache = new Map<string, Float32Array[]>();
  /** Towers built in this session (false) or taken from the Cache API (true). */
  readonly towerFromCache: Record<string, boolean> = {};

  private constructor(
    readonly checkpoint: WebCheckpoint,
    /** The base URL the checkpoint is read from. */
    readonly baseUrl: string,
    /** Where sessions run: "webgpu" (an adapter was given) or "wasm". */
    readonly backend: WebBackend,
    /** WASM threads in use (1 unless the page is crossOriginIsolated). */
    readonly threads: number,
    /** True when an adapter was offered by navigator.gpu (whether or not used). */
    readonly webgpuOffered: boolean,
    private readonly opts: WebLoadOptions,
  ) {}

  /**
   * Load a checkpoint from a Hub id (`org/name`) or a base URL serving a checkpoint folder.
   * Reads config.json, preprocessor_config.json and the safetensors headers; weights are
   * fetched when a tower is first used (the token table by rows, per batch of texts).
   */
  static async load(model: string, options: WebLoadOptions = {}): Promise<SigLIP2> {
    const base = checkpointBaseUrl(model, options.revision);
    const http: HttpOptions = { cacheName: options.cache === false ? null : "siglip2-weights" };
    if (options.maxRequestBytes !== undefined) http.maxRequestBytes = options.maxRequestBytes;
    if (options.onProgress) http.onProgress = options.onProgress;
    const checkpoint = await WebCheckpoint.open(base, http);
    const offered = await webgpuAdapter();
    const backend: WebBackend = options.backend === "wasm" ? "wasm" : options.backend === "webgpu" || offered ? "webgpu" : "wasm";
    if (options.backend === "webgpu" && !offered) throw new SiglipError("runtime", "backend \"webgpu\" asked for, but navigator.gpu gave no adapter");
    // WebGPU runs on onnxruntime-web's default (JSEP) build; WASM alone on its CPU-only build, which
    // is faster there (src/web/ort.ts), loaded from next to this bundle.
    const ort = await chooseOrt(backend, new URL("./", options.wasmPaths ?? new URL("./", import.meta.url).href).href);
    const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
    const threads = isolated ? Math.max(1, options.threads ?? globalThis.navigator?.hardwareConcurrency ?? 1) : 1;
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.simd = true;
    return new SigLIP2(checkpoint, base, backend, threads, offered, options);
  }

  get config(): SiglipConfig {
    return this.checkpoint.config;
  }

  get dim(): number {
    return this.config.vision_config.hidden_size;
  }

  get isNaflex(): boolean {
    return this.config.model_type === "siglip2";
  }

  /** As src/models expects a Checkpoint: the fields it reads (dir, config, weights) are the same. */
  private get asCheckpoint(): Checkpoint {
    return this.checkpoint as unknown as Checkpoint;
  }

  get imageProcessorConfig(): ImageProcessorConfig {
    if (!this.imageCfg) {
      const source = `${this.baseUrl}preprocessor_config.json`;
      const R = this.config.vision_config.image_size;
      this.imageCfg = fitFixedConfigToModel(parseImageProcessorConfig(this.checkpoint.preprocessorConfig, R, source), R, source);
    }
    return this.imageCfg;
  }

  get naflexProcessorConfig(): NaflexProcessorConfig {
    if (!this.naflexCfg) {
      const source = `${this.baseUrl}preprocessor_config.json`;
      const cfg = parseNaflexProcessorConfig(this.checkpoint.preprocessorConfig, this.config.vision_config.patch_size, source);
      checkNaflexFitsModel(cfg, this.config.vision_config.patch_size, source);
      this.naflexCfg = cfg;
    }
    return this.naflexCfg;
  }

  private towerOptions(): { dtype?: "fp32" | "int8"; fused?: boolean; int8?: Int8Options } {
    const o: { dtype?: "fp32" | "int8"; fused?: boolean; int8?: Int8Options } = {};
    if (this.opts.dtype !== undefined) o.dtype = this.opts.dtype;
    if (this.opts.int8 !== undefined) o.int8 = this.opts.int8;
    if (this.opts.fused !== undefined) o.fused = this.opts.fused;
    return o;
  }

  /** Point the web runtime at this model (its backend, its tensors) while one of its towers loads. */
  private async withRuntime<T>(load: () => Promise<T>): Promise<T> {
    webRuntime.executionProviders = this.backend === "webgpu" ? ["webgpu", "wasm"] : ["wasm"];
    webRuntime.cacheName = this.opts.cache === false ? null : "siglip2-onnx";
    webRuntime.beforeBuild = (spec) => this.checkpoint.fetchTensors(TOWER_PREFIXES[spec.tower] ?? [], spec.tower, [TOKEN_TABLE]);
    webRuntime.afterBuild = (spec) => this.checkpoint.dropTensors(spec.tower);
    webRuntime.onCache = (tower, hit) => {
      this.towerFromCache[tower] = hit;
    };
    return load();
  }

  visionTower(): Promise<FixresVisionTower | NaflexVisionTower> {
    this.vision ??= this.loadQueue(async () => {
      if (this.isNaflex) {
        await this.checkpoint.fetchTensors([NAFLEX_POSITIONS], "naflex-positions"); // read by the tower after its build
        return this.withRuntime(() => NaflexVisionTower.load(this.asCheckpoint, this.towerOptions()));
      }
      return this.withRuntime(() => FixresVisionTower.load(this.asCheckpoint, this.towerOptions()));
    }).catch((e: unknown) => {
      this.vision = undefined;
      throw e;
    });
    return this.vision;
  }

  textTower(): Promise<TextTower> {
    this.text ??= this.loadQueue(() => this.withRuntime(() => TextTower.load(this.asCheckpoint, this.towerOptions()))).catch((e: unknown) => {
      this.text = undefined;
      throw e;
    });
    return this.text;
  }

  /** Tower loads run one at a time, across models (they share the runtime settings and hooks). */
  private loadQueue<T>(f: () => Promise<T>): Promise<T> {
    const next = loadChain.then(f, f);
    loadChain = next.catch(() => undefined);
    return next;
  }

  tokenizer(): Promise<GemmaTokenizer> {
    this.tokenizerP ??= fetchJson(`${this.baseUrl}tokenizer.json`).then((j) => GemmaTokenizer.fromJSON(j, `${this.baseUrl}tokenizer.json`));
    return this.tokenizerP;
  }

  /** Decode a browser image input to RGB (the browser decodes; nothing is resized). */
  decode(input: WebImageInput, name = "image"): Promise<RgbImage> {
    return toRgbImage(input, name, this.opts.maxImagePixels ?? WEB_MAX_PIXELS);
  }

  /** Fixed resolution: pixel_values (3, R, R) of decoded pixels, with our resampler. */
  pixelValues(img: RgbImage): Float32Array {
    return preprocessFixed(img, this.imageProcessorConfig, this.opts.resampler ?? "torch");
  }

  /** NaFlex: resize within the patch budget, normalise and patchify (unpadded), as on Node. */
  naflexPatches(img: RgbImage, maxPatches?: number): NaflexPatches {
    return preprocessNaflex(img, this.naflexProcessorConfig, this.patchBudget(maxPatches), this.opts.resampler ?? "torch");
  }

  private patchBudget(maxPatches?: number): number {
    const budget = maxPatches ?? this.opts.maxPatches ?? this.naflexProcessorConfig.maxNumPatches;
    if (!Number.isInteger(budget) || budget < 1) throw new SiglipError("input", `max patches must be a positive integer, got ${budget}`);
    return budget;
  }

  private async prepare(input: WebImageInput, i: number, maxPatches?: number): Promise<Prepared> {
    const img = await this.decode(input, webImageName(input, i));
    const backend = this.opts.resampler ?? "torch";
    if (this.isNaflex) {
      const p = preprocessNaflex(img, this.naflexProcessorConfig, this.patchBudget(maxPatches), backend);
      return { data: p.patches, gridH: p.gridH, gridW: p.gridW };
    }
    return { data: preprocessFixed(img, this.imageProcessorConfig, backend), gridH: 0, gridW: 0 };
  }

  async embedImages(images: WebImageInput[], options: ImageOptions = {}): Promise<Float32Array[]> {
    return (await this.imageFeatures(images, options)).map((f) => f.embedding);
  }

  async imageFeatures(images: WebImageInput[], options: ImageOptions = {}): Promise<ImageFeatures[]> {
    return (await this.imageFeaturesSettled(images, options)).map((r) => {
      if (r instanceof Error) throw r;
      return r;
    });
  }

  /** Per input, its features or the SiglipError saying why it could not be read (src/tasks/image-pipeline.ts). */
  async imageFeaturesSettled(images: WebImageInput[], options: ImageOptions = {}): Promise<ImageResult[]> {
    const tower = await this.visionTower();
    if (this.isNaflex) this.patchBudget(options.maxPatches);
    else void this.imageProcessorConfig;
    // The pipeline names inputs by their string form; browser inputs are named here (webImageName).
    const named = images.map((im, i) => (typeof im === "string" ? im : { width: 0, height: 0, data: new Uint8Array(0), i }));
    return runImagePipeline(
      {
        tower,
        batchSize: this.opts.imageBatchSize ?? 8,
        prepare: (x: ImageInput) => {
          const i = typeof x === "string" ? named.indexOf(x) : (x as unknown as { i: number }).i;
          return this.prepare(images[i]!, i, options.maxPatches);
        },
        parallel: () => false,
      },
      named as ImageInput[],
      options,
    );
  }

  async tokenize(texts: string[], options: { lowercase?: boolean } = {}): Promise<Int32Array[]> {
    const tok = await this.tokenizer();
    const length = this.config.text_config.max_position_embeddings;
    const lowercase = options.lowercase ?? this.opts.lowercase ?? true;
    return texts.map((t) => tok.encode(t, { lowercase, length }));
  }

  async embedTexts(texts: string[], options: { lowercase?: boolean; normalize?: boolean } = {}): Promise<Float32Array[]> {
    await this.textTower();
    const ids = await this.tokenize(texts, options.lowercase !== undefined ? { lowercase: options.lowercase } : {});
    return this.embedTokenIds(ids, options, texts.map(textName));
  }

  /** Texts as token ids (one row per text); only the token-table rows they use are fetched. */
  async embedTokenIds(ids: Int32Array[], options: { normalize?: boolean } = {}, names?: string[]): Promise<Float32Array[]> {
    const loop: TextEmbedLoop = {
      batchSize: this.opts.textBatchSize ?? 32,
      beforeBatch: (flat) => this.checkpoint.fetchRows(TOKEN_TABLE, flat),
    };
    if (options.normalize !== undefined) loop.normalize = options.normalize;
    if (names !== undefined) loop.names = names;
    return embedTokenRows(await this.textTower(), ids, loop);
  }

  private logitP?: Promise<LogitParams>;
  /** `logit_scale` and `logit_bias` (fetched once). */
  logitParams(): Promise<LogitParams> {
    this.logitP ??= this.checkpoint.fetchTensors(["logit_scale", "logit_bias"], "logits").then(() => readLogitParams(this.checkpoint.weights));
    return this.logitP;
  }

  /** Logits and sigmoid probabilities, [image][text], from normalised embeddings. */
  async similarity(imageEmbeds: Float32Array[], textEmbeds: Float32Array[]): Promise<{ logits: number[][]; probabilities: number[][] }> {
    return similarityTable(imageEmbeds, textEmbeds, await this.logitParams());
  }

  async labelEmbeddings(labels: string[], options: ClassifyOptions = {}): Promise<Float32Array[]> {
    if (labels.length === 0) throw new SiglipError("input", "no labels given");
    const template = options.template ?? DEFAULT_TEMPLATE;
    const lowercase = options.lowercase ?? this.opts.lowercase ?? true;
    const key = JSON.stringify([template, lowercase, labels]);
    let e = this.labelCache.get(key);
    if (!e) {
      e = await this.embedTexts(labels.map((l) => applyTemplate(template, l)), { lowercase });
      if (this.labelCache.size >= 256) this.labelCache.delete(this.labelCache.keys().next().value!);
      this.labelCache.set(key, e);
    }
    return e;
  }

  /** Zero-shot classification: per image, every label's logit and probability, highest first. */
  async classify(images: WebImageInput[], labels: string[], options: ClassifyOptions = {}): Promise<LabelScoreRow[][]> {
    const labelEmb = await this.labelEmbeddings(labels, options);
    const imgEmb = await this.embedImages(images);
    return labelScores((await this.similarity(imgEmb, labelEmb)).logits, labels);
  }

  async close(): Promise<void> {
    const towers = [this.vision, this.text];
    this.vision = undefined;
    this.text = undefined;
    for (const t of towers) await (await t?.catch(() => undefined))?.release();
    this.checkpoint.close();
  }
}
