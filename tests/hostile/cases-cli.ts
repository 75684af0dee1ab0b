/**
 * Hostile and careless use of the command line: huge command lines (onnxruntime used to die
 * with SIGSEGV on them), input lists, usage errors, option bounds, signals, a closed stdout,
 * odd files given as images, dying preprocessing workers, and the library's LoadOptions.
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { pathToFileURL } from "node:url";
import { FIXTURES, REPO } from "../harness/paths.js";
import { tempDir } from "../harness/files.js";
import { expectCleanError, expectCorrect, expectReturns, expectThrows, runCli, runProcess, type CliResult, type HostileCase } from "./harness.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const NF = join(FIXTURES, "models", "naflex-f32");
const IMG = join(FIXTURES, "model-inputs", "noise_32x32.png");

type Line = { kind?: string; input?: string; embedding?: number[]; scores?: Array<{ label: string; probability: number }> };

/** A stack trace or an internal error on stderr, or null. */
function noStack(r: CliResult): string | null {
  return /\n\s+at |internal error|EPIPE|Error: /.test(r.stderr) ? `stderr: ${r.stderr.slice(0, 300)}` : null;
}

/** `n` copies of the test image in a fresh folder; with `deep`, each path is about 420 bytes long. */
function manyImages(n: number, stem = "a_photo_from_the_summer_holidays", deep = false): string[] {
  let dir = tempDir("siglip2-many-");
  if (deep) {
    dir = join(dir, "holidays_".repeat(20), "summer_of_the_long_paths_".repeat(6));
    mkdirSync(dir, { recursive: true });
  }
  return Array.from({ length: n }, (_, i) => {
    const p = join(dir, `${stem}_${String(i).padStart(5, "0")}.png`);
    copyFileSync(IMG, p);
    return p;
  });
}

function argvBytes(args: string[]): number {
  return args.reduce((t, a) => t + Buffer.byteLength(a) + 1, 0);
}

/** Every line is an image embedding of unit norm, with these inputs in this order. */
function embeddingsOf(inputs: string[]) {
  return (lines: unknown[]): string | null => {
    const ls = lines as Line[];
    if (ls.length !== inputs.length) return `${ls.length} lines for ${inputs.length} inputs`;
    for (let i = 0; i < ls.length; i++) {
      if (ls[i]!.input !== inputs[i]) return `line ${i} is ${JSON.stringify(ls[i]!.input)?.slice(0, 80)}, expected ${JSON.stringify(inputs[i])?.slice(0, 80)}`;
      const n = Math.hypot(...(ls[i]!.embedding ?? []));
      if (Math.abs(n - 1) > 1e-4) return `line ${i}: norm ${n}`;
    }
    return null;
  };
}

function usage(id: string, args: string[], mentions: Array<string | RegExp>): HostileCase {
  return { id, area: "cli", expect: "clean-error", run: async () => expectCleanError(await runCli(args), { code: 2, mentions }) };
}

/** A Node script in a temp folder (it imports the built package by absolute path). */
function script(body: string): string {
  const p = join(tempDir("siglip2-script-"), "s.mjs");
  writeFileSync(p, `import { SigLIP2 } from ${JSON.stringify(join(REPO, "dist", "index.js"))};\n${body}\n`);
  return p;
}

export const cases: HostileCase[] = [
  // --- command lines of any length (issue 9 #1) -------------------------------------------
  {
    id: "cli-argv-classify-100-images-40kb",
    area: "cli",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      const one = manyImages(1, "photo", true)[0]!;
      const n = Math.ceil(41_000 / (Buffer.byteLength(one) + 1)); // about 100 images of about 420-byte paths
      const images = manyImages(n, "photo", true);
      const args = ["classify", "--model", F32, "--labels", "cat", "dog", "--", ...images];
      if (argvBytes(args) < 40_000) return { outcome: "garbage", detail: `the case's argv is only ${argvBytes(args)} bytes` };
      return expectCorrect(await runCli(args, { timeoutMs: 60_000 }), (lines, r) => {
        const ls = lines as Line[];
        if (ls.length !== n) return `${ls.length} lines`;
        if (ls.some((l, i) => l.input !== images[i] || l.scores?.length !== 2)) return "wrong inputs or scores";
        return noStack(r) ?? (r.stderr === "" ? null : `stderr: ${r.stderr.slice(0, 200)}`);
      });
    },
  },
  {
    id: "cli-argv-10000-texts",
    area: "cli",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      const texts = Array.from({ length: 10_000 }, (_, i) => `t${i}`);
      return expectCorrect(await runCli(["embed", "--model", F32, "--text", ...texts], { timeoutMs: 60_000, stdoutCap: 64 << 20 }), (lines) => {
        const ls = lines as Line[];
        if (ls.length !== 10_000) return `${ls.length} lines`;
        return ls.every((l, i) => l.input === texts[i] && l.embedding?.length === 32) ? null : "wrong inputs";
      });
    },
  },
  {
    id: "cli-argv-200kb",
    area: "cli",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      const texts = Array.from({ length: 20 }, (_, i) => `${"a photo of a very long caption ".repeat(330)}${i}`);
      const args = ["embed", "--model", F32, "--text", ...texts];
      if (argvBytes(args) < 200_000) return { outcome: "garbage", detail: `the case's argv is only ${argvBytes(args)} bytes` };
      return expectCorrect(await runCli(args, { timeoutMs: 60_000, stdoutCap: 64 << 20 }), (lines) => ((lines as Line[]).map((l) => l.input).join("\n") === texts.join("\n") ? null : "wrong inputs"));
    },
  },
  {
    id: "cli-argv-long-exit-code-passes-through",
    area: "cli",
    expect: "clean-error",
    run: async () => {
      // a re-launched run reports its bad inputs like any other: exit 1, one line per input
      const long = "a caption that goes on and on ".repeat(700); // 21 KB: re-launched
      const r = await runCli(["embed", "--model", F32, "--text", long, "--image", IMG, "/nonexistent/long-argv.png"]);
      return expectCleanError(r, { code: 1, mentions: ["/nonexistent/long-argv.png"], allowStdout: true });
    },
  },
  {
    id: "cli-argv-long-sigint-forwarded",
    area: "cli",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      // the signal goes to the parent, which forwards it to the re-launched child
      const long = "a caption that goes on and on ".repeat(700); // 21 KB: re-launched
      const list = join(tempDir(), "t.txt");
      const texts = [long, ...Array.from({ length: 3000 }, (_, i) => `text number ${i}`)];
      writeFileSync(list, texts.slice(1).join("\n"));
      const r = await runCli(["embed", "--model", F32, "--batch-size", "1", "--text", long, "--text-list", list], { signalAfterOutput: { signal: "SIGINT" }, timeoutMs: 60_000 });
      return expectCorrect(r, (lines) => {
        if (lines.length === 0 || lines.length >= texts.length) return `${lines.length} lines: not interrupted in the middle`;
        if ((lines as Line[]).some((l, i) => l.input !== texts[i])) return "the lines printed are not the first inputs";
        return /interrupted: \d+ of 3001 inputs done/.test(r.stderr) ? noStack(r) : `stderr: ${r.stderr.slice(0, 200)}`;
      }, 130);
    },
  },
  {
    id: "cli-library-long-cmdline-guard",
    area: "cli",
    expect: "correct",
    run: async () => {
      // a library user's own process with a long command line: one SiglipError, not SIGSEGV
      const s = script(`try { const m = await SigLIP2.load(${JSON.stringify(F32)}); await m.embedTexts(["a"]); console.log(JSON.stringify({ ok: true })); } catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }`);
      const r = await runProcess(process.execPath, [s, ...Array.from({ length: 8000 }, (_, i) => `argument-${i}`)]);
      return expectCorrect(r, (lines) => {
        const l = lines[0] as { name?: string; code?: string; message?: string };
        if (l?.name !== "SiglipError" || l.code !== "cmdline") return `got ${JSON.stringify(l)}`;
        return /command line .* bytes.*ulimit -s/.test(l.message ?? "") && !l.message!.includes("\n") ? null : `message: ${l.message}`;
      });
    },
  },

  // --- input lists -----------------------------------------------------------------------
  {
    id: "cli-image-list-file-crlf-blank-missing-dir",
    area: "cli",
    expect: "clean-error",
    run: async () => {
      const dir = tempDir();
      const list = join(dir, "list.txt");
      writeFileSync(list, `${IMG}\r\n\r\n   \n/nonexistent/in-list.png\n${dir}\n${IMG}`);
      const r = await runCli(["embed", "--model", F32, "--image-list", list]);
      const e = expectCleanError(r, { code: 1, mentions: ["/nonexistent/in-list.png", `${dir}: is a directory`], allowStdout: true, lines: 2 });
      if (e.outcome !== "clean-error") return e;
      const why = embeddingsOf([IMG, IMG])((r.stdout.trim().split("\n")).map((l) => JSON.parse(l)));
      return why ? { outcome: "garbage", detail: why } : e;
    },
  },
  {
    id: "cli-image-list-stdin",
    area: "cli",
    expect: "correct",
    run: async () => {
      const images = manyImages(5);
      return expectCorrect(await runCli(["embed", "--model", F32, "--image-list", "-"], { stdin: `${images.join("\n")}\n` }), embeddingsOf(images));
    },
  },
  {
    id: "cli-image-list-nul-separated",
    area: "cli",
    expect: "correct",
    run: async () => {
      const dir = tempDir();
      const odd = join(dir, "a name\nwith a newline.png");
      copyFileSync(IMG, odd);
      return expectCorrect(await runCli(["embed", "--model", F32, "--image-list", "-"], { stdin: `${odd}\0${IMG}\0` }), embeddingsOf([odd, IMG]));
    },
  },
  {
    id: "cli-image-list-200-lines-from-stdin",
    area: "cli",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      // what users with 100k photos do; the paths are all the same small file, so this stays fast
      const n = 200;
      const r = await runCli(["classify", "--model", F32, "--labels", "cat", "--image-list", "-"], { stdin: `${IMG}\n`.repeat(n), timeoutMs: 60_000 });
      return expectCorrect(r, (lines) => (lines.length === n ? null : `${lines.length} lines`));
    },
  },
  usage("cli-image-list-missing-file", ["embed", "--model", F32, "--image-list", "/nonexistent/list.txt"], ["--image-list /nonexistent/list.txt", "no such file"]),
  usage("cli-image-list-is-a-directory", ["embed", "--model", F32, "--image-list", FIXTURES], ["--image-list", "is a directory"]),
  {
    id: "cli-image-list-empty",
    area: "cli",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["embed", "--model", F32, "--image-list", "-"], { stdin: "\n\n" }), { code: 2, mentions: ["empty"] }),
  },
  usage("cli-stdin-for-two-lists", ["embed", "--model", F32, "--image-list", "-", "--text-list", "-"], ["stdin", "only once"]),
  {
    id: "cli-classify-image-list-and-args",
    area: "cli",
    expect: "correct",
    run: async () => {
      const images = manyImages(3);
      const list = join(tempDir(), "l.txt");
      writeFileSync(list, `${images[1]}\n${images[2]}\n`);
      return expectCorrect(await runCli(["classify", "--model", F32, "--labels", "cat", "dog", "--image-list", list, "--", images[0]!]), (lines) =>
        (lines as Line[]).map((l) => l.input).join() === images.join() ? null : "wrong order");
    },
  },

  // --- usage errors: exit 2, one short line, never the whole help (#7e) ----------------
  usage("cli-unknown-flag", ["embed", "--model", F32, "--bogus", "--text", "a"], ["unknown option '--bogus'", "siglip2 embed --help"]),
  usage("cli-bad-dtype", ["embed", "--model", F32, "--dtype", "fp16", "--text", "a"], ["fp16", "int8"]),
  usage("cli-missing-model", ["embed", "--text", "a"], ["--model"]),
  usage("cli-unknown-command", ["frobnicate"], ["frobnicate", "siglip2 --help"]),
  usage("cli-no-command", [], ["no command", "--help"]),
  usage("cli-double-dash-before-options", ["embed", "--model", F32, "--", "--text", "a"], ["too many arguments"]),
  usage("cli-labels-eat-the-images", ["classify", "--model", F32, "--labels", "cat", "dog", IMG], ["no images", "--"]),
  usage("cli-flag-twice-different-values", ["embed", "--model", F32, "--model", NF, "--text", "a"], ["--model given twice"]),
  {
    id: "cli-flag-twice-same-value",
    area: "cli",
    expect: "correct",
    run: async () => expectCorrect(await runCli(["embed", "--model", F32, "--threads", "1", "--threads", "1", "--text", "a"]), (lines) => (lines.length === 1 ? null : `${lines.length} lines`)),
  },
  {
    id: "cli-help-on-every-command",
    area: "cli",
    expect: "correct",
    run: async () => {
      const cmds = [[], ["embed"], ["classify"], ["tokenize"], ["index"], ["search"], ["serve"], ["train"], ["help", "embed"]];
      const rs = await Promise.all(cmds.map((cmd) => runCli(cmd[0] === "help" ? cmd : [...cmd, "--help"])));
      for (const [i, r] of rs.entries()) {
        if (r.code !== 0 || !r.stdout.includes("Usage: siglip2") || r.stderr !== "") return { outcome: "unclear-error", detail: `${cmds[i]!.join(" ") || "(program)"} --help: exit ${r.code} ${r.stderr.slice(0, 100)}` };
      }
      return { outcome: "correct", detail: "every --help prints its usage, exit 0" };
    },
  },

  // --- option bounds, each refused in one line at once (#5) ------------------------------
  usage("cli-threads-zero", ["embed", "--model", F32, "--threads", "0", "--text", "a"], ["--threads", '"0"']),
  usage("cli-threads-negative", ["embed", "--model", F32, "--threads", "-1", "--text", "a"], ["--threads", '"-1"']),
  usage("cli-threads-1e9", ["embed", "--model", F32, "--threads", "1e9", "--text", "a"], ["--threads", "at most"]),
  usage("cli-threads-abc", ["embed", "--model", F32, "--threads", "abc", "--text", "a"], ["--threads", '"abc"']),
  usage("cli-threads-hex", ["embed", "--model", F32, "--threads", "0x4", "--text", "a"], ["--threads", '"0x4"']),
  usage("cli-batch-size-huge", ["embed", "--model", F32, "--batch-size", "1000000000", "--text", "a"], ["--batch-size", "at most 4096"]),
  usage("cli-workers-1000", ["embed", "--model", F32, "--workers", "1000", "--image", IMG], ["--workers", "at most"]),
  usage("cli-max-patches-20000", ["embed", "--model", NF, "--max-patches", "20000", "--image", IMG], ["--max-patches 20000", "at most"]),
  usage("cli-max-patches-1e7", ["embed", "--model", NF, "--max-patches", "10000000", "--image", IMG], ["--max-patches", "at most"]),
  {
    id: "cli-lib-threads-1e9",
    area: "cli",
    expect: "clean-error",
    run: async () => {
      const { SigLIP2 } = await import("../../src/api.js");
      return expectThrows(() => SigLIP2.load(F32, { threads: 1e9 }), ["threads", "at most"]);
    },
  },
  {
    id: "cli-lib-max-patches-20000",
    area: "cli",
    expect: "clean-error",
    run: async () => {
      const { SigLIP2 } = await import("../../src/api.js");
      return expectThrows(() => SigLIP2.load(NF, { maxPatches: 20000 }), ["maxPatches", "at most"]);
    },
  },
  {
    id: "cli-lib-max-patches-per-call",
    area: "cli",
    expect: "clean-error",
    run: async () => {
      const { SigLIP2 } = await import("../../src/api.js");
      const m = await SigLIP2.load(NF);
      try {
        return await expectThrows(() => m.embedImages([IMG], { maxPatches: 1e7 }), ["maxPatches", "10000000"]);
      } finally {
        await m.close();
      }
    },
  },
  {
    id: "cli-lib-workers-negative",
    area: "cli",
    expect: "clean-error",
    run: async () => {
      const { SigLIP2 } = await import("../../src/api.js");
      return expectThrows(() => SigLIP2.load(F32, { workers: -1 }), ["workers"]);
    },
  },
  {
    id: "cli-lib-batch-size-fractional",
    area: "cli",
    expect: "clean-error",
    run: async () => {
      const { SigLIP2 } = await import("../../src/api.js");
      return expectThrows(() => SigLIP2.load(F32, { imageBatchSize: 2.5 }), ["imageBatchSize", "2.5"]);
    },
  },

  // --- signals and a closed stdout --------------------------------------------------------
  {
    id: "cli-sigint-mid-run",
    area: "cli",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      const images = manyImages(300, "img");
      const list = join(tempDir(), "l.txt");
      writeFileSync(list, images.join("\n"));
      const r = await runCli(["embed", "--model", F32, "--batch-size", "1", "--image-list", list], { signalAfterOutput: { signal: "SIGINT" }, timeoutMs: 60_000 });
      return expectCorrect(r, (lines) => {
        if (lines.length === 0 || lines.length >= images.length) return `${lines.length} lines: not interrupted in the middle`;
        const why = embeddingsOf(images.slice(0, lines.length))(lines);
        if (why) return why;
        return /interrupted: \d+ of 300 inputs done/.test(r.stderr) ? noStack(r) : `stderr: ${r.stderr.slice(0, 200)}`;
      }, 130);
    },
  },
  {
    id: "cli-sigterm-mid-run",
    area: "cli",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      const texts = Array.from({ length: 3000 }, (_, i) => `caption ${i}`);
      const list = join(tempDir(), "t.txt");
      writeFileSync(list, texts.join("\n"));
      const r = await runCli(["embed", "--model", F32, "--batch-size", "1", "--text-list", list], { signalAfterOutput: { signal: "SIGTERM" }, timeoutMs: 60_000 });
      return expectCorrect(r, (lines) => (lines.length > 0 && lines.length < texts.length && r.stderr.includes("SIGTERM") ? noStack(r) : `${lines.length} lines; ${r.stderr.slice(0, 200)}`), 130);
    },
  },
  {
    id: "cli-stdout-closed-early",
    area: "cli",
    expect: "correct",
    timeoutMs: 60_000,
    run: async () => {
      // siglip2 embed ... | head -1
      const list = join(tempDir(), "t.txt");
      writeFileSync(list, Array.from({ length: 3000 }, (_, i) => `caption ${i}`).join("\n"));
      const r = await runCli(["embed", "--model", F32, "--text-list", list], { closeStdoutAfterFirstLine: true, timeoutMs: 60_000 });
      return expectCorrect(r, () => noStack(r) ?? (r.stderr === "" ? null : `stderr: ${r.stderr.slice(0, 200)}`));
    },
  },

  // --- odd files given as images: one line each, never a hang ------------------------------
  {
    id: "cli-image-fifo",
    area: "cli",
    expect: "clean-error",
    run: async () => {
      const fifo = join(tempDir(), "pipe.png");
      execFileSync("mkfifo", [fifo]);
      return expectCleanError(await runCli(["embed", "--model", F32, "--image", fifo, IMG]), { code: 1, mentions: [fifo, "a FIFO, not an image file"], allowStdout: true });
    },
  },
  {
    id: "cli-image-dev-zero",
    area: "cli",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["embed", "--model", F32, "--image", "/dev/zero", IMG]), { code: 1, mentions: ["/dev/zero", "a character device, not an image file"], allowStdout: true }),
  },
  {
    id: "cli-image-huge-sparse-file",
    area: "cli",
    expect: "clean-error",
    run: async () => {
      const p = join(tempDir(), "huge.png");
      execFileSync("truncate", ["-s", "10G", p]);
      return expectCleanError(await runCli(["embed", "--model", F32, "--image", p, IMG]), { code: 1, mentions: [p, "larger than the 2 GiB"], allowStdout: true });
    },
  },

  // --- a preprocessing worker that dies (#7c) ----------------------------------------------
  ...(["exit", "throw"] as const).map((mode): HostileCase => ({
    id: `cli-worker-dies-${mode}`,
    area: "cli",
    expect: "clean-error",
    run: async () => {
      const images = manyImages(6, "w");
      const dir = join(tempDir(), "x");
      mkdirSync(dir);
      const doomed = join(dir, "doomed-by-the-test-hook.png");
      copyFileSync(IMG, doomed);
      const all = [images[0]!, images[1]!, doomed, ...images.slice(2)];
      const r = await runCli(["embed", "--model", F32, "--workers", "2", "--image", ...all], { env: { SIGLIP2_TEST_WORKER_FAULT: `${mode}:doomed-by-the-test-hook` } });
      const e = expectCleanError(r, { code: 1, mentions: [doomed, "worker"], allowStdout: true });
      if (e.outcome !== "clean-error") return e;
      const why = embeddingsOf(images)(r.stdout.trim().split("\n").map((l) => JSON.parse(l)));
      return why ? { outcome: "data-lost", detail: why } : e;
    },
  })),
  {
    id: "cli-worker-dies-pool-respawns",
    area: "cli",
    expect: "correct",
    run: async () => {
      // the built pool: its workers run dist/preprocess/worker.js under any test runner
      const dist = (f: string): string => pathToFileURL(join(REPO, "dist", "preprocess", f)).href;
      const { PreprocessPool } = (await import(dist("pool.js"))) as typeof import("../../src/preprocess/pool.js");
      const { parseImageProcessorConfig } = (await import(dist("index.js"))) as typeof import("../../src/preprocess/index.js");
      const fixed = parseImageProcessorConfig(undefined, 32);
      const doomed = join(tempDir(), "pool-respawn-doomed.png");
      copyFileSync(IMG, doomed);
      const inputs = [IMG, doomed, IMG, IMG, doomed, IMG];
      return expectReturns(async () => {
        // workers copy process.env when they start (respawned ones too): set the hook for this case only
        process.env["SIGLIP2_TEST_WORKER_FAULT"] = "exit:pool-respawn-doomed";
        const pool = new PreprocessPool(1); // one worker: everything queued behind the dying one must be re-run
        try {
          return await Promise.allSettled(inputs.map((input) => pool.prepare({ input, kind: "fixed", fixed, backend: "torch" })));
        } finally {
          delete process.env["SIGLIP2_TEST_WORKER_FAULT"];
          await pool.close();
        }
      }, (rs) => {
        for (const [i, r] of rs.entries()) {
          const isDoomed = inputs[i] === doomed;
          if (isDoomed !== (r.status === "rejected")) return `input ${i}: ${r.status}`;
          if (r.status === "rejected" && !(r.reason instanceof Error && r.reason.name === "SiglipError" && r.reason.message.includes(doomed))) return `input ${i}: ${String(r.reason)}`;
          if (r.status === "fulfilled" && r.value.data.length !== 3 * 32 * 32) return `input ${i}: ${r.value.data.length} values`;
        }
        return null;
      });
    },
  },
];
