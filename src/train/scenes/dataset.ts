/**
 * Scene datasets for LocCa training and zero-shot checks, deterministic from a seed.
 *
 * {@link generateScenes} makes records `{ index, spec, lang, caption, regions }`, where each
 * region is an object's pixel box `[x0, y0, x1, y1]` and its referring expression. Scene `i`
 * draws its spec from `Rng(mixSeed(mixSeed(seed, i), 0))` and its language from
 * `Rng(mixSeed(mixSeed(seed, i), 1))`, so changing the language mix never changes the images.
 *
 * {@link writeSceneDataset} writes into DIR:
 * - `images/NNNNNN.png` — lossless 8-bit RGB PNGs (sharp), from either renderer;
 * - `manifest.jsonl` — one row per image: `{"image","text","lang","regions":[{"box","text"}]}`
 *   (image relative to DIR; box in pixels, rounded to 0.01);
 * - `specs.jsonl` — `{"image","spec"}` per image, to re-render with the other renderer;
 * - `labels.json` — {@link sceneLabels}: the 16 classes, names, template and prompts per language.
 * Existing files of the same names are overwritten.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import sharp from "sharp";
import { SiglipError } from "../../errors.js";
import { Rng, mixSeed } from "../rng.js";
import { SCENE_LANGUAGES, definitePhrase, sceneCaption, sceneLabels, type SceneLanguage } from "./language.js";
import { rasterizeScene, type RgbBuffer } from "./raster.js";
import { randomSceneSpec, type Box, type SceneSpec } from "./spec.js";
import { renderSceneSvg } from "./svg.js";

export type SceneRenderer = "ours" | "svg";
export const SCENE_RENDERERS: readonly SceneRenderer[] = ["ours", "svg"];

/** A language list (equal weights) or weights per language. */
export type LanguageMix = readonly SceneLanguage[] | Partial<Record<SceneLanguage, number>>;

export interface SceneOptions {
  seed: number;
  count: number;
  /** Image side in pixels (default 64, 8…2048): the width, and the height unless `height`. */
  size?: number;
  /** Image height in pixels when it differs from the width (8…2048; default: square). */
  height?: number;
  /** Default: all five languages, equal weights. */
  langs?: LanguageMix;
  /** 1…maxObjects objects per image (default 3, at most 16). */
  maxObjects?: number;
}

export interface SceneRegion {
  box: Box;
  text: string;
}

export interface SceneRecord {
  index: number;
  spec: SceneSpec;
  lang: SceneLanguage;
  caption: string;
  regions: SceneRegion[];
}

function usage(message: string): never {
  throw new SiglipError("usage", message);
}

function intIn(v: unknown, lo: number, hi: number, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) usage(`scenes: ${what} must be an integer in [${lo}, ${hi}] (got ${String(v)})`);
  return v;
}

/** Normalised language weights (cumulative), validated. */
export function languageWeights(mix: LanguageMix | undefined): { langs: SceneLanguage[]; weights: number[] } {
  const entries: [string, unknown][] = mix === undefined ? SCENE_LANGUAGES.map((l) => [l, 1]) : Array.isArray(mix) ? mix.map((l) => [l, 1]) : Object.entries(mix);
  const langs: SceneLanguage[] = [];
  const weights: number[] = [];
  for (const [l, w] of entries) {
    if (!(SCENE_LANGUAGES as readonly string[]).includes(l)) usage(`scenes: unknown language ${JSON.stringify(l)} (expected ${SCENE_LANGUAGES.join(", ")})`);
    if (typeof w !== "number" || !Number.isFinite(w) || w < 0) usage(`scenes: the weight of ${l} must be a finite number ≥ 0 (got ${String(w)})`);
    if (langs.includes(l as SceneLanguage)) usage(`scenes: language ${l} given twice`);
    if (w > 0) { langs.push(l as SceneLanguage); weights.push(w); }
  }
  const total = weights.reduce((a, b) => a + b, 0);
  if (langs.length === 0 || !(total > 0)) usage("scenes: the language mix has no language with a positive weight");
  return { langs, weights: weights.map((w) => w / total) };
}

/** Parse a CLI language mix: "en,de" (equal) or "en=3,zh=1". */
export function parseLanguageMix(s: string): LanguageMix {
  const parts = s.split(",").map((p) => p.trim()).filter(Boolean);
  if (parts.some((p) => p.includes("="))) {
    const out: Partial<Record<SceneLanguage, number>> = {};
    for (const p of parts) {
      const [l, w, extra] = p.split("=");
      if (extra !== undefined || w === undefined || !/^\d+(\.\d+)?$/.test(w)) usage(`scenes: bad language weight ${JSON.stringify(p)} (expected LANG=NUMBER)`);
      if (l! in out) usage(`scenes: language ${l} given twice`);
      out[l as SceneLanguage] = Number(w);
    }
    languageWeights(out);
    return out;
  }
  languageWeights(parts as SceneLanguage[]);
  return parts as SceneLanguage[];
}

/** Generate `count` scene records (no rendering). */
export function generateScenes(opts: SceneOptions): SceneRecord[] {
  const seed = intIn(opts.seed, 0, 2 ** 32 - 1, "the seed");
  const count = intIn(opts.count, 0, 10_000_000, "the count");
  const size = intIn(opts.size ?? 64, 8, 2048, "the size");
  const height = intIn(opts.height ?? size, 8, 2048, "the height");
  const maxObjects = intIn(opts.maxObjects ?? 3, 1, 16, "maxObjects");
  const { langs, weights } = languageWeights(opts.langs);
  const out: SceneRecord[] = [];
  for (let index = 0; index < count; index++) {
    const s = mixSeed(seed, index);
    const spec = randomSceneSpec(new Rng(mixSeed(s, 0)), height === size ? { size, maxObjects } : { size, height, maxObjects });
    let u = new Rng(mixSeed(s, 1)).next();
    let k = 0;
    while (k < langs.length - 1 && u >= weights[k]!) u -= weights[k++]!;
    const lang = langs[k]!;
    out.push({
      index,
      spec,
      lang,
      caption: sceneCaption(spec.objects, lang),
      regions: spec.objects.map((o) => ({ box: [...o.box] as Box, text: definitePhrase(o.colour, o.shape, lang) })),
    });
  }
  return out;
}

/** Render a spec with one of the two renderers. */
export async function renderScene(spec: SceneSpec, renderer: SceneRenderer = "ours"): Promise<RgbBuffer> {
  if (renderer === "ours") return rasterizeScene(spec);
  if (renderer === "svg") return renderSceneSvg(spec);
  return usage(`scenes: unknown renderer ${JSON.stringify(renderer)} (expected ours or svg)`);
}

/** Lossless PNG bytes of an RGB buffer (no metadata, fixed settings: byte-identical for equal input). */
export async function encodePng(img: RgbBuffer): Promise<Buffer> {
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), { raw: { width: img.width, height: img.height, channels: 3 } })
    .png({ compressionLevel: 9, adaptiveFiltering: false, palette: false })
    .toBuffer();
}

export interface WrittenDataset {
  dir: string;
  manifest: string;
  labels: string;
  images: string[];
}

/** The image path (relative to the dataset folder) of record `index` among `count`. */
export function sceneImageName(index: number, count: number): string {
  return `images/${String(index).padStart(Math.max(6, String(Math.max(0, count - 1)).length), "0")}.png`;
}

/** Render and write a dataset (see the module comment for the files). */
export async function writeSceneDataset(dir: string, records: readonly SceneRecord[], renderer: SceneRenderer = "ours"): Promise<WrittenDataset> {
  if (!SCENE_RENDERERS.includes(renderer)) usage(`scenes: unknown renderer ${JSON.stringify(renderer)} (expected ours or svg)`);
  await mkdir(join(dir, "images"), { recursive: true });
  const names = records.map((_, i) => sceneImageName(i, records.length));
  let next = 0;
  const worker = async () => {
    while (next < records.length) {
      const i = next++;
      const png = await encodePng(await renderScene(records[i]!.spec, renderer));
      await writeFile(join(dir, names[i]!), png);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  const manifest = records.map((r, i) => JSON.stringify({ image: names[i], text: r.caption, lang: r.lang, regions: r.regions.map((g) => ({ box: g.box, text: g.text })) }) + "\n").join("");
  const specs = records.map((r, i) => JSON.stringify({ image: names[i], spec: r.spec }) + "\n").join("");
  const manifestPath = join(dir, "manifest.jsonl");
  const labelsPath = join(dir, "labels.json");
  await writeFile(manifestPath, manifest);
  await writeFile(join(dir, "specs.jsonl"), specs);
  await writeFile(labelsPath, JSON.stringify(sceneLabels(), null, 2) + "\n");
  return { dir, manifest: manifestPath, labels: labelsPath, images: names.map((n) => join(dir, n)) };
}
