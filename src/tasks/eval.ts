/**
 * Evaluation harness, as CLIP-style models are evaluated (training-recipe.md §7.1):
 * - zero-shot classification on an ImageFolder layout (one folder per class, named by its label),
 *   prompt-ensembled over templates → top-1, top-5, per-class accuracy;
 * - image↔text retrieval on a manifest (JSON Lines `{"image", "text" | "texts", "lang"?}`) → R@1/5/10
 *   both ways, overall and per language;
 * - referring-expression localisation (LocCa `locate`) on a manifest with regions (JSON Lines
 *   `{"image", "regions": [{"box": [x0, y0, x1, y1], "text"}]}`, pixels of the original image) →
 *   Acc@0.5 (the fraction of regions whose predicted box has IoU ≥ 0.5 with the true one) and mean IoU.
 *
 * The model is anything that embeds images and texts to L2-normalised vectors (`EvalEmbedder`: the
 * `SigLIP2` class is one), so the harness sits below the interfaces and the trainer can call it on
 * in-memory weights too. Every input must embed: an unreadable image is an error naming it, never a
 * silently smaller test set.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { extname, join, resolve, dirname } from "node:path";
import { SiglipError, errorMessage } from "../errors.js";
import { dot } from "./similarity.js";
import {
  accuracyAtIoU, boxIoU, classificationMetrics, ensembleClassEmbeddings, retrievalMetrics, type Box, type ClassificationMetrics, type RetrievalMetrics,
} from "./metrics.js";

/** What the harness needs of a model. Embeddings must be L2-normalised. */
export interface EvalEmbedder {
  embedImages(paths: string[]): Promise<Float32Array[]>;
  embedTexts(texts: string[]): Promise<Float32Array[]>;
}

/** Image file extensions an ImageFolder class may hold (others, and dot files, are ignored). */
export const EVAL_IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif", ".tif", ".tiff"]);

/** The default prompt: the class name alone in a short English template. */
export const DEFAULT_TEMPLATES: readonly string[] = ["a photo of a {}."];

export interface ImageFolder {
  /** Class folder names, sorted (the class index is the position). */
  classes: string[];
  items: Array<{ path: string; label: number }>;
}

/** Read an ImageFolder layout: `DIR/<class>/<image>`; classes sorted by folder name. */
export function readImageFolder(dir: string): ImageFolder {
  let entries: string[];
  try {
    entries = readdirSync(dir).filter((n) => !n.startsWith(".")).sort();
  } catch (e) {
    throw new SiglipError("input", `${dir}: not a readable folder (${errorMessage(e)})`, { subject: dir });
  }
  const classes = entries.filter((n) => statSync(join(dir, n)).isDirectory());
  if (classes.length < 2) throw new SiglipError("input", `${dir}: an ImageFolder needs at least two class folders, found ${classes.length}`, { subject: dir });
  const items: ImageFolder["items"] = [];
  classes.forEach((c, label) => {
    for (const f of readdirSync(join(dir, c)).sort()) {
      if (f.startsWith(".") || !EVAL_IMAGE_EXTENSIONS.has(extname(f).toLowerCase())) continue;
      items.push({ path: join(dir, c, f), label });
    }
  });
  if (items.length === 0) throw new SiglipError("input", `${dir}: no images in the class folders`, { subject: dir });
  return { classes, items };
}

export interface ZeroShotOptions {
  /** Display label per class folder (default: the folder name with `_` as spaces). */
  labels?: Record<string, string>;
  /** Prompt templates, `{}` standing for the label (default DEFAULT_TEMPLATES). */
  templates?: readonly string[];
}

export interface ZeroShotReport extends ClassificationMetrics {
  templates: string[];
}

/** Fill a template: every `{}` becomes the label (a template without `{}` is an error). */
export function fillTemplate(template: string, label: string): string {
  if (!template.includes("{}")) throw new SiglipError("usage", `template ${JSON.stringify(template)} has no {} for the label`);
  return template.split("{}").join(label);
}

/** Zero-shot classification of an ImageFolder with prompt ensembling. */
export async function evalZeroShot(model: EvalEmbedder, folder: ImageFolder, o: ZeroShotOptions = {}): Promise<ZeroShotReport> {
  const templates = [...(o.templates ?? DEFAULT_TEMPLATES)];
  if (templates.length === 0) throw new SiglipError("usage", "at least one template is needed");
  const names = folder.classes.map((c) => o.labels?.[c] ?? c.replace(/_/g, " "));
  const prompts = names.flatMap((n) => templates.map((t) => fillTemplate(t, n)));
  const textEmb = await model.embedTexts(prompts);
  const perClass = names.map((_, c) => textEmb.slice(c * templates.length, (c + 1) * templates.length));
  const classEmb = ensembleClassEmbeddings(perClass);
  const imageEmb = await model.embedImages(folder.items.map((it) => it.path));
  const scores = imageEmb.map((im) => classEmb.map((c) => dot(im, c)));
  return { ...classificationMetrics(scores, folder.items.map((it) => it.label), names), templates };
}

export interface RetrievalData {
  images: string[];
  texts: Array<{ text: string; image: number; lang?: string }>;
}

/**
 * Read a retrieval manifest: JSON Lines, one image per line with `"text"` (one caption) or
 * `"texts"` (several), optional `"lang"`; relative image paths are relative to the manifest.
 */
export function readRetrievalManifest(file: string): RetrievalData {
  const data: RetrievalData = { images: [], texts: [] };
  forEachManifestRow(file, (r, image, fail) => {
    const texts = r.texts !== undefined ? r.texts : r.text !== undefined ? [r.text] : r.caption !== undefined ? [r.caption] : undefined;
    if (!Array.isArray(texts) || texts.length === 0 || !texts.every((t) => typeof t === "string")) fail(`"text" must be a string or "texts" a non-empty list of strings`);
    if (r.lang !== undefined && typeof r.lang !== "string") fail(`"lang" must be a string`);
    const idx = data.images.push(image) - 1;
    for (const text of texts as string[]) data.texts.push(r.lang === undefined ? { text, image: idx } : { text, image: idx, lang: r.lang as string });
  });
  if (data.images.length === 0) throw new SiglipError("input", `${file}: no rows`, { subject: file });
  return data;
}

/**
 * Each row of a JSON Lines manifest: blank lines skipped; a row must be a JSON object with a
 * non-empty `"image"` (resolved against the manifest's folder). `fail` throws one error naming
 * FILE:LINE.
 */
function forEachManifestRow(file: string, each: (row: Record<string, unknown>, image: string, fail: (what: string) => never) => void): void {
  let raw: string;
  try {
    raw = readFileSync(file, "utf8");
  } catch (e) {
    throw new SiglipError("input", `${file}: cannot read the manifest (${errorMessage(e)})`, { subject: file });
  }
  const base = dirname(resolve(file));
  raw.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const fail = (what: string): never => {
      throw new SiglipError("input", `${file}:${i + 1}: ${what}`, { subject: file });
    };
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      fail("not a JSON object");
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) fail("not a JSON object");
    const r = row as Record<string, unknown>;
    if (typeof r.image !== "string" || r.image === "") fail(`"image" must be a non-empty string`);
    each(r, resolve(base, r.image as string), fail);
  });
}

export interface RetrievalReport extends RetrievalMetrics {
  /** Per language (texts of that language, against the images they describe). */
  perLang: Record<string, RetrievalMetrics>;
}

/** Retrieval recall@K both ways, overall and per language. */
export async function evalRetrieval(model: EvalEmbedder, data: RetrievalData, ks: readonly number[] = [1, 5, 10]): Promise<RetrievalReport> {
  const imageEmb = await model.embedImages(data.images);
  const textEmb = await model.embedTexts(data.texts.map((t) => t.text));
  const sim = imageEmb.map((im) => textEmb.map((tx) => dot(im, tx)));
  const all = retrievalMetrics(sim, data.texts.map((t) => t.image), ks);
  const perLang: Record<string, RetrievalMetrics> = {};
  const langs = [...new Set(data.texts.flatMap((t) => (t.lang === undefined ? [] : [t.lang])))].sort();
  for (const lang of langs) {
    const tIdx = data.texts.flatMap((t, i) => (t.lang === lang ? [i] : []));
    const imgs = [...new Set(tIdx.map((i) => data.texts[i]!.image))].sort((a, b) => a - b);
    const pos = new Map(imgs.map((im, k) => [im, k]));
    const sub = imgs.map((im) => tIdx.map((t) => sim[im]![t]!));
    perLang[lang] = retrievalMetrics(sub, tIdx.map((t) => pos.get(data.texts[t]!.image)!), ks);
  }
  return { ...all, perLang };
}

/** What the localisation eval needs of a model (`SigLIP2.locateSettled` is one). */
export interface LocateModel {
  locateSettled(query: string, images: string[]): Promise<Array<{ box: readonly [number, number, number, number]; score: number } | SiglipError>>;
}

export interface LocateData {
  /** One referring expression per region: the image, the text, the true box (pixels). */
  items: Array<{ image: string; text: string; box: Box }>;
  images: number;
}

/** Read a localisation manifest (see the module comment); relative image paths are relative to the manifest. */
export function readLocateManifest(file: string): LocateData {
  const data: LocateData = { items: [], images: 0 };
  forEachManifestRow(file, (r, image, fail) => {
    if (!Array.isArray(r.regions) || r.regions.length === 0) fail(`"regions" must be a non-empty list of {"box": [x0, y0, x1, y1], "text"}`);
    (r.regions as unknown[]).forEach((g, k) => {
      const reg = g as { box?: unknown; text?: unknown };
      if (typeof g !== "object" || g === null || typeof reg.text !== "string" || reg.text.trim() === "") fail(`region ${k + 1}: "text" must be a non-empty string`);
      const b = reg.box;
      if (!Array.isArray(b) || b.length !== 4 || !b.every((v) => typeof v === "number" && Number.isFinite(v))) fail(`region ${k + 1}: "box" must be four finite numbers [x0, y0, x1, y1]`);
      const [x0, y0, x1, y1] = b as number[];
      if (!(x0! < x1! && y0! < y1!)) fail(`region ${k + 1}: box [${(b as number[]).join(", ")}] has no area (need x0 < x1 and y0 < y1)`);
      data.items.push({ image, text: reg.text as string, box: [x0!, y0!, x1!, y1!] });
    });
    data.images++;
  });
  if (data.items.length === 0) throw new SiglipError("input", `${file}: no rows`, { subject: file });
  return data;
}

export interface LocateReport {
  regions: number;
  images: number;
  threshold: number;
  /** Acc@threshold: regions whose predicted box has IoU ≥ threshold with the truth. */
  accuracy: number;
  meanIoU: number;
  /** Regions where the decoder's answer was not a box (counted as misses, IoU 0). */
  unanswered: number;
}

/**
 * Localisation accuracy: each region's text is located in its image (regions sharing a text are
 * one batch). A decoder answer that is not a box is a miss; an unreadable image is an error.
 */
export async function evalLocate(model: LocateModel, data: LocateData, threshold = 0.5): Promise<LocateReport> {
  const byText = new Map<string, number[]>();
  data.items.forEach((it, i) => byText.set(it.text, [...(byText.get(it.text) ?? []), i]));
  const pred: Box[] = data.items.map(() => [0, 0, 0, 0]);
  let unanswered = 0;
  for (const [text, idx] of byText) {
    const res = await model.locateSettled(text, idx.map((i) => data.items[i]!.image));
    res.forEach((r, k) => {
      if (r instanceof SiglipError) {
        if (r.code !== "output") throw r;
        unanswered++;
      } else {
        pred[idx[k]!] = r.box;
      }
    });
  }
  const truth = data.items.map((it) => it.box);
  const ious = pred.map((p, i) => boxIoU(p, truth[i]!));
  return {
    regions: data.items.length,
    images: data.images,
    threshold,
    accuracy: accuracyAtIoU(pred, truth, threshold),
    meanIoU: ious.reduce((a, b) => a + b, 0) / ious.length,
    unanswered,
  };
}
