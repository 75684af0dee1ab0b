/**
 * `npx tsx bench/web-int8-ops.ts`: which int8 graph runs fastest in onnxruntime-web's WASM
 * backend, and on which of its builds — the model alone, no preprocessing, in ONE Chromium run.
 *
 * The B/16-224 image tower (random real-size weights, $SIGLIP2_BENCH_CACHE/b16-224) is exported
 * (src/models/export.ts) as fp32 (fused contrib ops, what siglip2/web runs for fp32) and as
 * int8 in each variant of src/models/loader.ts `Int8Options`. Each model runs in a fresh page
 * on each onnxruntime-web build found in node_modules:
 * - ours: onnxruntime-web as bundled by tools/build-web.ts (JSEP build, WebGPU-capable);
 * - ours, plain WASM build (ort.wasm.min.mjs: CPU only, no asyncify/JSEP instrumentation);
 * - transformers.js's own onnxruntime-web (its WebGPU bundle, which loads the asyncify build).
 * A batch of 8 images, one warm-up, then `--reps` runs (default 3): the median s per batch.
 * The rounds alternate over the models so that the shared machine's load falls on all alike.
 *
 *   npx tsx bench/web-int8-ops.ts [--reps 3] [--threads 2] [--builds ours,plain,tjs] [--models fp32,fused,unfused]
 */
import { existsSync, mkdirSync } from "node:fs";
import { cpus, homedir, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { exportModel } from "../src/models/export.js";
import type { Int8Options } from "../src/models/loader.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { startServer } from "../tests/browser/server.js";
import { opt } from "./common.js";

const REPO = resolve(fileURLToPath(new URL("..", import.meta.url)));
const argv = process.argv.slice(2);
const reps = Number(opt("reps", "3"));
const threads = Number(opt("threads", String(Math.min(2, cpus().length))));
const cache = process.env["SIGLIP2_BENCH_CACHE"] ?? join(homedir(), ".cache", "siglip2-bench");
const ckpt = join(cache, "b16-224");
const root = join(cache, "web-int8-ops");
const log = (s: string): void => void process.stderr.write(`${s}\n`);

const MODELS: Record<string, { dtype: "fp32" | "int8"; fused?: boolean; int8?: Int8Options }> = {
  fp32: { dtype: "fp32", fused: true },
  fused: { dtype: "int8", int8: { attention: "fused" } },
  unfused: { dtype: "int8", int8: { attention: "unfused" } },
  "int8-attn": { dtype: "int8", int8: { attention: "int8" } },
};
const models = opt("models", "fp32,fused,unfused").split(",").filter((m) => MODELS[m]);
for (const m of models) {
  const dir = join(root, m);
  if (existsSync(join(dir, "onnx"))) continue;
  log(`web-int8-ops: export ${m}`);
  mkdirSync(dir, { recursive: true });
  exportModel(new Checkpoint(ckpt), dir, { ...MODELS[m]!, towers: ["vision"] });
}
const onnxFile = (m: string): string => `/m/${m}/onnx/vision_model${MODELS[m]!.dtype === "int8" ? "_int8" : ""}.onnx`;

const ourDist = join(REPO, "node_modules", "onnxruntime-web", "dist");
const tjsDist = join(REPO, "node_modules", "@huggingface", "transformers", "node_modules", "onnxruntime-web", "dist");
const BUILDS: Record<string, { dir: string; file: string }> = {
  ours: { dir: ourDist, file: "ort.all.min.mjs" },
  plain: { dir: ourDist, file: "ort.wasm.min.mjs" },
  tjs: { dir: tjsDist, file: "ort.webgpu.bundle.min.mjs" },
};
const builds = opt("builds", "ours,plain,tjs").split(",").filter((b) => BUILDS[b] && existsSync(BUILDS[b]!.dir));
const mounts: Record<string, string> = { "/m/": root, "/": join(REPO, "bench", "web") };
for (const b of builds) mounts[`/ort-${b}/`] = BUILDS[b]!.dir;
const server = await startServer(mounts);
const browser = await chromium.launch({
  executablePath: process.env["SIGLIP2_CHROMIUM"] ?? "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});

/** One page: load the build and the model, warm up, time `n` batches; returns seconds per batch. */
async function timeIn(build: string, model: string, n: number): Promise<{ secs: number[]; version: string }> {
  const page = await browser.newPage();
  page.on("pageerror", (e) => log(`page error: ${e.message}`));
  try {
    await page.goto(`${server.url}/page.html`);
    const args = { url: `/ort-${build}/${BUILDS[build]!.file}`, base: `${server.url}/ort-${build}/`, model: onnxFile(model), threads, n };
    return (await page.evaluate(`(async (a) => {
      const ort = await import(a.url);
      ort.env.wasm.wasmPaths = a.base; ort.env.wasm.numThreads = a.threads; ort.env.logLevel = "fatal";
      const bytes = new Uint8Array(await (await fetch(a.model)).arrayBuffer());
      const s = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
      const px = new Float32Array(8 * 3 * 224 * 224);
      for (let i = 0; i < px.length; i++) px[i] = Math.sin(i * 0.001);
      const feeds = { pixel_values: new ort.Tensor("float32", px, [8, 3, 224, 224]) };
      await s.run(feeds);
      const secs = [];
      for (let r = 0; r < a.n; r++) { const t = performance.now(); await s.run(feeds); secs.push((performance.now() - t) / 1000); }
      await s.release();
      return { secs, version: ort.env.versions?.web ?? "?" };
    })(${JSON.stringify(args)})`)) as { secs: number[]; version: string };
  } finally {
    await page.close();
  }
}

const secs: Record<string, number[]> = {};
const versions: Record<string, string> = {};
for (let round = 0; round < reps; round++) {
  for (const b of builds) {
    for (const m of models) {
      log(`web-int8-ops: round ${round + 1}/${reps} ${b} ${m} (load ${loadavg()[0]!.toFixed(1)})`);
      try {
        const r = await timeIn(b, m, 1);
        log(`web-int8-ops: ${b} ${m}: ${r.secs.map((x) => x.toFixed(2)).join(", ")} s per batch`);
        (secs[`${b} ${m}`] ??= []).push(...r.secs);
        versions[b] = r.version;
      } catch (e) {
        log(`web-int8-ops: ${b} ${m} failed: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`);
      }
    }
  }
}
const chromeVersion = browser.version();
await browser.close();
await server.close();

const med = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
console.log(`\nmachine: ${cpus()[0]?.model ?? "cpu"}, ${cpus().length} cores; Chromium ${chromeVersion} headless; WASM threads ${threads}; load average ${loadavg().map((x) => x.toFixed(1)).join(" ")} at the end`);
console.log(`B/16-224 image tower alone, batch 8, one page per (build, model) and round, ${reps} rounds alternating; median s per batch\n`);
console.log(`| onnxruntime-web build | ${models.map((m) => `${m} (s / batch 8)`).join(" | ")} | ${models.filter((m) => m !== "fp32").map((m) => `${m} vs fp32`).join(" | ")} |`);
console.log(`|---|${models.map(() => "---:").join("|")}|${models.filter((m) => m !== "fp32").map(() => "---:").join("|")}|`);
for (const b of builds) {
  const row = models.map((m) => (secs[`${b} ${m}`]?.length ? med(secs[`${b} ${m}`]!).toFixed(2) : "failed"));
  const fp = secs[`${b} fp32`]?.length ? med(secs[`${b} fp32`]!) : NaN;
  const sp = models.filter((m) => m !== "fp32").map((m) => (secs[`${b} ${m}`]?.length ? `${(fp / med(secs[`${b} ${m}`]!)).toFixed(2)}×` : "–"));
  console.log(`| ${b} (${BUILDS[b]!.file}, ${versions[b] ?? "?"}) | ${row.join(" | ")} | ${sp.join(" | ")} |`);
}
console.log(`\nevery run (s): ${JSON.stringify(secs)}`);
