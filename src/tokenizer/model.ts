/**
 * tokenizer.json → a plain {@link BpeModel}: validation, the vocabulary, the added tokens, the
 * merges and the BPE options (the file format of Hugging Face `tokenizers`; only what the Gemma
 * pipeline of ./gemma.ts reads). Every problem is a one-line SiglipError naming the file.
 *
 * Merges are keyed one of two ways (see {@link readMerges}): by their `"left right"` string
 * when no token contains a space (Gemma: loading then looks up no strings, merged ids are resolved
 * on first use), else by the pair of ids, resolved now.
 */
import { SiglipError } from "../errors.js";
import { AddedTokenMatcher } from "./trie.js";

/** Merges are ranked below this (heap keys `rank * 2^32 + position` must stay exact in a double). */
const MAX_MERGES = 2 ** 21;

/** Everything the tokenizer needs from tokenizer.json, validated. */
export interface BpeModel {
  /** The file it came from, for error messages. */
  source: string;
  vocab: Map<string, number>;
  /** Token string by id (vocabulary only; "" where an id has none). */
  tokens: string[];
  /** Rank of the merge of the pair (left id, right id), or -1. */
  pairRank: (a: number, b: number) => number;
  /** Whether any merge has one of these ids on either side (a scan of all merges). */
  mergesUsing: (ids: Set<number>) => boolean;
  /** The id each merge produces, by rank; -1 until first needed (see {@link mergeResult}). */
  mergeResults: Int32Array;
  /** Ids of `<0x00>`…`<0xFF>` (-1 where missing) when byte fallback is on, else null. */
  byteIds: Int32Array | null;
  /** Id of the unknown token, or -1 when there is none (unknown characters are then dropped). */
  unkId: number;
  fuseUnk: boolean;
  ignoreMerges: boolean;
  /** Added tokens matched on the raw text (`normalized: false`). */
  rawAdded: AddedTokenMatcher;
  /** Added tokens matched on the normalised text (`normalized: true`; none in Gemma). */
  normalizedAdded: AddedTokenMatcher;
  /** Length of the longest vocabulary token, in UTF-16 code units. */
  maxTokenUnits: number;
  /** One more than the largest id in the vocabulary or the added tokens. */
  vocabSize: number;
  eosId: number;
  padId: number;
}

type Bad = (problem: string) => SiglipError;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isPair(v: unknown): v is [string, string] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && typeof v[1] === "string";
}

/** `<0xXX>`, the byte-fallback token of byte `b` (upper-case hex, as `tokenizers` spells it). */
export function byteToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
}

/** Appends the UTF-8 bytes of code point `cp`. */
export function utf8Bytes(cp: number, out: number[]): void {
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

/** Validates a parsed tokenizer.json and builds its model; `source` names it in errors. */
export function parseTokenizerJson(json: unknown, source: string): BpeModel {
  const bad: Bad = (problem) => new SiglipError("tokenizer", `${source}: ${problem}`, { subject: source });
  if (!isRecord(json)) throw bad("not a tokenizer.json (expected a JSON object)");
  const m = json["model"];
  if (!isRecord(m)) throw bad('not a tokenizer.json (no "model" object)');
  checkBpeOptions(m, bad);
  const v = readVocab(m, bad);
  const added = readAddedTokens(json, bad);
  const maxId = Math.max(v.maxId, added.maxId);
  if (maxId < 0) throw bad("empty vocabulary");
  const merges = readMerges(m, v.vocab, v.tokens, v.spaceInTokens, maxId, bad);

  // BPE options. Defaults are Gemma's (what transformers' GemmaTokenizer sets).
  const unkToken = m["unk_token"] === undefined ? "<unk>" : m["unk_token"];
  let unkId = -1;
  if (typeof unkToken === "string") {
    const id = v.vocab.get(unkToken);
    if (id === undefined) throw bad(`unk_token ${JSON.stringify(unkToken)} is not in the vocabulary`);
    unkId = id;
  }
  let byteIds: Int32Array | null = null;
  if (m["byte_fallback"] !== false) {
    // Gemma has 255 of the 256: "<0x09>" is missing because "\t" itself is a token.
    byteIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) byteIds[b] = v.vocab.get(byteToken(b)) ?? -1;
  }
  const special = (content: string): number => {
    const id = added.byContent.get(content) ?? v.vocab.get(content);
    if (id === undefined) throw bad(`no ${content} token`);
    return id;
  };
  return {
    source,
    vocab: v.vocab,
    tokens: v.tokens,
    ...merges,
    byteIds,
    unkId,
    fuseUnk: m["fuse_unk"] !== false,
    ignoreMerges: m["ignore_merges"] === true,
    rawAdded: added.raw,
    normalizedAdded: added.normalized,
    maxTokenUnits: v.maxTokenUnits,
    vocabSize: maxId + 1,
    eosId: special("<eos>"),
    padId: special("<pad>"),
  };
}

/** Refuses model types and BPE options the Gemma pipeline does not implement. */
function checkBpeOptions(m: Record<string, unknown>, bad: Bad): void {
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
}

/** `model.vocab`: token → id, the tokens by id, and what the merges and the prefix path need to know. */
function readVocab(m: Record<string, unknown>, bad: Bad): { vocab: Map<string, number>; tokens: string[]; maxId: number; spaceInTokens: boolean; maxTokenUnits: number } {
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
  return { vocab, tokens, maxId, spaceInTokens, maxTokenUnits };
}

/** `added_tokens`: the two matchers (raw and normalised text), the ids by content, the largest id. */
function readAddedTokens(root: Record<string, unknown>, bad: Bad): { raw: AddedTokenMatcher; normalized: AddedTokenMatcher; byContent: Map<string, number>; maxId: number } {
  const raw = new AddedTokenMatcher();
  const normalized = new AddedTokenMatcher();
  const byContent = new Map<string, number>();
  let maxId = -1;
  const addedJson = root["added_tokens"] ?? [];
  if (!Array.isArray(addedJson)) throw bad('"added_tokens" is not an array');
  for (const t of addedJson as unknown[]) {
    const content = isRecord(t) ? t["content"] : undefined;
    const id = isRecord(t) ? t["id"] : undefined;
    if (!isRecord(t) || typeof content !== "string" || typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw bad(`malformed added token ${JSON.stringify(t)}`);
    }
    if (t["lstrip"] === true || t["rstrip"] === true || t["single_word"] === true) {
      throw bad(`added token ${JSON.stringify(content)} uses lstrip/rstrip/single_word, which this tokenizer does not support`);
    }
    if (content.length === 0) continue;
    (t["normalized"] === true ? normalized : raw).add(content, id);
    byContent.set(content, id);
    if (id > maxId) maxId = id;
  }
  return { raw, normalized, byContent, maxId };
}

type Merges = Pick<BpeModel, "pairRank" | "mergesUsing" | "mergeResults">;

/**
 * `model.merges`: `"a b"` strings or `[a, b]` pairs; the rank is the index; a repeated pair keeps
 * its last rank (like the hash map `tokenizers` builds).
 */
function readMerges(m: Record<string, unknown>, vocab: Map<string, number>, tokens: string[], spaceInTokens: boolean, maxId: number, bad: Bad): Merges {
  const mergesJson = m["merges"];
  if (!Array.isArray(mergesJson)) throw bad('"model.merges" is missing or not an array');
  const merges = mergesJson as unknown[];
  if (merges.length >= MAX_MERGES) throw bad(`too many merges (${merges.length})`);
  const badMerge = (rank: number): SiglipError => bad(`merge ${rank} ${JSON.stringify(merges[rank])} is not a pair of tokens`);
  return spaceInTokens ? mergesByPair(merges, vocab, maxId, bad, badMerge) : mergesByString(merges, tokens, badMerge);
}

/**
 * Fast path (Gemma: no token contains " "): key the merges by their "left right" string, as
 * stored, so loading does not look up 1.7 M strings. Each pair then has exactly one key, and a
 * merge whose tokens are not in the vocabulary can never match. The merged ids are resolved on
 * first use; a merged token missing from the vocabulary (a broken file, which `tokenizers`
 * refuses at load) is reported then.
 */
function mergesByString(merges: unknown[], tokens: string[], badMerge: (rank: number) => SiglipError): Merges {
  const mergeResults = new Int32Array(merges.length).fill(-1);
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
  const pairRank = (a: number, b: number): number => byString.get(tokens[a] + " " + tokens[b]) ?? -1;
  const mergesUsing = (ids: Set<number>): boolean => {
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
  return { pairRank, mergesUsing, mergeResults };
}

/** General path: tokens may contain spaces, so every merge is resolved to ids now. */
function mergesByPair(merges: unknown[], vocab: Map<string, number>, maxId: number, bad: Bad, badMerge: (rank: number) => SiglipError): Merges {
  const mergeResults = new Int32Array(merges.length);
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
  const pairRank = (a: number, b: number): number => byPair.get(a * pairMul + b) ?? -1;
  const mergesUsing = (ids: Set<number>): boolean => {
    for (const key of byPair.keys()) if (ids.has(Math.floor(key / pairMul)) || ids.has(key % pairMul)) return true;
    return false;
  };
  return { pairRank, mergesUsing, mergeResults };
}
