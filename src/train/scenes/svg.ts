/**
 * The "other renderer": a scene spec as an SVG document, rasterised by sharp (librsvg). Same
 * geometry, colours and background as {@link rasterizeScene}, different anti-aliasing and
 * gradient code, so that a model trained on one can be checked on the other.
 */
import sharp from "sharp";
import { SiglipError } from "../../errors.js";
import type { RgbBuffer } from "./raster.js";
import { noiseCells, outline, sceneSize, type Rgb, type SceneSpec } from "./spec.js";

const hex = (rgb: Rgb | Uint8Array, o = 0) => "#" + [0, 1, 2].map((c) => Number(rgb[o + c]).toString(16).padStart(2, "0")).join("");
const num = (v: number) => Number(v.toFixed(3)).toString();

/** The SVG text of a spec (width × height user units = pixels). */
export function sceneToSvg(spec: SceneSpec): string {
  const { width: s, height: hs } = sceneSize(spec);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${s}" height="${hs}" viewBox="0 0 ${s} ${hs}">`];
  const bg = spec.background;
  if (bg.kind === "plain") parts.push(`<rect x="0" y="0" width="${s}" height="${hs}" fill="${hex(bg.rgb)}"/>`);
  else if (bg.kind === "gradient") {
    parts.push(
      `<defs><linearGradient id="bg" gradientUnits="userSpaceOnUse" x1="${num(bg.start[0])}" y1="${num(bg.start[1])}" x2="${num(bg.end[0])}" y2="${num(bg.end[1])}">` +
        `<stop offset="0" stop-color="${hex(bg.from)}"/><stop offset="1" stop-color="${hex(bg.to)}"/></linearGradient></defs>`,
      `<rect x="0" y="0" width="${s}" height="${hs}" fill="url(#bg)"/>`,
    );
  } else {
    const { n, rows, rgb } = noiseCells(bg, s, hs);
    parts.push(`<g shape-rendering="crispEdges">`);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < n; c++) {
        const w = Math.min(bg.cell, s - c * bg.cell), h = Math.min(bg.cell, hs - r * bg.cell);
        parts.push(`<rect x="${c * bg.cell}" y="${r * bg.cell}" width="${w}" height="${h}" fill="${hex(rgb, (r * n + c) * 3)}"/>`);
      }
    }
    parts.push(`</g>`);
  }
  for (const o of spec.objects) {
    const ol = outline(o);
    if (ol.kind === "circle") parts.push(`<circle cx="${num(ol.cx)}" cy="${num(ol.cy)}" r="${num(ol.r)}" fill="${hex(o.rgb)}"/>`);
    else parts.push(`<polygon points="${ol.points.map(([x, y]) => `${num(x)},${num(y)}`).join(" ")}" fill="${hex(o.rgb)}"/>`);
  }
  parts.push(`</svg>`);
  return parts.join("");
}

/** Render a spec through its SVG with sharp/librsvg. */
export async function renderSceneSvg(spec: SceneSpec): Promise<RgbBuffer> {
  const svg = sceneToSvg(spec);
  const { data, info } = await sharp(Buffer.from(svg), { density: 72 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const { width, height } = sceneSize(spec);
  if (info.width !== width || info.height !== height || info.channels !== 3) {
    throw new SiglipError("image", `scene SVG rendered as ${info.width}×${info.height}×${info.channels}, expected ${width}×${height}×3`);
  }
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}
