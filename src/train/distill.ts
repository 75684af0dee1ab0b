/**
 * Self-distillation (SILC) and masked prediction (TIPS) of SigLIP 2 (paper §2.3; notes:
 * training-recipe §3, §8; oracle: tools/reference/distill_goldens.py):
 *
 *   From step ⌈start·T⌉ (default 80% of the run): teacher ← copy of the student image tower and
 *   heads, fresh heads and mask token (./init-like, seeded), fresh AdamW state for them. Then
 *   every step, per image: one global view x_g and V local views x_l (./views.ts), and
 *
 *   P_t    = softmax((h_t(x_g) − c) / τ_t)                      teacher, no gradient, centre c
 *   L_SD   = mean over images and views of −Σ_k P_t(k) · log softmax(h_s(x_l) / τ_s)(k)
 *   L_MP   = mean over masked patches of the same cross-entropy, per patch: the student sees
 *            x_g with 50% of its patch embeddings replaced by the mask token (position
 *            embedding still added), the teacher sees x_g; heads on the post-LN patch tokens
 *   L      = L_sig + L_LocCa + w_size·(1·L_SD + 0.25·L_MP)       (w_size 0.25: B-size factor)
 *
 *   after the optimiser step: θ_t ← μ·θ_t + (1 − μ)·θ_s (fixed μ, SILC), and each centre
 *   c ← m·c + (1 − m)·mean over the batch of the teacher's head outputs (DINO; one centre for
 *   the image-level head, one for the patch head, as iBOT).
 *
 * The image-level loss uses the pooled (MAP head) output; the sigmoid and LocCa losses keep the
 * original image. The heads are DINO's: Linear → GELU → Linear → GELU → Linear (bottleneck) →
 * L2-normalise → a bias-free Linear to K outputs whose rows are L2-normalised (weight norm with
 * g = 1). Separate heads for the two terms (the paper's "heads"). Both towers are one definition:
 * the student's local and masked views are the same `fixresVision` tower (src/models/siglip.ts
 * `FixresView`), built again on the same parameters, and so is the teacher (its own graph,
 * forward only, fed the teacher's values).
 *
 * What the paper and notes leave open, and our choices (all flags or options): μ 0.996 (DINO's
 * start value), crops 0.4–1 (global) / 0.05–0.4 (local) of the area, local side 96/224 of the
 * image side (DINO), τ_s 0.1, τ_t 0.04 (fixed), centre momentum 0.9, heads 256 → 64 → 1024
 * (small-scale; DINO 2048 → 256 → 65536), random (not block-wise) masks of round(0.5·N) patches.
 *
 * Saved with the run (`distill.safetensors` beside model.safetensors, for resume): the heads and
 * mask token (`distill.*`), the teacher (`teacher.<key>`) and the centres; model.safetensors stays
 * a plain transformers checkpoint without any of them.
 */
import { join } from "node:path";
import { existsSync } from "node:fs";
import { Graph, type Dim } from "../graph/graph.js";
import { ort } from "../graph/runtime.js";
import { sessionOptions } from "../graph/session-options.js";
import { SiglipError } from "../errors.js";
import { gelu } from "../models/blocks.js";
import { InputParams, type Layer, type ParamSource, type ParamSpec } from "../models/params.js";
import { fixresVision } from "../models/siglip.js";
import { towerForward } from "../models/tower.js";
import { fixresGrid, type VisionConfig } from "../weights/config.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import { readChecked, type NamedTensor } from "./checkpoint.js";
import { l2normalize } from "./loss.js";
import { Rng, mixSeed } from "./rng.js";
import type { AdamW } from "./optim.js";
import type { Params } from "./session.js";
import type { DistillConfig } from "./distill-config.js";
import { makeViews, patchMasks } from "./views.js";

/** Key prefix of the new parameters (heads, mask token): never in model.safetensors. */
export const DISTILL_PREFIX = "distill";
export const isDistillParam = (name: string): boolean => name.startsWith(`${DISTILL_PREFIX}.`);
/** The run-directory file of the heads, the teacher and the centres. */
export const DISTILL_FILE = "distill.safetensors";
export const DISTILL_FORMAT = "siglip2-distill";

/** Loss weights of the two terms (paper §2.3), before the per-size factor. */
export const SD_WEIGHT = 1;
export const MP_WEIGHT = 0.25;

export { DEFAULT_DISTILL, checkDistill, defaultLocalSize, switchStep, type DistillConfig, type HeadDims } from "./distill-config.js";
import type { HeadDims } from "./distill-config.js";

/** The student side of the two losses as the training graph needs it. */
export interface DistillGraphOptions {
  localViews: number;
  localSize: number;
  head: HeadDims;
  studentTemp: number;
  /** w_size. */
  sizeFactor: number;
}

/** Graph inputs of the two losses (the golden's names). */
export const DISTILL_INPUTS = {
  local: "sd_local_pixels", // (n·V, 3, r, r) student local views
  global: "mp_global_pixels", // (n, 3, R, R) the global view (masked for the student; the teacher's input)
  mask: "mp_mask", // (n, N) float32, 1 = masked patch
  sdTarget: "sd_teacher_probs", // (n, K) centred, sharpened teacher probabilities
  mpTarget: "mp_teacher_probs", // (n, N, K) per patch
} as const;

/** A DINO projection head under `p` (fc1, fc2, fc3, last_layer): (…, D) → (…, K). */
export function projectionHead(p: ParamSource, dim: number, h: HeadDims): Layer {
  const g = p.g;
  const fc1 = p.linear("fc1", dim, h.hidden);
  const fc2 = p.linear("fc2", h.hidden, h.hidden);
  const fc3 = p.linear("fc3", h.hidden, h.bottleneck);
  const last = p.tensor("last_layer.weight", [h.out, h.bottleneck], { decay: true }); // (K, Bn), rows normalised
  return (x) => {
    const z = l2normalize(g, fc3(gelu(g, fc2(gelu(g, fc1(x), "gelu")), "gelu"))); // (…, Bn)
    return g.matmul(z, g.transpose(l2normalize(g, last), [1, 0])); // (…, K)
  };
}

/** −Σ_k target · log softmax(logits / τ) over the last axis: (…, K) → (…). */
function softCrossEntropy(g: Graph, logits: string, target: string, temp: number): string {
  const logp = g.op("LogSoftmax", [g.mul(logits, g.constF(1 / temp))], { axis: { int: -1 } });
  return g.op("Neg", [g.op("ReduceSum", [g.mul(target, logp), g.constI64([-1])], { keepdims: { int: 0 } })]);
}

const meanAll = (g: Graph, v: string): string => g.op("ReduceMean", [v], { keepdims: { int: 0 } });

/**
 * The student side on training source `p` (the image tower's parameters already asked for):
 * asks for `distill.mask_token` (D), `distill.sd_head.*`, `distill.mp_head.*` in that order, and
 * returns the two losses and their weighted sum w_size·(L_SD + 0.25·L_MP).
 */
export function distillLosses(p: InputParams, v: VisionConfig, n: number, o: DistillGraphOptions): { loss: string; sd: string; mp: string } {
  const g = p.g;
  const D = v.hidden_size;
  const V = o.localViews;
  const N = fixresGrid(v) ** 2;
  const K = o.head.out;
  const d = p.at(DISTILL_PREFIX);
  const token = d.tensor("mask_token", [D]);
  const sdHead = projectionHead(d.at("sd_head"), D, o.head);
  const mpHead = projectionHead(d.at("mp_head"), D, o.head);
  const mask = g.input(DISTILL_INPUTS.mask, "float32", [n, N]);
  // L_SD: the local views through the same tower (positions resized to the local grid), pooled
  const local = towerForward(p, fixresVision(v, { input: DISTILL_INPUTS.local, size: o.localSize }), n * V).pooled; // (n·V, D)
  const sdLogits = g.reshape(sdHead(local), [n, V, K]); // (n, V, K)
  const sdTarget = g.op("Unsqueeze", [g.input(DISTILL_INPUTS.sdTarget, "float32", [n, K]), g.constI64([1])]); // (n, 1, K)
  const sd = meanAll(g, softCrossEntropy(g, sdLogits, sdTarget, o.studentTemp));
  // L_MP: the masked global view, per patch, at masked positions only
  const masked = towerForward(p, fixresVision(v, { input: DISTILL_INPUTS.global, mask: { mask, token } }), n).last; // (n, N, D)
  const mpCe = softCrossEntropy(g, mpHead(masked), g.input(DISTILL_INPUTS.mpTarget, "float32", [n, N, K]), o.studentTemp); // (n, N)
  const mp = g.div(g.op("ReduceSum", [g.mul(mpCe, mask)], { keepdims: { int: 0 } }), g.op("ReduceSum", [mask], { keepdims: { int: 0 } }));
  const loss = g.mul(g.add(g.mul(sd, g.constF(SD_WEIGHT)), g.mul(mp, g.constF(MP_WEIGHT))), g.constF(o.sizeFactor));
  return { loss, sd, mp };
}

/** The `distill.*` parameter specs, in graph order. */
export function distillSpecs(v: VisionConfig, head: HeadDims): ParamSpec[] {
  const p = InputParams.root(new Graph("distill.params"));
  const d = p.at(DISTILL_PREFIX);
  d.tensor("mask_token", [v.hidden_size]);
  projectionHead(d.at("sd_head"), v.hidden_size, head);
  projectionHead(d.at("mp_head"), v.hidden_size, head);
  return [...p.specs];
}

/** Mixed into the seed for the heads' and mask token's init, and for the per-step views and masks. */
export const DISTILL_INIT_STREAM = 0xd15711;
const DISTILL_STEP_STREAM = 0x5117c;
export const DISTILL_INIT_STD = 0.02;

/** Fresh heads and mask token: kernels and the token ~ N(0, 0.02²) (DINO's trunc-normal scale), biases 0. */
export function initDistillParams(specs: readonly ParamSpec[], seed: number): Params {
  const rng = new Rng(mixSeed(seed, DISTILL_INIT_STREAM));
  const out: Params = new Map();
  for (const s of specs.filter((x) => isDistillParam(x.name))) {
    const a = new Float32Array(s.shape.reduce((x, y) => x * y, 1));
    if (!s.name.endsWith(".bias")) for (let i = 0; i < a.length; i++) a[i] = rng.normal() * DISTILL_INIT_STD;
    out.set(s.name, a);
  }
  return out;
}

/** The teacher's parameter names: the whole image tower and both heads (not the mask token). */
export const isTeacherParam = (name: string): boolean =>
  name.startsWith("vision_model.") || name.startsWith(`${DISTILL_PREFIX}.sd_head.`) || name.startsWith(`${DISTILL_PREFIX}.mp_head.`);

/** θ_t ← μ·θ_t + (1 − μ)·θ_s for every teacher tensor (in place). */
export function emaUpdate(teacher: Params, student: Params, momentum: number): void {
  for (const [name, t] of teacher) {
    const s = student.get(name);
    if (!s) throw new Error(`internal: the student has no ${name}`);
    for (let i = 0; i < t.length; i++) t[i] = momentum * t[i]! + (1 - momentum) * s[i]!;
  }
}

/** P = softmax((logits − c) / τ) per row of `logits` (rows, K), in float64. */
export function teacherProbs(logits: Float32Array, K: number, center: Float32Array, temp: number): Float32Array {
  const rows = logits.length / K;
  const out = new Float32Array(logits.length);
  const z = new Float64Array(K);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let k = 0; k < K; k++) {
      z[k] = (logits[r * K + k]! - center[k]!) / temp;
      if (z[k]! > mx) mx = z[k]!;
    }
    let s = 0;
    for (let k = 0; k < K; k++) s += (z[k] = Math.exp(z[k]! - mx));
    for (let k = 0; k < K; k++) out[r * K + k] = z[k]! / s;
  }
  return out;
}

/** Column sums of `logits` (rows, K) added to `acc` (K, float64). */
function addColumnSums(acc: Float64Array, logits: Float32Array, K: number): void {
  for (let i = 0; i < logits.length; i++) acc[i % K] = acc[i % K]! + logits[i]!;
}

/** c ← m·c + (1 − m)·(sum / count) (in place). */
export function updateCenter(center: Float32Array, sum: Float64Array, count: number, momentum: number): void {
  for (let k = 0; k < center.length; k++) center[k] = momentum * center[k]! + (1 - momentum) * (sum[k]! / count);
}

/** The teacher's forward graph: the global view → `teacher_sd` (n, K) and `teacher_mp` (n, N, K), the heads' raw outputs. */
export function buildTeacherGraph(v: VisionConfig, n: Dim, head: HeadDims): { graph: Graph; params: ParamSpec[] } {
  const g = new Graph("siglip.teacher");
  const p = InputParams.root(g);
  const out = towerForward(p, fixresVision(v, { input: DISTILL_INPUTS.global }), n);
  const d = p.at(DISTILL_PREFIX);
  const sd = projectionHead(d.at("sd_head"), v.hidden_size, head)(out.pooled);
  const mp = projectionHead(d.at("mp_head"), v.hidden_size, head)(out.last);
  g.node("Identity", [sd], { outputs: ["teacher_sd"] });
  g.output("teacher_sd", "float32", [n, head.out]);
  g.node("Identity", [mp], { outputs: ["teacher_mp"] });
  g.output("teacher_mp", "float32", [n, fixresGrid(v) ** 2, head.out]);
  return { graph: g, params: [...p.specs] };
}

/** Runs the teacher graph on in-memory values. */
export class TeacherSession {
  private constructor(private readonly session: ort.InferenceSession, readonly params: ParamSpec[], private readonly v: VisionConfig) {}

  static async create(v: VisionConfig, head: HeadDims, o: { threads?: number } = {}): Promise<TeacherSession> {
    const tg = buildTeacherGraph(v, "batch", head);
    const session = await ort.InferenceSession.create(tg.graph.toModelBytes(), sessionOptions({ threads: o.threads }));
    return new TeacherSession(session, tg.params, v);
  }

  /** Raw head outputs of `n` global views (n, 3, R, R). */
  async run(teacher: Params, global: Float32Array, n: number): Promise<{ sd: Float32Array; mp: Float32Array }> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const s of this.params) feeds[s.name] = new ort.Tensor("float32", teacher.get(s.name)!, s.shape);
    const R = this.v.image_size;
    feeds[DISTILL_INPUTS.global] = new ort.Tensor("float32", global, [n, 3, R, R]);
    const out = await this.session.run(feeds);
    return { sd: out["teacher_sd"]!.data as Float32Array, mp: out["teacher_mp"]!.data as Float32Array };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The distillation inputs of one micro-batch (see {@link DISTILL_INPUTS}). */
export interface DistillBatch {
  local: Float32Array;
  global: Float32Array;
  mask: Float32Array;
  sdTarget: Float32Array;
  mpTarget: Float32Array;
}

/**
 * The state of the two losses during a run: the teacher's values, the centres, the teacher
 * session, the running centre sums of the current step. Created at the switch
 * ({@link DistillPhase.start}) or on resume after it.
 */
export class DistillPhase {
  private sdSum: Float64Array;
  private mpSum: Float64Array;
  private sdRows = 0;
  private mpRows = 0;

  private constructor(
    readonly config: DistillConfig & { localSize: number },
    private readonly v: VisionConfig,
    readonly teacher: Params,
    readonly sdCenter: Float32Array,
    readonly mpCenter: Float32Array,
    private readonly session: TeacherSession,
  ) {
    this.sdSum = new Float64Array(config.head.out);
    this.mpSum = new Float64Array(config.head.out);
  }

  /**
   * Switch on: the teacher is a copy of the student's image tower and heads (the student's
   * heads must already be in `student`), centres zero.
   */
  static async start(config: DistillConfig & { localSize: number }, v: VisionConfig, student: Params, o: { threads?: number } = {}): Promise<DistillPhase> {
    const session = await TeacherSession.create(v, config.head, o);
    const teacher: Params = new Map();
    for (const s of session.params) teacher.set(s.name, student.get(s.name)!.slice());
    const K = config.head.out;
    return new DistillPhase(config, v, teacher, new Float32Array(K), new Float32Array(K), session);
  }

  /** The graph options of the student side. */
  get graphOptions(): DistillGraphOptions {
    const c = this.config;
    return { localViews: c.localViews, localSize: c.localSize, head: c.head, studentTemp: c.studentTemp, sizeFactor: c.sizeFactor };
  }

  /** The per-step RNG of views and masks (seeded by (seed, step): a resumed run sees the same). */
  static stepRng(seed: number, step: number): Rng {
    return new Rng(mixSeed(mixSeed(seed, DISTILL_STEP_STREAM), step));
  }

  /** Views, masks and teacher targets of a micro-batch of n original images (n, 3, R, R). */
  async prepare(pixels: Float32Array, n: number, rng: Rng): Promise<DistillBatch> {
    const c = this.config;
    const R = this.v.image_size;
    const N = fixresGrid(this.v) ** 2;
    const K = c.head.out;
    const views = makeViews(pixels, n, { imageSize: R, globalCrop: c.globalCrop, localCrop: c.localCrop, localSize: c.localSize, localViews: c.localViews }, rng);
    const mask = patchMasks(n, N, c.maskRatio, rng);
    const t = await this.session.run(this.teacher, views.global, n);
    addColumnSums(this.sdSum, t.sd, K);
    addColumnSums(this.mpSum, t.mp, K);
    this.sdRows += n;
    this.mpRows += n * N;
    return {
      local: views.local, global: views.global, mask,
      sdTarget: teacherProbs(t.sd, K, this.sdCenter, c.teacherTemp),
      mpTarget: teacherProbs(t.mp, K, this.mpCenter, c.teacherTemp),
    };
  }

  /** After the optimiser step: the EMA teacher update, and the centres from this step's teacher outputs. */
  afterUpdate(student: Params): void {
    emaUpdate(this.teacher, student, this.config.emaMomentum);
    if (this.sdRows > 0) updateCenter(this.sdCenter, this.sdSum, this.sdRows, this.config.centerMomentum);
    if (this.mpRows > 0) updateCenter(this.mpCenter, this.mpSum, this.mpRows, this.config.centerMomentum);
    this.sdSum.fill(0);
    this.mpSum.fill(0);
    this.sdRows = 0;
    this.mpRows = 0;
  }

  /** The tensors saved beside the heads in distill.safetensors: `teacher.<key>`, `center.sd`, `center.mp`. */
  stateTensors(): NamedTensor[] {
    const shapes = new Map(this.session.params.map((s) => [s.name, s.shape]));
    const out: NamedTensor[] = [...this.teacher].map(([name, data]) => ({ name: `teacher.${name}`, shape: shapes.get(name)!, data }));
    const K = this.config.head.out;
    out.push({ name: "center.sd", shape: [K], data: this.sdCenter }, { name: "center.mp", shape: [K], data: this.mpCenter });
    return out;
  }

  /** Load the teacher and centres saved by a run in `dir` (after the switch). */
  load(dir: string): void {
    const path = join(dir, DISTILL_FILE);
    if (!existsSync(path)) throw new SiglipError("checkpoint", `${path}: missing (the run was saved after the self-distillation switch)`, { subject: dir });
    const f = SafetensorsFile.open(path);
    try {
      const read = (name: string, shape: readonly number[]): Float32Array => readChecked(f, path, name, shape);
      for (const s of this.session.params) this.teacher.set(s.name, read(`teacher.${s.name}`, s.shape));
      const K = this.config.head.out;
      this.sdCenter.set(read("center.sd", [K]));
      this.mpCenter.set(read("center.mp", [K]));
    } finally {
      f.close();
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * Resume after the switch: the `distill.*` parameters from `dir/distill.safetensors`, their
 * moments from `dir/optimizer.safetensors`, the teacher and centres (into `phase`). Every file
 * must have been written at `step`.
 */
export function loadDistillState(dir: string, specs: readonly ParamSpec[], params: Params, optimizer: AdamW, phase: DistillPhase, step: number): void {
  const path = join(dir, DISTILL_FILE);
  if (!existsSync(path)) throw new SiglipError("checkpoint", `${path}: missing (the run was saved after the self-distillation switch)`, { subject: dir });
  const files = [SafetensorsFile.open(path)];
  try {
    files.push(SafetensorsFile.open(join(dir, "optimizer.safetensors")));
    const [dis, opt] = files as [SafetensorsFile, SafetensorsFile];
    for (const [f, p] of [[dis, path], [opt, join(dir, "optimizer.safetensors")]] as const) {
      if (f.metadata["step"] !== String(step)) throw new SiglipError("checkpoint", `${p}: written at step ${f.metadata["step"]}, expected ${step} (interrupted save?)`, { subject: dir });
    }
    for (const s of specs.filter((x) => isDistillParam(x.name))) {
      params.set(s.name, readChecked(dis, path, s.name, s.shape));
      optimizer.m.set(s.name, readChecked(opt, join(dir, "optimizer.safetensors"), `m.${s.name}`, s.shape));
      optimizer.v.set(s.name, readChecked(opt, join(dir, "optimizer.safetensors"), `v.${s.name}`, s.shape));
    }
  } finally {
    for (const f of files) f.close();
  }
  phase.load(dir);
}
