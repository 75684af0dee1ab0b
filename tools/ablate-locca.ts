/**
 * The LocCa ablation (issue 11; SigLIP 2 paper §2.2, Table 5 style): the same tiny SigLIP, the same
 * steps and the same generated scenes, trained (a) with the sigmoid loss only and (b) with sigmoid +
 * LocCa, then evaluated on held-out scenes (other seeds than any training scene):
 * - zero-shot top-1 (mean of the five prompt languages) on single-object scenes, 16 classes;
 * - retrieval R@1 image→text and text→image on multi-object scenes (captions in five languages);
 * - referring-expression Acc@0.5 with the paper's frozen-encoder protocol (training-recipe.md §7.4):
 *   a fresh decoder is trained for a fixed number of steps on top of each frozen encoder
 *   (`freeze: vision,text`, the sigmoid loss logged but not trained), plus (b)'s jointly trained one;
 * - a dense probe: a linear per-patch classifier of which shape covers the patch (background or one
 *   of four shapes) on each encoder's un-pooled patch features, mean IoU on held-out scenes.
 * Every number goes through the public API (SigLIP2.load on the saved checkpoint) and the eval
 * harness (src/train/scenes/eval.ts → src/tasks/eval.ts). Several seeds: each seed changes the
 * training scenes, the initialisation and the batch order; the held-out sets are the same for all.
 *
 *   npx tsx tools/ablate-locca.ts [--seeds 1,2,3] [--steps 700] [--probe-steps 500] [--threads 2] [--jobs 1]
 *
 * With the defaults it takes about 16 minutes on a quiet 2-core machine (one seed: 700 steps at about
 * 0.1 s (sigmoid) and 0.22 s (sigmoid + LocCa), two probes of 500 steps at 0.08 s, evaluation 30 s).
 * `--jobs J` trains J seeds at once (useful when the machine is shared: each job gets its own share).
 *
 * Prints a markdown table (mean ± sd over seeds, and per seed) on stdout; progress on stderr.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { SigLIP2 } from "../src/api.js";
import { parseImageProcessorConfig, preprocessFixed } from "../src/preprocess/index.js";
import { InMemoryPairs } from "../src/train/data.js";
import { tinyConfigJson } from "../src/train/experiment.js";
import { initDecoderParams, initParams } from "../src/train/init.js";
import { paramSpecs, type Objective, type Tower } from "../src/train/model.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import {
  generateScenes, renderScenes, SCENE_LANGUAGES, sceneCorpus, sceneDenseProbe, sceneLocate, scenePreprocessorConfig, sceneRetrieval,
  sceneTokenizer, sceneZeroShot, writeSceneModelFiles, type SceneRecord,
} from "../src/train/scenes/index.js";
import type { Params } from "../src/train/session.js";
import { Trainer } from "../src/train/trainer.js";
import { parseConfig } from "../src/weights/config.js";

const { values: args } = parseArgs({
  options: {
    seeds: { type: "string", default: "1,2,3" },
    steps: { type: "string", default: "700" },
    "probe-steps": { type: "string", default: "500" },
    threads: { type: "string", default: "2" },
    train: { type: "string", default: "6000" },
    jobs: { type: "string", default: "1" },
    keep: { type: "boolean", default: false },
    "emit-json": { type: "boolean", default: false }, // internal: a --jobs child
  },
});
const SEEDS = args.seeds!.split(",").map(Number);
const STEPS = Number(args.steps);
const PROBE_STEPS = Number(args["probe-steps"]);
const THREADS = Number(args.threads);
const TRAIN = Number(args.train);
const JOBS = Number(args.jobs);
for (const [name, v] of [["--steps", STEPS], ["--probe-steps", PROBE_STEPS], ["--threads", THREADS], ["--train", TRAIN], ["--jobs", JOBS]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
}
if (SEEDS.length === 0 || SEEDS.some((s) => !Number.isInteger(s) || s < 0)) throw new Error("--seeds: a comma-separated list of non-negative integers");

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

interface SeedResult {
  zeroShot: { a: number; b: number };
  i2t: { a: number; b: number };
  t2i: { a: number; b: number };
  locateProbe: { a: number; b: number };
  locateJoint: number;
  dense: { a: number; b: number };
  loss: { a: number; b: number; bLocca: number };
}

async function main(): Promise<SeedResult[]> {
  const work = mkdtempSync(join(tmpdir(), "siglip2-ablate-"));
  process.env["SIGLIP2_CACHE"] ??= join(work, "onnx-cache");
  // Tokenizer: Gemma's tokens of every scene text (a fixed corpus, the same for all seeds).
  const tok = sceneTokenizer(JSON.parse(readFileSync(GEMMA, "utf8")), sceneCorpus(generateScenes({ seed: HELD_OUT + 9, count: 20000 })));
  const configJson = tinyConfigJson({ width: WIDTH, layers: LAYERS, heads: 4, mlp: 4 * WIDTH, vocab: tok.vocabSize, seqLen: SEQ, image: IMAGE, patch: PATCH });
  const config = parseConfig(configJson);
  const staging = join(work, "side-files");
  writeSceneModelFiles(staging, tok.json, { image: IMAGE, seqLen: SEQ });
  const cfg = parseImageProcessorConfig(scenePreprocessorConfig(IMAGE), IMAGE);
  log(`ablate: tokenizer ${tok.vocabSize} tokens; model width ${WIDTH}, ${LAYERS} layers, ${IMAGE} px / ${PATCH}; ${STEPS} steps of ${BATCH}, probe ${PROBE_STEPS} steps; seeds ${SEEDS.join(",")}; work dir ${work}`);

  // Held out: the same sets for every seed.
  const all = [...SCENE_LANGUAGES];
  const zsTest = generateScenes({ seed: HELD_OUT + 1, count: 240, size: IMAGE, maxObjects: 1, langs: all });
  const retTest = generateScenes({ seed: HELD_OUT + 2, count: 200, size: IMAGE, langs: all });
  const denseTrain = generateScenes({ seed: HELD_OUT + 3, count: 100, size: IMAGE, langs: all });
  const denseTest = generateScenes({ seed: HELD_OUT + 4, count: 100, size: IMAGE, langs: all });
  const [zsImg, retImg, dTrainImg, dTestImg] = await Promise.all([zsTest, retTest, denseTrain, denseTest].map((r) => renderScenes(r)));

  const runSeed = async (seed: number): Promise<SeedResult> => {
    const train = generateScenes({ seed: 1000 * seed, count: TRAIN, size: IMAGE, langs: all });
    const trainImg = await renderScenes(train);
    const pixels = trainImg.map((im) => preprocessFixed(im, cfg));
    const dataset = (objectives: readonly Objective[]) =>
      new InMemoryPairs(pixels, train.map((s) => s.caption), tok.tokenizer, SEQ, objectives.includes("locca") ? { locca: { vocab: tok.vocabSize, regions: train.map((s: SceneRecord) => s.regions), size: IMAGE } } : undefined);

    const run = async (name: string, objectives: Objective[], params: Params, steps: number, freeze: readonly Tower[]): Promise<{ dir: string; params: Params; last: { loss: number; locca: number } }> => {
      const trainer = await Trainer.create(config, params, {
        batchSize: BATCH, accumSteps: 1, steps, seed, freeze, threads: THREADS, objectives,
        optimizer: { ...DEFAULT_OPTIMIZER, lr: LR, totalSteps: steps, warmupSteps: Math.round(steps * 0.05) },
      });
      const data = dataset(objectives);
      const started = performance.now();
      const tail: Array<{ loss: number; locca: number }> = [];
      while (trainer.step < steps) {
        const s = await trainer.trainStep(data);
        if (s.step >= steps - 20) tail.push({ loss: s.sigmoidLoss ?? s.loss, locca: s.loccaLoss ?? NaN });
        if (s.step % 100 === 0) log(`ablate: seed ${seed} ${name} step ${s.step} loss ${s.loss.toFixed(3)}${s.loccaLoss === undefined ? "" : ` (sigmoid ${s.sigmoidLoss!.toFixed(3)}, locca ${s.loccaLoss.toFixed(3)})`} [${elapsed()}]`);
      }
      log(`ablate: seed ${seed} ${name}: ${steps} steps in ${((performance.now() - started) / 1000).toFixed(0)} s [${elapsed()}]`);
      const dir = join(work, `seed${seed}-${name}`);
      trainer.save(dir, configJson, staging);
      await trainer.release();
      const mean = (f: (x: { loss: number; locca: number }) => number) => tail.reduce((a, x) => a + f(x), 0) / tail.length;
      return { dir, params: trainer.params, last: { loss: mean((x) => x.loss), locca: mean((x) => x.locca) } };
    };

    // (a) sigmoid only, (b) sigmoid + LocCa: the same initial towers (the decoder draws from its own stream).
    const a = await run("sigmoid", ["sigmoid"], initParams(paramSpecs(config, { objectives: ["sigmoid"] }), seed), STEPS, []);
    const b = await run("sigmoid+locca", ["sigmoid", "locca"], initParams(paramSpecs(config, { objectives: ["sigmoid", "locca"] }), seed), STEPS, []);
    // Frozen-encoder decoder probes: a fresh decoder (same init for both) on each frozen encoder.
    const withFreshDecoder = (towers: Params): Params => {
      const specs = paramSpecs(config, { objectives: ["sigmoid", "locca"] });
      const p: Params = new Map();
      for (const s of specs) if (!s.name.startsWith("decoder.")) p.set(s.name, towers.get(s.name)!.slice());
      for (const [n, v] of initDecoderParams(specs, seed + 1)) p.set(n, v);
      return p;
    };
    const aProbe = await run("sigmoid-probe", ["sigmoid", "locca"], withFreshDecoder(a.params), PROBE_STEPS, ["vision", "text"]);
    const bProbe = await run("locca-probe", ["sigmoid", "locca"], withFreshDecoder(b.params), PROBE_STEPS, ["vision", "text"]);

    const evalEncoder = async (dir: string) => {
      const m = await SigLIP2.load(dir, { threads: THREADS });
      try {
        const zs = await sceneZeroShot(m, zsTest, zsImg);
        const ret = await sceneRetrieval(m, retTest, retImg);
        const dense = await sceneDenseProbe(m, { records: denseTrain, images: dTrainImg }, { records: denseTest, images: dTestImg });
        return { zs: SCENE_LANGUAGES.reduce((s, l) => s + zs[l], 0) / SCENE_LANGUAGES.length, zsPer: zs, ret, dense };
      } finally {
        await m.close();
      }
    };
    const locate = async (dir: string) => {
      const m = await SigLIP2.load(dir, { threads: THREADS });
      try {
        return (await sceneLocate(m, retTest, retImg)).accuracy;
      } finally {
        await m.close();
      }
    };
    const ea = await evalEncoder(a.dir);
    const eb = await evalEncoder(b.dir);
    const r: SeedResult = {
      zeroShot: { a: ea.zs, b: eb.zs },
      i2t: { a: ea.ret.imageToText, b: eb.ret.imageToText },
      t2i: { a: ea.ret.textToImage, b: eb.ret.textToImage },
      locateProbe: { a: await locate(aProbe.dir), b: await locate(bProbe.dir) },
      locateJoint: await locate(b.dir),
      dense: { a: ea.dense.mIoU, b: eb.dense.mIoU },
      loss: { a: a.last.loss, b: b.last.loss, bLocca: b.last.locca },
    };
    log(`ablate: seed ${seed}: ${JSON.stringify({ ...r, zeroShotPerLang: { a: ea.zsPer, b: eb.zsPer } })} [${elapsed()}]`);
    return r;
  };
  const results: SeedResult[] = [];
  for (const seed of SEEDS) results.push(await runSeed(seed));
  if (!args.keep) rmSync(work, { recursive: true, force: true });
  return results;
}

/**
 * Seeds are independent: with --jobs J, J child processes (this script, one seed each, `--emit-json`)
 * run at once and the parent prints the table. onnxruntime's run blocks its process, so parallel
 * seeds need processes.
 */
async function inChildren(): Promise<SeedResult[]> {
  const results: SeedResult[] = new Array(SEEDS.length);
  let next = 0;
  const one = (seed: number) => new Promise<SeedResult>((done, fail) => {
    const argv = ["--import", "tsx", fileURLToPath(import.meta.url), "--emit-json", "--seeds", String(seed), "--steps", String(STEPS), "--probe-steps", String(PROBE_STEPS), "--threads", String(THREADS), "--train", String(TRAIN)];
    const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    child.on("close", (code) => (code === 0 ? done((JSON.parse(out.trim().split("\n").pop()!) as SeedResult[])[0]!) : fail(new Error(`seed ${seed}: exit ${code}`))));
  });
  await Promise.all(Array.from({ length: Math.min(JOBS, SEEDS.length) }, async () => {
    while (next < SEEDS.length) {
      const k = next++;
      results[k] = await one(SEEDS[k]!);
    }
  }));
  return results;
}

function meanSd(xs: number[]): { mean: number; sd: number } {
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
}

function printTable(rs: SeedResult[]): void {
  const pct = (x: number) => (100 * x).toFixed(1);
  const cell = (xs: number[]) => {
    const { mean, sd } = meanSd(xs);
    return rs.length > 1 ? `${pct(mean)} ± ${pct(sd)}` : pct(mean);
  };
  // Within noise: the difference of the means is smaller than twice its standard error.
  const verdict = (a: number[], b: number[]) => {
    if (rs.length < 2) return "one seed";
    const d = b.map((x, i) => x - a[i]!);
    const { mean, sd } = meanSd(d);
    const se = sd / Math.sqrt(d.length);
    return Math.abs(mean) <= 2 * se ? `within noise (${mean >= 0 ? "+" : ""}${pct(mean)})` : `${mean > 0 ? "+" : ""}${pct(mean)} (paired, > 2 se)`;
  };
  const rows: Array<[string, number[], number[] | null]> = [
    ["zero-shot top-1, mean of 5 languages (240 single-object scenes, 16 classes)", rs.map((r) => r.zeroShot.a), rs.map((r) => r.zeroShot.b)],
    ["retrieval R@1 image→text (200 multi-object scenes)", rs.map((r) => r.i2t.a), rs.map((r) => r.i2t.b)],
    ["retrieval R@1 text→image", rs.map((r) => r.t2i.a), rs.map((r) => r.t2i.b)],
    [`referring expressions Acc@0.5, frozen encoder + decoder probe (${PROBE_STEPS} steps)`, rs.map((r) => r.locateProbe.a), rs.map((r) => r.locateProbe.b)],
    ["referring expressions Acc@0.5, jointly trained decoder", [], rs.map((r) => r.locateJoint)],
    ["dense probe mIoU (background + 4 shapes, 8×8 patches, 100 + 100 scenes)", rs.map((r) => r.dense.a), rs.map((r) => r.dense.b)],
  ];
  const cpu = cpus()[0]?.model ?? "cpu";
  console.log(`\n## LocCa ablation: ${rs.length} seed${rs.length > 1 ? "s" : ""} (${SEEDS.join(", ")}), mean ± sd, %\n`);
  console.log(`Command: \`npx tsx tools/ablate-locca.ts --seeds ${SEEDS.join(",")} --steps ${STEPS} --probe-steps ${PROBE_STEPS} --threads ${THREADS} --train ${TRAIN} --jobs ${JOBS}\``);
  console.log(`Machine: ${cpu}, ${cpus().length} cores, ${THREADS} onnxruntime thread${THREADS > 1 ? "s" : ""} per job, ${JOBS} job${JOBS > 1 ? "s" : ""}; ${((performance.now() - t0) / 60000).toFixed(1)} min.`);
  console.log(`Model: width ${WIDTH}, ${LAYERS} layers, 4 heads, ${IMAGE} px, patch ${PATCH}, ${SEQ} tokens; ${STEPS} steps of ${BATCH} pairs from ${TRAIN} scenes per seed, lr ${LR}.\n`);
  console.log("| metric (held-out) | (a) sigmoid | (b) sigmoid + LocCa | (b) − (a) |");
  console.log("|---|---|---|---|");
  for (const [name, a, b] of rows) {
    if (a.length === 0) console.log(`| ${name} | — | ${cell(b!)} | |`);
    else console.log(`| ${name} | ${cell(a)} | ${cell(b!)} | ${verdict(a, b!)} |`);
  }
  const la = meanSd(rs.map((r) => r.loss.a)), lb = meanSd(rs.map((r) => r.loss.b)), lc = meanSd(rs.map((r) => r.loss.bLocca));
  console.log(`\nFinal training sigmoid loss (mean of the last 20 steps): (a) ${la.mean.toFixed(3)}, (b) ${lb.mean.toFixed(3)}; (b)'s LocCa loss ${lc.mean.toFixed(3)}.`);
  console.log("\nPer seed:\n");
  console.log("| seed | zero-shot a / b | R@1 i→t a / b | R@1 t→i a / b | Acc@0.5 probe a / b | Acc@0.5 joint b | mIoU a / b |");
  console.log("|---|---|---|---|---|---|---|");
  rs.forEach((r, i) => console.log(`| ${SEEDS[i]} | ${pct(r.zeroShot.a)} / ${pct(r.zeroShot.b)} | ${pct(r.i2t.a)} / ${pct(r.i2t.b)} | ${pct(r.t2i.a)} / ${pct(r.t2i.b)} | ${pct(r.locateProbe.a)} / ${pct(r.locateProbe.b)} | ${pct(r.locateJoint)} | ${pct(r.dense.a)} / ${pct(r.dense.b)} |`));
}

if (args["emit-json"]) process.stdout.write(`${JSON.stringify(await main())}\n`);
else printTable(JOBS > 1 && SEEDS.length > 1 ? await inChildren() : await main());
