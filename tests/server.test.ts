/**
 * The embedding server over real HTTP on loopback: every endpoint, embeddings equal
 * to the library's and to transformers' goldens, base64 encoding, the error paths
 * (400/401/404/408/413/415/429/500/504), OpenAI client habits (2048 inputs, null fields,
 * models.retrieve), truncation reporting, long texts, CORS, an event loop that keeps
 * answering during a large request, micro-batching across concurrent requests, graceful
 * shutdown with a request in flight, and `siglip2 serve` itself.
 * (tests/hostile/cases-server*.ts try many more bad requests, each with its exact answer.)
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import { SigLIP2 } from "../src/api.js";
import { SiglipError } from "../src/errors.js";
import { embeddingSetup, modelName } from "../src/search/identity.js";
import { buildIndex, openForIndexing } from "../src/search/indexer.js";
import { searchText } from "../src/search/search.js";
import type { ImageStore } from "../src/search/store.js";
import { createServer, type ServerOptions } from "../src/server/app.js";
import { base64ToFloat32, float32ToBase64, jsonShapeProblem } from "../src/server/inputs.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { tempDir } from "./harness/files.js";
import { FIXTURES, REPO } from "./harness/paths.js";
import { loadManifest } from "./harness/parity.js";

const BIN = join(REPO, "dist", "cli", "main.js");
const F32 = join(FIXTURES, "models", "fixres-f32");
const man = loadManifest("fixres-f32");
const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "fixres-f32.safetensors"));
const D = 32;
const imgPath = (i: number) => join(REPO, man.images[i]!);
const dataUrl = (p: string) => `data:image/png;base64,${readFileSync(p).toString("base64")}`;
const imageItem = (p: string) => ({ type: "image_url", image_url: { url: dataUrl(p) } });

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

interface Running {
  app: FastifyInstance;
  url: string;
  post: (path: string, body: unknown, headers?: Record<string, string>) => Promise<{ status: number; body: any; headers: Headers }>;
  get: (path: string, headers?: Record<string, string>) => Promise<{ status: number; body: any }>;
}

async function start(model: SigLIP2, options: ServerOptions = {}): Promise<Running> {
  const app = createServer(model, options);
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const r = await fetch(url + path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: r.status, body: await r.json(), headers: r.headers };
  };
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const r = await fetch(url + path, { headers });
    return { status: r.status, body: await r.json() };
  };
  return { app, url, post, get };
}

/** Wait until `cond` holds; fail after `ms` (a bound on the loop, not a timing assertion). */
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > ms) assert.fail(`gave up waiting for ${what}`);
    await sleep(2);
  }
}

/** The model with its towers slowed down by `ms` per call (a stand-in for a big model). */
function slow(model: SigLIP2, ms: number): SigLIP2 {
  const m = Object.create(model) as SigLIP2;
  m.embedTokenIds = async (...a) => {
    await sleep(ms);
    return model.embedTokenIds(...a);
  };
  m.imageFeaturesSettled = async (...a) => {
    await sleep(ms);
    return model.imageFeaturesSettled(...a);
  };
  return m;
}

describe("server", () => {
  let model: SigLIP2;
  let srv: Running;
  let store: ImageStore;

  before(async () => {
    model = await SigLIP2.load(F32, { lowercase: false });
    const dir = join(tempDir(), "photos");
    mkdirSync(dir);
    man.images.forEach((p, i) => copyFileSync(join(REPO, p), join(dir, `img${i}.png`)));
    store = await openForIndexing(join(tempDir(), "db"), "images", await embeddingSetup(model, modelName(F32)));
    await buildIndex(model, store, [dir]);
    srv = await start(model, { store, modelName: "siglip2-test", maxWaitMs: 40 });
  });
  after(async () => {
    await srv.app.close();
    store.close();
    await model.close();
  });

  it("GET /health, /v1/models, /openapi.json, /stats", async () => {
    const h = await srv.get("/health");
    assert.equal(h.status, 200);
    assert.deepEqual([h.body.status, h.body.model], ["ok", "siglip2-test"]);
    const m = await srv.get("/v1/models");
    assert.equal(m.body.object, "list");
    assert.deepEqual([m.body.data[0].id, m.body.data[0].object, m.body.data[0].dimensions], ["siglip2-test", "model", D]);
    const o = await srv.get("/openapi.json");
    assert.equal(o.body.openapi, "3.1.0");
    for (const p of ["/v1/embeddings", "/v1/classify", "/v1/search", "/v1/models", "/v1/models/{id}", "/health"]) assert.ok(o.body.paths[p], p);
    const s = await srv.get("/stats");
    assert.equal(typeof s.body.memory.rss, "number");
    assert.equal(typeof s.body.batches.text.batches, "number");
  });

  it("POST /v1/embeddings: texts equal the library's and transformers' embeddings; usage counts tokens", async () => {
    const r = await srv.post("/v1/embeddings", { input: man.texts, model: "text-embedding-3-small" });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.object, "list");
    assert.equal(r.body.model, "siglip2-test", "any model name is accepted; the response names the served one");
    assert.equal(r.body.data.length, man.texts.length);
    const gold = golden.readFloat32("text.embeds");
    const lib = await model.embedTexts(man.texts);
    r.body.data.forEach((d: any, i: number) => {
      assert.equal(d.object, "embedding");
      assert.equal(d.index, i);
      assert.ok(maxAbs(d.embedding, gold.subarray(i * D, (i + 1) * D)) < 1e-5, `text ${i} vs golden`);
      assert.ok(maxAbs(d.embedding, lib[i]!) < 1e-6, `text ${i} vs library`);
    });
    // usage: the tokens the model read (content kept + <eos>), and how many texts were cut.
    const tok = await model.tokenizer();
    const want = man.texts.map((t) => Math.min(tok.tokenize(t, { lowercase: false }).length, 63) + 1);
    assert.equal(r.body.usage.prompt_tokens, want.reduce((a, b) => a + b, 0));
    assert.equal(r.body.usage.total_tokens, r.body.usage.prompt_tokens);
    assert.equal(r.body.usage.truncated_inputs, man.texts.filter((t) => tok.tokenize(t, { lowercase: false }).length > 63).length);
    assert.ok(r.body.usage.truncated_inputs >= 1, "the fixture has an over-64-token text");
    const one = await srv.post("/v1/embeddings", { input: "a cat" });
    assert.equal(one.body.data.length, 1);
    assert.equal(one.body.model, "siglip2-test");
  });

  it("POST /v1/embeddings: data-URL and base64 images (mixed with texts, in order) equal the goldens", async () => {
    const gold = golden.readFloat32("image.embeds");
    const input: unknown[] = man.images.map((_, i) => (i === 3 ? { type: "image_url", image_url: readFileSync(imgPath(i)).toString("base64") } : imageItem(imgPath(i))));
    input.splice(2, 0, { type: "text", text: man.texts[0] });
    const r = await srv.post("/v1/embeddings", { input });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const embs = r.body.data.map((d: any) => d.embedding);
    assert.ok(maxAbs(embs[2], golden.readFloat32("text.embeds").subarray(0, D)) < 1e-5);
    embs.splice(2, 1);
    embs.forEach((e: number[], i: number) => assert.ok(maxAbs(e, gold.subarray(i * D, (i + 1) * D)) < 1e-5, `image ${i}`));
  });

  it("encoding_format base64: little-endian float32, identical to the float response", async () => {
    const input = ["a photo of a cat", imageItem(imgPath(2))];
    const f = await srv.post("/v1/embeddings", { input });
    const b = await srv.post("/v1/embeddings", { input, encoding_format: "base64" });
    assert.equal(b.status, 200);
    b.body.data.forEach((d: any, i: number) => {
      assert.equal(typeof d.embedding, "string");
      const v = base64ToFloat32(d.embedding);
      assert.deepEqual(Array.from(v), f.body.data[i].embedding.map(Math.fround));
    });
    const v = new Float32Array([1, -2.5, 3.25e-8]);
    assert.equal(Buffer.from(float32ToBase64(v), "base64").readFloatLE(4), -2.5);
  });

  it("POST /v1/classify: sigmoid scores match transformers' zero-shot logits; label embeddings are cached", async () => {
    const zs = man.zero_shot!;
    const logits = golden.readFloat32("zeroshot.logits");
    const body = { images: zs.images.map((p) => dataUrl(join(REPO, p))), labels: zs.labels, template: zs.template };
    const before = (await srv.get("/stats")).body;
    const r = await srv.post("/v1/classify", body);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.data.length, zs.images.length);
    r.body.data.forEach((d: any, i: number) => {
      assert.equal(d.index, i);
      for (const s of d.scores) {
        const j = zs.labels.indexOf(s.label);
        assert.ok(Math.abs(s.logit - logits[i * zs.labels.length + j]!) < 1e-3);
        assert.ok(Math.abs(s.probability - 1 / (1 + Math.exp(-s.logit))) < 1e-12);
      }
    });
    const mid = (await srv.get("/stats")).body;
    await srv.post("/v1/classify", { ...body, images: body.images.slice(0, 1) });
    const end = (await srv.get("/stats")).body;
    assert.equal(end.batches.text.items, mid.batches.text.items, "labels were embedded again");
    assert.equal(end.labelCache.hits - mid.labelCache.hits, zs.labels.length);
    assert.equal(mid.batches.text.items - before.batches.text.items, zs.labels.length);
  });

  it("POST /v1/search: text (with probability) and image queries, as the library ranks them", async () => {
    const q = "A photo of two cats sleeping on a red sofa.";
    const r = await srv.post("/v1/search", { query: q, k: 5 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const lib = await searchText(model, store, q, 5);
    assert.deepEqual(r.body.data.map((h: any) => h.path), lib.map((h) => h.path));
    r.body.data.forEach((h: any, i: number) => {
      assert.equal(h.rank, i + 1);
      assert.ok(Math.abs(h.cosine - lib[i]!.cosine) < 1e-6);
      assert.ok(Math.abs(h.probability - lib[i]!.probability!) < 1e-6);
    });
    const im = await srv.post("/v1/search", { image: dataUrl(imgPath(5)), k: 2 });
    assert.equal(im.status, 200);
    assert.match(im.body.data[0].path, /img5\.png$/);
    assert.ok(Math.abs(im.body.data[0].cosine - 1) < 1e-5);
    assert.equal("probability" in im.body.data[0], false);
    assert.equal((await srv.post("/v1/search", { query: "x", image: dataUrl(imgPath(0)) })).status, 400);
    assert.equal((await srv.post("/v1/search", { query: "x", k: 0 })).status, 400);
  });

  it("POST /v1/search: filter inside the query, plus/minus terms and exact, as the library computes them", async () => {
    const q = "A photo of two cats sleeping on a red sofa.";
    const filters = { glob: "img[0-5].png", where: "size > 0" };
    const r = await srv.post("/v1/search", { query: q, k: 3, filter: { glob: filters.glob, where: filters.where }, minus: ["a dog:0.5"], plus: ["sofa"], exact: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const [eq, ed, es] = await model.embedTexts([q, "a dog", "sofa"]);
    const sum = eq!.map((x, i) => x - 0.5 * ed![i]! + es![i]!);
    const n = Math.sqrt(sum.reduce((a, x) => a + x * x, 0));
    const hand = sum.map((x) => x / n);
    const rows = (await store.all()).filter((x) => /\/img[0-5]\.png$/.test(x.path));
    const want = rows.map((x) => ({ p: x.path, c: x.vector.reduce((a, v, i) => a + v * hand[i]!, 0) })).sort((a, b) => b.c - a.c).slice(0, 3);
    assert.deepEqual(r.body.data.map((h: any) => h.path), want.map((w) => w.p));
    r.body.data.forEach((h: any, i: number) => assert.ok(Math.abs(h.cosine - want[i]!.c) < 1e-5 && !("probability" in h)));
    const bad = await srv.post("/v1/search", { query: q, filter: { where: "width >>> 1" } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /^invalid filter \(--where\): /);
    const unknown = await srv.post("/v1/search", { query: q, filter: { colour: "red" } });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error.message, /"filter\.colour" is not a filter/);
  });

  it("micro-batching merges concurrent requests", async () => {
    // A slowed model: whatever arrives while a batch runs joins the next one (the test does
    // not depend on 12 requests arriving within one short wait on a busy machine).
    const sizes: Array<[string, number]> = [];
    const s = await start(slow(model, 150), { maxWaitMs: 20, onBatch: (k, n) => sizes.push([k, n]) });
    const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => s.post("/v1/embeddings", { input: `caption number ${i}` })));
    await s.app.close();
    for (const r of rs) assert.equal(r.status, 200);
    const text = sizes.filter(([k]) => k === "text").map(([, n]) => n);
    assert.equal(text.reduce((a, b) => a + b, 0), 12);
    assert.ok(Math.max(...text) >= 2 && text.length < 12, `batch sizes ${JSON.stringify(text)}`);
    // Each caller still gets its own embedding.
    const lib = await model.embedTexts(["caption number 7"]);
    assert.ok(maxAbs(rs[7]!.body.data[0].embedding, lib[0]!) < 1e-6);
  });

  it("400: bad JSON, bad fields, token ids, remote URLs, bad base64, undecodable images, bad templates; 404; 415", async () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ["/v1/embeddings", "{not json", /not valid JSON/],
      ["/v1/embeddings", [], /JSON object/],
      ["/v1/embeddings", {}, /missing "input"/],
      ["/v1/embeddings", { input: [] }, /empty/],
      ["/v1/embeddings", { input: 42 }, /must be a string or an array/],
      ["/v1/embeddings", { input: [[1, 2, 3]] }, /token-id inputs/],
      ["/v1/embeddings", { input: [{ type: "image_url", image_url: { url: "https://example.com/cat.jpg" } }] }, /remote image URLs are not fetched/],
      ["/v1/embeddings", { input: [{ type: "image_url", image_url: { url: "data:image/png;base64,@@@" } }] }, /input\[0\]\.image_url\.url: not valid base64/],
      ["/v1/embeddings", { input: ["ok", { type: "image_url", image_url: { url: "data:image/png;base64,aGVsbG8gd29ybGQ=" } }] }, /input\[1\]: cannot read the image: not an image/],
      ["/v1/embeddings", { input: [{ type: "audio" }] }, /input\[0\]: expected a string/],
      ["/v1/embeddings", { input: "x", encoding_format: "int8" }, /encoding_format/],
      ["/v1/embeddings", { input: "x", dimensions: 7 }, /dimensions/],
      ["/v1/classify", { images: [dataUrl(imgPath(0))], labels: ["cat"], template: "no placeholder" }, /placeholder/],
      ["/v1/classify", { images: [dataUrl(imgPath(0))] }, /missing "labels"/],
      ["/v1/classify", { images: [dataUrl(imgPath(0))], labels: [] }, /"labels" must be a non-empty array/],
      ["/v1/classify", { labels: ["cat"] }, /missing "images"/],
    ];
    for (const [path, body, re] of cases) {
      const r = await srv.post(path, body);
      assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.type, "invalid_request_error");
      assert.match(r.body.error.message, re);
    }
    const nf = await srv.post("/v1/nothing", {});
    assert.equal(nf.status, 404);
    assert.equal(nf.body.error.type, "not_found_error");
    const xml = await fetch(`${srv.url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/xml" }, body: "<input>a cat</input>" });
    assert.equal(xml.status, 415);
    assert.match(((await xml.json()) as any).error.message, /unsupported content type "application\/xml"; send application\/json/);
    // A text/plain body is the 415 it is, not a string that then "must be an object".
    const plain = await srv.post("/v1/embeddings", '{"input": "a cat"}', { "content-type": "text/plain" });
    assert.equal(plain.status, 415);
    assert.match(plain.body.error.message, /unsupported content type "text\/plain"/);
    // Without --cors there is no preflight route and no CORS header.
    const pre = await fetch(`${srv.url}/v1/embeddings`, { method: "OPTIONS", headers: { origin: "https://app.example", "access-control-request-method": "POST" } });
    assert.equal(pre.status, 404);
    assert.equal(pre.headers.get("access-control-allow-origin"), null);
    // Without a database there is no /v1/search.
    const bare = await start(model);
    assert.equal((await bare.post("/v1/search", { query: "x" })).status, 404);
    assert.equal((await bare.get("/openapi.json")).body.paths["/v1/search"], undefined);
    await bare.app.close();
  });

  it("401 without the bearer token (except /health and /openapi.json); 413 for large bodies and too many inputs", async () => {
    const s = await start(model, { apiKey: "s3cret", bodyLimit: 4096, maxInputs: 4 });
    const no = await s.post("/v1/embeddings", { input: "x" });
    assert.equal(no.status, 401);
    assert.equal(no.body.error.type, "authentication_error");
    assert.match(no.headers.get("www-authenticate") ?? "", /Bearer/);
    assert.equal((await s.post("/v1/embeddings", { input: "x" }, { authorization: "Bearer wrong" })).status, 401);
    assert.equal((await s.get("/v1/models")).status, 401);
    const auth = { authorization: "Bearer s3cret" };
    assert.equal((await s.post("/v1/embeddings", { input: "x" }, auth)).status, 200);
    assert.equal((await s.get("/health")).status, 200);
    assert.equal((await s.get("/openapi.json")).status, 200);
    const big = await s.post("/v1/embeddings", { input: "x".repeat(5000) }, auth);
    assert.equal(big.status, 413);
    assert.match(big.body.error.message, /too large/);
    const many = await s.post("/v1/embeddings", { input: ["a", "b", "c", "d", "e"] }, auth);
    assert.equal(many.status, 413);
    assert.match(many.body.error.message, /at most 4/);
    await s.app.close();
  });

  it("429 when the queue is full; 504 when a request's time runs out (its queued items are withdrawn)", async () => {
    const started: number[] = [];
    const s = await start(slow(model, 300), { maxBatchSize: 1, maxWaitMs: 0, maxQueue: 2, maxInputs: 2, onBatch: (_k, n) => started.push(n) });
    const first = s.post("/v1/embeddings", { input: "one" });
    await until(() => started.length > 0, "the first batch");
    const second = s.post("/v1/embeddings", { input: ["two", "three"] });
    await until(async () => (await s.get("/stats")).body.batches.text.waiting >= 2, "2 queued inputs");
    const third = await s.post("/v1/embeddings", { input: "four" });
    assert.equal(third.status, 429);
    assert.equal(third.body.error.type, "rate_limit_error");
    assert.equal(third.headers.get("retry-after"), "1");
    assert.equal((await first).status, 200);
    assert.equal((await second).status, 200);
    await s.app.close();

    const t = await start(slow(model, 400), { maxBatchSize: 1, maxWaitMs: 0, requestTimeoutMs: 150 });
    const running = t.post("/v1/embeddings", { input: "runs" });
    const queued = await t.post("/v1/embeddings", { input: ["waits", "too"] });
    assert.equal(queued.status, 504);
    assert.equal(queued.body.error.type, "timeout_error");
    assert.match(queued.body.error.message, /timed out after 150 ms/);
    assert.equal((await running).status, 504);
    const st = (await t.get("/stats")).body;
    assert.equal(st.batches.text.waiting, 0);
    assert.ok(st.batches.text.items <= 2, `withdrawn items still ran: ${st.batches.text.items}`);
    await t.app.close();
  });

  it("OpenAI clients: 2048 inputs by default, null for unset fields, models.retrieve", async () => {
    const input = Array.from({ length: 2048 }, (_, i) => `caption ${i}`);
    const r = await srv.post("/v1/embeddings", { input, model: "x", encoding_format: null, dimensions: null, user: null, truncate: null });
    assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 300));
    assert.equal(r.body.data.length, 2048);
    const lib = await model.embedTexts([input[1234]!]);
    assert.ok(maxAbs(r.body.data[1234].embedding, lib[0]!) < 1e-6);
    assert.equal((await srv.post("/v1/embeddings", { input: [...input, "one more"] })).status, 413);
    // dimensions: only the model's own, with a message that says so (not "int8" or null confusion).
    assert.equal((await srv.post("/v1/embeddings", { input: "x", dimensions: D })).status, 200);
    const dims = await srv.post("/v1/embeddings", { input: "x", dimensions: 256 });
    assert.equal(dims.status, 400);
    assert.match(dims.body.error.message, /"dimensions" is 256, but this model gives 32-dimensional embeddings only/);
    // GET /v1/models/{id} (the SDKs' models.retrieve), with the id's "/" sent as is or as %2F.
    const bare = await start(model, { modelName: "google/siglip2-base-patch16-224" });
    for (const path of ["/v1/models/google/siglip2-base-patch16-224", "/v1/models/google%2Fsiglip2-base-patch16-224"]) {
      const m = await bare.get(path);
      assert.equal(m.status, 200, path);
      assert.deepEqual([m.body.id, m.body.object, typeof m.body.created, m.body.owned_by], ["google/siglip2-base-patch16-224", "model", "number", "siglip2"]);
    }
    const unknown = await bare.get("/v1/models/text-embedding-3-small");
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, "model_not_found");
    await bare.app.close();
  });

  it("--max-inputs larger than --max-queue is refused at start-up, not silently capped", async () => {
    assert.throws(() => createServer(model, { maxInputs: 5000, maxQueue: 100 }), (e: unknown) => e instanceof SiglipError && /maxInputs \(5000\) is larger than maxQueue \(100\)/.test(e.message));
    assert.throws(() => createServer(model, { maxQueue: 100 }), (e: unknown) => e instanceof SiglipError && /maxInputs \(2048\)/.test(e.message));
    const child = spawn(process.execPath, [BIN, "serve", "--model", F32, "--port", "0", "--max-inputs", "300", "--max-queue", "200"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    assert.equal(code, 2);
    assert.equal(stderr.trim(), "siglip2: --max-inputs 300 is larger than --max-queue 200: a request that large could never be queued; raise --max-queue or lower --max-inputs");
  });

  it("long texts: embedded from exactly the whole text's first 63 tokens; truncate: false is a 400", async () => {
    const tok = await model.tokenizer();
    const long = "A photo of a cat sleeping on a red sofa, in the sun. ".repeat(2000); // 106 000 characters
    const ids = [...tok.tokenize(long, { lowercase: false }).slice(0, 63), tok.eosId];
    const [want] = await model.embedTokenIds([Int32Array.from(ids)]);
    const r = await srv.post("/v1/embeddings", { input: ["short", long] });
    assert.equal(r.status, 200);
    assert.ok(maxAbs(r.body.data[1].embedding, want!) < 1e-6);
    assert.equal(r.body.usage.truncated_inputs, 1);
    assert.equal(r.body.usage.prompt_tokens, 64 + tok.tokenize("short", { lowercase: false }).length + 1);
    const no = await srv.post("/v1/embeddings", { input: ["short", long], truncate: false });
    assert.equal(no.status, 400);
    assert.equal(no.body.error.param, "input[1]");
    assert.equal(no.body.error.code, "text_too_long");
    // A text of exactly 63 tokens is not truncated.
    const t63 = `a${" a".repeat(62)}`;
    assert.equal(tok.tokenize(t63, { lowercase: false }).length, 63);
    assert.equal((await srv.post("/v1/embeddings", { input: t63, truncate: false })).status, 200);
  });

  it("the event loop keeps answering while a request of many long texts is tokenized", async () => {
    // Counted, not timed: the server and this test share one event loop, so GET /health can
    // only come back between tokenizer slices. Had the server tokenized all 2048 texts in one
    // go, /health would come back after the last one.
    let tokenized = 0;
    const counting = Object.create(model) as SigLIP2;
    counting.tokenizeDetailed = async (texts, o) => {
      tokenized += texts.length;
      return model.tokenizeDetailed(texts, o);
    };
    const s = await start(counting);
    const input = Array.from({ length: 2048 }, (_, i) => `${i} ${"word ".repeat(1000)}`);
    const big = s.post("/v1/embeddings", { input });
    await until(() => tokenized > 0, "tokenizing to start");
    const h = await s.get("/health");
    const at = tokenized;
    assert.equal(h.status, 200);
    assert.ok(at < 2048, `/health came back only after all ${at} texts were tokenized`);
    assert.equal((await big).status, 200);
    await s.app.close();
  });

  it("CORS (--cors): preflight without a key, the origin echoed, others not", async () => {
    const s = await start(model, { apiKey: "k", cors: ["https://app.example", "http://localhost:3000"] });
    const pre = await fetch(`${s.url}/v1/embeddings`, { method: "OPTIONS", headers: { origin: "http://localhost:3000", "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get("access-control-allow-origin"), "http://localhost:3000");
    assert.equal(pre.headers.get("access-control-allow-headers"), "authorization,content-type");
    assert.match(pre.headers.get("access-control-allow-methods") ?? "", /POST/);
    const ok = await s.post("/v1/embeddings", { input: "x" }, { authorization: "Bearer k", origin: "https://app.example" });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("access-control-allow-origin"), "https://app.example");
    assert.equal(ok.headers.get("vary"), "Origin");
    const other = await s.post("/v1/embeddings", { input: "x" }, { authorization: "Bearer k", origin: "https://evil.example" });
    assert.equal(other.headers.get("access-control-allow-origin"), null);
    assert.equal((await s.post("/v1/embeddings", { input: "x" }, { origin: "https://app.example" })).status, 401, "CORS does not lift the key");
    await s.app.close();
    assert.throws(() => createServer(model, { cors: "app.example" }), (e: unknown) => e instanceof SiglipError && /not an origin/.test(e.message));
    const any = await start(model, { cors: "*" });
    const r = await any.post("/v1/embeddings", { input: "x" }, { origin: "https://anything.example" });
    assert.equal(r.headers.get("access-control-allow-origin"), "*");
    await any.app.close();
  });

  it("a body that does not arrive in time gets 408; a client that hangs up has its queued work dropped", async () => {
    const s = await start(slow(model, 200), { bodyTimeoutMs: 300, maxBatchSize: 1, maxWaitMs: 0 });
    const u = new URL(s.url);
    const answer = await new Promise<string>((resolve) => {
      const sock = connect(Number(u.port), u.hostname);
      let data = "";
      sock.setEncoding("utf8");
      sock.on("data", (d: string) => (data += d));
      sock.on("close", () => resolve(data));
      setTimeout(() => sock.destroy(), 10_000).unref(); // bound: no answer fails the match below
      sock.write(`POST /v1/embeddings HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"input": `);
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.match(answer, /"message":"the request body did not arrive within 300 ms"/);
    // Hang up after the first of 4 inputs started: the other 3 never run.
    const ac = new AbortController();
    const gone = fetch(`${s.url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: ["a", "b", "c", "d"] }), signal: ac.signal }).catch(() => null);
    await until(async () => (await s.get("/stats")).body.batches.text.batches > 0, "the first batch");
    ac.abort();
    await gone;
    await until(async () => (await s.get("/stats")).body.batches.text.waiting === 0, "the queue to empty");
    await sleep(250);
    const st = (await s.get("/stats")).body.batches.text;
    assert.ok(st.items <= 2, `${st.items} inputs ran for a client that had gone`);
    assert.equal((await s.post("/v1/embeddings", { input: "still fine" })).status, 200);
    await s.app.close();
  });

  it("non-finite model outputs are a 500 naming the input, never null in the JSON", async () => {
    const broken = Object.create(model) as SigLIP2;
    broken.embedTokenIds = async (ids) => ids.map((_, i) => new Float32Array(D).fill(i === 1 ? Number.POSITIVE_INFINITY : 0.1));
    const s = await start(broken);
    const r = await s.post("/v1/embeddings", { input: ["fine", "overflows"] });
    assert.equal(r.status, 500);
    assert.equal(r.body.error.type, "server_error");
    assert.match(r.body.error.message, /^input\[1\]: the embedding is not finite \(Infinity at index 0\)/);
    await s.app.close();
  });

  it("bodies JSON.parse would spend seconds on are refused before parsing (depth, keys, containers)", () => {
    const lim = { maxDepth: 4, maxKeys: 3, maxContainers: 6 };
    const problem = (t: string) => jsonShapeProblem(t, lim)?.message ?? null;
    assert.equal(problem('{"a":[[["x"]]]}'), null);
    assert.match(problem('{"a":[[[["x"]]]]}') ?? "", /more than 4 levels deep/);
    // Brackets, colons and escaped quotes inside strings do not count.
    assert.equal(problem('{"a":"[[[[[[:::::", "b":"\\"[[[[[", "c":"\\\\"}'), null);
    assert.match(problem('{"a":"\\\\",[[[[["]]]]]}') ?? "", /levels deep/, "an escaped backslash ends the string");
    assert.match(problem('{"a":1,"b":2,"c":3,"d":4}') ?? "", /more than 3 keys/);
    assert.equal(problem('[{"a":1,"b":2,"c":3},{"a":1,"b":2,"c":3}]'), null, "keys are counted per object");
    assert.equal(jsonShapeProblem("[{},{},{},{},{},{},{}]", lim)?.statusCode, 413);
    assert.equal(problem('{"unterminated": "[[[[[[['), null, "left for JSON.parse to report");
  });

  it("graceful shutdown: an in-flight request completes, then the port is closed", async () => {
    const started: number[] = [];
    const s = await start(slow(model, 300), { onBatch: (_k, n) => started.push(n) });
    const inflight = s.post("/v1/embeddings", { input: ["in", "flight"] });
    await until(() => started.length > 0, "the first batch");
    let closed = false;
    const closing = s.app.close().then(() => (closed = true));
    const r = await inflight;
    assert.equal(r.status, 200);
    assert.equal(r.body.data.length, 2);
    await closing;
    assert.ok(closed);
    await assert.rejects(fetch(`${s.url}/health`));
  });

  it("siglip2 serve: listens on loopback, needs the key from SIGLIP2_API_KEY, stops cleanly on SIGTERM", async () => {
    const child = spawn(process.execPath, [BIN, "serve", "--model", F32, "--port", "0"], {
      env: { ...process.env, HF_HUB_OFFLINE: "1", SIGLIP2_API_KEY: "k" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    while (!/on (http:\/\/127\.0\.0\.1:\d+)/.test(stderr)) {
      if (child.exitCode !== null) assert.fail(stderr);
      await sleep(20);
    }
    const url = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)![1]!;
    assert.equal((await fetch(`${url}/health`)).status, 200);
    assert.equal((await fetch(`${url}/v1/models`)).status, 401);
    const ok = await fetch(`${url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer k" }, body: JSON.stringify({ input: "a cat" }) });
    assert.equal(ok.status, 200);
    child.kill("SIGTERM");
    assert.equal(await exited, 0, stderr);
    assert.match(stderr, /SIGTERM: shutting down/);
    assert.match(stderr, /stopped/);
    assert.equal(child.stdout.read(), null, "nothing on stdout");
  });
});
