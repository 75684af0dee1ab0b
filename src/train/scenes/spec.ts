/**
 * Scene specs for the LocCa demo data: 1–3 filled shapes {circle, square, triangle, star} in
 * {red, green, blue, yellow} on a plain, gradient or noise background, every (colour, shape)
 * pair at most once per image. A spec is plain JSON (numbers rounded so that both renderers,
 * ours and SVG, draw exactly the same geometry) and carries each object's tight axis-aligned
 * pixel box, computed from the geometry (circle or polygon vertices) and clipped to the image.
 *
 * Coordinates: pixels, x right, y down, pixel (i, j) covers [i, i+1) × [j, j+1).
 */
import { Rng } from "../rng.js";

export const SCENE_SHAPES = ["circle", "square", "triangle", "star"] as const;
export const SCENE_COLOURS = ["red", "green", "blue", "yellow"] as const;
export const BACKGROUND_KINDS = ["plain", "gradient", "noise"] as const;
export type SceneShape = (typeof SCENE_SHAPES)[number];
export type SceneColour = (typeof SCENE_COLOURS)[number];
export type BackgroundKind = (typeof BACKGROUND_KINDS)[number];
export type Rgb = [number, number, number];
export type Box = [x0: number, y0: number, x1: number, y1: number];

/** Nominal object colours before jitter. */
export const BASE_RGB: Record<SceneColour, Rgb> = { red: [215, 40, 40], green: [40, 165, 60], blue: [45, 85, 215], yellow: [235, 205, 40] };
/** Per-channel colour jitter (±). */
export const COLOUR_JITTER = 15;
/** Object size range: circumscribed diameter as a fraction of the image side. */
export const SIZE_RANGE: [number, number] = [0.15, 0.45];
/** Inner/outer radius of the five-pointed star. */
export const STAR_INNER = 0.45;
/** At most this fraction of the smaller box may be covered by another object's box. */
export const MAX_OVERLAP = 0.1;
/** How far (fraction of the radius) a shape's circumcircle may stick out of the image. */
export const SPILL = 0.2;

export type Background =
  | { kind: "plain"; rgb: Rgb }
  /** Linear gradient from `from` at `start` to `to` at `end`, clamped beyond (SVG "pad"). */
  | { kind: "gradient"; from: Rgb; to: Rgb; start: [number, number]; end: [number, number] }
  /** Square cells of `cell` px, each `base` plus a grey offset and a small tint drawn from `seed` ({@link noiseCells}). */
  | { kind: "noise"; base: Rgb; amplitude: number; cell: number; seed: number };

export interface SceneObject {
  shape: SceneShape;
  colour: SceneColour;
  /** The drawn colour (jittered around {@link BASE_RGB}). */
  rgb: Rgb;
  center: [number, number];
  /** Circumscribed radius in pixels. */
  radius: number;
  /** Radians, clockwise on screen; 0 for circles. */
  rotation: number;
  /** Tight pixel box [x0, y0, x1, y1] of the drawn shape, clipped to the image. */
  box: Box;
}

export interface SceneSpec {
  /** Width in pixels (and the height, unless `height` is set). */
  size: number;
  /** Height in pixels when it differs from the width (mixed-aspect scenes, NaFlex training); absent: square. */
  height?: number;
  background: Background;
  /** Drawn in order (later ones on top). */
  objects: SceneObject[];
}

export type Outline = { kind: "circle"; cx: number; cy: number; r: number } | { kind: "polygon"; points: [number, number][] };

const round = (v: number, step: number) => Math.round(v / step) * step;
const r2 = (v: number) => Number(round(v, 0.01).toFixed(2));
const r3 = (v: number) => Number(round(v, 0.001).toFixed(3));

/** The exact outline of an object (both renderers draw this). */
export function outline(o: Pick<SceneObject, "shape" | "center" | "radius" | "rotation">): Outline {
  const [cx, cy] = o.center;
  const r = o.radius;
  if (o.shape === "circle") return { kind: "circle", cx, cy, r };
  const pts: [number, number][] = [];
  const at = (angle: number, rad: number): [number, number] => [cx + rad * Math.cos(angle), cy + rad * Math.sin(angle)];
  // Angles measured from "up" (−y), clockwise, plus the rotation.
  const up = -Math.PI / 2 + o.rotation;
  if (o.shape === "square") for (let k = 0; k < 4; k++) pts.push(at(up + Math.PI / 4 + (k * Math.PI) / 2, r));
  else if (o.shape === "triangle") for (let k = 0; k < 3; k++) pts.push(at(up + (k * 2 * Math.PI) / 3, r));
  else for (let k = 0; k < 10; k++) pts.push(at(up + (k * Math.PI) / 5, k % 2 === 0 ? r : r * STAR_INNER));
  return { kind: "polygon", points: pts };
}

/** The tight box of an outline, unclipped. */
export function outlineBox(ol: Outline): Box {
  if (ol.kind === "circle") return [ol.cx - ol.r, ol.cy - ol.r, ol.cx + ol.r, ol.cy + ol.r];
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const [x, y] of ol.points) {
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
  }
  return [x0, y0, x1, y1];
}

/** The tight box clipped to a size × height image (default square), rounded to 0.01 px. */
export function objectBox(o: Pick<SceneObject, "shape" | "center" | "radius" | "rotation">, size: number, height = size): Box {
  const b = outlineBox(outline(o));
  const c = (v: number, hi: number) => r2(Math.min(hi, Math.max(0, v)));
  return [c(b[0], size), c(b[1], height), c(b[2], size), c(b[3], height)];
}

/** Width and height of a spec. */
export function sceneSize(spec: Pick<SceneSpec, "size" | "height">): { width: number; height: number } {
  return { width: spec.size, height: spec.height ?? spec.size };
}

function boxOverlap(a: Box, b: Box): number {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  const area = (x: Box) => Math.max(1e-9, (x[2] - x[0]) * (x[3] - x[1]));
  return (w * h) / Math.min(area(a), area(b));
}

const clampByte = (v: number) => Math.max(0, Math.min(255, Math.round(v)));

/** A low-saturation light or dark colour (never close to the object colours). */
function neutral(rng: Rng, light: boolean): Rgb {
  const level = light ? rng.uniform(170, 235) : rng.uniform(15, 80);
  const t = light ? 15 : 8;
  const tint = (): number => rng.uniform(-t, t);
  return [clampByte(level + tint()), clampByte(level + tint()), clampByte(level + tint())];
}

/** A background for a W × H image (lengths scale with the shorter side; the gradient is centred). */
function background(rng: Rng, W: number, H: number, kind: BackgroundKind): Background {
  const side = Math.min(W, H);
  if (kind === "plain") return { kind, rgb: neutral(rng, rng.next() < 0.5) };
  if (kind === "gradient") {
    const lightFirst = rng.next() < 0.5;
    const a = rng.uniform(0, 2 * Math.PI);
    const half = (side / 2) * rng.uniform(0.8, 1.2);
    const [dx, dy] = [Math.cos(a) * half, Math.sin(a) * half];
    return { kind, from: neutral(rng, lightFirst), to: neutral(rng, !lightFirst), start: [r2(W / 2 - dx), r2(H / 2 - dy)], end: [r2(W / 2 + dx), r2(H / 2 + dy)] };
  }
  return { kind, base: neutral(rng, rng.next() < 0.5), amplitude: Math.round(rng.uniform(15, 40)), cell: Math.max(1, Math.round(side / 32)), seed: rng.int(2 ** 31) };
}

/**
 * Noise cell colours, row-major over `rows` = ceil(height / cell) rows of `n` = ceil(size / cell)
 * cells (height default: square), the same for every renderer.
 */
export function noiseCells(bg: Extract<Background, { kind: "noise" }>, size: number, height = size): { n: number; rows: number; rgb: Uint8Array } {
  const n = Math.ceil(size / bg.cell);
  const rows = Math.ceil(height / bg.cell);
  const rng = new Rng(bg.seed);
  const rgb = new Uint8Array(n * rows * 3);
  for (let i = 0; i < n * rows; i++) {
    const grey = rng.uniform(-bg.amplitude, bg.amplitude);
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = clampByte(bg.base[c]! + grey + rng.uniform(-6, 6));
  }
  return { n, rows, rgb };
}

export interface SpecOptions {
  /** Width (and height, unless `height`) in pixels. */
  size: number;
  /** Height when it differs from the width. */
  height?: number;
  /** 1…maxObjects objects (default 3, at most 16). */
  maxObjects?: number;
}

/**
 * One random scene. The object count is drawn uniformly in 1…maxObjects; each object gets up
 * to 60 placement tries (new size and position) against {@link MAX_OVERLAP}; when all fail the
 * scene keeps fewer objects.
 */
export function randomSceneSpec(rng: Rng, opts: SpecOptions): SceneSpec {
  const size = opts.size;
  const height = opts.height ?? size;
  const side = Math.min(size, height); // object sizes scale with the shorter side
  const maxObjects = Math.min(16, Math.max(1, opts.maxObjects ?? 3));
  const bg = background(rng, size, height, BACKGROUND_KINDS[rng.int(BACKGROUND_KINDS.length)]!);
  const count = 1 + rng.int(maxObjects);
  const pairs = rng.permutation(16).slice(0, count);
  const objects: SceneObject[] = [];
  for (const p of pairs) {
    const colour = SCENE_COLOURS[p >> 2]!;
    const shape = SCENE_SHAPES[p & 3]!;
    const rgb = BASE_RGB[colour].map((v) => clampByte(v + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER))) as Rgb;
    const symmetry = shape === "square" ? Math.PI / 2 : shape === "triangle" ? (2 * Math.PI) / 3 : shape === "star" ? (2 * Math.PI) / 5 : 0;
    for (let t = 0; t < 60; t++) {
      const radius = r2((rng.uniform(SIZE_RANGE[0], SIZE_RANGE[1]) * side) / 2);
      const lo = radius * (1 - SPILL);
      const center: [number, number] = [r2(rng.uniform(lo, size - lo)), r2(rng.uniform(lo, height - lo))];
      const rotation = symmetry ? r3(rng.uniform(0, symmetry)) : 0;
      const box = objectBox({ shape, center, radius, rotation }, size, height);
      if (box[2] - box[0] < 1 || box[3] - box[1] < 1) continue;
      if (objects.some((o) => boxOverlap(o.box, box) > MAX_OVERLAP)) continue;
      objects.push({ shape, colour, rgb, center, radius, rotation, box });
      break;
    }
  }
  return height === size ? { size, background: bg, objects } : { size, height, background: bg, objects };
}
