/**
 * `siglip2 cache list` and `siglip2 cache clear [KEY ...]`: the ONNX model cache
 * (src/graph/model-cache.ts). `list` prints one JSON line per entry, least recently used
 * first: `{key, model, tower, size, lastUsed, complete}`; `clear` removes every entry (and
 * the remembered weight hashes), or the entries named by key (or a unique key prefix of at
 * least 4 digits), and prints `{removed, bytes}`. `--dir` overrides `$SIGLIP2_CACHE`.
 */
import type { Command } from "commander";
import { SiglipError } from "../errors.js";
import { clearCache, listCache } from "../graph/model-cache.js";
import { defaultModelCacheDir } from "../user-dirs.js";

function cacheRoot(o: { dir?: string }): string {
  if (o.dir !== undefined) {
    if (o.dir === "") throw new SiglipError("usage", "--dir must not be empty");
    return o.dir;
  }
  const root = defaultModelCacheDir();
  if (root === null) throw new SiglipError("usage", "the model cache is disabled (SIGLIP2_CACHE=off); pass --dir to inspect a cache folder");
  return root;
}

/** Register `cache list` and `cache clear` on the program. */
export function registerCacheCommand(program: Command): void {
  const cache = program.command("cache").description("inspect or empty the ONNX model cache ($SIGLIP2_CACHE, default ~/.cache/siglip2/onnx)");
  cache
    .command("list")
    .description("one JSON line per cached tower: {key, model, tower, size, lastUsed, complete}, least recently used first")
    .option("--dir <path>", "cache folder (default $SIGLIP2_CACHE or ~/.cache/siglip2/onnx)")
    .action((o: { dir?: string }) => {
      for (const e of listCache(cacheRoot(o))) {
        process.stdout.write(`${JSON.stringify({ key: e.key, model: e.model, tower: e.tower, size: e.size, lastUsed: e.lastUsed.toISOString(), complete: e.complete })}\n`);
      }
    });
  cache
    .command("clear")
    .description("remove every cached tower, or those named by key (or a unique prefix of 4+ digits); prints {removed, bytes}")
    .argument("[keys...]", "cache keys from siglip2 cache list")
    .option("--dir <path>", "cache folder (default $SIGLIP2_CACHE or ~/.cache/siglip2/onnx)")
    .action((keys: string[], o: { dir?: string }) => {
      const r = clearCache(cacheRoot(o), keys);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    });
}
