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
 * Images go through one pipeline, {@link SigLIP2.imageFeaturesSettled} (scheduling in
 * src/tasks/image-pipeline.ts); `imageFeatures` and `embedImages` are its throwing
 * conveniences. Option and result types: src/api-types.ts.
 *
 * Towers are built lazily: image-only use never reads the text weights, and
 * text-only use never builds the image tower.
 */
import { SiglipError, assertFinite } from "./errors.js";
import { checkMaxPatches, validateLoadOptions, validateModelOptions } from "./load-options.js";
import { resolveModel } from "./hub/download.js";
import { LoccaDecoderModel, type DecoderMemory } from "./models/locca-infer.js";
import { FixresVisionTower, TextTower } from "./models/siglip.js";
import { NaflexVisionTower, type NaflexTowerOptions } from "./models/siglip2.js";
import { checkNaflexFitsModel } from "./preprocess/config.js";
import {
  decodeImage, fitFixedConfigToModel, parseImageProcessorConfig, parseNaflexProcessorConfig, preprocessFixed, preprocessNaflex,
  type ImageProcessorConfig, type NaflexPatches, type NaflexProcessorConfig, type RgbImage,
} from "./preprocess/index.js";
import { PreprocessPool, workerStartTimeoutMs } from "./preprocess/pool.js";
import { prepareImage, type PrepareTask, type Prepared } from "./preprocess/task.js";
import { runImagePipeline, type ImageFeatures, type ImageInput, type ImageOptions, type ImageProgress, type ImageResult } from "./tasks/image-pipeline.js";
import { BINS, boxTokenConstraint, dequantizeBox, parseArefOutput } from "./tasks/boxes.js";
import { CAPTION_PROMPT, checkCaptionOptions, decode, referPrompt, tokenScore, type Decoded, type TokenConstraint } from "./tasks/caption.js";
import type { LogitParams } from "./tasks/similarity.js";
import { embedTokenRows, type TextEmbedLoop } from "./tasks/text-embed.js";
import { applyTemplate, labelScores, readLogitParams, similarityTable, textName } from "./tasks/scoring.js";
import { LruCache } from "./lru.js";
import {
  DEFAULT_TEMPLATE, LABEL_CACHE_SETS, type CaptionOptions, type CaptionResult, type LocateOptions, type ClassifyOptions, type LocateResult, type EmbedOptions, type LabelScore, type LoadOptions, type TextOptions, type TokenizedText,
} from "./api-types.js";
import { GemmaTokenizer } from "./tokenizer/gemma.js";
import { Checkpoint } from "./weights/checkpoint.js";
import type { SiglipConfig } from "./weights/config.js";

export * from "./api-types.js";

/** A loaded SigLIP 2 checkpoint. */
export class SigLIP2 {
  private vision?: Promise<FixresVisionTower | NaflexVisionTower>;
  private text?: Promise<TextTower>;
  private decoder?: Promise<LoccaDecoderModel>;
  private tokenizerP?: Promise<GemmaTokenizer>;
  private boxRule?: TokenConstraint;
  private imageCfg?: ImageProcessorConfig;
  private naflexCfg?: NaflexProcessorConfig;
  private pool?: PreprocessPool;
  /** Label-set embeddings, bounded ({@link LABEL_CACHE_SETS} sets). */
  private readonly labelCache = new LruCache<string, Float32Array[]>(LABEL_CACHE_SETS);

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
    if ((options.workers ?? 0) > 0) workerStartTimeoutMs(); // a bad SIGLIP2_WORKER_START_TIMEOUT_MS: one error now, not one per image
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

  /**
   * The LocCa decoder of the checkpoint (`decoder.safetensors`, built on first use). A checkpoint
   * without one is a SiglipError saying how to train one.
   */
  loccaDecoder(): Promise<LoccaDecoderModel> {
    this.decoder ??= LoccaDecoderModel.load(this.checkpoint, this.towerOptions(), BINS).catch((e: unknown) => {
      this.decoder = undefined;
      throw e;
    });
    return this.decoder;
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
   * The image pipeline behind every image call: per input and in order, either its features or
   * the SiglipError that explains why it could not be read (bad inputs are reported, not
   * thrown). `onBatch` is called as results become final with the number of inputs done so
   * far (progress bars, streaming output). Inputs are decoded and preprocessed one window at a
   * time; NaFlex images in a window are batched by sequence length (src/tasks/image-pipeline.ts).
   */
  async imageFeaturesSettled(images: ImageInput[], options: ImageOptions = {}, onBatch?: ImageProgress): Promise<ImageResult[]> {
    const tower = await this.visionTower();
    // A preprocessor config that is broken or does not fit the tower is a problem of the
    // checkpoint, reported once here (not once per image).
    if (tower instanceof NaflexVisionTower) {
      void this.naflexProcessorConfig;
      this.patchBudget(options.maxPatches);
    } else {
      void this.imageProcessorConfig;
    }
    const pipeline = {
      tower,
      batchSize: this.opts.imageBatchSize ?? 8,
      prepare: (input: ImageInput) => this.prepare(input, options.maxPatches),
      parallel: () => this.pool !== undefined,
    };
    return runImagePipeline(pipeline, images, options, onBatch);
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
  async tokenizeDetailed(texts: string[], options: { lowercase?: boolean } = {}): Promise<TokenizedText[]> {
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
    const loop: TextEmbedLoop = { batchSize: this.opts.textBatchSize ?? 32 };
    if (options.normalize !== undefined) loop.normalize = options.normalize;
    if (names !== undefined) loop.names = names;
    return embedTokenRows(await this.textTower(), ids, loop);
  }

  /**
   * `logit_scale` and `logit_bias` from the checkpoint (finite, as every weight read). A
   * `logit_scale` whose exponential overflows even float64 (above ≈ 709.78) is an error
   * naming it; any smaller one gives finite logits (computed in float64).
   */
  logitParams(): LogitParams {
    return readLogitParams(this.checkpoint.weights);
  }

  /**
   * Logits and sigmoid probabilities for every (image, text) pair, from
   * L2-normalised embeddings. Arrays are indexed [image][text].
   */
  similarity(imageEmbeds: Float32Array[], textEmbeds: Float32Array[]): { logits: number[][]; probabilities: number[][] } {
    return similarityTable(imageEmbeds, textEmbeds, this.logitParams());
  }

  /**
   * Normalised label embeddings for a label set, cached per (labels, template, lowercase): the
   * {@link LABEL_CACHE_SETS} most recently used sets are kept.
   */
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
    return labelScores(this.similarity(imageEmbeds, labelEmbeds).logits, labels);
  }

  /**
   * Caption images with the LocCa decoder (prompt "Cap:"; greedy, or beam search with `beam`).
   * Per input and in order: its caption, or the SiglipError explaining why it has none (a bad
   * image). Checkpoint problems (no decoder) are thrown.
   */
  async captionSettled(images: ImageInput[], options: CaptionOptions = {}): Promise<Array<CaptionResult | SiglipError>> {
    checkCaptionOptions(options);
    const decoder = await this.loccaDecoder();
    const tok = await this.tokenizer();
    const prompt = tok.tokenize(CAPTION_PROMPT, { lowercase: false });
    const decoded = await this.decodeImages(decoder, images, () => prompt, options);
    return decoded.map((d) => (d instanceof SiglipError ? d : { caption: tok.decode(d.tokens).trim(), score: tokenScore(d) }));
  }

  /** {@link captionSettled}, throwing the first bad image's error. */
  async caption(images: ImageInput[], options: CaptionOptions = {}): Promise<CaptionResult[]> {
    return (await this.captionSettled(images, options)).map(throwIfError);
  }

  /**
   * Locate `query` in each image with the LocCa decoder (prompt "ARef: {query} :", which the
   * decoder completes with a box "ymin xmin ymax xmax" in 500 bins). Per input: the box in the
   * original image's pixels (the preprocessing stretches the whole image onto the patch grid,
   * fixed resolution and NaFlex alike, so bins scale by the original width and height), or a
   * SiglipError: a bad image, or (with `constrained: false`) a decoder output that is not a box
   * (named, with its text). By default decoding follows the box grammar, so every answer is a box
   * ({@link LocateOptions.constrained}).
   */
  async locateSettled(query: string, images: ImageInput[], options: LocateOptions = {}): Promise<Array<LocateResult | SiglipError>> {
    checkCaptionOptions(options);
    if (options.constrained !== undefined && typeof options.constrained !== "boolean") throw new SiglipError("usage", `constrained must be true or false (got ${JSON.stringify(options.constrained)})`);
    const decoder = await this.loccaDecoder();
    const tok = await this.tokenizer();
    const constraint = options.constrained === false ? undefined : this.boxConstraint(decoder, tok);
    // a prompt longer than the decoder is cut by tokenizeHead (a huge query is not tokenised whole)
    const prompt = tok.tokenizeHead(referPrompt(query), decoder.length, { lowercase: false });
    const room = decoder.length - 1 - prompt.length;
    if (room < MIN_BOX_TOKENS) {
      const n = prompt.length >= decoder.length ? `more than ${decoder.length - 1}` : String(prompt.length);
      throw new SiglipError("input", `query ${textName(query).slice(5)} is too long: the prompt takes ${n} of the decoder's ${decoder.length} positions, leaving ${Math.max(0, room)} for the box (at least ${MIN_BOX_TOKENS} needed)`, { subject: "query" });
    }
    const sizes: Array<{ width: number; height: number } | null> = [];
    const decodedInputs: Array<ImageInput | SiglipError> = await Promise.all(images.map(async (input, i) => {
      try {
        const img = await this.decode(input, typeof input === "string" ? input : `image ${i}`);
        sizes[i] = { width: img.width, height: img.height };
        return img;
      } catch (e) {
        sizes[i] = null;
        if (e instanceof SiglipError) return e;
        throw e;
      }
    }));
    const decoded = await this.decodeImages(decoder, decodedInputs, () => prompt, options, constraint);
    return decoded.map((d, i) => {
      if (d instanceof SiglipError) return d;
      const text = tok.decode(d.tokens);
      const name = typeof images[i] === "string" ? (images[i] as string) : `image ${i}`;
      const parsed = parseArefOutput(text, decoder.boxFormat);
      if (!parsed.ok) {
        const shown = JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);
        return new SiglipError("output", `${name}: the decoder's answer to ${textName(query).slice(5)} is not a box: ${shown} (${parsed.reason})`, { subject: name });
      }
      const { width, height } = sizes[i]!;
      return { box: dequantizeBox(parsed.box, width, height), score: tokenScore(d) };
    });
  }

  /** {@link locateSettled}, throwing the first error. */
  async locate(query: string, images: ImageInput[], options: LocateOptions = {}): Promise<LocateResult[]> {
    return (await this.locateSettled(query, images, options)).map(throwIfError);
  }

  /**
   * Image tokens (post-LN last hidden state) of each input, then decoding from `prompt(i)` in
   * batches of `imageBatchSize` images (every live beam of a batch in one decoder run).
   */
  private async decodeImages(
    decoder: LoccaDecoderModel, images: Array<ImageInput | SiglipError>, prompt: (i: number) => number[], options: CaptionOptions, constraint?: TokenConstraint,
  ): Promise<Array<Decoded | SiglipError>> {
    const ok = images.flatMap((x, i) => (x instanceof SiglipError ? [] : [i]));
    const feats = await this.imageFeaturesSettled(ok.map((i) => images[i] as ImageInput), { patches: true });
    const out: Array<Decoded | SiglipError> = images.map((x) => (x instanceof SiglipError ? x : new SiglipError("internal", "not decoded")));
    const ready: Array<{ slot: number; memory: DecoderMemory }> = [];
    feats.forEach((f, k) => {
      if (f instanceof SiglipError) out[ok[k]!] = f;
      else ready.push({ slot: ok[k]!, memory: { patches: f.patches!, gridH: f.gridH, gridW: f.gridW } });
    });
    const tok = await this.tokenizer();
    const c = decoder.config;
    const spec = { bos: BOS_ID, eos: tok.eosId, vocab: c.vocab, length: decoder.length };
    const bs = Math.max(1, this.opts.imageBatchSize ?? 8);
    for (let s = 0; s < ready.length; s += bs) {
      const chunk = ready.slice(s, s + bs);
      const memory = chunk.map((r) => r.memory);
      const next = (rows: Array<{ ids: ArrayLike<number>; image: number }>) => decoder.logits(rows, memory, rows.map((r) => [r.ids.length - 1]));
      const o: { beam?: number; maxTokens?: number; lengthPenalty?: number } = {};
      if (options.beam !== undefined) o.beam = options.beam;
      if (options.maxTokens !== undefined) o.maxTokens = options.maxTokens;
      if (options.lengthPenalty !== undefined) o.lengthPenalty = options.lengthPenalty;
      const res = await decode(next, chunk.map((r, image) => ({ prompt: prompt(r.slot), image })), spec, o, constraint);
      res.forEach((d, k) => (out[chunk[k]!.slot] = d));
    }
    return out;
  }

  /** The box grammar of constrained `locate` for this decoder (its vocabulary scanned once, then kept). */
  private boxConstraint(decoder: LoccaDecoderModel, tok: GemmaTokenizer): TokenConstraint {
    this.boxRule ??= boxTokenConstraint((ids) => tok.decode(ids), Math.min(decoder.config.vocab, tok.vocabSize), tok.eosId, decoder.boxFormat);
    return this.boxRule;
  }

  /** Free the onnxruntime sessions and close the weight files. */
  async close(): Promise<void> {
    const pool = this.pool;
    const towers = [this.vision, this.text, this.decoder];
    this.pool = undefined;
    this.vision = undefined;
    this.text = undefined;
    this.decoder = undefined;
    await pool?.close();
    for (const t of towers) {
      const tower = await t?.catch(() => undefined);
      await tower?.release();
    }
    this.checkpoint.close();
  }
}

/** Fewest positions a locate prompt must leave for the answer (a box is 4 numbers and 3 spaces, 7+ tokens). */
const MIN_BOX_TOKENS = 8;

/** Gemma's `<bos>`, the first token of every LocCa decoder row (as in training). */
const BOS_ID = 2;

function throwIfError<T>(r: T | SiglipError): T {
  if (r instanceof SiglipError) throw r;
  return r;
}

export { applyTemplate };
