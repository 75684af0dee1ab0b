/**
 * The three LocCa decoder sequences of one manifest row (training-recipe §2): the caption
 * ("Cap: …"), and — when the row has regions — one region sampled for the referring expression
 * ("ARef: {text} : {box}") and one, sampled independently, for the grounded caption
 * ("GCap: {box} : {text}"), as LocCa does (one box–text pair per example per task). Boxes are
 * quantised with src/tasks/boxes.ts against the image's width and height.
 */
import { arefPrompt, capPrompt, gcapPrompt, quantizeBox, type LocCaPrompt, type PixelBox } from "../../tasks/boxes.js";
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
}

export function locCaTargets(row: RegionRow, width: number, height: number, rng: Rng): LocCaTargets {
  const regions = row.regions ?? [];
  if (regions.length === 0) return { cap: capPrompt(row.text), aref: null, gcap: null };
  const a = regions[rng.int(regions.length)]!;
  const g = regions[rng.int(regions.length)]!;
  return {
    cap: capPrompt(row.text),
    aref: arefPrompt(a.text, quantizeBox(a.box, width, height)),
    gcap: gcapPrompt(quantizeBox(g.box, width, height), g.text),
  };
}
