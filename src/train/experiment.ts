/**
 * The learning proof: train a tiny SigLIP from scratch on the synthetic dataset
 * (src/train/synthetic.ts) and measure held-out zero-shot accuracy before and after.
 * Used by the test suite (short run) and by examples/train-synthetic.ts (full run).
 *
 * `objectives` (default ["sigmoid"]) may add the LocCa decoder ("sigmoid,locca", or "locca"
 * alone): the synthetic pairs have no boxes, so its rows are the captions only (parallel with
 * p = 0.5); the zero-shot accuracy still measures the towers. The curve then carries both parts.
 */
import { GemmaTokenizer } from "../tokenizer/gemma.js";
import { parseConfig, type SiglipConfig } from "../weights/config.js";
import { InMemoryPairs } from "./data.js";
import { ZeroShotEvaluator } from "./eval.js";
import { initParams } from "./init.js";
import { paramSpecs, type Objective, type Tower } from "./model.js";
import { DEFAULT_OPTIMIZER } from "./optim.js";
import { LANGUAGES, classPrompt, classes, synthesize, type Language } from "./synthetic.js";
import { Trainer, type StepInfo } from "./trainer.js";
import type { DistillConfig } from "./distill-config.js";

/** Sparse Hub config.json of the tiny model (transformers fills in the class defaults). */
export function tinyConfigJson(o: { width: number; layers: number; heads: number; mlp: number; vocab: number; seqLen: number; image: number; patch: number }): Record<string, unknown> {
  return {
    architectures: ["SiglipModel"],
    model_type: "siglip",
    text_config: {
      hidden_size: o.width, intermediate_size: o.mlp, num_attention_heads: o.heads, num_hidden_layers: o.layers,
      vocab_size: o.vocab, max_position_embeddings: o.seqLen, model_type: "siglip_text_model",
    },
    vision_config: {
      hidden_size: o.width, intermediate_size: o.mlp, num_attention_heads: o.heads, num_hidden_layers: o.layers,
      image_size: o.image, patch_size: o.patch, model_type: "siglip_vision_model",
    },
  };
}

/**
 * The NaFlex (model_type "siglip2") variant of {@link tinyConfigJson}: no image size, a learned
 * position grid of `numPatches` rows (a square number: √numPatches per side).
 */
export function tinyNaflexConfigJson(o: Omit<Parameters<typeof tinyConfigJson>[0], "image"> & { numPatches: number }): Record<string, unknown> {
  const base = tinyConfigJson({ ...o, image: o.patch });
  const { image_size: _, ...vision } = base["vision_config"] as Record<string, unknown>;
  return {
    ...base, architectures: ["Siglip2Model"], model_type: "siglip2",
    text_config: { ...(base["text_config"] as object), model_type: "siglip2_text_model" },
    vision_config: { ...vision, num_patches: o.numPatches, model_type: "siglip2_vision_model" },
  };
}

export interface SyntheticRunOptions {
  tokenizerPath: string;
  trainPairs: number;
  testImages: number;
  steps: number;
  batchSize: number;
  lr: number;
  warmupSteps: number;
  seed: number;
  width?: number;
  layers?: number;
  threads?: number;
  /** Default ["sigmoid"]. */
  objectives?: readonly Objective[];
  /** LocCa vocabulary chunk (default: the trainer's). */
  vocabChunk?: number;
  /** Frozen towers (default none). */
  freeze?: readonly Tower[];
  /** Self-distillation + masked prediction (./distill.ts; default off). */
  distill?: DistillConfig;
  onStep?: (s: StepInfo) => void;
}

export interface SyntheticRunResult {
  config: SiglipConfig;
  configJson: Record<string, unknown>;
  trainer: Trainer;
  /** Zero-shot accuracy per prompt language, before and after. */
  before: Record<Language, number>;
  after: Record<Language, number>;
  chance: number;
  curve: Array<{ step: number; loss: number; sigmoidLoss?: number; loccaLoss?: number; sdLoss?: number; mpLoss?: number }>;
  seconds: number;
}

export async function runSynthetic(o: SyntheticRunOptions): Promise<SyntheticRunResult> {
  const t0 = performance.now();
  const width = o.width ?? 64;
  const configJson = tinyConfigJson({ width, layers: o.layers ?? 2, heads: 4, mlp: 2 * width, vocab: 1024, seqLen: 24, image: 32, patch: 8 });
  const config = parseConfig(configJson);
  const tok = await GemmaTokenizer.fromFile(o.tokenizerPath);
  const R = config.vision_config.image_size;
  const T = config.text_config.max_position_embeddings;
  const train = synthesize(o.trainPairs, R, o.seed);
  const objectives = o.objectives ?? ["sigmoid"];
  const locca = objectives.includes("locca");
  const data = new InMemoryPairs(train.map((p) => p.pixels), train.map((p) => p.caption), tok, T, locca ? { locca: { vocab: config.text_config.vocab_size } } : undefined);
  // Held-out images: another seed, so none of them was seen in training.
  const test = synthesize(o.testImages, R, o.seed + 1_000_003);
  const cls = classes();
  const labels = test.map((p) => cls.findIndex((c) => c.colour === p.scene.colour && c.shape === p.scene.shape));
  const testPixels = new Float32Array(test.length * 3 * R * R);
  test.forEach((p, i) => testPixels.set(p.pixels, i * 3 * R * R));

  const params = initParams(paramSpecs(config, { objectives }), o.seed);
  const trainer = await Trainer.create(config, params, {
    batchSize: o.batchSize, accumSteps: 1, steps: o.steps, seed: o.seed, freeze: o.freeze ?? "none", objectives,
    optimizer: { ...DEFAULT_OPTIMIZER, lr: o.lr, totalSteps: o.steps, warmupSteps: o.warmupSteps },
    ...(o.threads === undefined ? {} : { threads: o.threads }),
    ...(o.vocabChunk === undefined ? {} : { vocabChunk: o.vocabChunk }),
    ...(o.distill === undefined ? {} : { distill: o.distill }),
  });
  const evaluator = await ZeroShotEvaluator.create(config, tok, o.threads);
  const evalAll = async (): Promise<Record<Language, number>> => {
    const r = {} as Record<Language, number>;
    for (const lang of LANGUAGES) r[lang] = await evaluator.accuracy(params, testPixels, labels, cls.map((c) => classPrompt(c.colour, c.shape, lang)));
    return r;
  };
  const before = await evalAll();
  const curve: SyntheticRunResult["curve"] = [];
  while (trainer.step < o.steps) {
    const s = await trainer.trainStep(data);
    const point: SyntheticRunResult["curve"][number] = s.loccaLoss === undefined ? { step: s.step, loss: s.loss } : { step: s.step, loss: s.loss, sigmoidLoss: s.sigmoidLoss!, loccaLoss: s.loccaLoss };
    if (s.sdLoss !== undefined) Object.assign(point, { sigmoidLoss: s.sigmoidLoss!, sdLoss: s.sdLoss, mpLoss: s.mpLoss! });
    curve.push(point);
    o.onStep?.(s);
  }
  const after = await evalAll();
  await evaluator.release();
  await trainer.release();
  return { config, configJson, trainer, before, after, chance: 1 / cls.length, curve, seconds: (performance.now() - t0) / 1000 };
}
