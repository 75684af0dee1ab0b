/**
 * The ONNX model cache and what it is keyed on: remembered content hashes (and the
 * changes they must notice), LRU eviction under a size cap, list/clear, the one
 * cache-folder resolver, onnxruntime failures as one-line errors, and float64 logits.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, statSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SiglipError } from "../src/errors.js";
import { Graph } from "../src/graph/graph.js";
import { DEFAULT_CACHE_MAX_BYTES, cacheMaxBytes, clearCache, defaultModelCacheDir, evictCache, listCache, parseByteSize } from "../src/graph/model-cache.js";
import { Pipeline, ort } from "../src/graph/runtime.js";
import { defaultHfHome } from "../src/hub/cache.js";
import { defaultDbPath } from "../src/search/store.js";
import { logitsPerImage, sigmoid } from "../src/tasks/similarity.js";
import { userCacheHome } from "../src/user-dirs.js";
import { contentIdentity, fileContentHash } from "../src/weights/fingerprint.js";
import { findDuplicateKey } from "../src/weights/json-keys.js";
import { tempDir } from "./harness/files.js";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

/** Wait (bounded) until a file written now gets a later timestamp than `path`'s ctime: the file-system clock has ticked. */
async function afterTick(path: string, dir: string): Promise<void> {
  const c = statSync(path, { bigint: true }).ctimeNs;
  const probe = join(dir, ".probe");
  for (let i = 0; i < 500; i++) {
    writeFileSync(probe, String(i));
    if (statSync(probe, { bigint: true }).mtimeNs > c) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error("the file-system clock did not advance");
}

describe("remembered content hashes", () => {
  it("a remembered hash is reused, and a same-size rewrite with the mtime restored is noticed", async () => {
    const dir = tempDir();
    const f = join(dir, "w.safetensors");
    const memo = join(dir, "memo");
    writeFileSync(f, "abc");
    utimesSync(f, 1_000_000_000, 1_000_000_000);
    await afterTick(f, dir);
    const a = await fileContentHash(f, memo);
    assert.deepEqual(a, { sha256: sha("abc"), remembered: false });
    assert.deepEqual(await fileContentHash(f, memo), { sha256: sha("abc"), remembered: true });
    // rewrite in place (same inode, same size), restore the mtime exactly
    const fd = openSync(f, "r+");
    writeSync(fd, "d", 2);
    closeSync(fd);
    utimesSync(f, 1_000_000_000, 1_000_000_000);
    assert.equal(statSync(f).mtimeMs, 1_000_000_000_000);
    assert.deepEqual(await fileContentHash(f, memo), { sha256: sha("abd"), remembered: false });
  });

  it("a status change alone (chmod) re-hashes; the hash is the same", async () => {
    const dir = tempDir();
    const f = join(dir, "w");
    const memo = join(dir, "memo");
    writeFileSync(f, "xyz");
    await afterTick(f, dir);
    await fileContentHash(f, memo);
    assert.equal((await fileContentHash(f, memo)).remembered, true);
    chmodSync(f, 0o600);
    const r = await fileContentHash(f, memo);
    assert.deepEqual(r, { sha256: sha("xyz"), remembered: false });
  });

  it("a record not newer than the file's ctime is not trusted (a write in the same clock tick)", async () => {
    const dir = tempDir();
    const f = join(dir, "w");
    const memo = join(dir, "memo");
    writeFileSync(f, "123");
    await afterTick(f, dir);
    await fileContentHash(f, memo);
    for (const rec of readdirSync(memo)) utimesSync(join(memo, rec), 946_684_800, 946_684_800); // back to 2000
    assert.equal((await fileContentHash(f, memo)).remembered, false);
  });

  it("a replaced file (new inode) and a copy are hashed; copies share one identity", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "a"));
    mkdirSync(join(dir, "b"));
    writeFileSync(join(dir, "a", "model.safetensors"), "same");
    writeFileSync(join(dir, "b", "model.safetensors"), "same");
    const memo = join(dir, "memo");
    assert.equal(await contentIdentity([join(dir, "a", "model.safetensors")], memo), await contentIdentity([join(dir, "b", "model.safetensors")], memo));
    writeFileSync(join(dir, "b", "model.safetensors"), "diff");
    assert.notEqual(await contentIdentity([join(dir, "a", "model.safetensors")], memo), await contentIdentity([join(dir, "b", "model.safetensors")], memo));
  });

  it("without a memo folder nothing is remembered", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "w"), "q");
    assert.equal((await fileContentHash(join(dir, "w"), null)).remembered, false);
    assert.equal((await fileContentHash(join(dir, "w"), null)).remembered, false);
  });
});

/** A fake complete cache entry of `bytes` bytes, last used at `t` (seconds). */
function fakeEntry(root: string, key: string, bytes: number, t: number): void {
  const d = join(root, key);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, "stage-0.onnx"), Buffer.alloc(bytes));
  writeFileSync(join(d, "stages.json"), JSON.stringify({ stages: 1, model: `/m/${key.slice(0, 4)}`, tower: "text", files: { "stage-0.onnx": bytes } }));
  utimesSync(join(d, "stages.json"), t, t);
}

const K = (c: string) => c.repeat(32);

describe("model cache folder", () => {
  it("evicts the least recently used entries down to the cap, never the one in use", () => {
    const root = tempDir();
    fakeEntry(root, K("a"), 1000, 1_000_000_100);
    fakeEntry(root, K("b"), 1000, 1_000_000_300);
    fakeEntry(root, K("c"), 1000, 1_000_000_200);
    evictCache(root, 2500, K("a"));
    // a is in use (kept although oldest), c is the least recently used of the others
    assert.deepEqual(listCache(root).map((e) => e.key).sort(), [K("a"), K("b")]);
    evictCache(root, 10, K("a"));
    assert.deepEqual(listCache(root).map((e) => e.key), [K("a")]);
  });

  it("lists entries oldest first with their model, tower, size and completeness", () => {
    const root = tempDir();
    fakeEntry(root, K("d"), 10, 1_000_000_500);
    fakeEntry(root, K("e"), 20, 1_000_000_400);
    writeFileSync(join(root, K("e"), "stage-0.onnx"), Buffer.alloc(5)); // truncated
    const l = listCache(root);
    assert.deepEqual(l.map((e) => [e.key, e.model, e.tower, e.complete]), [[K("e"), "/m/eeee", "text", false], [K("d"), "/m/dddd", "text", true]]);
    assert.ok(l[1]!.size > 10);
    assert.equal(l[1]!.lastUsed.getTime(), 1_000_000_500_000);
  });

  it("clears one entry by prefix, refuses unknown or ambiguous keys, clears all", () => {
    const root = tempDir();
    fakeEntry(root, K("1"), 10, 1_000_000_000);
    fakeEntry(root, `12${K("3").slice(2)}`, 10, 1_000_000_000);
    fakeEntry(root, K("4"), 10, 1_000_000_000);
    assert.throws(() => clearCache(root, ["1"]), /no model cache entry "1"/); // under 4 digits
    assert.throws(() => clearCache(root, ["9999"]), /no model cache entry "9999"/);
    assert.equal(listCache(root).length, 3, "a refused clear removes nothing");
    assert.equal(clearCache(root, ["4444"]).removed, 1);
    mkdirSync(join(root, "hashes"));
    const bytes = listCache(root).reduce((a, e) => a + e.size, 0);
    assert.deepEqual(clearCache(root), { removed: 2, bytes });
    assert.deepEqual(readdirSync(root), []);
  });

  it("size caps: bytes or K/M/G/T, the env variable, the documented default", () => {
    assert.equal(parseByteSize("123", "x"), 123);
    assert.equal(parseByteSize("1.5K", "x"), 1536);
    assert.equal(parseByteSize("500M", "x"), 500 * 1024 ** 2);
    assert.equal(parseByteSize("10GiB", "x"), 10 * 1024 ** 3);
    for (const bad of ["", "abc", "-1", "1e9", "5 pb"]) assert.throws(() => parseByteSize(bad, "SIGLIP2_CACHE_MAX"), (e: unknown) => e instanceof SiglipError && e.message.includes("SIGLIP2_CACHE_MAX"));
    assert.equal(cacheMaxBytes(undefined, {}), DEFAULT_CACHE_MAX_BYTES);
    assert.equal(cacheMaxBytes(undefined, { SIGLIP2_CACHE_MAX: "2G" }), 2 * 1024 ** 3);
    assert.equal(cacheMaxBytes(7, { SIGLIP2_CACHE_MAX: "2G" }), 7);
  });

  it("one resolver: an empty or relative XDG_CACHE_HOME is ignored by all three caches", () => {
    const home = homedir();
    for (const xdg of [undefined, "", "relative/cache", "./c"]) {
      const env = xdg === undefined ? {} : { XDG_CACHE_HOME: xdg };
      assert.equal(userCacheHome(env, "/h"), "/h/.cache");
      assert.equal(defaultModelCacheDir(env), join(home, ".cache", "siglip2", "onnx"));
      assert.equal(defaultDbPath(env), join(home, ".cache", "siglip2", "db"));
      assert.equal(defaultHfHome(env, "/h"), "/h/.cache/huggingface");
    }
    assert.equal(userCacheHome({ XDG_CACHE_HOME: "/x" }, "/h"), "/x");
    assert.equal(defaultModelCacheDir({ XDG_CACHE_HOME: "/x" }), "/x/siglip2/onnx");
    assert.equal(defaultDbPath({ XDG_CACHE_HOME: "/x" }), "/x/siglip2/db");
    assert.equal(defaultModelCacheDir({ SIGLIP2_CACHE: "off" }), null);
  });
});

describe("runtime errors and logits", () => {
  it("an onnxruntime failure is one SiglipError line naming the graph", async () => {
    const g = new Graph("probe");
    const x = g.input("x", "float32", [2]);
    g.node("Identity", [g.add(x, g.constF(1))], { outputs: ["y"] });
    g.output("y", "float32", [2]);
    const p = await Pipeline.create([g], { threads: 1 });
    const y = await p.run({ x: new ort.Tensor("float32", Float32Array.of(1, 2), [2]) });
    assert.deepEqual(Array.from(y["y"]!.data as Float32Array), [2, 3]);
    await assert.rejects(p.run({ x: new ort.Tensor("float32", Float32Array.of(1, 2, 3), [3]) }), (e: unknown) => {
      assert.ok(e instanceof SiglipError, String(e));
      assert.match(e.message, /^onnxruntime failed running the probe graph: /);
      assert.ok(!e.message.includes("\n"));
      return true;
    });
    await p.release();
  });

  it("logits are float64: logit_scale 300 stays finite, one past ln(MAX_VALUE) is an error", () => {
    const a = Float32Array.of(0.6, 0.8);
    const b = Float32Array.of(0.8, 0.6);
    const [[l]] = logitsPerImage([a], [b], { logitScale: 300, logitBias: -10 }) as [[number]];
    assert.ok(Number.isFinite(l) && l > 1e129, String(l));
    assert.equal(sigmoid(l), 1);
    assert.equal(sigmoid(-l), 0);
    assert.throws(() => logitsPerImage([a], [b], { logitScale: 710, logitBias: 0 }), (e: unknown) => e instanceof SiglipError && e.message.includes("logit_scale 710"));
  });
});

describe("duplicate JSON keys", () => {
  it("finds duplicates at any depth, after decoding escapes, and ignores look-alikes in strings", () => {
    assert.equal(findDuplicateKey(`{"a":1,"b":2}`), null);
    assert.deepEqual(findDuplicateKey(`{"a":1,"a":2}`), { key: "a", path: "$" });
    assert.deepEqual(findDuplicateKey(`{"a":1,"\\u0061":2}`), { key: "a", path: "$" });
    assert.deepEqual(findDuplicateKey(`{"t":{"dtype":"F32","shape":[1],"dtype":"I32"}}`), { key: "dtype", path: "$.t" });
    assert.deepEqual(findDuplicateKey(`{"x":[{"k":1},{"k":2,"k":3}]}`), { key: "k", path: "$.x[1]" });
    assert.equal(findDuplicateKey(`{"s":"\\"a\\":1,\\"a\\":2","a":{"a":1}}`), null);
    assert.equal(findDuplicateKey(`[{"a":1},{"a":1}]`), null);
    const deep = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    assert.equal(findDuplicateKey(deep), null); // no recursion limit
  });
});
