/**
 * siglip2/web in a real browser: Debian's chromium driven by playwright-core, the bundle
 * (dist/web/siglip2.js, built by `npm run build:web`, which `npm test` runs first) loaded by
 * tests/browser/page.html over a local static server with byte ranges (tests/browser/server.ts).
 *
 * Checked against Node (src/api.ts on the same fixtures) and the transformers goldens
 * (tests/fixtures/goldens, written by tools/reference): pixel_values bit-exact for the PNG
 * fixtures, embeddings within 1e-5, logits; the token table read by rows (range requests only
 * for the rows used); the built ONNX taken from the Cache API on the second load; a server
 * without range support; bad inputs as one-line SiglipErrors. Whether the browser offered a
 * WebGPU adapter is printed (with --disable-gpu it does not).
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { SigLIP2 } from "../src/api.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { FIXTURES, REPO, loadManifest } from "./harness/parity.js";
import { CHROMIUM, FLAGS } from "./browser/chromium.js";
import { startServer, type RequestLog } from "./browser/server.js";


function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "lengths differ");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function mismatches(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "lengths differ");
  let n = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) n++;
  return n;
}

/** PNG fixtures Node decodes (the bad_* files are the hostile cases). */
function pngFixtures(): string[] {
  const dirs = ["model-inputs", "images"];
  return dirs.flatMap((d) => readdirSync(join(FIXTURES, d)).filter((f) => f.endsWith(".png") && !f.startsWith("bad_")).map((f) => `${d}/${f}`));
}

describe("siglip2/web in chromium", { timeout: 120_000 }, () => {
  let ctx: BrowserContext;
  let page: Page;
  let server: Awaited<ReturnType<typeof startServer>>;
  let profile: string;
  let broken: string;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: the browser tests need Debian's chromium (run \`apt-get install -y chromium\`)`);
    assert.ok(existsSync(join(REPO, "dist", "web", "siglip2.js")), "dist/web/siglip2.js is missing: run `npm run build:web` (npm test does)");
    broken = mkdtempSync(join(tmpdir(), "siglip2-broken-"));
    server = await startServer({ "/dist/web/": join(REPO, "dist", "web"), "/fixtures/": FIXTURES, "/broken/": broken, "/": join(REPO, "tests", "browser") });
    profile = mkdtempSync(join(tmpdir(), "siglip2-chromium-"));
    ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
    page = await ctx.newPage();
    page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
    await page.goto(`${server.url}/page.html`);
    await page.waitForFunction("window.ready === true");
  });

  after(async () => {
    await ctx?.close();
    await server?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (broken) rmSync(broken, { recursive: true, force: true });
  });

  /** Evaluate `body` (an async function body) in the page with `siglip2` and `args` in scope. */
  async function inPage<T>(body: string, args: unknown = null): Promise<T> {
    return page.evaluate(`(async (args) => { const siglip2 = window.siglip2; ${body} })(${JSON.stringify(args)})`) as Promise<T>;
  }

  it("pixel_values of every PNG fixture are bit-exact with Node (decode in the browser, our resampler)", async () => {
    const files = pngFixtures();
    const node = await SigLIP2.load(join(FIXTURES, "models", "fixres-f32"), { tower: { cacheDir: null } });
    const browser = await inPage<Record<string, number[] | string>>(`
      const m = await siglip2.SigLIP2.load("/fixtures/models/fixres-f32/", { cache: false });
      const out = {};
      for (const f of args) {
        try {
          const img = await m.decode("/fixtures/" + f, f);
          out[f] = Array.from(m.pixelValues(img));
        } catch (e) { out[f] = String(e.message); }
      }
      return out;`, files);
    const bad: string[] = [];
    for (const f of files) {
      const want = node.pixelValues(await node.decode(join(FIXTURES, f)));
      const got = browser[f]!;
      if (typeof got === "string") bad.push(`${f}: ${got}`);
      else if (mismatches(got, want) > 0) bad.push(`${f}: ${mismatches(got, want)} of ${want.length} values differ (max ${maxAbs(got, want)})`);
    }
    await node.close();
    assert.deepEqual(bad, [], `checked ${files.length} PNGs`);
  });

  it("lossy formats (JPEG, lossy WebP): within 8 levels of sharp (lossless: exact)", async () => {
    const files = ["images/photo_48x64.jpg", "images/exif6_48x64.jpg", "images/photo_48x64_lossy.webp", "images/photo_48x64.webp", "images/anim_48x64.gif"];
    const node = await SigLIP2.load(join(FIXTURES, "models", "fixres-f32"), { tower: { cacheDir: null } });
    const browser = await inPage<Record<string, { w: number; h: number; data: number[] }>>(`
      const m = await siglip2.SigLIP2.load("/fixtures/models/fixres-f32/", { cache: false });
      const out = {};
      for (const f of args) { const img = await m.decode("/fixtures/" + f, f); out[f] = { w: img.width, h: img.height, data: Array.from(img.data) }; }
      return out;`, files);
    const rows: string[] = [];
    for (const f of files) {
      const want = await node.decode(join(FIXTURES, f));
      const got = browser[f]!;
      assert.deepEqual([got.w, got.h], [want.width, want.height], `${f}: size (EXIF orientation applied on both sides)`);
      const d = maxAbs(got.data, want.data);
      rows.push(`${f} ${d}`);
      // stated tolerance: lossless formats exact; lossy decoders (IDCT, upsampling) within 8 levels of 255
      assert.ok(f.endsWith(".jpg") || f.endsWith("_lossy.webp") ? d <= 8 : d === 0, `${f}: decoded pixels differ by ${d} levels`);
    }
    await node.close();
    console.log(`# decoded pixels, browser vs sharp (max levels): ${rows.join(", ")}`);
  });

  it("fixres-f32: embeddings within 1e-5 of the transformers goldens and of Node; logits; token table read by rows", async () => {
    const man = loadManifest("fixres-f32");
    const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "fixres-f32.safetensors"));
    const images = man.images.map((p) => p.replace(/^tests\/fixtures\//, "/fixtures/"));
    const logStart = server.log.length;
    const r = await inPage<{ img: number[][]; txt: number[][]; logits: number[][]; backend: string; threads: number; webgpu: boolean; ranged: boolean; cached: Record<string, boolean> }>(`
      const m = await siglip2.SigLIP2.load("/fixtures/models/fixres-f32/");
      const img = await m.embedImages(args.images);
      const txt = await m.embedTexts(args.texts, { lowercase: false });
      const { logits } = await m.similarity(img, txt);
      const out = { img: img.map((e) => Array.from(e)), txt: txt.map((e) => Array.from(e)), logits, backend: m.backend, threads: m.threads, webgpu: m.webgpuOffered, ranged: m.checkpoint.ranged, cached: { ...m.towerFromCache } };
      await m.close();
      return out;`, { images, texts: man.texts });
    console.log(`# backend ${r.backend}, WASM threads ${r.threads}, WebGPU adapter offered: ${r.webgpu ? "yes" : "no"}`);
    // WASM runs on onnxruntime-web's CPU-only build (src/web/ort.ts: its own module and binary), WebGPU on the bundled default build.
    const ortFetched = server.log.map((l: RequestLog) => l.path).filter((p) => /\/ort[.-][^/]*$/.test(p));
    if (r.backend === "wasm") {
      for (const f of ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]) assert.ok(ortFetched.some((p) => p.endsWith(`/${f}`)), `${f} not fetched: ${ortFetched.join(", ")}`);
      assert.ok(!ortFetched.some((p) => p.endsWith(".jsep.wasm")), `the JSEP binary was fetched for WASM: ${ortFetched.join(", ")}`);
    } else assert.ok(ortFetched.some((p) => p.endsWith("/ort-wasm-simd-threaded.jsep.wasm")), ortFetched.join(", "));
    const D = 32;
    const gi = golden.readFloat32("image.embeds");
    const gt = golden.readFloat32("text.embeds");
    assert.ok(maxAbs(r.img.flat(), gi) < 1e-5, `image embeds vs transformers: ${maxAbs(r.img.flat(), gi)}`);
    assert.ok(maxAbs(r.txt.flat(), gt) < 1e-5, `text embeds vs transformers: ${maxAbs(r.txt.flat(), gt)}`);
    assert.ok(maxAbs(r.logits.flat(), golden.readFloat32("logits_per_image")) < 1e-3, "logits vs transformers");
    const node = await SigLIP2.load(join(FIXTURES, "models", "fixres-f32"), { tower: { cacheDir: null } });
    const ni = await node.embedImages(man.images.map((p) => join(REPO, p)));
    const nt = await node.embedTexts(man.texts, { lowercase: false });
    await node.close();
    const di = maxAbs(r.img.flat(), ni.flatMap((e) => Array.from(e)));
    const dt = maxAbs(r.txt.flat(), nt.flatMap((e) => Array.from(e)));
    console.log(`# fixres-f32 browser vs Node: images ${di.toExponential(2)}, texts ${dt.toExponential(2)}; vs transformers: images ${maxAbs(r.img.flat(), gi).toExponential(2)}, texts ${maxAbs(r.txt.flat(), gt).toExponential(2)}`);
    assert.ok(di < 1e-5 && dt < 1e-5, `browser vs Node: images ${di}, texts ${dt}`);
    assert.equal(r.img[0]!.length, D);
    // The token table: only rows were requested, never the table as a whole.
    assert.ok(r.ranged, "the server does ranges: the weights were read by range requests");
    const ckpt = SafetensorsFile.open(join(FIXTURES, "models", "fixres-f32", "model.safetensors"));
    const table = ckpt.info("text_model.embeddings.token_embedding.weight");
    const rowBytes = (table.end - table.begin) / table.shape[0]!;
    ckpt.close();
    const weightReqs = server.log.slice(logStart).filter((l: RequestLog) => l.path.endsWith("fixres-f32/model.safetensors"));
    const covering = weightReqs.filter((l) => {
      const m = /bytes=(\d+)-(\d+)/.exec(l.range ?? "");
      if (!m) return true; // a full GET
      const a = Number(m[1]);
      const b = Number(m[2]) + 1;
      return Math.min(b, table.end) - Math.max(a, table.begin) > rowBytes;
    });
    assert.deepEqual(covering, [], "no request read more than one row of the token table");
    const rowReqs = weightReqs.filter((l) => l.bytes === rowBytes).length;
    assert.ok(rowReqs > 0, "token rows were fetched one range request each");
  });

  it("naflex-f32: patches bit-exact with Node; embeddings at 64 and 256 patches within 1e-5 of transformers and Node", async () => {
    const man = loadManifest("naflex-f32");
    const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "naflex-f32.safetensors"));
    const images = man.images.map((p) => p.replace(/^tests\/fixtures\//, "/fixtures/"));
    const r = await inPage<{ patches: number[][]; grids: number[][]; m64: number[][]; m256: number[][]; txt: number[][] }>(`
      const m = await siglip2.SigLIP2.load("/fixtures/models/naflex-f32/");
      const patches = [], grids = [];
      for (const u of args.images) {
        const p = m.naflexPatches(await m.decode(u, u));
        patches.push(Array.from(p.patches));
        grids.push([p.gridH, p.gridW]);
      }
      const m64 = (await m.embedImages(args.images)).map((e) => Array.from(e));
      const m256 = (await m.embedImages(args.images, { maxPatches: 256 })).map((e) => Array.from(e));
      const txt = (await m.embedTexts(args.texts, { lowercase: false })).map((e) => Array.from(e));
      await m.close();
      return { patches, grids, m64, m256, txt };`, { images, texts: man.texts });
    const node = await SigLIP2.load(join(FIXTURES, "models", "naflex-f32"), { tower: { cacheDir: null } });
    const paths = man.images.map((p) => join(REPO, p));
    for (const [i, p] of paths.entries()) {
      const want = node.naflexPatches(await node.decode(p));
      assert.deepEqual(r.grids[i], [want.gridH, want.gridW], p);
      assert.equal(mismatches(r.patches[i]!, want.patches), 0, `${p}: NaFlex patches differ from Node`);
    }
    const n64 = (await node.embedImages(paths)).flatMap((e) => Array.from(e));
    const n256 = (await node.embedImages(paths, { maxPatches: 256 })).flatMap((e) => Array.from(e));
    const nt = (await node.embedTexts(man.texts, { lowercase: false })).flatMap((e) => Array.from(e));
    await node.close();
    const g64 = golden.readFloat32("m64.embeds");
    const g256 = golden.readFloat32("m256.embeds");
    const d = { g64: maxAbs(r.m64.flat(), g64), g256: maxAbs(r.m256.flat(), g256), n64: maxAbs(r.m64.flat(), n64), n256: maxAbs(r.m256.flat(), n256), nt: maxAbs(r.txt.flat(), nt) };
    console.log(`# naflex-f32 browser vs transformers: m64 ${d.g64.toExponential(2)}, m256 ${d.g256.toExponential(2)}; vs Node: m64 ${d.n64.toExponential(2)}, m256 ${d.n256.toExponential(2)}, texts ${d.nt.toExponential(2)}`);
    for (const [k, v] of Object.entries(d)) assert.ok(v < 1e-5, `${k}: ${v}`);
  });

  it("SigLIP2Worker: the same embeddings from a Web Worker (the page's thread stays free)", async () => {
    const man = loadManifest("fixres-f32");
    const r = await inPage<{ img: number[]; txt: number[]; backend: string }>(`
      const w = await siglip2.SigLIP2Worker.load("/fixtures/models/fixres-f32/");
      const blob = await (await fetch("/fixtures/model-inputs/noise_32x32.png")).blob();
      const [img] = await w.embedImages([blob]);
      const [txt] = await w.embedTexts(args, { lowercase: false });
      let bad = "";
      try { await w.embedImages(["/fixtures/images/bad_text.txt"]); } catch (e) { bad = e instanceof siglip2.SiglipError ? "" : "not a SiglipError"; }
      await w.close();
      return { img: Array.from(img), txt: Array.from(txt), backend: w.backend + bad };`, [man.texts[0]]);
    const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "fixres-f32.safetensors"));
    assert.equal(r.backend, "wasm");
    assert.ok(maxAbs(r.img, golden.readFloat32("image.embeds").subarray(0, 32)) < 1e-5);
    assert.ok(maxAbs(r.txt, golden.readFloat32("text.embeds").subarray(0, 32)) < 1e-5);
  });

  it("the second load takes both towers' ONNX from the Cache API and gives the same embeddings", async () => {
    const r = await inPage<{ cached: Record<string, boolean>; a: number[]; b: number[] }>(`
      const m = await siglip2.SigLIP2.load("/fixtures/models/fixres-f32/");
      const [a] = await m.embedImages(["/fixtures/model-inputs/noise_32x32.png"]);
      const [b] = await m.embedTexts(["a photo"]);
      return { cached: { ...m.towerFromCache }, a: Array.from(a), b: Array.from(b) };`);
    assert.deepEqual(r.cached, { "vision-fixres": true, text: true });
    const node = await SigLIP2.load(join(FIXTURES, "models", "fixres-f32"), { tower: { cacheDir: null } });
    const [a] = await node.embedImages([join(FIXTURES, "model-inputs", "noise_32x32.png")]);
    const [b] = await node.embedTexts(["a photo"]);
    await node.close();
    assert.ok(maxAbs(r.a, a!) < 1e-5 && maxAbs(r.b, b!) < 1e-5);
  });

  it("tensors that span two range requests (4 KiB requests) give the same embedding", async () => {
    const r = await inPage<number[]>(`
      const m = await siglip2.SigLIP2.load("/fixtures/models/fixres-f32/", { cache: false, maxRequestBytes: 4096 });
      return Array.from((await m.embedImages(["/fixtures/model-inputs/noise_47x61.png"]))[0]);`);
    const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "fixres-f32.safetensors"));
    assert.ok(maxAbs(r, golden.readFloat32("image.embeds").subarray(2 * 32, 3 * 32)) < 1e-5);
  });

  it("a server without range support: the file is downloaded once and gives the same embedding", async () => {
    const r = await inPage<{ ranged: boolean; e: number[] }>(`
      const m = await siglip2.SigLIP2.load("/noranges/fixtures/models/fixres-f32/", { cache: false });
      const [e] = await m.embedImages(["/fixtures/model-inputs/noise_47x61.png"]);
      return { ranged: m.checkpoint.ranged, e: Array.from(e) };`);
    assert.equal(r.ranged, false);
    const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "fixres-f32.safetensors"));
    assert.ok(maxAbs(r.e, golden.readFloat32("image.embeds").subarray(2 * 32, 3 * 32)) < 1e-5);
  });

  it("a malformed safetensors file over HTTP gets the same one-line error as on disk (one header validation)", async () => {
    const src = join(FIXTURES, "models", "fixres-f32");
    const bytes = readFileSync(join(src, "model.safetensors"));
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const cases: Record<string, Buffer> = {
      truncated: bytes.subarray(0, Math.floor(bytes.length / 2)),
      "huge-header": Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 1]), bytes.subarray(8)]),
      "not-json": Buffer.concat([bytes.subarray(0, 8), Buffer.from("{".padEnd(headerLen, "x")), bytes.subarray(8 + headerLen)]),
    };
    for (const [name, b] of Object.entries(cases)) {
      const d = join(broken, name);
      mkdirSync(d, { recursive: true });
      for (const f of ["config.json", "preprocessor_config.json", "tokenizer.json"]) copyFileSync(join(src, f), join(d, f));
      writeFileSync(join(d, "model.safetensors"), b);
    }
    const got = await inPage<Record<string, string>>(`
      const out = {};
      for (const n of args) {
        try { await siglip2.SigLIP2.load("/broken/" + n + "/"); out[n] = "loaded"; }
        catch (e) { out[n] = (e instanceof siglip2.SiglipError ? "" : "not a SiglipError: ") + e.message; }
      }
      return out;`, Object.keys(cases));
    for (const name of Object.keys(cases)) {
      const file = join(broken, name, "model.safetensors");
      let want = "";
      try {
        SafetensorsFile.open(file).close();
      } catch (e) {
        want = (e as Error).message.replace(file, "FILE");
      }
      assert.ok(want.length > 0, `${name}: Node refuses it`);
      // JSON.parse's own text differs between V8 versions (Node's, Chromium's): compared up to it
      const engine = (m: string): string => m.replace(/not valid JSON \(.*\)$/, "not valid JSON (…)");
      assert.equal(engine(got[name]!.replace(`${server.url}/broken/${name}/model.safetensors`, "FILE")), engine(want), name);
    }
  });

  it("int8 in the browser: cosine to fp32 above 0.99", async () => {
    const r = await inPage<{ a: number[]; b: number[] }>(`
      const f = await siglip2.SigLIP2.load("/fixtures/models/fixres-f32/", { cache: false });
      const q = await siglip2.SigLIP2.load("/fixtures/models/fixres-f32/", { cache: false, dtype: "int8" });
      const u = ["/fixtures/model-inputs/noise_61x47.png"];
      return { a: Array.from((await f.embedImages(u))[0]), b: Array.from((await q.embedImages(u))[0]) };`);
    const cos = r.a.reduce((s, x, i) => s + x * r.b[i]!, 0);
    assert.ok(cos > 0.99, `cosine ${cos}`);
  });

  it("bad inputs are one-line SiglipErrors naming them; classify ranks labels", async () => {
    const r = await inPage<{ settled: string[]; missing: string; top: string }>(`
      const m = await siglip2.SigLIP2.load("/fixtures/models/fixres-f32/");
      const res = await m.imageFeaturesSettled(["/fixtures/images/bad_truncated.png", "/fixtures/images/bad_text.txt", "/fixtures/model-inputs/noise_30x30.png", "/fixtures/nope.png"]);
      const settled = res.map((x) => x instanceof siglip2.SiglipError ? "error: " + x.message : "ok");
      let missing = "";
      try { await siglip2.SigLIP2.load("/fixtures/models/nope/"); } catch (e) { missing = (e instanceof siglip2.SiglipError ? "SiglipError: " : "other: ") + e.message; }
      const scores = await m.classify(["/fixtures/model-inputs/noise_32x32.png"], ["cat", "dog", "noise"]);
      return { settled, missing, top: scores[0].map((s) => s.label).join(",") };`);
    assert.match(r.settled[0]!, /^error: cannot read image \/fixtures\/images\/bad_truncated\.png/);
    assert.match(r.settled[1]!, /^error: cannot read image \/fixtures\/images\/bad_text\.txt/);
    assert.equal(r.settled[2], "ok");
    assert.match(r.settled[3]!, /^error: cannot read image \/fixtures\/nope\.png: HTTP 404/);
    for (const s of r.settled) assert.ok(!s.includes("\n"), s);
    assert.match(r.missing, /^SiglipError: .*config\.json: HTTP 404/);
    assert.equal(r.top.split(",").length, 3);
    const urls = await inPage<string[]>(`return [siglip2.checkpointBaseUrl("google/siglip2-base-patch16-224"), siglip2.checkpointBaseUrl("/fixtures/models/fixres-f32")];`);
    assert.deepEqual(urls, ["https://huggingface.co/google/siglip2-base-patch16-224/resolve/main/", `${server.url}/fixtures/models/fixres-f32/`]);
  });
});
