/**
 * Gemma tokenizer (spec §5): id-for-id equality with transformers on the real Gemma tokenizer.json,
 * per-code-point lowercasing like `tokenizers`' Lowercase normaliser, and the BPE corner cases on
 * small hand-made vocabularies (expected ids checked against `tokenizers` 0.23.2).
 *
 * Goldens: tests/fixtures/goldens/tokenizer.json, written by tools/reference/tokenizer_goldens.py.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { SiglipError } from "../src/errors.js";
import { GemmaTokenizer, lowercasePerCodePoint } from "../src/tokenizer/gemma.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const GEMMA = join(HERE, "..", "node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json");
const GOLDENS = join(HERE, "fixtures", "goldens", "tokenizer.json");

interface GoldenCase {
  text: string;
  ids_cased: number[];
  ids_lower: number[];
  content_cased: number[];
  content_lower: number[];
}
interface Goldens {
  length: number;
  cases: GoldenCase[];
  lowercase: { map: [number, number[]][]; examples: { text: string; lower: string }[] };
}

const goldens = JSON.parse(readFileSync(GOLDENS, "utf8")) as Goldens;
const EOS = 1;
const PAD = 0;

function label(text: string): string {
  const s = JSON.stringify(text);
  return s.length > 48 ? `${s.slice(0, 45)}…` : s;
}

/** What `encode` must give for content ids `content`: eos-sticky truncation, right padding. */
function expectedEncoding(content: number[], length: number): number[] {
  const n = Math.min(content.length, length - 1);
  return [...content.slice(0, n), EOS, ...new Array<number>(length - 1 - n).fill(PAD)];
}

describe("GemmaTokenizer on the real Gemma tokenizer.json", () => {
  let tok: GemmaTokenizer;
  before(async () => {
    tok = await GemmaTokenizer.fromFile(GEMMA);
  });

  test("fixture sanity: enough cases, 64 ids each", () => {
    assert.ok(goldens.cases.length >= 60, `only ${goldens.cases.length} golden cases`);
    assert.equal(goldens.length, 64);
    for (const c of goldens.cases) {
      assert.equal(c.ids_cased.length, 64);
      assert.equal(c.ids_lower.length, 64);
    }
  });

  test("vocabulary size and special ids", () => {
    assert.equal(tok.vocabSize, 256000);
    assert.equal(tok.eosId, 1);
    assert.equal(tok.padId, 0);
  });

  for (const [i, c] of goldens.cases.entries()) {
    test(`golden ${i} ${label(c.text)}`, () => {
      assert.deepEqual(Array.from(tok.encode(c.text, { lowercase: false })), c.ids_cased, "cased (GemmaTokenizer)");
      assert.deepEqual(Array.from(tok.encode(c.text, { lowercase: true })), c.ids_lower, "lowercased (Siglip2Tokenizer)");
      assert.deepEqual(tok.tokenize(c.text, { lowercase: false }), c.content_cased, "cased content ids");
      assert.deepEqual(tok.tokenize(c.text, { lowercase: true }), c.content_lower, "lowercased content ids");
    });
  }

  test("spec §5.4 worked example, spelled out", () => {
    const ids = tok.encode("A photo of two cats sleeping on a red sofa.", { lowercase: false });
    assert.ok(ids instanceof Int32Array);
    assert.deepEqual(
      Array.from(ids.subarray(0, 12)),
      [235280, 2686, 576, 1378, 19493, 20083, 611, 476, 3118, 25062, 235265, 1],
    );
    assert.ok(ids.subarray(12).every((v) => v === 0));
    // Lowercasing is the default and only changes "A" → "a".
    assert.equal(tok.encode("A photo of two cats sleeping on a red sofa.")[0], 235250);
  });

  test("defaults: lowercase on, length 64", () => {
    const c = goldens.cases.find((x) => x.text === "A PHOTO OF TWO CATS SLEEPING ON A RED SOFA.")!;
    assert.notDeepEqual(c.ids_lower, c.ids_cased);
    assert.deepEqual(Array.from(tok.encode(c.text)), c.ids_lower);
    assert.deepEqual(tok.tokenize(c.text), c.content_lower);
  });

  test("custom lengths truncate (keeping <eos>) and pad like the processor would", () => {
    const long = goldens.cases.find((x) => x.content_cased.length > 100)!;
    const short = goldens.cases.find((x) => x.text === "A photo of 2 Cats.")!;
    for (const length of [1, 2, 8, 63, 64, 65, 200]) {
      for (const c of [long, short]) {
        assert.deepEqual(
          Array.from(tok.encode(c.text, { lowercase: false, length })),
          expectedEncoding(c.content_cased, length),
          `length ${length}, ${label(c.text)}`,
        );
      }
    }
    assert.deepEqual(Array.from(tok.encode("", { length: 3 })), [EOS, PAD, PAD]);
  });

  test("encodeBatch is the row-major concatenation of encode", () => {
    const texts = goldens.cases.slice(0, 7).map((c) => c.text);
    for (const opts of [undefined, { lowercase: false, length: 16 }, { lowercase: true, length: 5 }]) {
      const length = opts?.length ?? 64;
      const batch = tok.encodeBatch(texts, opts);
      assert.ok(batch instanceof Int32Array);
      assert.equal(batch.length, texts.length * length);
      texts.forEach((t, i) => {
        assert.deepEqual(Array.from(batch.subarray(i * length, (i + 1) * length)), Array.from(tok.encode(t, opts)));
      });
    }
    assert.equal(tok.encodeBatch([]).length, 0);
  });

  test("a bad length is an input error", () => {
    for (const length of [0, -1, 2.5, Number.NaN]) {
      assert.throws(
        () => tok.encode("x", { length }),
        (e: unknown) => e instanceof SiglipError && e.code === "input",
      );
    }
  });

  test("~100k characters: exact HF ids across <eos>-joined golden texts", () => {
    // Splitting happens on added tokens before anything else, so the golden texts joined with a
    // literal "<eos>" must tokenize to their golden content ids joined with id 1.
    const parts: GoldenCase[] = [];
    let chars = 0;
    for (let k = 0; chars < 100_000; k++) {
      const c = goldens.cases[k % goldens.cases.length]!;
      parts.push(c);
      chars += c.text.length + 5;
    }
    const text = parts.map((c) => c.text).join("<eos>");
    assert.ok(text.length >= 100_000);
    for (const lowercase of [false, true]) {
      const expected: number[] = [];
      parts.forEach((c, k) => {
        if (k > 0) expected.push(EOS);
        expected.push(...(lowercase ? c.content_lower : c.content_cased));
      });
      assert.deepEqual(tok.tokenize(text, { lowercase }), expected);
    }
  });

  test("100k characters in one BPE word (no added tokens) tokenizes consistently", () => {
    const unit = "A Photo of a CAT on a red sofa, une photo d'un chat, 一只猫, قطة, बिल्ली, ΓΑΤΑ, 🐱🇯🇵 \u{2000B}";
    const word = unit.repeat(Math.ceil(100_000 / unit.length)).slice(0, 100_000);
    const ids = tok.tokenize(word, { lowercase: false });
    assert.ok(ids.length > 10_000 && ids.length < 100_000);
    // A newline is an added token: the two halves are independent BPE words.
    assert.deepEqual(tok.tokenize(`${word}\n${word}`, { lowercase: false }), [...ids, 108, ...ids]);
    // The first tokens equal those of the golden-verified short text with the same start.
    const head = tok.tokenize("A Photo of a CAT on a red sofa,", { lowercase: false });
    assert.deepEqual(ids.slice(0, head.length - 1), head.slice(0, -1));
  });
});

describe("lowercasePerCodePoint", () => {
  test("ΟΔΟΣ: no final sigma, unlike String.prototype.toLowerCase", () => {
    assert.equal(lowercasePerCodePoint("ΟΔΟΣ"), "οδοσ");
    assert.equal("ΟΔΟΣ".toLowerCase(), "οδος");
    assert.notEqual(lowercasePerCodePoint("ΟΔΟΣ"), "ΟΔΟΣ".toLowerCase());
  });

  test("İ becomes i + U+0307; other specials", () => {
    assert.equal(lowercasePerCodePoint("İstanbul"), "i\u0307stanbul");
    assert.equal(lowercasePerCodePoint("STRAẞE"), "straße");
    assert.equal(lowercasePerCodePoint("\u{10414}x"), "\u{1043C}x");
    assert.equal(lowercasePerCodePoint("abc 123"), "abc 123");
    assert.equal(lowercasePerCodePoint("\ud800A"), "\ud800a"); // lone surrogates are kept
  });

  test("matches the tokenizers examples in the fixture", () => {
    for (const { text, lower } of goldens.lowercase.examples) assert.equal(lowercasePerCodePoint(text), lower, text);
  });

  test("matches tokenizers' Lowercase on every code point", () => {
    const map = new Map(goldens.lowercase.map.map(([cp, low]) => [cp, String.fromCodePoint(...low)]));
    assert.ok(map.size > 1400);
    const wrong: string[] = [];
    for (let cp = 0; cp < 0x110000; cp++) {
      if (cp >= 0xd800 && cp < 0xe000) continue;
      const ch = String.fromCodePoint(cp);
      const expected = map.get(cp) ?? ch;
      if (lowercasePerCodePoint(ch) !== expected) wrong.push(cp.toString(16));
    }
    assert.deepEqual(wrong, []);
  });
});

describe("loading errors", () => {
  const dir = mkdtempSync(join(tmpdir(), "siglip2-tok-"));

  async function rejectsNaming(path: string): Promise<void> {
    await assert.rejects(GemmaTokenizer.fromFile(path), (e: unknown) => {
      assert.ok(e instanceof SiglipError, String(e));
      assert.equal(e.code, "tokenizer");
      assert.ok(e.message.includes(path), e.message);
      assert.equal(e.subject, path);
      return true;
    });
  }

  test("not JSON", async () => {
    const p = join(dir, "garbage.json");
    writeFileSync(p, "this is not json {");
    await rejectsNaming(p);
  });

  test("JSON without a model", async () => {
    const p = join(dir, "nomodel.json");
    writeFileSync(p, JSON.stringify({ version: "1.0", added_tokens: [] }));
    await rejectsNaming(p);
  });

  test("missing file", async () => {
    await rejectsNaming(join(dir, "does-not-exist.json"));
  });

  test("malformed models", () => {
    const bad: unknown[] = [
      null,
      [],
      { model: { type: "Unigram", vocab: [] } },
      { model: { type: "BPE", vocab: { a: 0 } } },
      { model: { type: "BPE", vocab: { a: "0" }, merges: [] } },
      { model: { type: "BPE", vocab: { a: 0, b: 1 }, merges: ["ab"] } },
      { model: { type: "BPE", vocab: { "<eos>": 0 }, merges: [] } }, // no <pad>
    ];
    for (const json of bad) {
      assert.throws(
        () => GemmaTokenizer.fromJSON(json, "my/tokenizer.json"),
        (e: unknown) => e instanceof SiglipError && e.code === "tokenizer" && e.message.includes("my/tokenizer.json"),
        JSON.stringify(json),
      );
    }
  });
});

describe("BPE corner cases on a small vocabulary (ids checked against tokenizers 0.23.2)", () => {
  const vocab: Record<string, number> = {
    "<unk>": 0, a: 1, b: 2, c: 3, aa: 4, ab: 5, bc: 6, abc: 7, aaa: 8, "▁": 9, "▁a": 10, "<pad>": 20, "<eos>": 21,
  };
  const merges = ["a a", "b c", "a b", "a bc", "aa a", "▁ a"];
  function make(model: Record<string, unknown>, extra: Record<string, unknown> = {}): GemmaTokenizer {
    return GemmaTokenizer.fromJSON({
      added_tokens: [],
      ...extra,
      model: { type: "BPE", vocab, merges, unk_token: "<unk>", fuse_unk: true, byte_fallback: false, ...model },
    });
  }
  const cases: [string, number[]][] = [
    ["aaa", [8]],
    ["aaaa", [4, 4]],
    ["aaaaa", [4, 8]], // leftmost first: (a a)(a a) a, then "aa a"
    ["abc", [7]], // "b c" (rank 1) before "a b" (rank 2)
    ["abcabc", [7, 7]],
    [" a a", [10, 10]],
    ["xyz", [0]],
    ["axyzb", [1, 0, 2]],
  ];

  test("merge order, ties, fused <unk> (string merges, fast path)", () => {
    const t = make({});
    for (const [text, ids] of cases) assert.deepEqual(t.tokenize(text, { lowercase: false }), ids, text);
  });

  test("array merges and a vocabulary with spaces (general path) agree", () => {
    const arrays = make({ merges: merges.map((m) => m.split(" ")) });
    const spaced = make({ vocab: { ...vocab, "x y": 30 } });
    for (const [text, ids] of cases) {
      assert.deepEqual(arrays.tokenize(text, { lowercase: false }), ids, text);
      assert.deepEqual(spaced.tokenize(text, { lowercase: false }), ids, text);
    }
  });

  test("unfused <unk>, and no <unk> token (characters dropped, neighbours merge)", () => {
    assert.deepEqual(make({ fuse_unk: false }).tokenize("axyzb", { lowercase: false }), [1, 0, 0, 0, 2]);
    assert.deepEqual(make({ unk_token: null }).tokenize("axyzb", { lowercase: false }), [5]);
  });

  test("a repeated merge keeps its last rank", () => {
    assert.deepEqual(make({ merges: ["a b", "b c", "a b"] }).tokenize("abc", { lowercase: false }), [1, 6]);
    assert.deepEqual(make({ merges: ["b c", "a b", "b c"] }).tokenize("abc", { lowercase: false }), [5, 3]);
  });

  test("byte fallback only when all of a character's bytes exist; <unk> order as in tokenizers", () => {
    const t = make({ byte_fallback: true, vocab: { ...vocab, "<0xC3>": 11, "<0xA9>": 12, "<0xF0>": 13 } });
    assert.deepEqual(t.tokenize("aé", { lowercase: false }), [1, 11, 12]);
    assert.deepEqual(t.tokenize("a😀b", { lowercase: false }), [1, 0, 2]);
    assert.deepEqual(t.tokenize("😀éx", { lowercase: false }), [11, 12, 0]);
  });

  test("ignore_merges takes whole-word vocabulary hits first", () => {
    const t = make({ ignore_merges: true });
    assert.deepEqual(t.tokenize("abc", { lowercase: false }), [7]);
    assert.deepEqual(t.tokenize("aaaa", { lowercase: false }), [4, 4]);
  });

  test("normalized added tokens match after lowercasing, raw ones before", () => {
    const t = make(
      { fuse_unk: false },
      {
        added_tokens: [
          { id: 11, content: "<x>", normalized: true, lstrip: false, rstrip: false, single_word: false, special: false },
          { id: 12, content: "<Y>", normalized: false, lstrip: false, rstrip: false, single_word: false, special: false },
        ],
      },
    );
    assert.deepEqual(t.tokenize("a<X>b<Y>c<y>", { lowercase: true }), [1, 11, 2, 12, 3, 0, 0, 0]);
  });

  test("a merge into a token missing from the vocabulary is reported", () => {
    const t = make({ merges: ["a c"] });
    assert.throws(
      () => t.tokenize("ac", { lowercase: false }),
      (e: unknown) => e instanceof SiglipError && e.code === "tokenizer",
    );
  });

  test("lone surrogates are tokenized as U+FFFD", () => {
    const t = make({ vocab: { ...vocab, "\ufffd": 40 } });
    assert.deepEqual(t.tokenize("a\ud800b", { lowercase: false }), [1, 40, 2]);
  });
});
