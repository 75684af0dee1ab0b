/**
 * Option and result types of the library API ({@link SigLIP2} in src/api.ts), in one place.
 * The image types live with the image pipeline (src/tasks/image-pipeline.ts) and are
 * re-exported here.
 */
import type { ResolveOptions } from "./hub/download.js";
import type { TowerOptions } from "./models/siglip.js";
import type { ResizeBackend } from "./preprocess/index.js";
import type { EmbedOptions } from "./tasks/image-pipeline.js";

export type { EmbedOptions, ImageFeatures, ImageInput, ImageOptions, ImageProgress, ImageResult } from "./tasks/image-pipeline.js";

/** Options for `SigLIP2.load` (bounds: src/load-options.ts). */
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

/** Options for text calls. */
export interface TextOptions extends EmbedOptions {
  /** Override the model-wide lowercase setting. */
  lowercase?: boolean;
}

/** One text's token ids and what tokenizing did to it. */
export interface TokenizedText {
  /** `max_position_embeddings` ids: content, `<eos>`, right padding with 0 (no BOS). */
  ids: Int32Array;
  /** Content ids kept before `<eos>`. */
  contentTokens: number;
  /** True when the text had more tokens than fit. */
  truncated: boolean;
}

/** One label's score for one image. */
export interface LabelScore {
  label: string;
  /** `cos · exp(logit_scale) + logit_bias`. */
  logit: number;
  /** `sigmoid(logit)`: independent per label (SigLIP uses no softmax). */
  probability: number;
}

/** Options for `SigLIP2.classify` and `SigLIP2.labelEmbeddings`. */
export interface ClassifyOptions {
  /** Prompt template; `{}` is replaced by the label. Default {@link DEFAULT_TEMPLATE}. */
  template?: string;
  lowercase?: boolean;
}

/** The default zero-shot prompt template. */
export const DEFAULT_TEMPLATE = "This is a photo of {}.";

/**
 * Label sets whose embeddings a loaded model keeps (least recently used dropped first): one
 * entry per (labels, template, lowercase). The server keeps its own per-prompt cache
 * (ServerOptions.labelCacheSize).
 */
export const LABEL_CACHE_SETS = 256;

/** Options for `SigLIP2.caption` and `SigLIP2.locate` (decoding: src/tasks/caption.ts). */
export interface CaptionOptions {
  /** Beam width (default 1: greedy; at most 16). */
  beam?: number;
  /** Most generated tokens, EOS included (default and cap: what the decoder's positions allow). */
  maxTokens?: number;
  /** Length penalty α of the beam ranking, `logProb / tokens^α` (default 1). */
  lengthPenalty?: number;
}

/** Options for `SigLIP2.locate`: decoding, and whether the answer is held to the box grammar. */
export interface LocateOptions extends CaptionOptions {
  /**
   * Constrained decoding (default true): at each step only tokens that keep the answer the start
   * of a valid box (`ymin xmin ymax xmax`, integers in [0, 499], ymax ≥ ymin, xmax ≥ xmin, in the
   * decoder's box format) are ranked, and EOS only after a whole box, so every answer is a box.
   * The score stays the decoder's own probability of that answer. `false`: free decoding, as in
   * training; an answer that is not a box is then an error for that image.
   */
  constrained?: boolean;
}

/** One image's caption. */
export interface CaptionResult {
  caption: string;
  /**
   * exp(mean log-probability of the generated tokens, EOS included): the geometric-mean token
   * probability, in (0, 1]. Comparable across images, not a calibrated probability.
   */
  score: number;
}

/** Where a query is in one image. */
export interface LocateResult {
  /** `[x0, y0, x1, y1]` in the original image's pixels (x right, y down; bin centres of the 500 bins). */
  box: [number, number, number, number];
  /** As {@link CaptionResult.score}: the geometric-mean probability of the decoded box tokens. */
  score: number;
}
