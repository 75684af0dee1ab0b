/**
 * The recipe ablation (issue 12; SigLIP 2 paper §2, Table 5 style): one script, one table. The same
 * tiny SigLIP, the same steps and the same generated scenes per seed, five arms:
 *
 * - **A** sigmoid loss only;
 * - **B** sigmoid + LocCa (`objectives: sigmoid,locca`);
 * - **C** sigmoid + LocCa + self-distillation and masked prediction, switched on at 80 % of the run
 *   with the defaults of `siglip2 train --distill` (src/train/distill-config.ts DEFAULT_DISTILL);
 * - **D** a small student (width 48, 2 layers: `--student`) trained on ACID-curated batches (ratio 0.5,
 *   the paper's B/16 filtering ratio; super-batch 2B), teacher = the model of arm B of the same seed
 *   (`--teacher-arm B|C`), loaded through `SigLIP2.load`;
 * - **E** the same student, same initialisation, on random batches at equal steps.
 *
 * Evaluated on held-out scenes (other scene seeds than any training scene, the same sets for every
 * seed and arm), through the public API (SigLIP2.load on each saved checkpoint) and the eval harness
 * (src/train/scenes/eval.ts → src/tasks/eval.ts):
 * - zero-shot top-1 (mean of the five prompt languages) on 240 single-object scenes, 16 classes;
 * - retrieval R@1 image→text and text→image on 200 multi-object scenes (captions in five languages);
 * - referring-expression Acc@0.5: the jointly trained decoder of B and C, and the paper's frozen-encoder
 *   protocol (training-recipe.md §7.4) for A, D, E: a fresh decoder trained for `--probe-steps` on the
 *   frozen towers (`--probe-all`: for B and C too);
 * - a dense probe: a linear per-patch classifier (background or one of four shapes) on the un-pooled
 *   patch features, mean IoU on held-out scenes.
 * Each seed changes the training scenes, the initialisation and the batch order. A difference is
 * called within noise when |Δ| ≤ 2 sd, sd the larger of the two arms' seed standard deviations
 * (`compareSeeds`); the table also counts the seeds where one arm is ahead.
 *
 *   nice -n 10 npx tsx tools/ablate-recipe.ts [--seeds 1,2,3] [--steps 700] [--probe-steps 500] [--threads 2]
 *     [--jobs 1] [--arms A,B,C,D,E] [--teacher-arm B] [--ratio 0.5] [--student 48,2] [--json FILE]
 *     [--memory-position sincos2d|none]
 *
 * Every LocCa decoder (B and C, and the frozen-encoder probes) gets `--memory-position` (default
 * sincos2d, what `siglip2 train` gives a new decoder: src/models/locca.ts).
 *
 * `--jobs J` runs J (seed, arm) tasks at once as child processes (onnxruntime's run blocks its
 * process); D waits for its teacher. `tools/ablate-locca.ts` is this script with `--arms A,B --probe-all`.
 * Prints a markdown table (mean ± sd over seeds, then per seed) on stdout, writes the same as JSON
 * to `--json` (rewritten after every task, `partial: true` until the end); progress on stderr.
 * Tasks start seed by seed, so a run stopped early leaves whole seeds: the same flags with
 * `--from-json FILE` print the table of the seeds whose every arm finished, and say so.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { spawn } from "node:child_process";
import { isMemoryPosition, MEMORY_POSITIONS, type MemoryPosition } from "../src/models/locca.js";
import { fileURLToPath } from "node:url";
import { SigLIP2 } from "../src/api.js";
import { parseImageProcessorConfig, preprocessFixed } from "../src/preprocess/index.js";
import { InMemoryPairs } from "../src/train/data.js";
import { DEFAULT_DISTILL, switchStep } from "../src/train/distill-config.js";
import { tinyConfigJson } from "../src/train/experiment.js";
import { initDecoderParams, initParams } from "../src/train/init.js";
import { paramSpecs, type Objective, type Tower } from "../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import {
  compareSeeds, generateScenes, meanSd, renderScenes, SCENE_LANGUAGES, sceneCorpus, sceneEncoderReport, sceneLocate, scenePreprocessorConfig,
  sceneTokenizer, writeSceneModelFiles, type SceneEncoderReport, type SceneLanguage, type SceneRecord, type SceneSet,
} from "../src/train/scenes/index.js";
import type { Params } from "../src/train/session.js";
import { Trainer, type TrainConfig } from "../src/train/trainer.js";
import { parseConfig, type SiglipConfig } from "../src/weights/config.js";

const ARMS = ["A", "B", "C", "D", "E"] as const;
type Arm = (typeof ARMS)[number];
const ARM_NAMES: Record<Arm, string> = { A: "sigmoid", B: "sigmoid + LocCa", C: "sigmoid + LocCa + SD/MP", D: "small student, ACID", E: "small student, random" };

const { values: args } = parseArgs({
  options: {
    seeds: { type: "string", default: "1,2,3" },
    steps: { type: "string", default: "700" },
    "probe-steps": { type: "string", default: "500" },
    threads: { type: "string", default: "2" },
    train: { type: "string", default: "6000" },
    jobs: { type: "string", default: "1" },
    arms: { type: "string", default: ARMS.join(",") },
    "teacher-arm": { type: "string", default: "B" },
    ratio: { type: "string", default: "0.5" },
    student: { type: "string", default: "48,2" },
    "probe-all": { type: "boolean", default: false },
    "memory-position": { type: "string", default: "sincos2d" },
    json: { type: "string", default: join(tmpdir(), "siglip2-ablate-recipe.json") },
    title: { type: "string", default: "Recipe ablation" },
    script: { type: "string", default: "tools/ablate-recipe.ts" },
    keep: { type: "boolean", default: false },
    "from-json": { type: "string" },
    // internal: a --jobs child runs one task in the parent's work dir and prints its result as JSON
    task: { type: "string" },
    work: { type: "string" },
  },
});
const bad = (m: string): never => {
  process.stderr.write(`ablate-recipe: ${m}\n`);
  process.exit(2);
};
const ASKED = args.seeds!.split(",").map(Number);
/** The seeds of the table: all asked, or (--from-json of an interrupted run) those whose every arm finished. */
let SEEDS = ASKED;
const STEPS = Number(args.steps);
const PROBE_STEPS = Number(args["probe-steps"]);
const THREADS = Number(args.threads);
const TRAIN = Number(args.train);
const JOBS = Number(args.jobs);
const RATIO = Number(args.ratio);
const [STUDENT_WIDTH, STUDENT_LAYERS] = args.student!.split(",").map(Number) as [number, number];
const TEACHER_ARM = args["teacher-arm"] as Arm;
const ARM_LIST = args.arms!.split(",") as Arm[];
const MEMORY_POSITION = args["memory-position"]!;
if (!isMemoryPosition(MEMORY_POSITION)) bad(`--memory-position must be ${MEMORY_POSITIONS.join(" or ")}, got ${MEMORY_POSITION}`);
for (const [name, v] of [["--steps", STEPS], ["--probe-steps", PROBE_STEPS], ["--threads", THREADS], ["--train", TRAIN], ["--jobs", JOBS], ["--student width", STUDENT_WIDTH], ["--student layers", STUDENT_LAYERS]] as const) {
  if (!Number.isInteger(v) || v < 1) bad(`${name} must be a positive integer, got ${v}`);
}
if (STUDENT_WIDTH % 4 !== 0) bad(`--student width ${STUDENT_WIDTH} must be a multiple of the 4 heads`);
if (SEEDS.length === 0 || SEEDS.some((s) => !Number.isInteger(s) || s < 0) || new Set(SEEDS).size !== SEEDS.length) bad("--seeds: a comma-separated list of distinct non-negative integers");
if (!(RATIO > 0 && RATIO <= 1)) bad(`--ratio ${args.ratio} must be in (0, 1]`);
if (ARM_LIST.length === 0 || ARM_LIST.some((x) => !ARMS.includes(x)) || new Set(ARM_LIST).size !== ARM_LIST.length) bad(`--arms: distinct letters of ${ARMS.join(",")}, got ${args.arms}`);
if (TEACHER_ARM !== "B" && TEACHER_ARM !== "C") bad(`--teacher-arm must be B or C, got ${TEACHER_ARM}`);
if (ARM_LIST.includes("D") && !ARM_LIST.includes(TEACHER_ARM)) bad(`--arms D needs its teacher, arm ${TEACHER_ARM} (--teacher-arm), in --arms`);

// The tiny model: ViT with 8×8 patches on 64×64 scenes (an 8×8 grid), 3 layers of width 96 in both
// towers (the LocCa decoder: 1 layer, half the text depth), 32 text tokens (the longest decoder row is 28).
const IMAGE = 64;
const PATCH = 8;
const WIDTH = 96;
const LAYERS = 3;
const SEQ = 32;
const BATCH = 32;
const LR = 1e-3;
const HELD_OUT = 7_000_000; // held-out scene seeds (training seeds are 1000·seed + k, far below)
const GEMMA = join("node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json");

const log = (m: string) => process.stderr.write(`${m}\n`);
const t0 = performance.now();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;

/** Mean of the first and the last `window` post-switch steps of arm C's two distillation losses. */
interface DistillTrace {
  switchStep: number;
  window: number;
  sdFirst: number;
  sdLast: number;
  mpFirst: number;
  mpLast: number;
  /** Every post-switch step's losses (unweighted). */
  sd: number[];
  mp: number[];
}

/** One (seed, arm) task's figures (fractions, not %). */
interface ArmResult extends SceneEncoderReport {
  seed: number;
  arm: Arm;
  /** Frozen-encoder decoder probe (A, D, E; B and C with --probe-all). */
  locateProbe?: number;
  /** The jointly trained decoder (B, C). */
  locateJoint?: number;
  /** Training loss, mean of the last 20 steps: the sigmoid part, and LocCa's where trained. */
  loss: number;
  loccaLoss?: number;
  distill?: DistillTrace;
  /** Mean learnability of the kept examples and of the whole super-batch (D). */
  curation?: { scoreKept: number; scoreAll: number };
  /** Wall seconds of the arm's main training run (probe not included). */
  trainSeconds: number;
}

/** What every task shares: tokenizer, configs, side files and the held-out sets (the same in every process). */
interface Setup {
  work: string;
  tok: ReturnType<typeof sceneTokenizer>;
  big: { json: Record<string, unknown>; config: SiglipConfig };
  student: { json: Record<string, unknown>; config: SiglipConfig };
  staging: string;
  sets: { zeroShot: SceneSet; retrieval: SceneSet; denseTrain: SceneSet; denseTest: SceneSet };
}

async function setup(work: string): Promise<Setup> {
  process.env["SIGLIP2_CACHE"] ??= join(work, "onnx-cache");
  // Tokenizer: Gemma's tokens of every scene text (a fixed corpus, the same for all seeds).
  const tok = sceneTokenizer(JSON.parse(readFileSync(GEMMA, "utf8")), sceneCorpus(generateScenes({ seed: HELD_OUT + 9, count: 20000 })));
  const model = (width: number, layers: number) => {
    const json = tinyConfigJson({ width, layers, heads: 4, mlp: 4 * width, vocab: tok.vocabSize, seqLen: SEQ, image: IMAGE, patch: PATCH });
    return { json, config: parseConfig(json) };
  };
  const staging = join(work, "side-files");
  writeSceneModelFiles(staging, tok.json, { image: IMAGE, seqLen: SEQ });
  const all = [...SCENE_LANGUAGES];
  const set = async (records: SceneRecord[]): Promise<SceneSet> => ({ records, images: await renderScenes(records) });
  const sets = {
    zeroShot: await set(generateScenes({ seed: HELD_OUT + 1, count: 240, size: IMAGE, maxObjects: 1, langs: all })),
    retrieval: await set(generateScenes({ seed: HELD_OUT + 2, count: 200, size: IMAGE, langs: all })),
    denseTrain: await set(generateScenes({ seed: HELD_OUT + 3, count: 100, size: IMAGE, langs: all })),
    denseTest: await set(generateScenes({ seed: HELD_OUT + 4, count: 100, size: IMAGE, langs: all })),
  };
  return { work, tok, big: model(WIDTH, LAYERS), student: model(STUDENT_WIDTH, STUDENT_LAYERS), staging, sets };
}

/** Train, probe and evaluate one arm of one seed; checkpoints go to `work/seed<S>-<arm>[-probe]`. */
async function runTask(S: Setup, seed: number, arm: Arm): Promise<ArmResult> {
  const all: SceneLanguage[] = [...SCENE_LANGUAGES];
  const cfg = parseImageProcessorConfig(scenePreprocessorConfig(IMAGE), IMAGE);
  const train = generateScenes({ seed: 1000 * seed, count: TRAIN, size: IMAGE, langs: all });
  const trainImg = await renderScenes(train);
  const pixels = trainImg.map((im) => preprocessFixed(im, cfg));
  const dataset = (objectives: readonly Objective[], curated: boolean) =>
    new InMemoryPairs(pixels, train.map((s) => s.caption), S.tok.tokenizer, SEQ, {
      ...(objectives.includes("locca") ? { locca: { vocab: S.tok.vocabSize, regions: train.map((s) => s.regions), size: IMAGE } } : {}),
      ...(curated ? { images: trainImg } : {}),
    });
  const small = arm === "D" || arm === "E";
  const model = small ? S.student : S.big;

  interface Run { dir: string; params: Params; loss: number; locca: number; seconds: number; distill?: DistillTrace; curation?: { scoreKept: number; scoreAll: number } }
  const run = async (name: string, objectives: Objective[], params: Params, steps: number, freeze: readonly Tower[], extra: Pick<TrainConfig, "distill" | "curate"> = {}): Promise<Run> => {
    const trainer = await Trainer.create(model.config, params, {
      batchSize: BATCH, accumSteps: 1, steps, seed, freeze, threads: THREADS, objectives, ...extra,
      ...(objectives.includes("locca") ? { memoryPosition: MEMORY_POSITION as MemoryPosition } : {}),
      optimizer: { ...DEFAULT_OPTIMIZER, lr: LR, totalSteps: steps, warmupSteps: Math.round(steps * 0.05) },
    });
    const data = dataset(objectives, extra.curate !== undefined);
    const started = performance.now();
    const tail: Array<{ loss: number; locca: number }> = [];
    const sd: number[] = [], mp: number[] = [];
    let kept = 0, whole = 0;
    while (trainer.step < steps) {
      const s = await trainer.trainStep(data);
      if (s.step >= steps - 20) tail.push({ loss: s.sigmoidLoss ?? s.loss, locca: s.loccaLoss ?? NaN });
      if (s.sdLoss !== undefined) { sd.push(s.sdLoss); mp.push(s.mpLoss!); }
      if (s.curation) { kept += s.curation.scoreKept / steps; whole += s.curation.scoreAll / steps; }
      if (s.step % 100 === 0) {
        const parts = [s.loccaLoss === undefined ? "" : `sigmoid ${s.sigmoidLoss!.toFixed(3)}, locca ${s.loccaLoss.toFixed(3)}`, s.sdLoss === undefined ? "" : `sd ${s.sdLoss.toFixed(3)}, mp ${s.mpLoss!.toFixed(4)}`].filter((x) => x);
        log(`ablate: seed ${seed} ${name} step ${s.step} loss ${s.loss.toFixed(3)}${parts.length ? ` (${parts.join("; ")})` : ""} [${elapsed()}]`);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    log(`ablate: seed ${seed} ${name}: ${steps} steps in ${seconds.toFixed(0)} s [${elapsed()}]`);
    const dir = join(S.work, `seed${seed}-${name}`);
    trainer.save(dir, model.json, S.staging);
    await trainer.release();
    const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
    const r: Run = { dir, params: trainer.params, loss: mean(tail.map((x) => x.loss)), locca: mean(tail.map((x) => x.locca)), seconds };
    if (extra.distill && sd.length > 0) {
      const w = Math.max(1, Math.min(10, Math.floor(sd.length / 4)));
      r.distill = { switchStep: switchStep(extra.distill.start, steps), window: w, sdFirst: mean(sd.slice(0, w)), sdLast: mean(sd.slice(-w)), mpFirst: mean(mp.slice(0, w)), mpLast: mean(mp.slice(-w)), sd, mp };
    }
    if (extra.curate) r.curation = { scoreKept: kept, scoreAll: whole };
    return r;
  };
  // Frozen-encoder decoder probe: the arm's towers and a fresh decoder (the same init for every arm of a size).
  const probe = async (towers: Params): Promise<Run> => {
    const specs = paramSpecs(model.config, { objectives: ["sigmoid", "locca"] });
    const p: Params = new Map();
    for (const s of specs) if (!s.name.startsWith("decoder.")) p.set(s.name, towers.get(s.name)!.slice());
    for (const [n, v] of initDecoderParams(specs, seed + 1)) p.set(n, v);
    return run(`${arm}-probe`, ["sigmoid", "locca"], p, PROBE_STEPS, ["vision", "text"]);
  };
  const open = async <T>(dir: string, f: (m: SigLIP2) => Promise<T>): Promise<T> => {
    const m = await SigLIP2.load(dir, { threads: THREADS });
    try {
      return await f(m);
    } finally {
      await m.close();
    }
  };
  const locate = (dir: string) => open(dir, async (m) => (await sceneLocate(m, S.sets.retrieval.records, S.sets.retrieval.images)).accuracy);

  const objectives: Objective[] = arm === "B" || arm === "C" ? ["sigmoid", "locca"] : ["sigmoid"];
  // the same initial towers for A, B, C (the decoder draws from its own stream), and for D, E
  const init = initParams(paramSpecs(model.config, { objectives }), seed);
  let main: Run;
  if (arm === "C") main = await run(arm, objectives, init, STEPS, [], { distill: { ...DEFAULT_DISTILL } });
  else if (arm === "D") {
    const teacher = await SigLIP2.load(join(S.work, `seed${seed}-${TEACHER_ARM}`), { threads: THREADS });
    try {
      main = await run(arm, objectives, init, STEPS, [], { curate: { teacher, ratio: RATIO, teacherId: `arm ${TEACHER_ARM} seed ${seed}` } });
    } finally {
      await teacher.close();
    }
  } else main = await run(arm, objectives, init, STEPS, []);
  const joint = arm === "B" || arm === "C";
  const probed = !joint || args["probe-all"] ? await probe(main.params) : null;
  const report = await open(main.dir, (m) => sceneEncoderReport(m, S.sets));
  const r: ArmResult = { seed, arm, ...report, loss: main.loss, trainSeconds: main.seconds };
  if (probed) r.locateProbe = await locate(probed.dir);
  if (joint) { r.locateJoint = await locate(main.dir); r.loccaLoss = main.locca; }
  if (main.distill) r.distill = main.distill;
  if (main.curation) r.curation = main.curation;
  log(`ablate: seed ${seed} arm ${arm}: ${JSON.stringify(r)} [${elapsed()}]`);
  return r;
}

/**
 * The tasks in the order they start: seed by seed (so that an interrupted run leaves whole seeds),
 * within a seed the teacher first (D waits for it), then the longer arms.
 */
function tasks(): Array<{ seed: number; arm: Arm }> {
  const order: Arm[] = [TEACHER_ARM, ...(["C", "B", "D", "A", "E"] as const).filter((x) => x !== TEACHER_ARM)];
  return SEEDS.flatMap((seed) => order.filter((x) => ARM_LIST.includes(x)).map((arm) => ({ seed, arm })));
}

/** Write the results so far (`partial`: the run goes on, or was stopped; `--from-json` prints their table). */
function writeJson(results: ArmResult[], minutes: number, partial: boolean, lines: string[] = []): string {
  const json = resolve(args.json!);
  mkdirSync(dirname(json), { recursive: true });
  const sorted = [...results].sort((x, y) => x.seed - y.seed || ARMS.indexOf(x.arm) - ARMS.indexOf(y.arm));
  writeFileSync(json, `${JSON.stringify({ command: `nice -n 10 npx tsx ${args.script} ${commandArgs().join(" ")}`, partial, minutes, cpu: cpus()[0]?.model ?? "cpu", cores: cpus().length, arms: ARM_LIST, teacherArm: TEACHER_ARM, ratio: RATIO, steps: STEPS, probeSteps: PROBE_STEPS, seeds: ASKED, results: sorted, table: lines }, null, 2)}\n`);
  return json;
}
const minutesSoFar = () => (performance.now() - t0) / 60000;

/** Every task in this process, one after the other. */
async function inProcess(work: string): Promise<ArmResult[]> {
  const S = await setup(work);
  log(`ablate: tokenizer ${S.tok.vocabSize} tokens; model width ${WIDTH}, ${LAYERS} layers, student width ${STUDENT_WIDTH}, ${STUDENT_LAYERS} layers; ${IMAGE} px / ${PATCH}; ${STEPS} steps of ${BATCH}, probe ${PROBE_STEPS} steps; seeds ${SEEDS.join(",")}; arms ${ARM_LIST.join(",")}; work dir ${work}`);
  const out: ArmResult[] = [];
  for (const t of tasks()) {
    out.push(await runTask(S, t.seed, t.arm));
    writeJson(out, minutesSoFar(), true);
  }
  return out;
}

/** `--jobs J`: J child processes (this script, `--task seed:arm`) at once; D starts after its teacher is saved. */
async function inChildren(work: string): Promise<ArmResult[]> {
  const pending = tasks();
  const done = new Set<string>();
  const results: ArmResult[] = [];
  const key = (seed: number, arm: Arm) => `${seed}:${arm}`;
  const passOn = ["--steps", String(STEPS), "--probe-steps", String(PROBE_STEPS), "--threads", String(THREADS), "--train", String(TRAIN), "--arms", ARM_LIST.join(","), "--teacher-arm", TEACHER_ARM, "--ratio", String(RATIO), "--student", args.student!, "--memory-position", MEMORY_POSITION, ...(args["probe-all"] ? ["--probe-all"] : [])];
  const one = (seed: number, arm: Arm) => new Promise<ArmResult>((ok, fail) => {
    const argv = ["--import", "tsx", fileURLToPath(import.meta.url), ...passOn, "--seeds", String(seed), "--task", key(seed, arm), "--work", work];
    const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    child.on("close", (code) => (code === 0 ? ok(JSON.parse(out.trim().split("\n").pop()!) as ArmResult) : fail(new Error(`seed ${seed} arm ${arm}: exit ${code}`))));
  });
  let wake: () => void = () => {};
  const worker = async (): Promise<void> => {
    for (;;) {
      const k = pending.findIndex((t) => t.arm !== "D" || done.has(key(t.seed, TEACHER_ARM)));
      if (k < 0) {
        if (pending.length === 0) return;
        await new Promise<void>((w) => { const prev = wake; wake = () => { prev(); w(); }; }); // a teacher is still training
        continue;
      }
      const t = pending.splice(k, 1)[0]!;
      results.push(await one(t.seed, t.arm));
      writeJson(results, minutesSoFar(), true);
      done.add(key(t.seed, t.arm));
      const w = wake;
      wake = () => {};
      w();
    }
  };
  await Promise.all(Array.from({ length: Math.min(JOBS, pending.length) }, worker));
  return results;
}

function table(rs: ArmResult[], minutes: number, note = ""): string[] {
  const arms = ARM_LIST.filter((a) => rs.some((r) => r.arm === a)).sort((x, y) => ARMS.indexOf(x) - ARMS.indexOf(y));
  const of = (arm: Arm, f: (r: ArmResult) => number | undefined): number[] | null => {
    const xs = SEEDS.map((s) => rs.find((r) => r.arm === arm && r.seed === s)).map((r) => (r ? f(r) : undefined));
    return xs.every((x) => x !== undefined) ? (xs as number[]) : null;
  };
  const pct = (x: number) => (100 * x).toFixed(1);
  const cell = (xs: number[] | null) => {
    if (!xs) return "—";
    const { mean, sd } = meanSd(xs);
    return SEEDS.length > 1 ? `${pct(mean)} ± ${pct(sd)}` : pct(mean);
  };
  const diff = (a: number[] | null, b: number[] | null) => {
    if (!a || !b) return "";
    const c = compareSeeds(a, b);
    const d = `${c.delta >= 0 ? "+" : ""}${pct(c.delta)}`;
    if (c.seeds < 2) return `${d} (one seed)`;
    return `${d}, ${c.withinNoise ? "within noise" : "> 2 sd"} (↑${c.above} ↓${c.below})`;
  };
  const pairs = ([["A", "B"], ["B", "C"], ["E", "D"]] as const).filter(([x, y]) => arms.includes(x) && arms.includes(y));
  const metrics: Array<[string, (r: ArmResult) => number | undefined]> = [
    ["zero-shot top-1, mean of 5 languages (240 single-object scenes, 16 classes)", (r) => r.zeroShot],
    ["retrieval R@1 image→text (200 multi-object scenes)", (r) => r.imageToText],
    ["retrieval R@1 text→image", (r) => r.textToImage],
    [`referring expressions Acc@0.5, frozen encoder + fresh decoder (${PROBE_STEPS} steps)`, (r) => r.locateProbe],
    ["referring expressions Acc@0.5, jointly trained decoder", (r) => r.locateJoint],
    ["dense probe mIoU (background + 4 shapes, 8×8 patches, 100 + 100 scenes)", (r) => r.denseMIoU],
  ];
  const cpu = cpus()[0]?.model ?? "cpu";
  const lines: string[] = [];
  lines.push(`## ${args.title}: ${SEEDS.length} seed${SEEDS.length > 1 ? "s" : ""} (${SEEDS.join(", ")}), mean ± sd, %`, "");
  lines.push(`Command: \`nice -n 10 npx tsx ${args.script} ${commandArgs().join(" ")}\``);
  lines.push(`Machine: ${cpu}, ${cpus().length} cores, ${THREADS} onnxruntime thread${THREADS > 1 ? "s" : ""} per job, ${JOBS} job${JOBS > 1 ? "s" : ""}; ${minutes.toFixed(1)} min wall.${note}`);
  lines.push(`Model (A, B, C): width ${WIDTH}, ${LAYERS} layers, 4 heads, ${IMAGE} px, patch ${PATCH}, ${SEQ} tokens; ${STEPS} steps of ${BATCH} pairs from ${TRAIN} scenes per seed, lr ${LR}; LocCa decoders: memory position ${MEMORY_POSITION}.`);
  if (arms.includes("C")) lines.push(`C: \`distill\` with the defaults of \`siglip2 train --distill\`: on from step ${switchStep(DEFAULT_DISTILL.start, STEPS)} (80 %), ${DEFAULT_DISTILL.localViews} local views, EMA ${DEFAULT_DISTILL.emaMomentum}, size factor ${DEFAULT_DISTILL.sizeFactor}.`);
  if (arms.includes("D") || arms.includes("E")) lines.push(`D, E: student width ${STUDENT_WIDTH}, ${STUDENT_LAYERS} layers, same data, steps and batch; D keeps the most learnable ${RATIO} of super-batches of ${Math.round(BATCH / RATIO)}, teacher = arm ${TEACHER_ARM} of the same seed.`);
  lines.push(`Within noise: |Δ| ≤ 2 sd (sd: the larger of the two arms' seed sds); ↑k ↓m: seeds where the second arm is above / below.`, "");
  lines.push(`| metric (held-out) | ${arms.map((a) => `${a} ${ARM_NAMES[a]}`).join(" | ")} | ${pairs.map(([x, y]) => `${y} − ${x}`).join(" | ")} |`);
  lines.push(`|---|${arms.map(() => "---|").join("")}${pairs.map(() => "---|").join("")}`);
  for (const [name, f] of metrics) {
    if (arms.every((a) => !of(a, f))) continue;
    lines.push(`| ${name} | ${arms.map((a) => cell(of(a, f))).join(" | ")} | ${pairs.map(([x, y]) => diff(of(x, f), of(y, f))).join(" | ")} |`);
  }
  lines.push("");
  const m = (xs: number[] | null, digits = 3) => (xs ? meanSd(xs).mean.toFixed(digits) : "—");
  lines.push(`Final training sigmoid loss (mean of the last 20 steps): ${arms.map((a) => `${a} ${m(of(a, (r) => r.loss))}`).join(", ")}${arms.some((a) => of(a, (r) => r.loccaLoss)) ? `; LocCa loss ${arms.filter((a) => of(a, (r) => r.loccaLoss)).map((a) => `${a} ${m(of(a, (r) => r.loccaLoss))}`).join(", ")}` : ""}.`);
  lines.push(`Training wall seconds per arm (mean over seeds, main run only): ${arms.map((a) => `${a} ${m(of(a, (r) => r.trainSeconds), 0)}`).join(", ")}.`);
  const c = rs.filter((r) => r.distill).sort((x, y) => x.seed - y.seed);
  if (c.length) lines.push(`C's distillation losses after the switch (mean of the first vs the last ${c[0]!.distill!.window} steps): ${c.map((r) => `seed ${r.seed} SD ${r.distill!.sdFirst.toFixed(3)} → ${r.distill!.sdLast.toFixed(3)}, MP ${r.distill!.mpFirst.toFixed(4)} → ${r.distill!.mpLast.toFixed(4)}`).join("; ")}.`);
  const d = rs.filter((r) => r.curation).sort((x, y) => x.seed - y.seed);
  if (d.length) lines.push(`D's mean learnability, kept vs whole super-batch: ${d.map((r) => `seed ${r.seed} ${r.curation!.scoreKept.toFixed(3)} vs ${r.curation!.scoreAll.toFixed(3)}`).join("; ")}.`);
  lines.push("", "Per seed (%):", "");
  const cols = metrics.filter(([, f]) => arms.some((a) => of(a, f)));
  lines.push(`| seed | ${cols.map(([n]) => n.split(" (")[0]).join(" | ")} |`);
  lines.push(`|---|${cols.map(() => "---|").join("")}`);
  for (const s of SEEDS) {
    const byArm = (f: (r: ArmResult) => number | undefined) => arms.map((a) => { const r = rs.find((x) => x.arm === a && x.seed === s); const v = r ? f(r) : undefined; return `${a} ${v === undefined ? "—" : pct(v)}`; }).join(", ");
    lines.push(`| ${s} | ${cols.map(([, f]) => byArm(f)).join(" | ")} |`);
  }
  return lines;
}

/** The flags that reproduce this run (defaults included, so that the line stands alone). */
function commandArgs(): string[] {
  const preset = args.script !== "tools/ablate-recipe.ts";
  return ["--seeds", ASKED.join(","), "--steps", String(STEPS), "--probe-steps", String(PROBE_STEPS), "--threads", String(THREADS), "--train", String(TRAIN), "--jobs", String(JOBS),
    ...(preset ? [] : ["--arms", ARM_LIST.join(","), "--teacher-arm", TEACHER_ARM, "--ratio", String(RATIO), "--student", args.student!, "--memory-position", MEMORY_POSITION, ...(args["probe-all"] ? ["--probe-all"] : [])])];
}

if (args["from-json"] !== undefined) {
  // the table of an earlier (possibly interrupted) run with the same flags: the seeds whose every arm finished
  const saved = JSON.parse(readFileSync(args["from-json"], "utf8")) as { results: ArmResult[]; minutes: number; partial: boolean };
  SEEDS = ASKED.filter((s) => ARM_LIST.every((a) => saved.results.some((r) => r.seed === s && r.arm === a)));
  if (SEEDS.length === 0) bad(`${args["from-json"]}: no seed has all of the arms ${ARM_LIST.join(",")}`);
  const note = saved.partial ? ` Stopped after ${saved.minutes.toFixed(1)} min: ${SEEDS.length} of ${ASKED.length} seeds finished every arm; the table has those.` : "";
  process.stdout.write(`\n${table(saved.results.filter((r) => SEEDS.includes(r.seed)), saved.minutes, note).join("\n")}\n`);
} else if (args.task !== undefined) {
  // a --jobs child: one task in the parent's work dir
  const [seed, arm] = args.task.split(":") as [string, Arm];
  const S = await setup(args.work ?? bad("--task needs --work"));
  process.stdout.write(`${JSON.stringify(await runTask(S, Number(seed), arm))}\n`);
} else {
  const work = mkdtempSync(join(tmpdir(), "siglip2-ablate-"));
  const results = JOBS > 1 && tasks().length > 1 ? await inChildren(work) : await inProcess(work);
  const minutes = minutesSoFar();
  const lines = table(results, minutes);
  process.stdout.write(`\n${lines.join("\n")}\n`);
  const json = writeJson(results, minutes, false, lines);
  log(`ablate: JSON in ${json}; work dir ${args.keep ? `kept: ${work}` : "removed"} [${elapsed()}]`);
  if (!args.keep) rmSync(work, { recursive: true, force: true });
}
