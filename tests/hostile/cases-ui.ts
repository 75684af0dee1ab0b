/**
 * The web UI's thumbnails and files as a hostile or careless client meets them (area
 * "server"): paths that are not in the index (traversal, other absolute paths, relative,
 * encoded, SQL quotes, NUL, very long), bad sizes, and indexed files that changed after
 * indexing (a symbolic link swapped in, content rewritten, deleted, a FIFO or a folder in
 * its place, a stale cache entry or ETag). Every refusal is one JSON line with the exact
 * status; the server stays healthy (a FIFO must not stall it).
 *
 * One server for the file (server-kit.ts): the fixture checkpoint, an API key, and an index of
 * one image per mutating case (each case changes only its own file).
 */
import { copyFileSync, mkdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import sharp from "sharp";
import { SigLIP2 } from "../../src/api.js";
import { embeddingSetup, modelName } from "../../src/search/identity.js";
import { buildIndex, openForIndexing } from "../../src/search/indexer.js";
import type { ImageStore } from "../../src/search/store.js";
import { tempDir } from "../harness/files.js";
import { FIXTURES } from "../harness/paths.js";
import { expectHttpCorrect, expectHttpError, httpRequest, type CaseResult, type HostileCase, type HttpErrorExpectation, type HttpResult } from "./harness.js";
import { listen, sharedServer, thenHealthy, type Served } from "./server-kit.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const IMAGES = join(FIXTURES, "images");
const KEY = "ui-hostile-key";
const AUTH = { authorization: `Bearer ${KEY}` };
/** One indexed file per case that changes it, plus `keep.png` that nothing changes. */
const FILES = ["keep", "swap-link", "rewrite", "delete", "fifo", "folder", "cached-delete", "etag-rewrite", "link-at-index", "café's ü [1]"];

interface UiServed extends Served {
  photos: string;
}

const server = sharedServer(async (): Promise<UiServed> => {
  const model = await SigLIP2.load(F32);
  const root = tempDir("siglip2-ui-hostile-");
  const photos = join(root, "photos");
  mkdirSync(photos);
  for (const f of FILES) if (f !== "link-at-index") copyFileSync(join(IMAGES, "rgb_64x64.png"), join(photos, `${f}.png`));
  copyFileSync(join(IMAGES, "grad_224x224.png"), join(root, "outside.png"));
  symlinkSync(join(root, "outside.png"), join(photos, "link-at-index.png")); // a link when indexed: the walker follows it
  // Noise does not compress: a PNG of about 6.8 MB, read and hashed in two chunks.
  const noise = Buffer.alloc(1500 * 1500 * 3);
  for (let i = 0, x = 12345; i < noise.length; i++) noise[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  await sharp(noise, { raw: { width: 1500, height: 1500, channels: 3 } }).png({ compressionLevel: 1 }).toFile(join(photos, "big-noise.png"));
  const store: ImageStore = await openForIndexing(join(root, "db"), "images", await embeddingSetup(model, modelName(F32)));
  await buildIndex(model, store, [photos]);
  const s = await listen(model, { apiKey: KEY, store });
  return { ...s, photos, onClose: () => { store.close(); rmSync(root, { recursive: true, force: true }); } };
});

const thumbUrl = (base: string, path: string, size?: string) => `${base}/v1/thumbnails?${new URLSearchParams({ path, ...(size !== undefined ? { size } : {}) }).toString()}`;

/** GET a thumbnail of `path(photos)` (after `prepare`, with the key), judge it, then /health. */
function thumb(path: (photos: string) => string, judge: (r: HttpResult) => CaseResult, opts: { size?: string; prepare?: (s: UiServed) => Promise<void> | void; headers?: Record<string, string> } = {}): () => Promise<CaseResult> {
  return () => server.use(async (s) => {
    const u = s as UiServed;
    await opts.prepare?.(u);
    const r = await httpRequest(thumbUrl(u.url, path(u.photos), opts.size), { headers: opts.headers ?? AUTH, timeoutMs: 5000 });
    return thenHealthy(u.url, judge(r));
  });
}
const notIndexed = (path: (photos: string) => string, e: Partial<HttpErrorExpectation> = {}) => thumb(path, (r) => expectHttpError(r, { status: 404, mentions: ["not in the index"], param: "path", ...e }));
const changed = (file: string, prepare: (p: string) => Promise<void> | void, warmFirst = false) => thumb((p) => join(p, file), (r) => expectHttpError(r, { status: 404, mentions: [file, "since it was indexed"], param: "path" }), {
  prepare: async (s) => {
    if (warmFirst) {
      const w = await httpRequest(thumbUrl(s.url, join(s.photos, file)), { headers: AUTH });
      if (w.status !== 200) throw new Error(`warming ${file}: HTTP ${w.status}`);
    }
    await prepare(join(s.photos, file));
  },
});

export const cases: HostileCase[] = [
  { id: "ui-thumb-dotdot-to-indexed", area: "server", expect: "clean-error", run: notIndexed((p) => `${p}/../photos/keep.png`) },
  { id: "ui-thumb-etc-passwd", area: "server", expect: "clean-error", run: notIndexed(() => "/etc/passwd") },
  { id: "ui-thumb-relative-path", area: "server", expect: "clean-error", run: notIndexed(() => "keep.png") },
  { id: "ui-thumb-dotdot-relative", area: "server", expect: "clean-error", run: notIndexed(() => "../../../../etc/shadow") },
  { id: "ui-thumb-outside-target-of-link", area: "server", expect: "clean-error", run: notIndexed((p) => join(p, "..", "outside.png")) },
  { id: "ui-thumb-sql-quotes", area: "server", expect: "clean-error", run: notIndexed((p) => `${p}/keep.png' OR '1'='1`) },
  { id: "ui-thumb-trailing-slash", area: "server", expect: "clean-error", run: notIndexed((p) => `${p}/keep.png/`) },
  { id: "ui-thumb-nul-byte", area: "server", expect: "clean-error", run: notIndexed((p) => `${p}/keep.png\u0000.jpg`) },
  { id: "ui-thumb-index-folder", area: "server", expect: "clean-error", run: notIndexed((p) => p) },
  { id: "ui-thumb-path-too-long", area: "server", expect: "clean-error", run: thumb(() => `/${"a".repeat(5000)}`, (r) => expectHttpError(r, { status: 400, mentions: ["5001 characters"], param: "path" })) },
  {
    id: "ui-thumb-no-path", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpError(await httpRequest(`${s.url}/v1/thumbnails`, { headers: AUTH }), { status: 400, mentions: ["missing \"path\""], param: "path" }))),
  },
  {
    id: "ui-thumb-path-twice", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpError(await httpRequest(`${s.url}/v1/thumbnails?path=/a&path=/b`, { headers: AUTH }), { status: 400, mentions: ["once"], param: "path" }))),
  },
  { id: "ui-thumb-size-999", area: "server", expect: "clean-error", run: thumb((p) => join(p, "keep.png"), (r) => expectHttpError(r, { status: 400, mentions: ["256, 1024", "999"], param: "size" }), { size: "999" }) },
  { id: "ui-thumb-size-exponent", area: "server", expect: "clean-error", run: thumb((p) => join(p, "keep.png"), (r) => expectHttpError(r, { status: 400, mentions: ["1e3"], param: "size" }), { size: "1e3" }) },
  { id: "ui-thumb-size-negative", area: "server", expect: "clean-error", run: thumb((p) => join(p, "keep.png"), (r) => expectHttpError(r, { status: 400, param: "size" }), { size: "-256" }) },
  { id: "ui-thumb-without-key", area: "server", expect: "clean-error", run: thumb((p) => join(p, "keep.png"), (r) => expectHttpError(r, { status: 401, mentions: ["API key"] }), { headers: {} }) },
  {
    id: "ui-thumb-indexed-file", area: "server", expect: "correct",
    run: thumb((p) => join(p, "keep.png"), (r) => expectHttpCorrect(r, () => (r.headers.get("content-type") === "image/webp" && r.headers.get("etag") ? null : `content-type ${r.headers.get("content-type")}, etag ${r.headers.get("etag")}`))),
  },
  {
    id: "ui-thumb-indexed-symlink", area: "server", expect: "correct",
    run: thumb((p) => join(p, "link-at-index.png"), (r) => expectHttpCorrect(r, () => (r.headers.get("content-type") === "image/webp" ? null : `content-type ${r.headers.get("content-type")}`))),
  },
  {
    id: "ui-thumb-quote-in-indexed-name", area: "server", expect: "correct",
    run: thumb((p) => join(p, "café's ü [1].png"), (r) => expectHttpCorrect(r, () => (r.headers.get("content-type") === "image/webp" ? null : `content-type ${r.headers.get("content-type")}`))),
  },
  { id: "ui-thumb-backslash-escape", area: "server", expect: "clean-error", run: notIndexed((p) => `${p}/keep.png\\' OR 1=1 --`) },
  { id: "ui-thumb-newline-and-percent", area: "server", expect: "clean-error", run: notIndexed((p) => `${p}/keep.png\n%_*`) },
  { id: "ui-thumb-long-path-message", area: "server", expect: "clean-error", run: notIndexed((p) => `${p}/${"x/".repeat(1500)}keep.png`) },
  {
    id: "ui-thumb-big-file", area: "server", expect: "correct",
    run: thumb((p) => join(p, "big-noise.png"), (r) => expectHttpCorrect(r, () => (r.headers.get("content-type") === "image/webp" ? null : `content-type ${r.headers.get("content-type")}`)), { size: "1024" }),
  },
  { id: "ui-thumb-symlink-swapped-in", area: "server", expect: "clean-error", run: changed("swap-link.png", (f) => { unlinkSync(f); symlinkSync("/etc/passwd", f); }) },
  { id: "ui-thumb-rewritten-after-index", area: "server", expect: "clean-error", run: changed("rewrite.png", (f) => copyFileSync(join(IMAGES, "grad_224x224.png"), f)) },
  { id: "ui-thumb-deleted-after-index", area: "server", expect: "clean-error", run: changed("delete.png", (f) => unlinkSync(f)) },
  { id: "ui-thumb-fifo-swapped-in", area: "server", expect: "clean-error", run: changed("fifo.png", (f) => { unlinkSync(f); execFileSync("mkfifo", [f]); }) },
  { id: "ui-thumb-folder-swapped-in", area: "server", expect: "clean-error", run: changed("folder.png", (f) => { unlinkSync(f); mkdirSync(f); }) },
  { id: "ui-thumb-cached-then-deleted", area: "server", expect: "clean-error", run: changed("cached-delete.png", (f) => unlinkSync(f), true) },
  {
    id: "ui-thumb-old-etag-after-rewrite", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => {
      const u = s as UiServed;
      const url = thumbUrl(u.url, join(u.photos, "etag-rewrite.png"));
      const first = await httpRequest(url, { headers: AUTH });
      const etag = first.headers.get("etag");
      if (first.status !== 200 || !etag) return { outcome: "garbage", detail: `first GET: HTTP ${first.status}, etag ${etag}` };
      // Same length, other bytes (and a new mtime): a 304 would keep showing bytes that are gone.
      const bytes = await sharp({ create: { width: 64, height: 64, channels: 3, background: "#808080" } }).png().toBuffer();
      writeFileSync(join(u.photos, "etag-rewrite.png"), bytes);
      const r = await httpRequest(url, { headers: { ...AUTH, "if-none-match": etag } });
      return thenHealthy(u.url, expectHttpError(r, { status: 404, mentions: ["since it was indexed"] }));
    }),
  },
  {
    id: "ui-asset-traversal", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpError(await httpRequest(`${s.url}/ui/..%2F..%2F..%2Fpackage.json`), { status: 404, mentions: ["no UI file"] }))),
  },
  {
    id: "ui-page-without-key", area: "server", expect: "correct",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpCorrect(await httpRequest(`${s.url}/`), (_b, r) => (/<html/.test(r.text) && /script-src 'self'/.test(r.headers.get("content-security-policy") ?? "") ? null : "not the page, or no CSP")))),
  },
];
