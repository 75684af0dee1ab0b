/**
 * Which files a model snapshot needs, and whether a cached snapshot
 * (`snapshots/<commit>/`, see ./cache.ts) has them: config.json, the weights
 * (model.safetensors, or model.safetensors.index.json and every shard it lists), the
 * tokenizer unless only the vision tower is wanted; optional files the repo may lack
 * (preprocessor_config.json, tokenizer_config.json, special_tokens_map.json).
 */
import { existsSync } from "node:fs";
import { SHARD_INDEX_FILE, readShardIndex } from "../weights/shard-index.js";
import type { HubContext } from "./settings.js";

export const CONFIG = "config.json";
export const WEIGHTS = "model.safetensors";
export const WEIGHTS_INDEX = SHARD_INDEX_FILE;
export const TOKENIZER = "tokenizer.json";
const PREPROCESSOR_FILES = ["preprocessor_config.json"];
const TOKENIZER_OPTIONAL_FILES = ["tokenizer_config.json", "special_tokens_map.json"];

export function wantsTokenizer(ctx: HubContext): boolean {
  return ctx.parts !== "vision";
}

/** The files fetched when the repo has them. */
export function optionalFiles(ctx: HubContext): string[] {
  return wantsTokenizer(ctx) ? [...PREPROCESSOR_FILES, ...TOKENIZER_OPTIONAL_FILES] : [...PREPROCESSOR_FILES];
}

/** The shard files the cached index of `commit` lists (sorted); throws a SiglipError for an invalid index. */
export function cachedShardNames(ctx: HubContext, commit: string): string[] {
  return [...readShardIndex(ctx.cache.pointerPath(commit, WEIGHTS_INDEX)).shards].sort();
}

/** What a snapshot lacks of what resolveModel promises (optional files excepted). */
export function missingFiles(ctx: HubContext, commit: string): string[] {
  const { cache } = ctx;
  const missing: string[] = [];
  if (!cache.has(commit, CONFIG)) missing.push(CONFIG);
  if (wantsTokenizer(ctx) && !cache.has(commit, TOKENIZER) && !cache.knownAbsent(commit, TOKENIZER)) {
    missing.push(TOKENIZER);
  }
  if (!cache.has(commit, WEIGHTS)) {
    if (cache.has(commit, WEIGHTS_INDEX)) {
      try {
        for (const s of cachedShardNames(ctx, commit)) if (!cache.has(commit, s)) missing.push(s);
      } catch {
        missing.push(WEIGHTS_INDEX);
      }
    } else {
      missing.push(WEIGHTS);
    }
  }
  return missing;
}

/** True when the snapshot of a commit id needs no request at all (optional files known present or absent). */
export function completeWithoutRequests(ctx: HubContext, commit: string): boolean {
  const optionalKnown = optionalFiles(ctx).every((f) => ctx.cache.has(commit, f) || ctx.cache.knownAbsent(commit, f));
  return missingFiles(ctx, commit).length === 0 && optionalKnown;
}

/** The cached snapshot for ctx.revision when it is complete, else a phrase saying what is wrong. */
export function cachedSnapshot(ctx: HubContext): { dir?: string; detail: string } {
  const where = `the cache (${ctx.cache.cacheDir})`;
  const commit = ctx.cache.cachedCommit(ctx.revision);
  if (commit === undefined || !existsSync(ctx.cache.snapshotDir(commit))) {
    return { detail: `${where} has no copy of revision ${ctx.revision}` };
  }
  const missing = missingFiles(ctx, commit);
  if (missing.length === 0) return { dir: ctx.cache.snapshotDir(commit), detail: "" };
  return { detail: `${where} has an incomplete copy of revision ${ctx.revision} (missing ${missing.join(", ")})` };
}
