/**
 * siglip2/web on WebGPU: the CI flags of tests/browser.test.ts (--disable-gpu) give no adapter
 * (requestAdapter() → null, so that suite checks the WASM fallback). Here chromium is started with
 * SwiftShader's software Vulkan (`--enable-unsafe-webgpu --use-angle=swiftshader`); when that
 * offers an adapter, fixres-f32 runs on the WebGPU execution provider and must give the
 * transformers goldens within 1e-5. When no adapter is offered the test says so and checks the
 * fallback to WASM instead.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { chromium } from "playwright-core";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { FIXTURES, REPO, loadManifest } from "./harness/parity.js";
import { startServer } from "./browser/server.js";

const CHROMIUM = "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
  "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-angle=swiftshader"];

describe("siglip2/web on WebGPU (SwiftShader)", { timeout: 180_000 }, () => {
  it("fixres-f32 on the WebGPU execution provider matches the transformers goldens within 1e-5", async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: the browser tests need Debian's chromium (run \`apt-get install -y chromium\`)`);
    const server = await startServer({ "/dist/web/": join(REPO, "dist", "web"), "/fixtures/": FIXTURES, "/": join(REPO, "tests", "browser") });
    const profile = mkdtempSync(join(tmpdir(), "siglip2-chromium-gpu-"));
    const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
    try {
      const page = await ctx.newPage();
      await page.goto(`${server.url}/page.html`);
      await page.waitForFunction("window.ready === true");
      const r = (await page.evaluate(`(async () => {
        const m = await window.siglip2.SigLIP2.load("/fixtures/models/fixres-f32/", { cache: false });
        const img = await m.embedImages(["/fixtures/model-inputs/noise_32x32.png", "/fixtures/model-inputs/noise_47x61.png"]);
        const txt = await m.embedTexts([TEXT0], { lowercase: false });
        return { backend: m.backend, offered: m.webgpuOffered, img: img.map((e) => Array.from(e)), txt: Array.from(txt[0]) };
      })()`.replace("TEXT0", JSON.stringify(loadManifest("fixres-f32").texts[0]!)))) as { backend: string; offered: boolean; img: number[][]; txt: number[] };
      console.log(`# WebGPU adapter offered with SwiftShader flags: ${r.offered ? "yes" : "no"}; backend used: ${r.backend}`);
      assert.equal(r.backend, r.offered ? "webgpu" : "wasm");
      const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "fixres-f32.safetensors"));
      const gi = golden.readFloat32("image.embeds");
      const want = [...gi.subarray(0, 32), ...gi.subarray(64, 96)];
      let d = 0;
      r.img.flat().forEach((v, i) => (d = Math.max(d, Math.abs(v - want[i]!))));
      console.log(`# ${r.backend} vs transformers: images ${d.toExponential(2)}`);
      assert.ok(d < 1e-5, `images differ by ${d}`);
      const gt = golden.readFloat32("text.embeds").subarray(0, 32);
      let dt = 0;
      r.txt.forEach((v, i) => (dt = Math.max(dt, Math.abs(v - gt[i]!))));
      console.log(`# ${r.backend} vs transformers: text ${dt.toExponential(2)}`);
      assert.ok(dt < 1e-5, `text differs by ${dt}`);
    } finally {
      await ctx.close();
      await server.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });
});
