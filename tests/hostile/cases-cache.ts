/**
 * The ONNX model cache as a hostile user meets it: weights replaced in place with the
 * mtime restored, damaged or foreign entries, unusable cache folders, bad size caps,
 * empty or relative XDG_CACHE_HOME, and `siglip2 cache list|clear`.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, truncateSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { copyFixture, tempDir } from "../harness/files.js";
import { listCache } from "../../src/graph/model-cache.js";
import { expectCleanError, expectCorrect, jsonLines, runCli, type CaseResult, type CliResult, type HostileCase } from "./harness.js";
import { IMG_47x61, embedText, freshCache, oneEmbedding } from "./weights-kit.js";


/** Embed IMG_47x61 in-process with the model cache at `cacheDir` (null: none). */
async function embedWith(dir: string, cacheDir: string | null, extra: { cacheMaxBytes?: number; text?: boolean } = {}): Promise<number[]> {
  const { SigLIP2 } = await import("../../src/api.js");
  const tower: { cacheDir: string | null; cacheMaxBytes?: number } = { cacheDir };
  if (extra.cacheMaxBytes !== undefined) tower.cacheMaxBytes = extra.cacheMaxBytes;
  const m = await SigLIP2.load(dir, { tower });
  try {
    const [e] = extra.text ? await m.embedTexts(["a"]) : await m.embedImages([IMG_47x61]);
    return Array.from(e!);
  } finally {
    await m.close();
  }
}

/** An in-process check: null when right, else what is wrong; a throw is an unclear error. */
async function inProcess(check: () => Promise<string | null>): Promise<CaseResult> {
  try {
    const why = await check();
    return why ? { outcome: "garbage", detail: why } : { outcome: "correct", detail: "ok" };
  } catch (e) {
    return { outcome: "unclear-error", detail: `threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}` };
  }
}

function maxAbs(a: number[], b: number[]): number {
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
}

interface Entry { key: string; model: string; tower: string; size: number; lastUsed: string; complete: boolean }

async function list(cache: string): Promise<{ r: CliResult; entries: Entry[] }> {
  const r = await runCli(["cache", "list"], { env: { SIGLIP2_CACHE: cache } });
  return { r, entries: jsonLines(r.stdout) as Entry[] };
}

/** Embed an image twice with one cache, damaging the cache in between: the second result must equal the first. */
function survivesDamage(id: string, damage: (cache: string, entryDir: string) => void): HostileCase {
  return {
    id,
    area: "cache",
    expect: "correct",
    run: () => inProcess(async () => {
      const cache = freshCache();
      const dir = copyFixture("fixres-f32");
      const first = await embedWith(dir, cache);
      const key = readdirSync(cache).find((n) => /^[0-9a-f]{32}$/.test(n))!;
      damage(cache, join(cache, key));
      const again = await embedWith(dir, cache);
      return maxAbs(again, first) < 1e-7 ? null : "a different embedding after the cache was damaged";
    }),
  };
}

/** Run one command with `env` and `cwd`, then check where the cache went. */
function xdgCase(id: string, xdg: string): HostileCase {
  return {
    id,
    area: "cache",
    expect: "correct",
    run: async () => {
      const home = tempDir("siglip2-home-");
      const cwd = tempDir("siglip2-cwd-");
      const r = await embedText(copyFixture("fixres-f32"), { cwd, env: { SIGLIP2_CACHE: "", XDG_CACHE_HOME: xdg, HOME: home } });
      return expectCorrect(r, (lines) => {
        const bad = oneEmbedding()(lines);
        if (bad) return bad;
        if (readdirSync(cwd).length > 0) return `the cache went under the current directory: ${readdirSync(cwd).join(", ")}`;
        return existsSync(join(home, ".cache", "siglip2", "onnx")) ? null : "no cache under ~/.cache/siglip2/onnx";
      });
    },
  };
}

const cases: HostileCase[] = [
  {
    // the weights rewritten in place, same size, mtime restored: must not serve the old graphs
    id: "cache-inplace-rewrite-restored-mtime",
    area: "cache",
    expect: "correct",
    run: () => inProcess(async () => {
      const cache = freshCache();
      const dir = copyFixture("fixres-f32");
      const p = join(dir, "model.safetensors");
      utimesSync(p, 1_000_000_000, 1_000_000_000);
      const before = await embedWith(dir, cache);
      // add 1 to the first patch-embedding bias value, in place (same inode, same size)
      const bytes = readFileSync(p);
      const n = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + n).toString()) as Record<string, { data_offsets: [number, number] }>;
      const at = 8 + n + header["vision_model.embeddings.patch_embedding.bias"]!.data_offsets[0];
      const v = Buffer.alloc(4);
      v.writeFloatLE(bytes.readFloatLE(at) + 1);
      const fd = openSync(p, "r+");
      writeSync(fd, v, 0, 4, at);
      closeSync(fd);
      utimesSync(p, 1_000_000_000, 1_000_000_000);
      const after = await embedWith(dir, cache);
      const fresh = await embedWith(dir, null);
      if (maxAbs(after, before) < 1e-6) return "the old (stale) embedding was served";
      return maxAbs(after, fresh) < 1e-7 ? null : "differs from an uncached run";
    }),
  },
  {
    // two copies of one checkpoint in two folders share one entry per tower (the key is the content)
    id: "cache-copies-share-entries",
    area: "cache",
    expect: "correct",
    run: () => inProcess(async () => {
      const cache = freshCache();
      await embedWith(copyFixture("fixres-f32"), cache, { text: true });
      await embedWith(copyFixture("fixres-f32"), cache, { text: true });
      const n = listCache(cache).length;
      return n === 1 ? null : `${n} entries for one text tower`;
    }),
  },
  {
    id: "cache-list-fields",
    area: "cache",
    expect: "correct",
    run: async () => {
      const cache = freshCache();
      const dir = copyFixture("fixres-f32");
      await embedWith(dir, cache);
      await embedWith(dir, cache, { text: true });
      const { r, entries } = await list(cache);
      return expectCorrect(r, () => {
        if (entries.length !== 2) return `${entries.length} entries`;
        const towers = entries.map((e) => e.tower).sort().join(",");
        if (towers !== "text,vision-fixres") return `towers ${towers}`;
        for (const e of entries) {
          if (!/^[0-9a-f]{32}$/.test(e.key) || e.model !== dir || !(e.size > 1000) || Number.isNaN(Date.parse(e.lastUsed)) || e.complete !== true) return `bad entry ${JSON.stringify(e)}`;
        }
        return null;
      });
    },
  },
  {
    id: "cache-clear-one-key",
    area: "cache",
    expect: "correct",
    run: async () => {
      const cache = freshCache();
      const dir = copyFixture("fixres-f32");
      await embedWith(dir, cache);
      await embedWith(dir, cache, { text: true });
      const { entries } = await list(cache);
      const r = await runCli(["cache", "clear", entries[0]!.key.slice(0, 8)], { env: { SIGLIP2_CACHE: cache } });
      const left = (await list(cache)).entries;
      return expectCorrect(r, (lines) => {
        const s = lines[0] as { removed?: number; bytes?: number };
        if (s.removed !== 1 || s.bytes !== entries[0]!.size) return `summary ${JSON.stringify(s)}`;
        return left.length === 1 && left[0]!.key === entries[1]!.key ? null : `left ${JSON.stringify(left)}`;
      });
    },
  },
  {
    id: "cache-clear-all",
    area: "cache",
    expect: "correct",
    run: async () => {
      const cache = freshCache();
      const dir = copyFixture("fixres-f32");
      await embedWith(dir, cache);
      await embedWith(dir, cache, { text: true });
      const r = await runCli(["cache", "clear"], { env: { SIGLIP2_CACHE: cache } });
      return expectCorrect(r, (lines) => {
        if ((lines[0] as { removed?: number }).removed !== 2) return `summary ${JSON.stringify(lines[0])}`;
        const left = readdirSync(cache);
        return left.length === 0 ? null : `left in the cache: ${left.join(", ")}`;
      });
    },
  },
  {
    id: "cache-clear-unknown-key",
    area: "cache",
    expect: "clean-error",
    run: async () => {
      const cache = freshCache();
      await embedWith(copyFixture("fixres-f32"), cache, { text: true });
      const r = await runCli(["cache", "clear", "ffffffffffff"], { env: { SIGLIP2_CACHE: cache } });
      const res = expectCleanError(r, { mentions: ["no model cache entry \"ffffffffffff\"", cache] });
      return res.outcome === "clean-error" && (await list(cache)).entries.length !== 1 ? { outcome: "data-lost", detail: "an entry was removed" } : res;
    },
  },
  {
    id: "cache-clear-short-prefix",
    area: "cache",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["cache", "clear", "ab"], { env: { SIGLIP2_CACHE: freshCache() } }), { mentions: ["no model cache entry \"ab\""] }),
  },
  {
    id: "cache-list-disabled",
    area: "cache",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["cache", "list"], { env: { SIGLIP2_CACHE: "off" } }), { mentions: ["SIGLIP2_CACHE=off"] }),
  },
  {
    id: "cache-list-missing-folder",
    area: "cache",
    expect: "correct",
    run: async () => expectCorrect(await runCli(["cache", "list", "--dir", join(tempDir(), "none")]), (lines) => (lines.length === 0 ? null : "output for an empty cache")),
  },
  {
    id: "cache-list-ignores-junk",
    area: "cache",
    expect: "correct",
    run: async () => {
      const cache = freshCache();
      await embedWith(copyFixture("fixres-f32"), cache, { text: true });
      writeFileSync(join(cache, "notes.txt"), "hello");
      mkdirSync(join(cache, "abc"));
      writeFileSync(join(cache, "0123456789abcdef0123456789abcdef"), "a file, not an entry");
      const { r, entries } = await list(cache);
      return expectCorrect(r, () => (entries.length === 1 && entries[0]!.tower === "text" ? null : `entries ${JSON.stringify(entries)}`));
    },
  },
  xdgCase("cache-empty-xdg-cache-home", ""),
  xdgCase("cache-relative-xdg-cache-home", "rel-cache"),
  survivesDamage("cache-garbage-manifest", (_c, e) => writeFileSync(join(e, "stages.json"), "{\"stages\": \"many\"")),
  survivesDamage("cache-missing-stage-data", (_c, e) => rmSync(join(e, "stage-0.onnx.data"))),
  survivesDamage("cache-truncated-stage-data", (_c, e) => truncateSync(join(e, "stage-0.onnx.data"), 1000)),
  survivesDamage("cache-truncated-stage-graph", (_c, e) => truncateSync(join(e, "stage-0.onnx"), 10)),
  survivesDamage("cache-entry-emptied", (_c, e) => { for (const f of readdirSync(e)) rmSync(join(e, f)); }),
  survivesDamage("cache-read-only-folder", (c, e) => { chmodSync(e, 0o555); chmodSync(c, 0o555); }),
  survivesDamage("cache-damaged-hash-record", (c) => { for (const f of readdirSync(join(c, "hashes"))) writeFileSync(join(c, "hashes", f), "{\"sha256\": 1"); }),
  {
    // a cache path that is a regular file: the towers are built in memory, results unchanged
    id: "cache-root-is-a-file",
    area: "cache",
    expect: "correct",
    run: async () => {
      const f = join(tempDir(), "cache-file");
      writeFileSync(f, "not a folder");
      return inProcess(async () => {
        const a = await embedWith(copyFixture("fixres-f32"), f);
        const b = await embedWith(copyFixture("fixres-f32"), null);
        return maxAbs(a, b) < 1e-7 ? null : "differs from an uncached run";
      });
    },
  },
  {
    id: "cache-max-not-a-size",
    area: "cache",
    expect: "clean-error",
    run: async () => expectCleanError(await embedText(copyFixture("fixres-f32"), { env: { SIGLIP2_CACHE: freshCache(), SIGLIP2_CACHE_MAX: "lots" } }), { mentions: ["SIGLIP2_CACHE_MAX", "\"lots\""] }),
  },
  {
    // a 1-byte cap: each new entry evicts the others, the one in use is kept, results are right
    id: "cache-max-evicts-lru",
    area: "cache",
    expect: "correct",
    run: () => inProcess(async () => {
      const cache = freshCache();
      const dir = copyFixture("fixres-f32");
      const img = await embedWith(dir, cache, { cacheMaxBytes: 1 });
      await embedWith(dir, cache, { cacheMaxBytes: 1, text: true });
      const towers = listCache(cache).map((e) => e.tower);
      if (towers.join() !== "text") return `entries after eviction: ${towers.join()}`;
      return maxAbs(await embedWith(dir, cache, { cacheMaxBytes: 1 }), img) < 1e-7 ? null : "a rebuilt entry gives another embedding";
    }),
  },
  {
    // a generous cap in K/M/G notation keeps both entries
    id: "cache-max-with-suffix",
    area: "cache",
    expect: "correct",
    run: async () => {
      const cache = freshCache();
      const r = await runCli(["embed", "--model", copyFixture("fixres-f32"), "--image", IMG_47x61, "--text", "a"], { env: { SIGLIP2_CACHE: cache, SIGLIP2_CACHE_MAX: "64M" } });
      return expectCorrect(r, () => (listCache(cache).length === 2 ? null : `${listCache(cache).length} entries`));
    },
  },
  {
    // a config change alone (same weights) gives a new entry, not the old graphs
    id: "cache-config-change-new-entry",
    area: "cache",
    expect: "correct",
    run: () => inProcess(async () => {
      const cache = freshCache();
      const dir = copyFixture("fixres-f32");
      const a = await embedWith(dir, cache, { text: true });
      const cfgPath = join(dir, "config.json");
      const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
      cfg.text_config.layer_norm_eps = 0.5;
      writeFileSync(cfgPath, JSON.stringify(cfg));
      const b = await embedWith(dir, cache, { text: true });
      return maxAbs(a, b) > 1e-4 ? null : "the embedding did not change with layer_norm_eps";
    }),
  },
];

export { cases };
