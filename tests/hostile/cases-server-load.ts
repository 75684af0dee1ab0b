/**
 * The server under load and at its edges (area "server"): a full queue (429, then recovery),
 * the request deadline (504, queued work withdrawn), clients that hang up mid-request,
 * non-finite model outputs, graceful shutdown with a request in flight, and `siglip2 serve`
 * option conflicts.
 *
 * One server for the file, over the fixture model slowed down per forward pass (a stand-in for
 * a real model; each case sets how much) with one input per batch, a queue of 4 and a 3 s
 * deadline. Its cases take turns (a lock), because each reads queue states the others would
 * disturb. The shutdown case closes a server, so it starts its own.
 */
import { readFileSync } from "node:fs";
import { createServer as netServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SigLIP2 } from "../../src/api.js";
import { SiglipError } from "../../src/errors.js";
import { FIXTURES } from "../harness/paths.js";
import { expectCleanError, expectHttpCorrect, expectHttpError, httpRequest, runCli, type CaseResult, type HostileCase } from "./harness.js";
import { healthy, listen, postJson, sharedServer, thenHealthy, type Served } from "./server-kit.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const TIMEOUT_MS = 3000;
const PNG_1X1 = readFileSync(join(FIXTURES, "images", "px_1x1.png")).toString("base64");
/** How a slowed model behaves: forward-pass delay, and NaN outputs while `poison` is set (a checkpoint that overflows). */
interface Slowness {
  delayMs: number;
  poison: boolean;
}

/** The shared server's model (set per case, one case at a time: see `exclusive`). */
const shared: Slowness = { delayMs: 200, poison: false };

/** The model with each forward pass slowed down, and NaN outputs while `st.poison` is set. */
function slowed(model: SigLIP2, st: Slowness = shared): SigLIP2 {
  const m = Object.create(model) as SigLIP2;
  const nan = (vs: Float32Array[]) => (st.poison ? vs.map((v) => new Float32Array(v.length).fill(Number.NaN)) : vs);
  m.embedTokenIds = async (...a) => {
    await sleep(st.delayMs);
    return nan(await model.embedTokenIds(...a));
  };
  m.imageFeaturesSettled = async (...a) => {
    await sleep(st.delayMs);
    const r = await model.imageFeaturesSettled(...a);
    return st.poison ? r.map((x) => (x instanceof SiglipError ? x : { ...x, embedding: new Float32Array(x.embedding.length).fill(Number.NaN) })) : r;
  };
  return m;
}

const server = sharedServer(async (): Promise<Served> => {
  const model = await SigLIP2.load(F32);
  const s = await listen(slowed(model), { maxBatchSize: 1, maxWaitMs: 0, maxQueue: 4, maxInputs: 4, requestTimeoutMs: TIMEOUT_MS });
  return { ...s, model };
});

let lock: Promise<unknown> = Promise.resolve();
/** Run `fn` on the shared server, one case at a time, with forward passes of `ms`. */
function exclusive(ms: number, fn: (s: Served) => Promise<CaseResult>): () => Promise<CaseResult> {
  return () => {
    const r = lock.then(() => server.use(async (s) => {
      shared.delayMs = ms;
      try {
        const out = await fn(s);
        shared.delayMs = 0;
        return await thenHealthy(s.url, out);
      } finally {
        shared.delayMs = 200;
      }
    }));
    lock = r.catch(() => undefined);
    return r;
  };
}

interface Stats {
  batches: { text: { waiting: number; items: number; batches: number }; image: { waiting: number; items: number } };
}
async function stats(url: string): Promise<Stats> {
  return (await httpRequest(`${url}/stats`, { timeoutMs: 3000 })).json as Stats;
}
/** Poll until `cond` holds (at most `ms`). */
async function until(cond: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await cond()) return true;
    await sleep(20);
  }
  return false;
}
const idle = (url: string) => until(async () => {
  const s = await stats(url);
  return s.batches.text.waiting === 0 && s.batches.image.waiting === 0;
});
const fine = (url: string) => postJson(`${url}/v1/embeddings`, { input: "after" });

export const cases: HostileCase[] = [
  {
    id: "server-queue-full-then-recovers", area: "server", expect: "clean-error",
    run: exclusive(1000, async (s) => {
      const base = (await stats(s.url)).batches.text.batches;
      const first = postJson(`${s.url}/v1/embeddings`, { input: "one" });
      await until(async () => (await stats(s.url)).batches.text.batches > base);
      const second = postJson(`${s.url}/v1/embeddings`, { input: ["two", "three", "four"] });
      await until(async () => (await stats(s.url)).batches.text.waiting >= 3);
      const full = expectHttpError(await postJson(`${s.url}/v1/embeddings`, { input: ["five", "six"] }), { status: 429, mentions: ["busy", "limit 4"] });
      // (The queued one may run out of time on a slow machine: 504 is right for it then.)
      const [a, b] = await Promise.all([first, second]);
      if (a.status !== 200 || ![200, 504].includes(b.status)) return { outcome: "unclear-error", detail: `the queued requests got ${a.status} and ${b.status}` };
      const again = await fine(s.url);
      return again.status === 200 ? full : { outcome: "unclear-error", detail: `no recovery after the queue drained: HTTP ${again.status}` };
    }),
  },
  {
    id: "server-retry-after-header", area: "server", expect: "correct",
    run: exclusive(1000, async (s) => {
      const base = (await stats(s.url)).batches.text.batches;
      const first = postJson(`${s.url}/v1/embeddings`, { input: ["a", "b", "c", "d"] });
      await until(async () => (await stats(s.url)).batches.text.batches > base);
      const r = await postJson(`${s.url}/v1/embeddings`, { input: ["d", "e"] });
      await first;
      return expectHttpCorrect(r, (_b, res) => (res.headers.get("retry-after") === "1" ? null : `Retry-After ${res.headers.get("retry-after")}`), 429);
    }),
  },
  {
    id: "server-many-concurrent-requests", area: "server", expect: "correct", timeoutMs: 40_000,
    run: exclusive(500, async (s) => {
      const rs = await Promise.all(Array.from({ length: 16 }, (_, i) => postJson(`${s.url}/v1/embeddings`, { input: `caption ${i}` }, {}, 30_000)));
      const codes = rs.map((r) => r.status);
      const other = codes.filter((c) => c !== 200 && c !== 429 && c !== 504);
      await idle(s.url);
      const again = await fine(s.url);
      return expectHttpCorrect(again, () => {
        if (other.length > 0) return `unexpected statuses ${JSON.stringify(codes)}`;
        if (!codes.includes(429)) return `no 429 for 16 requests on a queue of 4: ${JSON.stringify(codes)}`;
        return codes.includes(200) ? null : `nothing served: ${JSON.stringify(codes)}`;
      });
    }),
  },
  {
    id: "server-deadline-withdraws-queued-work", area: "server", expect: "clean-error",
    run: exclusive(1000, async (s) => {
      const before = (await stats(s.url)).batches.text.items;
      // 4 inputs at 1 s each cannot finish within 3 s.
      const r = expectHttpError(await postJson(`${s.url}/v1/embeddings`, { input: ["a", "b", "c", "d"] }), { status: 504, mentions: [`timed out after ${TIMEOUT_MS} ms`] });
      if (!(await idle(s.url))) return { outcome: "hang", detail: "the queue did not empty after the deadline" };
      await sleep(1100);
      const ran = (await stats(s.url)).batches.text.items - before;
      return ran < 4 ? r : { outcome: "garbage", detail: `all ${ran} inputs ran after the request had timed out` };
    }),
  },
  {
    id: "server-client-hangs-up", area: "server", expect: "correct",
    run: exclusive(300, async (s) => {
      const st = await stats(s.url);
      const ac = new AbortController();
      const gone = fetch(`${s.url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: ["w", "x", "y", "z"] }), signal: ac.signal }).catch(() => null);
      await until(async () => (await stats(s.url)).batches.text.batches > st.batches.text.batches);
      ac.abort();
      await gone;
      if (!(await idle(s.url))) return { outcome: "hang", detail: "the queue did not empty after the client left" };
      await sleep(400);
      const ran = (await stats(s.url)).batches.text.items - st.batches.text.items;
      return expectHttpCorrect(await fine(s.url), () => (ran <= 2 ? null : `${ran} of 4 inputs ran after the client had gone`));
    }),
  },
  {
    id: "server-nan-text-embedding", area: "server", expect: "clean-error",
    run: exclusive(0, async (s) => {
      shared.poison = true;
      try {
        return expectHttpError(await postJson(`${s.url}/v1/embeddings`, { input: ["a cat"] }), { status: 500, mentions: ["input[0]", "not finite"] });
      } finally {
        shared.poison = false;
      }
    }),
  },
  {
    id: "server-nan-classify", area: "server", expect: "clean-error",
    run: exclusive(0, async (s) => {
      shared.poison = true;
      try {
        return expectHttpError(await postJson(`${s.url}/v1/classify`, { images: [PNG_1X1], labels: ["never seen before label"] }), { status: 500, mentions: ["not finite"] });
      } finally {
        shared.poison = false;
      }
    }),
  },
  {
    id: "server-shutdown-with-request-in-flight", area: "server", expect: "correct",
    run: async () => {
      const model = await SigLIP2.load(F32);
      const s = await listen(slowed(model, { delayMs: 200, poison: false }), { maxWaitMs: 0, maxBatchSize: 1 }); // its own state: other cases poison the shared one
      try {
        const h = await healthy(s.url);
        if (h) return { outcome: "hang", detail: h };
        const inflight = postJson(`${s.url}/v1/embeddings`, { input: ["in", "flight"] });
        await sleep(60);
        const closing = s.app.close();
        const r = await inflight;
        await closing;
        const after = await httpRequest(`${s.url}/health`, { timeoutMs: 3000 });
        return expectHttpCorrect(r, (b) => (b.data?.length !== 2 ? `in-flight request got ${b.data?.length} embeddings` : after.status !== 0 ? `still answering after close: ${after.status}` : null));
      } finally {
        await model.close();
      }
    },
  },
  {
    id: "server-cli-max-inputs-over-queue", area: "server", expect: "clean-error", timeoutMs: 15_000,
    run: async () => expectCleanError(await runCli(["serve", "--model", F32, "--port", "0", "--max-inputs", "5000", "--max-queue", "100"], { timeoutMs: 15_000 }), { mentions: ["--max-inputs 5000", "--max-queue 100"] }),
  },
  {
    id: "server-cli-bad-cors", area: "server", expect: "clean-error", timeoutMs: 15_000,
    run: async () => expectCleanError(await runCli(["serve", "--model", F32, "--port", "0", "--cors", "app.example/path"], { timeoutMs: 15_000 }), { mentions: ["--cors", "app.example/path"] }),
  },
  {
    id: "server-cli-empty-api-key", area: "server", expect: "clean-error", timeoutMs: 15_000,
    run: async () => expectCleanError(await runCli(["serve", "--model", F32, "--port", "0", "--api-key", " "], { timeoutMs: 15_000 }), { mentions: ["--api-key"] }),
  },
  {
    id: "server-cli-unresolvable-host", area: "server", expect: "clean-error", timeoutMs: 15_000,
    run: async () => expectCleanError(await runCli(["serve", "--model", F32, "--port", "0", "--host", "999.1.1.1"], { timeoutMs: 15_000 }), { mentions: ["cannot listen on 999.1.1.1"] }),
  },
  {
    id: "server-cli-port-in-use", area: "server", expect: "clean-error", timeoutMs: 15_000,
    run: async () => {
      const taken = netServer();
      await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
      const port = (taken.address() as AddressInfo).port;
      try {
        return expectCleanError(await runCli(["serve", "--model", F32, "--port", String(port)], { timeoutMs: 15_000 }), { mentions: [`127.0.0.1:${port}`, "in use"] });
      } finally {
        taken.close();
      }
    },
  },
  {
    id: "server-cli-timeout-overflow", area: "server", expect: "clean-error", timeoutMs: 15_000,
    run: async () => expectCleanError(await runCli(["serve", "--model", F32, "--port", "0", "--timeout-ms", "99999999999"], { timeoutMs: 15_000 }), { mentions: ["--timeout-ms"] }),
  },
];
