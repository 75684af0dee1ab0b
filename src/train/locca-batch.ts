/**
 * LocCa decoder sequences from prompts (training-recipe §2): the arrays a training graph with
 * the "locca" objective takes (src/train/model.ts `LOCCA_INPUTS`, src/train/session.ts
 * `DecoderBatch`), in the layout of the golden (tools/reference/locca_goldens.py).
 *
 * One sequence of length L from a prompt (src/tasks/boxes.ts: text = prefix + " " + target):
 * - targets: the content ids of the text, truncated to L − 1, then EOS, then PAD;
 * - weights: 0 on the prefix tokens (the tokens of the prefix alone, which must be the first
 *   tokens of the text), 1 on the rest up to and including EOS, 0 on PAD;
 * - decoder input, causal row: BOS, then the targets shifted right by one, PAD after;
 *   parallel row: the mask token (id V) at every position, and all-ones self-attention.
 * Only captions may be parallel: with probability 0.5 per example (CapPa `masked_pred_prob`,
 * masking ratio 1); referring expressions and grounded captions are always causal.
 *
 * A batch: the n captions first (row i = image i), then ARef and GCap of each image that has
 * regions, then the extra referring expressions of each image (`extraArefs`, only with the
 * trainer's `arefRows` > 1), then empty rows (weight 0: left out of the loss) up to the graph's
 * static S (3n; (2 + arefRows)·n with extra referring expressions).
 */
import type { LocCaPrompt, LocCaTask } from "../tasks/boxes.js";
import type { LocCaTargets } from "./scenes/locca.js";
import type { Rng } from "./rng.js";
import type { DecoderBatch } from "./session.js";

/** Special ids of the decoder's vocabulary (Gemma: pad 0, eos 1, bos 2; mask = vocab size). */
export interface DecoderSpecials {
  bos: number;
  eos: number;
  pad: number;
  mask: number;
}

/** One decoder row, L entries each. */
export interface DecoderSequence {
  inputIds: number[];
  targets: number[];
  weights: number[];
  causal: boolean;
}

/** Probability that a caption row is predicted in parallel (SigLIP 2 §2.2). */
export const PARALLEL_PROBABILITY = 0.5;

/** Whether this example's row of `task` is parallel: captions only, with probability `p`. Draws from `rng` for captions only. */
export function chooseParallel(task: LocCaTask, rng: Rng, p = PARALLEL_PROBABILITY): boolean {
  return task === "cap" && rng.next() < p;
}

/** The decoder row of one prompt (see the module comment); `tokenize` gives content ids (no BOS/EOS). */
export function buildSequence(prompt: LocCaPrompt, tokenize: (text: string) => number[], length: number, sp: DecoderSpecials, parallel: boolean): DecoderSequence {
  if (!Number.isInteger(length) || length < 2) throw new Error(`internal: decoder length ${length} < 2`);
  if (parallel && prompt.task !== "cap") throw new Error(`internal: only captions are predicted in parallel (got ${prompt.task})`);
  const ids = tokenize(prompt.text);
  const prefix = tokenize(prompt.prefix);
  if (prefix.some((id, i) => ids[i] !== id)) throw new Error(`internal: the prefix ${JSON.stringify(prompt.prefix)} does not tokenise as the start of ${JSON.stringify(prompt.text)}`);
  const toks = [...ids.slice(0, length - 1), sp.eos];
  const n = toks.length;
  const pad = (a: number[], v: number): number[] => [...a, ...new Array<number>(length - a.length).fill(v)];
  const targets = pad(toks, sp.pad);
  const weights = targets.map((_, k) => (k >= prefix.length && k < n ? 1 : 0));
  const inputIds = parallel ? new Array<number>(length).fill(sp.mask) : pad([sp.bos, ...toks.slice(0, n - 1)], sp.pad);
  return { inputIds, targets, weights, causal: !parallel };
}

/** What {@link buildDecoderBatch} needs. */
export interface DecoderBatchOptions {
  /** Decoder length L. */
  length: number;
  /** Rows S of the graph (default 3 · number of examples). */
  sequences?: number;
  specials: DecoderSpecials;
  tokenize: (text: string) => number[];
  /** Draws the parallel choice of each caption. */
  rng: Rng;
  parallelProbability?: number;
}

/** The decoder rows of a batch: per example (image i) its LocCa targets (src/train/scenes/locca.ts). */
export function buildDecoderBatch(examples: readonly LocCaTargets[], o: DecoderBatchOptions): DecoderBatch & { sequences: number; used: number } {
  const L = o.length;
  const rows: Array<{ seq: DecoderSequence; image: number }> = [];
  examples.forEach((ex, i) => {
    const parallel = chooseParallel("cap", o.rng, o.parallelProbability);
    rows.push({ seq: buildSequence(ex.cap, o.tokenize, L, o.specials, parallel), image: i });
  });
  examples.forEach((ex, i) => {
    for (const p of [ex.aref, ex.gcap]) if (p) rows.push({ seq: buildSequence(p, o.tokenize, L, o.specials, false), image: i });
  });
  examples.forEach((ex, i) => {
    for (const p of ex.extraArefs ?? []) rows.push({ seq: buildSequence(p, o.tokenize, L, o.specials, false), image: i });
  });
  const S = o.sequences ?? 3 * examples.length;
  if (rows.length > S) throw new Error(`internal: ${rows.length} decoder sequences for ${S} rows`);
  const out = {
    inputIds: new BigInt64Array(S * L).fill(BigInt(o.specials.pad)),
    targets: new BigInt64Array(S * L).fill(BigInt(o.specials.pad)),
    weights: new Float32Array(S * L),
    causal: new BigInt64Array(S).fill(1n),
    image: new BigInt64Array(S),
    sequences: S,
    used: rows.length,
  };
  rows.forEach(({ seq, image }, s) => {
    out.inputIds.set(seq.inputIds.map(BigInt), s * L);
    out.targets.set(seq.targets.map(BigInt), s * L);
    out.weights.set(seq.weights, s * L);
    out.causal[s] = seq.causal ? 1n : 0n;
    out.image[s] = BigInt(image);
  });
  return out;
}
