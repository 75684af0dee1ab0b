/**
 * Box tokenisation (src/tasks/boxes.ts, training-recipe §2 and §8.2 item 15): quantised round
 * trips, the side/(2·BINS) error bound, clamping, hostile box text, LocCa prompts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isSiglipError } from "../src/errors.js";
import { Rng } from "../src/train/rng.js";
import {
  BINS, BOX_FORMATS, DEFAULT_BOX_FORMAT, arefPrompt, boxToText, boxTokenConstraint, capPrompt, dequantizeBox, gcapPrompt, isBoxTextPrefix, parseArefOutput, parseBoxText, pixelBoxToText, quantizeBox,
  type BoxFormat, type PixelBox, type QuantizedBox,
} from "../src/tasks/boxes.js";

function randomQuantized(r: Rng): QuantizedBox {
  const a = r.int(BINS), b = r.int(BINS), c = r.int(BINS), d = r.int(BINS);
  return [Math.min(a, b), Math.min(c, d), Math.max(a, b), Math.max(c, d)];
}

describe("boxes: quantisation", () => {
  it("BINS is 500 and the text order is ymin xmin ymax xmax", () => {
    assert.equal(BINS, 500);
    // x0=10 y0=20 x1=30 y1=40 on a 100×200 image: y/200, x/100.
    assert.deepEqual(quantizeBox([10, 20, 30, 40], 100, 200), [50, 50, 100, 150]);
    assert.equal(pixelBoxToText([10, 20, 30, 40], 100, 200), "50 50 100 150");
    assert.deepEqual(quantizeBox([0, 0, 100, 100], 100, 100), [0, 0, BINS - 1, BINS - 1]);
  });

  it("box → text → box is exact on quantised boxes (2000 random boxes and the corners)", () => {
    const r = new Rng(11);
    const cases: QuantizedBox[] = [[0, 0, 0, 0], [0, 0, 499, 499], [499, 499, 499, 499], [7, 0, 7, 499]];
    for (let i = 0; i < 2000; i++) cases.push(randomQuantized(r));
    for (const q of cases) {
      const t = boxToText(q);
      const p = parseBoxText(t);
      assert.ok(p.ok, t);
      assert.deepEqual(p.box, q);
      // and through pixels: bin centres quantise back to the same bins
      for (const [w, h] of [[64, 64], [640, 480], [1, 1], [999, 37]] as const) {
        assert.deepEqual(quantizeBox(dequantizeBox(q, w, h), w, h), q, `${t} at ${w}×${h}`);
      }
    }
  });

  it("error ≤ side/(2·BINS) on random real boxes inside the image", () => {
    const r = new Rng(12);
    for (let i = 0; i < 3000; i++) {
      const w = 1 + r.uniform(0, 2000), h = 1 + r.uniform(0, 2000);
      const xa = r.uniform(0, w), xb = r.uniform(0, w), ya = r.uniform(0, h), yb = r.uniform(0, h);
      const box: PixelBox = [Math.min(xa, xb), Math.min(ya, yb), Math.max(xa, xb), Math.max(ya, yb)];
      const back = dequantizeBox(quantizeBox(box, w, h), w, h);
      const tol = [w, h, w, h].map((s) => s / (2 * BINS) + 1e-9);
      for (let k = 0; k < 4; k++) assert.ok(Math.abs(back[k]! - box[k]!) <= tol[k]!, `coord ${k}: ${box[k]} → ${back[k]} (tol ${tol[k]})`);
    }
    // the image edges themselves
    const e = dequantizeBox(quantizeBox([0, 0, 640, 480], 640, 480), 640, 480);
    assert.ok(Math.abs(e[0] - 0) <= 640 / 1000 && Math.abs(e[2] - 640) <= 640 / 1000 + 1e-9);
  });

  it("boxes outside the image are clamped to its edges", () => {
    assert.deepEqual(quantizeBox([-50, -10, 50, 30], 100, 100), [0, 0, 150, 250]);
    assert.deepEqual(quantizeBox([90, 80, 300, 1e9], 100, 100), [400, 450, BINS - 1, BINS - 1]);
    assert.deepEqual(quantizeBox([-30, -30, -10, -10], 100, 100), [0, 0, 0, 0]);
    assert.deepEqual(quantizeBox([200, 200, 300, 300], 100, 100), [499, 499, 499, 499]);
  });

  it("bad numbers throw SiglipError (code box)", () => {
    const bad: [PixelBox, number, number][] = [
      [[0, 0, NaN, 1], 10, 10], [[0, 0, Infinity, 1], 10, 10], [[5, 0, 4, 1], 10, 10], [[0, 5, 1, 4], 10, 10],
      [[0, 0, 1, 1], 0, 10], [[0, 0, 1, 1], 10, -1], [[0, 0, 1, 1], NaN, 10], [[0, 0, 1] as unknown as PixelBox, 10, 10],
      [["0", 0, 1, 1] as unknown as PixelBox, 10, 10],
    ];
    for (const [b, w, h] of bad) assert.throws(() => quantizeBox(b, w, h), (e: unknown) => isSiglipError(e) && e.code === "box", JSON.stringify([b, w, h]));
    for (const q of [[0, 0, 500, 1], [-1, 0, 1, 1], [0.5, 0, 1, 1], [3, 0, 2, 1], [0, 3, 1, 2]]) {
      assert.throws(() => boxToText(q as unknown as QuantizedBox), (e: unknown) => isSiglipError(e));
      assert.throws(() => dequantizeBox(q as unknown as QuantizedBox, 10, 10), (e: unknown) => isSiglipError(e));
    }
  });
});

describe("boxes: parsing hostile text", () => {
  it("accepts canonical text (and surrounding spaces)", () => {
    assert.deepEqual(parseBoxText("12 40 300 410"), { ok: true, box: [12, 40, 300, 410] });
    assert.deepEqual(parseBoxText(" 0 0 499 499 "), { ok: true, box: [0, 0, 499, 499] });
  });

  it("rejects everything else with a reason, never throwing", () => {
    const hostile = [
      "", " ", "1 2 3", "1 2 3 4 5", "1  2 3 4", "1\t2 3 4", "1,2,3,4", "[1, 2, 3, 4]", "1 2 3 4\n", "\n1 2 3 4",
      "01 2 3 4", "00 0 0 0", "-1 2 3 4", "+1 2 3 4", "1.0 2 3 4", "1e2 2 3 4", "0x1 2 3 4", "500 0 500 0", "1 2 3 1000",
      "4 0 3 5", "0 4 5 3", "١ ٢ ٣ ٤", "１ ２ ３ ４", "NaN 1 2 3", "Infinity 0 0 0", "1 2 3 4".repeat(1000), "9".repeat(400),
      "1 2 3 4\u0000", "1\u00a02 3 4", "a b c d", "1 2 3 four",
    ];
    for (const s of hostile) {
      const p = parseBoxText(s);
      assert.equal(p.ok, false, JSON.stringify(s));
      if (!p.ok) assert.ok(p.reason.length > 0 && p.reason.length < 200);
    }
    for (const v of [null, undefined, 12, {}, ["1", "2", "3", "4"]]) assert.equal(parseBoxText(v as unknown as string).ok, false);
  });
});

describe("boxes: LocCa prompts", () => {
  const q: QuantizedBox = [12, 40, 300, 410];
  it("Cap / ARef / GCap strings and the loss-free prefix", () => {
    const c = capPrompt("a red circle");
    assert.equal(c.text, "Cap: a red circle");
    assert.equal(c.prefix, "Cap:");
    assert.equal(c.target, "a red circle");
    assert.equal(c.text.slice(c.prefixLength), c.target);
    const a = arefPrompt("the red circle", q);
    assert.equal(a.text, "ARef: the red circle : 12 40 300 410");
    assert.equal(a.text.slice(a.prefixLength), "the red circle : 12 40 300 410");
    assert.equal(a.prefix, "ARef:");
    const g = gcapPrompt(q, "the red circle");
    assert.equal(g.text, "GCap: 12 40 300 410 : the red circle");
    assert.equal(g.prefix, "GCap:");
    assert.ok(g.text.startsWith(g.prefix + " "));
    assert.throws(() => capPrompt(""), (e: unknown) => isSiglipError(e));
    assert.throws(() => arefPrompt("x", [0, 0, 600, 0]), (e: unknown) => isSiglipError(e));
  });

  it("an ARef output parses back to its box", () => {
    assert.deepEqual(parseArefOutput(arefPrompt("le cercle : rouge", q).target), { ok: true, box: q });
    assert.deepEqual(parseArefOutput("ARef: the star : 1 2 3 4"), { ok: true, box: [1, 2, 3, 4] });
    assert.deepEqual(parseArefOutput("1 2 3 4"), { ok: true, box: [1, 2, 3, 4] });
    assert.equal(parseArefOutput("the star : 1 2 3").ok, false);
  });
});

describe("boxes: the padded (fixed-width) format", () => {
  const q: QuantizedBox = [12, 40, 300, 410];
  it("writes every coordinate with 3 digits; canonical stays the default", () => {
    assert.deepEqual(BOX_FORMATS, ["canonical", "padded"]);
    assert.equal(DEFAULT_BOX_FORMAT, "canonical");
    assert.equal(boxToText(q, "padded"), "012 040 300 410");
    assert.equal(boxToText([0, 5, 99, 499], "padded"), "000 005 099 499");
    assert.equal(boxToText(q), "12 40 300 410");
    assert.equal(boxToText(q, "canonical"), "12 40 300 410");
    assert.equal(pixelBoxToText([10, 20, 30, 40], 100, 200, "padded"), "050 050 100 150");
    assert.equal(arefPrompt("the red circle", q, "padded").text, "ARef: the red circle : 012 040 300 410");
    assert.equal(gcapPrompt(q, "the red circle", "padded").text, "GCap: 012 040 300 410 : the red circle");
    assert.throws(() => boxToText(q, "hex" as BoxFormat), (e: unknown) => isSiglipError(e) && /unknown box format "hex"/.test(e.message));
  });

  it("box → text → box is exact in both formats (2000 random boxes and the corners)", () => {
    const r = new Rng(12);
    const cases: QuantizedBox[] = [[0, 0, 0, 0], [0, 0, 499, 499], [499, 499, 499, 499], [7, 0, 7, 499], [9, 10, 99, 100]];
    for (let i = 0; i < 2000; i++) cases.push(randomQuantized(r));
    for (const f of BOX_FORMATS) {
      for (const q2 of cases) {
        const t = boxToText(q2, f);
        assert.deepEqual(parseBoxText(t, f), { ok: true, box: q2 }, `${f}: ${t}`);
        assert.deepEqual(parseArefOutput(arefPrompt("a star", q2, f).target, f), { ok: true, box: q2 });
        if (f === "padded") assert.match(t, /^[0-9]{3} [0-9]{3} [0-9]{3} [0-9]{3}$/);
      }
    }
  });

  it("each format parses only its own text (a decoder's answer is read in its checkpoint's format)", () => {
    assert.deepEqual(parseBoxText("012 040 300 410", "padded"), { ok: true, box: q });
    assert.deepEqual(parseBoxText(" 000 000 499 499 ", "padded"), { ok: true, box: [0, 0, 499, 499] });
    const p = parseBoxText("012 040 300 410"); // canonical: leading zeros are not canonical
    assert.equal(p.ok, false);
    assert.equal(parseBoxText("12 40 300 410", "padded").ok, false);
    for (const s of ["12 040 300 410", "0012 040 300 410", "012 040 300 41", "500 000 500 000", "400 000 300 000", "-01 000 000 000", "0a1 000 000 000", "012  040 300 410"]) {
      assert.equal(parseBoxText(s, "padded").ok, false, s);
    }
    assert.equal(parseBoxText("012 040 300 410", "hex" as BoxFormat).ok, false);
  });
});

describe("boxes: the grammar of constrained locate decoding", () => {
  it("every prefix of every valid box text (one leading space or none) is a prefix, in both formats", () => {
    const r = new Rng(13);
    const cases: QuantizedBox[] = [[0, 0, 0, 0], [0, 0, 499, 499], [499, 499, 499, 499], [12, 40, 300, 410]];
    for (let i = 0; i < 300; i++) cases.push(randomQuantized(r));
    for (const f of BOX_FORMATS) {
      for (const q of cases) {
        for (const t of [boxToText(q, f), ` ${boxToText(q, f)}`]) {
          for (let k = 0; k <= t.length; k++) assert.ok(isBoxTextPrefix(t.slice(0, k), f), `${f}: ${JSON.stringify(t.slice(0, k))}`);
        }
      }
    }
  });

  it("refuses what no box can start with: out of range, leading zeros (canonical), short fields (padded), order, spacing, a fifth number", () => {
    const no: Array<[string, BoxFormat]> = [
      ["500", "canonical"], ["5000", "canonical"], ["01", "canonical"], ["12 40 300 410 ", "canonical"], ["12 40 300 410 1", "canonical"],
      ["12  40", "canonical"], ["  12", "canonical"], ["120 40 11", "canonical"], ["12 400 300 39", "canonical"], ["300 0 2", "canonical"],
      ["12 ", "padded"], ["1234", "padded"], ["012 04 ", "padded"], ["500", "padded"], ["012 040 011", "padded"],
      ["a", "canonical"], ["-1", "canonical"], ["1.5", "canonical"], ["12,40", "canonical"],
    ];
    for (const [t, f] of no) {
      assert.equal(isBoxTextPrefix(t, f), false, `${f}: ${JSON.stringify(t)}`);
    }
    // order bounds look ahead: "3" after ymin 12 can still become 30–39 or 300–399; "1" after ymin 200 cannot
    assert.equal(isBoxTextPrefix("12 40 3"), true);
    assert.equal(isBoxTextPrefix("200 40 1"), false);
    assert.equal(isBoxTextPrefix("200 40 2"), true);
    assert.equal(isBoxTextPrefix("012 040 00", "padded"), false);
    assert.equal(isBoxTextPrefix("12", "hex" as BoxFormat), false);
  });

  it("the token rule: only digit/space tokens that keep a prefix, and EOS only after a whole box", () => {
    // a toy vocabulary: 0 pad, 1 eos, 2 bos, 3 "▁" (space), 4–13 the digits, 14 "▁1", 15 "a", 16 "12"
    const pieces = ["", "", "", " ", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", " 1", "a", "12"];
    const text = (ids: readonly number[]) => ids.map((i) => pieces[i]!).join("");
    const EOS = 1;
    const rule = boxTokenConstraint(text, pieces.length, EOS);
    const d = (c: string) => 4 + Number(c);
    assert.deepEqual(rule([]), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16]); // a space or any digit; never EOS, "a"
    assert.deepEqual(rule([3]), [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16].filter((i) => i !== 14)); // no second space
    assert.deepEqual(rule([d("0")]), [3, 14]); // "0" is whole: only a separator
    assert.deepEqual(rule([d("4"), d("9")]), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]); // "49" → "490".."499", or a space
    assert.deepEqual(rule([d("5"), d("0")]), [3, 14]); // "500" is out of range
    const whole = [d("1"), d("2"), 3, d("4"), d("0"), 3, d("3"), d("0"), d("0"), 3, d("4"), d("1"), d("0")];
    assert.equal(text(whole), "12 40 300 410");
    assert.deepEqual(rule(whole), [EOS]); // a fourth coordinate 410 can take no more digits (4100 > 499)
    assert.ok(rule(whole.slice(0, -1)).includes(EOS)); // "12 40 300 41" is a whole box too…
    assert.ok(rule(whole.slice(0, -1)).includes(d("9"))); // …or may go on to 410–419
    assert.deepEqual(boxTokenConstraint(text, pieces.length, EOS, "padded")([d("1"), d("2")]), [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]); // padded: a third digit only
  });
});
