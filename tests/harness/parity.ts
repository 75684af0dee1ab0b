/**
 * llm.c-style parity harness: run our engine on a fixture checkpoint and diff every
 * stage against the golden tensors that transformers wrote
 * (tools/reference/make_fixtures.py). Used by tests/model-parity.test.ts and by
 * tools/parity-table.ts (which prints the README's table).
 *
 * Tolerances are spec §7.2.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SigLIP2 } from "../../src/api.js";
import type { FixresVisionTower } from "../../src/models/siglip.js";
import type { NaflexVisionTower } from "../../src/models/siglip2.js";
import { rowCosines } from "../../src/tasks/similarity.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";

import { FIXTURES, REPO } from "./paths.js";

export { FIXTURES, REPO };

export interface Manifest {
  fixture: string;
  model_dir: string;
  images: string[];
  texts: string[];
  zero_shot?: { labels: string[]; template: string; images: string[] };
  /** Goldens deliberately not stored (size budget), with the reason; "use X.safetensors" points to an identical copy. */
  omitted_tensors?: Record<string, string>;
}

export function loadManifest(name: string): Manifest {
  return JSON.parse(readFileSync(join(FIXTURES, "goldens", `${name}.json`), "utf8")) as Manifest;
}

/** One compared stage. */
export interface StageResult {
  stage: string;
  /** Max absolute difference (for ids/pixels: number of mismatching elements when `exact`). */
  maxAbs: number;
  /** Allowed max-abs. */
  tol: number;
  exact: boolean;
  /** Smallest per-row cosine similarity, for hidden states and pooled outputs. */
  minCos?: number;
  ok: boolean;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d; // NaN propagates as Infinity-like failure
  }
  return Number.isNaN(m) ? Infinity : m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Smallest cosine between corresponding rows of length `d`. */
function minRowCos(a: ArrayLike<number>, b: ArrayLike<number>, d: number): number {
  return Math.min(1, ...rowCosines(a, b, d));
}

function concat(vs: ArrayLike<number>[]): Float64Array {
  const n = vs.reduce((a, v) => a + v.length, 0);
  const out = new Float64Array(n);
  let o = 0;
  for (const v of vs) {
    for (let i = 0; i < v.length; i++) out[o + i] = v[i]!;
    o += v.length;
  }
  return out;
}

class Collector {
  readonly results: StageResult[] = [];
  private readonly others = new Map<string, SafetensorsFile>();

  constructor(private readonly golden: SafetensorsFile, private readonly omitted: Record<string, string> = {}) {}

  /** Golden for `name`, from this fixture or the identical copy its manifest points to; null when deliberately omitted. */
  private lookup(name: string): Float32Array | null {
    if (this.golden.has(name)) return this.golden.readFloat32(name);
    const why = this.omitted[name];
    if (why === undefined) throw new Error(`golden ${name} is missing from ${this.golden.path} and not listed as omitted`);
    const m = /use ([\w.-]+\.safetensors)/.exec(why);
    if (!m) return null;
    let f = this.others.get(m[1]!);
    if (!f) {
      f = SafetensorsFile.open(join(FIXTURES, "goldens", m[1]!));
      this.others.set(m[1]!, f);
    }
    return f.readFloat32(name);
  }

  has(name: string): boolean {
    return this.golden.has(name) || (this.omitted[name] !== undefined && /use /.test(this.omitted[name]!));
  }

  ref(name: string): Float32Array {
    const r = this.lookup(name);
    if (!r) throw new Error(`golden ${name} omitted`);
    return r;
  }

  close(): void {
    for (const f of this.others.values()) f.close();
  }

  exact(stage: string, ours: ArrayLike<number>, golden = stage): void {
    const ref = this.lookup(golden);
    if (!ref) return;
    let bad = ours.length === ref.length ? 0 : Infinity;
    for (let i = 0; i < Math.min(ours.length, ref.length); i++) if (ours[i] !== ref[i]) bad++;
    this.results.push({ stage, maxAbs: bad, tol: 0, exact: true, ok: bad === 0 });
  }

  /** Hidden states / pooled outputs: max-abs ≤ 1e-4·max(1, ‖ref‖∞) and row cosine ≥ minCos. */
  relative(stage: string, ours: ArrayLike<number>, d: number, minCos: number, golden = stage): void {
    const ref = this.lookup(golden);
    if (!ref) return;
    const m = maxAbsDiff(ours, ref);
    const tol = 1e-4 * Math.max(1, maxAbs(ref));
    const c = ours.length === ref.length ? minRowCos(ours, ref, d) : -1;
    this.results.push({ stage, maxAbs: m, tol, exact: false, minCos: c, ok: m <= tol && c >= minCos });
  }

  absolute(stage: string, ours: ArrayLike<number>, tol: number, golden = stage): void {
    const ref = this.lookup(golden);
    if (!ref) return;
    const m = maxAbsDiff(ours, ref);
    this.results.push({ stage, maxAbs: m, tol, exact: false, ok: m <= tol });
  }
}

/** Run every stage of one fixture and compare. */
export async function measureFixture(name: string, opts: { maxStageBytes?: number } = {}): Promise<StageResult[]> {
  const man = loadManifest(name);
  const golden = SafetensorsFile.open(join(FIXTURES, "goldens", `${name}.safetensors`));
  const c = new Collector(golden, man.omitted_tensors);
  const tower = opts.maxStageBytes !== undefined ? { outputHiddenStates: true, maxStageBytes: opts.maxStageBytes } : { outputHiddenStates: true };
  const model = await SigLIP2.load(join(REPO, man.model_dir), { tower });
  try {
    const cfg = model.config;
    const imagePaths = man.images.map((p) => join(REPO, p));

    // ---- text: ids (both lowercase modes), every layer, pooled, normalised
    const ids = await model.tokenize(man.texts, { lowercase: false });
    c.exact("text.input_ids", concat(ids));
    c.exact("text.input_ids_lower", concat(await model.tokenize(man.texts, { lowercase: true })));
    const tt = await model.textTower();
    const T = tt.sequenceLength;
    const flat = new Int32Array(ids.length * T);
    ids.forEach((v, i) => flat.set(v, i * T));
    const to = await tt.run(flat, ids.length);
    const Dt = cfg.text_config.hidden_size;
    to.hiddenStates!.forEach((h, i) => c.relative(`text.hidden_states.${i}`, h, Dt, 0.99999));
    c.relative("text.last_hidden_state", to.lastHiddenState!, Dt, 0.99999);
    c.relative("text.pooler_output", to.pooled, cfg.text_config.projection_size, 0.999999);
    const textEmb = await model.embedTexts(man.texts, { lowercase: false });
    c.absolute("text.embeds", concat(textEmb), 1e-5);
    if (c.has("text_lower.embeds")) c.absolute("text_lower.embeds", concat(await model.embedTexts(man.texts, { lowercase: true })), 1e-5);

    // ---- image: pixel values (bit-exact), every layer, pooled, normalised
    const decoded = await Promise.all(imagePaths.map((p) => model.decode(p)));
    const px = concat(decoded.map((d) => model.pixelValues(d)));
    c.exact("image.pixel_values", px);
    const vt = (await model.visionTower()) as FixresVisionTower;
    const vo = await vt.run(Float32Array.from(px), decoded.length);
    const Dv = cfg.vision_config.hidden_size;
    vo.hiddenStates!.forEach((h, i) => c.relative(`image.hidden_states.${i}`, h, Dv, 0.99999));
    c.relative("image.last_hidden_state", vo.lastHiddenState, Dv, 0.99999);
    c.relative("image.pooler_output", vo.pooled, Dv, 0.999999);
    const imgEmb = await model.embedImages(imagePaths);
    c.absolute("image.embeds", concat(imgEmb), 1e-5);

    // ---- joint
    const sim = model.similarity(imgEmb, textEmb);
    c.absolute("logits_per_image", sim.logits.flat(), 1e-3);
    c.absolute("probs_per_image", sim.probabilities.flat(), 1e-4);

    if (c.has("image_pil.pixel_values")) {
      const pil = await SigLIP2.load(join(REPO, man.model_dir), { resampler: "pil" });
      c.exact("image_pil.pixel_values", concat(decoded.map((d) => pil.pixelValues(d))));
      c.absolute("image_pil.embeds", concat(await pil.embedImages(imagePaths)), 1e-5);
      await pil.close();
    }
    if (man.zero_shot && c.has("zeroshot.logits")) {
      const zs = man.zero_shot;
      const scores = await model.classify(zs.images.map((p) => join(REPO, p)), zs.labels, { template: zs.template, lowercase: false });
      // back to label order for the comparison
      const logits = scores.flatMap((s) => zs.labels.map((l) => s.find((x) => x.label === l)!.logit));
      const probs = scores.flatMap((s) => zs.labels.map((l) => s.find((x) => x.label === l)!.probability));
      c.absolute("zeroshot.logits", logits, 1e-3);
      c.absolute("zeroshot.probs", probs, 1e-4);
    }
  } finally {
    await model.close();
    golden.close();
    c.close();
  }
  return c.results;
}

export const FIXTURE_NAMES = ["fixres-f32", "fixres-f16", "fixres-bf16", "fixres-sharded", "fixres-odd"];

// ---------------------------------------------------------------------------------------------
// NaFlex fixtures (tools/reference/make_naflex_fixtures.py)

interface NaflexManifest extends Manifest {
  budgets: Record<string, { max_num_patches: number; grids: Array<[number, number]>; pixel_valid_sha256: string[] }>;
  quirk_image?: { path: string; budget: number; grid: [number, number]; pixel_valid_sha256: string };
}

function sha256(a: Float32Array): string {
  return createHash("sha256").update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest("hex");
}

/** Every stage of a NaFlex fixture, per patch budget, plus the w = 1 quirk case in both modes. */
export async function measureNaflexFixture(name: string, opts: { maxStageBytes?: number } = {}): Promise<StageResult[]> {
  const man = loadManifest(name) as NaflexManifest;
  const golden = SafetensorsFile.open(join(FIXTURES, "goldens", `${name}.safetensors`));
  const c = new Collector(golden, man.omitted_tensors);
  const tower = opts.maxStageBytes !== undefined ? { outputHiddenStates: true, maxStageBytes: opts.maxStageBytes } : { outputHiddenStates: true };
  const dir = join(REPO, man.model_dir);
  const model = await SigLIP2.load(dir, { tower });
  try {
    const cfg = model.config;
    const D = cfg.vision_config.hidden_size;
    const ids = await model.tokenize(man.texts, { lowercase: false });
    c.exact("text.input_ids", concat(ids));
    c.exact("text.input_ids_lower", concat(await model.tokenize(man.texts, { lowercase: true })));
    const textEmb = await model.embedTexts(man.texts, { lowercase: false });
    c.absolute("text.embeds", concat(textEmb), 1e-5);
    c.absolute("text_lower.embeds", concat(await model.embedTexts(man.texts, { lowercase: true })), 1e-5);
    c.relative("text.pooler_output", concat(await model.embedTexts(man.texts, { lowercase: false, normalize: false })), cfg.text_config.projection_size, 0.999999);

    const paths = man.images.map((p) => join(REPO, p));
    const decoded = await Promise.all(paths.map((p) => model.decode(p)));
    const vt = (await model.visionTower()) as NaflexVisionTower;
    for (const [key, b] of Object.entries(man.budgets)) {
      const M = b.max_num_patches;
      const patches = decoded.map((d) => model.naflexPatches(d, M));
      c.exact(`${key}.spatial_shapes`, patches.flatMap((p) => [p.gridH, p.gridW]));
      const badHash = patches.filter((p, i) => sha256(p.patches) !== b.pixel_valid_sha256[i]).length;
      c.results.push({ stage: `${key}.pixel_values (sha256)`, maxAbs: badHash, tol: 0, exact: true, ok: badHash === 0 });
      patches.forEach((p, i) => {
        if (c.has(`${key}.pixel_values.valid.${i}`)) c.exact(`${key}.pixel_values.valid.${i}`, p.patches);
        if (c.has(`${key}.position_embeddings.${i}`)) c.absolute(`${key}.position_embeddings.${i}`, vt.positions(p.gridH, p.gridW), 1e-6);
      });
      const batch = vt.prepareBatch(patches);
      const out = await vt.run(batch);
      const valid = (t: Float32Array, i: number) => t.subarray(i * batch.length * D, (i * batch.length + patches[i]!.gridH * patches[i]!.gridW) * D);
      patches.forEach((_, i) => {
        out.hiddenStates!.forEach((h, l) => {
          if (c.has(`${key}.hidden_states.${l}.${i}`)) c.relative(`${key}.hidden_states.${l}.${i}`, valid(h, i), D, 0.99999);
        });
        if (c.has(`${key}.last_hidden_state.${i}`)) c.relative(`${key}.last_hidden_state.${i}`, valid(out.lastHiddenState, i), D, 0.99999);
      });
      c.relative(`${key}.pooler_output`, out.pooled, D, 0.999999);
      const emb = await model.embedImages(paths, { maxPatches: M });
      c.absolute(`${key}.embeds`, concat(emb), 1e-5);
      c.absolute(`${key}.logits_per_image`, model.similarity(emb, textEmb).logits.flat(), 1e-3);
    }

    if (man.quirk_image) {
      const q = man.quirk_image;
      const qPath = join(REPO, q.path);
      const img = await model.decode(qPath);
      const p = model.naflexPatches(img, q.budget);
      c.exact("quirk_m256.spatial_shapes", [p.gridH, p.gridW]);
      // default: mathematically correct resize
      c.absolute("quirk_m256.position_embeddings_correct.0", vt.positions(p.gridH, p.gridW), 1e-6);
      c.absolute("quirk_m256.embeds_correct", concat(await model.embedImages([qPath], { maxPatches: q.budget })), 1e-5);
      // compat switch: PyTorch-CPU's output
      const compat = await SigLIP2.load(dir, { torchCpuCompat: true });
      const ct = (await compat.visionTower()) as NaflexVisionTower;
      c.absolute("quirk_m256.position_embeddings.0", ct.positions(p.gridH, p.gridW), 1e-6);
      c.absolute("quirk_m256.embeds", concat(await compat.embedImages([qPath], { maxPatches: q.budget })), 1e-5);
      await compat.close();
    }
  } finally {
    await model.close();
    golden.close();
    c.close();
  }
  return c.results;
}

export const NAFLEX_FIXTURE_NAMES = ["naflex-f32", "naflex-grid"];
