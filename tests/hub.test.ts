/**
 * src/hub: resolving a model id against a fake Hub served by node:http on 127.0.0.1.
 *
 * The fake Hub answers `HEAD/GET /{org}/{name}/resolve/{rev}/{file}` like huggingface.co:
 * small files directly (ETag = git blob SHA-1, X-Repo-Commit), large files with a 302 to a
 * "CDN" host (X-Linked-Etag = SHA-256, X-Linked-Size), which serves byte ranges (206).
 * The CDN host name does not resolve; the fetch the tests pass in sends it to the same server,
 * so the code under test sees a different host, as with the real CDN.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { SiglipError } from "../src/errors.js";
import { repoFolderName } from "../src/hub/cache.js";
import { defaultEndpoint, defaultToken, isOfflineEnv } from "../src/hub/settings.js";
import { defaultCacheDir } from "../src/user-dirs.js";
import { downloadProgress } from "../src/cli/progress.js";
import { isHubModelId, resolveModel, type DownloadProgress, type ResolveOptions } from "../src/hub/download.js";

// Keep the developer's own Hub settings out of these tests (each test file runs in its own
// process; the modules under test read the environment only when called).
const TMP_ROOT = fs.mkdtempSync(path.join(os.tmpdir(), "siglip2-hub-test-"));
for (const v of [
  "HF_TOKEN",
  "HUGGING_FACE_HUB_TOKEN",
  "HF_TOKEN_PATH",
  "HF_HUB_OFFLINE",
  "TRANSFORMERS_OFFLINE",
  "HF_ENDPOINT",
  "HF_HUB_CACHE",
  "HUGGINGFACE_HUB_CACHE",
  "XDG_CACHE_HOME",
]) {
  delete process.env[v];
}
process.env.HF_HOME = path.join(TMP_ROOT, "hf-home");


// ---------------------------------------------------------------------------------------------
// Fixture repos

interface RepoFile {
  data: Buffer;
  lfs: boolean;
}

interface Repo {
  commit: string;
  files: Map<string, RepoFile>;
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  token?: string;
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const gitSha1 = (b: Buffer): string =>
  createHash("sha1").update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b])).digest("hex");
const newCommit = (): string => randomBytes(20).toString("hex");

function baseFiles(): Map<string, RepoFile> {
  const files = new Map<string, RepoFile>();
  files.set("config.json", { data: Buffer.from(JSON.stringify({ model_type: "siglip", text_config: {}, vision_config: {} })), lfs: false });
  files.set("tokenizer.json", { data: Buffer.from(JSON.stringify({ version: "1.0", model: { type: "Unigram" } })), lfs: false });
  files.set("tokenizer_config.json", { data: Buffer.from(JSON.stringify({ model_max_length: 64 })), lfs: false });
  files.set("special_tokens_map.json", { data: Buffer.from(JSON.stringify({ pad_token: "<pad>" })), lfs: false });
  return files;
}

function singleFileRepo(): Repo {
  const files = baseFiles();
  files.set("model.safetensors", { data: randomBytes(300 * 1024), lfs: true });
  // no preprocessor_config.json: an optional file the repo lacks
  return { commit: newCommit(), files };
}

function shardedRepo(): Repo {
  const files = baseFiles();
  files.set("preprocessor_config.json", { data: Buffer.from(JSON.stringify({ image_size: 224 })), lfs: false });
  const shard1 = "model-00001-of-00002.safetensors";
  const shard2 = "model-00002-of-00002.safetensors";
  files.set(shard1, { data: randomBytes(120 * 1024), lfs: true });
  files.set(shard2, { data: randomBytes(90 * 1024), lfs: true });
  const index = { metadata: { total_size: 210 * 1024 }, weight_map: { "a.weight": shard1, "b.weight": shard2, "c.weight": shard1 } };
  files.set("model.safetensors.index.json", { data: Buffer.from(JSON.stringify(index)), lfs: false });
  return { commit: newCommit(), files };
}

// ---------------------------------------------------------------------------------------------
// Fake Hub

interface LoggedRequest {
  method: string;
  path: string;
  host: string;
  range?: string;
  authorization?: string;
}

const CDN_HOST = "cdn-lfs.test.invalid";

class FakeHub {
  readonly repos = new Map<string, Repo>();
  /** Requests to `/{old}/resolve/...` get a relative 307 to `/{new}/resolve/...` (a renamed repo). */
  readonly renamed = new Map<string, string>();
  readonly requests: LoggedRequest[] = [];
  /** How the CDN misbehaves: ignore Range headers, cut the next transfer halfway, or refuse (403). */
  cdnMode: "normal" | "ignore-range" | "cut-once" | "forbidden" = "normal";
  private readonly blobs = new Map<string, Buffer>();
  private server: http.Server | undefined;
  port = 0;

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A fetch that sends the CDN host to this server (the name itself never resolves). */
  readonly fetchImpl: typeof fetch = (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const u = new URL(url);
    if (u.hostname === CDN_HOST) {
      u.hostname = "127.0.0.1";
      return fetch(u.href, { ...init, headers: { ...(init?.headers as Record<string, string>), "x-test-host": CDN_HOST } });
    }
    return fetch(url, init);
  };

  add(id: string, repo: Repo): Repo {
    this.repos.set(id, repo);
    for (const f of repo.files.values()) if (f.lfs) this.blobs.set(sha256(f.data), f.data);
    return repo;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  count(filter: (r: LoggedRequest) => boolean = () => true): number {
    return this.requests.filter(filter).length;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    const host = (req.headers["x-test-host"] as string | undefined) ?? "127.0.0.1";
    const entry: LoggedRequest = { method: req.method ?? "?", path: decodeURIComponent(url.pathname), host };
    if (req.headers.range !== undefined) entry.range = req.headers.range;
    if (req.headers.authorization !== undefined) entry.authorization = req.headers.authorization;
    this.requests.push(entry);

    if (host === CDN_HOST) {
      const m = /^\/blobs\/([0-9a-f]{64})$/.exec(url.pathname);
      const blob = m ? this.blobs.get(m[1]!) : undefined;
      if (blob === undefined) return this.end(res, 404, {});
      if (this.cdnMode === "forbidden") return this.end(res, 403, {});
      if (this.cdnMode === "cut-once" && req.method === "GET") {
        this.cdnMode = "normal";
        res.writeHead(200, { "content-length": String(blob.length) });
        res.write(blob.subarray(0, blob.length >> 1), () => res.destroy());
        return;
      }
      if (this.cdnMode === "ignore-range") delete req.headers.range;
      return this.sendBytes(req, res, blob, {});
    }

    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return this.end(res, 404, {});
    const repoId = `${m[1]}/${m[2]}`;
    const revision = decodeURIComponent(m[3]!);
    const filename = m[4]!.split("/").map(decodeURIComponent).join("/");

    const renamedTo = this.renamed.get(repoId);
    if (renamedTo !== undefined) {
      return this.end(res, 307, { location: url.pathname.replace(`/${repoId}/`, `/${renamedTo}/`) });
    }
    const repo = this.repos.get(repoId);
    if (repo === undefined) return this.end(res, 404, { "x-error-code": "RepoNotFound" });
    if (repo.token !== undefined && req.headers.authorization !== `Bearer ${repo.token}`) {
      return this.end(res, 401, { "x-error-code": "GatedRepo", "x-error-message": "Access to this model is restricted" });
    }
    if (revision !== "main" && revision !== repo.commit) {
      return this.end(res, 404, { "x-error-code": "RevisionNotFound" });
    }
    const file = repo.files.get(filename);
    const common = { "x-repo-commit": repo.commit };
    if (file === undefined) return this.end(res, 404, { ...common, "x-error-code": "EntryNotFound" });
    if (file.lfs) {
      const oid = sha256(file.data);
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize ${file.data.length}\n`);
      return this.end(res, 302, {
        ...common,
        etag: `"${gitSha1(pointer)}"`,
        "x-linked-etag": `"${oid}"`,
        "x-linked-size": String(file.data.length),
        location: `http://${CDN_HOST}:${this.port}/blobs/${oid}`,
        "content-length": "0",
      });
    }
    return this.sendBytes(req, res, file.data, { ...common, etag: `"${gitSha1(file.data)}"` });
  }

  private end(res: http.ServerResponse, status: number, headers: Record<string, string>): void {
    res.writeHead(status, headers);
    res.end();
  }

  private sendBytes(req: http.IncomingMessage, res: http.ServerResponse, data: Buffer, headers: Record<string, string>): void {
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (range) {
      const start = Number(range[1]);
      if (start >= data.length) {
        return this.end(res, 416, { ...headers, "content-range": `bytes */${data.length}` });
      }
      res.writeHead(206, {
        ...headers,
        "content-length": String(data.length - start),
        "content-range": `bytes ${start}-${data.length - 1}/${data.length}`,
        "accept-ranges": "bytes",
      });
      res.end(req.method === "HEAD" ? undefined : data.subarray(start));
      return;
    }
    res.writeHead(200, { ...headers, "content-length": String(data.length), "accept-ranges": "bytes" });
    res.end(req.method === "HEAD" ? undefined : data);
  }
}

// ---------------------------------------------------------------------------------------------

let hub: FakeHub;
let cacheDir: string;
let caseNo = 0;

before(async () => {
  hub = new FakeHub();
  await hub.start();
});

after(async () => {
  await hub.stop();
  fs.rmSync(TMP_ROOT, { recursive: true, force: true });
});

beforeEach(() => {
  cacheDir = path.join(TMP_ROOT, `cache-${++caseNo}`);
  hub.requests.length = 0;
  hub.cdnMode = "normal";
});

function opts(extra: ResolveOptions = {}): ResolveOptions {
  return { cacheDir, endpoint: hub.endpoint, fetchImpl: hub.fetchImpl, offline: false, ...extra };
}

async function rejectsHub(p: Promise<unknown>, pattern: RegExp): Promise<SiglipError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SiglipError, `expected a SiglipError, got ${String(e)}`);
    assert.equal(e.code, "hub");
    assert.ok(!e.message.includes("\n"), `message should be one line: ${e.message}`);
    assert.match(e.message, pattern);
    return e;
  }
  assert.fail("expected resolveModel to fail");
}

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const srv = http.createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function assertSnapshot(dir: string, repo: Repo, names: string[]): void {
  for (const name of names) {
    const expected = repo.files.get(name)!.data;
    assert.ok(Buffer.from(fs.readFileSync(path.join(dir, name))).equals(expected), `${name} has the served bytes`);
  }
}

// ---------------------------------------------------------------------------------------------

describe("environment", () => {
  test("defaultCacheDir follows huggingface_hub's precedence", () => {
    const home = "/home/u";
    assert.equal(defaultCacheDir({}, home), "/home/u/.cache/huggingface/hub");
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: "/xdg" }, home), "/xdg/huggingface/hub");
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: "/xdg", HF_HOME: "/hf" }, home), "/hf/hub");
    assert.equal(defaultCacheDir({ HF_HOME: "~/hf" }, home), "/home/u/hf/hub");
    assert.equal(defaultCacheDir({ HF_HOME: "$BASE/hf", BASE: "/data" }, home), "/data/hf/hub");
    assert.equal(defaultCacheDir({ HF_HOME: "/hf", HUGGINGFACE_HUB_CACHE: "/legacy" }, home), "/legacy");
    assert.equal(defaultCacheDir({ HF_HOME: "/hf", HUGGINGFACE_HUB_CACHE: "/legacy", HF_HUB_CACHE: "/c" }, home), "/c");
    assert.equal(defaultCacheDir({ HF_HUB_CACHE: "", HF_HOME: "/hf" }, home), "/hf/hub", "empty counts as unset");
  });

  test("offline flag, endpoint and token", () => {
    for (const v of ["1", "true", "TRUE", "yes", "on"]) assert.equal(isOfflineEnv({ HF_HUB_OFFLINE: v }), true, v);
    for (const v of ["0", "false", "", "off"]) assert.equal(isOfflineEnv({ HF_HUB_OFFLINE: v }), false, v);
    assert.equal(isOfflineEnv({ TRANSFORMERS_OFFLINE: "1" }), true);
    assert.equal(defaultEndpoint({}), "https://huggingface.co");
    assert.equal(defaultEndpoint({ HF_ENDPOINT: "https://mirror.example/" }), "https://mirror.example");

    const home = path.join(TMP_ROOT, "token-home");
    fs.mkdirSync(home, { recursive: true });
    fs.writeFileSync(path.join(home, "token"), "hf_fromfile\n");
    assert.equal(defaultToken({ HF_HOME: home }), "hf_fromfile");
    assert.equal(defaultToken({ HF_HOME: home, HF_TOKEN: " hf_env " }), "hf_env");
    assert.equal(defaultToken({ HF_HOME: path.join(TMP_ROOT, "nowhere") }), undefined);
  });

  test("model ids", () => {
    assert.equal(isHubModelId("google/siglip2-base-patch16-224"), true);
    assert.equal(isHubModelId("org_1/name.v2"), true);
    for (const bad of ["siglip2", "a/b/c", "/abs/path", "org/-x", "org/x--y", "org/x..y", "org/x.git", "", "org/"]) {
      assert.equal(isHubModelId(bad), false, bad);
    }
    assert.equal(repoFolderName("google/siglip2-base-patch16-224"), "models--google--siglip2-base-patch16-224");
  });
});

describe("local directories", () => {
  test("a directory with config.json is returned as is", async () => {
    const dir = fs.mkdtempSync(path.join(TMP_ROOT, "local-"));
    fs.writeFileSync(path.join(dir, "config.json"), "{}");
    assert.equal(await resolveModel(dir, opts()), dir);
    assert.equal(hub.count(), 0);
  });

  test("a directory without config.json is an error naming it", async () => {
    const dir = fs.mkdtempSync(path.join(TMP_ROOT, "local-"));
    const e = await rejectsHub(resolveModel(dir, opts()), /has no config\.json/);
    assert.ok(e.message.includes(dir));
  });

  test("a file, a missing path or a non-id string is an error", async () => {
    const file = path.join(TMP_ROOT, "not-a-dir.txt");
    fs.writeFileSync(file, "x");
    await rejectsHub(resolveModel(file, opts()), /is a file, not a model directory/);
    await rejectsHub(resolveModel(path.join(TMP_ROOT, "missing", "dir"), opts()), /no such model directory/);
    await rejectsHub(resolveModel("not a model!", opts()), /neither an existing directory nor a Hugging Face model id/);
    assert.equal(hub.count(), 0);
  });
});

describe("downloads", () => {
  test("single-file repo: files, cache layout, no second download", async () => {
    const repo = hub.add("org/tiny", singleFileRepo());
    const dir = await resolveModel("org/tiny", opts());

    const storage = path.join(cacheDir, "models--org--tiny");
    assert.equal(dir, path.join(storage, "snapshots", repo.commit));
    assertSnapshot(dir, repo, ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "model.safetensors"]);
    assert.equal(fs.existsSync(path.join(dir, "preprocessor_config.json")), false);

    // refs/main → commit; snapshot files are relative symlinks into blobs/<etag>
    assert.equal(fs.readFileSync(path.join(storage, "refs", "main"), "utf8"), repo.commit);
    const weights = repo.files.get("model.safetensors")!.data;
    assert.equal(fs.readlinkSync(path.join(dir, "model.safetensors")), `../../blobs/${sha256(weights)}`);
    const config = repo.files.get("config.json")!.data;
    assert.equal(fs.readlinkSync(path.join(dir, "config.json")), `../../blobs/${gitSha1(config)}`);
    const blobs = fs.readdirSync(path.join(storage, "blobs")).sort();
    assert.deepEqual(blobs, [...repo.files.values()].map((f) => (f.lfs ? sha256(f.data) : gitSha1(f.data))).sort());
    // the absent optional file is recorded like huggingface_hub does
    assert.ok(fs.existsSync(path.join(storage, ".no_exist", repo.commit, "preprocessor_config.json")));
    assert.ok(fs.existsSync(path.join(cacheDir, "CACHEDIR.TAG")));

    // the large file went through the CDN redirect, and was fetched once
    assert.equal(hub.count((r) => r.host === CDN_HOST && r.method === "GET"), 1);
    assert.equal(hub.count((r) => r.method === "GET" && r.path.endsWith("/config.json")), 1);
    // all files after the first are asked for at the resolved commit
    assert.ok(hub.requests.filter((r) => r.host !== CDN_HOST && !r.path.endsWith("/config.json")).every((r) => r.path.includes(`/resolve/${repo.commit}/`)));

    // second call: one metadata request to learn the commit, no download
    hub.requests.length = 0;
    assert.equal(await resolveModel("org/tiny", opts()), dir);
    assert.equal(hub.count((r) => r.method === "GET"), 0);
    assert.deepEqual(hub.requests.map((r) => `${r.method} ${r.path}`), ["HEAD /org/tiny/resolve/main/config.json"]);

    // pinned to the commit: nothing at all
    hub.requests.length = 0;
    assert.equal(await resolveModel("org/tiny", opts({ revision: repo.commit })), dir);
    assert.equal(hub.count(), 0);
  });

  test("sharded repo: index and all shards", async () => {
    const repo = hub.add("org/sharded", shardedRepo());
    const dir = await resolveModel("org/sharded", opts());
    assertSnapshot(dir, repo, [
      "config.json",
      "preprocessor_config.json",
      "tokenizer.json",
      "model.safetensors.index.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
    ]);
    assert.equal(fs.existsSync(path.join(dir, "model.safetensors")), false);
    assert.equal(hub.count((r) => r.host === CDN_HOST), 2, "each shard downloaded once");

    hub.requests.length = 0;
    assert.equal(await resolveModel("org/sharded", opts()), dir);
    assert.equal(hub.count(), 1);
  });

  test("an index naming a shard in a sub-folder is refused before any shard is downloaded (the loader's rule)", async () => {
    const repo = shardedRepo();
    const sub = "weights/model-00001-of-00001.safetensors";
    repo.files.set(sub, { data: randomBytes(64 * 1024), lfs: true });
    const index = { metadata: {}, weight_map: { "a.weight": sub } };
    repo.files.set("model.safetensors.index.json", { data: Buffer.from(JSON.stringify(index)), lfs: false });
    hub.add("org/subfolder", repo);
    await assert.rejects(resolveModel("org/subfolder", opts()), (e: unknown) => {
      assert.ok(e instanceof SiglipError);
      assert.match(e.message, /invalid shard name "weights\/model-00001-of-00001\.safetensors"/);
      return true;
    });
    assert.equal(hub.count((r) => r.path.includes("weights/")), 0, "the sub-folder shard is never requested");
  });

  test('parts: "vision" skips the tokenizer files', async () => {
    const repo = hub.add("org/vision-only", singleFileRepo());
    const dir = await resolveModel("org/vision-only", opts({ parts: "vision" }));
    assertSnapshot(dir, repo, ["config.json", "model.safetensors"]);
    assert.equal(fs.existsSync(path.join(dir, "tokenizer.json")), false);
    assert.equal(hub.count((r) => r.path.includes("tokenizer")), 0);
  });

  test("a renamed repo's same-host redirect is followed", async () => {
    const repo = hub.add("org/new-name", singleFileRepo());
    hub.renamed.set("org/old-name", "org/new-name");
    const dir = await resolveModel("org/old-name", opts());
    assertSnapshot(dir, repo, ["config.json", "model.safetensors"]);
    assert.ok(dir.includes("models--org--old-name"));
  });

  test("progress is reported through onProgress, naming the file, and nothing is drawn", async () => {
    const repo = hub.add("org/progress", singleFileRepo());
    const size = repo.files.get("model.safetensors")!.data.length;
    const events: DownloadProgress[] = [];
    const written: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      await resolveModel("org/progress", opts({ onProgress: (p) => events.push(p) }));
    } finally {
      process.stderr.write = original;
    }
    assert.equal(written.join(""), "", "the library writes nothing to stderr");
    const weights = events.filter((e) => e.file === "model.safetensors");
    assert.ok(weights.length >= 2, "model.safetensors reported while downloading");
    assert.deepEqual(weights.at(-1), { file: "model.safetensors", bytes: size, total: size, done: true });
    for (let i = 1; i < weights.length; i++) assert.ok(weights[i]!.bytes >= weights[i - 1]!.bytes, "bytes never go back");
  });
});

describe("the CLI's download bar (src/cli/progress.ts)", () => {
  test("draws one bar per large file from onProgress events, none for small files or off a terminal", () => {
    const written: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    const wasTTY = process.stderr.isTTY;
    const feed = (tty: boolean): void => {
      process.stderr.isTTY = tty;
      const onProgress = downloadProgress();
      if (!tty) {
        assert.equal(onProgress, undefined);
        return;
      }
      onProgress!({ file: "config.json", bytes: 10, total: 10, done: true });
      for (const bytes of [0, 1_000_000, 2_000_000]) onProgress!({ file: "model.safetensors", bytes, total: 2_000_000, done: false });
      onProgress!({ file: "model.safetensors", bytes: 2_000_000, total: 2_000_000, done: true });
    };
    process.stderr.write = ((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      feed(false);
      feed(true);
    } finally {
      process.stderr.write = original;
      process.stderr.isTTY = wasTTY;
    }
    const out = written.join("");
    assert.match(out, /model\.safetensors/);
    assert.match(out, /2\.00MB\/2\.00MB/);
    assert.doesNotMatch(out, /config\.json/);
  });
});

describe("resume and integrity", () => {
  test("a partial .incomplete blob is resumed with a Range request", async () => {
    const repo = hub.add("org/resume", singleFileRepo());
    const weights = repo.files.get("model.safetensors")!.data;
    const blobs = path.join(cacheDir, "models--org--resume", "blobs");
    fs.mkdirSync(blobs, { recursive: true });
    const partial = 100_000;
    fs.writeFileSync(path.join(blobs, `${sha256(weights)}.incomplete`), weights.subarray(0, partial));

    const dir = await resolveModel("org/resume", opts());
    const cdn = hub.requests.filter((r) => r.host === CDN_HOST);
    assert.equal(cdn.length, 1);
    assert.equal(cdn[0]!.range, `bytes=${partial}-`);
    assert.ok(fs.readFileSync(path.join(dir, "model.safetensors")).equals(weights));
    assert.equal(fs.existsSync(path.join(blobs, `${sha256(weights)}.incomplete`)), false);
  });

  test("a server that ignores Range gets the whole file written from the start", async () => {
    const repo = hub.add("org/no-range", singleFileRepo());
    const weights = repo.files.get("model.safetensors")!.data;
    const blobs = path.join(cacheDir, "models--org--no-range", "blobs");
    fs.mkdirSync(blobs, { recursive: true });
    fs.writeFileSync(path.join(blobs, `${sha256(weights)}.incomplete`), weights.subarray(0, 5000));
    hub.cdnMode = "ignore-range";
    const dir = await resolveModel("org/no-range", opts());
    assert.ok(fs.readFileSync(path.join(dir, "model.safetensors")).equals(weights));
  });

  test("a transfer cut halfway is resumed from where it stopped", async () => {
    const repo = hub.add("org/cut", singleFileRepo());
    const weights = repo.files.get("model.safetensors")!.data;
    hub.cdnMode = "cut-once";
    const dir = await resolveModel("org/cut", opts());
    assert.ok(fs.readFileSync(path.join(dir, "model.safetensors")).equals(weights));
    const cdn = hub.requests.filter((r) => r.host === CDN_HOST);
    assert.equal(cdn.length, 2);
    assert.equal(cdn[0]!.range, undefined);
    assert.match(cdn[1]!.range ?? "", /^bytes=[1-9]\d*-$/);
  });

  test("a CDN refusal names the file and keeps nothing half-linked", async () => {
    hub.add("org/cdn-403", singleFileRepo());
    hub.cdnMode = "forbidden";
    await rejectsHub(resolveModel("org/cdn-403", opts()), /cannot download model\.safetensors of org\/cdn-403: .*HTTP 403/);
    const snapshots = path.join(cacheDir, "models--org--cdn-403", "snapshots");
    const [commit] = fs.readdirSync(snapshots);
    assert.equal(fs.existsSync(path.join(snapshots, commit!, "model.safetensors")), false);
  });

  test("a corrupt partial blob fails the SHA-256 check and is discarded", async () => {
    const repo = hub.add("org/corrupt", singleFileRepo());
    const weights = repo.files.get("model.safetensors")!.data;
    const blobs = path.join(cacheDir, "models--org--corrupt", "blobs");
    fs.mkdirSync(blobs, { recursive: true });
    const incomplete = path.join(blobs, `${sha256(weights)}.incomplete`);
    fs.writeFileSync(incomplete, randomBytes(1000));

    await rejectsHub(resolveModel("org/corrupt", opts()), /corrupt/);
    assert.equal(fs.existsSync(incomplete), false);
    // a second try downloads it cleanly
    const dir = await resolveModel("org/corrupt", opts());
    assert.ok(fs.readFileSync(path.join(dir, "model.safetensors")).equals(weights));
  });
});

describe("offline and unreachable", () => {
  test("offline uses the cache and makes no request", async () => {
    hub.add("org/offline", singleFileRepo());
    const dir = await resolveModel("org/offline", opts());
    hub.requests.length = 0;

    assert.equal(await resolveModel("org/offline", opts({ offline: true })), dir);
    process.env.HF_HUB_OFFLINE = "1";
    try {
      const { offline: _ignored, ...rest } = opts();
      assert.equal(await resolveModel("org/offline", rest), dir);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    assert.equal(hub.count(), 0);
  });

  test("offline with an empty cache is one clear line", async () => {
    hub.add("org/never-downloaded", singleFileRepo());
    process.env.HF_HUB_OFFLINE = "1";
    try {
      const { offline: _ignored, ...rest } = opts();
      const e = await rejectsHub(resolveModel("org/never-downloaded", rest), /HF_HUB_OFFLINE/);
      assert.match(e.message, /local directory/);
      assert.match(e.message, /org\/never-downloaded/);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    assert.equal(hub.count(), 0);
  });

  test("offline with an incomplete cache says what is missing", async () => {
    hub.add("org/partial-cache", singleFileRepo());
    const dir = await resolveModel("org/partial-cache", opts());
    fs.rmSync(path.join(dir, "model.safetensors"));
    await rejectsHub(resolveModel("org/partial-cache", opts({ offline: true })), /missing model\.safetensors/);
  });

  test("an unreachable Hub with an empty cache is one clear line", async () => {
    const port = await closedPort();
    const e = await rejectsHub(
      resolveModel("org/anything", opts({ endpoint: `http://127.0.0.1:${port}`, fetchImpl: fetch })),
      new RegExp(`^cannot download org/anything \\(Hub unreachable: ECONNREFUSED 127\\.0\\.0\\.1:${port}\\)`),
    );
    assert.match(e.message, /local directory/);
    // port 1 is one fetch refuses outright ("bad port"): still one clear line
    await rejectsHub(resolveModel("org/anything", opts({ endpoint: "http://127.0.0.1:1", fetchImpl: fetch })), /Hub unreachable: .*local directory/);
  });

  test("an unreachable Hub falls back to the cached snapshot", async () => {
    hub.add("org/fallback", singleFileRepo());
    const dir = await resolveModel("org/fallback", opts());
    const port = await closedPort();
    assert.equal(await resolveModel("org/fallback", opts({ endpoint: `http://127.0.0.1:${port}`, fetchImpl: fetch })), dir);
  });
});

describe("Hub errors and tokens", () => {
  test("a gated repo needs the token, sent as Bearer and kept off the CDN", async () => {
    const repo = singleFileRepo();
    repo.token = "hf_secret";
    hub.add("org/gated", repo);

    await rejectsHub(resolveModel("org/gated", opts()), /HF_TOKEN/);

    hub.requests.length = 0;
    const dir = await resolveModel("org/gated", opts({ token: "hf_secret" }));
    assertSnapshot(dir, repo, ["config.json", "model.safetensors"]);
    const onHub = hub.requests.filter((r) => r.host !== CDN_HOST);
    assert.ok(onHub.length > 0 && onHub.every((r) => r.authorization === "Bearer hf_secret"));
    assert.ok(hub.requests.filter((r) => r.host === CDN_HOST).every((r) => r.authorization === undefined));
  });

  test("the token comes from HF_TOKEN", async () => {
    const repo = singleFileRepo();
    repo.token = "hf_env_token";
    hub.add("org/gated-env", repo);
    process.env.HF_TOKEN = "hf_env_token";
    try {
      await resolveModel("org/gated-env", opts());
    } finally {
      delete process.env.HF_TOKEN;
    }
    assert.ok(hub.requests.some((r) => r.authorization === "Bearer hf_env_token"));
  });

  test("a missing repo or revision is reported as not found", async () => {
    await rejectsHub(resolveModel("org/does-not-exist", opts()), /not found/);
    hub.add("org/revs", singleFileRepo());
    await rejectsHub(resolveModel("org/revs", opts({ revision: "v9" })), /revision "v9".*not found/);
  });
});
