/**
 * Our own rasteriser for scene specs: the background evaluated at pixel centres, then each
 * object composited in order with its coverage, estimated on a {@link SUPERSAMPLE}² grid of
 * sub-pixel samples (anti-aliasing). Output: interleaved RGB bytes, row-major.
 */
import { noiseCells, outline, outlineBox, sceneSize, type Background, type Outline, type SceneSpec } from "./spec.js";

/** Sub-samples per pixel side (16 samples per pixel). */
export const SUPERSAMPLE = 4;

/** An RGB image: `data.length === width · height · 3`. */
export interface RgbBuffer {
  width: number;
  height: number;
  data: Uint8Array;
}

function fillBackground(bg: Background, size: number, height: number, out: Float32Array): void {
  if (bg.kind === "plain") {
    for (let i = 0; i < size * height; i++) for (let c = 0; c < 3; c++) out[i * 3 + c] = bg.rgb[c]!;
  } else if (bg.kind === "gradient") {
    const [sx, sy] = bg.start;
    const dx = bg.end[0] - sx, dy = bg.end[1] - sy;
    const len2 = dx * dx + dy * dy || 1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < size; x++) {
        const t = Math.min(1, Math.max(0, ((x + 0.5 - sx) * dx + (y + 0.5 - sy) * dy) / len2));
        const i = (y * size + x) * 3;
        for (let c = 0; c < 3; c++) out[i + c] = bg.from[c]! + (bg.to[c]! - bg.from[c]!) * t;
      }
    }
  } else {
    const { n, rgb } = noiseCells(bg, size, height);
    for (let y = 0; y < height; y++) {
      const row = Math.floor(y / bg.cell) * n;
      for (let x = 0; x < size; x++) {
        const k = (row + Math.floor(x / bg.cell)) * 3;
        const i = (y * size + x) * 3;
        for (let c = 0; c < 3; c++) out[i + c] = rgb[k + c]!;
      }
    }
  }
}

/** Point in polygon (even–odd crossings; the outlines are simple polygons, so nonzero agrees). */
function insidePolygon(pts: [number, number][], x: number, y: number): boolean {
  let inside = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i]!;
    const [xj, yj] = pts[j]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Whether pixel-space point (x, y) lies inside an outline. */
export function insideOutline(ol: Outline, x: number, y: number): boolean {
  if (ol.kind === "circle") {
    const dx = x - ol.cx, dy = y - ol.cy;
    return dx * dx + dy * dy <= ol.r * ol.r;
  }
  return insidePolygon(ol.points, x, y);
}

/** Render a spec with our rasteriser. */
export function rasterizeScene(spec: SceneSpec): RgbBuffer {
  const { width: size, height } = sceneSize(spec);
  const acc = new Float32Array(size * height * 3);
  fillBackground(spec.background, size, height, acc);
  const S = SUPERSAMPLE;
  for (const o of spec.objects) {
    const ol = outline(o);
    const b = outlineBox(ol);
    const x0 = Math.max(0, Math.floor(b[0])), y0 = Math.max(0, Math.floor(b[1]));
    const x1 = Math.min(size, Math.ceil(b[2])), y1 = Math.min(height, Math.ceil(b[3]));
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        let hits = 0;
        for (let sy = 0; sy < S; sy++) for (let sx = 0; sx < S; sx++) if (insideOutline(ol, x + (sx + 0.5) / S, y + (sy + 0.5) / S)) hits++;
        if (hits === 0) continue;
        const a = hits / (S * S);
        const i = (y * size + x) * 3;
        for (let c = 0; c < 3; c++) acc[i + c] = acc[i + c]! * (1 - a) + o.rgb[c]! * a;
      }
    }
  }
  const data = new Uint8Array(size * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, Math.round(acc[i]!)));
  return { width: size, height, data };
}
