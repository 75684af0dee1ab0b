/** The micro-batcher behind the server (src/server/batcher.ts), with a fake model call. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ClosedError, Gate, MicroBatcher, QueueFullError } from "../src/server/batcher.js";

/** A batcher whose "model" doubles numbers after `delayMs`, recording each batch. */
function doubler(opts: { maxBatchSize?: number; maxWaitMs?: number; maxQueue?: number; delayMs?: number; gate?: Gate; fail?: (xs: number[]) => boolean }) {
  const batches: number[][] = [];
  let running = 0;
  let maxRunning = 0;
  const b = new MicroBatcher<number, number>({
    maxBatchSize: opts.maxBatchSize ?? 8,
    maxWaitMs: opts.maxWaitMs ?? 10,
    maxQueue: opts.maxQueue ?? 100,
    ...(opts.gate ? { gate: opts.gate } : {}),
    run: async (xs) => {
      batches.push(xs);
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(opts.delayMs ?? 0);
      running--;
      if (opts.fail?.(xs)) throw new Error("model failed");
      return xs.map((x) => 2 * x);
    },
  });
  return { b, batches, maxRunning: () => maxRunning };
}

describe("micro-batcher", () => {
  it("merges concurrent submits into one batch and returns each caller its own results in order", async () => {
    const { b, batches } = doubler({ maxWaitMs: 20 });
    const rs = await Promise.all([b.submit([1]), b.submit([2, 3]), b.submit([4])]);
    assert.deepEqual(rs, [[2], [4, 6], [8]]);
    assert.deepEqual(batches, [[1, 2, 3, 4]]);
    assert.deepEqual(b.stats().sizes, { 4: 1 });
  });

  it("a full batch starts at once; a lone item waits at most maxWaitMs", async () => {
    const { b, batches } = doubler({ maxBatchSize: 2, maxWaitMs: 10_000 });
    const t0 = Date.now();
    assert.deepEqual(await b.submit([1, 2]), [2, 4]);
    assert.ok(Date.now() - t0 < 1000);
    const { b: b2 } = doubler({ maxWaitMs: 30 });
    const t1 = Date.now();
    await b2.submit([5]);
    const waited = Date.now() - t1;
    assert.ok(waited >= 25 && waited < 1000, `waited ${waited} ms`);
    assert.deepEqual(batches, [[1, 2]]);
  });

  it("splits a large request across batches and reassembles it; items queued during a batch form the next one", async () => {
    const { b, batches } = doubler({ maxBatchSize: 3, maxWaitMs: 0, delayMs: 20 });
    const a = b.submit([1, 2, 3, 4, 5, 6, 7]);
    await sleep(5);
    const c = b.submit([8]);
    assert.deepEqual(await a, [2, 4, 6, 8, 10, 12, 14]);
    assert.deepEqual(await c, [16]);
    assert.deepEqual(batches, [[1, 2, 3], [4, 5, 6], [7, 8]]);
  });

  it("a full queue refuses with QueueFullError; waiting items count, running ones do not", async () => {
    const { b } = doubler({ maxBatchSize: 1, maxWaitMs: 0, maxQueue: 2, delayMs: 30 });
    const first = b.submit([1]); // starts running at once
    const queued = b.submit([2, 3]); // fills the queue
    assert.equal(b.waiting, 2);
    await assert.rejects(b.submit([4]), (e: unknown) => e instanceof QueueFullError && /2 items queued \(limit 2\)/.test(e.message));
    assert.deepEqual(await first, [2]);
    assert.deepEqual(await queued, [4, 6]);
  });

  it("an aborted request leaves the queue; its running items are dropped", async () => {
    const { b, batches } = doubler({ maxBatchSize: 1, maxWaitMs: 0, delayMs: 30 });
    const ac = new AbortController();
    const first = b.submit([1]);
    const aborted = b.submit([2, 3], ac.signal);
    ac.abort(new Error("timeout"));
    await assert.rejects(aborted, /timeout/);
    assert.equal(b.waiting, 0);
    assert.deepEqual(await first, [2]);
    assert.deepEqual(batches, [[1]]);
    const pre = new AbortController();
    pre.abort(new Error("already"));
    await assert.rejects(b.submit([9], pre.signal), /already/);
  });

  it("a failing model call rejects the requests in that batch only", async () => {
    const { b } = doubler({ maxBatchSize: 2, maxWaitMs: 0, fail: (xs) => xs.includes(13) });
    const [bad, good] = await Promise.allSettled([b.submit([13, 1]), b.submit([2])]);
    assert.equal(bad.status, "rejected");
    assert.deepEqual(good, { status: "fulfilled", value: [4] });
  });

  it("close() drains what is queued, then refuses new items with ClosedError", async () => {
    const { b } = doubler({ maxBatchSize: 1, maxWaitMs: 0, delayMs: 10 });
    const pending = [b.submit([1]), b.submit([2]), b.submit([3])];
    await b.close();
    assert.deepEqual(await Promise.all(pending), [[2], [4], [6]]);
    await assert.rejects(b.submit([4]), ClosedError);
    await b.close();
  });

  it("batchers sharing a gate never run at the same time", async () => {
    const gate = new Gate();
    let running = 0;
    let overlap = false;
    const mk = () =>
      new MicroBatcher<number, number>({
        maxBatchSize: 2, maxWaitMs: 0, maxQueue: 100, gate,
        run: async (xs) => {
          if (++running > 1) overlap = true;
          await sleep(5);
          running--;
          return xs;
        },
      });
    const [x, y] = [mk(), mk()];
    await Promise.all([x.submit([1, 2, 3, 4]), y.submit([5, 6, 7]), x.submit([8]), y.submit([9])]);
    assert.equal(overlap, false);
  });
});
