/**
 * The latency of one search query, side by side in ONE run: our text tower at batch 1 (before
 * and after the batch-1 work, see README "Performance"; "after-spin": after, with onnxruntime's
 * idle threads spinning as they did before) against transformers + PyTorch fp32,
 * on the same random-weight B/16 checkpoint, the same thread count, the same machine load.
 *
 *   npx tsx bench/text-latency.ts [--threads 2] [--rounds 8] [--per-round 4] [--no-search]
 *
 * Every side is one long-lived child process; the parent interleaves them in rounds of
 * `--per-round` calls each, so that load changes on a shared machine hit every side alike.
 * Printed: texts/s (1000 / mean ms), p50 / p99 / min ms per call, CPU ms per call (all
 * threads), % of the fp32 GEMM peak measured in this run (analytic FLOPs of the full tower),
 * the machine line (CPU, cores, load average before and after). Then the query path (tokenizer
 * + token rows + tower + L2 norm) on both sides, and `siglip2 search` on a small index: the
 * in-process split (tokenizer, rows, tower, LanceDB) and the CLI from process start to exit.
 *
 * Needs the reference venv ($SIGLIP2_REF_PYTHON) and `npm run build` (the CLI runs from dist/).
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, homedir, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { REPO, childJson, encoderFlops, referencePython, opt } from "./common.js";
import { writePhotos } from "./photos.js";

const argv = process.argv.slice(2);
const cache = process.env["SIGLIP2_BENCH_CACHE"] ?? join(homedir(), ".cache", "siglip2-bench");
const modelDir = join(cache, "b16-224");
const QUERIES = ["a red car parked in the street", "two dogs playing on a beach", "a bowl of ramen", "sunset over the mountains",
  "a cat sleeping on a laptop keyboard", "children at a birthday party", "snow on a pine forest", "a man riding a bicycle"];

// ------------------------------------------------------------------------------------------
// Child side: `--child VARIANT`, one JSON request per stdin line (see bench/text_latency.py)

/**
 * Our variants. "before": the text graph as it was before the batch-1 work (all 64 rows
 * through the last layer, last_hidden_state out, weights packed again on every run, idle
 * threads spinning); "after": the library's TextTower as it is; "after-spin": the same with
 * onnxruntime's idle threads spinning (its default).
 */
async function child(variant: string): Promise<void> {
  const threads = Number(opt("threads", "2"));
  const { SigLIP2 } = await import("../src/api.js");
  const { textModel } = await import("../src/models/siglip.js");
  const { buildStages, runtimeOptions } = await import("../src/models/tower.js");
  const { Pipeline, ort } = await import("../src/graph/runtime.js");
  const model = await SigLIP2.load(modelDir, { threads });
  const cfg = model.config.text_config;
  const T = cfg.max_position_embeddings;
  const ids = Int32Array.from({ length: T }, (_, i) => (i * 7919) % 256000);
  let run: () => Promise<unknown>;
  if (variant === "after") {
    const tower = await model.textTower();
    run = () => tower.run(ids, 1);
  } else {
    const o = variant === "before" ? { threads } : { threads, pooledOnly: true, prepack: true, spin: true };
    const { Checkpoint } = await import("../src/weights/checkpoint.js");
    const ckpt = new Checkpoint(modelDir);
    const def = textModel(cfg);
    const p = await Pipeline.cached({ model: modelDir, tower: `bench-text-${variant}`, key: () => ({ variant, o, dir: modelDir }) }, () => buildStages({ store: ckpt.weights, tower: def, options: o }), runtimeOptions(o));
    run = () => p.run({ inputs_embeds: new ort.Tensor("float32", ckpt.weights.gatherRows("text_model.embeddings.token_embedding.weight", ids, cfg.hidden_size), [1, T, cfg.hidden_size]) });
  }
  let q = 0;
  const query = () => model.embedTexts([QUERIES[q++ % QUERIES.length]!]);
  // the query path of `siglip2 search`, split: tokenizer, token rows, tower (+ L2 norm), LanceDB
  let store: import("../src/search/store.js").ImageStore | undefined;
  const split = { tokenize: [] as number[], rows: [] as number[], tower: [] as number[], lancedb: [] as number[] };
  const search = async (db: string) => {
    const { ImageStore } = await import("../src/search/store.js");
    const { searchByVector } = await import("../src/search/search.js");
    store ??= await ImageStore.open(db, "images");
    const tower = await model.textTower();
    const t0 = performance.now();
    const [tok] = await model.tokenize([QUERIES[q++ % QUERIES.length]!]);
    const t1 = performance.now();
    tower.embedTokens(tok!);
    const t2 = performance.now();
    const [e] = await model.embedTokenIds([tok!]); // rows again + tower + L2 norm
    const t3 = performance.now();
    await searchByVector(model, store, e!, "text", 10);
    const t4 = performance.now();
    split.tokenize.push(t1 - t0);
    split.rows.push(t2 - t1);
    split.tower.push(t3 - t2 - (t2 - t1));
    split.lancedb.push(t4 - t3);
  };
  for (let i = 0; i < 2; i++) await run();
  await query();
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    const req = JSON.parse(line) as { mode: string; n: number; db?: string };
    if (req.mode === "quit") break;
    if (req.mode === "split") {
      process.stdout.write(`${JSON.stringify(split)}\n`);
      continue;
    }
    const fn = req.mode === "tower" ? run : req.mode === "query" ? query : () => search(req.db!);
    const wall: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < req.n; i++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await fn();
      wall.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    }
    process.stdout.write(`${JSON.stringify({ wall_ms: wall, cpu_ms: cpu })}\n`);
  }
  store?.close();
  await model.close();
  process.exit(0);
}

// ------------------------------------------------------------------------------------------
// Parent side

interface Side { name: string; proc: ChildProcessWithoutNullStreams; next: () => Promise<any>; wall: Record<string, number[]>; cpu: Record<string, number[]> }

function start(name: string, cmd: string, args: string[], threads: number): Side {
  const proc = spawn(cmd, args, { cwd: REPO, env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
  proc.stderr.on("data", () => undefined); // transformers' warnings
  const lines: string[] = [];
  const waiting: Array<{ res: (s: string) => void; rej: (e: Error) => void }> = [];
  createInterface({ input: proc.stdout }).on("line", (l) => {
    const w = waiting.shift();
    if (w) w.res(l);
    else lines.push(l);
  });
  proc.on("exit", (c) => {
    for (const w of waiting.splice(0)) w.rej(new Error(`${name} exited (${c})`));
  });
  const next = () => new Promise<any>((res, rej) => {
    const l = lines.shift();
    if (l !== undefined) return res(JSON.parse(l));
    waiting.push({ res: (s) => res(JSON.parse(s)), rej });
  });
  return { name, proc, next, wall: {}, cpu: {} };
}

async function ask(s: Side, req: object): Promise<any> {
  s.proc.stdin.write(`${JSON.stringify(req)}\n`);
  return s.next();
}

async function rounds(sides: Side[], mode: string, R: number, n: number, extra: object = {}): Promise<void> {
  for (let r = 0; r < R; r++) {
    for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
      const a = await ask(s, { mode, n, ...extra });
      (s.wall[mode] ??= []).push(...a.wall_ms);
      (s.cpu[mode] ??= []).push(...a.cpu_ms);
    }
  }
}

const q = (v: number[], p: number) => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

async function parent(): Promise<void> {
  const threads = Number(opt("threads", String(Math.min(2, cpus().length))));
  const R = Number(opt("rounds", "8"));
  const n = Number(opt("per-round", "4"));
  const python = referencePython("text-latency");
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const load0 = loadavg();
  execCheckpoints(python);
  const gemm = () => Math.max(
    childJson(process.execPath, ["--import", "tsx", "bench/ours.ts", "gemm", "--threads", String(threads), "--min-seconds", "2"], threads).gflops as number,
    childJson(python, ["bench/reference_bench.py", "gemm", "--threads", String(threads)], threads).gflops as number,
  );
  log("text-latency: GEMM peak");
  let peak = gemm();
  log("text-latency: starting the sides");
  const me = (v: string) => start(v, process.execPath, ["--import", "tsx", "bench/text-latency.ts", "--child", v, "--threads", String(threads)], threads);
  const sides = [start("PyTorch", python, ["bench/text_latency.py", "--model", modelDir, "--threads", String(threads)], threads), me("before"), me("after"), me("after-spin")];
  for (const s of sides) await s.next(); // ready
  log(`text-latency: tower, ${R} rounds × ${n} calls per side`);
  await rounds(sides, "tower", R, n);
  log("text-latency: query path");
  const qs = [sides[0]!, sides[2]!];
  await rounds(qs, "query", R, n);
  peak = Math.max(peak, gemm());
  const load1 = loadavg();

  const B = { D: 768, M: 3072, L: 12 };
  const gflop = (encoderFlops(64, B.D, B.M, B.L) + 2 * B.D * B.D) / 1e9;
  const ref = sides[0]!;
  console.log(`\n## Text tower, batch 1 (B/16, 64 tokens): ${threads} threads, ${cpus()[0]?.model ?? "cpu"} (${cpus().length} CPUs), load average ${load0.map(f2).join(" ")} before, ${load1.map(f2).join(" ")} after; fp32 GEMM peak ${peak.toFixed(0)} GFLOP/s in this run\n`);
  console.log("| side | texts/s | ms p50 | ms p99 | ms min | CPU ms p50 | % of GEMM peak (at p50) | texts/s vs PyTorch |");
  console.log("|---|---|---|---|---|---|---|---|");
  const refRate = 1000 / mean(ref.wall["tower"]!);
  for (const s of sides) {
    const w = s.wall["tower"]!;
    const rate = 1000 / mean(w);
    console.log(`| ${s.name} | ${f2(rate)} | ${f1(q(w, 0.5))} | ${f1(q(w, 0.99))} | ${f1(Math.min(...w))} | ${f1(q(s.cpu["tower"]!, 0.5))} | ${f1((gflop * 1000 * 100) / q(w, 0.5) / peak)} % | **${f2(rate / refRate)}×** |`);
  }
  console.log(`\n${R * n} calls per side; GFLOP per text (full tower, analytic) ${f2(gflop)}; "after" skips the last layer's queries and MLP for 63 of the 64 rows (~7 % of the FLOPs).\n`);
  console.log("| query path (tokenizer + rows + tower + L2 norm) | texts/s | ms p50 | ms p99 |");
  console.log("|---|---|---|---|");
  for (const s of qs) {
    const w = s.wall["query"]!;
    console.log(`| ${s.name === "after" ? "ours" : "transformers"} | ${f2(1000 / mean(w))} | ${f1(q(w, 0.5))} | ${f1(q(w, 0.99))} |`);
  }

  if (!argv.includes("--no-search")) {
    log("text-latency: siglip2 search");
    const tmp = mkdtempSync(join(tmpdir(), "siglip2-text-latency-"));
    try {
      const photos = join(tmp, "photos");
      await writePhotos(photos, 0, 16, [[320, 240], [240, 320]]);
      const db = join(tmp, "db");
      const cli = join(REPO, "dist", "cli", "main.js");
      const sh = (args: string[]) => {
        const t0 = performance.now();
        const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
        if (r.status !== 0) throw new Error(`siglip2 ${args.join(" ")}: ${r.stderr}`);
        return performance.now() - t0;
      };
      sh(["index", photos, "--model", modelDir, "--db", db, "--threads", String(threads)]);
      const after = sides[2]!;
      await rounds([after], "search", R, n, { db });
      const split = await ask(after, { mode: "split" });
      const cliMs: number[] = [];
      for (let i = 0; i < 5; i++) cliMs.push(sh(["search", QUERIES[i % QUERIES.length]!, "--db", db, "--json", "--threads", String(threads)]));
      const w = after.wall["search"]!;
      console.log(`\n| \`siglip2 search\` (16-row table, B/16 fp32) | ms p50 | ms p99 |`);
      console.log("|---|---|---|");
      console.log(`| in process, whole query (tokenizer + rows + tower + LanceDB top-10) | ${f1(q(w, 0.5))} | ${f1(q(w, 0.99))} |`);
      for (const [k, v] of Object.entries(split) as Array<[string, number[]]>) console.log(`| … of which ${k} | ${f2(q(v, 0.5))} | ${f2(q(v, 0.99))} |`);
      console.log(`| the CLI, process start → exit (5 runs; model cached, weights in page cache) | ${f1(q(cliMs, 0.5))} | ${f1(Math.max(...cliMs))} (max) |`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  for (const s of sides) s.proc.stdin.end(`${JSON.stringify({ mode: "quit" })}\n`);
}

function execCheckpoints(python: string): void {
  const r = spawnSync(python, ["tools/reference/make_bench_checkpoints.py", "b16-224"], { cwd: REPO, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, SIGLIP2_BENCH_CACHE: cache } });
  if (r.status !== 0) throw new Error("make_bench_checkpoints.py failed");
}

const ci = argv.indexOf("--child");
if (ci >= 0) await child(argv[ci + 1]!);
else await parent();
