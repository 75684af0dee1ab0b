/**
 * A 2-D sine–cosine start for the image tower's learned position table (training from scratch).
 *
 * The table stays a learned parameter (`vision_model.embeddings.position_embedding.weight`, the
 * checkpoint layout transformers loads); only its initial values change. They are big_vision's
 * `posemb_sincos_2d` (vit.py) for the tower's square patch grid: for width D (a multiple of 4),
 * q = D/4 frequencies ω_k = 1 / 10000^(k/(q−1)), and row p = y·G + x of the table is
 *
 *   [sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]      (each block q wide).
 *
 * Why: with the default N(0, 1/D) start, a patch's position is a small signal next to its pixels,
 * and in short runs of small models the patch tokens keep little of it: a linear probe reads a
 * patch's row from the first demo model's tokens at 29 % (chance 12.5 %), and its LocCa decoder,
 * whose cross-attention is blind to order, never learned where boxes are. With this start the
 * same probe reads 86 % after 400 steps, but not at the end of a longer run (32 % after 1,800
 * steps at lr 3e-3: training washes it out). It is an option of tools/make-demo-model.ts
 * (`--posemb sincos`, not the default); on its own it did not make the decoder place boxes (README).
 *
 * Oracle: tools/reference/posemb_goldens.py (numpy, the formula as big_vision writes it).
 */
import type { VisionConfig } from "../weights/config.js";
import { fixresGrid } from "../weights/config.js";
import { sincosCode } from "../models/blocks.js";
import type { Params } from "./session.js";

/** Key of the fixed-resolution image tower's position table. */
export const POSITION_TABLE = "vision_model.embeddings.position_embedding.weight";

/** big_vision's `posemb_sincos_2d(h, w, width)`: (h·w, width) row-major, float32. */
export function sincos2d(h: number, w: number, width: number, temperature = 10_000): Float32Array {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) throw new Error(`internal: sincos grid ${h}×${w}`);
  const ys: number[] = [];
  const xs: number[] = [];
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) ys.push(y), xs.push(x);
  return sincosCode(ys, xs, width, temperature);
}

/**
 * Overwrite the position table in `params` (fresh parameters of a fixed-resolution tower) with
 * {@link sincos2d} of its grid. Throws when the table is missing or has another shape.
 */
export function sincosPositionInit(params: Params, v: VisionConfig): void {
  const grid = fixresGrid(v);
  const table = params.get(POSITION_TABLE);
  if (!table) throw new Error(`internal: no ${POSITION_TABLE} among the parameters`);
  if (table.length !== grid * grid * v.hidden_size) throw new Error(`internal: ${POSITION_TABLE} has ${table.length} values, not ${grid}·${grid}·${v.hidden_size}`);
  table.set(sincos2d(grid, grid, v.hidden_size));
}
