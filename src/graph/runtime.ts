/**
 * Runs graphs built with {@link Graph} on onnxruntime-node.
 *
 * A tower may be split into several stages (each its own ONNX model) when its
 * weights would not fit in one protobuf (2 GB limit, e.g. giant-opt). Stages pass
 * their running activation from {@link CARRY_OUT} to {@link CARRY_IN}; every other output
 * is collected by name.
 */
import * as ort from "onnxruntime-node";
import type { Graph } from "./graph.js";

/** Names of the activation handed from one stage (output) to the next (input). */
export const CARRY_OUT = "carry_out";
export const CARRY_IN = "carry_in";

export interface RuntimeOptions {
  /** Intra-op threads; default: onnxruntime's choice (all cores). */
  threads?: number;
}

/** A sequence of onnxruntime sessions run as one model. */
export class Pipeline {
  private constructor(private readonly sessions: ort.InferenceSession[]) {}

  /** Serialise and load every stage. The graphs (and their weight arrays) can be dropped afterwards. */
  static async create(stages: Graph[], options: RuntimeOptions = {}): Promise<Pipeline> {
    const sessOpts: ort.InferenceSession.SessionOptions = {
      executionProviders: ["cpu"],
      graphOptimizationLevel: "all",
    };
    if (options.threads !== undefined) sessOpts.intraOpNumThreads = options.threads;
    // Pre-packing keeps a second, re-laid-out copy of every MatMul weight (+~45 % RSS
    // for B/16) for no measurable speed-up on this CPU's MLAS kernels: off.
    sessOpts.extra = { session: { disable_prepacking: "1" } };
    if (process.env["SIGLIP2_ORT_PROFILE"]) {
      sessOpts.enableProfiling = true;
      sessOpts.profileFilePrefix = process.env["SIGLIP2_ORT_PROFILE"];
    }
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
