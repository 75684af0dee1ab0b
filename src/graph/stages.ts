/**
 * Running a tower's stages in order: shared by the Node runtime (src/graph/runtime.ts,
 * onnxruntime-node) and its browser stand-in (src/web/runtime.ts, onnxruntime-web). Each stage's
 * inputs come from the caller's feeds, except {@link CARRY_IN}, which is the previous stage's
 * {@link CARRY_OUT}; every output of every stage is collected by name.
 *
 * No onnxruntime import: sessions are typed by the little this file uses, so both packages'
 * `InferenceSession`s fit, and the browser bundle includes it.
 */
import type { SiglipError } from "../errors.js";

/** Names of the activation handed from one stage (output) to the next (input). */
export const CARRY_OUT = "carry_out";
export const CARRY_IN = "carry_in";

/** What a stage needs of an onnxruntime session (node or web). */
export interface StageSession<T> {
  readonly inputNames: readonly string[];
  run(feeds: Record<string, T>): Promise<{ readonly [name: string]: unknown }>;
  release(): Promise<void>;
}

/**
 * Run `sessions` in order on `feeds`; returns every non-carry output of every stage plus the
 * final carry. A failing stage is `fail("running the <name> graph", e)`.
 */
export async function runStages<T>(
  sessions: readonly StageSession<T>[],
  names: readonly string[],
  feeds: Record<string, T>,
  fail: (what: string, e: unknown) => SiglipError,
): Promise<Record<string, T>> {
  const results: Record<string, T> = {};
  let current: { readonly [name: string]: unknown } = feeds;
  for (const [i, s] of sessions.entries()) {
    const input: Record<string, T> = {};
    for (const n of s.inputNames) {
      const t = (n === CARRY_IN ? current[CARRY_OUT] : feeds[n]) as T | undefined;
      if (!t) throw new Error(`internal: stage input ${n} not provided`);
      input[n] = t;
    }
    try {
      current = await s.run(input);
    } catch (e) {
      throw fail(`running the ${names[i]} graph`, e);
    }
    for (const [k, v] of Object.entries(current)) results[k] = v as T;
  }
  return results;
}

/** Release every session, in order. */
export async function releaseStages(sessions: readonly StageSession<unknown>[]): Promise<void> {
  for (const s of sessions) await s.release();
}
