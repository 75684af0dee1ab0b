/**
 * Evaluation metrics as CLIP-style papers report them (training-recipe.md §7.1, §8.2 items 34–35):
 * zero-shot classification with prompt ensembling (top-1, top-5, per class), image↔text retrieval
 * recall@K in both directions, and referring-expression accuracy (IoU ≥ 0.5 of the predicted box).
 *
 * Pure functions over similarity matrices and boxes: the eval commands and the training ablations
 * compute embeddings, these turn them into numbers. Ties are ranked pessimistically (an item that
 * scores the same as the right answer counts as ranked above it), so a constant model gets the
 * chance rate or less, never a perfect score.
 */
import { SiglipError } from "../errors.js";

/**
 * Prompt ensembling: each class's template embeddings (already L2-normalised by the model) are
 * averaged and the mean is L2-normalised again. `perClass[c]` holds the T template vectors of class c.
 */
export function ensembleClassEmbeddings(perClass: readonly (readonly Float32Array[])[]): Float32Array[] {
  return perClass.map((templates, c) => {
    if (templates.length === 0) throw new SiglipError("input", `class ${c} has no prompt embeddings`);
    const d = templates[0]!.length;
    const mean = new Float64Array(d);
    for (const t of templates) {
      if (t.length !== d) throw new SiglipError("input", `class ${c}: prompt embeddings of dimension ${t.length} and ${d}`);
      for (let i = 0; i < d; i++) mean[i] += t[i]! / templates.length;
    }
    let n = 0;
    for (let i = 0; i < d; i++) n += mean[i]! * mean[i]!;
    n = Math.sqrt(n);
    const out = new Float32Array(d);
    for (let i = 0; i < d; i++) out[i] = n === 0 ? 0 : mean[i]! / n;
    return out;
  });
}

/** Rank of entry `target` in `scores` (0 = best), counting ties against it. */
export function pessimisticRank(scores: ArrayLike<number>, target: number): number {
  const s = scores[target]!;
  let rank = 0;
  for (let j = 0; j < scores.length; j++) if (j !== target && !(scores[j]! < s)) rank++;
  return rank;
}

export interface ClassAccuracy {
  label: string;
  /** Number of images of this class. */
  n: number;
  top1: number;
  top5: number;
}

export interface ClassificationMetrics {
  n: number;
  top1: number;
  top5: number;
  /** Mean of the per-class top-1 accuracies (classes with images only). */
  meanPerClassTop1: number;
  perClass: ClassAccuracy[];
}

/**
 * Top-1 / top-5 / per-class accuracy. `scores[i][c]`: the score of class c for image i (cosine or
 * logit: only the order matters); `labels[i]`: the true class index; `classNames[c]`: its name.
 */
export function classificationMetrics(scores: readonly ArrayLike<number>[], labels: readonly number[], classNames: readonly string[]): ClassificationMetrics {
  if (scores.length !== labels.length) throw new SiglipError("input", `${scores.length} score rows for ${labels.length} labels`);
  const C = classNames.length;
  const hits1 = new Array<number>(C).fill(0);
  const hits5 = new Array<number>(C).fill(0);
  const count = new Array<number>(C).fill(0);
  scores.forEach((row, i) => {
    const y = labels[i]!;
    if (row.length !== C) throw new SiglipError("input", `image ${i}: ${row.length} scores for ${C} classes`);
    if (!Number.isInteger(y) || y < 0 || y >= C) throw new SiglipError("input", `image ${i}: label ${y} is not a class index`);
    const r = pessimisticRank(row, y);
    count[y]!++;
    if (r < 1) hits1[y]!++;
    if (r < 5) hits5[y]!++;
  });
  const n = labels.length;
  const sum = (a: number[]) => a.reduce((s, x) => s + x, 0);
  const perClass = classNames.map((label, c) => ({ label, n: count[c]!, top1: count[c] ? hits1[c]! / count[c]! : 0, top5: count[c] ? hits5[c]! / count[c]! : 0 }));
  const present = perClass.filter((p) => p.n > 0);
  return {
    n,
    top1: n ? sum(hits1) / n : 0,
    top5: n ? sum(hits5) / n : 0,
    meanPerClassTop1: present.length ? present.reduce((s, p) => s + p.top1, 0) / present.length : 0,
    perClass,
  };
}

export interface RetrievalMetrics {
  images: number;
  texts: number;
  /** Image → text: an image is a hit at K when any of its texts is among the K best texts. */
  imageToText: Record<string, number>;
  /** Text → image: a text is a hit at K when its image is among the K best images. */
  textToImage: Record<string, number>;
}

/**
 * Retrieval recall@K both ways (COCO/Flickr protocol: several captions per image). `sim[i][t]`:
 * similarity of image i and text t; `imageOfText[t]`: the index of text t's image.
 */
export function retrievalMetrics(sim: readonly ArrayLike<number>[], imageOfText: readonly number[], ks: readonly number[] = [1, 5, 10]): RetrievalMetrics {
  const nI = sim.length;
  const nT = imageOfText.length;
  const textsOf: number[][] = Array.from({ length: nI }, () => []);
  imageOfText.forEach((i, t) => {
    if (!Number.isInteger(i) || i < 0 || i >= nI) throw new SiglipError("input", `text ${t}: image index ${i} out of range`);
    textsOf[i]!.push(t);
  });
  sim.forEach((row, i) => { if (row.length !== nT) throw new SiglipError("input", `image ${i}: ${row.length} similarities for ${nT} texts`); });
  const i2t: number[] = [];
  for (let i = 0; i < nI; i++) {
    if (textsOf[i]!.length === 0) continue; // an image without a caption is not a query
    i2t.push(Math.min(...textsOf[i]!.map((t) => pessimisticRank(sim[i]!, t))));
  }
  const t2i: number[] = [];
  const column = new Float64Array(nI);
  for (let t = 0; t < nT; t++) {
    for (let i = 0; i < nI; i++) column[i] = sim[i]![t]!;
    t2i.push(pessimisticRank(column, imageOfText[t]!));
  }
  const recall = (ranks: number[]) => Object.fromEntries(ks.map((k) => [`R@${k}`, ranks.length ? ranks.filter((r) => r < k).length / ranks.length : 0]));
  return { images: nI, texts: nT, imageToText: recall(i2t), textToImage: recall(t2i) };
}

/** A box as [x0, y0, x1, y1] (pixels or normalised: any consistent unit). */
export type Box = readonly [number, number, number, number];

/** Intersection over union of two boxes (0 when either is empty). */
export function boxIoU(a: Box, b: Box): number {
  const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih;
  const area = (x: Box) => Math.max(0, x[2] - x[0]) * Math.max(0, x[3] - x[1]);
  const union = area(a) + area(b) - inter;
  return union > 0 ? inter / union : 0;
}

/** Referring-expression accuracy: the fraction of predictions whose IoU with the truth is ≥ `threshold`. */
export function accuracyAtIoU(pred: readonly Box[], truth: readonly Box[], threshold = 0.5): number {
  if (pred.length !== truth.length) throw new SiglipError("input", `${pred.length} predicted boxes for ${truth.length} true ones`);
  if (pred.length === 0) return 0;
  let hit = 0;
  for (let i = 0; i < pred.length; i++) if (boxIoU(pred[i]!, truth[i]!) >= threshold) hit++;
  return hit / pred.length;
}
