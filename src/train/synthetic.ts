/**
 * A synthetic image–caption dataset generated in code, for proving that training learns:
 * coloured shapes (circle, square, triangle, cross) in 4 colours, 1–3 of them, a position for
 * single shapes; captions in English, German and Spanish ("two red circles",
 * "ein blaues Dreieck links", "una cruz amarilla arriba"). Images are drawn directly as
 * normalised (3, R, R) pixels ((v − 0.5) / 0.5, as the SigLIP processor does).
 *
 * Zero-shot task: 16 classes colour × shape, prompts in each language ("a red circle",
 * "ein roter Kreis", "un círculo rojo"), held-out images from another seed; chance is 1/16.
 */
import { Rng } from "./rng.js";

export const COLOURS = ["red", "green", "blue", "yellow"] as const;
export const SHAPES = ["circle", "square", "triangle", "cross"] as const;
export const POSITIONS = ["left", "right", "top", "bottom", "center"] as const;
export const LANGUAGES = ["en", "de", "es"] as const;
export type Colour = (typeof COLOURS)[number];
export type Shape = (typeof SHAPES)[number];
export type Position = (typeof POSITIONS)[number];
export type Language = (typeof LANGUAGES)[number];

const RGB: Record<Colour, [number, number, number]> = { red: [0.9, 0.12, 0.1], green: [0.1, 0.8, 0.2], blue: [0.15, 0.3, 0.95], yellow: [0.95, 0.9, 0.1] };

export interface SceneSpec {
  colour: Colour;
  shape: Shape;
  count: number;
  /** Only for count 1. */
  position?: Position;
}

// ---- captions ----------------------------------------------------------------------------------

const EN_NUM = ["a", "two", "three"];
const EN_SHAPE: Record<Shape, [string, string]> = { circle: ["circle", "circles"], square: ["square", "squares"], triangle: ["triangle", "triangles"], cross: ["cross", "crosses"] };
const EN_POS: Record<Position, string> = { left: "on the left", right: "on the right", top: "at the top", bottom: "at the bottom", center: "in the middle" };

// German: Kreis is masculine, the others neuter; adjective endings after ein/eins and in the plural.
const DE_SHAPE: Record<Shape, [string, string, "m" | "n"]> = { circle: ["Kreis", "Kreise", "m"], square: ["Quadrat", "Quadrate", "n"], triangle: ["Dreieck", "Dreiecke", "n"], cross: ["Kreuz", "Kreuze", "n"] };
const DE_COL: Record<Colour, string> = { red: "rot", green: "grün", blue: "blau", yellow: "gelb" };
const DE_NUM = ["ein", "zwei", "drei"];
const DE_POS: Record<Position, string> = { left: "links", right: "rechts", top: "oben", bottom: "unten", center: "in der Mitte" };

// Spanish: cruz is feminine.
const ES_SHAPE: Record<Shape, [string, string, "m" | "f"]> = { circle: ["círculo", "círculos", "m"], square: ["cuadrado", "cuadrados", "m"], triangle: ["triángulo", "triángulos", "m"], cross: ["cruz", "cruces", "f"] };
const ES_COL: Record<Colour, [string, string, string, string]> = {
  red: ["rojo", "roja", "rojos", "rojas"], green: ["verde", "verde", "verdes", "verdes"], blue: ["azul", "azul", "azules", "azules"], yellow: ["amarillo", "amarilla", "amarillos", "amarillas"],
};
const ES_NUM = ["un", "dos", "tres"];
const ES_POS: Record<Position, string> = { left: "a la izquierda", right: "a la derecha", top: "arriba", bottom: "abajo", center: "en el centro" };

/** The caption of a scene in a language; `withPosition` adds the position phrase (count 1 only). */
export function caption(s: SceneSpec, lang: Language, withPosition: boolean): string {
  const plural = s.count > 1;
  const pos = withPosition && s.position ? s.position : undefined;
  if (lang === "en") {
    const art = !plural && s.shape === "square" ? "a" : EN_NUM[s.count - 1]!;
    return [art, s.colour, EN_SHAPE[s.shape][plural ? 1 : 0], pos ? EN_POS[pos] : ""].filter(Boolean).join(" ");
  }
  if (lang === "de") {
    const [sg, pl, gender] = DE_SHAPE[s.shape];
    const adj = DE_COL[s.colour] + (plural ? "e" : gender === "m" ? "er" : "es");
    return [DE_NUM[s.count - 1]!, adj, plural ? pl : sg, pos ? DE_POS[pos] : ""].filter(Boolean).join(" ");
  }
  const [sg, pl, gender] = ES_SHAPE[s.shape];
  const col = ES_COL[s.colour][(plural ? 2 : 0) + (gender === "f" ? 1 : 0)]!;
  const num = !plural && gender === "f" ? "una" : ES_NUM[s.count - 1]!;
  return [num, plural ? pl : sg, col, pos ? ES_POS[pos] : ""].filter(Boolean).join(" ");
}

/** The zero-shot prompt of a class (a single shape, no position). */
export function classPrompt(colour: Colour, shape: Shape, lang: Language): string {
  return caption({ colour, shape, count: 1 }, lang, false);
}

// ---- images ------------------------------------------------------------------------------------

function inside(shape: Shape, dx: number, dy: number, r: number): boolean {
  switch (shape) {
    case "circle": return dx * dx + dy * dy <= r * r;
    case "square": return Math.abs(dx) <= r * 0.85 && Math.abs(dy) <= r * 0.85;
    case "triangle": return dy <= r * 0.8 && dy >= -r && Math.abs(dx) <= (dy + r) * 0.6;
    case "cross": return (Math.abs(dx) <= r * 0.3 && Math.abs(dy) <= r) || (Math.abs(dy) <= r * 0.3 && Math.abs(dx) <= r);
  }
}

/** Draw a scene as normalised (3, R, R) pixels. */
export function render(s: SceneSpec, R: number, rng: Rng): Float32Array {
  return renderRect(s, R, R, rng);
}

/**
 * Draw a scene as normalised (3, H, W) pixels: positions are fractions of each side, shape sizes
 * of the shorter side (for W = H = R exactly {@link render}, same RNG draws).
 */
export function renderRect(s: SceneSpec, W: number, H: number, rng: Rng): Float32Array {
  const R = Math.min(W, H);
  const img = new Float32Array(3 * W * H);
  const plane = W * H;
  const bg = [0.2 + 0.1 * rng.next(), 0.2 + 0.1 * rng.next(), 0.2 + 0.1 * rng.next()];
  for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) img[c * plane + i] = bg[c]! + 0.04 * (rng.next() - 0.5);
  const r = s.count === 1 ? R * (0.17 + 0.05 * rng.next()) : R * (0.12 + 0.03 * rng.next());
  const centres: Array<[number, number]> = [];
  if (s.count === 1) {
    const j = () => (rng.next() - 0.5) * R * 0.08;
    const at: Record<Position, [number, number]> = { left: [0.25, 0.5], right: [0.75, 0.5], top: [0.5, 0.25], bottom: [0.5, 0.75], center: [0.5, 0.5] };
    const [fx, fy] = at[s.position ?? "center"];
    centres.push([fx * W + j(), fy * H + j()]);
  } else {
    for (let tries = 0; centres.length < s.count && tries < 200; tries++) {
      const cx = r + rng.next() * (W - 2 * r);
      const cy = r + rng.next() * (H - 2 * r);
      if (centres.every(([x, y]) => Math.hypot(x - cx, y - cy) > 2.1 * r)) centres.push([cx, cy]);
    }
  }
  const col = RGB[s.colour].map((v) => Math.min(1, Math.max(0, v + 0.08 * (rng.next() - 0.5))));
  for (const [cx, cy] of centres) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        if (!inside(s.shape, x + 0.5 - cx, y + 0.5 - cy, r)) continue;
        for (let c = 0; c < 3; c++) img[c * plane + y * W + x] = col[c]!;
      }
    }
  }
  for (let i = 0; i < img.length; i++) img[i] = (img[i]! - 0.5) / 0.5;
  return img;
}

/** Normalised (3, H, W) pixels back to an 8-bit RGB image (for the NaFlex pipeline, which resizes). */
export function toRgb8(chw: Float32Array, W: number, H: number): { width: number; height: number; data: Uint8Array } {
  const plane = W * H;
  const data = new Uint8Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) data[3 * i + c] = Math.round(Math.min(1, Math.max(0, chw[c * plane + i]! * 0.5 + 0.5)) * 255);
  }
  return { width: W, height: H, data };
}

/** Random scenes of random aspect ratios (one of `sizes`, [W, H]), captions in random languages. */
export function synthesizeMixed(n: number, sizes: ReadonlyArray<readonly [number, number]>, seed: number): Array<Omit<SyntheticPair, "pixels"> & { width: number; height: number; pixels: Float32Array }> {
  const rng = new Rng(seed);
  const out = [];
  for (let i = 0; i < n; i++) {
    const count = 1 + (rng.next() < 0.5 ? 0 : rng.int(2) + 1);
    const scene: SceneSpec = { colour: rng.pick(COLOURS), shape: rng.pick(SHAPES), count };
    if (count === 1) scene.position = rng.pick(POSITIONS);
    const lang = rng.pick(LANGUAGES);
    const [width, height] = rng.pick(sizes);
    out.push({ scene, lang, caption: caption(scene, lang, rng.next() < 0.5), width, height, pixels: renderRect(scene, width, height, rng) });
  }
  return out;
}

export interface SyntheticPair {
  scene: SceneSpec;
  lang: Language;
  caption: string;
  pixels: Float32Array;
}

/** Random scenes with captions in random languages. */
export function synthesize(n: number, R: number, seed: number): SyntheticPair[] {
  const rng = new Rng(seed);
  const out: SyntheticPair[] = [];
  for (let i = 0; i < n; i++) {
    const count = 1 + (rng.next() < 0.5 ? 0 : rng.int(2) + 1);
    const scene: SceneSpec = { colour: rng.pick(COLOURS), shape: rng.pick(SHAPES), count };
    if (count === 1) scene.position = rng.pick(POSITIONS);
    const lang = rng.pick(LANGUAGES);
    out.push({ scene, lang, caption: caption(scene, lang, rng.next() < 0.5), pixels: render(scene, R, rng) });
  }
  return out;
}

/** The 16 classes in a fixed order. */
export function classes(): Array<{ colour: Colour; shape: Shape }> {
  return COLOURS.flatMap((colour) => SHAPES.map((shape) => ({ colour, shape })));
}
