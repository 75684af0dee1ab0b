/**
 * Hostile and careless ACID curation and language-mix runs (`siglip2 train --curate-teacher
 * --curate-ratio --curate-dtype --lang-mix`): ratios out of (0, 1], flags without the flag they
 * refine, a missing teacher, super-batches larger than the data, a teacher with another image
 * size, width and tokenizer (handled: each model reads the example its own way), bad mixes,
 * languages the data does not have, rows without `lang`.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../harness/files.js";
import { FIXTURES } from "../harness/paths.js";
import { expectCleanError, expectCorrect, jsonLines, runCli, type HostileCase } from "./harness.js";
import { manifest, trainData, usage } from "./cases-train.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const ODD = join(FIXTURES, "models", "fixres-odd"); // 30 px, width 40: another size than fixres-f32
const LANGS = ["en", "en", "en", "en", "de", "de", "zh", "zh"];

/** The 16-pair dataset with a `lang` per row (cycling LANGS), or without one on row `missing`. */
function langData(missing?: number): () => Promise<string> {
  return () => manifest(Array.from({ length: 16 }, (_, i) => JSON.stringify({ file_name: `DATA/img${i}.png`, text: `pair ${i}`, ...(i === missing ? {} : { lang: LANGS[i % LANGS.length] }) })).join("\n") + "\n");
}

const teacher = ["--curate-teacher", F32];

export const cases: HostileCase[] = [
  usage("curate-ratio-zero", [...teacher, "--curate-ratio", "0"], ["--curate-ratio", "(0, 1]"]),
  usage("curate-ratio-above-one", [...teacher, "--curate-ratio", "1.5"], ["--curate-ratio", "(0, 1]"]),
  usage("curate-ratio-nan", [...teacher, "--curate-ratio", "NaN"], ["--curate-ratio", "NaN"]),
  usage("curate-ratio-negative", [...teacher, "--curate-ratio", "-0.5"], ["--curate-ratio"]),
  usage("curate-ratio-text", [...teacher, "--curate-ratio", "half"], ["--curate-ratio", "half"]),
  usage("curate-ratio-without-teacher", ["--curate-ratio", "0.5"], ["--curate-ratio", "--curate-teacher"]),
  usage("curate-dtype-without-teacher", ["--curate-dtype", "int8"], ["--curate-dtype", "--curate-teacher"]),
  usage("curate-dtype-unknown", [...teacher, "--curate-dtype", "int4"], ["int4"]),
  usage("curate-super-batch-too-large", [...teacher, "--curate-ratio", "0.1"], ["super-batches of 80", "16 pairs"]),
  usage("curate-teacher-missing", ["--curate-teacher", "/nonexistent/teacher-model", "--offline"], ["/nonexistent/teacher-model"]),
  {
    id: "curate-teacher-other-size-and-width",
    area: "train",
    expect: "correct",
    run: async () => {
      const out = join(tempDir(), "out");
      const r = await runCli(["train", "--model", F32, "--data", await trainData(), "--out", out, "--threads", "1", "--batch-size", "4", "--steps", "2", "--save-every", "0", "--curate-teacher", ODD, "--curate-ratio", "0.5", "--curate-dtype", "int8"], { timeoutMs: 60_000 });
      return expectCorrect(r, (lines) => {
        const steps = lines.filter((l) => (l as { loss?: number }).loss !== undefined && (l as { curation?: unknown }).curation !== undefined) as Array<{ curation: { super_batch: number; kept: number; score_kept: number; score_all: number } }>;
        if (steps.length !== 2) return `${steps.length} logged steps with curation, expected 2`;
        const summary = (lines.at(-1) as { curation?: { steps: number; super_batch: number } }).curation;
        if (summary?.steps !== 2 || summary.super_batch !== 8) return `final curation summary ${JSON.stringify(summary)}`;
        for (const s of steps) {
          if (s.curation.super_batch !== 8 || s.curation.kept !== 4) return `super-batch ${s.curation.super_batch} / kept ${s.curation.kept}, expected 8 / 4`;
          if (!(s.curation.score_kept >= s.curation.score_all)) return `kept examples score ${s.curation.score_kept} below the super-batch mean ${s.curation.score_all}`;
        }
        return null;
      });
    },
  },
  {
    id: "curate-teacher-naflex",
    area: "train",
    expect: "correct",
    run: async () => {
      const r = await runCli(["train", "--model", F32, "--data", await trainData(), "--out", join(tempDir(), "out"), "--threads", "1", "--batch-size", "4", "--steps", "1", "--save-every", "0", "--curate-teacher", join(FIXTURES, "models", "naflex-f32"), "--curate-ratio", "0.25"], { timeoutMs: 60_000 });
      return expectCorrect(r, (lines) => {
        const c = (lines.find((l) => (l as { curation?: unknown }).curation !== undefined) as { curation?: { super_batch: number; kept: number } } | undefined)?.curation;
        return c?.super_batch === 16 && c.kept === 4 ? null : `curation ${JSON.stringify(c)}, expected super_batch 16, kept 4`;
      });
    },
  },
  {
    id: "curate-resume-without-teacher",
    area: "train",
    expect: "clean-error",
    run: async () => {
      const out = join(tempDir(), "out");
      const base = ["train", "--model", F32, "--data", await trainData(), "--out", out, "--threads", "1", "--batch-size", "4", "--steps", "2"];
      const first = await runCli([...base, "--stop-at", "1", "--curate-teacher", F32], { timeoutMs: 60_000 });
      if (first.code !== 0) return { outcome: "crash", detail: `the curated run failed: ${first.stderr.slice(0, 200)}` };
      return expectCleanError(await runCli([...base, "--resume"], { timeoutMs: 60_000 }), { code: 2, mentions: ["other settings", "curate.ratio 0.5 → unset"] });
    },
  },
  usage("lang-mix-no-weight", ["--lang-mix", "en"], ["--lang-mix", "LANG=WEIGHT"], langData()),
  usage("lang-mix-bad-weight", ["--lang-mix", "en=lots"], ["--lang-mix", "lots"], langData()),
  usage("lang-mix-negative-weight", ["--lang-mix", "en=-1"], ["--lang-mix", "-1"], langData()),
  usage("lang-mix-all-zero", ["--lang-mix", "en=0,other=0"], ["--lang-mix", "every weight is 0"], langData()),
  usage("lang-mix-twice", ["--lang-mix", "en=1,en=2"], ["--lang-mix", "en given twice"], langData()),
  usage("lang-mix-not-a-code", ["--lang-mix", "english!=1"], ["--lang-mix", "not a language code"], langData()),
  usage("lang-mix-unknown-language", ["--lang-mix", "fr=0.5,other=0.5"], ["--lang-mix", '"fr"', "en, de, zh"], langData()),
  usage("lang-mix-other-without-others", ["--lang-mix", "en=1,de=1,zh=1,other=1"], ["--lang-mix", "other"], langData()),
  usage("lang-mix-row-without-lang", ["--lang-mix", "en=0.9,other=0.1"], ["--lang-mix", "lang", "metadata.jsonl:6"], langData(5)),
  usage("lang-mix-lang-not-string", ["--lang-mix", "en=1"], ["metadata.jsonl:1", "lang"], () => manifest(`{"file_name":"DATA/img0.png","text":"a","lang":7}\n`)),
  {
    id: "lang-mix-reports-realised-mix",
    area: "train",
    expect: "correct",
    run: async () => {
      const out = join(tempDir(), "out");
      const data = await langData()();
      const r = await runCli(["train", "--model", F32, "--data", data, "--out", out, "--threads", "1", "--batch-size", "4", "--steps", "3", "--save-every", "0", "--lang-mix", "zh=1,other=0"], { timeoutMs: 60_000 });
      return expectCorrect(r, () => {
        const last = jsonLines(r.stdout).at(-1) as { lang_mix?: { realised: Record<string, number>; requested: Record<string, number> } };
        const m = last.lang_mix;
        if (!m) return "no lang_mix in the final line";
        if (m.realised["zh"] !== 1 || Object.keys(m.realised).length !== 1) return `realised ${JSON.stringify(m.realised)}, expected only zh`;
        if (m.requested["en"] !== 0 || m.requested["zh"] !== 1) return `requested ${JSON.stringify(m.requested)}`;
        const file = JSON.parse(readFileSync(join(out, "data_summary.json"), "utf8")) as { step: number; lang_mix: unknown };
        if (file.step !== 3 || JSON.stringify(file.lang_mix) !== JSON.stringify(m)) return `data_summary.json ${JSON.stringify(file)} differs from the final line`;
        return null;
      });
    },
  },
];
