/**
 * Hostile texts and labels through the CLI and the library: huge texts, NUL bytes, invalid
 * UTF-8, lone surrogates, CRLF lists, 10,000 labels, labels with newlines, templates.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES, REPO } from "../harness/paths.js";
import { tempDir } from "../harness/files.js";
import { BIN, expectCleanError, expectCorrect, expectReturns, runCli, runProcess, type HostileCase } from "./harness.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const IMG = join(FIXTURES, "model-inputs", "noise_32x32.png");

type Line = { input?: string; embedding?: number[]; ids?: number[]; scores?: Array<{ label: string; logit: number; probability: number }> };

/** Every line is a text embedding of unit norm, for exactly these inputs. */
function textsAre(inputs: string[]) {
  return (lines: unknown[]): string | null => {
    const ls = lines as Line[];
    if (ls.length !== inputs.length) return `${ls.length} lines for ${inputs.length} texts`;
    for (const [i, l] of ls.entries()) {
      if (l.input !== inputs[i]) return `line ${i}: input ${JSON.stringify(l.input)?.slice(0, 60)}, expected ${JSON.stringify(inputs[i])?.slice(0, 60)}`;
      const n = Math.hypot(...(l.embedding ?? []));
      if (l.embedding?.length !== 32 || Math.abs(n - 1) > 1e-4) return `line ${i}: norm ${n}`;
    }
    return null;
  };
}

function listFile(content: string | Buffer): string {
  const p = join(tempDir(), "texts.txt");
  writeFileSync(p, content);
  return p;
}

export const cases: HostileCase[] = [
  {
    id: "text-one-35kb-text",
    area: "text",
    expect: "correct",
    run: async () => {
      const t = "a long caption about a cat on a sofa ".repeat(950); // 35 KB in one argument
      return expectCorrect(await runCli(["embed", "--model", F32, "--text", t]), textsAre([t]));
    },
  },
  {
    id: "text-one-1mb-line-in-text-list",
    area: "text",
    expect: "correct",
    run: async () => {
      const t = "word ".repeat(200_000);
      return expectCorrect(await runCli(["tokenize", "--model", F32, "--text-list", listFile(t)], { stdoutCap: 8 << 20 }), (lines) => {
        const l = lines[0] as Line;
        return lines.length === 1 && l.ids?.length === 64 && l.ids[63] !== 0 ? null : `${lines.length} lines, ids ${l?.ids?.slice(60)}`;
      });
    },
  },
  {
    id: "text-nul-byte-in-text-list",
    area: "text",
    expect: "correct",
    run: async () => expectCorrect(await runCli(["embed", "--model", F32, "--text-list", listFile("a\0b\nplain\n")]), textsAre(["a\0b", "plain"])),
  },
  {
    id: "text-crlf-and-blank-lines-in-text-list",
    area: "text",
    expect: "correct",
    run: async () => expectCorrect(await runCli(["embed", "--model", F32, "--text-list", listFile("\ufeffa cat\r\n\r\na dog\r\n")]), textsAre(["a cat", "", "a dog"])),
  },
  {
    id: "text-invalid-utf8-in-text-list",
    area: "text",
    expect: "clean-error",
    run: async () => {
      const list = listFile(Buffer.concat([Buffer.from("good one\n"), Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x0a]), Buffer.from("good two\n")]));
      const r = await runCli(["embed", "--model", F32, "--text-list", list]);
      const e = expectCleanError(r, { code: 1, mentions: [`${list}:2`, "UTF-8"], allowStdout: true });
      if (e.outcome !== "clean-error") return e;
      const why = textsAre(["good one", "good two"])(r.stdout.trim().split("\n").map((l) => JSON.parse(l)));
      return why ? { outcome: "garbage", detail: why } : e;
    },
  },
  {
    id: "text-invalid-utf8-in-argv",
    area: "text",
    expect: "correct",
    run: async () => {
      // Node decodes argv as UTF-8 with replacement: the text is embedded as "x\ufffdy"
      const r = await runProcess("/bin/sh", ["-c", `exec "${process.execPath}" "${BIN}" embed --model "${F32}" --text "$(printf 'x\\377y')"`]);
      return expectCorrect(r, textsAre(["x\ufffdy"]));
    },
  },
  {
    id: "text-lone-surrogates-library",
    area: "text",
    expect: "correct",
    run: async () => {
      const { SigLIP2 } = await import("../../src/api.js");
      const m = await SigLIP2.load(F32);
      try {
        return await expectReturns(() => m.embedTexts(["\ud800 lone high", "lone low \udc00", "\udc00\ud800"]), (es) =>
          es.length === 3 && es.every((e) => e.length === 32 && Math.abs(Math.hypot(...e) - 1) < 1e-4) ? null : "not three unit vectors");
      } finally {
        await m.close();
      }
    },
  },
  {
    id: "text-empty-text-list-from-stdin",
    area: "text",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["embed", "--model", F32, "--text-list", "-"], { stdin: "" }), { code: 2, mentions: ["empty"] }),
  },
  {
    id: "text-tokenize-text-list-stdin",
    area: "text",
    expect: "correct",
    run: async () =>
      expectCorrect(await runCli(["tokenize", "--model", F32, "--text-list", "-"], { stdin: "a photo\n\n" }), (lines) => {
        const ls = lines as Line[];
        return ls.length === 2 && ls[0]!.input === "a photo" && ls[1]!.input === "" && ls.every((l) => l.ids?.length === 64) && ls[1]!.ids![0] === 1 ? null : JSON.stringify(ls).slice(0, 200);
      }),
  },
  {
    id: "text-3000-labels",
    area: "text",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      const labels = Array.from({ length: 3000 }, (_, i) => `label ${i}`); // 28 KB of argv: re-launched
      const r = await runCli(["classify", "--model", F32, "--labels", ...labels, "--", IMG], { timeoutMs: 60_000, stdoutCap: 16 << 20 });
      return expectCorrect(r, (lines) => {
        const s = (lines[0] as Line).scores ?? [];
        if (lines.length !== 1 || s.length !== 3000) return `${lines.length} lines, ${s.length} scores`;
        if (new Set(s.map((x) => x.label)).size !== 3000) return "labels lost or duplicated";
        for (let i = 1; i < s.length; i++) if (s[i]!.probability > s[i - 1]!.probability) return "not sorted";
        return null;
      });
    },
  },
  {
    id: "text-labels-with-newlines",
    area: "text",
    expect: "correct",
    run: async () => {
      const labels = ["a cat\non two lines", "tab\tdog", "quote \" and \\ backslash"];
      return expectCorrect(await runCli(["classify", "--model", F32, "--labels", ...labels, "--", IMG]), (lines) => {
        const got = ((lines[0] as Line).scores ?? []).map((s) => s.label).sort();
        return JSON.stringify(got) === JSON.stringify([...labels].sort()) ? null : `labels ${JSON.stringify(got)}`;
      });
    },
  },
  {
    id: "text-empty-label-among-others",
    area: "text",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["classify", "--model", F32, "--labels", "cat", "", "dog", "--", IMG]), { code: 2, mentions: ["--labels", "label 2 of 3"] }),
  },
  {
    id: "text-template-without-placeholder",
    area: "text",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["classify", "--model", F32, "--labels", "cat", "--template", "a photo", "--", IMG]), { code: 2, mentions: ["a photo", "{}"] }),
  },
  {
    id: "text-template-placeholder-twice",
    area: "text",
    expect: "correct",
    run: async () => {
      // every {} is the label: "{} and {}" with "cat" is the prompt "cat and cat"
      const a = await runCli(["classify", "--model", F32, "--labels", "cat", "--template", "{} and {}", "--", IMG]);
      const b = await runCli(["classify", "--model", F32, "--labels", "cat and cat", "--template", "{}", "--", IMG]);
      return expectCorrect(a, (lines) => {
        const la = (lines[0] as Line).scores?.[0]?.logit;
        const lb = (JSON.parse(b.stdout.split("\n")[0] ?? "null") as Line | null)?.scores?.[0]?.logit;
        return la !== undefined && la === lb ? null : `logits ${la} and ${lb}`;
      });
    },
  },
  {
    id: "text-help-shows-the-library-default-template",
    area: "text",
    expect: "correct",
    run: async () => {
      const { DEFAULT_TEMPLATE } = await import("../../src/api.js");
      const r = await runCli(["classify", "--help"], { cwd: REPO });
      return expectCorrect(r, () => (r.stdout.replace(/\s+/g, " ").includes(JSON.stringify(DEFAULT_TEMPLATE)) ? null : "the help does not show DEFAULT_TEMPLATE"));
    },
  },
];
