/**
 * Decoding with the LocCa decoder: greedy and beam search over next-token logits, for captions
 * (`"Cap:"`), referring expressions (`"ARef: {query} :"` → a box) and grounded captions
 * (`"GCap: {box} :"` → a caption); the prompts are those of ./boxes.ts.
 *
 * Reference: tools/reference/locca_decode_goldens.py (the same algorithm in PyTorch on the
 * reference decoder; tests/locca-infer.test.ts checks our tokens equal its tokens). Beam search
 * follows transformers' `BeamSearchScorer` with `early_stopping=True`:
 *
 * - a row is `[BOS, prompt…, generated…]`; the decoder holds at most L = max_position_embeddings
 *   tokens, so at most L − 1 − |prompt| tokens are fed back; the token predicted after a full row
 *   is the last one (also the cap `maxTokens`); a hypothesis that stops there has no EOS;
 * - each step, every live beam's log-softmax (float64) gives candidates `score + log p(v)` for its
 *   best 2B tokens; candidates are ranked by score (ties: lower beam, then lower token id); an EOS
 *   candidate ranked among the first B becomes a finished hypothesis, other candidates refill the
 *   B live beams in rank order;
 * - decoding of an image stops when it has B finished hypotheses, or nothing is left to feed; the
 *   result is the finished hypothesis with the best `logProb / tokens^α` (α = `lengthPenalty`,
 *   default 1; tokens = generated tokens, EOS included). Beam width 1 is greedy decoding.
 * - with a {@link TokenConstraint} (what `locate` uses by default: the box grammar), a beam's
 *   candidates are its best 2B *allowed* tokens; the rest is unchanged.
 *
 * Every step re-runs the decoder over whole rows (no key/value cache); the live beams of every
 * image go through the decoder as one batch.
 */
import { SiglipError } from "../errors.js";
import type { DecoderRow } from "../models/locca-infer.js";

/** Logits (S, V) of the token after each row's last token. */
export type NextLogits = (rows: DecoderRow[]) => Promise<Float32Array>;

/** What to decode for one image: its prompt ids (after BOS) and its index in the memory. */
export interface DecodePrompt {
  prompt: readonly number[];
  image: number;
}

export interface DecodeOptions {
  /** Beam width B (default 1: greedy). */
  beam?: number;
  /** Length penalty α of the final ranking (default 1). */
  lengthPenalty?: number;
  /** Most generated tokens (EOS included); default and cap: what the decoder's positions allow. */
  maxTokens?: number;
}

/**
 * Which next tokens a hypothesis may take, given the ids it has generated so far (prompt not
 * included): the allowed ids, EOS among them when the answer may end here. Decoding ranks only
 * these, by the decoder's own log-probabilities (not renormalised, so a score still says how
 * likely the decoder found the answer). A hypothesis with no allowed token ends unfinished.
 * src/tasks/boxes.ts `boxTokenConstraint` is the box grammar of `locate`.
 */
export type TokenConstraint = (generated: readonly number[]) => readonly number[];

/** The special ids and sizes decoding needs. */
export interface DecodeSpec {
  bos: number;
  eos: number;
  /** Output vocabulary V. */
  vocab: number;
  /** Decoder positions L (longest row). */
  length: number;
}

/** One decoded hypothesis. */
export interface Decoded {
  /** Generated ids (EOS last when the decoder stopped itself). */
  tokens: number[];
  /** Sum of the tokens' log-probabilities. */
  logProb: number;
  /** Whether the hypothesis ended with EOS (false: cut at `maxTokens` or the decoder's length). */
  finished: boolean;
}

/** Default beam width and length penalty. */
export const DEFAULT_BEAM = 1;
export const DEFAULT_LENGTH_PENALTY = 1;

/** Largest beam width accepted. */
export const MAX_BEAM = 16;

/** The captioning prompt (./boxes.ts `capPrompt` without its caption). */
export const CAPTION_PROMPT = "Cap:";

/**
 * The referring-expression prompt of a query: `"ARef: {query} :"`, which the decoder completes
 * with `" {box}"` (./boxes.ts `arefPrompt`). The query is trimmed; an empty one, or one that holds
 * " : " (the separator before the box), is an error.
 */
export function referPrompt(query: string): string {
  if (typeof query !== "string" || query.trim() === "") throw new SiglipError("input", "the query is empty: give the text to locate", { subject: "query" });
  const q = query.trim();
  if (q.includes(" : ")) throw new SiglipError("input", `the query ${JSON.stringify(q.slice(0, 60))} contains " : ", the separator before the box`, { subject: "query" });
  return `ARef: ${q} :`;
}

/** Bounds of the decoding options (one line naming the bad one). */
export function checkCaptionOptions(o: DecodeOptions): void {
  const bad = (what: string) => new SiglipError("options", what, { subject: what.split(" ")[0]! });
  if (o.beam !== undefined && !(Number.isInteger(o.beam) && o.beam >= 1 && o.beam <= MAX_BEAM)) throw bad(`beam must be an integer from 1 to ${MAX_BEAM} (got ${String(o.beam)})`);
  if (o.maxTokens !== undefined && !(Number.isInteger(o.maxTokens) && o.maxTokens >= 1)) throw bad(`maxTokens must be a positive integer (got ${String(o.maxTokens)})`);
  if (o.lengthPenalty !== undefined && !(typeof o.lengthPenalty === "number" && Number.isFinite(o.lengthPenalty) && Math.abs(o.lengthPenalty) <= 10)) {
    throw bad(`lengthPenalty must be a number from -10 to 10 (got ${String(o.lengthPenalty)})`);
  }
}

/** exp(mean token log-probability): the geometric-mean probability of a hypothesis's tokens. */
export function tokenScore(d: { tokens: readonly number[]; logProb: number }): number {
  return Math.exp(d.logProb / Math.max(1, d.tokens.length));
}

interface Beam {
  tokens: number[];
  logProb: number;
}

/** log-softmax of one row of logits, in float64. */
export function logSoftmax(logits: Float32Array, offset: number, V: number): Float64Array {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, logits[offset + v]!);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(logits[offset + v]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(V);
  for (let v = 0; v < V; v++) out[v] = logits[offset + v]! - lse;
  return out;
}

/** The `k` best token ids of a row (highest first; ties: lower id first). */
function topK(lp: Float64Array, k: number): number[] {
  const best: number[] = [];
  for (let v = 0; v < lp.length; v++) {
    if (best.length === k && lp[v]! <= lp[best[k - 1]!]!) continue;
    let i = best.length < k ? best.length : k - 1;
    if (best.length < k) best.push(v);
    while (i > 0 && lp[best[i - 1]!]! < lp[v]!) {
      best[i] = best[i - 1]!;
      i--;
    }
    best[i] = v;
  }
  return best;
}

/** The `k` ids of `allowed` (inside the vocabulary) with the highest log-probability (ties: lower id). */
function topOf(lp: Float64Array, allowed: readonly number[], k: number): number[] {
  return allowed.filter((v) => Number.isInteger(v) && v >= 0 && v < lp.length).sort((a, b) => lp[b]! - lp[a]! || a - b).slice(0, k);
}

/** The final ranking score of a hypothesis. */

export function normalizedScore(d: { tokens: readonly number[]; logProb: number }, alpha: number): number {
  return d.logProb / Math.max(1, d.tokens.length) ** alpha;
}

/** Decode every prompt (see the module comment); one result per prompt, in order. */
export async function decode(next: NextLogits, prompts: readonly DecodePrompt[], spec: DecodeSpec, o: DecodeOptions = {}, constraint?: TokenConstraint): Promise<Decoded[]> {
  const B = o.beam ?? DEFAULT_BEAM;
  const alpha = o.lengthPenalty ?? DEFAULT_LENGTH_PENALTY;
  const V = spec.vocab;
  const state = prompts.map((p) => {
    const room = spec.length - 1 - p.prompt.length; // tokens that can be fed back after the prompt
    if (room < 0) throw new Error(`internal: prompt of ${p.prompt.length} tokens does not fit ${spec.length} positions`);
    const cap = Math.min(room + 1, o.maxTokens ?? Infinity);
    return { p, cap, alive: [{ tokens: [], logProb: 0 }] as Beam[], done: [] as Decoded[] };
  });
  for (;;) {
    // hypotheses that reached their cap end here, without EOS
    for (const st of state) {
      if (st.alive.length > 0 && st.alive[0]!.tokens.length >= st.cap) {
        for (const b of st.alive) st.done.push({ ...b, finished: false });
        st.alive = [];
      }
    }
    const live = state.filter((st) => st.alive.length > 0);
    if (live.length === 0) break;
    const rows: DecoderRow[] = live.flatMap((st) => st.alive.map((b) => ({ ids: [spec.bos, ...st.p.prompt, ...b.tokens], image: st.p.image })));
    const logits = await next(rows);
    let r = 0;
    for (const st of live) {
      const cands: Array<{ beam: number; token: number; score: number }> = [];
      st.alive.forEach((b, bi) => {
        const lp = logSoftmax(logits, (r + bi) * V, V);
        const ids = constraint ? topOf(lp, constraint(b.tokens), 2 * B) : topK(lp, Math.min(V, 2 * B));
        for (const v of ids) cands.push({ beam: bi, token: v, score: b.logProb + lp[v]! });
      });
      r += st.alive.length;
      if (cands.length === 0) {
        // the constraint allowed nothing after any live beam: they end here, unfinished
        for (const b of st.alive) st.done.push({ ...b, finished: false });
        st.alive = [];
        continue;
      }
      cands.sort((a, b) => b.score - a.score || a.beam - b.beam || a.token - b.token);
      const nextAlive: Beam[] = [];
      for (let rank = 0; rank < cands.length && nextAlive.length < B; rank++) {
        const c = cands[rank]!;
        const tokens = [...st.alive[c.beam]!.tokens, c.token];
        if (c.token === spec.eos) {
          if (rank < B) st.done.push({ tokens, logProb: c.score, finished: true });
        } else {
          nextAlive.push({ tokens, logProb: c.score });
        }
      }
      st.alive = st.done.length >= B ? [] : nextAlive;
    }
  }
  return state.map((st) => {
    let best = st.done[0]!;
    for (const d of st.done) if (normalizedScore(d, alpha) > normalizedScore(best, alpha)) best = d;
    return best;
  });
}
