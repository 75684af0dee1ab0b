/**
 * Hostile and careless `siglip2 train` runs on NaFlex checkpoints (model_type "siglip2"): bad
 * `--max-patches` values (not numbers, zero, empty ranges, beyond the bound), `--max-patches` on a
 * fixed-resolution checkpoint, LocCa regions outside their image, and a resume under other
 * budgets. Each is one line and exit 2; nothing is written.
 */
import { join } from "node:path";
import { writeNaflexPairs } from "../harness/naflex-data.js";
import { tempDir } from "../harness/files.js";
import { FIXTURES } from "../harness/paths.js";
import { expectCleanError, expectCorrect, runCli, type HostileCase } from "./harness.js";

const NAFLEX = join(FIXTURES, "models", "naflex-f32");
const F32 = join(FIXTURES, "models", "fixres-f32");
const COMMON = ["--threads", "1", "--batch-size", "4", "--steps", "2", "--lr", "1e-3", "--seed", "1"];

let dataset: Promise<string> | undefined;
const data = (): Promise<string> => (dataset ??= writeNaflexPairs(8, 3));

function usage(id: string, args: string[], mentions: Array<string | RegExp>, model = NAFLEX): HostileCase {
  return {
    id,
    area: "train",
    expect: "clean-error",
    timeoutMs: 60_000,
    run: async () => {
      const r = await runCli(["train", "--model", model, "--data", await data(), "--out", join(tempDir(), "out"), ...COMMON, ...args], { timeoutMs: 60_000 });
      return expectCleanError(r, { code: 2, mentions });
    },
  };
}

export const cases: HostileCase[] = [
  usage("naflex-train-max-patches-word", ["--max-patches", "lots"], ["--max-patches", '"lots" is not a positive integer']),
  usage("naflex-train-max-patches-zero", ["--max-patches", "0,64"], ["--max-patches", "0 is outside 1…65536"]),
  usage("naflex-train-max-patches-negative", ["--max-patches=-16"], ["--max-patches"]),
  usage("naflex-train-max-patches-fraction", ["--max-patches", "16.5"], ["--max-patches", '"16.5"']),
  usage("naflex-train-max-patches-empty-range", ["--max-patches", "64-16"], ["--max-patches", "range 64-16 is empty"]),
  usage("naflex-train-max-patches-huge", ["--max-patches", "1000000"], ["--max-patches", "outside 1…65536"]),
  usage("naflex-train-max-patches-empty", ["--max-patches", ""], ["--max-patches"]),
  usage("naflex-train-max-patches-trailing-comma", ["--max-patches", "16,"], ["--max-patches", '"" is not a positive integer']),
  usage("naflex-train-max-patches-on-fixres", ["--max-patches", "16"], ["--max-patches is for NaFlex"], F32),
  usage("naflex-train-budget-draw-unknown", ["--budget-draw", "sometimes"], ["--budget-draw", "sometimes"]),
  usage("naflex-train-budget-draw-on-fixres", ["--budget-draw", "batch"], ["--budget-draw is for NaFlex"], F32),
  {
    id: "naflex-train-locca-region-outside-image",
    area: "train",
    expect: "clean-error",
    timeoutMs: 60_000,
    run: async () => {
      // pair 2's box lies wholly to the right of its image: one line naming the row, nothing trained
      const dir = await writeNaflexPairs(8, 3, { regions: (i, w, h, text) => [{ box: i === 2 ? [w + 5, 1, w + 9, h - 1] : [1, 1, w - 1, h - 1], text }] });
      const r = await runCli(["train", "--model", NAFLEX, "--data", dir, "--out", join(tempDir(), "out"), ...COMMON, "--objectives", "sigmoid,locca"], { timeoutMs: 60_000 });
      return expectCleanError(r, { code: 2, mentions: ["metadata.jsonl:3", "region 0", "outside"] });
    },
  },
  {
    id: "naflex-train-resume-with-other-budgets",
    area: "train",
    expect: "clean-error",
    timeoutMs: 90_000,
    run: async () => {
      const out = join(tempDir(), "out");
      const base = ["train", "--model", NAFLEX, "--data", await data(), "--out", out, ...COMMON];
      const first = await runCli([...base, "--max-patches", "8-24", "--stop-at", "1"], { timeoutMs: 60_000 });
      if (first.code !== 0) return { outcome: "unclear-error", detail: `the first run failed: ${first.stderr.split("\n")[0]}` };
      const r = await runCli([...base, "--max-patches", "16,24", "--resume"], { timeoutMs: 60_000 });
      return expectCleanError(r, { code: 2, mentions: ["other settings", "maxPatches"] });
    },
  },
  {
    id: "naflex-train-budget-1-one-patch-per-image",
    area: "train",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      // the smallest budget: every image becomes one patch (a 1×1 grid), still a valid run
      const r = await runCli(["train", "--model", NAFLEX, "--data", await data(), "--out", join(tempDir(), "out"), ...COMMON, "--max-patches", "1"], { timeoutMs: 60_000 });
      return expectCorrect(r, (lines) => {
        const steps = lines.filter((l) => typeof (l as { loss?: unknown }).loss === "number");
        return steps.length === 2 ? null : `${steps.length} step lines, expected 2`;
      });
    },
  },
];
