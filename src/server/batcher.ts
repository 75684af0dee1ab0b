/**
 * Dynamic micro-batching: items submitted by concurrent requests are merged into
 * one model call.
 *
 * - A batch starts when `maxBatchSize` items are waiting, or `maxWaitMs` after the
 *   first waiting item arrived, whichever comes first. While a batch runs, new items
 *   queue up; when it ends, the next batch starts at once with what has queued.
 * - One batch runs at a time per batcher; batchers that share a {@link Gate} also
 *   take turns with each other (one forward pass at a time for the whole process, so
 *   the text and image towers do not fight over the cores).
 * - The queue is bounded: `submit` throws {@link QueueFullError} when the waiting
 *   items would exceed `maxQueue`, and {@link ClosedError} once `close()` was called.
 * - A request can be aborted (timeout, client gone): its waiting items leave the
 *   queue; items already in a running batch finish and are dropped.
 * - Results come back per request, in the order its items were submitted.
 */

/** The queue is full: answer 429 and let the client retry. */
export class QueueFullError extends Error {
  constructor(readonly waiting: number, readonly limit: number) {
    super(`server busy: ${waiting} items queued (limit ${limit}); retry later`);
    this.name = "QueueFullError";
  }
}

/** The batcher is shutting down: answer 503. */
export class ClosedError extends Error {
  constructor() {
    super("server is shutting down");
    this.name = "ClosedError";
  }
}

/** A mutex shared by batchers so that only one batch runs at a time. */
export class Gate {
  private tail: Promise<void> = Promise.resolve();

  /** Run `fn` when every earlier caller has finished. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(() => undefined, () => undefined);
    return result;
  }
}

export interface BatcherOptions<I, O> {
  /** Most items per model call. */
  maxBatchSize: number;
  /** How long the first waiting item may wait for others. */
  maxWaitMs: number;
  /** Most items waiting (not yet in a running batch). */
  maxQueue: number;
  /** The model call: one output per input, in order. */
  run: (items: I[]) => Promise<O[]>;
  /** Shared with other batchers to run one batch at a time overall. */
  gate?: Gate;
  /** Called when a batch starts, with its size (metrics, tests). */
  onBatch?: (size: number) => void;
}

interface Job<O> {
  results: O[];
  left: number;
  done: boolean;
  resolve: (r: O[]) => void;
  reject: (e: unknown) => void;
}

interface Entry<I, O> {
  item: I;
  job: Job<O>;
  index: number;
}

export interface BatcherStats {
  /** Items waiting. */
  waiting: number;
  /** Batches run so far. */
  batches: number;
  /** Items run so far. */
  items: number;
  /** Largest batch so far. */
  maxBatch: number;
  /** Count of batches by size: sizes[n] = batches of n items. */
  sizes: Record<number, number>;
}

export class MicroBatcher<I, O> {
  private queue: Array<Entry<I, O>> = [];
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  private readonly stat: BatcherStats = { waiting: 0, batches: 0, items: 0, maxBatch: 0, sizes: {} };

  constructor(private readonly opts: BatcherOptions<I, O>) {
    if (!(opts.maxBatchSize >= 1)) throw new RangeError("maxBatchSize must be at least 1");
    if (!(opts.maxWaitMs >= 0)) throw new RangeError("maxWaitMs must be at least 0");
    if (!(opts.maxQueue >= 1)) throw new RangeError("maxQueue must be at least 1");
  }

  /** Items waiting for a batch. */
  get waiting(): number {
    return this.queue.length;
  }

  /** True while a batch runs. */
  get busy(): boolean {
    return this.running;
  }

  stats(): BatcherStats {
    return { ...this.stat, waiting: this.queue.length, sizes: { ...this.stat.sizes } };
  }

  /**
   * Queue `items`; resolves with their outputs in order. Rejects with QueueFullError
   * when they do not fit, ClosedError after close(), `signal.reason` when aborted, or
   * the model call's error.
   */
  submit(items: I[], signal?: AbortSignal): Promise<O[]> {
    if (this.closed) return Promise.reject(new ClosedError());
    if (items.length === 0) return Promise.resolve([]);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.queue.length + items.length > this.opts.maxQueue) {
      return Promise.reject(new QueueFullError(this.queue.length, this.opts.maxQueue));
    }
    return new Promise<O[]>((resolve, reject) => {
      const job: Job<O> = { results: new Array<O>(items.length), left: items.length, done: false, resolve, reject };
      if (signal) {
        const onAbort = () => {
          if (job.done) return;
          job.done = true;
          this.queue = this.queue.filter((e) => e.job !== job);
          reject(signal.reason);
          this.checkIdle();
        };
        signal.addEventListener("abort", onAbort, { once: true });
        job.resolve = (r) => {
          signal.removeEventListener("abort", onAbort);
          resolve(r);
        };
        job.reject = (e) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        };
      }
      items.forEach((item, index) => this.queue.push({ item, job, index }));
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.queue.length >= this.opts.maxBatchSize || this.opts.maxWaitMs === 0 || this.closed) {
      this.startBatch();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        if (!this.running) this.startBatch();
      }, this.opts.maxWaitMs);
    }
  }

  private startBatch(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.queue.length === 0) return this.checkIdle();
    const batch = this.queue.splice(0, this.opts.maxBatchSize);
    this.running = true;
    const n = batch.length;
    this.stat.batches++;
    this.stat.items += n;
    this.stat.maxBatch = Math.max(this.stat.maxBatch, n);
    this.stat.sizes[n] = (this.stat.sizes[n] ?? 0) + 1;
    const call = async () => {
      this.opts.onBatch?.(n);
      return this.opts.run(batch.map((e) => e.item));
    };
    (this.opts.gate ? this.opts.gate.run(call) : call())
      .then(
        (out) => {
          if (out.length !== n) throw new Error(`batch function returned ${out.length} results for ${n} items`);
          batch.forEach((e, i) => {
            if (e.job.done) return;
            e.job.results[e.index] = out[i]!;
            if (--e.job.left === 0) {
              e.job.done = true;
              e.job.resolve(e.job.results);
            }
          });
        },
      )
      .catch((err: unknown) => {
        for (const e of batch) {
          if (e.job.done) continue;
          e.job.done = true;
          this.queue = this.queue.filter((q) => q.job !== e.job); // the rest of a failed request is moot
          e.job.reject(err);
        }
      })
      .finally(() => {
        this.running = false;
        if (this.queue.length > 0) this.startBatch(); // what queued meanwhile has waited long enough
        else this.checkIdle();
      });
  }

  private checkIdle(): void {
    if (this.running || this.queue.length > 0) return;
    const ws = this.idleWaiters;
    this.idleWaiters = [];
    ws.forEach((w) => w());
  }

  /** Refuse new items; resolves when everything queued or running has finished. */
  close(): Promise<void> {
    this.closed = true;
    if (this.queue.length > 0 && !this.running) this.startBatch();
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }
}
