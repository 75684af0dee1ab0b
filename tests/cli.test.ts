/**
 * The CLI contract, end to end through the built binary (dist/cli/main.js):
 * JSON Lines on stdout matching transformers' goldens, one-line errors on
 * stderr, bad inputs skipped with a non-zero exit, no stack traces.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, rmSync, truncateSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { copyFixture, tempDir } from "./harness/files.js";
import { FIXTURES, REPO } from "./harness/paths.js";
import { loadManifest } from "./harness/parity.js";

const BIN = join(REPO, "dist", "cli", "main.js");
const F32 = join(FIXTURES, "models", "fixres-f32");

function run(args: string[]): { code: number; stdout: string; stderr: string; lines: any[] } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1" } });
  const lines = args.includes("--help") ? [] : r.stdout.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, lines };
}

function maxAbs(a: number[], b: ArrayLike<number>): number {
  let m = 0;
  a.forEach((v, i) => (m = Math.max(m, Math.abs(v - b[i]!))));
  return m;
}

const man = loadManifest("fixres-f32");
const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "fixres-f32.safetensors"));
const img = (i: number) => join(REPO, man.images[i]!);

function noStack(stderr: string): void {
  assert.ok(!/\n\s+at /.test(stderr), `stack trace in stderr:\n${stderr}`);
}

describe("siglip2 CLI", () => {
  it("--help works", () => {
    const r = run(["--help"]);
    assert.equal(r.code, 0);
    for (const c of ["embed", "classify", "tokenize"]) assert.ok(r.stdout.includes(c));
  });

  it("embed: images and texts match transformers, repeated and multi-valued flags", () => {
    const D = 32;
    const imgEmb = golden.readFloat32("image.embeds");
    const txtEmb = golden.readFloat32("text.embeds");
    const r = run(["embed", "--model", F32, "--no-lowercase", "--image", img(0), img(2), "--text", man.texts[0]!, "--image", img(4), "--text", man.texts[9]!]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.deepEqual(r.lines.map((l) => [l.kind, l.input]), [
      ["image", img(0)], ["image", img(2)], ["image", img(4)], ["text", man.texts[0]], ["text", man.texts[9]],
    ]);
    [0, 2, 4].forEach((gi, k) => assert.ok(maxAbs(r.lines[k].embedding, imgEmb.subarray(gi * D, (gi + 1) * D)) < 1e-5, `image ${gi}`));
    [0, 9].forEach((gi, k) => assert.ok(maxAbs(r.lines[3 + k].embedding, txtEmb.subarray(gi * D, (gi + 1) * D)) < 1e-5, `text ${gi}`));
    const norm = Math.hypot(...r.lines[0].embedding);
    assert.ok(Math.abs(norm - 1) < 1e-6);
  });

  it("embed: lowercasing is on by default and matches the lowercasing tokenizer's embeddings", () => {
    const lower = golden.readFloat32("text_lower.embeds");
    const cased = golden.readFloat32("text.embeds");
    const i = 1; // the UPPERCASE caption
    const r = run(["embed", "--model", F32, "--text", man.texts[i]!]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(maxAbs(r.lines[0].embedding, lower.subarray(i * 32, (i + 1) * 32)) < 1e-5);
    assert.ok(maxAbs(r.lines[0].embedding, cased.subarray(i * 32, (i + 1) * 32)) > 1e-3, "lowercasing changed nothing");
  });

  it("tokenize: 64 ids per text, exactly transformers' ids; the empty string is valid", () => {
    const ids = golden.readFloat32("text.input_ids");
    const texts = man.texts;
    const r = run(["tokenize", "--model", F32, "--no-lowercase", ...texts]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines.length, texts.length);
    r.lines.forEach((l, i) => {
      assert.equal(l.input, texts[i]);
      assert.deepEqual(l.ids, Array.from(ids.subarray(i * 64, (i + 1) * 64)));
    });
    assert.ok(texts.includes(""));
  });

  it("classify: sigmoid per label, sorted by probability, logits match transformers", () => {
    const zs = man.zero_shot!;
    const logits = golden.readFloat32("zeroshot.logits");
    const r = run(["classify", "--model", F32, "--no-lowercase", "--labels", ...zs.labels, "--", ...zs.images.map((p) => join(REPO, p))]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines.length, zs.images.length);
    r.lines.forEach((l, i) => {
      assert.equal(l.input, join(REPO, zs.images[i]!));
      assert.equal(l.scores.length, zs.labels.length);
      for (let k = 1; k < l.scores.length; k++) assert.ok(l.scores[k - 1].probability >= l.scores[k].probability);
      for (const s of l.scores) {
        const j = zs.labels.indexOf(s.label);
        assert.ok(Math.abs(s.logit - logits[i * zs.labels.length + j]!) < 1e-3, `${s.label}`);
        assert.ok(Math.abs(s.probability - 1 / (1 + Math.exp(-s.logit))) < 1e-12);
      }
      // independent sigmoids: they do not sum to 1
      const sum = l.scores.reduce((a: number, s: any) => a + s.probability, 0);
      assert.ok(Math.abs(sum - 1) > 1e-3);
    });
  });

  it("classify: a template changes the prompts", () => {
    const a = run(["classify", "--model", F32, "--labels", "cat", "dog", "--", img(0)]);
    const b = run(["classify", "--model", F32, "--labels", "cat", "dog", "--template", "a drawing of a {}", img(0)]);
    assert.equal(a.code, 0);
    assert.equal(b.code, 0);
    assert.notEqual(a.lines[0].scores[0].logit, b.lines[0].scores.find((s: any) => s.label === a.lines[0].scores[0].label).logit);
  });

  it("bad inputs: one stderr line each naming the file; the others are still printed; exit 1", () => {
    const dir = tempDir();
    const missing = join(dir, "missing.png");
    const empty = join(dir, "empty.png");
    writeFileSync(empty, "");
    const text = join(dir, "notes.txt");
    writeFileSync(text, "hello, I am not an image");
    const trunc = join(dir, "trunc.png");
    copyFileSync(img(2), trunc);
    truncateSync(trunc, Math.floor(statSync(trunc).size / 2));
    const r = run(["embed", "--model", F32, "--image", img(0), missing, empty, text, trunc, img(1)]);
    assert.equal(r.code, 1);
    assert.deepEqual(r.lines.map((l) => l.input), [img(0), img(1)]);
    const errLines = r.stderr.trim().split("\n");
    for (const f of [missing, empty, text, trunc]) assert.equal(errLines.filter((l) => l.includes(f)).length, 1, `${f}: ${r.stderr}`);
    assert.equal(errLines.length, 5, r.stderr); // 4 files + the summary line
    noStack(r.stderr);
    const c = run(["classify", "--model", F32, "--labels", "cat", "--", missing, img(0)]);
    assert.equal(c.code, 1);
    assert.equal(c.lines.length, 1);
  });

  it("bad checkpoints: one clear line naming the file or tensor, exit 2, no stack trace", () => {
    const cases: Array<[string, (d: string) => void, string]> = [
      ["missing config", (d) => rmSync(join(d, "config.json")), "config.json"],
      ["truncated weights", (d) => truncateSync(join(d, "model.safetensors"), 1000), "model.safetensors"],
      ["malformed header", (d) => writeFileSync(join(d, "model.safetensors"), Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{oops...")])), "not valid JSON"],
      ["missing tokenizer", (d) => rmSync(join(d, "tokenizer.json")), "tokenizer.json"],
    ];
    for (const [what, damage, needle] of cases) {
      const d = copyFixture("fixres-f32");
      damage(d);
      const r = run(["embed", "--model", d, "--image", img(0), "--text", "a cat"]);
      assert.equal(r.code, 2, `${what}: ${r.stderr}`);
      assert.equal(r.stdout.includes("embedding") && what !== "missing tokenizer", false, what);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
      assert.ok(lines[0]!.includes(needle), `${what}: ${lines[0]}`);
      noStack(r.stderr);
    }
  });

  it("no labels, a nonexistent model directory, a template without {}", () => {
    const a = run(["classify", "--model", F32, "--labels", "", "--", img(0)]);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /no labels/);
    const b = run(["embed", "--model", "/nonexistent/dir", "--text", "x"]);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /nonexistent/);
    assert.equal(b.stderr.trim().split("\n").length, 1);
    const c = run(["classify", "--model", F32, "--labels", "cat", "--template", "a photo", "--", img(0)]);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /placeholder/);
  });

  it("--debug prints the stack trace", () => {
    const r = run(["--debug", "embed", "--model", "/nonexistent/dir", "--text", "x"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /\n\s+at /);
  });
});

describe("siglip2 CLI on NaFlex checkpoints and patch features", () => {
  const NF = join(FIXTURES, "models", "naflex-f32");
  const nman = loadManifest("naflex-f32");
  const ngold = SafetensorsFile.open(join(FIXTURES, "goldens", "naflex-f32.safetensors"));
  const nimg = (i: number) => join(REPO, nman.images[i]!);

  it("embed uses the checkpoint's budget by default and --max-patches overrides it", () => {
    const D = 32;
    for (const [args, key] of [[[], "m64"], [["--max-patches", "576"], "m576"]] as const) {
      const r = run(["embed", "--model", NF, ...args, "--image", nimg(1), nimg(5)]);
      assert.equal(r.code, 0, r.stderr);
      const g = ngold.readFloat32(`${key}.embeds`);
      [1, 5].forEach((gi, k) => assert.ok(maxAbs(r.lines[k].embedding, g.subarray(gi * D, (gi + 1) * D)) < 1e-5, `${key} image ${gi}`));
    }
  });

  it("--patches prints the grid and every valid patch with its position (NaFlex)", () => {
    const r = run(["embed", "--model", NF, "--patches", "--image", nimg(1)]);
    assert.equal(r.code, 0, r.stderr);
    const l = r.lines[0];
    assert.deepEqual(l.grid, [6, 10]); // landscape 72×40 at budget 64, from transformers' spatial_shapes
    assert.equal(l.patches.length, 60);
    assert.deepEqual([l.patches[13].row, l.patches[13].col], [1, 3]);
    const ref = ngold.readFloat32("m64.last_hidden_state.1");
    const flat = l.patches.flatMap((p: any) => p.features);
    assert.ok(maxAbs(flat, ref) < 1e-4);
  });

  it("--patches on a fixed-resolution checkpoint gives the whole grid (last hidden state)", () => {
    const r = run(["embed", "--model", F32, "--patches", "--image", img(3)]);
    assert.equal(r.code, 0, r.stderr);
    const l = r.lines[0];
    assert.deepEqual(l.grid, [4, 4]);
    assert.equal(l.patches.length, 16);
    const ref = golden.readFloat32("image.last_hidden_state").subarray(3 * 16 * 32, 4 * 16 * 32);
    assert.ok(maxAbs(l.patches.flatMap((p: any) => p.features), ref) < 1e-4);
    assert.deepEqual([l.patches[7].row, l.patches[7].col], [1, 3]);
  });

  it("classify works on NaFlex checkpoints; --max-patches on a fixed-resolution checkpoint is noted, not fatal", () => {
    const r = run(["classify", "--model", NF, "--labels", "cat", "dog", "--", nimg(0), nimg(3)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines.length, 2);
    const f = run(["embed", "--model", F32, "--max-patches", "256", "--image", img(0)]);
    assert.equal(f.code, 0);
    assert.match(f.stderr, /NaFlex checkpoints only/);
  });
});

describe("siglip2 CLI: long command lines (onnxruntime reads /proc/self/cmdline with a recursive regex)", () => {
  it("the stack limit is read from /proc/self/limits, and the safe command-line length follows it", async () => {
    const { stackLimitBytes, safeCommandLineBytes, STACK_BYTES_PER_CMDLINE_BYTE } = await import("../src/graph/cmdline-guard.js");
    const limits = (v: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax stack size            ${v}              unlimited            bytes\n`;
    assert.equal(stackLimitBytes(limits("8388608")), 8388608);
    assert.equal(stackLimitBytes(limits("unlimited")), Infinity);
    assert.equal(stackLimitBytes("garbage"), null);
    const own = stackLimitBytes();
    if (process.platform === "linux" && own !== null) assert.equal(safeCommandLineBytes(), Math.floor(own / STACK_BYTES_PER_CMDLINE_BYTE));
  });

  it("a re-launched child stops when its parent is killed (the argv pipe closes)", async () => {
    const { spawn } = await import("node:child_process");
    const { readFileSync } = await import("node:fs");
    const long = "a caption that goes on and on ".repeat(700); // 21 KB: re-launched
    const list = join(tempDir(), "t.txt");
    writeFileSync(list, Array.from({ length: 20000 }, (_, i) => `text ${i}`).join("\n"));
    const parent = spawn(process.execPath, [BIN, "embed", "--model", F32, "--batch-size", "1", "--text", long, "--text-list", list], { stdio: ["ignore", "pipe", "pipe"] });
    await new Promise<void>((res) => parent.stdout.once("data", () => res()));
    const children = readFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`, "utf8").trim().split(/\s+/).map(Number);
    assert.equal(children.length, 1, "one re-launched child");
    const child = children[0]!;
    assert.ok(readFileSync(`/proc/${child}/cmdline`).length < 4096, "the child's command line is short");
    parent.kill("SIGKILL");
    parent.stdout.resume();
    const alive = (): boolean => {
      try {
        return !/^State:\s+Z/m.test(readFileSync(`/proc/${child}/status`, "utf8"));
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 200 && alive(); i++) await new Promise((r) => setTimeout(r, 50)); // bounded: 10 s at most
    assert.equal(alive(), false, "the orphaned child is still running");
  });
});
