/**
 * BPE on one normalised word (step 3 of the pipeline in ./gemma.ts), as the BPE model of Hugging
 * Face `tokenizers` does it (tokenizers/src/models/bpe/word.rs, `Word::merge_all`; a fresh
 * implementation, not a copy): start from its code points (a code point missing from the
 * vocabulary becomes the `<0xXX>` tokens of its UTF-8 bytes when all of them exist, byte
 * fallback; otherwise `<unk>`, fused when `fuse_unk`), then repeatedly merge the adjacent pair
 * with the lowest rank, the leftmost one on ties. Symbols live in a doubly linked list and
 * candidate merges in a heap keyed by (rank, position): O(n log n) in the word length.
 */
import { SiglipError } from "../errors.js";
import { MinHeap } from "./heap.js";
import { utf8Bytes, type BpeModel } from "./model.js";

export const REPLACEMENT_CHARACTER = "\ufffd";
/** Heap keys are `rank * POS_LIMIT + position`, exact in a double while rank < 2^21. */
const POS_LIMIT = 2 ** 32;

/** The id that merge `rank` (of `a` then `b`) produces. */
export function mergeResult(model: BpeModel, rank: number, a: number, b: number): number {
  let id = model.mergeResults[rank]!;
  if (id < 0) {
    const merged = model.tokens[a]! + model.tokens[b]!;
    const found = model.vocab.get(merged);
    if (found === undefined) {
      throw new SiglipError(
        "tokenizer",
        `${model.source}: merge ${rank} produces ${JSON.stringify(merged)}, which is not in the vocabulary`,
        { subject: model.source },
      );
    }
    model.mergeResults[rank] = id = found;
  }
  return id;
}

/**
 * BPE over one normalised word; appends its ids to `out` and, when `starts` is given, the
 * UTF-16 offset in `word` where each one's text begins.
 */
export function bpe(model: BpeModel, word: string, out: number[], starts?: number[]): void {
  if (word.length === 0) return;
  const vocab = model.vocab;
  if (model.ignoreMerges) {
    const whole = vocab.get(word);
    if (whole !== undefined) {
      out.push(whole);
      starts?.push(0);
      return;
    }
  }

  const at: number[] | null = starts ? [] : null;
  const sym = initialSymbols(model, word, at);
  const n = sym.length;
  if (n <= 1) {
    if (n === 1) {
      out.push(sym[0]!);
      starts?.push(at![0]!);
    }
    return;
  }

  const { c, next } = mergeAll(model, sym);
  // Symbol 0 is never removed (only right-hand symbols are).
  for (let i = 0; i >= 0; i = next[i]!) {
    out.push(c[i]!);
    starts?.push(at![i]!);
  }
}

/**
 * The word's symbols before any merge: one per code point; else its UTF-8 byte tokens if all
 * exist; else <unk> (consecutive ones fused when `fuse_unk`; dropped when there is no <unk>).
 * With `at`, the UTF-16 offset of each symbol's text is appended to it.
 */
function initialSymbols(model: BpeModel, word: string, at: number[] | null): number[] {
  const vocab = model.vocab;
  const sym: number[] = [];
  const bytes: number[] = [];
  let pendingUnk = false;
  let unkAt = 0;
  for (let i = 0; i < word.length; ) {
    const from = i;
    let cp = word.codePointAt(i)!;
    const width = cp > 0xffff ? 2 : 1;
    let ch = width === 1 ? word[i]! : word.slice(i, i + 2);
    i += width;
    if (cp >= 0xd800 && cp <= 0xdfff) {
      cp = 0xfffd;
      ch = REPLACEMENT_CHARACTER;
    }
    const id = vocab.get(ch);
    if (id !== undefined) {
      if (pendingUnk) {
        sym.push(model.unkId);
        at?.push(unkAt);
        pendingUnk = false;
      }
      sym.push(id);
      at?.push(from);
      continue;
    }
    const byteIds = model.byteIds;
    if (byteIds !== null) {
      bytes.length = 0;
      utf8Bytes(cp, bytes);
      if (bytes.every((b) => byteIds[b]! >= 0)) {
        // Like `tokenizers`, a pending <unk> is not flushed first: it follows these bytes. (Cannot
        // happen with Gemma, whose byte tokens cover every character that is not in the vocabulary.)
        for (const b of bytes) {
          sym.push(byteIds[b]!);
          at?.push(from);
        }
        continue;
      }
    }
    if (model.unkId < 0) continue; // no unk token: the character is dropped, as in `tokenizers`
    if (pendingUnk && !model.fuseUnk) {
      sym.push(model.unkId);
      at?.push(unkAt);
    }
    if (!pendingUnk || !model.fuseUnk) unkAt = from;
    pendingUnk = true;
  }
  if (pendingUnk) {
    sym.push(model.unkId);
    at?.push(unkAt);
  }
  return sym;
}

/**
 * Merges `sym` to the end: the adjacent pair of lowest rank first, the leftmost on ties. Returns
 * the symbol ids `c` and the `next` links of the surviving list, which starts at 0 and ends at -1.
 */
function mergeAll(model: BpeModel, sym: number[]): { c: Int32Array; next: Int32Array } {
  const n = sym.length;
  // Symbols in a doubly linked list, candidate merges in a heap ordered by (rank, position).
  const c = Int32Array.from(sym);
  const prev = new Int32Array(n);
  const next = new Int32Array(n);
  const removed = new Uint8Array(n);
  const heap = new MinHeap();
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
    if (i + 1 < n) {
      const r = model.pairRank(c[i]!, c[i + 1]!);
      if (r >= 0) heap.push(r * POS_LIMIT + i);
    }
  }
  while (heap.size > 0) {
    const key = heap.pop();
    const rank = Math.floor(key / POS_LIMIT);
    const pos = key - rank * POS_LIMIT;
    if (removed[pos] === 1) continue;
    const right = next[pos]!;
    if (right < 0) continue;
    // Stale entry: the pair at `pos` changed since it was queued. (`tokenizers` compares the ids
    // the two merges produce; a symbol only ever grows to the right, so that is the same test.)
    if (model.pairRank(c[pos]!, c[right]!) !== rank) continue;
    c[pos] = mergeResult(model, rank, c[pos]!, c[right]!);
    removed[right] = 1;
    const after = next[right]!;
    next[pos] = after;
    if (after >= 0) prev[after] = pos;
    const before = prev[pos]!;
    if (before >= 0) {
      const r = model.pairRank(c[before]!, c[pos]!);
      if (r >= 0) heap.push(r * POS_LIMIT + before);
    }
    if (after >= 0) {
      const r = model.pairRank(c[pos]!, c[after]!);
      if (r >= 0) heap.push(r * POS_LIMIT + pos);
    }
  }
  return { c, next };
}
