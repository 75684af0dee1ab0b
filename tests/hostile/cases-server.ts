/**
 * The server as a hostile or careless HTTP client meets it (area "server"): bodies that are
 * not JSON objects, wrong field types, OpenAI client habits (null for unset fields, base64,
 * 2048 inputs, token ids), bad images, bad tokens, slow and oversized bodies, CORS. Every
 * case asserts the exact status and a one-line JSON error naming the field (or the exact
 * result), and then that GET /health still answers.
 *
 * One server for the whole file (see server-kit.ts): the tiny fixture checkpoint, an API key,
 * CORS for one origin, a 1 MiB body limit, a 1.5 s body timeout and an index of 4 images.
 */
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { SigLIP2 } from "../../src/api.js";
import { embeddingSetup, modelName } from "../../src/search/identity.js";
import { buildIndex, openForIndexing } from "../../src/search/indexer.js";
import type { ImageStore } from "../../src/search/store.js";
import { tempDir } from "../harness/files.js";
import { FIXTURES } from "../harness/paths.js";
import { expectHttpCorrect, expectHttpError, httpRequest, type CaseResult, type HostileCase, type HttpErrorExpectation, type HttpResult } from "./harness.js";
import { listen, postJson, sharedServer, thenHealthy, type Served } from "./server-kit.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const IMAGES = join(FIXTURES, "images");
const KEY = "hostile-key";
const AUTH = { authorization: `Bearer ${KEY}` };
const ORIGIN = "https://app.example";
const D = 32;

const server = sharedServer(async (): Promise<Served> => {
  const model = await SigLIP2.load(F32);
  const dir = join(tempDir(), "photos");
  mkdirSync(dir);
  for (const f of ["rgb_64x64.png", "grad_224x224.png", "photo_48x64.jpg", "bw_9x14.png"]) copyFileSync(join(IMAGES, f), join(dir, f));
  const store: ImageStore = await openForIndexing(join(tempDir(), "db"), "images", await embeddingSetup(model, modelName(F32)));
  await buildIndex(model, store, [dir]);
  const s = await listen(model, { apiKey: KEY, cors: ORIGIN, bodyLimit: 1024 * 1024, bodyTimeoutMs: 1500, store });
  return { ...s, onClose: () => store.close() };
});

const dataUrl = (file: string, mime = "image/png") => `data:${mime};base64,${readFileSync(join(IMAGES, file)).toString("base64")}`;
const imageItem = (url: string) => ({ type: "image_url", image_url: { url } });

/** POST to the shared server (with the key unless `headers` says otherwise), then check, then /health. */
function post(path: string, body: unknown, judge: (r: HttpResult) => CaseResult, headers: Record<string, string> = AUTH): () => Promise<CaseResult> {
  return () => server.use(async (s) => thenHealthy(s.url, judge(await postJson(s.url + path, body, headers))));
}
const err = (path: string, body: unknown, e: HttpErrorExpectation, headers?: Record<string, string>) => post(path, body, (r) => expectHttpError(r, e), headers);
const raw = (init: RequestInit, judge: (r: HttpResult) => CaseResult, path = "/v1/embeddings") => () =>
  server.use(async (s) => thenHealthy(s.url, judge(await httpRequest(s.url + path, { method: "POST", ...init, headers: { ...AUTH, ...(init.headers as Record<string, string>) } }))));

/** Every embedding present, in order, finite, `D` long and unit length. */
function embeddings(n: number): (b: any) => string | null {
  return (b) => {
    if (b?.object !== "list" || !Array.isArray(b.data) || b.data.length !== n) return `expected ${n} embeddings, got ${b?.data?.length}`;
    for (let i = 0; i < n; i++) {
      const d = b.data[i];
      if (d.index !== i || d.object !== "embedding") return `data[${i}] has index ${d.index}`;
      const e = d.embedding as number[];
      if (!Array.isArray(e) || e.length !== D) return `data[${i}] is not a ${D}-d vector`;
      const norm = Math.hypot(...e);
      if (Math.abs(norm - 1) > 1e-4) return `data[${i}] has norm ${norm}`;
    }
    return null;
  };
}

/** A raw HTTP/1.1 exchange on a socket: send `head` and `bodyStart`, then nothing; resolve with what came back. */
function slowBody(url: string, head: string, bodyStart: string, limitMs: number): Promise<HttpResult> {
  const u = new URL(url);
  const t0 = performance.now();
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    let data = "";
    let done = false;
    const finish = (timedOut: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      const text = data.includes("\r\n\r\n") ? data.slice(data.indexOf("\r\n\r\n") + 4) : "";
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      resolve({ status: m ? Number(m[1]) : 0, headers: new Headers(), text, json, timedOut: timedOut && !m, ms: performance.now() - t0, ...(m ? {} : { error: "no HTTP response" }) });
    };
    const timer = setTimeout(() => finish(true), limitMs);
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => (data += d));
    sock.on("end", () => finish(false));
    sock.on("close", () => finish(false));
    sock.on("error", () => finish(false));
    sock.write(head + bodyStart);
  });
}

export const cases: HostileCase[] = [
  // ---------------------------------------------------------------- bodies that are not JSON objects
  { id: "server-malformed-json", area: "server", expect: "clean-error", run: raw({ headers: { "content-type": "application/json" }, body: '{"input": "a cat",' }, (r) => expectHttpError(r, { status: 400, mentions: ["not valid JSON"] })) },
  { id: "server-empty-json-body", area: "server", expect: "clean-error", run: raw({ headers: { "content-type": "application/json" }, body: "" }, (r) => expectHttpError(r, { status: 400, mentions: ["empty"] })) },
  { id: "server-body-json-array", area: "server", expect: "clean-error", run: err("/v1/embeddings", '["a cat"]', { status: 400, mentions: ["JSON object", "an array"] }) },
  { id: "server-body-json-number", area: "server", expect: "clean-error", run: err("/v1/embeddings", "42", { status: 400, mentions: ["JSON object", "42"] }) },
  { id: "server-body-json-string", area: "server", expect: "clean-error", run: err("/v1/embeddings", '"a cat"', { status: 400, mentions: ["JSON object"] }) },
  // JSON.parse would spend seconds of event loop on these (about 4 µs a nesting level, and worse
  // than linear in the keys of one object): refused before parsing.
  {
    id: "server-deeply-nested-field", area: "server", expect: "clean-error",
    run: err("/v1/embeddings", `{"input": "x", "encoding_format": ${"[".repeat(500_000)}${"]".repeat(500_000)}}`, { status: 400, mentions: ["more than 32 levels deep"] }),
  },
  {
    id: "server-deeply-nested-input", area: "server", expect: "clean-error",
    run: err("/v1/embeddings", `{"input": ${"[{\"a\":".repeat(100_000)}1${"}]".repeat(100_000)}}`, { status: 400, mentions: ["more than 32 levels deep"] }),
  },
  { id: "server-nested-33-levels", area: "server", expect: "clean-error", run: err("/v1/embeddings", `{"input": "x", "user": ${"[".repeat(32)}${"]".repeat(32)}}`, { status: 400, mentions: ["levels deep"] }) },
  { id: "server-nested-inside-string", area: "server", expect: "correct", run: post("/v1/embeddings", { input: ["[".repeat(100_000) + '\\"{'.repeat(1000)] }, (r) => expectHttpCorrect(r, embeddings(1))) },
  {
    id: "server-object-with-many-keys", area: "server", expect: "clean-error",
    run: err("/v1/embeddings", `{"input": "x", ${Array.from({ length: 80_000 }, (_, i) => `"k${i}": 1`).join(", ")}}`, { status: 400, mentions: ["more than 256 keys"] }),
  },
  { id: "server-many-tiny-objects", area: "server", expect: "clean-error", run: err("/v1/embeddings", `{"input": [${Array.from({ length: 250_000 }, () => "{}").join(",")}]}`, { status: 413, mentions: ["arrays and objects"] }) },
  {
    id: "server-2048-text-items", area: "server", expect: "correct", timeoutMs: 60_000,
    run: post("/v1/embeddings", { input: Array.from({ length: 2048 }, (_, i) => ({ type: "text", text: `item ${i}` })) }, (r) => expectHttpCorrect(r, embeddings(2048))),
  },
  { id: "server-text-plain-body", area: "server", expect: "clean-error", run: raw({ headers: { "content-type": "text/plain" }, body: '{"input": "a cat"}' }, (r) => expectHttpError(r, { status: 415, mentions: ["text/plain", "application/json"] })) },
  { id: "server-form-body", area: "server", expect: "clean-error", run: raw({ headers: { "content-type": "application/x-www-form-urlencoded" }, body: "input=a+cat" }, (r) => expectHttpError(r, { status: 415, mentions: ["x-www-form-urlencoded"] })) },
  { id: "server-gzip-body", area: "server", expect: "clean-error", run: raw({ headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: '{"input": "a cat"}' }, (r) => expectHttpError(r, { status: 415, mentions: ["Content-Encoding", "gzip"] })) },
  { id: "server-json-with-bom", area: "server", expect: "correct", run: raw({ headers: { "content-type": "application/json" }, body: '\ufeff{"input": "a cat"}' }, (r) => expectHttpCorrect(r, embeddings(1))) },
  {
    id: "server-post-without-body", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpError(await httpRequest(`${s.url}/v1/embeddings`, { method: "POST", headers: AUTH }), { status: 400, mentions: ["no body"] }))),
  },
  {
    id: "server-bad-url-escape", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpError(await httpRequest(`${s.url}/v1/models/%E0%A4%A`, { headers: AUTH }), { status: 400, mentions: ["bad request URL"] }))),
  },
  {
    id: "server-malformed-http", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpError(await slowBody(s.url, "NOT-HTTP /\r\n\r\n", "", 8000), { status: 400, mentions: ["malformed HTTP request"] }))),
  },
  {
    id: "server-header-too-large", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpError(await slowBody(s.url, `GET /health HTTP/1.1\r\nHost: x\r\nX-Junk: ${"a".repeat(40_000)}\r\n\r\n`, "", 8000), { status: 431, mentions: ["headers are too large"] }))),
  },
  { id: "server-proto-key", area: "server", expect: "correct", run: post("/v1/embeddings", '{"input": ["a cat"], "__proto__": {"polluted": 1}, "constructor": {"prototype": {"x": 1}}}', (r) => expectHttpCorrect(r, (b) => embeddings(1)(b) ?? (({} as Record<string, unknown>)["polluted"] !== undefined ? "Object.prototype polluted" : null))) },

  // ---------------------------------------------------------------- input
  { id: "server-missing-input", area: "server", expect: "clean-error", run: err("/v1/embeddings", { model: "x" }, { status: 400, mentions: ['"input"'], param: "input" }) },
  { id: "server-input-null", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: null }, { status: 400, mentions: ['"input"'], param: "input" }) },
  { id: "server-input-number", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: 42 }, { status: 400, mentions: ['"input"', "42"], param: "input" }) },
  { id: "server-input-object", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: { text: "a cat" } }, { status: 400, mentions: ['"input"', "object"], param: "input" }) },
  { id: "server-input-empty-array", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [] }, { status: 400, mentions: ["empty"], param: "input" }) },
  { id: "server-token-ids-flat", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [1820, 374, 264] }, { status: 400, mentions: ["token-id", "strings"], param: "input[0]" }) },
  { id: "server-token-ids-nested", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: ["a cat", [1820, 374]] }, { status: 400, mentions: ["input[1]", "token-id"], param: "input[1]" }) },
  { id: "server-input-boolean-item", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: ["a cat", "a dog", true] }, { status: 400, mentions: ["input[2]", "true"], param: "input[2]" }) },
  { id: "server-text-item-without-text", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [{ type: "text", text: 7 }] }, { status: 400, mentions: ["input[0]", '"text"'], param: "input[0]" }) },
  { id: "server-2049-inputs", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: Array.from({ length: 2049 }, () => "") }, { status: 413, mentions: ["2049", "at most 2048"], param: "input" }) },
  { id: "server-200k-tiny-inputs", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: Array.from({ length: 200_000 }, () => "") }, { status: 413, mentions: ["200000", "at most 2048"], param: "input" }) },
  { id: "server-2048-inputs", area: "server", expect: "correct", timeoutMs: 60_000, run: post("/v1/embeddings", { input: Array.from({ length: 2048 }, (_, i) => `caption ${i}`) }, (r) => expectHttpCorrect(r, embeddings(2048))) },
  { id: "server-empty-string", area: "server", expect: "correct", run: post("/v1/embeddings", { input: ["", "a cat"] }, (r) => expectHttpCorrect(r, embeddings(2))) },
  {
    id: "server-long-text-one-char", area: "server", expect: "correct",
    run: post("/v1/embeddings", { input: ["a".repeat(1_000_000)] }, (r) => expectHttpCorrect(r, (b) => embeddings(1)(b) ?? (b.usage?.truncated_inputs === 1 && b.usage?.prompt_tokens === 64 ? null : `usage ${JSON.stringify(b.usage)}`))),
  },
  {
    id: "server-truncate-false-too-long", area: "server", expect: "clean-error",
    run: err("/v1/embeddings", { input: ["a short one", "word ".repeat(200)], truncate: false }, { status: 400, mentions: ["input[1]", "63-token"], param: "input[1]" }),
  },
  {
    id: "server-truncated-inputs-counted", area: "server", expect: "correct",
    run: post("/v1/embeddings", { input: ["word ".repeat(200), "short", "x".repeat(5000)] }, (r) => expectHttpCorrect(r, (b) => (b.usage?.truncated_inputs === 2 ? embeddings(3)(b) : `usage ${JSON.stringify(b.usage)}`))),
  },
  { id: "server-truncate-not-boolean", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x", truncate: "no" }, { status: 400, mentions: ['"truncate"'], param: "truncate" }) },

  // ---------------------------------------------------------------- the other fields, as clients send them
  {
    id: "server-null-optional-fields", area: "server", expect: "correct",
    run: post("/v1/embeddings", { input: ["a cat"], model: null, encoding_format: null, dimensions: null, user: null, truncate: null }, (r) => expectHttpCorrect(r, embeddings(1))),
  },
  {
    id: "server-python-client-request", area: "server", expect: "correct",
    run: post("/v1/embeddings", { input: ["a cat", "a dog"], model: "text-embedding-3-small", encoding_format: "base64", dimensions: null, user: "u-1" }, (r) =>
      expectHttpCorrect(r, (b) => {
        for (const d of b.data ?? []) {
          const buf = Buffer.from(d.embedding as string, "base64");
          if (buf.length !== 4 * D) return `base64 embedding of ${buf.length} bytes`;
          let n = 0;
          for (let i = 0; i < D; i++) n += buf.readFloatLE(4 * i) ** 2;
          if (Math.abs(Math.sqrt(n) - 1) > 1e-4) return `norm ${Math.sqrt(n)}`;
        }
        return b.data?.length === 2 ? (b.model === F32 ? null : `model ${b.model}`) : "2 embeddings expected";
      })),
  },
  { id: "server-model-not-string", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x", model: 3 }, { status: 400, mentions: ['"model"'], param: "model" }) },
  { id: "server-user-not-string", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x", user: { id: 1 } }, { status: 400, mentions: ['"user"'], param: "user" }) },
  { id: "server-bad-encoding-format", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x", encoding_format: "int8" }, { status: 400, mentions: ["encoding_format", "int8"], param: "encoding_format" }) },
  { id: "server-dimensions-zero", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x", dimensions: 0 }, { status: 400, mentions: ["dimensions", "positive integer"], param: "dimensions" }) },
  { id: "server-dimensions-negative", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x", dimensions: -32 }, { status: 400, mentions: ["dimensions", "-32"], param: "dimensions" }) },
  { id: "server-dimensions-fractional", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x", dimensions: 31.5 }, { status: 400, mentions: ["dimensions", "31.5"], param: "dimensions" }) },
  { id: "server-dimensions-too-large", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x", dimensions: 1536 }, { status: 400, mentions: ["1536", `${D}-dimensional`], param: "dimensions" }) },
  { id: "server-dimensions-string", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x", dimensions: "32" }, { status: 400, mentions: ["dimensions"], param: "dimensions" }) },
  { id: "server-dimensions-huge-number", area: "server", expect: "clean-error", run: err("/v1/embeddings", '{"input": "x", "dimensions": 1e400}', { status: 400, mentions: ["dimensions", "Infinity"], param: "dimensions" }) },
  { id: "server-dimensions-equal", area: "server", expect: "correct", run: post("/v1/embeddings", { input: "x", dimensions: D }, (r) => expectHttpCorrect(r, embeddings(1))) },

  // ---------------------------------------------------------------- images
  { id: "server-image-not-an-image", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: ["ok", imageItem(`data:image/png;base64,${Buffer.from("hello world, not a png").toString("base64")}`)] }, { status: 400, mentions: ["input[1]", "cannot read the image"], param: "input[1]" }) },
  { id: "server-image-truncated-png", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [imageItem(dataUrl("bad_truncated.png"))] }, { status: 400, mentions: ["input[0]", "truncated"], param: "input[0]" }) },
  { id: "server-image-huge-header", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [imageItem(dataUrl("bad_huge.png"))] }, { status: 400, mentions: ["input[0]", "too many pixels"], param: "input[0]" }) },
  { id: "server-image-non-image-mime", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [imageItem(dataUrl("rgb_64x64.png", "text/html"))] }, { status: 400, mentions: ["text/html", "not an image"], param: "input[0].image_url.url" }) },
  { id: "server-image-mislabelled-mime", area: "server", expect: "correct", run: post("/v1/embeddings", { input: [imageItem(dataUrl("rgb_64x64.png", "image/jpeg"))] }, (r) => expectHttpCorrect(r, embeddings(1))) },
  { id: "server-image-bad-base64", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [imageItem("data:image/png;base64,@@not base64@@")] }, { status: 400, mentions: ["not valid base64"], param: "input[0].image_url.url" }) },
  { id: "server-image-not-base64-data-url", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [imageItem("data:image/svg+xml,<svg/>")] }, { status: 400, mentions: ["base64"], param: "input[0].image_url.url" }) },
  { id: "server-image-remote-url", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [imageItem("http://169.254.169.254/latest/meta-data")] }, { status: 400, mentions: ["not fetched"], param: "input[0].image_url.url" }) },
  { id: "server-image-empty", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: [imageItem("data:image/png;base64,")] }, { status: 400, mentions: ["empty"], param: "input[0].image_url.url" }) },

  // ---------------------------------------------------------------- auth, limits, slow clients
  { id: "server-missing-bearer", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x" }, { status: 401, mentions: ["missing API key"] }, {}) },
  { id: "server-wrong-bearer", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x" }, { status: 401, mentions: ["invalid API key"] }, { authorization: `Bearer ${KEY}x` }) },
  { id: "server-basic-auth", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x" }, { status: 401, mentions: ["Bearer"] }, { authorization: `Basic ${Buffer.from(`u:${KEY}`).toString("base64")}` }) },
  { id: "server-key-prefix", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: "x" }, { status: 401, mentions: ["invalid API key"] }, { authorization: `Bearer ${KEY.slice(0, 3)}` }) },
  { id: "server-body-over-limit", area: "server", expect: "clean-error", run: err("/v1/embeddings", { input: ["x".repeat(1_200_000)] }, { status: 413, mentions: ["too large", String(1024 * 1024)] }) },
  {
    id: "server-slow-body", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => {
      const u = new URL(s.url);
      const head = `POST /v1/embeddings HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`;
      return thenHealthy(s.url, expectHttpError(await slowBody(s.url, head, '{"input": "a', 8000), { status: 408, mentions: ["did not arrive within 1500 ms"] }));
    }),
  },
  {
    id: "server-content-length-lies", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => {
      const u = new URL(s.url);
      const body = '{"input": "a cat"}';
      const head = `POST /v1/embeddings HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length + 50}\r\n\r\n`;
      return thenHealthy(s.url, expectHttpError(await slowBody(s.url, head, body, 8000), { status: 408, mentions: ["did not arrive"] }));
    }),
  },

  // ---------------------------------------------------------------- models, CORS, routes
  {
    id: "server-retrieve-model", area: "server", expect: "correct",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpCorrect(await httpRequest(`${s.url}/v1/models/${encodeURIComponent(F32)}`, { headers: AUTH }), (b) => (b.id === F32 && b.object === "model" && typeof b.created === "number" && b.owned_by ? null : JSON.stringify(b))))),
  },
  {
    id: "server-retrieve-unknown-model", area: "server", expect: "clean-error",
    run: () => server.use(async (s) => thenHealthy(s.url, expectHttpError(await httpRequest(`${s.url}/v1/models/text-embedding-3-small`, { headers: AUTH }), { status: 404, mentions: ["text-embedding-3-small", "not served"], param: "model" }))),
  },
  {
    id: "server-cors-preflight", area: "server", expect: "correct",
    run: () => server.use(async (s) => {
      const r = await httpRequest(`${s.url}/v1/embeddings`, { method: "OPTIONS", headers: { origin: ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, x-stainless-os" } });
      return thenHealthy(s.url, expectHttpCorrect(r, (_b, res) => {
        const h = res.headers;
        if (h.get("access-control-allow-origin") !== ORIGIN) return `allow-origin ${h.get("access-control-allow-origin")}`;
        if (!/authorization/.test(h.get("access-control-allow-headers") ?? "")) return `allow-headers ${h.get("access-control-allow-headers")}`;
        return /POST/.test(h.get("access-control-allow-methods") ?? "") ? null : `allow-methods ${h.get("access-control-allow-methods")}`;
      }, 204));
    }),
  },
  {
    id: "server-cors-other-origin", area: "server", expect: "correct",
    run: post("/v1/embeddings", { input: "x" }, (r) => expectHttpCorrect(r, (b, res) => embeddings(1)(b) ?? (res.headers.get("access-control-allow-origin") === null ? null : "another origin was allowed")), { ...AUTH, origin: "https://evil.example" }),
  },
  { id: "server-unknown-route", area: "server", expect: "clean-error", run: err("/v1/completions", { prompt: "x" }, { status: 404, mentions: ["/v1/completions"] }) },

  // ---------------------------------------------------------------- classify and search
  { id: "server-classify-no-placeholder", area: "server", expect: "clean-error", run: err("/v1/classify", { images: [dataUrl("rgb_64x64.png")], labels: ["cat"], template: "a photo" }, { status: 400, mentions: ["placeholder"], param: "template" }) },
  { id: "server-classify-label-number", area: "server", expect: "clean-error", run: err("/v1/classify", { images: [dataUrl("rgb_64x64.png")], labels: ["cat", 7] }, { status: 400, mentions: ["labels[1]"], param: "labels[1]" }) },
  {
    id: "server-classify-null-template", area: "server", expect: "correct",
    run: post("/v1/classify", { images: [dataUrl("rgb_64x64.png")], labels: ["cat", "dog"], template: null, model: null }, (r) =>
      expectHttpCorrect(r, (b) => (b.data?.[0]?.scores?.length === 2 && b.data[0].scores.every((x: any) => x.probability > 0 && x.probability < 1) ? null : JSON.stringify(b).slice(0, 200)))),
  },
  { id: "server-classify-long-label-no-truncate", area: "server", expect: "clean-error", run: err("/v1/classify", { images: [dataUrl("rgb_64x64.png")], labels: ["cat", "very ".repeat(100)], truncate: false }, { status: 400, mentions: ["labels[1]"], param: "labels[1]" }) },
  { id: "server-search-k-zero", area: "server", expect: "clean-error", run: err("/v1/search", { query: "x", k: 0 }, { status: 400, mentions: ['"k"'], param: "k" }) },
  { id: "server-search-k-infinite", area: "server", expect: "clean-error", run: err("/v1/search", '{"query": "x", "k": 1e999}', { status: 400, mentions: ['"k"', "Infinity"], param: "k" }) },
  { id: "server-search-query-and-image", area: "server", expect: "clean-error", run: err("/v1/search", { query: "x", image: dataUrl("rgb_64x64.png") }, { status: 400, mentions: ["exactly one"] }) },
  { id: "server-search-query-not-string", area: "server", expect: "clean-error", run: err("/v1/search", { query: ["x"] }, { status: 400, mentions: ['"query"'], param: "query" }) },
  {
    id: "server-search-null-k", area: "server", expect: "correct",
    run: post("/v1/search", { query: "a red square", k: null, image: null }, (r) => expectHttpCorrect(r, (b) => (b.data?.length === 4 && b.data[0].rank === 1 && typeof b.data[0].probability === "number" ? null : JSON.stringify(b).slice(0, 200)))),
  },
];
