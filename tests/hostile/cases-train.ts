/**
 * Hostile and careless `siglip2 train` runs: a diverging learning rate, every option out of
 * bounds, broken manifests, --resume without a run, and runs killed (SIGKILL at two points of
 * a save, SIGINT mid-run) that must leave a whole checkpoint and resume to the exact result
 * of an uninterrupted run. LocCa: bad regions, bad COCO files, unknown objectives and freeze
 * lists, nothing to train, a sigmoid run resumed with the decoder.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { synthesize } from "../../src/train/synthetic.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import { tempDir } from "../harness/files.js";
import { FIXTURES } from "../harness/paths.js";
import { expectCleanError, expectCorrect, runCli, type CaseResult, type CliOptions, type HostileCase } from "./harness.js";

const F32 = join(FIXTURES, "models", "fixres-f32");

let dataset: Promise<string> | undefined;
/** 16 image–caption pairs (32×32 PNGs + metadata.jsonl), written once per process. */
export function trainData(): Promise<string> {
  dataset ??= (async () => {
    const dir = tempDir("siglip2-train-data-");
    const pairs = synthesize(16, 32, 5);
    const lines: string[] = [];
    for (const [i, p] of pairs.entries()) {
      const rgb = Buffer.alloc(32 * 32 * 3);
      for (let c = 0; c < 3; c++) for (let k = 0; k < 32 * 32; k++) rgb[k * 3 + c] = Math.round((p.pixels[c * 1024 + k]! * 0.5 + 0.5) * 255);
      await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(dir, `img${i}.png`));
      lines.push(JSON.stringify({ file_name: `img${i}.png`, text: p.caption }));
    }
    writeFileSync(join(dir, "metadata.jsonl"), `${lines.join("\n")}\n`);
    return dir;
  })();
  return dataset;
}

const COMMON = ["--threads", "1", "--batch-size", "8", "--lr", "1e-3", "--seed", "1"];

/** COMMON without the flags that `args` sets (an option given twice with two values is an error). */
function common(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < COMMON.length; i += 2) if (!args.includes(COMMON[i]!)) out.push(COMMON[i]!, COMMON[i + 1]!);
  return out;
}

async function train(args: string[], opts: CliOptions = {}) {
  return runCli(["train", "--model", F32, "--data", await trainData(), ...common(args), ...args], { timeoutMs: 60_000, ...opts });
}

/** A manifest folder whose metadata.jsonl is `content` (image paths point into the shared dataset). */
export async function manifest(content: string, name = "metadata.jsonl"): Promise<string> {
  const data = await trainData();
  const dir = tempDir();
  writeFileSync(join(dir, name), content.replaceAll("DATA/", `${data}/`));
  return dir;
}

export function usage(id: string, args: string[], mentions: Array<string | RegExp>, data?: () => Promise<string>): HostileCase {
  return {
    id,
    area: "train",
    expect: "clean-error",
    run: async () => {
      const d = data ? await data() : await trainData();
      const r = await runCli(["train", "--model", F32, "--data", d, "--out", join(tempDir(), "out"), ...common(args), ...args]);
      return expectCleanError(r, { code: 2, mentions });
    },
  };
}

/** A COCO annotation file over the shared dataset's images (`annotations` as given). */
async function coco(annotations: unknown[], extra: Record<string, unknown> = {}): Promise<string> {
  const data = await trainData();
  const dir = tempDir();
  const images = Array.from({ length: 16 }, (_, i) => ({ id: i, file_name: join(data, `img${i}.png`) }));
  const caps = images.map((im) => ({ image_id: im.id, caption: `image ${im.id}` }));
  writeFileSync(join(dir, "instances.json"), JSON.stringify({ images, categories: [{ id: 1, name: "shape" }], annotations: [...caps, ...annotations], ...extra }));
  return join(dir, "instances.json");
}

/** The shared dataset's manifest with `regions` (JSON text) on row 3. */
async function withRegions(regions: string): Promise<string> {
  const data = await trainData();
  const rows = readFileSync(join(data, "metadata.jsonl"), "utf8").trim().split("\n");
  rows[2] = rows[2]!.replace(/}$/, `,"regions":${regions}}`);
  return manifest(rows.map((r) => r.replace(/"file_name":"/, `"file_name":"DATA/`)).join("\n") + "\n");
}

const LOCCA = ["--objectives", "sigmoid,locca"];

let reference: Promise<{ model: Buffer; optimizer: Buffer }> | undefined;
/** An uninterrupted 4-step run: what every interrupted-and-resumed run must end with, byte for byte. */
function uninterrupted(): Promise<{ model: Buffer; optimizer: Buffer }> {
  reference ??= (async () => {
    const out = join(tempDir(), "ref");
    const r = await train(["--out", out, "--steps", "4"]);
    if (r.code !== 0) throw new Error(`reference run failed: ${r.stderr}`);
    return { model: readFileSync(join(out, "model.safetensors")), optimizer: readFileSync(join(out, "optimizer.safetensors")) };
  })();
  return reference;
}

/** The step recorded in DIR's checkpoint, or null when DIR holds none. */
function savedStep(dir: string): number | null {
  const p = join(dir, "trainer_state.json");
  return existsSync(p) ? (JSON.parse(readFileSync(p, "utf8")) as { step: number }).step : null;
}

/** Resume `out` to step 4 and compare with the uninterrupted run. */
async function resumesExactly(out: string): Promise<CaseResult> {
  const r = await train(["--out", out, "--steps", "4", "--resume"]);
  return expectCorrect(r, () => (savedStep(out) === 4 ? null : `resumed to step ${savedStep(out)}`));
}

async function sameAsUninterrupted(out: string): Promise<string | null> {
  const ref = await uninterrupted();
  if (!readFileSync(join(out, "model.safetensors")).equals(ref.model)) return "model.safetensors differs from the uninterrupted run";
  if (!readFileSync(join(out, "optimizer.safetensors")).equals(ref.optimizer)) return "optimizer.safetensors differs from the uninterrupted run";
  if (existsSync(`${out}.saving`) || existsSync(`${out}.previous`)) return "left-over .saving / .previous folder";
  return null;
}

export const cases: HostileCase[] = [
  // --- divergence: stop with an error, never save NaN (#3) --------------------------------
  {
    id: "train-lr-1e30-diverges",
    area: "train",
    expect: "clean-error",
    run: async () => {
      const out = join(tempDir(), "out");
      const r = await train(["--out", out, "--steps", "8", "--lr", "1e30", "--save-every", "0"]);
      const e = expectCleanError(r, { code: 2, mentions: ["diverged at step", "nothing was saved"], allowStdout: true });
      if (e.outcome !== "clean-error") return e;
      if (r.stdout.includes('"done"')) return { outcome: "garbage", detail: "reported done" };
      return existsSync(out) ? { outcome: "garbage", detail: `${out} was written` } : e;
    },
  },
  {
    id: "train-diverged-run-keeps-the-last-checkpoint",
    area: "train",
    expect: "clean-error",
    run: async () => {
      const out = join(tempDir(), "out");
      const r = await train(["--out", out, "--steps", "8", "--lr", "1e30", "--save-every", "1"]);
      const e = expectCleanError(r, { code: 2, mentions: ["diverged at step 2", `keeps the checkpoint of step 1`], allowStdout: true });
      if (e.outcome !== "clean-error") return e;
      if (savedStep(out) !== 1) return { outcome: "data-lost", detail: `saved step ${savedStep(out)}` };
      const f = SafetensorsFile.open(join(out, "model.safetensors"));
      try {
        for (const n of f.names()) if (!f.readFloat32(n).every(Number.isFinite)) return { outcome: "garbage", detail: `${n} is not finite in the kept checkpoint` };
      } finally {
        f.close();
      }
      return e;
    },
  },

  // --- every option bounded ----------------------------------------------------------------
  usage("train-lr-zero", ["--lr", "0"], ["--lr", '"0"']),
  usage("train-lr-negative", ["--lr", "-1e-3"], ["--lr", '"-1e-3"']),
  usage("train-lr-nan", ["--lr", "NaN"], ["--lr", '"NaN"']),
  usage("train-lr-infinity", ["--lr", "Infinity"], ["--lr", '"Infinity"']),
  usage("train-steps-zero", ["--steps", "0"], ["--steps", '"0"']),
  usage("train-steps-1e300", ["--steps", "1e300"], ["--steps"]),
  usage("train-beta2-one", ["--beta2", "1"], ["--beta2", "[0, 1)"]),
  usage("train-eps-zero", ["--eps", "0"], ["--eps"]),
  usage("train-warmup-more-than-steps", ["--steps", "10", "--warmup", "50"], ["--warmup 50", "--steps 10"]),
  usage("train-seed-above-2-32", ["--seed", "99999999999"], ["--seed"]),
  usage("train-threads-1e9", ["--threads", "1000000000"], ["--threads", "at most"]),
  usage("train-accum-not-a-divisor", ["--accum-steps", "3"], ["--batch-size 8", "--accum-steps 3"]),
  usage("train-batch-size-more-than-the-dataset", ["--batch-size", "64"], ["--batch-size 64", "16 pairs"]),

  // --- broken manifests ---------------------------------------------------------------------
  usage("train-manifest-missing-images", [], ["metadata.jsonl:3", "/nonexistent-2.png", "no such file", "1 more"], () =>
    manifest(`{"file_name":"DATA/img0.png","text":"a"}\n{"file_name":"DATA/img1.png","text":"b"}\n{"file_name":"/nonexistent-2.png","text":"c"}\n{"file_name":"/nonexistent-3.png","text":"d"}\n`)),
  usage("train-manifest-empty", [], ["metadata.jsonl", "no image–caption pairs"], () => manifest("\n\n")),
  usage("train-manifest-malformed-json-line-number", [], ["metadata.jsonl:4", "not valid JSON"], () =>
    manifest(`{"file_name":"DATA/img0.png","text":"a"}\n\n\n{"file_name": "DATA/img1.png", "text": \n`)),
  usage("train-manifest-non-string-text", [], ["metadata.jsonl:1", '"text" is a number'], () => manifest(`{"file_name":"DATA/img0.png","text":5}\n`)),
  usage("train-manifest-array-line", [], ["metadata.jsonl:1", "not a JSON object"], () => manifest(`["DATA/img0.png", "a cat"]\n`)),
  usage("train-manifest-csv-unterminated-quote", [], ["pairs.csv:2", "unterminated quote"], async () => join(await manifest(`image,caption\nDATA/img0.png,"a cat\n`, "pairs.csv"), "pairs.csv")),
  usage("train-manifest-is-missing", [], ["no manifest found"], async () => tempDir()),

  // --- LocCa: regions, COCO, objectives, freeze lists (issue 11 item 2) ---------------------------
  usage("train-regions-reversed-box", LOCCA, ["metadata.jsonl:3", "region 0", "x0 < x1"], () => withRegions(`[{"box":[10,0,5,8],"text":"x"}]`)),
  usage("train-regions-infinite-coordinate", LOCCA, ["metadata.jsonl:3", "not a finite number"], () => withRegions(`[{"box":[0,0,1e999,8],"text":"x"}]`)),
  usage("train-regions-not-an-array", [], ["metadata.jsonl:3", '"regions" is a string'], () => withRegions(`"a dog"`)),
  usage("train-regions-no-text", LOCCA, ["metadata.jsonl:3", '"text" must be a non-empty string'], () => withRegions(`[{"box":[0,0,4,8]}]`)),
  usage("train-region-wholly-outside-the-image", LOCCA, ["metadata.jsonl:3", "lies outside the 32×32 image"], () => withRegions(`[{"box":[100,100,120,120],"text":"x"}]`)),
  usage("train-coco-bbox-without-area", LOCCA, ["instances.json", "annotations[16]", "has no area"], () => coco([{ image_id: 0, bbox: [1, 1, 0, 4], category_id: 1 }])),
  usage("train-coco-unknown-category", LOCCA, ["instances.json", "category_id 5 is not in categories"], () => coco([{ image_id: 0, bbox: [1, 1, 3, 4], category_id: 5 }])),
  usage("train-coco-unknown-image", LOCCA, ["instances.json", "image_id 99, which is not in images"], () => coco([{ image_id: 99, bbox: [1, 1, 3, 4], category_id: 1 }])),
  usage("train-coco-images-not-a-list", LOCCA, ["instances.json", '"images" is a string'], () => coco([], { images: "all" })),
  usage("train-coco-not-json", LOCCA, ["broken.json", "not valid JSON"], async () => {
    const f = join(tempDir(), "broken.json");
    writeFileSync(f, '{"images": [');
    return f;
  }),
  usage("train-unknown-objective", ["--objectives", "sigmoid,contrastive"], ["--objectives", '"contrastive"', "sigmoid,locca"]),
  usage("train-unknown-freeze-tower", ["--freeze", "vision,audio"], ["--freeze", '"vision,audio"']),
  usage("train-freeze-both-towers-sigmoid-only", ["--freeze", "vision,text"], ["nothing to train", "--objectives sigmoid,locca"]),
  usage("train-vocab-chunk-without-locca", ["--vocab-chunk", "100"], ["--vocab-chunk", "LocCa"]),
  usage("train-vocab-chunk-zero", [...LOCCA, "--vocab-chunk", "0"], ["--vocab-chunk", '"0"']),
  {
    id: "train-resume-a-sigmoid-run-with-locca",
    area: "train",
    expect: "clean-error",
    run: async () => {
      const out = join(tempDir(), "out");
      const first = await train(["--out", out, "--steps", "4", "--stop-at", "1"]);
      if (first.code !== 0) return { outcome: "unclear-error", detail: first.stderr };
      return expectCleanError(await train(["--out", out, "--steps", "4", "--resume", ...LOCCA]), { code: 2, mentions: ["other settings", "objectives"] });
    },
  },

  // --- --out and --resume ---------------------------------------------------------------------
  {
    id: "train-resume-without-a-saved-run",
    area: "train",
    expect: "clean-error",
    run: async () => expectCleanError(await train(["--out", tempDir(), "--steps", "2", "--resume"]), { code: 2, mentions: ["--resume", "no saved run"] }),
  },
  {
    id: "train-resume-a-folder-that-does-not-exist",
    area: "train",
    expect: "clean-error",
    run: async () => expectCleanError(await train(["--out", join(tempDir(), "nope"), "--steps", "2", "--resume"]), { code: 2, mentions: ["--resume", "does not exist"] }),
  },
  {
    id: "train-out-is-the-source-checkpoint",
    area: "train",
    expect: "clean-error",
    run: async () => expectCleanError(await train(["--out", F32, "--steps", "2"]), { code: 2, mentions: ["--out", "the checkpoint being trained"] }),
  },
  {
    id: "train-out-is-a-folder-of-other-files",
    area: "train",
    expect: "clean-error",
    run: async () => {
      const out = tempDir();
      writeFileSync(join(out, "thesis.tex"), "precious");
      const r = await train(["--out", out, "--steps", "2"]);
      const e = expectCleanError(r, { code: 2, mentions: ["not empty", "no training run"] });
      return e.outcome === "clean-error" && readFileSync(join(out, "thesis.tex"), "utf8") !== "precious" ? { outcome: "data-lost", detail: "thesis.tex changed" } : e;
    },
  },
  {
    id: "train-corrupt-trainer-state",
    area: "train",
    expect: "clean-error",
    run: async () => {
      const out = join(tempDir(), "out");
      const first = await train(["--out", out, "--steps", "4", "--stop-at", "1"]);
      if (first.code !== 0) return { outcome: "unclear-error", detail: first.stderr };
      writeFileSync(join(out, "trainer_state.json"), '{"step": 1, "run": ');
      return expectCleanError(await train(["--out", out, "--steps", "4", "--resume"]), { code: 2, mentions: ["trainer_state.json", "not valid JSON"] });
    },
  },

  // --- interrupted runs: the checkpoint is always whole and resumes exactly ------------------
  {
    id: "train-kill-9-after-writing-before-the-swap",
    area: "train",
    expect: "correct",
    timeoutMs: 90_000,
    run: async () => {
      const out = join(tempDir(), "out");
      const a = await train(["--out", out, "--steps", "4", "--stop-at", "2"]);
      if (a.code !== 0) return { outcome: "unclear-error", detail: a.stderr };
      const before = readFileSync(join(out, "model.safetensors"));
      const killed = await train(["--out", out, "--steps", "4", "--resume"], { env: { SIGLIP2_TEST_SAVE_KILL: "written" } });
      if (killed.signal !== "SIGKILL") return { outcome: "unclear-error", detail: `the save was not killed: exit ${killed.code}` };
      if (!readFileSync(join(out, "model.safetensors")).equals(before) || savedStep(out) !== 2) return { outcome: "data-lost", detail: "the step-2 checkpoint changed" };
      const r = await resumesExactly(out);
      if (r.outcome !== "correct") return r;
      const why = await sameAsUninterrupted(out);
      return why ? { outcome: "data-lost", detail: why } : r;
    },
  },
  {
    id: "train-kill-9-in-the-middle-of-the-swap",
    area: "train",
    expect: "correct",
    timeoutMs: 90_000,
    run: async () => {
      const out = join(tempDir(), "out");
      const a = await train(["--out", out, "--steps", "4", "--stop-at", "2"]);
      if (a.code !== 0) return { outcome: "unclear-error", detail: a.stderr };
      writeFileSync(join(out, "notes.txt"), "mine"); // a file of the user's: it stays in --out
      const killed = await train(["--out", out, "--steps", "4", "--resume"], { env: { SIGLIP2_TEST_SAVE_KILL: "swapped" } });
      if (killed.signal !== "SIGKILL") return { outcome: "unclear-error", detail: `the save was not killed: exit ${killed.code}` };
      // DIR was moved aside and the complete new checkpoint not yet moved in: the next run finishes the swap
      const r = await resumesExactly(out);
      if (r.outcome !== "correct") return r;
      if (readFileSync(join(out, "notes.txt"), "utf8") !== "mine") return { outcome: "data-lost", detail: "notes.txt lost" };
      const why = await sameAsUninterrupted(out);
      return why ? { outcome: "data-lost", detail: why } : r;
    },
  },
  {
    id: "train-sigint-saves-and-resumes-exactly",
    area: "train",
    expect: "correct",
    timeoutMs: 90_000,
    run: async () => {
      const out = join(tempDir(), "out");
      const r = await train(["--out", out, "--steps", "4"], { signalAfterOutput: { signal: "SIGINT" } });
      const first = expectCorrect(r, () => {
        const step = savedStep(out);
        if (step === null || step < 1 || step > 4) return `saved step ${step}`;
        return /SIGINT: stopped at step \d; saved to/.test(r.stderr) && !/\n\s+at /.test(r.stderr) ? null : `stderr: ${r.stderr.slice(0, 200)}`;
      }, 130);
      if (first.outcome !== "correct") return first;
      const again = await train(["--out", out, "--steps", "4", "--resume"]);
      if (again.code !== 0) return { outcome: "unclear-error", detail: again.stderr };
      const why = await sameAsUninterrupted(out);
      return why ? { outcome: "data-lost", detail: why } : first;
    },
  },
];

