/**
 * Long and hostile texts through the tokenizer's prefix path (area "text"): `encode` reads
 * only the start of a long text, and its ids must still be exactly those of tokenizing the
 * whole text (`tokenize(text).slice(0, 63)`, `<eos>`, padding), with the truncation flag and
 * kept-token count right. Real Gemma tokenizer.json (256k vocabulary), both lowercase modes.
 */
import { join } from "node:path";
import { GemmaTokenizer } from "../../src/tokenizer/gemma.js";
import { REPO } from "../harness/paths.js";
import { expectReturns, type HostileCase } from "./harness.js";

const GEMMA = join(REPO, "node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json");
let tokP: Promise<GemmaTokenizer> | null = null;
const tokenizer = () => (tokP ??= GemmaTokenizer.fromFile(GEMMA));
const LENGTH = 64;
/** Where the prefix path makes its first cut (64 ids · 8 code units + 2 · the longest token, 31). */
const FIRST_CUT = LENGTH * 8 + 62;

/** The first difference between `encode` and the whole text's tokenization, or null. */
function mismatch(tok: GemmaTokenizer, text: string, label: string): string | null {
  for (const lowercase of [true, false]) {
    const full = tok.tokenize(text, { lowercase });
    const n = Math.min(full.length, LENGTH - 1);
    const want = [...full.slice(0, n), tok.eosId, ...new Array<number>(LENGTH - 1 - n).fill(tok.padId)];
    const got = tok.encodeDetailed(text, { lowercase, length: LENGTH });
    const i = want.findIndex((id, k) => id !== got.ids[k]);
    if (i >= 0) return `${label} (lowercase ${lowercase}): id ${i} is ${got.ids[i]}, the whole text gives ${want[i]}`;
    if (got.truncated !== full.length > LENGTH - 1) return `${label}: truncated ${got.truncated}, but the text has ${full.length} tokens`;
    if (got.contentTokens !== n) return `${label}: ${got.contentTokens} content tokens kept, expected ${n}`;
  }
  return null;
}

/** A case over texts: every one must match. */
function texts(id: string, make: () => Array<[string, string]>, timeoutMs?: number): HostileCase {
  return {
    id, area: "text", expect: "correct", ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    run: async () => {
      const tok = await tokenizer();
      return expectReturns(() => make(), (list) => {
        for (const [label, t] of list) {
          const m = mismatch(tok, t, label);
          if (m) return m;
        }
        return null;
      });
    },
  };
}

/** `unit` repeated to `n` code units (cut to length). */
const run = (unit: string, n: number) => unit.repeat(Math.ceil(n / unit.length)).slice(0, n);
/** `inner` placed so that it starts at each offset from FIRST_CUT − before to FIRST_CUT + after. */
function straddle(prefixUnit: string, inner: string, suffix: string, before = 40, after = 4): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let off = FIRST_CUT - before; off <= FIRST_CUT + after; off++) out.push([`${JSON.stringify(inner)} at ${off}`, run(prefixUnit, off) + inner + suffix]);
  return out;
}

export const cases: HostileCase[] = [
  texts("text-prefix-run-of-one-letter", () => [1000, 5000, 50_000, 200_001].map((n) => [`"a"×${n}`, "a".repeat(n)])),
  texts("text-prefix-run-of-spaces", () => [700, 3000, 40_000].map((n) => [`" "×${n}`, " ".repeat(n)])),
  texts("text-prefix-run-of-newlines", () => [700, 3000, 40_000].flatMap((n) => [[`"\\n"×${n}`, "\n".repeat(n)], [`"\\n "×${n}`, run("\n ", n)]] as Array<[string, string]>)),
  texts("text-prefix-repeated-patterns", () => ["ab", "abc", "=-", "--", "..", "0", "10", "ha", "e", "ee ", "  a", "\t", "é", "ß"].map((u) => [`${JSON.stringify(u)}×`, run(u, 9000)])),
  texts("text-prefix-long-word", () => {
    let s = "";
    let x = 12345;
    while (s.length < 20_000) {
      x = (x * 1103515245 + 12345) >>> 0;
      s += String.fromCharCode(97 + (x >>> 16) % 26);
    }
    return [["random letters, no spaces", s], ["one long German word", run("Donaudampfschifffahrtsgesellschaftskapitän", 20_000)]];
  }),
  texts("text-prefix-cjk", () => [["Chinese", run("我们都是中国人民的好朋友，今天天气很好。", 30_000)], ["Japanese", run("日本語のテキストはスペースがありません", 30_000)], ["one ideograph", "中".repeat(10_000)]]),
  texts("text-prefix-emoji", () => [["emoji", run("😀🎉👍🏽🇩🇪❤️", 20_000)], ["flags", run("🇩🇪🇫🇷🇯🇵", 10_000)], ["one emoji", "😀".repeat(5000)]]),
  texts("text-prefix-special-token-at-the-cut", () => [...straddle("x", "<start_of_turn>", " y".repeat(1000)), ...straddle("a ", "<eos>", "b".repeat(2000))]),
  texts("text-prefix-newline-run-at-the-cut", () => straddle("a", "\n".repeat(40), "b".repeat(3000), 50, 2)),
  texts("text-prefix-surrogate-pair-at-the-cut", () => straddle("a", "😀", "b".repeat(3000), 8, 8)),
  texts("text-prefix-lowercase-expansion-at-the-cut", () => [...straddle("I", "İ", "İ".repeat(3000), 8, 8), ...straddle("Σ", "ΟΔΟΣ", " ΟΔΟΣ".repeat(500), 8, 8)]),
  texts("text-prefix-lone-surrogates", () => [["lone high", run("a\ud800b", 9000)], ["lone low", run("\udc00x ", 9000)], ["cut after a high half", run("x", FIRST_CUT - 1) + "\ud83d" + "y".repeat(3000)]]),
  texts("text-prefix-spaces-then-words", () => [[" run then words", " ".repeat(5000) + "a photo of a cat ".repeat(100)], ["words then run", "a photo of a cat ".repeat(3) + " ".repeat(20_000)]]),
  texts("text-prefix-exactly-at-the-limit", () =>
    // Long texts of few tokens, around the 63-token limit: 31 newlines are one added token, and
    // runs of "=" or spaces merge into tokens of up to 16 or 31 characters.
    [62, 63, 64, 65].flatMap((n) => [[`${n} × 31 newlines`, "\n".repeat(31 * n)], [`${16 * n} "="`, "=".repeat(16 * n)], [`${31 * n} spaces`, " ".repeat(31 * n)]] as Array<[string, string]>)),
  {
    id: "text-prefix-19mb-text", area: "text", expect: "correct", timeoutMs: 30_000,
    run: async () => {
      const tok = await tokenizer();
      const sentence = "The quick brown fox jumps over the lazy dog. ";
      const big = sentence.repeat(Math.ceil(19e6 / sentence.length));
      return expectReturns(() => tok.encodeDetailed(big), (d) => {
        // The first 64 tokens of this text are decided in its first 400 characters; the whole text
        // is not tokenized here (that alone takes tens of seconds).
        const want = tok.tokenize(big.slice(0, 20_000)).slice(0, LENGTH - 1);
        const i = want.findIndex((id, k) => id !== d.ids[k]);
        if (i >= 0) return `id ${i} is ${d.ids[i]}, expected ${want[i]}`;
        return d.truncated && d.contentTokens === LENGTH - 1 && d.ids[LENGTH - 1] === tok.eosId ? null : `truncated ${d.truncated}, kept ${d.contentTokens}`;
      });
    },
  },
];
