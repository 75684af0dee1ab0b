/**
 * The web UI of `siglip2 serve --db` in a real browser (Debian's chromium, playwright-core):
 * a real server (createServer, 127.0.0.1) over an index of seven committed fixture images,
 * embedded by the random-weight fixture checkpoint. The checks are about plumbing: what the
 * page shows must be exactly what the JSON API answers (paths, ranks, cosines, probabilities,
 * label scores), thumbnails must be the indexed files, the page must be usable by keyboard and
 * at phone width (375 px, no horizontal scroll), and an API key must be asked for and used.
 *
 * Screenshots (desktop search, a result, phone, zero-shot) are written to
 * $SIGLIP2_UI_SCREENSHOTS, or to a temporary folder; docs/screenshots/ holds a committed set
 * (`SIGLIP2_UI_SCREENSHOTS=docs/screenshots node --import tsx --test tests/web-ui.test.ts`).
 * The page script is dist/server/ui/client/app.js, built by `npm run build` (tsconfig.ui.json).
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import sharp from "sharp";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { SigLIP2 } from "../src/api.js";
import { embeddingSetup, modelName } from "../src/search/identity.js";
import { buildIndex, openForIndexing } from "../src/search/indexer.js";
import type { ImageStore } from "../src/search/store.js";
import { createServer } from "../src/server/app.js";
import { UI_BUILD_DIR } from "../src/server/ui/assets.js";
import { CHROMIUM, FLAGS } from "./browser/chromium.js";
import { tempDir } from "./harness/files.js";
import { FIXTURES } from "./harness/paths.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const IMAGES = join(FIXTURES, "images");
const FILES = ["grad_224x224.png", "photo_200x300.png", "rgb_64x64.png", "photo_48x64.jpg", "exif6_48x64.jpg", "rgba_19x29.png", "strip_5x400.png"];
const KEY = "ui-test-key";
/** An indexed file whose name is markup: the page must show it as text, never run it. */
const MARKUP_NAME = `<img src=x onerror="document.title='pwned'">.png`;
const INDEXED = FILES.length + 1;

interface ShownHit {
  path: string;
  rank: string;
  cosine: string;
  probability: string | undefined;
}

interface ApiHit {
  rank: number;
  path: string;
  cosine: number;
  probability?: number;
}

const dataUrl = (file: string) => `data:image/${file.endsWith(".jpg") ? "jpeg" : "png"};base64,${readFileSync(join(IMAGES, file)).toString("base64")}`;

describe("web UI (siglip2 serve --db) in chromium", { timeout: 120_000 }, () => {
  let model: SigLIP2;
  let store: ImageStore;
  let app: FastifyInstance;
  let url: string;
  let keyed: FastifyInstance;
  let keyedUrl: string;
  let browser: BrowserContext;
  let page: Page;
  let work: string;
  let photos: string;
  let shots: string;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: the browser tests need Debian's chromium (run \`apt-get install -y chromium\`)`);
    assert.ok(existsSync(join(UI_BUILD_DIR, "app.js")), `${UI_BUILD_DIR}/app.js is missing: run \`npm run build\` (npm test does)`);
    work = tempDir("siglip2-ui-");
    photos = join(work, "photos");
    mkdirSync(photos);
    for (const f of FILES) copyFileSync(join(IMAGES, f), join(photos, f));
    copyFileSync(join(IMAGES, "rgb_37x23.png"), join(photos, MARKUP_NAME));
    model = await SigLIP2.load(F32);
    store = await openForIndexing(join(work, "db"), "images", await embeddingSetup(model, modelName(F32)));
    await buildIndex(model, store, [photos]);
    app = createServer(model, { store, modelName: "fixres-f32 (random weights)" });
    url = await app.listen({ host: "127.0.0.1", port: 0 });
    keyed = createServer(model, { store, apiKey: KEY });
    keyedUrl = await keyed.listen({ host: "127.0.0.1", port: 0 });
    shots = process.env["SIGLIP2_UI_SCREENSHOTS"] ?? join(work, "screenshots");
    mkdirSync(shots, { recursive: true });
    browser = await chromium.launchPersistentContext(join(work, "profile"), { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 800 } });
    page = await browser.newPage();
    watch(page);
  });

  after(async () => {
    await browser?.close();
    await app?.close();
    await keyed?.close();
    store?.close();
    await model?.close();
    console.log(`# screenshots in ${shots}`);
    if (work && !shots.startsWith(work)) rmSync(work, { recursive: true, force: true });
  });

  /** Errors the page logged (a script error, a CSP violation, a failed load the page did not expect). */
  const pageErrors: string[] = [];
  function watch(p: Page): void {
    p.on("pageerror", (e) => pageErrors.push(`page error: ${e.message}`));
    p.on("dialog", (d) => {
      pageErrors.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
    p.on("console", (m) => {
      // The 401s of the API-key test are expected; everything else logged as an error is not.
      if (m.type() === "error" && !/status of 401/.test(m.text())) pageErrors.push(`console: ${m.text()} (${m.location().url})`);
    });
  }

  async function open(p: Page, base = url, hash = ""): Promise<void> {
    await p.goto(`${base}/${hash}`);
    await until(p, "document.documentElement.dataset.ready === 'true'");
  }

  /**
   * Wait until the expression (page side, with `args` in scope) is true. Polled from here:
   * playwright's waitForFunction evaluates strings with eval, which the page's CSP forbids.
   */
  async function until(p: Page, expr: string, args: unknown = null, timeoutMs = 20_000): Promise<void> {
    const t0 = Date.now();
    while (!(await inPage<boolean>(p, expr, args))) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${expr.slice(0, 120)} (status: ${await p.textContent("#search-status")})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Evaluate an expression in the page (with `args` in scope). */
  function inPage<T>(p: Page, expr: string, args: unknown = null): Promise<T> {
    return p.evaluate(`((args) => ${expr})(${JSON.stringify(args)})`) as Promise<T>;
  }

  async function api<T>(path: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
    const r = await fetch(url + path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    const text = await r.text();
    assert.equal(r.status, 200, `${path}: ${text}`);
    return JSON.parse(text) as T;
  }

  /** The grid as the page shows it, once `n` results and all their thumbnails are there. */
  async function shownHits(p: Page, n: number): Promise<ShownHit[]> {
    await until(p, `(() => {
      const imgs = [...document.querySelectorAll("#results .hit img")];
      return imgs.length === args && imgs.every((i) => i.complete && i.naturalWidth > 0) && !document.getElementById("results").hasAttribute("aria-busy");
    })()`, n);
    return inPage<ShownHit[]>(p, `[...document.querySelectorAll("#results .hit")].map((b) => ({ path: b.dataset.path, rank: b.dataset.rank, cosine: b.dataset.cosine, probability: b.dataset.probability }))`);
  }

  /** The JSON API's answer in the page's terms (numbers as the page writes them: String(x)). */
  function asShown(data: ApiHit[]): ShownHit[] {
    return data.map((h) => ({ path: h.path, rank: String(h.rank), cosine: String(h.cosine), probability: h.probability === undefined ? undefined : String(h.probability) }));
  }

  const focusedRank = (p: Page) => inPage<string | undefined>(p, `document.activeElement.dataset.rank`);

  async function noHorizontalScroll(p: Page, what: string): Promise<void> {
    const m = await inPage<{ doc: number; body: number; view: number }>(p, `({ doc: document.documentElement.scrollWidth, body: document.body.scrollWidth, view: window.innerWidth })`);
    assert.ok(m.doc <= m.view && m.body <= m.view, `${what}: content is ${Math.max(m.doc, m.body)} px wide in a ${m.view} px viewport`);
  }

  it("text search (any language): the grid shows every indexed image with the JSON API's ranks, cosines and probabilities, thumbnails of the files", async () => {
    await open(page);
    await until(page, `document.getElementById("index-info").textContent.startsWith(args + " images")`, INDEXED);
    for (const query of ["猫の写真", "a photo of a cat"]) {
      await page.fill("#q", query);
      await page.press("#q", "Enter");
      await until(page, `document.getElementById("search-status").textContent.includes(args)`, query);
      const shown = await shownHits(page, INDEXED);
      const want = await api<{ data: ApiHit[] }>("/v1/search", { query, k: 24 });
      assert.deepEqual(shown, asShown(want.data), `grid vs POST /v1/search for ${query}`);
      assert.ok(shown.every((h) => h.probability !== undefined), "text queries show a probability");
    }
    // Each thumbnail is its file, fit inside 256 px, never enlarged (sizes from the files themselves).
    const dims = await inPage<Array<{ path: string; w: number; h: number }>>(page, `[...document.querySelectorAll("#results .hit")].map((b) => ({ path: b.dataset.path, w: b.querySelector("img").naturalWidth, h: b.querySelector("img").naturalHeight }))`);
    for (const d of dims) {
      const m = await sharp(d.path).rotate().metadata();
      const [w0, h0] = m.autoOrient ? [m.autoOrient.width, m.autoOrient.height] : [m.width!, m.height!];
      const s = Math.min(1, 256 / Math.max(w0, h0));
      assert.ok(Math.abs(d.w - w0 * s) <= 1 && Math.abs(d.h - h0 * s) <= 1, `${d.path}: thumbnail ${d.w}×${d.h}, file ${w0}×${h0}`);
    }
    // A file name that is markup is shown as text (and its "onerror" never runs).
    const markup = await inPage<{ names: string[]; title: string; stray: number }>(page, `({ names: [...document.querySelectorAll("#results .hit .name")].map((n) => n.textContent), title: document.title, stray: document.querySelectorAll("#results img:not(.thumb)").length })`);
    assert.ok(markup.names.includes(MARKUP_NAME), "the markup file name is shown as text");
    assert.equal(markup.stray, 0, "no element was made from a file name");
    assert.notEqual(markup.title, "pwned");
    await page.screenshot({ path: join(shots, "desktop-search.png"), fullPage: true });
  });

  it("keyboard and labels: every control named, tab order, one tab stop for the grid, arrow keys, Enter opens a result (larger view, path), Esc closes and focus returns", async () => {
    await open(page);
    await page.fill("#q", "a gradient");
    await page.press("#q", "Enter");
    const hits = await shownHits(page, INDEXED);
    // Every control has an accessible name: a <label>, aria-label(ledby) or its own text.
    const unnamed = await inPage<string[]>(page, `[...document.querySelectorAll("input, textarea, button, a, select, [role=dialog], dialog")].filter((e) => {
      const named = (e.labels && e.labels.length > 0) || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby") || (e.tagName !== "INPUT" && e.tagName !== "TEXTAREA" && e.textContent.trim() !== "");
      return !named;
    }).map((e) => e.outerHTML.slice(0, 80))`);
    assert.deepEqual(unnamed, [], "controls without an accessible name");
    await page.focus("#nav-search");
    const order: string[] = [];
    for (let i = 0; i < 5; i++) {
      await page.keyboard.press("Tab");
      order.push(await inPage<string>(page, `document.activeElement.id || document.activeElement.dataset.rank || document.activeElement.tagName`));
    }
    assert.deepEqual(order, ["nav-zero-shot", "q", "search-button", "image-button", "1"], "tab order: pages, box, buttons, then the grid (one stop)");
    await page.keyboard.press("ArrowRight");
    assert.equal(await focusedRank(page), "2");
    await page.keyboard.press("End");
    assert.equal(await focusedRank(page), String(INDEXED));
    await page.keyboard.press("Home");
    await page.keyboard.press("ArrowRight");
    await page.keyboard.press("Enter");
    await until(page, `document.getElementById("viewer").open && document.getElementById("viewer-img").dataset.size === "1024" && document.getElementById("viewer-img").complete`);
    const v = await inPage<{ path: string; cosine: string; rank: string; w: number; h: number }>(page, `({
      path: document.getElementById("viewer-path").textContent,
      cosine: document.getElementById("viewer-cosine").textContent,
      rank: document.getElementById("viewer-rank").textContent,
      w: document.getElementById("viewer-img").naturalWidth,
      h: document.getElementById("viewer-img").naturalHeight,
    })`);
    assert.equal(v.path, hits[1]!.path, "the viewer shows the second result's path");
    assert.equal(v.rank, "2");
    assert.equal(v.cosine, Number(hits[1]!.cosine).toFixed(4));
    const m = await sharp(hits[1]!.path).metadata();
    const s = Math.min(1, 1024 / Math.max(m.width!, m.height!));
    assert.deepEqual([v.w, v.h], [Math.round(m.width! * s), Math.round(m.height! * s)], "the larger view: the file itself, at most 1024 px, never enlarged");
    await page.screenshot({ path: join(shots, "result.png") });
    await page.keyboard.press("Escape");
    await until(page, `!document.getElementById("viewer").open`);
    assert.equal(await focusedRank(page), "2", "focus back on the result");
  });

  it("image → image search: a dropped file, a chosen file and a pasted image each find themselves first (cosine 1), cosines equal the JSON API's, no probability", async () => {
    await open(page);
    const cases: Array<{ file: string; how: "drop" | "input" | "paste" }> = [
      { file: "photo_200x300.png", how: "drop" },
      { file: "rgb_64x64.png", how: "input" },
      { file: "grad_224x224.png", how: "paste" },
    ];
    for (const { file, how } of cases) {
      if (how === "input") {
        await page.setInputFiles("#image-file", join(IMAGES, file));
      } else {
        await inPage(page, `(() => {
          const bytes = Uint8Array.from(atob(args.b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], args.name, { type: "image/png" }));
          const target = document.getElementById("page-search");
          if (args.how === "drop") {
            target.dispatchEvent(new DragEvent("dragover", { bubbles: true, cancelable: true, dataTransfer: dt }));
            target.dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: dt }));
          } else {
            document.dispatchEvent(new ClipboardEvent("paste", { bubbles: true, cancelable: true, clipboardData: dt }));
          }
        })()`, { b64: readFileSync(join(IMAGES, file)).toString("base64"), name: file, how });
      }
      await until(page, `document.getElementById("search-status").textContent.includes("like " + args)`, file);
      const shown = await shownHits(page, INDEXED);
      const want = await api<{ data: ApiHit[] }>("/v1/search", { image: dataUrl(file), k: 24 });
      assert.deepEqual(shown, asShown(want.data), `${how} ${file}: grid vs POST /v1/search`);
      assert.equal(shown[0]!.path, join(photos, file), `${how} ${file}: the indexed copy comes first`);
      assert.ok(Math.abs(Number(shown[0]!.cosine) - 1) < 1e-5, `${how} ${file}: cosine with itself ${shown[0]!.cosine}`);
      assert.ok(shown.every((h) => h.probability === undefined), "image queries have no probability");
      assert.equal(await page.textContent("#query-name"), file, "the query image is named");
    }
  });

  it("zero-shot page: labels + an image give the JSON API's scores, in its order", async () => {
    await open(page, url, "#zero-shot");
    assert.equal(await page.isVisible("#page-search"), false);
    const labels = ["un chat", "ein Hund", "a colour gradient", "закат над морем"];
    await page.fill("#zs-labels", labels.join("\n"));
    await page.setInputFiles("#zs-file", join(IMAGES, "grad_224x224.png"));
    await page.click("#zs-form button[type=submit]");
    await page.waitForSelector("#zs-table tbody tr");
    const rows = await inPage<unknown[]>(page, `[...document.querySelectorAll("#zs-table tbody tr")].map((t) => ({ label: t.dataset.label, probability: t.dataset.probability, logit: t.dataset.logit }))`);
    const want = await api<{ data: Array<{ scores: Array<{ label: string; probability: number; logit: number }> }> }>("/v1/classify", { images: [dataUrl("grad_224x224.png")], labels });
    assert.deepEqual(rows, want.data[0]!.scores.map((s) => ({ label: s.label, probability: String(s.probability), logit: String(s.logit) })));
    await page.screenshot({ path: join(shots, "zero-shot.png"), fullPage: true });
  });

  it("phone width (375 px): no horizontal scroll on the search grid, the viewer and the zero-shot page", async () => {
    const phone = await browser.newPage();
    watch(phone);
    try {
      await phone.setViewportSize({ width: 375, height: 812 });
      await open(phone);
      await phone.fill("#q", "a long query that would overflow a narrow screen if the layout did not wrap it properly");
      await phone.press("#q", "Enter");
      await shownHits(phone, INDEXED);
      await noHorizontalScroll(phone, "search");
      const cols = await inPage<number>(phone, `getComputedStyle(document.getElementById("results")).gridTemplateColumns.split(" ").length`);
      assert.equal(cols, 2, "two columns of results on a phone");
      await phone.screenshot({ path: join(shots, "phone.png"), fullPage: true });
      await phone.click("#results .hit");
      await until(phone, `document.getElementById("viewer").open`);
      const box = await inPage<number>(phone, `document.getElementById("viewer").getBoundingClientRect().right`);
      assert.ok(box <= 375, `the viewer ends at ${box} px`);
      await phone.keyboard.press("Escape");
      await open(phone, url, "#zero-shot");
      await noHorizontalScroll(phone, "zero-shot");
    } finally {
      await phone.close();
    }
  });

  it("with an API key: the page loads, asks for the key on 401, and then searches and loads thumbnails with it", async () => {
    const p = await browser.newPage();
    watch(p);
    try {
      await open(p, keyedUrl);
      await p.waitForSelector("#key-form", { state: "visible" });
      await p.fill("#key", "wrong");
      await p.press("#key", "Enter");
      await p.fill("#q", "a cat");
      await p.press("#q", "Enter");
      await until(p, `/API key.*invalid API key/.test(document.getElementById("search-status").textContent)`);
      await p.fill("#key", KEY);
      await p.press("#key", "Enter");
      await p.press("#q", "Enter");
      const shown = await shownHits(p, INDEXED);
      const want = await api<{ data: ApiHit[] }>("/v1/search", { query: "a cat", k: 24 });
      assert.deepEqual(shown, asShown(want.data));
      const noKey = await fetch(`${keyedUrl}/v1/thumbnails?path=${encodeURIComponent(shown[0]!.path)}`);
      assert.equal(noKey.status, 401, "thumbnails need the key");
      const page200 = await fetch(`${keyedUrl}/`);
      assert.equal(page200.status, 200, "the page itself is open");
    } finally {
      await p.close();
    }
  });

  it("thumbnails over HTTP: WebP, ETag and 304, private caching, the cache serves repeats, the page's CSP", async () => {
    const path = join(photos, "photo_200x300.png");
    const u = `${url}/v1/thumbnails?path=${encodeURIComponent(path)}&size=1024`;
    const r1 = await fetch(u);
    assert.equal(r1.status, 200);
    assert.equal(r1.headers.get("content-type"), "image/webp");
    assert.equal(r1.headers.get("cache-control"), "private, max-age=300");
    const etag = r1.headers.get("etag")!;
    const m = await sharp(Buffer.from(await r1.arrayBuffer())).metadata();
    const file = await sharp(path).metadata();
    assert.deepEqual([m.format, m.width, m.height], ["webp", file.width, file.height], "1024 asked, the file is smaller: not enlarged");
    const r2 = await fetch(u, { headers: { "if-none-match": etag } });
    assert.equal(r2.status, 304);
    const before = (await (await fetch(`${url}/v1/index`)).json()) as { thumbnails: { hits: number } };
    assert.equal((await fetch(u)).status, 200);
    const afterIt = (await (await fetch(`${url}/v1/index`)).json()) as { images: number; thumbnails: { hits: number } };
    assert.equal(afterIt.thumbnails.hits, before.thumbnails.hits + 1, "a repeat is served from the cache");
    assert.equal(afterIt.images, INDEXED);
    const html = await fetch(`${url}/`);
    assert.match(html.headers.get("content-security-policy") ?? "", /script-src 'self'/);
    assert.match(await html.text(), /<script type="module" src="\/ui\/app.js">/);
    assert.equal((await fetch(`${url}/ui/app.js`)).headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal((await fetch(`${url}/ui/..%2Fassets.js`)).status, 404);
  });

  it("the pages logged no script errors and no Content-Security-Policy violations", () => {
    assert.deepEqual(pageErrors, []);
  });
});
