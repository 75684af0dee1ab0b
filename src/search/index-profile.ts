/**
 * Light-weight stage timers of `siglip2 index` (src/search/indexer.ts): wall-clock milliseconds
 * and calls per stage. On with `SIGLIP2_INDEX_PROFILE=1` (the run then prints one JSON line
 * `{"index_profile":{…}}` on stderr at its end) or by passing a {@link StageTimer} as
 * `IndexOptions.profile`. Stages may overlap (the next batch is hashed while one embeds), so
 * their sum can exceed `total_ms`. Used by bench/index-profile.ts.
 */

/** The stages of an index run. */
export type IndexStage =
  | "recover" // read the table's rows, drop superseded ones
  | "walk" // list the folders
  | "hash" // SHA-256 of each pending file (streamed)
  | "meta" // header read: filter columns (width, height, EXIF date)
  | "lookup" // vectors of known contents from the table
  | "embed" // decode + resize (worker pool) + model, as the image pipeline overlaps them
  | "recheck" // stat: did the file change while it was embedded?
  | "write" // the batch's LanceDB commit
  | "delete" // deleting replaced / gone rows
  | "compact" // merging fragments
  | "ann"; // building / refreshing the ANN index

/** Per-stage wall time of one run. */
export class StageTimer {
  private readonly ms = new Map<IndexStage, number>();
  private readonly calls = new Map<IndexStage, number>();
  private readonly t0 = performance.now();

  /** Run `fn`, adding its wall time to `stage`. */
  async time<T>(stage: IndexStage, fn: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      this.ms.set(stage, (this.ms.get(stage) ?? 0) + performance.now() - t);
      this.calls.set(stage, (this.calls.get(stage) ?? 0) + 1);
    }
  }

  /** `{total_ms, stages: {stage: {ms, calls}}}` since the timer was made. */
  report(): { total_ms: number; stages: Record<string, { ms: number; calls: number }> } {
    const stages: Record<string, { ms: number; calls: number }> = {};
    for (const [k, v] of this.ms) stages[k] = { ms: Math.round(v * 10) / 10, calls: this.calls.get(k)! };
    return { total_ms: Math.round((performance.now() - this.t0) * 10) / 10, stages };
  }
}

/** A timer when `SIGLIP2_INDEX_PROFILE` is set (to anything but "" or "0"). */
export function profileFromEnv(): StageTimer | undefined {
  const v = process.env["SIGLIP2_INDEX_PROFILE"];
  return v !== undefined && v !== "" && v !== "0" ? new StageTimer() : undefined;
}
