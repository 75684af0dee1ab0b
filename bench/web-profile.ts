/**
 * `npx tsx bench/web-profile.ts`: where siglip2/web's text and image time goes in the page, beside
 * transformers.js, in ONE Chromium run (what bench/web-vs-transformersjs.ts measures end to end).
 * Needs that bench's cache (checkpoint, export, transformers.js bundle): run it once first.
 *
 * Per precision, in a fresh page each, `--reps` rounds (median ms) of:
 * - ours texts (32): tokenize · token rows (fetchRows, cached after the warm-up) · gather
 *   (tower.embedTokens) · tower run (session.run of the stages, feeds included) · embedTexts total;
 * - theirs texts (32): tokenize · SiglipTextModel call · total;
 * - ours images (8): decode (toRgbImage) · resample + normalise (pixelValues) · embedImages total;
 * - theirs images (8): RawImage.fromBlob · processor · SiglipVisionModel call;
 * - the exported text model alone (`text_model{_int8}.onnx`, input_ids from our tokenizer) on each
 *   onnxruntime-web build: ours (the JSEP build our bundle uses) and transformers.js's.
 *
 *   npx tsx bench/web-profile.ts [--reps 3] [--threads 2] [--dtypes fp32,int8] [--parts text,image,raw]
 */
import { existsSync } from "node:fs";
import { cpus, homedir, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer } from "../tests/browser/server.js";
import { opt } from "./common.js";

const REPO = resolve(fileURLToPath(new URL("..", import.meta.url)));
const argv = process.argv.slice(2);
const reps = Number(opt("reps", "3"));
const threads = Number(opt("threads", String(Math.min(2, cpus().length))));
const dtypes = opt("dtypes", "int8,fp32").split(",");
const parts = opt("parts", "text,image,raw").split(",");
const cache = process.env["SIGLIP2_BENCH_CACHE"] ?? join(homedir(), ".cache", "siglip2-bench");
const tjsDir = join(cache, "bench-web");
if (!existsSync(join(tjsDir, "transformers.js"))) {
  console.error("web-profile: run bench/web-vs-transformersjs.ts once first (it builds the cache this reads)");
  process.exit(2);
}
const log = (s: string): void => void process.stderr.write(`${s}\n`);
const FIXTURES = join(REPO, "tests", "fixtures");
const IMAGES = [
  "images/photo_200x300.png", "images/grad_224x224.png", "images/rgb_64x64.png", "images/rgba_19x29.png",
  "images/strip_5x400.png", "model-inputs/noise_47x61.png", "model-inputs/noise_61x47.png", "model-inputs/grey_20x30.png",
].map((f) => `/fixtures/${f}`);
const THINGS = ["cat", "dog", "red car", "mountain lake", "city street at night", "bowl of soup", "old bicycle", "sailing boat"];
const TEXTS = Array.from({ length: 32 }, (_, i) => `a photo of ${1 + (i >> 3)} ${THINGS[i % 8]}`);
const tjsOrt = join(REPO, "node_modules", "@huggingface", "transformers", "node_modules", "onnxruntime-web", "dist");
const ourOrt = join(REPO, "node_modules", "onnxruntime-web", "dist");

const server = await startServer({
  "/ckpt/": join(cache, "b16-224"), "/models/": join(cache, "b16-224-export"), "/dist/web/": join(REPO, "dist", "web"),
  "/tjs/": tjsDir, "/tjs-ort/": tjsOrt, "/our-ort/": ourOrt, "/fixtures/": FIXTURES, "/": join(REPO, "bench", "web"),
});
const browser = await chromium.launch({
  executablePath: process.env["SIGLIP2_CHROMIUM"] ?? "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});

const HELPERS = `
  const med = (a) => { const s = [...a].sort((x, y) => x - y); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
  const T = {}; const tick = (k, t0) => { (T[k] ??= []).push(performance.now() - t0); return performance.now(); };
  const result = () => Object.fromEntries(Object.entries(T).map(([k, v]) => [k, med(v)]));
  const blobsOf = () => Promise.all(args.images.map(async (u) => (await fetch(u)).blob()));`;

const OURS_TEXT = `
  const m = await import("/dist/web/siglip2.js");
  const model = await m.SigLIP2.load("/ckpt/", { cache: false, dtype: args.dtype, backend: "wasm", threads: args.threads, imageBatchSize: 8, textBatchSize: 32 });
  await model.embedTexts(args.texts);
  const tower = await model.textTower();
  const L = tower.sequenceLength;
  for (let r = 0; r < args.reps; r++) {
    let t = performance.now();
    const ids = await model.tokenize(args.texts); t = tick("tokenize", t);
    const flat = new Int32Array(ids.length * L); ids.forEach((c, i) => flat.set(c, i * L));
    await model.checkpoint.fetchRows("text_model.embeddings.token_embedding.weight", flat); t = tick("token rows", t);
    tower.embedTokens(flat); t = tick("gather", t);
    await tower.run(flat, ids.length); t = tick("tower.run (gather + session)", t);
    await model.embedTexts(args.texts); t = tick("embedTexts total", t);
  }
  return result();`;
const TJS_SETUP = `
  const TJ = await import("/tjs/transformers.js");
  TJ.env.allowRemoteModels = false; TJ.env.allowLocalModels = true; TJ.env.useBrowserCache = false;
  TJ.env.localModelPath = "/models/"; TJ.env.backends.onnx.wasm.wasmPaths = location.origin + "/tjs-ort/";
  TJ.env.backends.onnx.wasm.numThreads = args.threads;
  const opts = { dtype: args.dtype, device: "wasm" };`;
const TJS_TEXT = `${TJS_SETUP}
  const tok = await TJ.AutoTokenizer.from_pretrained("b16-224");
  if (tok.pad_token_id === undefined || tok.pad_token_id === null) { tok.pad_token = "<pad>"; tok.pad_token_id = 0; }
  const tm = await TJ.SiglipTextModel.from_pretrained("b16-224", opts);
  const tokenize = (t) => tok(t, { padding: "max_length", max_length: 64, truncation: true });
  await tm(tokenize(args.texts));
  for (let r = 0; r < args.reps; r++) {
    let t = performance.now(); const t00 = t;
    const x = tokenize(args.texts); t = tick("tokenize", t);
    const o = await tm(x); t = tick("model call", t);
    o.pooler_output.data.slice(0); tick("total", t00);
  }
  return result();`;
const OURS_IMAGE = `
  const m = await import("/dist/web/siglip2.js");
  const model = await m.SigLIP2.load("/ckpt/", { cache: false, dtype: args.dtype, backend: "wasm", threads: args.threads, imageBatchSize: 8, textBatchSize: 32 });
  const blobs = await blobsOf();
  await model.embedImages(blobs);
  for (let r = 0; r < args.reps; r++) {
    let t = performance.now();
    const imgs = []; for (const b of blobs) imgs.push(await model.decode(b)); t = tick("decode", t);
    for (const im of imgs) model.pixelValues(im); t = tick("resample + normalise", t);
    await model.embedImages(blobs); t = tick("embedImages total", t);
  }
  return result();`;
const TJS_IMAGE = `${TJS_SETUP}
  const processor = await TJ.AutoImageProcessor.from_pretrained("b16-224");
  const vm = await TJ.SiglipVisionModel.from_pretrained("b16-224", opts);
  const blobs = await blobsOf();
  await vm(await processor(await Promise.all(blobs.map((b) => TJ.RawImage.fromBlob(b)))));
  for (let r = 0; r < args.reps; r++) {
    let t = performance.now(); const t00 = t;
    const imgs = await Promise.all(blobs.map((b) => TJ.RawImage.fromBlob(b))); t = tick("decode", t);
    const px = await processor(imgs); t = tick("processor", t);
    await vm(px); t = tick("model call", t); tick("total", t00);
  }
  return result();`;
/** The exported text model alone, on one onnxruntime-web build. */
const RAW_TEXT = `
  const ort = await import(args.ortUrl);
  ort.env.wasm.wasmPaths = args.ortBase; ort.env.wasm.numThreads = args.threads; ort.env.logLevel = "fatal";
  const bytes = new Uint8Array(await (await fetch(args.model)).arrayBuffer());
  const s = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  const ids = new BigInt64Array(32 * 64); for (let i = 0; i < ids.length; i++) ids[i] = BigInt((i * 7919) % 256000);
  const feeds = { input_ids: new ort.Tensor("int64", ids, [32, 64]) };
  await s.run(feeds);
  for (let r = 0; r < args.reps; r++) { const t = performance.now(); await s.run(feeds); tick("session.run", t); }
  await s.release();
  return result();`;

async function inPage(body: string, extra: Record<string, unknown>): Promise<Record<string, number>> {
  const page = await browser.newPage();
  page.on("pageerror", (e) => log(`page error: ${e.message}`));
  try {
    await page.goto(`${server.url}/page.html`);
    const args = { threads, reps, images: IMAGES, texts: TEXTS, ...extra };
    return (await page.evaluate(`(async (args) => { ${HELPERS} ${body} })(${JSON.stringify(args)})`)) as Record<string, number>;
  } finally {
    await page.close();
  }
}

const rows: string[] = [];
const add = (what: string, r: Record<string, number>): void => {
  const line = `| ${what} | ${Object.entries(r).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(" · ")} |`;
  log(line);
  rows.push(line);
};
for (const dtype of dtypes) {
  const jobs: [string, string, Record<string, unknown>][] = [];
  if (parts.includes("text")) jobs.push([`ours texts ${dtype}`, OURS_TEXT, { dtype }], [`transformers.js texts ${dtype}`, TJS_TEXT, { dtype }]);
  if (parts.includes("image")) jobs.push([`ours images ${dtype}`, OURS_IMAGE, { dtype }], [`transformers.js images ${dtype}`, TJS_IMAGE, { dtype }]);
  const model = `/models/b16-224/onnx/text_model${dtype === "int8" ? "_int8" : ""}.onnx`;
  if (parts.includes("raw")) {
    jobs.push([`exported text model ${dtype}, our ort build`, RAW_TEXT, { model, ortUrl: "/our-ort/ort.all.min.mjs", ortBase: "/our-ort/" }]);
    jobs.push([`exported text model ${dtype}, transformers.js's ort build`, RAW_TEXT, { model, ortUrl: "/tjs-ort/ort.webgpu.bundle.min.mjs", ortBase: "/tjs-ort/" }]);
  }
  for (const [what, body, extra] of jobs) {
    log(`web-profile: ${what} (load ${loadavg()[0]!.toFixed(1)})`);
    try {
      add(what, await inPage(body, extra));
    } catch (e) {
      add(`${what} FAILED ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`, {});
    }
  }
}
await browser.close();
await server.close();
console.log(`\nChromium headless, WASM threads ${threads}, median of ${reps} (ms); load average ${loadavg().map((x) => x.toFixed(1)).join(" ")} at the end\n`);
console.log("| run | phases (ms) |\n|---|---|");
for (const r of rows) console.log(r);
