/**
 * The multilingual mix (SigLIP 2 §2.1: 90% English, 10% other languages): `--lang-mix
 * en=0.9,other=0.1` reweights sampling per language. Manifest rows carry `lang` (a language
 * code, e.g. "en", "zh"); `other` stands for every language of the data that is not named, and
 * its weight is shared among them in proportion to their rows (so within `other` rows are drawn
 * uniformly). Weights are relative (normalised to sum 1); a language of the data with no weight
 * (not named, no `other`) is never drawn.
 *
 * Sampling: batch `step` draws each slot's language i.i.d. from the weights, then that
 * language's examples uniformly without replacement within the batch, all from one RNG seeded
 * by (seed, step) — a pure function of (seed, step), so `--resume` sees the same batches. When
 * a language has fewer rows than a batch draws of it, the extra slots go to the other weighted
 * languages (in proportion to their weights). The realised mix is counted over the examples the
 * run trains on (after curation, when both are on).
 */
import { SiglipError } from "../errors.js";
import { Rng, mixSeed } from "./rng.js";

/** Mixed into the seed of the per-step sampling RNG. */
const LANG_STREAM = 0x1a9c;

/** A parsed `--lang-mix`: weights by language code, and the weight of `other`. */
export interface LangMixSpec {
  weights: Record<string, number>;
  other?: number;
}

const CODE = /^[a-z]{2,3}([-_][a-z0-9]{2,8})*$/i;

/** Parse `en=0.9,other=0.1` (weights: finite numbers ≥ 0, at least one > 0). */
export function parseLangMix(s: string): LangMixSpec {
  const out: LangMixSpec = { weights: {} };
  const parts = s.split(",").map((p) => p.trim());
  if (parts.length === 0 || parts.every((p) => p === "")) throw new SiglipError("usage", `--lang-mix is empty (expected LANG=WEIGHT,…, e.g. en=0.9,other=0.1)`);
  for (const p of parts) {
    const m = /^([^=\s]+)=([^=]+)$/.exec(p);
    if (!m) throw new SiglipError("usage", `--lang-mix: ${JSON.stringify(p)} is not LANG=WEIGHT (e.g. en=0.9,other=0.1)`);
    const [, key, w] = m as unknown as [string, string, string];
    const v = /^\s*(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$/.test(w) ? Number(w) : NaN;
    if (!Number.isFinite(v) || v < 0) throw new SiglipError("usage", `--lang-mix: the weight of ${key} must be a finite number ≥ 0, got ${JSON.stringify(w)}`);
    if (key === "other") {
      if (out.other !== undefined) throw new SiglipError("usage", "--lang-mix: other given twice");
      out.other = v;
      continue;
    }
    if (!CODE.test(key)) throw new SiglipError("usage", `--lang-mix: ${JSON.stringify(key)} is not a language code (expected e.g. en, de, zh, pt-br, or other)`);
    if (key in out.weights) throw new SiglipError("usage", `--lang-mix: language ${key} given twice`);
    out.weights[key] = v;
  }
  const total = Object.values(out.weights).reduce((a, b) => a + b, 0) + (out.other ?? 0);
  if (!(total > 0)) throw new SiglipError("usage", "--lang-mix: every weight is 0; give at least one language a positive weight");
  return out;
}

/** The settings string of a spec (for resume checks and logs), canonical order. */
export function langMixString(spec: LangMixSpec): string {
  const named = Object.keys(spec.weights).sort().map((k) => `${k}=${spec.weights[k]}`);
  return [...named, ...(spec.other !== undefined ? [`other=${spec.other}`] : [])].join(",");
}

/** Draws batches with a language mix from rows whose languages are known. */
export class LangMixSampler {
  /** Row indices per weighted language (languages in order of first appearance). */
  private readonly pools: Array<{ lang: string; rows: number[]; weight: number }>;
  /** The requested share of each language of the data (normalised; 0 for unweighted ones). */
  readonly requested: Record<string, number>;

  /**
   * `langs[i]`: the language of row i. Every named language must occur in the data (else an
   * unknown key: one clear line), and `other` with a positive weight needs a language that is
   * not named.
   */
  constructor(readonly spec: LangMixSpec, langs: readonly string[], source = "the data") {
    const byLang = new Map<string, number[]>();
    langs.forEach((l, i) => {
      let a = byLang.get(l);
      if (!a) byLang.set(l, (a = []));
      a.push(i);
    });
    const known = [...byLang.keys()];
    for (const k of Object.keys(spec.weights)) {
      if (!byLang.has(k)) throw new SiglipError("usage", `--lang-mix: no row of ${source} has lang ${JSON.stringify(k)} (its languages: ${known.join(", ")})`);
    }
    const others = known.filter((l) => !(l in spec.weights));
    if ((spec.other ?? 0) > 0 && others.length === 0) throw new SiglipError("usage", `--lang-mix: other has weight ${spec.other} but every language of ${source} (${known.join(", ")}) is named`);
    // `other` is shared among the unnamed languages in proportion to their rows
    const otherRows = others.reduce((s, l) => s + byLang.get(l)!.length, 0);
    const raw = known.map((l) => ({ lang: l, rows: byLang.get(l)!, weight: l in spec.weights ? spec.weights[l]! : ((spec.other ?? 0) * byLang.get(l)!.length) / otherRows }));
    const total = raw.reduce((s, p) => s + p.weight, 0);
    this.requested = Object.fromEntries(raw.map((p) => [p.lang, p.weight / total]));
    this.pools = raw.filter((p) => p.weight > 0).map((p) => ({ ...p, weight: p.weight / total }));
    const rows = this.pools.reduce((s, p) => s + p.rows.length, 0);
    this.drawable = rows;
  }

  /** Rows that can be drawn (those of weighted languages). */
  readonly drawable: number;

  /** The dataset indices of batch `step` (`size` examples; see the module comment). */
  indices(size: number, seed: number, step: number): number[] {
    if (size > this.drawable) throw new SiglipError("usage", `--lang-mix: a batch of ${size} needs ${size} rows of the weighted languages; the data has ${this.drawable}`);
    const rng = new Rng(mixSeed(mixSeed(seed, LANG_STREAM), step));
    const left = this.pools.map((p) => p.rows.length);
    const taken = this.pools.map(() => new Set<number>());
    const out: number[] = [];
    for (let s = 0; s < size; s++) {
      const total = this.pools.reduce((a, p, k) => a + (left[k]! > 0 ? p.weight : 0), 0);
      let u = rng.next() * total;
      let k = -1;
      for (let j = 0; j < this.pools.length; j++) {
        if (left[j] === 0) continue;
        k = j; // the last language with rows left catches rounding at the end
        if (u < this.pools[j]!.weight) break;
        u -= this.pools[j]!.weight;
      }
      const pool = this.pools[k]!;
      let r: number;
      do r = pool.rows[Math.floor(rng.next() * pool.rows.length)]!; while (taken[k]!.has(r));
      taken[k]!.add(r);
      left[k]!--;
      out.push(r);
    }
    return out;
  }
}

/** Counts of languages among dataset rows `indices`. */
export function countLangs(langs: readonly string[], indices: readonly number[], into: Record<string, number> = {}): Record<string, number> {
  for (const i of indices) into[langs[i]!] = (into[langs[i]!] ?? 0) + 1;
  return into;
}

/** Shares (sum 1) from counts. */
export function shares(counts: Record<string, number>): Record<string, number> {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, total > 0 ? v / total : 0]));
}
