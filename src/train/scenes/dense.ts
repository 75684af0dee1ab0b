/**
 * Per-patch ground truth for the dense probe (issue 11's ablation; SigLIP 2 paper §4, Table 2 style
 * "which class covers this patch"): the image is cut into a G×G grid (of its width and of its height), as the FixRes tower cuts it, and
 * each cell is labelled by the shape that covers the cell's centre (the topmost one: later objects are
 * drawn on top), or background.
 */
import { insideOutline } from "./raster.js";
import { outline, SCENE_SHAPES, type SceneSpec } from "./spec.js";

/** Dense classes: 0 = background, 1 + index in SCENE_SHAPES for the shapes. */
export const DENSE_CLASSES: readonly string[] = ["background", ...SCENE_SHAPES];

/** Row-major (G·G) labels of `spec` on a G×G grid. */
export function patchLabels(spec: SceneSpec, grid: number): Uint8Array {
  const out = new Uint8Array(grid * grid);
  const cellX = spec.size / grid;
  const cellY = (spec.height ?? spec.size) / grid;
  const outlines = spec.objects.map((o) => ({ ol: outline(o), label: 1 + SCENE_SHAPES.indexOf(o.shape) }));
  for (let r = 0; r < grid; r++) {
    for (let c = 0; c < grid; c++) {
      const x = (c + 0.5) * cellX;
      const y = (r + 0.5) * cellY;
      for (const { ol, label } of outlines) if (insideOutline(ol, x, y)) out[r * grid + c] = label;
    }
  }
  return out;
}
