/**
 * Runs graphs built with {@link Graph} on onnxruntime-node.
 *
 * A tower may be split into several stages (each its own ONNX model) when its
 * weights would not fit in one protobuf (2 GB limit, e.g. giant-opt). Stages pass
 * their running activation from {@link CARRY_OUT} to {@link CARRY_IN}; every other output
 * is collected by name.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { SiglipError } from "../errors.js";
import { releaseStages, runStages } from "./stages.js";
import { writeModelFiles, type Graph } from "./graph.js";
import { sessionOptions, type SessionSettings } from "./session-options.js";
import { HASHES_DIR, MANIFEST, cacheMaxBytes, defaultModelCacheDir, evictCache, readManifest, touchEntry, type Manifest } from "./model-cache.js";

export { defaultModelCacheDir } from "./model-cache.js";

/** Bump when the graphs a given checkpoint and options produce change (invalidates the model cache). */
export const GRAPH_VERSION = 2;

/** This package's version (part of every cache key: a new release never reuses old graphs). */
export const PACKAGE_VERSION: string = (() => {
  try {
    const v = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown }).version;
    return typeof v === "string" ? v : "unknown";
  } catch {
    return "unknown";
  }
})();

// onnxruntime's own log goes to stderr in colour and several lines; every failure is
// reported instead as one SiglipError line (see ortError), so only fatal messages are logged.
ort.env.logLevel = "fatal";

/** An onnxruntime failure as one line naming what was being done. */
export function ortError(what: string, e: unknown): SiglipError {
  const raw = e instanceof Error ? e.message : String(e);
  const line = raw.split("\n").map((l) => l.trim()).filter((l) => l.length > 0).join(" ").replace(/\s+/g, " ");
  const msg = line.length > 300 ? `${line.slice(0, 300)}…` : line;
  return new SiglipError("runtime", `onnxruntime failed ${what}: ${msg}`, { cause: e });
}

export { CARRY_IN, CARRY_OUT } from "./stages.js";

export interface RuntimeOptions extends SessionSettings {
  /**
   * Model cache folder (default {@link defaultModelCacheDir}); null disables it. A cached
   * tower starts without reading or transforming any weight: onnxruntime memory-maps the
   * 64 KiB-aligned weight file, which also keeps a single copy of the weights in memory.
   */
  cacheDir?: string | null;
  /** Cap on the model cache's total size in bytes (default `$SIGLIP2_CACHE_MAX`, else 10 GiB); see src/graph/model-cache.ts. */
  cacheMaxBytes?: number;
}

/** What identifies a cached pipeline: a label for `siglip2 cache list` and the key material. */
export interface CacheSpec {
  /** The checkpoint folder (shown by `siglip2 cache list`). */
  model: string;
  /** The tower ("vision-fixres", "vision-naflex", "text"). */
  tower: string;
  /**
   * The key material: everything the graphs depend on. Gets the folder where weight-file
   * hashes may be remembered (src/weights/fingerprint.ts).
   */
  key: (hashDir: string) => Promise<unknown> | unknown;
}

function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    /* not ours to remove, or already gone */
  }
}

async function createSession(model: string | Uint8Array, name: string, opts: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  try {
    return typeof model === "string" ? await ort.InferenceSession.create(model, opts) : await ort.InferenceSession.create(model, opts);
  } catch (e) {
    throw ortError(`to load the ${name} graph`, e);
  }
}

/** A sequence of onnxruntime sessions run as one model. */
export class Pipeline {
  private constructor(private readonly sessions: ort.InferenceSession[], private readonly names: string[]) {}

  /**
   * Load the stages cached under the key of `spec` (see {@link RuntimeOptions.cacheDir}), or
   * build them with `build`, write them to the cache and load them from there. Falls back
   * to building in memory when the cache is disabled or cannot be written. A damaged entry
   * (a stage file deleted, a manifest cut short) is rebuilt. A new entry may evict the
   * least recently used ones (src/graph/model-cache.ts).
   */
  static async cached(spec: CacheSpec, build: () => Graph[], options: RuntimeOptions = {}): Promise<Pipeline> {
    const root = options.cacheDir === undefined ? defaultModelCacheDir() : options.cacheDir;
    if (root === null) return Pipeline.create(build(), options);
    const maxBytes = cacheMaxBytes(options.cacheMaxBytes);
    const keyMaterial = await spec.key(join(root, HASHES_DIR));
    const id = createHash("sha256").update(JSON.stringify({ v: GRAPH_VERSION, pkg: PACKAGE_VERSION, key: keyMaterial })).digest("hex").slice(0, 32);
    const dir = join(root, id);
    let manifest = readManifest(dir);
    let built = false;
    if (manifest === null) {
      const stages = build(); // checkpoint errors surface here, before touching the cache
      if (!Pipeline.publish(stages, dir, spec)) return Pipeline.create(build(), options);
      built = true;
      manifest = readManifest(dir);
      if (manifest === null) return Pipeline.create(build(), options); // removed meanwhile by another process
      evictCache(root, maxBytes, id);
    }
    try {
      const p = await Pipeline.load(dir, manifest, options);
      touchEntry(dir);
      if (!built && manifest.model !== spec.model) Pipeline.relabel(dir, manifest, spec);
      return p;
    } catch (e) {
      if (built) throw e; // just written and still failing: a real onnxruntime problem
      // a damaged entry: build it again
      removeQuietly(dir);
      if (!Pipeline.publish(build(), dir, spec)) return Pipeline.create(build(), options);
      const m = readManifest(dir);
      if (m === null) return Pipeline.create(build(), options);
      return Pipeline.load(dir, m, options);
    }
  }

  private static async load(dir: string, m: Manifest, options: RuntimeOptions): Promise<Pipeline> {
    const opts = sessionOptions(options);
    const names = Array.from({ length: m.stages }, (_, i) => m.names?.[i] ?? `stage ${i}`);
    const sessions: ort.InferenceSession[] = [];
    try {
      for (let i = 0; i < m.stages; i++) sessions.push(await createSession(join(dir, `stage-${i}.onnx`), names[i]!, opts));
    } catch (e) {
      for (const s of sessions) await s.release().catch(() => undefined);
      throw e;
    }
    return new Pipeline(sessions, names);
  }

  /** Write `stages` as the entry `dir` (atomically, via a temporary folder). False when the cache cannot be written. */
  private static publish(stages: Graph[], dir: string, spec: CacheSpec): boolean {
    const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
    try {
      mkdirSync(tmp, { recursive: true });
      stages.forEach((g, i) => writeModelFiles(g, join(tmp, `stage-${i}.onnx`)));
      const files: Record<string, number> = {};
      for (const f of readdirSync(tmp)) files[f] = statSync(join(tmp, f)).size;
      const m: Manifest = { stages: stages.length, names: stages.map((g) => g.name), model: spec.model, tower: spec.tower, version: PACKAGE_VERSION, files };
      writeFileSync(join(tmp, MANIFEST), JSON.stringify(m));
    } catch {
      // read-only or full disk (or the cache path is a file): the graphs gave up their
      // weights while writing, so the caller builds again in memory
      removeQuietly(tmp);
      return false;
    }
    try {
      if (readManifest(dir) === null) rmSync(dir, { recursive: true, force: true }); // a damaged entry in the way
      renameSync(tmp, dir); // atomic publish
    } catch {
      removeQuietly(tmp); // a concurrent writer won: fine
    }
    return true;
  }

  /** Record the folder that used an entry last (best effort). */
  private static relabel(dir: string, m: Manifest, spec: CacheSpec): void {
    try {
      const tmp = join(dir, `${MANIFEST}.tmp-${process.pid}`);
      writeFileSync(tmp, JSON.stringify({ ...m, model: spec.model }));
      renameSync(tmp, join(dir, MANIFEST));
    } catch {
      /* read-only */
    }
  }

  /** Serialise and load every stage. The graphs (and their weight arrays) can be dropped afterwards. */
  static async create(stages: Graph[], options: RuntimeOptions = {}): Promise<Pipeline> {
    const sessOpts = sessionOptions(options);
    const sessions: ort.InferenceSession[] = [];
    for (const g of stages) sessions.push(await createSession(g.toModelBytes(), g.name, sessOpts));
    return new Pipeline(sessions, stages.map((g) => g.name));
  }

  get stageCount(): number {
    return this.sessions.length;
  }

  /** Run all stages; returns every non-carry output of every stage plus the final carry (src/graph/stages.ts). */
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    return runStages(this.sessions, this.names, feeds, ortError);
  }

  release(): Promise<void> {
    return releaseStages(this.sessions);
  }
}

export { ort };
