/**
 * Held-out evaluation of a model on generated scenes, through the same harness users run
 * (src/tasks/eval.ts) and a dense linear probe (src/tasks/probe.ts), on in-memory images:
 * - {@link sceneZeroShot}: top-1 per prompt language on single-object scenes (16 classes, the
 *   language's prompts from {@link sceneLabels}, one prompt per class);
 * - {@link sceneRetrieval}: image→text and text→image recall on scenes and their captions;
 * - {@link sceneLocate}: referring-expression Acc@0.5 (each scene's first region, in its language);
 * - {@link sceneDenseProbe}: a linear per-patch classifier of which shape covers the patch
 *   ({@link patchLabels}) on the un-pooled patch features (after the final LayerNorm, before the
 *   MAP head), trained on one scene set and scored by mean IoU on another;
 * - {@link sceneEncoderReport}: the first two and the dense probe in one call, and
 *   {@link meanSd} / {@link compareSeeds} for tables over seeds (tools/ablate-recipe.ts).
 *
 * The model is anything with the `SigLIP2` methods used here ({@link SceneModel}); the images are
 * rendered records, so no file is written.
 */
import type { SiglipError } from "../../errors.js";
import type { RgbImage } from "../../preprocess/decode.js";
import { evalLocate, evalRetrieval, evalZeroShot, type EvalEmbedder, type LocateModel } from "../../tasks/eval.js";
import { meanIoU, predictLinearProbe, standardize, trainLinearProbe, type ProbeOptions } from "../../tasks/probe.js";
import { renderScene, type SceneRecord, type SceneRenderer } from "./dataset.js";
import { DENSE_CLASSES, patchLabels } from "./dense.js";
import { SCENE_LANGUAGES, sceneLabels, type SceneLanguage } from "./language.js";

/** What the scene evaluations need of a model (the `SigLIP2` class has all of it). */
export interface SceneModel {
  embedImages(images: RgbImage[]): Promise<Float32Array[]>;
  embedTexts(texts: string[]): Promise<Float32Array[]>;
  imageFeatures(images: RgbImage[], options: { patches: true }): Promise<Array<{ gridH: number; gridW: number; patches?: Float32Array }>>;
  locateSettled(query: string, images: RgbImage[]): Promise<Array<{ box: readonly [number, number, number, number]; score: number } | SiglipError>>;
}

/** Render every record (same order). */
export async function renderScenes(records: readonly SceneRecord[], renderer: SceneRenderer = "ours"): Promise<RgbImage[]> {
  const out: RgbImage[] = [];
  for (const r of records) out.push(await renderScene(r.spec, renderer));
  return out;
}

/** The harness names images by path; here a path is the image's index in `images`. */
function byIndex(images: readonly RgbImage[]): (keys: string[]) => RgbImage[] {
  return (keys) => keys.map((k) => images[Number(k)]!);
}

function embedder(model: SceneModel, images: readonly RgbImage[]): EvalEmbedder {
  const pick = byIndex(images);
  return { embedImages: (keys) => model.embedImages(pick(keys)), embedTexts: (t) => model.embedTexts(t) };
}

/** Zero-shot top-1 per language on single-object `records` (rendered as `images`). */
export async function sceneZeroShot(model: SceneModel, records: readonly SceneRecord[], images: readonly RgbImage[], langs: readonly SceneLanguage[] = SCENE_LANGUAGES): Promise<Record<SceneLanguage, number>> {
  const labels = sceneLabels(langs);
  const items = records.map((s, i) => {
    const o = s.spec.objects[0]!;
    return { path: String(i), label: labels.classes.findIndex((c) => c.colour === o.colour && c.shape === o.shape) };
  });
  const classes = labels.classes.map((c) => c.id);
  const out = {} as Record<SceneLanguage, number>;
  for (const lang of langs) {
    const prompts = labels.languages[lang]!.prompts;
    const r = await evalZeroShot(embedder(model, images), { classes, items }, { templates: ["{}"], labels: Object.fromEntries(classes.map((c, k) => [c, prompts[k]!])) });
    out[lang] = r.top1;
  }
  return out;
}

/** Retrieval R@1 both ways on `records` and their captions. */
export async function sceneRetrieval(model: SceneModel, records: readonly SceneRecord[], images: readonly RgbImage[]): Promise<{ imageToText: number; textToImage: number }> {
  const data = { images: records.map((_, i) => String(i)), texts: records.map((s, i) => ({ text: s.caption, image: i, lang: s.lang })) };
  const r = await evalRetrieval(embedder(model, images), data, [1]);
  return { imageToText: r.imageToText["R@1"]!, textToImage: r.textToImage["R@1"]! };
}

/** Referring-expression Acc@0.5 (and mean IoU) on the first region of each record. */
export async function sceneLocate(model: Pick<SceneModel, "locateSettled">, records: readonly SceneRecord[], images: readonly RgbImage[]): Promise<{ accuracy: number; meanIoU: number; unanswered: number }> {
  const pick = byIndex(images);
  const lm: LocateModel = { locateSettled: (q, keys) => model.locateSettled(q, pick(keys)) };
  const items = records.map((s, i) => ({ image: String(i), text: s.regions[0]!.text, box: s.regions[0]!.box }));
  const r = await evalLocate(lm, { items, images: records.length });
  return { accuracy: r.accuracy, meanIoU: r.meanIoU, unanswered: r.unanswered };
}

/** Per-patch features (one Float32Array per patch) and labels of `records`. */
async function patchSet(model: SceneModel, records: readonly SceneRecord[], images: readonly RgbImage[]): Promise<{ x: Float32Array[]; y: number[] }> {
  const feats = await model.imageFeatures([...images], { patches: true });
  const x: Float32Array[] = [];
  const y: number[] = [];
  feats.forEach((f, i) => {
    const n = f.gridH * f.gridW;
    const d = f.patches!.length / n;
    const lab = patchLabels(records[i]!.spec, f.gridH); // square grids (fixed-resolution towers)
    for (let p = 0; p < n; p++) {
      x.push(f.patches!.slice(p * d, (p + 1) * d));
      y.push(lab[p]!);
    }
  });
  return { x, y };
}

/** Dense probe: a linear classifier of {@link DENSE_CLASSES} per patch, trained on `train`, mean IoU on `test`. */
export async function sceneDenseProbe(
  model: SceneModel,
  train: { records: readonly SceneRecord[]; images: readonly RgbImage[] },
  test: { records: readonly SceneRecord[]; images: readonly RgbImage[] },
  o: ProbeOptions = {},
): Promise<{ mIoU: number; perClass: number[]; pixelAccuracy: number }> {
  const a = await patchSet(model, train.records, train.images);
  const b = await patchSet(model, test.records, test.images);
  const stats = standardize(a.x);
  standardize(b.x, stats);
  const probe = trainLinearProbe(a.x, a.y, DENSE_CLASSES.length, o);
  const pred = predictLinearProbe(probe, b.x);
  const m = meanIoU(pred, b.y, DENSE_CLASSES.length);
  let hits = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === b.y[i]) hits++;
  return { ...m, pixelAccuracy: hits / pred.length };
}

/** Held-out sets of {@link sceneEncoderReport}: records with their rendered images. */
export interface SceneSet {
  records: readonly SceneRecord[];
  images: readonly RgbImage[];
}

/** An encoder's held-out figures: zero-shot (mean over the languages and each), retrieval R@1 both ways, dense mIoU. */
export interface SceneEncoderReport {
  zeroShot: number;
  zeroShotPerLang: Record<SceneLanguage, number>;
  imageToText: number;
  textToImage: number;
  denseMIoU: number;
}

/**
 * The encoder rows of the ablation tables (tools/ablate-recipe.ts): {@link sceneZeroShot} on
 * `zeroShot` (averaged over `o.langs`, default all five), {@link sceneRetrieval} on `retrieval`,
 * and {@link sceneDenseProbe} trained on `denseTrain` (with `o.probe`), scored on `denseTest`.
 */
export async function sceneEncoderReport(
  model: SceneModel,
  sets: { zeroShot: SceneSet; retrieval: SceneSet; denseTrain: SceneSet; denseTest: SceneSet },
  o: { langs?: readonly SceneLanguage[]; probe?: ProbeOptions } = {},
): Promise<SceneEncoderReport> {
  const langs = o.langs ?? SCENE_LANGUAGES;
  const zs = await sceneZeroShot(model, sets.zeroShot.records, sets.zeroShot.images, langs);
  const ret = await sceneRetrieval(model, sets.retrieval.records, sets.retrieval.images);
  const dense = await sceneDenseProbe(model, sets.denseTrain, sets.denseTest, o.probe);
  return { zeroShot: langs.reduce((s, l) => s + zs[l], 0) / langs.length, zeroShotPerLang: zs, imageToText: ret.imageToText, textToImage: ret.textToImage, denseMIoU: dense.mIoU };
}

/** Mean and sample standard deviation (n − 1; 0 for one value) of per-seed figures. */
export function meanSd(xs: readonly number[]): { mean: number; sd: number } {
  if (xs.length === 0) throw new Error("internal: meanSd of no values");
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
}

/** How arm `b` compares with arm `a` over the same seeds ({@link compareSeeds}). */
export interface SeedComparison {
  /** mean(b) − mean(a). */
  delta: number;
  /** The noise scale: the larger of the two arms' seed standard deviations. */
  sd: number;
  /** |delta| ≤ 2·sd (so two equal arms are within noise; always true with one seed: there is no noise estimate). */
  withinNoise: boolean;
  /** Seeds where b is above / below a (the rest are ties). */
  above: number;
  below: number;
  seeds: number;
}

/**
 * Compare two arms measured on the same seeds (`a[i]`, `b[i]` from seed i): the difference of the
 * means is within noise when it is at most twice the larger per-arm seed sd. A rule of thumb,
 * not a test: with three seeds a paired t-test at 95 % would want about 4.3 standard errors.
 */
export function compareSeeds(a: readonly number[], b: readonly number[]): SeedComparison {
  if (a.length !== b.length || a.length === 0) throw new Error(`internal: compareSeeds wants the same non-zero number of seeds, got ${a.length} and ${b.length}`);
  const ma = meanSd(a), mb = meanSd(b);
  const delta = mb.mean - ma.mean;
  const sd = Math.max(ma.sd, mb.sd);
  let above = 0, below = 0;
  a.forEach((x, i) => { if (b[i]! > x) above++; else if (b[i]! < x) below++; });
  return { delta, sd, withinNoise: a.length < 2 || Math.abs(delta) <= 2 * sd, above, below, seeds: a.length };
}
