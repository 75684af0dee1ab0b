/**
 * `npm run bench:web`: siglip2/web against transformers.js (@huggingface/transformers from npm)
 * in ONE Chromium run, on the same B/16-224 fixed-resolution checkpoint (random weights at real
 * size, tools/reference/make_bench_checkpoints.py, cached in $SIGLIP2_BENCH_CACHE or
 * ~/.cache/siglip2-bench). transformers.js loads the `siglip2 export` of that checkpoint (fp32
 * and int8, transformers.js folder layout) from the local static server (tests/browser/server.ts,
 * COOP/COEP so that WASM threads are allowed); ours loads the checkpoint folder itself.
 *
 * Per engine × backend × precision, in a fresh page: images/s (decode + preprocess + vision
 * tower, batches of 8, committed fixture images as Blobs) and texts/s (tokenize + text tower, one
 * batch of 32), best of $SIGLIP2_BENCH_REPS (default 2) after a warm-up; then the cosine between
 * the two engines' embeddings and each against Node's fp32 embeddings (src/api.ts, the
 * engine the parity tests hold to the transformers goldens). WebGPU rows are added when the
 * browser offers an adapter (the line says whether it did).
 *
 * Both engines get the same WASM thread count ($SIGLIP2_BENCH_THREADS, default min(2, cores)).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, homedir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium, type Browser } from "playwright-core";
import { SigLIP2 } from "../src/api.js";
import { dot, l2normalize } from "../src/tasks/similarity.js";
import { startServer } from "../tests/browser/server.js";

const REPO = resolve(fileURLToPath(new URL("..", import.meta.url)));
const FIXTURES = join(REPO, "tests", "fixtures");
const CHROMIUM = process.env["SIGLIP2_CHROMIUM"] ?? "/usr/bin/chromium";
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
const threads = Number(process.env["SIGLIP2_BENCH_THREADS"] ?? Math.min(2, cpus().length));
const reps = Math.max(1, Number(process.env["SIGLIP2_BENCH_REPS"] ?? 2));
const cache = process.env["SIGLIP2_BENCH_CACHE"] ?? join(homedir(), ".cache", "siglip2-bench");
const python = [process.env["SIGLIP2_REF_PYTHON"], join(REPO, ".venv-ref", "bin", "python"), "/work/venv-ref/bin/python"].find((p) => p && existsSync(p));
const ckpt = join(cache, "b16-224");
const exportRoot = join(cache, "b16-224-export");
const exported = join(exportRoot, "b16-224");
const IMAGES = [
  "images/photo_200x300.png", "images/grad_224x224.png", "images/rgb_64x64.png", "images/rgba_19x29.png",
  "images/strip_5x400.png", "model-inputs/noise_47x61.png", "model-inputs/noise_61x47.png", "model-inputs/grey_20x30.png",
];
const THINGS = ["cat", "dog", "red car", "mountain lake", "city street at night", "bowl of soup", "old bicycle", "sailing boat"];
const TEXTS = Array.from({ length: 32 }, (_, i) => `a photo of ${1 + (i >> 3)} ${THINGS[i % 8]}`);

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

// ---- 1. the checkpoint and its export
if (!existsSync(join(ckpt, "model.safetensors"))) {
  if (!python) {
    console.error("bench:web: no Python to make the B/16 benchmark checkpoint (set SIGLIP2_REF_PYTHON or run tools/reference/regenerate.sh)");
    process.exit(2);
  }
  log(`bench:web: writing the B/16-224 checkpoint into ${cache}`);
  execFileSync(python, ["tools/reference/make_bench_checkpoints.py", "b16-224"], { cwd: REPO, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, SIGLIP2_BENCH_CACHE: cache } });
}
for (const dtype of ["fp32", "int8"]) {
  if (existsSync(join(exported, "onnx", dtype === "fp32" ? "text_model.onnx" : "text_model_int8.onnx"))) continue;
  log(`bench:web: siglip2 export --dtype ${dtype} → ${exported}`);
  mkdirSync(exported, { recursive: true });
  execFileSync(process.execPath, [join(REPO, "dist", "cli", "main.js"), "export", "-m", ckpt, "-o", exported, "--dtype", dtype], { stdio: ["ignore", "ignore", "inherit"] });
}

// ---- 2. transformers.js as one browser ESM file
const tjsDir = join(cache, "bench-web");
mkdirSync(tjsDir, { recursive: true });
await build({
  stdin: { contents: `export * from "@huggingface/transformers";`, resolveDir: REPO, loader: "js" },
  outfile: join(tjsDir, "transformers.js"),
  bundle: true, format: "esm", platform: "browser", target: "es2022", logLevel: "silent",
});
const tjsOrt = [join(REPO, "node_modules", "@huggingface", "transformers", "node_modules", "onnxruntime-web", "dist"), join(REPO, "node_modules", "onnxruntime-web", "dist")].find((d) => existsSync(d))!;
const tjsVersion = (JSON.parse(readFileSync(join(REPO, "node_modules", "@huggingface", "transformers", "package.json"), "utf8")) as { version: string }).version;

// ---- 3. Node's fp32 embeddings (the reference both engines are compared with)
// Kept in the cache folder, keyed on the checkpoint's config and the inputs (random weights never change for a name).
const refFile = join(tjsDir, "node-reference.json");
const refKey = JSON.stringify({ config: readFileSync(join(ckpt, "config.json"), "utf8"), IMAGES, TEXTS });
type NodeRef = { key: string; img: number[][]; txt: number[][]; ids: number[][] };
let ref = existsSync(refFile) ? (JSON.parse(readFileSync(refFile, "utf8")) as NodeRef) : null;
if (ref?.key !== refKey) {
  log("bench:web: Node fp32 embeddings (reference)");
  const node = await SigLIP2.load(ckpt, { tower: { cacheDir: join(cache, "onnx-cache") } });
  const img = await node.embedImages(IMAGES.map((f) => join(FIXTURES, f)));
  const txt = await node.embedTexts(TEXTS);
  const ids = await node.tokenize(TEXTS);
  await node.close();
  ref = { key: refKey, img: img.map((e) => Array.from(e)), txt: txt.map((e) => Array.from(e)), ids: ids.map((e) => Array.from(e)) };
  writeFileSync(refFile, JSON.stringify(ref));
}
const nodeImg = ref.img;
const nodeTxt = ref.txt;
const nodeIds = ref.ids;

// ---- 4. one Chromium run
const server = await startServer({
  "/ckpt/": ckpt, "/models/": exportRoot, "/dist/web/": join(REPO, "dist", "web"), "/tjs/": tjsDir, "/tjs-ort/": tjsOrt,
  "/fixtures/": FIXTURES, "/": join(REPO, "bench", "web"),
});
const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });

interface RunResult {
  imgS: number;
  txtS: number;
  loadS: number;
  img: number[][];
  txt: number[][];
  ids?: number[][];
  threads: number;
  isolated: boolean;
}
type Spec = { engine: "ours" | "transformers.js"; backend: "wasm" | "webgpu"; dtype: "fp32" | "int8" };

const OURS = `
  const m = await import("/dist/web/siglip2.js");
  const t0 = performance.now();
  const model = await m.SigLIP2.load("/ckpt/", { cache: false, dtype: args.dtype, backend: args.backend, threads: args.threads, imageBatchSize: 8, textBatchSize: 32 });
  const blobs = await Promise.all(args.images.map(async (u) => (await fetch(u)).blob()));
  await model.embedImages([blobs[0]]); await model.embedTexts([args.texts[0]]);
  const loadS = (performance.now() - t0) / 1000;
  const embedImages = (b) => model.embedImages(b);
  const embedTexts = (t) => model.embedTexts(t);
  const threads = model.threads;`;
const TJS = `
  const T = await import("/tjs/transformers.js");
  T.env.allowRemoteModels = false; T.env.allowLocalModels = true; T.env.useBrowserCache = false;
  T.env.localModelPath = "/models/"; // a path, not a URL: transformers.js treats URLs as remote
  T.env.backends.onnx.wasm.wasmPaths = location.origin + "/tjs-ort/";
  T.env.backends.onnx.wasm.numThreads = args.threads;
  const t0 = performance.now();
  const opts = { dtype: args.dtype, device: args.backend };
  const processor = await T.AutoImageProcessor.from_pretrained("b16-224");
  const tok = await T.AutoTokenizer.from_pretrained("b16-224");
  // The checkpoint's tokenizer_config.json names no pad token (transformers pads with id 0, "<pad>");
  // transformers.js needs it named to pad to max_length.
  if (tok.pad_token_id === undefined || tok.pad_token_id === null) { tok.pad_token = "<pad>"; tok.pad_token_id = 0; }
  const vm = await T.SiglipVisionModel.from_pretrained("b16-224", opts);
  const tm = await T.SiglipTextModel.from_pretrained("b16-224", opts);
  const rowsOf = (t) => { const [B, D] = t.dims; const out = []; for (let i = 0; i < B; i++) out.push(t.data.slice(i * D, (i + 1) * D)); return out; };
  const embedImages = async (blobs) => {
    const out = [];
    for (let s = 0; s < blobs.length; s += 8) {
      const imgs = await Promise.all(blobs.slice(s, s + 8).map((b) => T.RawImage.fromBlob(b)));
      const { pooler_output } = await vm(await processor(imgs));
      out.push(...rowsOf(pooler_output));
    }
    return out;
  };
  const tokenize = (t) => tok(t, { padding: "max_length", max_length: 64, truncation: true });
  const embedTexts = async (t) => rowsOf((await tm(tokenize(t))).pooler_output);
  const blobs = await Promise.all(args.images.map(async (u) => (await fetch(u)).blob()));
  await embedImages([blobs[0]]); await embedTexts([args.texts[0]]);
  const loadS = (performance.now() - t0) / 1000;
  const ids = Array.from(tokenize(args.texts).input_ids.data, Number);
  const threads = T.env.backends.onnx.wasm.numThreads;`;
const TIMED = `
  let imgS = 0, txtS = 0, img, txt;
  for (let r = 0; r < args.reps; r++) {
    let t = performance.now(); img = await embedImages(blobs); imgS = Math.max(imgS, blobs.length / ((performance.now() - t) / 1000));
    t = performance.now(); txt = await embedTexts(args.texts); txtS = Math.max(txtS, args.texts.length / ((performance.now() - t) / 1000));
  }
  return { imgS, txtS, loadS, threads, isolated: crossOriginIsolated, img: img.map((e) => Array.from(e)), txt: txt.map((e) => Array.from(e)), ids: typeof ids === "undefined" ? undefined : ids };`;

async function runOne(spec: Spec): Promise<RunResult> {
  const page = await browser.newPage();
  page.on("pageerror", (e) => log(`page error: ${e.message}`));
  try {
    await page.goto(`${server.url}/page.html`);
    const args = { ...spec, threads, reps, images: IMAGES.map((f) => `/fixtures/${f}`), texts: TEXTS };
    const body = `${spec.engine === "ours" ? OURS : TJS}${TIMED}`;
    const r = (await page.evaluate(`(async (args) => { ${body} })(${JSON.stringify(args)})`)) as Omit<RunResult, "ids"> & { ids?: number[] };
    const { ids, ...rest } = r;
    return ids ? { ...rest, ids: Array.from({ length: TEXTS.length }, (_, i) => ids.slice(i * 64, (i + 1) * 64)) } : rest;
  } finally {
    await page.close();
  }
}

const probe = await browser.newPage();
await probe.goto(`${server.url}/page.html`);
const offered = (await probe.evaluate(`(async () => { try { return !!(navigator.gpu && await navigator.gpu.requestAdapter()); } catch { return false; } })()`)) as boolean;
await probe.close();
const backends: ("wasm" | "webgpu")[] = offered ? ["wasm", "webgpu"] : ["wasm"];

/** Optional filters (comma lists) for a partial run: SIGLIP2_BENCH_ENGINES=ours,transformers.js, SIGLIP2_BENCH_DTYPES=fp32,int8. */
const only = (name: string, all: readonly string[]): string[] => process.env[name]?.split(",").filter((x) => all.includes(x)) ?? [...all];
const results: { spec: Spec; r: RunResult | null; error?: string }[] = [];
for (const backend of backends) {
  for (const dtype of only("SIGLIP2_BENCH_DTYPES", ["fp32", "int8"]) as ("fp32" | "int8")[]) {
    for (const engine of only("SIGLIP2_BENCH_ENGINES", ["ours", "transformers.js"]) as Spec["engine"][]) {
      const spec: Spec = { engine, backend, dtype };
      log(`bench:web: ${engine} ${backend} ${dtype}`);
      try {
        results.push({ spec, r: await runOne(spec) });
      } catch (e) {
        const full = e instanceof Error ? e.message : String(e);
        const msg = full.split("\n")[0]!;
        log(`bench:web: ${engine} ${backend} ${dtype} failed: ${full}`);
        results.push({ spec, r: null, error: msg });
      }
    }
  }
}
const version = browser.version();
await browser.close();
await server.close();

// ---- 5. the table
const norm = (v: number[]): Float32Array => l2normalize(Float32Array.from(v));
function cosStats(a: number[][], b: ArrayLike<number>[]): string {
  const c = a.map((v, i) => dot(norm(v), norm(Array.from(b[i]!))));
  return `${Math.min(...c).toFixed(6)} / ${(c.reduce((s, x) => s + x, 0) / c.length).toFixed(6)}`;
}
const cpu = cpus()[0]?.model ?? "unknown CPU";
console.log(`\nmachine: ${cpu}, ${cpus().length} cores; Chromium ${version} headless (${FLAGS.join(" ")}); WASM threads ${threads}; transformers.js ${tjsVersion}`);
console.log(`WebGPU: ${offered ? "an adapter was offered (webgpu rows below)" : "no adapter offered (Chromium runs with --disable-gpu on this machine): WASM only"}`);
console.log(`inputs: ${IMAGES.length} fixture images (batch 8), ${TEXTS.length} texts (batch 32, 64 tokens); best of ${reps} after a warm-up; cosine min / mean over inputs\n`);
console.log("| engine | backend | precision | images/s | texts/s | load + warm-up (s) | image cos vs other engine | text cos vs other engine | image cos vs Node fp32 | text cos vs Node fp32 |");
console.log("|---|---|---|---:|---:|---:|---|---|---|---|");
for (const { spec, r, error } of results) {
  if (!r) {
    console.log(`| ${spec.engine} | ${spec.backend} | ${spec.dtype} | failed: ${error} | | | | | | |`);
    continue;
  }
  const other = results.find((x) => x.spec.backend === spec.backend && x.spec.dtype === spec.dtype && x.spec.engine !== spec.engine)?.r;
  const vsOther = (k: "img" | "txt"): string => (other ? cosStats(r[k], other[k]) : "–");
  console.log(`| ${spec.engine} | ${spec.backend}${spec.backend === "wasm" ? ` (${r.threads} thr${r.isolated ? "" : ", not isolated"})` : ""} | ${spec.dtype} | ${r.imgS.toFixed(2)} | ${r.txtS.toFixed(1)} | ${r.loadS.toFixed(1)} | ${vsOther("img")} | ${vsOther("txt")} | ${cosStats(r.img, nodeImg)} | ${cosStats(r.txt, nodeTxt)} |`);
}
const tjsIds = results.find((x) => x.spec.engine === "transformers.js" && x.r?.ids)?.r?.ids;
if (tjsIds) {
  const differ = tjsIds.filter((row, i) => row.some((v, j) => v !== nodeIds[i]![j])).length;
  console.log(`\ntoken ids: transformers.js's tokenizer and ours differ on ${differ} of ${TEXTS.length} texts`);
  const i = tjsIds.findIndex((row, k) => row.some((v, j) => v !== nodeIds[k]![j]));
  if (i >= 0) console.log(`  e.g. ${JSON.stringify(TEXTS[i])}: ours [${nodeIds[i]!.slice(0, 12).join(", ")}, …], transformers.js [${tjsIds[i]!.slice(0, 12).join(", ")}, …]`);
}
const tjsFp32 = results.find((x) => x.spec.engine === "transformers.js" && x.spec.dtype === "fp32" && x.spec.backend === "wasm")?.r;
if (tjsFp32) {
  const per = IMAGES.map((f, k) => `${f.split("/").pop()} ${dot(norm(tjsFp32.img[k]!), norm(nodeImg[k]!)).toFixed(4)}`);
  console.log(`image cosine, transformers.js fp32 vs Node fp32, per image: ${per.join(", ")}`);
}
for (const { spec, r } of results) {
  if (spec.engine !== "transformers.js" || !r) continue;
  const other = results.find((x) => x.spec.backend === spec.backend && x.spec.dtype === spec.dtype && x.spec.engine === "ours")?.r;
  if (other) console.log(`speed ${spec.backend} ${spec.dtype}: ours / transformers.js = images ${(other.imgS / r.imgS).toFixed(2)}×, texts ${(other.txtS / r.txtS).toFixed(2)}×`);
}
