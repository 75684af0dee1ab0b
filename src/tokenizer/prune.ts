/**
 * A sub-vocabulary of the Gemma tokenizer for small models: keep the tokens a corpus uses, every
 * token and merge they are built from, the 217 added tokens and the 256 byte-fallback tokens
 * (ids 0–472, unchanged), and renumber the rest contiguously in their Gemma order.
 *
 * Why it tokenises the corpus exactly as Gemma does: BPE applies, at each step, the best-ranked merge
 * among the adjacent pairs present. Every merge Gemma applies to a corpus text produces a token that is
 * either in the output or merged further, so it is an ancestor of an output token and is kept. A merge
 * that is dropped was never the best-ranked present pair for these texts (else it would have been
 * applied), so dropping it changes no step. Texts outside the corpus still tokenise (by the kept merges,
 * characters and byte fallback), only into more pieces.
 *
 * The result is a normal tokenizer.json (the same normalizer, decoder and post-processor) that the Rust
 * `tokenizers` library and transformers' GemmaTokenizer load as it is. Used for the demo model, whose
 * 256k-row token table would otherwise be most of its size.
 */
import { SiglipError } from "../errors.js";

/** Tokens with ids below this (added tokens 0–216, byte tokens 217–472 in Gemma) are always kept, with their ids. */
export const GEMMA_FIXED_IDS = 473;

interface TokenizerJsonLike {
  model: { vocab: Record<string, number>; merges: Array<string | [string, string]> };
  [k: string]: unknown;
}

export interface PrunedTokenizer {
  /** The new tokenizer.json object. */
  json: Record<string, unknown>;
  vocabSize: number;
  merges: number;
  /** Gemma id → new id, for every kept token. */
  idMap: Map<number, number>;
}

/**
 * Prune `full` (a parsed Gemma tokenizer.json) to the tokens in `usedIds` (ids the full tokenizer gave
 * for the corpus) plus their merge ancestors and the fixed low ids.
 */
export function pruneTokenizer(full: unknown, usedIds: Iterable<number>): PrunedTokenizer {
  const tj = full as TokenizerJsonLike;
  if (typeof tj !== "object" || tj === null || typeof tj.model?.vocab !== "object" || !Array.isArray(tj.model?.merges)) {
    throw new SiglipError("input", "pruneTokenizer: not a BPE tokenizer.json (model.vocab and model.merges)");
  }
  const vocab = tj.model.vocab;
  const byId: string[] = [];
  for (const [tok, id] of Object.entries(vocab)) byId[id] = tok;
  const merges = tj.model.merges.map((m) => (typeof m === "string" ? (m.split(" ") as [string, string]) : m));
  const producers = new Map<string, Array<[string, string]>>();
  for (const m of merges) {
    if (m.length !== 2) throw new SiglipError("input", `pruneTokenizer: malformed merge ${JSON.stringify(m)}`);
    const r = m[0] + m[1];
    const list = producers.get(r);
    if (list) list.push(m);
    else producers.set(r, [m]);
  }
  const kept = new Set<string>();
  const queue: string[] = [];
  const keep = (tok: string | undefined) => {
    if (tok === undefined || kept.has(tok) || !(tok in vocab)) return;
    kept.add(tok);
    queue.push(tok);
  };
  for (let id = 0; id < GEMMA_FIXED_IDS; id++) keep(byId[id]);
  for (const id of usedIds) {
    if (byId[id] === undefined) throw new SiglipError("input", `pruneTokenizer: id ${id} is not in the vocabulary`);
    keep(byId[id]);
  }
  while (queue.length > 0) {
    const tok = queue.pop()!;
    for (const [a, b] of producers.get(tok) ?? []) {
      keep(a);
      keep(b);
    }
  }
  const order = [...kept].sort((a, b) => vocab[a]! - vocab[b]!);
  const newVocab: Record<string, number> = {};
  const idMap = new Map<number, number>();
  order.forEach((tok, i) => {
    newVocab[tok] = i;
    idMap.set(vocab[tok]!, i);
  });
  for (let id = 0; id < GEMMA_FIXED_IDS; id++) {
    if (byId[id] !== undefined && newVocab[byId[id]!] !== id) throw new SiglipError("input", `pruneTokenizer: the fixed ids 0–${GEMMA_FIXED_IDS - 1} are not contiguous in this vocabulary`);
  }
  const newMerges = merges.filter(([a, b]) => kept.has(a) && kept.has(b) && kept.has(a + b)).map(([a, b]) => `${a} ${b}`);
  const json = { ...tj, model: { ...tj.model, vocab: newVocab, merges: newMerges } };
  return { json, vocabSize: order.length, merges: newMerges.length, idMap };
}

/**
 * The post-processor of SigLIP 2's released tokenizer.json: append `<eos>` (id 1), no `<bos>`.
 * Gemma's own tokenizer.json prepends `<bos>` instead, so a sub-vocabulary cut from it needs this
 * one for transformers' tokenizers to give the ids SigLIP 2 (and our tokenizer) use.
 */
export function siglip2PostProcessor(): Record<string, unknown> {
  const eos = { SpecialToken: { id: "<eos>", type_id: 0 } };
  return {
    type: "TemplateProcessing",
    single: [{ Sequence: { id: "A", type_id: 0 } }, eos],
    pair: [{ Sequence: { id: "A", type_id: 0 } }, eos, { Sequence: { id: "B", type_id: 1 } }, { SpecialToken: { id: "<eos>", type_id: 1 } }],
    special_tokens: { "<eos>": { id: "<eos>", ids: [1], tokens: ["<eos>"] } },
  };
}
