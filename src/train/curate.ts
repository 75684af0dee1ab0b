/**
 * ACID-style data curation (SigLIP 2 §2.5; training-recipe.md §5): from each super-batch of
 * N = round(B / F) examples, keep the B most *learnable* ones and train on them.
 *
 * Learnability of example i (Mindermann et al. 2022): `student_i − teacher_i`, where each side's
 * per-example loss is its share of the super-batch's pairwise sigmoid loss, computed from that
 * model's L2-normalised embeddings with its own t = exp(t') and b:
 *
 *   ℓ_ij = −log σ(z_ij (t·⟨x_i, y_j⟩ + b)),  z_ij = +1 if i = j else −1     (N × N)
 *   loss_i = ½ (Σ_j ℓ_ij + Σ_j ℓ_ji)        image row i + text column i, halved
 *
 * So the diagonal pair counts once and every off-diagonal pair is shared by its image and its
 * text; Σ_i loss_i = Σ_ij ℓ_ij = N · L, the super-batch's big_vision loss times N. Selection is
 * the top B by score, ties broken by the lower position in the super-batch; the kept examples
 * keep their super-batch order. (JEST's joint, chunked sampling is not implemented: this is
 * the independent top-k the paper's "learnability" scoring reduces to with one chunk.)
 *
 * The student's scores come from forward-only graphs on the current parameters (./session.ts
 * EmbedSession: no gradients); a NaFlex student scores each image at its preprocessor's
 * `max_num_patches` (the budgets of the training step are drawn after the selection). The teacher is any model with the {@link TeacherModel} methods —
 * the library's `SigLIP2` (src/api.ts, fp32 or int8) fits — so it reads each example through
 * its own preprocessing and tokenizer (another image size, vocabulary or NaFlex is fine). A
 * teacher is fixed, so its embeddings are computed once per example and kept.
 */
import { SiglipError } from "../errors.js";
import type { ImageInput } from "../tasks/image-pipeline.js";
import type { LogitParams } from "../tasks/similarity.js";
import type { SiglipConfig } from "../weights/config.js";
import type { PairDataset } from "./data.js";
import { EmbedSession, type Params } from "./session.js";

/** What a curation teacher must offer (the library's `SigLIP2` class has these). */
export interface TeacherModel {
  embedImages(images: ImageInput[]): Promise<Float32Array[]>;
  embedTexts(texts: string[]): Promise<Float32Array[]>;
  logitParams(): LogitParams;
}

/** −log σ(x) = softplus(−x), stable for any x (float64). */
function negLogSigmoid(x: number): number {
  return Math.max(-x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

/**
 * Per-example sigmoid losses of a batch (see the module comment): `img` (n, d) and `txt` (n, d)
 * L2-normalised rows, `scale` = t = exp(t'), `bias` = b. Float64.
 */
export function exampleLosses(img: ArrayLike<number>, txt: ArrayLike<number>, n: number, d: number, scale: number, bias: number): Float64Array {
  if (img.length !== n * d || txt.length !== n * d) throw new Error(`internal: exampleLosses wants ${n}×${d} embeddings, got ${img.length} and ${txt.length} values`);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += img[i * d + k]! * txt[j * d + k]!;
      const l = negLogSigmoid((i === j ? 1 : -1) * (scale * s + bias)) / 2;
      out[i] = out[i]! + l; // image row i
      out[j] = out[j]! + l; // text column j
    }
  }
  return out;
}

/**
 * The positions of the `k` highest scores, ties to the lower position, returned in ascending
 * position order. NaN scores are an internal error (the losses are always finite).
 */
export function topK(scores: ArrayLike<number>, k: number): number[] {
  const n = scores.length;
  if (!Number.isInteger(k) || k < 1 || k > n) throw new Error(`internal: topK of ${k} from ${n}`);
  const order = Array.from({ length: n }, (_, i) => i);
  for (const i of order) if (Number.isNaN(scores[i])) throw new Error(`internal: score ${i} is NaN`);
  order.sort((a, b) => scores[b]! - scores[a]! || a - b);
  return order.slice(0, k).sort((a, b) => a - b);
}

/** The super-batch size for batch `batch` and ratio `ratio` (F in (0, 1]): round(B / F). */
export function superBatchSize(batch: number, ratio: number): number {
  checkRatio(ratio);
  return Math.max(batch, Math.round(batch / ratio));
}

/** A curation ratio must be a number in (0, 1]. */
export function checkRatio(ratio: number): void {
  if (typeof ratio !== "number" || !Number.isFinite(ratio) || ratio <= 0 || ratio > 1) {
    throw new SiglipError("usage", `--curate-ratio must be a number in (0, 1] (the fraction of each super-batch that is kept), got ${String(ratio)}`);
  }
}

/** What one selection did (means over the super-batch and over the kept examples). */
export interface CurationStats {
  superBatch: number;
  kept: number;
  /** Mean learnability (student − teacher loss) of all examples / of the kept ones. */
  scoreAll: number;
  scoreKept: number;
  /** The lowest kept score. */
  threshold: number;
  studentAll: number;
  studentKept: number;
  teacherAll: number;
  teacherKept: number;
}

export interface Selection {
  /** Dataset indices of the kept examples (super-batch order). */
  indices: number[];
  /** Per super-batch position: learnability, student loss, teacher loss. */
  scores: Float64Array;
  student: Float64Array;
  teacher: Float64Array;
  stats: CurationStats;
}

const mean = (a: ArrayLike<number>, at?: readonly number[]): number => {
  const idx = at ?? Array.from({ length: a.length }, (_, i) => i);
  return idx.reduce((s, i) => s + a[i]!, 0) / idx.length;
};

/** Learnability scores and the top-`keep` selection from the two sides' per-example losses. */
export function select(indices: readonly number[], student: Float64Array, teacher: Float64Array, keep: number): Selection {
  const scores = student.map((s, i) => s - teacher[i]!);
  const pos = topK(scores, keep);
  return {
    indices: pos.map((p) => indices[p]!), scores, student, teacher,
    stats: {
      superBatch: indices.length, kept: keep, scoreAll: mean(scores), scoreKept: mean(scores, pos), threshold: Math.min(...pos.map((p) => scores[p]!)),
      studentAll: mean(student), studentKept: mean(student, pos), teacherAll: mean(teacher), teacherKept: mean(teacher, pos),
    },
  };
}

/** Rows of `list` as one flat (n, d) array; every row must have length d. */
function flatten(list: readonly Float32Array[], what: string): { flat: Float32Array; d: number } {
  const d = list[0]?.length ?? 0;
  const flat = new Float32Array(list.length * d);
  list.forEach((v, i) => {
    if (v.length !== d) throw new SiglipError("checkpoint", `curation teacher: ${what} embeddings of different widths (${d} and ${v.length})`);
    flat.set(v, i * d);
  });
  return { flat, d };
}

/**
 * Scores super-batches with the student (current parameters, forward only) and a fixed teacher,
 * and keeps the most learnable examples.
 */
export class Curator {
  /** Teacher embeddings by dataset index (the teacher does not change). */
  private readonly cache = new Map<number, { image: Float32Array; text: Float32Array }>();

  private constructor(
    private readonly config: SiglipConfig,
    private readonly vision: EmbedSession,
    private readonly text: EmbedSession,
    private readonly teacher: TeacherModel,
    readonly ratio: number,
  ) {}

  static async create(config: SiglipConfig, teacher: TeacherModel, ratio: number, threads?: number): Promise<Curator> {
    checkRatio(ratio);
    const o = threads === undefined ? {} : { threads };
    const { logitScale, logitBias } = teacher.logitParams();
    if (!Number.isFinite(Math.exp(logitScale)) || !Number.isFinite(logitBias)) {
      throw new SiglipError("checkpoint", `curation teacher: logit_scale ${logitScale} / logit_bias ${logitBias} do not give finite logits`);
    }
    return new Curator(config, await EmbedSession.create(config, "vision", o), await EmbedSession.create(config, "text", o), teacher, ratio);
  }

  /** The student's per-example losses of `indices` with parameters `params`. */
  async studentLosses(params: Params, data: PairDataset, indices: readonly number[]): Promise<Float64Array> {
    const b = await data.batch(indices); // NaFlex: every image at the processor's max_num_patches
    const img = await this.vision.embed(params, b, b.n);
    const txt = await this.text.embed(params, b.inputIds, b.n);
    const d = this.config.vision_config.hidden_size;
    return exampleLosses(img, txt, b.n, d, Math.exp(params.get("logit_scale")![0]!), params.get("logit_bias")![0]!);
  }

  /** The teacher's per-example losses of `indices` (embeddings cached per index). */
  async teacherLosses(data: PairDataset, indices: readonly number[]): Promise<Float64Array> {
    const missing = [...new Set(indices.filter((i) => !this.cache.has(i)))];
    if (missing.length > 0) {
      if (!data.image) throw new SiglipError("usage", "curation needs the dataset's original images for the teacher (this dataset has only preprocessed pixels)");
      const images = await this.teacher.embedImages(missing.map((i) => data.image!(i)));
      const texts = await this.teacher.embedTexts(missing.map((i) => data.caption(i)));
      missing.forEach((i, k) => this.cache.set(i, { image: images[k]!, text: texts[k]! }));
    }
    const rows = indices.map((i) => this.cache.get(i)!);
    const img = flatten(rows.map((r) => r.image), "image");
    const txt = flatten(rows.map((r) => r.text), "text");
    if (img.d !== txt.d) throw new SiglipError("checkpoint", `curation teacher: image embeddings have ${img.d} values, text embeddings ${txt.d}`);
    const { logitScale, logitBias } = this.teacher.logitParams();
    return exampleLosses(img.flat, txt.flat, indices.length, img.d, Math.exp(logitScale), logitBias);
  }

  /** Score super-batch `indices` and keep the `keep` most learnable. */
  async select(params: Params, data: PairDataset, indices: readonly number[], keep: number): Promise<Selection> {
    const student = await this.studentLosses(params, data, indices);
    const teacher = await this.teacherLosses(data, indices);
    return select(indices, student, teacher, keep);
  }

  async release(): Promise<void> {
    await this.vision.release();
    await this.text.release();
  }
}
