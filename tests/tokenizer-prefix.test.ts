/**
 * The tokenizer's prefix path (GemmaTokenizer.encode / tokenizeHead on long texts): it reads only
 * the start of a long text, and its ids are always the whole text's first ids.
 *
 * - Small hand-made vocabularies where the start of the text really does depend on its end (a
 *   chain of merges): a prefix cut naively would give other ids, so the proof of a safe cut and
 *   the fallback to comparing cuts are what is tested.
 * - The real Gemma vocabulary: random long texts of many kinds equal the whole-text tokenization,
 *   and the work done on a multi-megabyte text is bounded (counted, not timed).
 * (tests/hostile/cases-text-server.ts holds the hostile long texts: runs, CJK, emoji, special
 * tokens and surrogate pairs straddling the cut.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { SiglipError } from "../src/errors.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const GEMMA = join(HERE, "..", "node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json");

/** Characters c0 … c(m-1) (distinct CJK ideographs) with a merge for every neighbour pair. */
const CHAIN = Array.from({ length: 4000 }, (_, i) => String.fromCodePoint(0x4e00 + i));

/**
 * A vocabulary where BPE pairs a chain of distinct characters from its END: the pair
 * (c(i), c(i+1)) has a lower rank (merges first) the larger i is. So whether c0 pairs with c1
 * depends on the parity of the text's length: cutting the text anywhere changes its first token.
 */
function chainTokenizer(m: number, extra: Record<string, unknown> = {}): GemmaTokenizer {
  const vocab: Record<string, number> = { "<pad>": 0, "<eos>": 1, "<unk>": 2 };
  let id = 3;
  for (let i = 0; i < m; i++) vocab[CHAIN[i]!] = id++;
  const merges: string[] = [];
  for (let i = m - 2; i >= 0; i--) {
    vocab[CHAIN[i]! + CHAIN[i + 1]!] = id++;
    merges.push(`${CHAIN[i]} ${CHAIN[i + 1]}`);
  }
  return GemmaTokenizer.fromJSON({ added_tokens: [], model: { type: "BPE", vocab, merges, unk_token: "<unk>", byte_fallback: false, ...extra } });
}

/** Sum of the lengths of the words given to BPE while `fn` runs (the tokenizer's work). */
function bpeWork(fn: () => void): number {
  const proto = GemmaTokenizer.prototype as unknown as { bpe: (w: string, ...r: unknown[]) => void };
  const orig = proto.bpe;
  let n = 0;
  proto.bpe = function (this: unknown, w: string, ...r: unknown[]) {
    n += w.length;
    return orig.call(this, w, ...r);
  };
  try {
    fn();
  } finally {
    proto.bpe = orig;
  }
  return n;
}

describe("prefix path on vocabularies where the end of a text decides its start", () => {
  test("the chain vocabulary really has that property (so a naive cut is wrong)", () => {
    const m = 41;
    const t = chainTokenizer(m);
    const text = CHAIN.slice(0, m).join("");
    const whole = t.tokenize(text, { lowercase: false });
    const cut = t.tokenize(text.slice(0, 12), { lowercase: false });
    assert.notEqual(whole[0], cut[0]);
    assert.notEqual(t.tokenize(text.slice(0, 40), { lowercase: false })[0], whole[0]);
  });

  test("no cut is taken for proven: the ids equal the whole text's, for short and long chains", () => {
    for (const m of [20, 21, 40, 41, 300, 301, 1000, 1001, 3999]) {
      const t = chainTokenizer(m);
      const text = CHAIN.slice(0, m).join("");
      const whole = t.tokenize(text, { lowercase: false });
      for (const limit of [1, 2, 5, 64]) {
        assert.deepEqual(t.tokenizeHead(text, limit, { lowercase: false }), whole.slice(0, limit), `m ${m}, limit ${limit}`);
      }
      const e = t.encodeDetailed(text, { lowercase: false, length: 8 });
      assert.deepEqual([...e.ids], [...whole.slice(0, 7), 1]);
      assert.equal(e.truncated, whole.length > 7);
    }
  });

  test("a boundary no merge can cross is proven: an <unk> cuts the chain", () => {
    // The same chain, but every 10th character is followed by a space.
    const m = 3000;
    const base = chainTokenizer(m);
    let text = "";
    for (let i = 0; i < m; i++) text += CHAIN[i]! + (i % 10 === 9 ? " " : "");
    // " " (as "▁") is not in the vocabulary and there is no byte fallback: it becomes <unk>,
    // which no merge involves, so nothing ever crosses it.
    const whole = base.tokenize(text, { lowercase: false });
    const work = bpeWork(() => assert.deepEqual(base.tokenizeHead(text, 3, { lowercase: false }), whole.slice(0, 3)));
    assert.ok(work < 200, `BPE read ${work} characters of a ${text.length}-character text`);
  });

  test("byte-fallback symbols never merge, so they bound a proof; a merge with one turns the path off", () => {
    const vocab: Record<string, number> = { "<pad>": 0, "<eos>": 1, "<unk>": 2, a: 3, b: 4, ab: 5, "<0xC3>": 6, "<0xA9>": 7 };
    const text = "ab".repeat(300) + "é" + "ab".repeat(2000);
    const inert = GemmaTokenizer.fromJSON({ added_tokens: [], model: { type: "BPE", vocab, merges: ["a b"], byte_fallback: true } });
    assert.deepEqual(inert.tokenizeHead(text, 400, { lowercase: false }), inert.tokenize(text, { lowercase: false }).slice(0, 400));
    // With a merge that uses a byte token, tokens are no longer substrings of the text: whole text.
    const merging = GemmaTokenizer.fromJSON({ added_tokens: [], model: { type: "BPE", vocab: { ...vocab, "<0xC3><0xA9>": 8 }, merges: ["a b", "<0xC3> <0xA9>"], byte_fallback: true } });
    const whole = merging.tokenize(text, { lowercase: false }).slice(0, 5);
    const work = bpeWork(() => assert.deepEqual(merging.tokenizeHead(text, 5, { lowercase: false }), whole));
    assert.ok(work >= text.length, `the prefix path ran (${work} characters) although a merge involves byte tokens`);
  });

  test("fused <unk> runs straddling the cut", () => {
    const vocab: Record<string, number> = { "<pad>": 0, "<eos>": 1, "<unk>": 2, a: 3, aa: 4 };
    const t = GemmaTokenizer.fromJSON({ added_tokens: [], model: { type: "BPE", vocab, merges: ["a a"], byte_fallback: false, unk_token: "<unk>", fuse_unk: true } });
    for (let off = 560; off < 600; off += 3) {
      const text = "a ".repeat(off / 2) + "xyz".repeat(40) + "a".repeat(3000);
      assert.deepEqual(t.tokenizeHead(text, 64, { lowercase: false }), t.tokenize(text, { lowercase: false }).slice(0, 64), `offset ${off}`);
    }
  });

  test("limits: 0 gives no ids; a negative or fractional limit is a SiglipError", () => {
    const t = chainTokenizer(10);
    assert.deepEqual(t.tokenizeHead(CHAIN.slice(0, 10).join(""), 0), []);
    for (const bad of [-1, 1.5, Number.NaN]) assert.throws(() => t.tokenizeHead("x", bad), (e: unknown) => e instanceof SiglipError && /token limit/.test(e.message));
  });
});

describe("prefix path on the real Gemma vocabulary", () => {
  let tok: GemmaTokenizer;
  before(async () => {
    tok = await GemmaTokenizer.fromFile(GEMMA);
  });

  test("random long texts of many kinds: encode equals the whole-text tokenization", () => {
    let x = 2463534242;
    const rnd = () => {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      return x / 4294967296;
    };
    const pick = <T,>(a: T[]): T => a[Math.floor(rnd() * a.length)]!;
    const pieces = ["the", "Quick", "brown", "狐狸", "日本語", "😀", "👍🏽", "<eos>", "<start_of_turn>", "\n", "\n\n", "  ", " ", "\t", "ΟΔΟΣ", "İ", "ß", "a", "aa", "==", "-", "0", "١٢", "\ud800"];
    let checked = 0;
    for (let k = 0; k < 120; k++) {
      const n = 600 + Math.floor(rnd() * 5000);
      const sep = k % 3 === 0 ? " " : "";
      let s = "";
      while (s.length < n) s += pick(pieces) + sep;
      for (const lowercase of [true, false]) {
        const whole = tok.tokenize(s, { lowercase });
        const e = tok.encodeDetailed(s, { lowercase });
        assert.deepEqual([...e.ids.slice(0, e.contentTokens)], whole.slice(0, 63), `text ${k}, lowercase ${lowercase}`);
        assert.equal(e.truncated, whole.length > 63);
        checked++;
      }
    }
    assert.equal(checked, 240);
  });

  test("a 5 MB text costs a few thousand characters of BPE, whatever it holds", () => {
    const five = 5_000_000;
    const kinds: Array<[string, string, number]> = [
      ["English", "A photo of a cat sleeping on a red sofa. ".repeat(five / 41), 1_000],
      ["Chinese", "我们都是中国人民的好朋友，今天天气很好。".repeat(five / 19), 1_000],
      ["one letter", "a".repeat(five), 20_000],
      ["spaces", " ".repeat(five), 20_000],
      ["special tokens", "<b>".repeat(five / 3), 1_000],
    ];
    for (const [name, text, bound] of kinds) {
      let ids: Int32Array | undefined;
      const work = bpeWork(() => (ids = tok.encode(text)));
      assert.ok(work <= bound, `${name}: BPE read ${work} characters`);
      // Equal to the tokenization of a long start of the text (the whole would take a minute).
      const start = tok.tokenize(text.slice(0, 60_000)).slice(0, 63);
      assert.deepEqual([...ids!.slice(0, 63)], start, name);
      assert.equal(ids![63], tok.eosId);
    }
  });
});
