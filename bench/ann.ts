/**
 * The ANN path of `siglip2 search` at a million vectors: recall@10 of IVF-PQ + exact
 * re-rank against the exact scan, query latency p50/p99 of both, index build time, disk size.
 *
 *   npm run bench:ann                      # 1,000,000 × 768
 *   npm run bench:ann -- --rows 100000 --queries 50   # a quick look
 *   options: --rows N --dim D --clusters C --queries Q --exact-queries E
 *            --db DIR (default a temp folder, removed; with --db an existing table of N rows
 *            from an earlier run of the same settings is reused, not rewritten)
 *            --probes 10,20,40 --refine 5,10,20 (the grid of search settings measured)
 *
 * The vectors are synthetic but shaped like image embeddings, not uniform on the sphere:
 * a shared mean direction (embeddings of one model sit in a cone), C clusters of power-law
 * sizes, each with its own anisotropic spread (16 random directions with decaying scales)
 * plus isotropic noise, then L2-normalised. Nearest-neighbour cosines land around
 * 0.85–0.95 as between photos of one scene. Queries are new draws from the same clusters
 * (not rows of the table). They are generated in batches and written as Arrow batches, so
 * RSS stays far below the 3 GB the vectors take.
 *
 * Both paths go through ImageStore.nearest (the code `search` runs) and the float64
 * re-rank. The ground truth is a float64 brute force over every generated vector, computed
 * here while the vectors stream by (not LanceDB's answer); the exact scan's latency is
 * timed on E queries (a 1M scan takes seconds on 2 cores). Recall@10 = |ANN top-10 ∩ true
 * top-10| / 10, averaged over the Q queries; the exact scan's recall is printed too.
 */
import { connect } from "@lancedb/lancedb";
import { Field, FixedSizeList, Float32, Float64, Int32, Int64, makeData, RecordBatch, Struct, Table as ArrowTable, Utf8, vectorFromArray } from "apache-arrow";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { ANN_NPROBES, ANN_REFINE_FACTOR, ImageStore, tableSchema, type TableMeta } from "../src/search/store.js";
import { dot } from "../src/tasks/similarity.js";

const args = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : dflt;
};
const N = Number(flag("--rows", "1000000"));
const DIM = Number(flag("--dim", "768"));
const C = Number(flag("--clusters", String(Math.max(10, Math.round(N / 400)))));
const Q = Number(flag("--queries", "50"));
const QE = Math.min(Q, Number(flag("--exact-queries", "5")));
const PROBES = flag("--probes", `10,${ANN_NPROBES},40`).split(",").map(Number);
const REFINES = flag("--refine", `5,${ANN_REFINE_FACTOR},20`).split(",").map(Number);
const BATCH = 20_000;
const K = 10;
const userDb = args.includes("--db");
const dbPath = userDb ? flag("--db", "") : mkdtempSync(join(tmpdir(), "siglip2-bench-ann-"));
const log = (s: string) => process.stderr.write(`${s}\n`);
const load0 = loadavg().map((x) => x.toFixed(1)).join(" ");

// ---- deterministic generator (mulberry32 + Box–Muller)
let seed = 20261202;
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
let spare: number | undefined;
function gauss(): number {
  if (spare !== undefined) {
    const s = spare;
    spare = undefined;
    return s;
  }
  const u = rand() || 1e-12;
  const v = rand();
  const r = Math.sqrt(-2 * Math.log(u));
  spare = r * Math.sin(2 * Math.PI * v);
  return r * Math.cos(2 * Math.PI * v);
}
function unit(n: number): Float32Array {
  const x = new Float32Array(n);
  let s = 0;
  for (let i = 0; i < n; i++) s += (x[i] = gauss()) ** 2;
  const inv = 1 / Math.sqrt(s);
  for (let i = 0; i < n; i++) x[i]! *= inv;
  return x;
}

// ---- clusters: centre = mean direction + own direction; 16 spread directions each
const R = 16;
const BANK = 512; // spread directions drawn from a shared bank (memory: BANK × DIM floats)
const mean = unit(DIM);
const bank = Array.from({ length: BANK }, () => unit(DIM));
const centres: Float32Array[] = [];
const spreadDirs: Uint16Array[] = [];
const spreadScales: Float32Array[] = [];
const weights: number[] = [];
for (let c = 0; c < C; c++) {
  const own = unit(DIM);
  const x = new Float32Array(DIM);
  for (let i = 0; i < DIM; i++) x[i] = 0.45 * mean[i]! + own[i]!;
  centres.push(x);
  spreadDirs.push(Uint16Array.from({ length: R }, () => Math.floor(rand() * BANK)));
  spreadScales.push(Float32Array.from({ length: R }, (_, j) => 0.35 * Math.pow(0.8, j) * (0.5 + rand())));
  weights.push(Math.pow(c + 1, -0.7)); // power-law cluster sizes
}
const cum: number[] = [];
weights.reduce((a, w, i) => (cum[i] = a + w), 0);
const totalW = cum[C - 1]!;
function pickCluster(): number {
  const r = rand() * totalW;
  let lo = 0;
  let hi = C - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cum[mid]! < r) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
const ISO = 0.22; // isotropic noise: its norm is about 0.22
const ISO_STEP = ISO / Math.sqrt(DIM);
/** One embedding-like unit vector into out[off..off+DIM). */
function draw(out: Float32Array, off: number): void {
  const c = pickCluster();
  const ctr = centres[c]!;
  for (let i = 0; i < DIM; i++) out[off + i] = ctr[i]! + ISO_STEP * gauss();
  const dirs = spreadDirs[c]!;
  const sc = spreadScales[c]!;
  for (let j = 0; j < R; j++) {
    const a = sc[j]! * gauss();
    const u = bank[dirs[j]!]!;
    for (let i = 0; i < DIM; i++) out[off + i]! += a * u[i]!;
  }
  let s = 0;
  for (let i = 0; i < DIM; i++) s += out[off + i]! ** 2;
  const inv = 1 / Math.sqrt(s);
  for (let i = 0; i < DIM; i++) out[off + i]! *= inv;
}

// ---- the table
const meta: TableMeta = { format: 1, model: "bench", fingerprint: "0".repeat(64), dim: DIM, modelType: "siglip", resampler: "torch", createdAt: new Date().toISOString() };
const schema = tableSchema(meta);
function batchTable(start: number, n: number): { table: ArrowTable; vec: Float32Array } {
  const vec = new Float32Array(n * DIM);
  for (let r = 0; r < n; r++) draw(vec, r * DIM);
  const idx = Array.from({ length: n }, (_, r) => start + r);
  const vectorType = schema.fields.find((f) => f.name === "vector")!.type as FixedSizeList<Float32>;
  const cols: Record<string, ReturnType<typeof makeData>> = {
    path: vectorFromArray(idx.map((i) => pathOfRow(i)), new Utf8()).data[0]!,
    size: makeData({ type: new Float64(), length: n, data: Float64Array.from(idx, (i) => 200_000 + (i * 7919) % 5_000_000) }),
    mtime_ms: makeData({ type: new Float64(), length: n, data: Float64Array.from(idx, (i) => 1.5e12 + i * 1000) }),
    sha256: vectorFromArray(idx.map((i) => i.toString(16).padStart(64, "0")), new Utf8()).data[0]!,
    model: vectorFromArray(idx.map(() => "bench#0000000000000000"), new Utf8()).data[0]!,
    gen: makeData({ type: new Int64(), length: n, data: new BigInt64Array(n).fill(1n) }),
    vector: makeData({ type: vectorType, length: n, nullCount: 0, child: makeData({ type: new Float32(), length: n * DIM, data: vec }) }),
    ext: vectorFromArray(idx.map(() => "jpg"), new Utf8()).data[0]!,
    width: makeData({ type: new Int32(), length: n, data: Int32Array.from(idx, (i) => [640, 1024, 2048, 4032][i % 4]!) }),
    height: makeData({ type: new Int32(), length: n, data: Int32Array.from(idx, (i) => [480, 768, 1536, 3024][i % 4]!) }),
    taken_ms: makeData({ type: new Float64(), length: n, data: Float64Array.from(idx, (i) => 1.4e12 + (i % 100) * 1e9) }),
  };
  const children = schema.fields.map((f: Field) => cols[f.name]!);
  const rb = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children }));
  return { table: new ArrowTable(schema, [rb]), vec };
}
function pathOfRow(i: number): string {
  return `/photos/${String(i % 1000).padStart(3, "0")}/img${i}.jpg`;
}

function du(p: string): number {
  const st = statSync(p);
  if (!st.isDirectory()) return st.size;
  return readdirSync(p).reduce((a, e) => a + du(join(p, e)), 0);
}
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const rss = () => `${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`;

log(`bench:ann ${N} × ${DIM}, ${C} clusters, ${Q} queries, DB ${dbPath}`);
// Queries from their own stream of the generator (the rows' stream is the same with any Q).
const rowState = { seed, spare };
seed = 777_000_001;
spare = undefined;
const queries = Array.from({ length: Q }, () => {
  const q = new Float32Array(DIM);
  draw(q, 0);
  return q;
});
({ seed, spare } = rowState);
/** The true top K of each query: a float64 brute force over the batches as they are generated. */
const truthTop = queries.map(() => [] as Array<{ i: number; c: number }>);
function scoreBatch(vec: Float32Array, start: number, n: number): void {
  queries.forEach((q, qi) => {
    const top = truthTop[qi]!;
    for (let r = 0; r < n; r++) {
      let c = 0;
      const off = r * DIM;
      for (let i = 0; i < DIM; i++) c += vec[off + i]! * q[i]!;
      if (top.length < K || c > top[top.length - 1]!.c) {
        top.push({ i: start + r, c });
        top.sort((a, b) => b.c - a.c);
        if (top.length > K) top.pop();
      }
    }
  });
}
const t0 = performance.now();
let reused = false;
{
  const existing = userDb ? await ImageStore.open(dbPath, "bench").then(async (s) => ((await s.count()) === N ? (s.close(), true) : (s.close(), false)), () => false) : false;
  reused = existing;
  if (!reused) (await ImageStore.open(dbPath, "bench", { create: meta, rebuild: true })).close();
  const db = await connect(dbPath);
  const table = await db.openTable("bench");
  for (let s = 0; s < N; s += BATCH) {
    const n = Math.min(BATCH, N - s);
    const { table: t, vec } = batchTable(s, n);
    scoreBatch(vec, s, n);
    if (!reused) await table.add(t);
    if ((s / BATCH) % 10 === 0) log(`  ${reused ? "generated" : "wrote"} ${s + n} rows (RSS ${rss()}, ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
  if (!reused) await table.optimize({ cleanupOlderThan: new Date() });
  table.close();
  db.close();
}
const writeS = (performance.now() - t0) / 1000;
const exact: string[][] = truthTop.map((t) => t.map((x) => pathOfRow(x.i)));
const nnCos = truthTop.reduce((a, t) => a + t[0]!.c, 0) / Q;
const store = await ImageStore.open(dbPath, "bench");
const dataBytes = du(dbPath);

/** One search as `siglip2 search` runs it: nearest rows, float64 cosines, sorted. */
async function search(q: Float32Array, o: Parameters<ImageStore["nearest"]>[2]): Promise<{ paths: string[]; ms: number; cos: number[] }> {
  const t = performance.now();
  const rows = await store.nearest(q, K, o);
  const scored = rows.map((r) => ({ p: r.path, c: dot(r.vector, q) })).sort((a, b) => b.c - a.c);
  return { paths: scored.map((s) => s.p), ms: performance.now() - t, cos: scored.map((s) => s.c) };
}

// the exact scan (what `--exact` runs): its latency on QE queries, and its recall
log(`  exact scans (${QE} queries)…`);
const exactMs: number[] = [];
let exactHit = 0;
for (let i = 0; i < QE; i++) {
  const r = await search(queries[i]!, { exact: true });
  exactMs.push(r.ms);
  const truth = new Set(exact[i]);
  exactHit += r.paths.filter((p) => truth.has(p)).length;
}

log(`  building the IVF-PQ index…`);
const tb = performance.now();
const built = await store.ensureAnnIndex({ threshold: 1 });
const buildS = (performance.now() - tb) / 1000;
const totalBytes = du(dbPath);

interface Row { probes: number; refine: number; recall: number; p50: number; p99: number }
const grid: Row[] = [];
for (const probes of PROBES) {
  for (const refine of REFINES) {
    for (let i = 0; i < 3; i++) await search(queries[i]!, { nprobes: probes, refineFactor: refine }); // warm
    const ms: number[] = [];
    let hit = 0;
    for (let i = 0; i < Q; i++) {
      const r = await search(queries[i]!, { nprobes: probes, refineFactor: refine });
      ms.push(r.ms);
      const truth = new Set(exact[i]);
      hit += r.paths.filter((p) => truth.has(p)).length;
    }
    grid.push({ probes, refine, recall: hit / (Q * K), p50: pct(ms, 50), p99: pct(ms, 99) });
    log(`  nprobes ${probes} refine ${refine}: recall@10 ${(hit / (Q * K)).toFixed(3)}, p50 ${pct(ms, 50).toFixed(1)} ms`);
  }
}
// a filtered ANN query (prefilter, 1 in 4 rows pass), default settings
const filtMs: number[] = [];
for (const q of queries) filtMs.push((await search(q, { where: "width >= 2048 AND height >= 1536 AND width < 4000" })).ms);
store.close();

const cpu = cpus()[0]?.model ?? "cpu";
console.log(`\n## ANN search: ${N.toLocaleString("en")} × ${DIM} synthetic embeddings (${C} clusters), ${Q} queries, k=${K}`);
console.log(`machine: ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; load average at the start ${load0}, at the end ${loadavg().map((x) => x.toFixed(1)).join(" ")}; mean top-1 cosine ${nnCos.toFixed(3)}\n`);
console.log(`write ${writeS.toFixed(0)} s, table ${(dataBytes / 2 ** 30).toFixed(2)} GiB; IVF-PQ build (${built}) ${buildS.toFixed(0)} s, index ${((totalBytes - dataBytes) / 2 ** 20).toFixed(0)} MiB`);
console.log(`exact scan (${QE} queries): p50 ${pct(exactMs, 50).toFixed(0)} ms, p99 (max) ${pct(exactMs, 99).toFixed(0)} ms, recall@10 ${(exactHit / (QE * K)).toFixed(3)}${reused ? "; table reused from an earlier run (write time is generation only)" : ""}`);
console.log(`ANN + filter (width/height, 1 in 4 rows), nprobes ${ANN_NPROBES}, refine ${ANN_REFINE_FACTOR}: p50 ${pct(filtMs, 50).toFixed(1)} ms, p99 ${pct(filtMs, 99).toFixed(1)} ms\n`);
console.log("| nprobes | refine | recall@10 | p50 ms | p99 ms | speed-up p50 vs exact |");
console.log("|---:|---:|---:|---:|---:|---:|");
for (const g of grid) {
  const mark = g.probes === ANN_NPROBES && g.refine === ANN_REFINE_FACTOR ? " (default)" : "";
  console.log(`| ${g.probes}${mark} | ${g.refine} | ${g.recall.toFixed(3)} | ${g.p50.toFixed(1)} | ${g.p99.toFixed(1)} | ${(pct(exactMs, 50) / g.p50).toFixed(0)}× |`);
}
console.log(`\npeak RSS of this process ${rss()}`);
if (!userDb) rmSync(dbPath, { recursive: true, force: true });
