/**
 * The settings of self-distillation and masked prediction (./distill.ts has the losses and the
 * sources of the defaults), kept apart from the graph code so that the CLI can read them
 * without loading onnxruntime.
 */
import { SiglipError } from "../errors.js";
import { fixresGrid, type VisionConfig } from "../weights/config.js";
import type { CropScale } from "./views.js";

/** Widths of a DINO projection head: D → hidden → hidden → bottleneck → (L2) → out. */
export interface HeadDims {
  hidden: number;
  bottleneck: number;
  out: number;
}

/** Every setting of the two losses (see the module comment for the defaults' sources). */
export interface DistillConfig {
  /** Fraction of the run after which the losses are on (0.8). */
  start: number;
  /** EMA momentum μ of the teacher (fixed). */
  emaMomentum: number;
  globalCrop: CropScale;
  localCrop: CropScale;
  /** Side of the local views in pixels (default {@link defaultLocalSize}). */
  localSize?: number;
  localViews: number;
  head: HeadDims;
  studentTemp: number;
  teacherTemp: number;
  centerMomentum: number;
  maskRatio: number;
  /** The per-size factor w_size (0.25 B, 0.5 L, 1 So400m, 0.5 g). */
  sizeFactor: number;
}

/** The one line for --distill on a NaFlex checkpoint (the trainer and the CLI both refuse it). */
export const NAFLEX_DISTILL_REFUSED = "--distill is for fixed-resolution checkpoints: SigLIP 2 trains its NaFlex variants without self-distillation or masked prediction (paper §2.4.2); drop --distill or use a FixRes checkpoint";

export const DEFAULT_DISTILL: DistillConfig = {
  start: 0.8, emaMomentum: 0.996, globalCrop: [0.4, 1], localCrop: [0.05, 0.4], localViews: 8,
  head: { hidden: 256, bottleneck: 64, out: 1024 }, studentTemp: 0.1, teacherTemp: 0.04, centerMomentum: 0.9,
  maskRatio: 0.5, sizeFactor: 0.25,
};

/** DINO's local side for this image side: 96/224 of it, in whole patches (at least one). */
export function defaultLocalSize(v: VisionConfig): number {
  return Math.max(1, Math.round((v.image_size * 96) / 224 / v.patch_size)) * v.patch_size;
}

/** The first step with the losses on: the first with step / T ≥ start. */
export function switchStep(start: number, total: number): number {
  return Math.max(0, Math.ceil(start * total - 1e-9));
}

/** Check a config; returns it with the local size filled in. One line per problem. */
export function checkDistill(d: DistillConfig, v: VisionConfig): DistillConfig & { localSize: number } {
  const bad = (what: string): never => { throw new SiglipError("usage", what); };
  const frac = (x: number): boolean => Number.isFinite(x) && x >= 0 && x <= 1;
  if (!frac(d.start) || d.start >= 1) bad(`--distill-start ${d.start} must be in [0, 1)`);
  if (!frac(d.emaMomentum)) bad(`--ema-momentum ${d.emaMomentum} must be in [0, 1]`);
  for (const [flag, r] of [["--global-crop", d.globalCrop], ["--local-crop", d.localCrop]] as const) {
    if (r.length !== 2 || !(r[0] > 0) || !(r[1] <= 1) || !(r[0] <= r[1])) bad(`${flag} ${r.join(",")} must be two area fractions 0 < lo ≤ hi ≤ 1`);
  }
  const localSize = d.localSize ?? defaultLocalSize(v);
  if (!Number.isInteger(localSize) || localSize < v.patch_size || localSize > 4 * v.image_size) bad(`--local-size ${localSize} must be an integer from the patch size ${v.patch_size} to ${4 * v.image_size}`);
  if (!Number.isInteger(d.localViews) || d.localViews < 1 || d.localViews > 64) bad(`--local-views ${d.localViews} must be an integer from 1 to 64`);
  for (const [k, x] of Object.entries(d.head)) if (!Number.isInteger(x) || x < 1 || x > 1 << 17) bad(`--distill-head: ${k} ${x} must be a positive integer`);
  for (const [flag, t] of [["student", d.studentTemp], ["teacher", d.teacherTemp]] as const) if (!(t > 0) || !Number.isFinite(t)) bad(`the ${flag} temperature ${t} must be positive`);
  if (!frac(d.centerMomentum)) bad(`the centre momentum ${d.centerMomentum} must be in [0, 1]`);
  if (!(d.maskRatio > 0 && d.maskRatio < 1)) bad(`the mask ratio ${d.maskRatio} must be in (0, 1)`);
  if (!(d.sizeFactor >= 0) || !Number.isFinite(d.sizeFactor)) bad(`--distill-size-factor ${d.sizeFactor} must be ≥ 0`);
  if (fixresGrid(v) ** 2 < 2) bad("masked prediction needs at least 2 patches per image");
  return { ...d, localSize };
}

