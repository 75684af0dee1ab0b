/**
 * The three LocCa decoder sequences of one manifest row (training-recipe §2): the caption
 * ("Cap: …"), and — when the row has regions — one region sampled for the referring expression
 * ("ARef: {text} : {box}") and one, sampled independently, for the grounded caption
 * ("GCap: {box} : {text}"), as LocCa does (one box–text pair per example per task). Boxes are
 * quantised with src/tasks/boxes.ts against the image's width and height.
 *
 * `arefRows` k > 1 (the trainer's `arefRows`, an experiment on the task mix: more weight on the
 * referring expression) adds k − 1 more referring expressions in `extraArefs`, each region drawn
 * after the two above, so k = 1 draws exactly what it always did.
 *
 * `format` (the trainer's `boxFormat`, default canonical) is how the boxes are written
 * (src/tasks/boxes.ts `BoxFormat`); it changes the text only, never the draws.
 */
import { DEFAULT_BOX_FORMAT, arefPrompt, capPrompt, gcapPrompt, quantizeBox, type BoxFormat, type LocCaPrompt, type PixelBox } from "../../tasks/boxes.js";
import type { Rng } from "../rng.js";

export interface RegionRow {
  text: string;
  regions?: readonly { box: PixelBox; text: string }[];
}

export interface LocCaTargets {
  cap: LocCaPrompt;
  /** null when the row has no regions. */
  aref: LocCaPrompt | null;
  gcap: LocCaPrompt | null;
  /** With `arefRows` k > 1 and regions: k − 1 more referring expressions (else empty). */
  extraArefs?: LocCaPrompt[];
}

export function locCaTargets(row: RegionRow, width: number, height: number, rng: Rng, arefRows = 1, format: BoxFormat = DEFAULT_BOX_FORMAT): LocCaTargets {
  if (!Number.isInteger(arefRows) || arefRows < 1) throw new Error(`internal: arefRows ${arefRows} < 1`);
  const regions = row.regions ?? [];
  if (regions.length === 0) return { cap: capPrompt(row.text), aref: null, gcap: null, extraArefs: [] };
  const a = regions[rng.int(regions.length)]!;
  const g = regions[rng.int(regions.length)]!;
  const extraArefs: LocCaPrompt[] = [];
  for (let k = 1; k < arefRows; k++) {
    const e = regions[rng.int(regions.length)]!;
    extraArefs.push(arefPrompt(e.text, quantizeBox(e.box, width, height), format));
  }
  return {
    cap: capPrompt(row.text),
    aref: arefPrompt(a.text, quantizeBox(a.box, width, height), format),
    gcap: gcapPrompt(quantizeBox(g.box, width, height), g.text, format),
    extraArefs,
  };
}
