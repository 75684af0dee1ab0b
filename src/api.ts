/**
 * The library API: load a checkpoint once, then embed images and texts, score
 * image–text pairs and run zero-shot classification.
 *
 * ```ts
 * import { SigLIP2 } from "siglip2";
 * const model = await SigLIP2.load("google/siglip2-base-patch16-224"); // or a local directory
 * const [img] = await model.embedImages(["cat.jpg"]);
 * const [txt] = await model.embedTexts(["a photo of a cat"]);
 * const results = await model.classify(["cat.jpg"], ["cat", "dog"]);
 * ```
 *
 * Towers are built lazily: image-only use never reads the text weights, and
 * text-only use never builds the image tower.
 */
import { SiglipError, assertFinite } from "./errors.js";
import { checkMaxPatches, validateLoadOptions, validateModelOptions } from "./load-options.js";
import { resolveModel, type ResolveOptions } from "./hub/download.js";
import { FixresVisionTower, TextTower, type TowerOptions, type VisionResult } from "./models/siglip.js";
import { NaflexVisionTower, type NaflexTowerOptions } from "./models/siglip2.js";
import { checkNaflexFitsModel } from "./preprocess/config.js";
import {
  decodeImage, fitFixedConfigToModel, parseImageProcessorConfig, parseNaflexProcessorConfig, preprocessFixed, preprocessNaflex,
  type ImageProcessorConfig, type NaflexPatches, type NaflexProcessorConfig, type ResizeBackend, type RgbImage,
} from "./preprocess/index.js";
import { PreprocessPool } from "./preprocess/pool.js";
import { prepareImage, type PrepareTask, type Prepared } from "./preprocess/task.js";
import { logitsPerImage, l2normalize, rows, sigmoid, type LogitParams } from "./tasks/similarity.js";
import { GemmaTokenizer } from "./tokenizer/gemma.js";
import { Checkpoint } from "./weights/checkpoint.js";
import type { SiglipConfig } from "./weights/config.js";

/** An image: a file path, encoded bytes (JPEG, PNG, WebP, GIF, AVIF, TIFF) or decoded RGB pixels. */
export type ImageInput = string | Uint8Array | RgbImage;

/** Options for {@link SigLIP2.load}. */
export interface LoadOptions extends Omit<ResolveOptions, "parts"> {
  /** onnxruntime intra-op threads (default: all cores). */
  threads?: number;
  /** Resize arithmetic: "torch" (transformers 5.x default, torchvision backend) or "pil". Default "torch". */
  resampler?: ResizeBackend;
  /** Lowercase texts before tokenizing (default true: SigLIP 2 was trained on lowercased text). */
  lowercase?: boolean;
  /** Images per forward pass (default 8). */
  imageBatchSize?: number;
  /** Texts per forward pass (default 32). */
  textBatchSize?: number;
  /** Largest image accepted, in pixels (default 100 megapixels). */
  maxImagePixels?: number;
  /** NaFlex only: patch budget per image (default: the checkpoint's `max_num_patches`). */
  maxPatches?: number;
  /**
   * Weight precision: "fp32" (default, exact transformers parity) or "int8" (dynamic
   * quantisation of every linear layer: several times faster on CPUs with VNNI, about a
   * quarter of the memory, cosine to fp32 embeddings ≈ 0.99+).
   */
  dtype?: "fp32" | "int8";
  /**
   * Worker threads that decode and preprocess images while the model runs (default 0:
   * on the main thread, still overlapped with inference). The CLI uses 1.
   */
  workers?: number;
  /** NaFlex only: reproduce PyTorch-CPU's w = 1 position-resize quirk for exact transformers parity (default false). */
  torchCpuCompat?: boolean;
  /** Advanced: build options for the towers (hidden-state outputs, stage splitting). */
  tower?: Omit<TowerOptions, "threads">;
}

/** One image's outputs. */
export interface ImageFeatures {
  /** The image embedding (L2-normalised unless `normalize: false`). */
  embedding: Float32Array;
  /** Patch grid (rows, columns): the fixed grid, or the image's NaFlex grid. */
  gridH: number;
  gridW: number;
  /**
   * Patch features when requested: the last hidden state (after the final LayerNorm)
   * of every valid patch, (gridH·gridW, D) row-major; patch n is at row ⌊n / gridW⌋,
   * column n mod gridW.
   */
  patches?: Float32Array;
}

/** Options for embedding calls. */
export interface EmbedOptions {
  /** L2-normalise (default true). `false` returns the raw pooled output. */
  normalize?: boolean;
}

/** Options for image calls. */
export interface ImageOptions extends EmbedOptions {
  /** NaFlex only: patch budget for this call. */
  maxPatches?: number;
  /** Also return patch features (default false). */
  patches?: boolean;
}

/** How many batches of NaFlex images are sorted by length together (shape grouping). */
const GROUP_WINDOW_BATCHES = 4;

/** Options for text calls. */
export interface TextOptions extends EmbedOptions {
  /** Override the model-wide lowercase setting. */
  lowercase?: boolean;
}

/** One label's score for one image. */
export interface LabelScore {
  label: string;
  /** `cos · exp(logit_scale) + logit_bias`. */
  logit: number;
  /** `sigmoid(logit)`: independent per label (SigLIP uses no softmax). */
  probability: number;
}

/** Options for {@link SigLIP2.classify}. */
export interface ClassifyOptions {
  /** Prompt template; `{}` is replaced by the label. Default `This is a photo of {}.` */
  template?: string;
  lowercase?: boolean;
}

export const DEFAULT_TEMPLATE = "This is a photo of {}.";

/** A loaded SigLIP 2 checkpoint. */
export class SigLIP2 {
  private vision?: Promise<FixresVisionTower | NaflexVisionTower>;
  private text?: Promise<TextTower>;
  private tokenizerP?: Promise<GemmaTokenizer>;
  private imageCfg?: ImageProcessorConfig;
  private naflexCfg?: NaflexProcessorConfig;
  private pool?: PreprocessPool;
  private readonly labelCache = new Map<string, Float32Array[]>();

  private constructor(
    /** The checkpoint (directory, config, weights). */
    readonly checkpoint: Checkpoint,
    /** The name the model was loaded by (Hub id or directory). */
    readonly modelId: string,
    private readonly opts: LoadOptions,
  ) {}

  /**
   * Load a checkpoint from a local directory or a Hub id (`org/name`, downloaded
   * into the Hugging Face cache). Only config files are read here; weights are
   * read when a tower is first used.
   */
  static async load(model: string, options: LoadOptions = {}): Promise<SigLIP2> {
    validateLoadOptions(options); // bounds: src/load-options.ts
    const dir = await resolveModel(model, options);
    const checkpoint = new Checkpoint(dir);
    try {
      validateModelOptions(options, checkpoint.config);
    } catch (e) {
      checkpoint.close();
      throw e;
    }
    return new SigLIP2(checkpoint, model, options);
  }

  get config(): SiglipConfig {
    return this.checkpoint.config;
  }

  /** Embedding dimension (image side; the text head projects to the same size). */
  get dim(): number {
    return this.config.vision_config.hidden_size;
  }

  /** True for NaFlex checkpoints (model_type "siglip2"). */
  get isNaflex(): boolean {
    return this.config.model_type === "siglip2";
  }

  /** Fixed-resolution preprocessing settings from preprocessor_config.json (or the config's image_size). */
  get imageProcessorConfig(): ImageProcessorConfig {
    if (!this.imageCfg) {
      const source = `${this.checkpoint.dir}/preprocessor_config.json`;
      const R = this.config.vision_config.image_size;
      this.imageCfg = fitFixedConfigToModel(parseImageProcessorConfig(this.checkpoint.preprocessorConfig, R, source), R, source);
    }
    return this.imageCfg;
  }

  /** NaFlex preprocessing settings from preprocessor_config.json (patch size, default budget). */
  get naflexProcessorConfig(): NaflexProcessorConfig {
    if (!this.naflexCfg) {
      const source = `${this.checkpoint.dir}/preprocessor_config.json`;
      const cfg = parseNaflexProcessorConfig(this.checkpoint.preprocessorConfig, this.config.vision_config.patch_size, source);
      checkNaflexFitsModel(cfg, this.config.vision_config.patch_size, source);
      this.naflexCfg = cfg;
    }
    return this.naflexCfg;
  }

  private towerOptions(): NaflexTowerOptions {
    const o: NaflexTowerOptions = { ...(this.opts.tower ?? {}) };
    if (this.opts.threads !== undefined) o.threads = this.opts.threads;
    if (this.opts.torchCpuCompat !== undefined) o.torchCpuCompat = this.opts.torchCpuCompat;
    if (this.opts.dtype !== undefined) o.dtype = this.opts.dtype;
    return o;
  }

  /** The image tower (built on first use): fixed-resolution or NaFlex by model_type. */
  visionTower(): Promise<FixresVisionTower | NaflexVisionTower> {
    this.vision ??= (this.isNaflex
      ? NaflexVisionTower.load(this.checkpoint, this.towerOptions())
      : FixresVisionTower.load(this.checkpoint, this.towerOptions())
    ).catch((e: unknown) => {
      this.vision = undefined; // a failed build is not cached
      throw e;
    });
    return this.vision;
  }

  /** The text tower (built on first use). */
  textTower(): Promise<TextTower> {
    this.text ??= TextTower.load(this.checkpoint, this.towerOptions()).catch((e: unknown) => {
      this.text = undefined;
      throw e;
    });
    return this.text;
  }

  /** The checkpoint's tokenizer (loaded on first use). */
  tokenizer(): Promise<GemmaTokenizer> {
    this.tokenizerP ??= GemmaTokenizer.fromFile(this.checkpoint.tokenizerPath());
    return this.tokenizerP;
  }

  /** Decode an image input to RGB (paths and bytes via sharp, with EXIF orientation). */
  async decode(input: ImageInput, name?: string): Promise<RgbImage> {
    if (typeof input === "string" || input instanceof Uint8Array) {
      const o: { name?: string; maxPixels?: number } = {};
      if (name !== undefined) o.name = name;
      if (this.opts.maxImagePixels !== undefined) o.maxPixels = this.opts.maxImagePixels;
      return decodeImage(input, o);
    }
    return input;
  }

  /** Fixed resolution: preprocess one decoded image to pixel_values (3, R, R). */
  pixelValues(img: RgbImage): Float32Array {
    return preprocessFixed(img, this.imageProcessorConfig, this.opts.resampler ?? "torch");
  }

  /** NaFlex: resize within the patch budget, normalise and patchify (unpadded). */
  naflexPatches(img: RgbImage, maxPatches?: number): NaflexPatches {
    return preprocessNaflex(img, this.naflexProcessorConfig, this.patchBudget(maxPatches), this.opts.resampler ?? "torch");
  }

  /** The NaFlex patch budget: this call's, else the model-wide option, else the checkpoint's. */
  private patchBudget(maxPatches?: number): number {
    const budget = maxPatches ?? this.opts.maxPatches ?? this.naflexProcessorConfig.maxNumPatches;
    if (!Number.isInteger(budget) || budget < 1) throw new SiglipError("input", `max patches must be a positive integer, got ${budget}`);
    checkMaxPatches(this.config, budget, maxPatches ?? this.opts.maxPatches ? "maxPatches" : "the checkpoint's max_num_patches");
    return budget;
  }

  /** Embed images; one vector per input, in order. Throws a SiglipError naming the first bad image. */
  async embedImages(images: ImageInput[], options: ImageOptions = {}): Promise<Float32Array[]> {
    return (await this.imageFeatures(images, options)).map((f) => f.embedding);
  }

  /** Embeddings plus (with `patches: true`) patch features. Throws on the first bad image. */
  async imageFeatures(images: ImageInput[], options: ImageOptions = {}): Promise<ImageFeatures[]> {
    const settled = await this.imageFeaturesSettled(images, options);
    return settled.map((r) => {
      if (r instanceof Error) throw r;
      return r;
    });
  }

  /**
   * Embed images, reporting bad inputs instead of throwing: the result holds, per
   * input and in order, either its embedding or the SiglipError that explains why
   * it could not be read. `onBatch` is called as results become final with the
   * number of inputs done so far (for progress bars and streaming output).
   */
  async embedImagesSettled(
    images: ImageInput[],
    options: ImageOptions = {},
    onBatch?: (done: number, results: Array<Float32Array | SiglipError>) => void,
  ): Promise<Array<Float32Array | SiglipError>> {
    const view = (rs: Array<ImageFeatures | SiglipError>) => rs.map((r) => (r instanceof SiglipError ? r : r?.embedding));
    const rs = await this.imageFeaturesSettled(images, options, onBatch && ((done, r) => onBatch(done, view(r) as Array<Float32Array | SiglipError>)));
    return view(rs) as Array<Float32Array | SiglipError>;
  }

  /**
   * The image pipeline behind every image call. Inputs are decoded and preprocessed
   * one window at a time; NaFlex images in a window are sorted by sequence length
   * and batched with similar lengths, each batch padded only to its longest image.
   */
  async imageFeaturesSettled(
    images: ImageInput[],
    options: ImageOptions = {},
    onBatch?: (done: number, results: Array<ImageFeatures | SiglipError>) => void,
  ): Promise<Array<ImageFeatures | SiglipError>> {
    const tower = await this.visionTower();
    const naflex = tower instanceof NaflexVisionTower;
    // A preprocessor config that is broken or does not fit the tower is a problem of the
    // checkpoint, reported once here (not once per image).
    if (naflex) {
      void this.naflexProcessorConfig;
      this.patchBudget(options.maxPatches);
    } else {
      void this.imageProcessorConfig;
    }
    const bs = Math.max(1, this.opts.imageBatchSize ?? 8);
    const window = naflex ? bs * GROUP_WINDOW_BATCHES : bs;
    const results: Array<ImageFeatures | SiglipError> = new Array(images.length);
    const finish = (i: number, r: VisionResult): void => {
      // A non-finite output (weights that overflow float32 activations, a degenerate config)
      // is an error naming the input, never a result.
      const subject = imageName(images[i]!, i);
      try {
        assertFinite(r.pooled, subject, "image embedding");
        const f: ImageFeatures = { embedding: options.normalize === false ? r.pooled : l2normalize(r.pooled), gridH: r.gridH, gridW: r.gridW };
        assertFinite(f.embedding, subject, "normalised image embedding (a zero vector?)");
        if (options.patches) {
          assertFinite(r.patches, subject, "patch features");
          f.patches = r.patches;
        }
        results[i] = f;
      } catch (e) {
        if (!(e instanceof SiglipError)) throw e;
        results[i] = e;
      }
    };
    // Prepare window k+1 (in workers, or on the main thread while onnxruntime computes) during window k.
    const prepareWindow = async (start: number): Promise<Array<{ i: number; p: Prepared }>> => {
      const end = Math.min(start + window, images.length);
      const jobs: Array<Promise<{ i: number; p: Prepared } | null>> = [];
      for (let i = start; i < end; i++) {
        jobs.push(this.prepare(images[i]!, options.maxPatches).then(
          (p) => ({ i, p }),
          (e: unknown) => {
            if (!(e instanceof SiglipError)) throw e;
            results[i] = namedError(e, images[i]!);
            return null;
          },
        ));
        if (!this.pool) await jobs[jobs.length - 1]; // main thread: one at a time
      }
      return (await Promise.all(jobs)).filter((x): x is { i: number; p: Prepared } => x !== null);
    };
    let next: Promise<Array<{ i: number; p: Prepared }>> | null = prepareWindow(0);
    for (let s = 0; s < images.length; s += window) {
      const prepared = await next!;
      next = s + window < images.length ? prepareWindow(s + window) : null;
      if (naflex) {
        prepared.sort((a, b) => a.p.data.length - b.p.data.length || a.i - b.i);
        for (let k = 0; k < prepared.length; k += bs) {
          const group = prepared.slice(k, k + bs);
          const out = await tower.encode(group.map(({ p }) => ({ patches: p.data, gridH: p.gridH, gridW: p.gridW })));
          group.forEach((g, j) => finish(g.i, out[j]!));
        }
      } else if (prepared.length > 0) {
        const out = await tower.encode(prepared.map(({ p }) => p.data));
        prepared.forEach((g, j) => finish(g.i, out[j]!));
      }
      onBatch?.(Math.min(s + window, images.length), results);
    }
    return results;
  }

  /** Decode and preprocess one input for this checkpoint (in a worker when `workers` > 0). */
  private async prepare(input: ImageInput, maxPatches?: number): Promise<Prepared> {
    const task: PrepareTask = { input, kind: this.isNaflex ? "naflex" : "fixed", backend: this.opts.resampler ?? "torch" };
    if (this.opts.maxImagePixels !== undefined) task.maxPixels = this.opts.maxImagePixels;
    if (this.isNaflex) {
      task.naflex = this.naflexProcessorConfig;
      task.budget = this.patchBudget(maxPatches);
    } else {
      task.fixed = this.imageProcessorConfig;
    }
    const workers = this.opts.workers ?? 0;
    if (workers > 0 && typeof input === "string") {
      this.pool ??= new PreprocessPool(workers);
      return this.pool.prepare(task);
    }
    return prepareImage(task);
  }

  /** Token ids (64 per text: content, EOS, right padding with 0; no BOS). */
  async tokenize(texts: string[], options: { lowercase?: boolean } = {}): Promise<Int32Array[]> {
    const tok = await this.tokenizer();
    const length = this.config.text_config.max_position_embeddings;
    const lowercase = options.lowercase ?? this.opts.lowercase ?? true;
    return texts.map((t) => tok.encode(t, { lowercase, length }));
  }

  /**
   * {@link tokenize}, with what it did to each text: `contentTokens` ids kept before `<eos>`, and
   * whether the text had more (`truncated`).
   */
  async tokenizeDetailed(texts: string[], options: { lowercase?: boolean } = {}): Promise<Array<{ ids: Int32Array; contentTokens: number; truncated: boolean }>> {
    const tok = await this.tokenizer();
    const length = this.config.text_config.max_position_embeddings;
    const lowercase = options.lowercase ?? this.opts.lowercase ?? true;
    return texts.map((t) => tok.encodeDetailed(t, { lowercase, length }));
  }

  /**
   * Embed texts; one vector (projection_size) per input, in order. A text whose embedding
   * is not finite, or whose tokens fall outside the model's vocabulary, is an error naming it.
   */
  async embedTexts(texts: string[], options: TextOptions = {}): Promise<Float32Array[]> {
    await this.textTower(); // checkpoint problems first
    const ids = await this.tokenize(texts, options.lowercase !== undefined ? { lowercase: options.lowercase } : {});
    return this.embedTokenIds(ids, options, texts.map(textName));
  }

  /**
   * Embed texts given as the token ids {@link tokenize} returns (one row per text). `names`
   * name the rows in errors (default `token ids <i>`); with names, an id outside the
   * vocabulary means the tokenizer does not belong to the checkpoint.
   */
  async embedTokenIds(ids: Int32Array[], options: EmbedOptions = {}, names?: string[]): Promise<Float32Array[]> {
    const tower = await this.textTower();
    const T = tower.sequenceLength;
    const V = tower.config.vocab_size;
    const name = (i: number): string => names?.[i] ?? `token ids ${i}`;
    ids.forEach((row, i) => {
      if (row.length !== T) throw new SiglipError("input", `${name(i)}: ${row.length} ids, expected ${T}`, { subject: name(i) });
      const bad = row.find((id) => !(id >= 0 && id < V));
      if (bad === undefined) return;
      if (names) {
        throw new SiglipError("checkpoint", `${name(i)}: token id ${bad} is outside the model's vocabulary (text_config.vocab_size ${V}); tokenizer.json does not belong to this checkpoint`, { subject: name(i) });
      }
      throw new SiglipError("input", `${name(i)}: id ${bad} is outside the vocabulary (0 to ${V - 1})`, { subject: name(i) });
    });
    const bs = Math.max(1, this.opts.textBatchSize ?? 32);
    const out: Float32Array[] = [];
    for (let s = 0; s < ids.length; s += bs) {
      const chunk = ids.slice(s, s + bs);
      const flat = new Int32Array(chunk.length * T);
      chunk.forEach((c, i) => flat.set(c, i * T));
      const r = await tower.run(flat, chunk.length);
      out.push(...rows(r.pooled, tower.config.projection_size));
    }
    const result = options.normalize === false ? out : out.map(l2normalize);
    result.forEach((e, i) => {
      assertFinite(out[i]!, name(i), "text embedding");
      assertFinite(e, name(i), "normalised text embedding (a zero vector?)");
    });
    return result;
  }

  /**
   * `logit_scale` and `logit_bias` from the checkpoint (finite, as every weight read). A
   * `logit_scale` whose exponential overflows even float64 (above ≈ 709.78) is an error
   * naming it; any smaller one gives finite logits (computed in float64).
   */
  logitParams(): LogitParams {
    const w = this.checkpoint.weights;
    const p = { logitScale: w.float32("logit_scale", [1])[0]!, logitBias: w.float32("logit_bias", [1])[0]! };
    if (!Number.isFinite(Math.exp(p.logitScale))) {
      throw new SiglipError(
        "checkpoint",
        `${w.info("logit_scale").file}: logit_scale ${p.logitScale} is too large: exp(logit_scale) overflows (the largest usable value is about ${LOGIT_SCALE_MAX.toFixed(2)})`,
        { subject: "logit_scale" },
      );
    }
    return p;
  }

  /**
   * Logits and sigmoid probabilities for every (image, text) pair, from
   * L2-normalised embeddings. Arrays are indexed [image][text].
   */
  similarity(imageEmbeds: Float32Array[], textEmbeds: Float32Array[]): { logits: number[][]; probabilities: number[][] } {
    const logits = logitsPerImage(imageEmbeds, textEmbeds, this.logitParams());
    logits.forEach((row, i) => assertFinite(row, `image ${i}`, "logits"));
    return { logits, probabilities: logits.map((r) => r.map(sigmoid)) };
  }

  /** Normalised label embeddings for a label set, cached per (labels, template, lowercase). */
  async labelEmbeddings(labels: string[], options: ClassifyOptions = {}): Promise<Float32Array[]> {
    if (labels.length === 0) throw new SiglipError("input", "no labels given");
    const template = options.template ?? DEFAULT_TEMPLATE;
    const lowercase = options.lowercase ?? this.opts.lowercase ?? true;
    const key = JSON.stringify([template, lowercase, labels]);
    let e = this.labelCache.get(key);
    if (!e) {
      e = await this.embedTexts(labels.map((l) => applyTemplate(template, l)), { lowercase });
      this.labelCache.set(key, e);
    }
    return e;
  }

  /**
   * Zero-shot classification: per image, every label's logit and sigmoid
   * probability, sorted by probability (highest first).
   */
  async classify(images: ImageInput[], labels: string[], options: ClassifyOptions = {}): Promise<LabelScore[][]> {
    const labelEmb = await this.labelEmbeddings(labels, options);
    const imgEmb = await this.embedImages(images);
    return this.scoreLabels(imgEmb, labels, labelEmb);
  }

  /** Score normalised image embeddings against label embeddings (sorted per image). */
  scoreLabels(imageEmbeds: Float32Array[], labels: string[], labelEmbeds: Float32Array[]): LabelScore[][] {
    const { logits } = this.similarity(imageEmbeds, labelEmbeds);
    return logits.map((row) =>
      row.map((logit, j) => ({ label: labels[j]!, logit, probability: sigmoid(logit) })).sort((a, b) => b.probability - a.probability),
    );
  }

  /** Free the onnxruntime sessions and close the weight files. */
  async close(): Promise<void> {
    const pool = this.pool;
    const towers = [this.vision, this.text];
    this.pool = undefined;
    this.vision = undefined;
    this.text = undefined;
    await pool?.close();
    for (const t of towers) {
      const tower = await t?.catch(() => undefined);
      await tower?.release();
    }
    this.checkpoint.close();
  }
}

/** The largest `logit_scale` whose exponential is finite in float64 (ln of the largest double). */
const LOGIT_SCALE_MAX = Math.log(Number.MAX_VALUE);

/** How an image input is named in messages: its path, else its position. */
function imageName(input: ImageInput, i: number): string {
  return typeof input === "string" ? input : `image ${i}`;
}

/** How a text is named in messages: quoted, cut to 60 characters. */
function textName(text: string): string {
  const q = JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);
  return `text ${q}`;
}

/** A per-image error that names its file: messages from preprocessing that do not are prefixed with the path. */
function namedError(e: SiglipError, input: ImageInput): SiglipError {
  if (typeof input !== "string" || e.message.includes(input)) return e;
  return new SiglipError(e.code, `${input}: ${e.message}`, { subject: input, cause: e });
}

/** Fill a prompt template: every `{}` becomes the label. */
export function applyTemplate(template: string, label: string): string {
  if (!template.includes("{}")) throw new SiglipError("input", `template ${JSON.stringify(template)} has no {} placeholder for the label`);
  return template.split("{}").join(label);
}
