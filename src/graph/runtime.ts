/**
 * Runs graphs built with {@link Graph} on onnxruntime-node.
 *
 * A tower may be split into several stages (each its own ONNX model) when its
 * weights would not fit in one protobuf (2 GB limit, e.g. giant-opt). Stages pass
 * their running activation from {@link CARRY_OUT} to {@link CARRY_IN}; every other output
 * is collected by name.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, homedir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { assertCommandLineSafe } from "./cmdline-guard.js";
import { writeModelFiles, type Graph } from "./graph.js";

/** Bump when the graphs a given checkpoint and options produce change (invalidates the model cache). */
export const GRAPH_VERSION = 1;

/**
 * Where built ONNX models are cached: `SIGLIP2_CACHE`, else ~/.cache/siglip2/onnx.
 * `SIGLIP2_CACHE=off` disables the cache.
 */
export function defaultModelCacheDir(env: NodeJS.ProcessEnv = process.env): string | null {
  const v = env["SIGLIP2_CACHE"];
  if (v === "off" || v === "0") return null;
  return v && v.length > 0 ? v : join(env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"), "siglip2", "onnx");
}

/** Names of the activation handed from one stage (output) to the next (input). */
export const CARRY_OUT = "carry_out";
export const CARRY_IN = "carry_in";

export interface RuntimeOptions {
  /** Intra-op threads; default: every CPU the process may use (os.availableParallelism()). */
  threads?: number;
  /**
   * onnxruntime graph optimisation level. Our inference graphs already use the fused
   * contrib ops, so "basic" (constant folding, redundant-node removal) runs as fast as
   * "all" and builds ~1.4 s sooner for B/16. Default "all".
   */
  optimizationLevel?: "disabled" | "basic" | "extended" | "all";
  /**
   * Model cache folder (default {@link defaultModelCacheDir}); null disables it. A cached
   * tower starts without reading or transforming any weight: onnxruntime memory-maps the
   * 64 KiB-aligned weight file, which also keeps a single copy of the weights in memory.
   */
  cacheDir?: string | null;
}

function sessionOptions(options: RuntimeOptions): ort.InferenceSession.SessionOptions {
  assertCommandLineSafe(); // onnxruntime would segfault on a long /proc/self/cmdline (see cmdline-guard.ts)
  const o: ort.InferenceSession.SessionOptions = {
    executionProviders: ["cpu"],
    graphOptimizationLevel: options.optimizationLevel ?? "all",
  };
  // onnxruntime's own default ran one thread on 2-vCPU machines (half speed): use every CPU.
  o.intraOpNumThreads = options.threads ?? availableParallelism();
  // Pre-packing keeps a second, re-laid-out copy of every MatMul weight (+~45 % RSS
  // for B/16) for no measurable speed-up on this CPU's MLAS kernels: off.
  o.extra = { session: { disable_prepacking: "1" } };
  if (process.env["SIGLIP2_ORT_PROFILE"]) {
    o.enableProfiling = true;
    o.profileFilePrefix = process.env["SIGLIP2_ORT_PROFILE"];
  }
  return o;
}

/** A sequence of onnxruntime sessions run as one model. */
export class Pipeline {
  private constructor(private readonly sessions: ort.InferenceSession[]) {}

  /**
   * Load the stages cached under `key` (see {@link RuntimeOptions.cacheDir}), or build them
   * with `build`, write them to the cache and load them from there. Falls back to building
   * in memory when the cache is disabled or cannot be written.
   */
  static async cached(key: unknown, build: () => Graph[], options: RuntimeOptions = {}): Promise<Pipeline> {
    const root = options.cacheDir === undefined ? defaultModelCacheDir() : options.cacheDir;
    if (root === null) return Pipeline.create(build(), options);
    const id = createHash("sha256").update(JSON.stringify({ v: GRAPH_VERSION, key })).digest("hex").slice(0, 32);
    const dir = join(root, id);
    const manifest = join(dir, "stages.json");
    if (!existsSync(manifest)) {
      const stages = build(); // checkpoint errors surface here, before touching the cache
      const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
      try {
        mkdirSync(tmp, { recursive: true });
        stages.forEach((g, i) => writeModelFiles(g, join(tmp, `stage-${i}.onnx`)));
        writeFileSync(join(tmp, "stages.json"), JSON.stringify({ stages: stages.length, key }));
      } catch {
        // read-only or full disk: the graphs gave up their weights while writing, so build again in memory
        rmSync(tmp, { recursive: true, force: true });
        return Pipeline.create(build(), options);
      }
      try {
        renameSync(tmp, dir); // atomic publish; a concurrent writer may have won: fine
      } catch {
        rmSync(tmp, { recursive: true, force: true });
      }
    }
    const n = (JSON.parse(readFileSync(manifest, "utf8")) as { stages: number }).stages;
    const sessions: ort.InferenceSession[] = [];
    for (let i = 0; i < n; i++) sessions.push(await ort.InferenceSession.create(join(dir, `stage-${i}.onnx`), sessionOptions(options)));
    return new Pipeline(sessions);
  }

  /** Serialise and load every stage. The graphs (and their weight arrays) can be dropped afterwards. */
  static async create(stages: Graph[], options: RuntimeOptions = {}): Promise<Pipeline> {
    const sessOpts = sessionOptions(options);
    const sessions: ort.InferenceSession[] = [];
    for (const g of stages) {
      const bytes = g.toModelBytes();
      sessions.push(await ort.InferenceSession.create(bytes, sessOpts));
    }
    return new Pipeline(sessions);
  }

  get stageCount(): number {
    return this.sessions.length;
  }

  /** Run all stages; returns every non-carry output of every stage plus the final carry. */
  async run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    const results: Record<string, ort.Tensor> = {};
    let current: Record<string, ort.Tensor> = feeds;
    for (const s of this.sessions) {
      const input: Record<string, ort.Tensor> = {};
      for (const n of s.inputNames) {
        const t = n === CARRY_IN ? current[CARRY_OUT] : feeds[n];
        if (!t) throw new Error(`internal: stage input ${n} not provided`);
        input[n] = t;
      }
      const out = await s.run(input);
      for (const [k, v] of Object.entries(out)) results[k] = v;
      current = out;
    }
    return results;
  }

  async release(): Promise<void> {
    for (const s of this.sessions) await s.release();
  }
}

export { ort };
