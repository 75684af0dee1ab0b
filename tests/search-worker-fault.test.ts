/**
 * Preprocessing worker threads that cannot start (issue 14), through the built CLI
 * (dist/cli/main.js) for `embed --image` and `index`: a worker that throws while loading
 * (SIGLIP2_TEST_WORKER_FAULT=start:crash) or never becomes ready (start:hang, with a short
 * SIGLIP2_WORKER_START_TIMEOUT_MS) ends the run with exit 2 and one line naming the worker
 * threads and `--workers 0`, quickly; a worker that dies on one image (exit:/throw:) still
 * fails only that image; `--workers 0` works whatever the hook says. Also the pool on its
 * own (three failed starts in a row after a good one) and the image pipeline (a prefetched
 * window that rejects while the previous one is in the tower is no unhandled rejection).
 *
 * Every child has a kill guard: a hang fails the test, it never hangs the suite.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, it } from "node:test";
import { SiglipError } from "../src/errors.js";
import type { FixresVisionTower, VisionResult } from "../src/models/siglip.js";
import type { Prepared } from "../src/preprocess/task.js";
import { runImagePipeline } from "../src/tasks/image-pipeline.js";
import { noisePng, tempDir } from "./harness/files.js";
import { FIXTURES, REPO } from "./harness/paths.js";

const BIN = join(REPO, "dist", "cli", "main.js");
const F32 = join(FIXTURES, "models", "fixres-f32");
const IMG = join(FIXTURES, "images", "rgb_64x64.png");
const GUARD_MS = 90_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  killed: boolean;
}

/** Run the built CLI (or, with `viaTsx`, src/cli/main.ts through tsx); SIGKILL after {@link GUARD_MS} (then `killed`). */
function cli(args: string[], env: Record<string, string> = {}, viaTsx = false): Promise<Run> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, viaTsx ? ["--import", "tsx", join(REPO, "src", "cli", "main.ts"), ...args] : [BIN, ...args], {
      cwd: REPO,
      env: { ...process.env, HF_HUB_OFFLINE: "1", NO_COLOR: "1", SIGLIP2_TEST_WORKER_FAULT: "", SIGLIP2_WORKER_START_TIMEOUT_MS: "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let killed = false;
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const guard = setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, GUARD_MS);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr, ms: performance.now() - t0, killed });
    });
  });
}

/** `n` distinct small PNGs in a fresh folder (plus, optionally, a copy named `doomed`). */
async function photos(n: number, doomed?: string): Promise<{ dir: string; paths: string[]; doomedPath?: string }> {
  const dir = join(tempDir(), "photos");
  mkdirSync(dir);
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = join(dir, `p${i}.png`);
    writeFileSync(p, await noisePng(100 + i, 20, 16));
    paths.push(p);
  }
  if (doomed === undefined) return { dir, paths };
  const doomedPath = join(dir, `${doomed}.png`);
  copyFileSync(IMG, doomedPath);
  return { dir, paths, doomedPath };
}

function lines(s: string): string[] {
  return s.split("\n").filter((l) => l.length > 0);
}

/** Exit 2, no stdout from embed (index prints nothing either), and exactly one stderr line about the workers. */
function assertWorkersLine(r: Run, what: string, withinMs: number): void {
  assert.equal(r.killed, false, `${what}: hung (killed after ${GUARD_MS} ms); stderr:\n${r.stderr}`);
  assert.equal(r.code, 2, `${what}: exit ${r.code}; stderr:\n${r.stderr}`);
  const err = lines(r.stderr);
  assert.equal(err.length, 1, `${what}: expected one line on stderr, got:\n${r.stderr}`);
  assert.match(err[0]!, /^siglip2: cannot start the image preprocessing worker threads \(.+\); run again with --workers 0 to preprocess on the main thread$/, what);
  assert.equal(r.stdout, "", `${what}: stdout:\n${r.stdout}`);
  assert.ok(r.ms < withinMs, `${what}: took ${Math.round(r.ms)} ms (limit ${withinMs})`);
}

/** The JSON lines of embed's stdout, by input. */
function embedded(r: Run): Map<string, number[]> {
  return new Map(lines(r.stdout).map((l) => {
    const o = JSON.parse(l) as { input: string; embedding: number[] };
    return [o.input, o.embedding];
  }));
}

/** The summary line of `index`. */
function summary(r: Run): { added: number; failed: number; total: number } {
  const out = lines(r.stdout);
  assert.equal(out.length, 1, `index stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return JSON.parse(out[0]!) as { added: number; failed: number; total: number };
}

describe("preprocessing workers that cannot start (CLI)", { concurrency: 1 }, () => {
  const starts: Array<{ fault: string; env: Record<string, string>; within: number; why: RegExp }> = [
    { fault: "start:crash", env: {}, within: 20_000, why: /the worker failed while loading/ },
    { fault: "start:hang", env: { SIGLIP2_WORKER_START_TIMEOUT_MS: "1500" }, within: 20_000, why: /not ready after 1500 ms; SIGLIP2_WORKER_START_TIMEOUT_MS/ },
  ];
  for (const s of starts) {
    it(`embed --image with ${s.fault}: exit 2, one line naming the workers and --workers 0`, async () => {
      const { paths } = await photos(5);
      const r = await cli(["embed", "--model", F32, "--workers", "2", "--image", ...paths], { SIGLIP2_TEST_WORKER_FAULT: s.fault, ...s.env });
      assertWorkersLine(r, `embed ${s.fault}`, s.within);
      assert.match(r.stderr, s.why);
    });

    it(`index with ${s.fault}: exit 2, one line, nothing recorded as unreadable`, async () => {
      const { dir } = await photos(5);
      const db = join(tempDir(), "db");
      const r = await cli(["index", dir, "--db", db, "--model", F32], { SIGLIP2_TEST_WORKER_FAULT: s.fault, ...s.env });
      assertWorkersLine(r, `index ${s.fault}`, s.within);
      assert.match(r.stderr, s.why);
      // The images were never blamed: a rerun on the main thread indexes all of them.
      const again = await cli(["index", dir, "--db", db, "--model", F32, "--workers", "0"], { SIGLIP2_TEST_WORKER_FAULT: s.fault, ...s.env });
      assert.equal(again.code, 0, again.stderr);
      const sum = summary(again);
      assert.equal(sum.added, 5);
      assert.equal(sum.failed, 0);
    });

    it(`embed --workers 0 with ${s.fault} set: every image embedded`, async () => {
      const { paths } = await photos(3);
      const r = await cli(["embed", "--model", F32, "--workers", "0", "--image", ...paths], { SIGLIP2_TEST_WORKER_FAULT: s.fault, ...s.env });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual([...embedded(r).keys()], paths);
    });
  }

  it("a bad SIGLIP2_WORKER_START_TIMEOUT_MS is one line, exit 2", async () => {
    for (const v of ["soon", "0", "-1", "1.5", "1e3", "86400001"]) {
      const r = await cli(["embed", "--model", F32, "--image", IMG], { SIGLIP2_WORKER_START_TIMEOUT_MS: v });
      assert.equal(r.code, 2, `${v}: ${r.stderr}`);
      assert.deepEqual(lines(r.stderr), [`siglip2: SIGLIP2_WORKER_START_TIMEOUT_MS must be a whole number of milliseconds from 1 to 86400000, got ${JSON.stringify(v)}`]);
    }
  });

  for (const mode of ["exit", "throw"]) {
    it(`a worker that dies on one image (${mode}:) still fails only that image (embed)`, async () => {
      const { paths, doomedPath } = await photos(5, "doomed-by-the-hook");
      const all = [paths[0]!, doomedPath!, ...paths.slice(1)];
      const r = await cli(["embed", "--model", F32, "--workers", "2", "--image", ...all], { SIGLIP2_TEST_WORKER_FAULT: `${mode}:doomed-by-the-hook` });
      assert.equal(r.killed, false);
      assert.equal(r.code, 1, r.stderr);
      const err = lines(r.stderr);
      assert.equal(err.length, 2, r.stderr); // the image, then "1 input failed"
      assert.ok(err[0]!.includes(doomedPath!) && err[0]!.includes("worker thread died"), err[0]);
      assert.equal(err[1], "siglip2: 1 input failed");
      assert.deepEqual([...embedded(r).keys()], paths);
    });
  }

  it("a worker that dies on one image (exit:) still fails only that image (index)", async () => {
    const { dir, doomedPath } = await photos(5, "doomed-by-the-hook");
    const r = await cli(["index", dir, "--db", join(tempDir(), "db"), "--model", F32], { SIGLIP2_TEST_WORKER_FAULT: "exit:doomed-by-the-hook" });
    assert.equal(r.code, 1, r.stderr);
    const sum = summary(r);
    assert.equal(sum.added, 5);
    assert.equal(sum.failed, 1);
    assert.ok(lines(r.stderr).some((l) => l.includes(doomedPath!) && l.includes("worker thread died")), r.stderr);
  });
});

describe("the CLI run through tsx (src/cli/main.ts)", { concurrency: 1 }, () => {
  it("index with worker threads works (it used to fail every image: a worker could not load .ts)", async () => {
    const { dir } = await photos(4);
    const r = await cli(["index", dir, "--db", join(tempDir(), "db"), "--model", F32, "--workers", "2"], {}, true);
    assert.equal(r.killed, false);
    assert.equal(r.code, 0, r.stderr);
    const sum = summary(r);
    assert.equal(sum.added, 4);
    assert.equal(sum.failed, 0);
  });

  it("embed with worker threads prints what the built CLI prints on the main thread", async () => {
    const { paths } = await photos(3);
    const viaTsx = await cli(["embed", "--model", F32, "--workers", "2", "--image", ...paths], {}, true);
    const built = await cli(["embed", "--model", F32, "--workers", "0", "--image", ...paths]);
    assert.equal(viaTsx.code, 0, viaTsx.stderr);
    assert.equal(built.code, 0, built.stderr);
    assert.equal(viaTsx.stdout, built.stdout);
  });

  it("start:crash through tsx: exit 2, the one line", async () => {
    const { paths } = await photos(3);
    const r = await cli(["embed", "--model", F32, "--image", ...paths], { SIGLIP2_TEST_WORKER_FAULT: "start:crash" }, true);
    assertWorkersLine(r, "tsx embed start:crash", 30_000);
  });
});

describe("preprocessing pool start failures (in process)", () => {
  it("after a good start, three failed starts in a row give up with the workers error; the image that killed a worker is its own error", async () => {
    // The built pool: its workers run dist/preprocess/worker.js (a worker does not get tsx's loader).
    const dist = (f: string): string => pathToFileURL(join(REPO, "dist", "preprocess", f)).href;
    const { PreprocessPool } = (await import(dist("pool.js"))) as typeof import("../src/preprocess/pool.js");
    const { parseImageProcessorConfig } = (await import(dist("index.js"))) as typeof import("../src/preprocess/index.js");
    const fixed = parseImageProcessorConfig(undefined, 32);
    const doomed = join(tempDir(), "pool-start-doomed.png");
    copyFileSync(IMG, doomed);
    const task = (input: string) => ({ input, kind: "fixed" as const, fixed, backend: "torch" as const });
    const saved = process.env["SIGLIP2_TEST_WORKER_FAULT"];
    // Workers copy process.env when they start: the first one dies on `doomed`, every later one at load.
    process.env["SIGLIP2_TEST_WORKER_FAULT"] = "exit:pool-start-doomed";
    const pool = new PreprocessPool(1);
    try {
      const first = await pool.prepare(task(IMG));
      assert.equal(first.data.length, 3 * 32 * 32);
      process.env["SIGLIP2_TEST_WORKER_FAULT"] = "start:crash";
      const rs = await Promise.allSettled([pool.prepare(task(doomed)), pool.prepare(task(IMG)), pool.prepare(task(IMG))]);
      const reasons = rs.map((r) => (r.status === "rejected" ? (r.reason as SiglipError) : null));
      assert.ok(reasons.every((e) => e !== null && e.name === "SiglipError"), String(rs.map((r) => r.status)));
      assert.equal(reasons[0]!.code, "image");
      assert.ok(reasons[0]!.message.includes(doomed));
      for (const e of reasons.slice(1)) {
        assert.equal(e!.code, "workers");
        assert.match(e!.message, /cannot start the image preprocessing worker threads \(test fault: the worker failed while loading\); run again with --workers 0/);
      }
      // Later jobs get the same error at once.
      await assert.rejects(pool.prepare(task(IMG)), (e: SiglipError) => e.code === "workers");
    } finally {
      if (saved === undefined) delete process.env["SIGLIP2_TEST_WORKER_FAULT"];
      else process.env["SIGLIP2_TEST_WORKER_FAULT"] = saved;
      await pool.close();
    }
  });
});

describe("image pipeline and the workers error", () => {
  it("aborts the call (no per-image errors) and leaves no unhandled rejection when the prefetched window fails during a forward pass", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => void unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const tower = {
        encode: async (batch: Float32Array[]): Promise<VisionResult[]> => {
          await new Promise((r) => setTimeout(r, 100)); // the next window fails meanwhile
          return batch.map(() => ({ pooled: new Float32Array([1, 0]), patches: new Float32Array(2), gridH: 1, gridW: 1 }) as VisionResult);
        },
      } as unknown as FixresVisionTower;
      const images = ["a", "b", "c", "d", "e", "f"];
      const prepare = async (input: unknown): Promise<Prepared> => {
        if (images.indexOf(input as string) < 2) return { data: new Float32Array(2), gridH: 1, gridW: 1 };
        throw new SiglipError("workers", "cannot start the image preprocessing worker threads (test); run again with --workers 0 to preprocess on the main thread");
      };
      await assert.rejects(
        runImagePipeline({ tower, batchSize: 2, prepare, parallel: () => true }, images),
        (e: SiglipError) => e.code === "workers",
      );
      await new Promise((r) => setTimeout(r, 50)); // let any late rejection surface
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
