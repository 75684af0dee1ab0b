/**
 * The in-browser photo search demo (examples/web, built by `npm run build:example-web` into
 * dist/examples/web/) in Debian's chromium, driven by playwright-core: the build is run here, the
 * folder is served by the browser tests' static server (tests/browser/server.ts) with the tiny
 * fixres-f32 fixture checkpoint at ./model/, a folder of committed fixture images is picked with
 * setInputFiles on the webkitdirectory input, and the page's text and image rankings must equal
 * Node's (src/api.ts on the same files): the same order, cosines within 1e-5. A damaged photo is
 * listed as skipped with its one-line error; no photo is ever requested from the server (the page
 * reads them with the File API) and no request leaves 127.0.0.1.
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { SigLIP2 } from "../src/api.js";
import { dot } from "../src/tasks/similarity.js";
import { buildExampleWeb } from "../tools/build-example-web.js";
import { FIXTURES } from "./harness/parity.js";
import { startServer } from "./browser/server.js";

const CHROMIUM = "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
/** Committed PNG fixtures (lossless: the browser's decoder gives Node's pixels). */
const PHOTOS = ["grey_20x30.png", "noise_30x30.png", "noise_32x32.png", "noise_47x61.png", "noise_61x47.png", "palette_9x13.png", "rgba_40x25.png"];
const DAMAGED = "bad_truncated.png";
const QUERY = "a photo of a noisy square";

interface Row {
  name: string;
  cosine: number;
}

describe("examples/web: the in-browser photo search demo", { timeout: 180_000 }, () => {
  let ctx: BrowserContext;
  let page: Page;
  let server: Awaited<ReturnType<typeof startServer>>;
  let profile: string;
  let photos: string;
  let node: SigLIP2;
  const outside: string[] = [];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: the browser tests need Debian's chromium (run \`apt-get install -y chromium\`)`);
    const dir = await buildExampleWeb();
    photos = mkdtempSync(join(tmpdir(), "siglip2-photos-"));
    mkdirSync(join(photos, "holiday"));
    for (const f of PHOTOS) copyFileSync(join(FIXTURES, "model-inputs", f), join(photos, "holiday", f));
    copyFileSync(join(FIXTURES, "images", DAMAGED), join(photos, "holiday", DAMAGED));
    copyFileSync(join(FIXTURES, "images", "bad_text.txt"), join(photos, "holiday", "notes.txt")); // not an image: ignored
    server = await startServer({ "/model/": join(FIXTURES, "models", "fixres-f32"), "/": dir });
    profile = mkdtempSync(join(tmpdir(), "siglip2-chromium-"));
    ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
    page = await ctx.newPage();
    page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
    ctx.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith(`${server.url}/`) && !u.startsWith("blob:") && !u.startsWith("data:")) outside.push(u);
    });
    await page.goto(`${server.url}/index.html`);
    await page.waitForFunction("window.demo && (window.demo.ready || window.demo.error)", null, { timeout: 60_000 });
    assert.equal(await page.evaluate("window.demo.error"), null);
    node = await SigLIP2.load(join(FIXTURES, "models", "fixres-f32"), { tower: { cacheDir: null } });
  });

  after(async () => {
    await ctx?.close();
    await server?.close();
    await node?.close();
    for (const d of [profile, photos]) if (d) rmSync(d, { recursive: true, force: true });
  });

  /** The result grid as the page shows it (data attributes of the list items). */
  async function grid(): Promise<Row[]> {
    return page.$$eval("#results li", (lis) => lis.map((li) => ({ name: li.getAttribute("data-name") ?? "", cosine: Number(li.getAttribute("data-cosine")) })));
  }

  /** Node's ranking of the photos against `query` (highest cosine first). */
  function nodeRanking(query: Float32Array, embs: Map<string, Float32Array>, exclude?: string): Row[] {
    return [...embs].filter(([n]) => n !== exclude).map(([name, e]) => ({ name, cosine: dot(query, e) })).sort((a, b) => b.cosine - a.cosine);
  }

  function assertSameRanking(got: Row[], want: Row[], what: string): void {
    assert.deepEqual(got.map((r) => r.name), want.map((r) => r.name), `${what}: order`);
    const d = Math.max(...got.map((r, i) => Math.abs(r.cosine - want[i]!.cosine)));
    console.log(`# ${what}: ${got.length} results, max |cosine − Node| ${d.toExponential(2)}`);
    assert.ok(d < 1e-5, `${what}: cosines differ from Node by ${d}`);
  }

  it("a picked folder is embedded in the page's worker; text and image search rank as Node does", async () => {
    await page.setInputFiles("#folder", join(photos, "holiday"));
    await page.waitForFunction(`window.demo.indexed === ${PHOTOS.length} && !window.demo.busy`, null, { timeout: 90_000 });
    const skipped = (await page.evaluate("window.demo.skipped")) as { name: string; message: string }[];
    assert.deepEqual(skipped.map((s) => s.name), [`holiday/${DAMAGED}`]);
    assert.ok(skipped[0]!.message.includes(DAMAGED) && !skipped[0]!.message.includes("\n"), skipped[0]!.message);
    assert.match((await page.textContent("#skipped")) ?? "", /bad_truncated\.png/);

    const embs = new Map<string, Float32Array>();
    const vecs = await node.embedImages(PHOTOS.map((f) => join(photos, "holiday", f)));
    PHOTOS.forEach((f, i) => embs.set(`holiday/${f}`, vecs[i]!));

    await page.fill("#query", QUERY);
    await page.press("#query", "Enter");
    await page.waitForFunction(`document.querySelectorAll("#results li").length === ${PHOTOS.length}`);
    const [q] = await node.embedTexts([QUERY]);
    assertSameRanking(await grid(), nodeRanking(q!, embs), "text search");

    const first = (await grid())[0]!.name;
    await page.click(`#results li[data-name="${first}"] button`);
    await page.waitForFunction(`document.querySelectorAll("#results li").length === ${PHOTOS.length - 1}`);
    assertSameRanking(await grid(), nodeRanking(embs.get(first)!, embs, first), "image search");
    assert.match((await page.textContent("#status")) ?? "", new RegExp(`photos like ${first}`));
  });

  it("nothing leaves the machine: photos are never requested, every request stays on the local server", () => {
    const names = [...PHOTOS, DAMAGED, "notes.txt"];
    const asked = server.log.filter((l) => names.some((n) => l.path.includes(n)));
    assert.deepEqual(asked, []);
    assert.deepEqual(outside, []);
    assert.ok(server.log.some((l) => l.path.startsWith("/model/")), "the model was read from ./model/");
  });
});
