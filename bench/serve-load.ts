/**
 * Load test for `siglip2 serve`: throughput, latency percentiles, errors and memory.
 *
 *   npx tsx bench/serve-load.ts [--model DIR] [--requests 10000] [--concurrency 32]
 *                               [--max-seconds 600] [--warmup 300] [--mix 6:3:1]
 *                               [--max-batch-size 32] [--max-wait-ms 5] [--threads N]
 *                               [--long-texts 3]
 *
 * Starts the server as a child process on 127.0.0.1 (a free port), with the tiny
 * test checkpoint by default (pass --model for a real one), and sends a bounded number
 * of requests (--requests) within a bounded time (--max-seconds) from --concurrency
 * concurrent clients over keep-alive connections (node's fetch / undici). The mix
 * (text : image : classify) is:
 *   text      POST /v1/embeddings with one unique caption
 *   image     POST /v1/embeddings with one small PNG (data URL, 16 distinct images)
 *   classify  POST /v1/classify with one image and one of 4 label sets (label cache)
 * Every request is valid, so every non-200 answer (or wrong-shaped body) is an error.
 * The server's RSS (from GET /stats) is read after a warm-up and again after the
 * measured requests, each time after a full garbage collection (the server runs with
 * --expose-gc and GET /stats?gc=1), so that garbage V8 has not collected yet is not
 * mistaken for growth; the RSS without that GC is reported too. GET /health is probed every
 * 50 ms throughout, and its latency reported: the event loop must keep answering. Then
 * --long-texts requests each embed one 19 MB text (the tokenizer reads only its start), with
 * /health probed meanwhile. Exit code 1 if there were errors, the RSS grew by more than 10%,
 * or the time bound cut the run short.
 * Nothing leaves the machine: the server listens on loopback only.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
function opt(name: string, dflt: string): string {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
}
const MODEL = opt("--model", join(REPO, "tests", "fixtures", "models", "fixres-f32"));
const N = Number(opt("--requests", "10000"));
const C = Number(opt("--concurrency", "32"));
const MAX_S = Number(opt("--max-seconds", "600"));
const WARMUP = Number(opt("--warmup", "300"));
const MIX = opt("--mix", "6:3:1").split(":").map(Number) as [number, number, number];
const LONG = Number(opt("--long-texts", "3"));
const serverArgs = ["--max-batch-size", opt("--max-batch-size", "32"), "--max-wait-ms", opt("--max-wait-ms", "5")];
if (args.includes("--threads")) serverArgs.push("--threads", opt("--threads", "1"));

async function noisePng(seed: number, w: number, h: number): Promise<string> {
  const px = Buffer.alloc(w * h * 3);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < px.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    px[i] = s & 255;
  }
  return `data:image/png;base64,${(await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer()).toString("base64")}`;
}

const LABEL_SETS = [
  ["cat", "dog", "bird"],
  ["a red car", "a blue bicycle", "a train", "a boat"],
  ["Katze", "Hund"],
  ["sunset", "mountain", "beach", "city at night", "forest"],
];
const WORDS = ["red", "small", "old", "sleeping", "happy", "cat", "dog", "car", "house", "tree", "on a sofa", "in the snow", "at night", "near the sea"];

function startServer(): Promise<{ url: string; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", join(REPO, "src", "cli", "main.ts"), "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", "0", ...serverArgs], {
    cwd: REPO,
    env: { ...process.env, HF_HUB_OFFLINE: "1" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return new Promise((resolve, reject) => {
    child.stderr.on("data", (d) => {
      stderr += d;
      const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (m) resolve({ url: m[1]!, stop: () => (child.kill("SIGTERM"), exited) });
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
}

type Kind = "text" | "image" | "classify";

async function main(): Promise<void> {
  const images = await Promise.all(Array.from({ length: 16 }, (_, i) => noisePng(i + 1, 24 + (i % 5) * 10, 24 + (i % 3) * 20)));
  const kinds: Kind[] = [...Array(MIX[0]).fill("text"), ...Array(MIX[1]).fill("image"), ...Array(MIX[2]).fill("classify")];
  const request = (i: number): { kind: Kind; path: string; body: unknown; expect: number } => {
    const kind = kinds[i % kinds.length]!;
    if (kind === "text") {
      const words = Array.from({ length: 3 + (i % 6) }, (_, k) => WORDS[(i * 7 + k * 3) % WORDS.length]);
      return { kind, path: "/v1/embeddings", body: { input: `photo ${i}: ${words.join(" ")}` }, expect: 1 };
    }
    if (kind === "image") return { kind, path: "/v1/embeddings", body: { input: [{ type: "image_url", image_url: { url: images[i % images.length] } }] }, expect: 1 };
    return { kind, path: "/v1/classify", body: { images: [images[i % images.length]], labels: LABEL_SETS[i % LABEL_SETS.length] }, expect: 1 };
  };

  const server = await startServer();
  type Stats = { memory: { rss: number; heapUsed: number; heapTotal: number; external: number }; batches: Record<string, { batches: number; items: number; maxBatch: number }> };
  const stats = async (gc = false): Promise<Stats> => {
    const get = async () => (await (await fetch(`${server.url}/stats${gc ? "?gc=1" : ""}`)).json()) as Stats;
    if (!gc) return get();
    await get(); // collect, then give native finalizers (onnxruntime tensors, buffers) a moment to run
    await new Promise((r) => setTimeout(r, 500));
    return get();
  };
  const latencies: number[] = [];
  const perKind: Record<Kind, number[]> = { text: [], image: [], classify: [] };
  let errors = 0;
  const errorSamples: string[] = [];

  async function run(count: number, deadline: number, record: boolean): Promise<number> {
    let next = 0;
    let sent = 0;
    const worker = async () => {
      while (next < count && Date.now() < deadline) {
        const i = next++;
        const rq = request(i);
        const t0 = performance.now();
        let ok = false;
        let why = "";
        try {
          const r = await fetch(server.url + rq.path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(rq.body) });
          const body = (await r.json()) as { data?: unknown[] };
          ok = r.status === 200 && Array.isArray(body.data) && body.data.length === rq.expect;
          if (!ok) why = `${r.status} ${JSON.stringify(body).slice(0, 200)}`;
        } catch (e) {
          why = (e as Error).message;
        }
        const ms = performance.now() - t0;
        sent++;
        if (!record) continue;
        latencies.push(ms);
        perKind[rq.kind].push(ms);
        if (!ok) {
          errors++;
          if (errorSamples.length < 5) errorSamples.push(why);
        }
      }
    };
    await Promise.all(Array.from({ length: C }, worker));
    return sent;
  }

  /** GET /health every 50 ms until `done()`; the latencies. */
  async function probeHealth(done: () => boolean): Promise<number[]> {
    const ls: number[] = [];
    while (!done()) {
      const t = performance.now();
      try {
        await (await fetch(`${server.url}/health`)).json();
      } catch {
        errors++;
      }
      ls.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 50));
    }
    return ls;
  }

  const tStart = Date.now();
  await run(WARMUP, tStart + MAX_S * 1000, false);
  const beforeRaw = await stats();
  const before = await stats(true);
  const t0 = performance.now();
  let running = true;
  const health = probeHealth(() => !running);
  const sent = await run(N, tStart + MAX_S * 1000, true);
  running = false;
  const healthMs = await health;
  const seconds = (performance.now() - t0) / 1000;
  const afterRaw = await stats();
  const afterStats = await stats(true);

  // One 19 MB text per request (just under the 20 MiB body limit), /health probed meanwhile.
  const longText = "A photo of a cat sleeping on a red sofa, in the sun. ".repeat(Math.floor(19e6 / 53));
  const longMs: number[] = [];
  let longDone = false;
  const longHealth = probeHealth(() => longDone);
  for (let i = 0; i < LONG; i++) {
    const t = performance.now();
    const r = await fetch(`${server.url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ input: `${i} ${longText}` }) });
    const body = (await r.json()) as { data?: unknown[]; usage?: { truncated_inputs?: number } };
    if (r.status !== 200 || body.data?.length !== 1 || body.usage?.truncated_inputs !== 1) {
      errors++;
      if (errorSamples.length < 5) errorSamples.push(`long text: ${r.status} ${JSON.stringify(body).slice(0, 200)}`);
    }
    longMs.push(performance.now() - t);
  }
  longDone = true;
  const longHealthMs = await longHealth;
  const code = await server.stop();

  const pct = (xs: number[], p: number) => {
    if (xs.length === 0) return NaN;
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
  };
  const mb = (b: number) => (b / 1024 / 1024).toFixed(1);
  const growth = (afterStats.memory.rss - before.memory.rss) / before.memory.rss;
  const itemsPerBatch = (k: string) => {
    const a = afterStats.batches[k]!;
    const b = before.batches[k]!;
    return ((a.items - b.items) / Math.max(1, a.batches - b.batches)).toFixed(1);
  };
  const result = {
    model: MODEL,
    requests: sent,
    concurrency: C,
    seconds: Number(seconds.toFixed(2)),
    throughput_rps: Number((sent / seconds).toFixed(1)),
    p50_ms: Number(pct(latencies, 50).toFixed(1)),
    p99_ms: Number(pct(latencies, 99).toFixed(1)),
    errors,
    rss_before_mb: Number(mb(before.memory.rss)),
    rss_after_mb: Number(mb(afterStats.memory.rss)),
    rss_growth_pct: Number((growth * 100).toFixed(1)),
    rss_before_no_gc_mb: Number(mb(beforeRaw.memory.rss)),
    rss_after_no_gc_mb: Number(mb(afterRaw.memory.rss)),
    mean_batch: { text: Number(itemsPerBatch("text")), image: Number(itemsPerBatch("image")) },
    health_p99_ms: Number(pct(healthMs, 99).toFixed(1)),
    health_max_ms: Number(Math.max(...healthMs).toFixed(1)),
    long_text_requests: LONG,
    long_text_p50_ms: Number(pct(longMs, 50).toFixed(1)),
    long_text_health_max_ms: Number((longHealthMs.length ? Math.max(...longHealthMs) : NaN).toFixed(1)),
    server_exit_code: code,
  };
  const out = process.stdout;
  out.write(`siglip2 serve load test: ${sent} requests (${MIX.join(":")} text:image:classify), concurrency ${C}, model ${MODEL}\n`);
  out.write(`  throughput   ${result.throughput_rps} requests/s over ${result.seconds} s\n`);
  out.write(`  latency      p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms\n`);
  for (const k of ["text", "image", "classify"] as const) {
    out.write(`    ${k.padEnd(9)}  n=${perKind[k].length}  p50 ${pct(perKind[k], 50).toFixed(1)} ms  p99 ${pct(perKind[k], 99).toFixed(1)} ms\n`);
  }
  out.write(`  errors       ${errors}${errorSamples.length ? ` (e.g. ${errorSamples[0]})` : ""}\n`);
  out.write(`  server RSS   ${result.rss_before_mb} MiB after ${WARMUP} warm-up requests -> ${result.rss_after_mb} MiB after the run (${result.rss_growth_pct >= 0 ? "+" : ""}${result.rss_growth_pct}%), each read after a full GC\n`);
  out.write(`               without the GC: ${result.rss_before_no_gc_mb} -> ${result.rss_after_no_gc_mb} MiB (garbage not yet collected included)\n`);
  const heap = (m: Stats["memory"]) => `heap ${mb(m.heapUsed)}/${mb(m.heapTotal)} MiB used/committed, external ${mb(m.external)} MiB, native (RSS − heap) ${mb(m.rss - m.heapTotal)} MiB`;
  out.write(`               before: ${heap(before.memory)}\n               after:  ${heap(afterStats.memory)}\n`);
  out.write(`  mean batch   text ${result.mean_batch.text}, image ${result.mean_batch.image} items per forward pass\n`);
  out.write(`  /health      p99 ${result.health_p99_ms} ms, max ${result.health_max_ms} ms (${healthMs.length} probes during the run)\n`);
  if (LONG > 0) out.write(`  19 MB texts  ${LONG} requests, p50 ${result.long_text_p50_ms} ms each; /health max ${result.long_text_health_max_ms} ms meanwhile\n`);
  out.write(`${JSON.stringify(result)}\n`);
  if (errors > 0 || growth > 0.1 || sent < N || code !== 0) {
    out.write(`FAIL: ${errors > 0 ? "errors; " : ""}${growth > 0.1 ? "RSS grew by more than 10%; " : ""}${sent < N ? `only ${sent} of ${N} requests within ${MAX_S} s; ` : ""}${code !== 0 ? `server exit code ${code}` : ""}\n`);
    process.exitCode = 1;
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`serve-load: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 2;
});
