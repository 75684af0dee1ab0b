/**
 * siglip2: SigLIP 2 vision-language encoders in TypeScript, executed by ONNX Runtime.
 * See README.md for usage; {@link SigLIP2} is the entry point.
 */
export { SigLIP2, applyTemplate, DEFAULT_TEMPLATE, LABEL_CACHE_SETS } from "./api.js";
export type {
  ImageInput, ImageOptions, ImageFeatures, ImageResult, ImageProgress, LoadOptions, EmbedOptions, TextOptions, TokenizedText, LabelScore, ClassifyOptions,
  CaptionOptions, CaptionResult, LocateOptions, LocateResult,
} from "./api.js";
export { LoccaDecoderModel, DECODER_FILE, DECODER_FORMAT } from "./models/locca-infer.js";
export { SiglipError, isSiglipError } from "./errors.js";
export { resolveModel } from "./hub/download.js";
export type { DownloadProgress, ResolveOptions } from "./hub/download.js";
export { GemmaTokenizer, lowercasePerCodePoint } from "./tokenizer/gemma.js";
export { decodeImage, resizeRgb, preprocessFixed, parseImageProcessorConfig } from "./preprocess/index.js";
export type { RgbImage, ResizeBackend, ImageProcessorConfig } from "./preprocess/index.js";
export { l2normalize, sigmoid, logitsPerImage } from "./tasks/similarity.js";
export { Checkpoint, WeightStore } from "./weights/checkpoint.js";
export { SafetensorsFile } from "./weights/safetensors.js";
export { parseConfig } from "./weights/config.js";
export type { SiglipConfig, TextConfig, VisionConfig } from "./weights/config.js";
export { FixresVisionTower, TextTower } from "./models/siglip.js";
