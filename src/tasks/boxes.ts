/**
 * Box tokenisation for the LocCa decoder (referring expressions and grounded captions) and for
 * `locate`.
 *
 * Format (training-recipe §2, "Box tokenisation"; LocCa writes boxes as plain integer strings
 * tokenised by the ordinary text tokenizer — the SigLIP 2 paper does not fix the range or the
 * order, so we follow the recipe's recommendation):
 *
 * - Outside (CLI, API, manifests): pixel coordinates `[x0, y0, x1, y1]`, x to the right, y down,
 *   pixel `i` covering `[i, i+1)`; a box may be fractional.
 * - Normalised: each coordinate divided by the image side, clamped to [0, 1].
 * - Quantised: `q = min(BINS − 1, floor(v · BINS))` with {@link BINS} = 500, i.e. an integer in
 *   [0, 499]; held as {@link QuantizedBox} in text order `[ymin, xmin, ymax, xmax]`.
 * - Text: the four integers joined by single spaces, in one of two {@link BoxFormat}s:
 *   - `"canonical"` (the default, and what every checkpoint without a recorded format uses):
 *     canonical decimals (no sign, no leading zeros), e.g. `"12 40 300 410"`;
 *   - `"padded"`: fixed width, each zero-padded to 3 digits (the width of BINS − 1), e.g.
 *     `"012 040 300 410"`. With the digit-by-digit tokenizers of SigLIP 2 (Gemma, the demo's), a
 *     coordinate's first token then always means hundreds, its second tens, its third units, so
 *     the token at a given place has one meaning; in the canonical format the first digit of "12"
 *     and of "120" is the same token for different magnitudes.
 *   A decoder's format is recorded in its `decoder.safetensors` metadata as `box_format`
 *   (src/train/checkpoint.ts writes it for a non-default format; src/models/locca-infer.ts reads
 *   it, absent = canonical), so training, `locate` and evaluation agree.
 * - Back to pixels: bin centres, `(q + 0.5) / BINS · side`, so the error of a box inside the
 *   image is at most `side / (2 · BINS)` per coordinate.
 *
 * LocCa prompts: `"Cap: {caption}"`, `"ARef: {caption} : {box}"`, `"GCap: {box} : {caption}"`.
 * The loss covers everything after the task prefix (`"Cap:"`, `"ARef:"`, `"GCap:"`); each
 * builder returns the prefix and the target separately (text = prefix + " " + target), so a
 * trainer tokenises the prefix to know how many leading tokens carry no loss.
 *
 * Errors: malformed numbers given to the builders (a non-finite coordinate, x0 > x1, a zero
 * image side) are programming or user-input errors and throw {@link SiglipError} (code "box").
 * Text that should be a box but may not be — a decoder's output — is parsed by
 * {@link parseBoxText}, which never throws: it returns a typed failure `{ ok: false, reason }`
 * so that evaluation can count an unparsable prediction as a miss.
 */
import { SiglipError } from "../errors.js";
import { BOX_FORMATS, DEFAULT_BOX_FORMAT, isBoxFormat, type BoxFormat } from "../models/box-format.js";

export { BOX_FORMATS, DEFAULT_BOX_FORMAT, isBoxFormat, type BoxFormat };

/** Number of quantisation bins per coordinate. */
export const BINS = 500;

/** A pixel box `[x0, y0, x1, y1]` (the CLI/API order). */
export type PixelBox = readonly [x0: number, y0: number, x1: number, y1: number];

/** A quantised box in text order `[ymin, xmin, ymax, xmax]`, integers in [0, BINS − 1]. */
export type QuantizedBox = readonly [ymin: number, xmin: number, ymax: number, xmax: number];

/** Digits of the widest coordinate, BINS − 1 (3): the width of the padded format. */
const DIGITS = String(BINS - 1).length;


/** Result of {@link parseBoxText}. */
export type BoxParse = { ok: true; box: QuantizedBox } | { ok: false; reason: string };

function fail(message: string): never {
  throw new SiglipError("box", message);
}

function checkSide(side: number, what: string): void {
  if (!Number.isFinite(side) || side <= 0) fail(`box: the image ${what} must be a positive number (got ${side})`);
}

function quantize(v: number, side: number): number {
  const t = Math.min(1, Math.max(0, v / side));
  return Math.min(BINS - 1, Math.floor(t * BINS));
}

/**
 * Quantise a pixel box of a `width` × `height` image. Coordinates outside the image are clamped
 * to its edges (a box wholly outside collapses onto an edge). Throws {@link SiglipError} for a
 * non-finite coordinate or a reversed box (x0 > x1 or y0 > y1).
 */
export function quantizeBox(box: PixelBox, width: number, height: number): QuantizedBox {
  checkSide(width, "width");
  checkSide(height, "height");
  if (!Array.isArray(box) || box.length !== 4) fail("box: expected [x0, y0, x1, y1]");
  const [x0, y0, x1, y1] = box;
  for (const v of box) if (typeof v !== "number" || !Number.isFinite(v)) fail(`box: coordinate ${String(v)} is not a finite number`);
  if (x0 > x1 || y0 > y1) fail(`box: [${box.join(", ")}] is reversed (need x0 ≤ x1 and y0 ≤ y1)`);
  return [quantize(y0, height), quantize(x0, width), quantize(y1, height), quantize(x1, width)];
}

function checkQuantized(q: QuantizedBox): string | null {
  if (!Array.isArray(q) || q.length !== 4) return "expected four integers";
  for (const v of q) if (!Number.isInteger(v) || v < 0 || v >= BINS) return `${String(v)} is not an integer in [0, ${BINS - 1}]`;
  if (q[0] > q[2]) return `ymin ${q[0]} > ymax ${q[2]}`;
  if (q[1] > q[3]) return `xmin ${q[1]} > xmax ${q[3]}`;
  return null;
}

function checkFormat(format: BoxFormat): void {
  if (!isBoxFormat(format)) fail(`box: unknown box format ${JSON.stringify(format)} (expected ${BOX_FORMATS.join(" or ")})`);
}

/**
 * The text of a quantised box: `"ymin xmin ymax xmax"` in `format` (default canonical).
 * Throws {@link SiglipError} for an invalid box or format.
 */
export function boxToText(q: QuantizedBox, format: BoxFormat = DEFAULT_BOX_FORMAT): string {
  checkFormat(format);
  const bad = checkQuantized(q);
  if (bad) fail(`box: ${bad}`);
  return format === "padded" ? q.map((v) => String(v).padStart(DIGITS, "0")).join(" ") : q.join(" ");
}

/** Longest valid box text: four 3-digit numbers and three spaces. */
const MAX_TEXT = 4 * DIGITS + 3;
const NUMBER: Record<BoxFormat, RegExp> = { canonical: /^(0|[1-9][0-9]*)$/, padded: new RegExp(`^[0-9]{${DIGITS}}$`) };

/**
 * Parse box text strictly: exactly four integers separated by single spaces, each in
 * [0, BINS − 1], with ymin ≤ ymax and xmin ≤ xmax, written in `format` (default canonical):
 * canonical decimals (ASCII digits, no sign, no leading zeros), or, padded, exactly 3 ASCII
 * digits each. Spaces around the whole text are allowed (decoders often emit one); anything
 * else fails — also a box in the other format. Never throws (an unknown format is a failure).
 */
export function parseBoxText(s: string, format: BoxFormat = DEFAULT_BOX_FORMAT): BoxParse {
  if (typeof s !== "string") return { ok: false, reason: "not a string" };
  if (!isBoxFormat(format)) return { ok: false, reason: `unknown box format ${JSON.stringify(format)}` };
  const t = s.replace(/^ +| +$/g, "");
  if (t.length > MAX_TEXT) return { ok: false, reason: `too long (${s.length} characters)` };
  const parts = t.split(" ");
  if (parts.length !== 4) return { ok: false, reason: `expected 4 numbers separated by single spaces, got ${parts.length} fields` };
  const q: number[] = [];
  for (const p of parts) {
    if (!NUMBER[format].test(p)) return { ok: false, reason: `${JSON.stringify(p)} is not ${format === "padded" ? `a ${DIGITS}-digit zero-padded` : "a canonical decimal"} integer` };
    q.push(Number(p));
  }
  const box = q as unknown as QuantizedBox;
  const bad = checkQuantized(box);
  return bad ? { ok: false, reason: bad } : { ok: true, box };
}

/** Pixel box `[x0, y0, x1, y1]` at the bin centres of a quantised box. Throws {@link SiglipError} for an invalid box or side. */
export function dequantizeBox(q: QuantizedBox, width: number, height: number): [number, number, number, number] {
  checkSide(width, "width");
  checkSide(height, "height");
  const bad = checkQuantized(q);
  if (bad) fail(`box: ${bad}`);
  const c = (v: number, side: number) => ((v + 0.5) / BINS) * side;
  return [c(q[1], width), c(q[0], height), c(q[3], width), c(q[2], height)];
}

/** Pixel box → box text in one step. */
export function pixelBoxToText(box: PixelBox, width: number, height: number, format: BoxFormat = DEFAULT_BOX_FORMAT): string {
  return boxToText(quantizeBox(box, width, height), format);
}

/** The three LocCa tasks. */
export type LocCaTask = "cap" | "aref" | "gcap";

/** A LocCa decoder sequence: `text` = `prefix` + " " + `target`; the loss is on `target`. */
export interface LocCaPrompt {
  task: LocCaTask;
  /** The task prefix without the trailing space: "Cap:", "ARef:" or "GCap:". */
  prefix: string;
  /** What the decoder learns to predict (everything after the prefix and its space). */
  target: string;
  /** The whole sequence. */
  text: string;
  /** `prefix.length + 1`: characters of `text` before `target` (no loss). */
  prefixLength: number;
}

function checkCaption(caption: string): void {
  if (typeof caption !== "string" || caption.trim() === "") fail("box: a LocCa caption must be a non-empty string");
}

function prompt(task: LocCaTask, prefix: string, target: string): LocCaPrompt {
  return { task, prefix, target, text: `${prefix} ${target}`, prefixLength: prefix.length + 1 };
}

/** Captioning: `"Cap: {caption}"`. */
export function capPrompt(caption: string): LocCaPrompt {
  checkCaption(caption);
  return prompt("cap", "Cap:", caption);
}

/** Automatic referring expression (caption → box): `"ARef: {caption} : {box}"`. */
export function arefPrompt(caption: string, box: QuantizedBox, format: BoxFormat = DEFAULT_BOX_FORMAT): LocCaPrompt {
  checkCaption(caption);
  return prompt("aref", "ARef:", `${caption} : ${boxToText(box, format)}`);
}

/** Grounded captioning (box → caption): `"GCap: {box} : {caption}"`. */
export function gcapPrompt(box: QuantizedBox, caption: string, format: BoxFormat = DEFAULT_BOX_FORMAT): LocCaPrompt {
  checkCaption(caption);
  return prompt("gcap", "GCap:", `${boxToText(box, format)} : ${caption}`);
}

/**
 * The box of an ARef decoder output (`"{caption} : {box}"` or just the box; a leading
 * "ARef:" prefix is accepted too): the text after the last " : ", in the decoder's `format`
 * (default canonical). Never throws.
 */
export function parseArefOutput(s: string, format: BoxFormat = DEFAULT_BOX_FORMAT): BoxParse {
  if (typeof s !== "string") return { ok: false, reason: "not a string" };
  const i = s.lastIndexOf(" : ");
  return parseBoxText(i >= 0 ? s.slice(i + 3) : s.replace(/^ARef:/, ""), format);
}

/** The formatted text of coordinate value `n` in `format`. */
function coordText(n: number, format: BoxFormat): string {
  return format === "padded" ? String(n).padStart(DIGITS, "0") : String(n);
}

/**
 * Whether `s` can still grow into a box text of `format` that {@link parseBoxText} accepts —
 * the grammar of constrained `locate` decoding. At most one leading space (the one training puts
 * before the box), then up to four coordinates separated by single spaces. Every finished
 * coordinate must be valid in `format` and in [0, BINS − 1], with ymax ≥ ymin and xmax ≥ xmin; the
 * unfinished last one must be the start of such a coordinate. The empty text is a prefix; a
 * finished box followed by anything is not. Never throws.
 */
export function isBoxTextPrefix(s: string, format: BoxFormat = DEFAULT_BOX_FORMAT): boolean {
  if (typeof s !== "string" || !isBoxFormat(format)) return false;
  const t = s.startsWith(" ") ? s.slice(1) : s;
  if (t === "") return true;
  const parts = t.split(" ");
  if (parts.length > 4) return false;
  const values: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const lo = i >= 2 ? values[i - 2]! : 0; // ymax ≥ ymin, xmax ≥ xmin
    if (i < parts.length - 1) {
      if (!NUMBER[format].test(p)) return false;
      const v = Number(p);
      if (v < lo || v >= BINS) return false;
      values.push(v);
    } else if (p !== "") {
      if (!/^[0-9]+$/.test(p) || p.length > DIGITS) return false;
      let completable = false;
      for (let n = lo; n < BINS && !completable; n++) completable = coordText(n, format).startsWith(p);
      if (!completable) return false;
    }
  }
  return true;
}

/**
 * The next-token rule of constrained `locate` decoding (src/tasks/caption.ts `TokenConstraint`):
 * after the generated ids, only tokens that keep the answer a prefix of a valid box
 * ({@link isBoxTextPrefix}), and EOS only once the answer is a whole box. `text` is the
 * tokenizer's decoding of ids; the tokens considered are those of the first `vocab` ids whose
 * text is digits and spaces (found once, here). Pure: the same ids give the same answer.
 */
export function boxTokenConstraint(text: (ids: readonly number[]) => string, vocab: number, eos: number, format: BoxFormat = DEFAULT_BOX_FORMAT): (generated: readonly number[]) => number[] {
  checkFormat(format);
  const pieces: Array<{ id: number; text: string }> = [];
  for (let id = 0; id < vocab; id++) {
    if (id === eos) continue;
    const t = text([id]);
    if (/^[ 0-9]+$/.test(t)) pieces.push({ id, text: t });
  }
  return (generated) => {
    const so = text(generated);
    const allowed = pieces.filter((p) => isBoxTextPrefix(so + p.text, format)).map((p) => p.id);
    if (parseBoxText(so, format).ok) allowed.push(eos);
    return allowed;
  };
}
