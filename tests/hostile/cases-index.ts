/**
 * Hostile and careless use of `siglip2 index` / `siglip2 search` (area "index"): emptied
 * mount points, duplicate rows, lock races, damaged LanceDB files, a full disk, odd DB
 * paths, odd file names, files that vanish or change during a run, interruptions.
 * Every case checks the exact outcome and that the table's rows are intact: each
 * expected path once, with a finite unit vector, nothing else.
 */
import { spawn } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { SigLIP2 } from "../../src/api.js";
import type { SiglipError } from "../../src/errors.js";
import { embeddingSetup, modelName } from "../../src/search/identity.js";
import { buildIndex, openForIndexing, type IndexOptions, type IndexSummary } from "../../src/search/indexer.js";
import { ImageStore, type StoredImage } from "../../src/search/store.js";
import { sha256File } from "../../src/search/walk.js";
import { copyFixture, tempDir } from "../harness/files.js";
import { lockRace } from "../harness/lock-race.js";
import { FIXTURES } from "../harness/paths.js";
import { BIN, expectCleanError, expectCorrect, expectReturns, jsonLines, runCli, runProcess, type CaseResult, type CliOptions, type CliResult, type ErrorExpectation, type HostileCase } from "./harness.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const ODD = join(FIXTURES, "models", "fixres-odd");
const IMG = join(FIXTURES, "images");
const GOOD = ["photo_48x64.jpg", "rgb_64x64.png", "grad_224x224.png", "bw_9x14.png", "la_13x27.png", "rgb_23x37.png", "rgb_37x23.png", "px_1x1.png"];
const DEAD_PID = 2 ** 22 + 777; // above Linux's pid_max: never a live process

/** A fresh folder holding copies of `names` (fixture images) under the given file names. */
function folder(names: string[] = GOOD, as: string[] = names): { dir: string; paths: string[] } {
  const dir = join(tempDir("siglip2-idx-"), "photos");
  mkdirSync(dir, { recursive: true });
  const paths = names.map((n, i) => {
    const p = join(dir, as[i]!);
    mkdirSync(join(p, ".."), { recursive: true });
    copyFileSync(join(IMG, n), p);
    return p;
  });
  return { dir, paths };
}

function newDb(): string {
  return join(tempDir("siglip2-idxdb-"), "db");
}

/** Index with the library (fast set-up; the CLI is what the cases test). */
async function libIndex(db: string, roots: string[], options: IndexOptions = {}, model = F32): Promise<IndexSummary> {
  const m = await SigLIP2.load(model);
  try {
    const store = await openForIndexing(db, "images", await embeddingSetup(m, modelName(model)));
    try {
      return await buildIndex(m, store, roots, options);
    } finally {
      store.close();
    }
  } finally {
    await m.close();
  }
}

async function tableRows(db: string, table = "images"): Promise<StoredImage[]> {
  const st = await ImageStore.open(db, table);
  try {
    return await st.all();
  } finally {
    st.close();
  }
}

/** Why the table's rows are not exactly `paths` (each once, finite unit vectors), or null. */
async function rowsProblem(db: string, paths: string[]): Promise<string | null> {
  let rows: StoredImage[];
  try {
    rows = await tableRows(db);
  } catch (e) {
    return `cannot read the rows back: ${(e as Error).message}`;
  }
  const seen = new Map<string, number>();
  for (const r of rows) seen.set(r.path, (seen.get(r.path) ?? 0) + 1);
  const dup = [...seen].find(([, n]) => n > 1);
  if (dup) return `${dup[1]} rows for ${JSON.stringify(dup[0])}`;
  const missing = paths.filter((p) => !seen.has(p));
  if (missing.length > 0) return `${missing.length} rows lost, e.g. ${JSON.stringify(missing[0])}`;
  const extra = rows.filter((r) => !paths.includes(r.path));
  if (extra.length > 0) return `${extra.length} unexpected rows, e.g. ${JSON.stringify(extra[0]!.path)}`;
  for (const r of rows) {
    const n = Math.hypot(...r.vector);
    if (!(Math.abs(n - 1) < 1e-4)) return `the vector of ${r.path} has norm ${n}`;
  }
  return null;
}

/** The outcome `res` unless the table's rows are not intact (then data-lost). */
async function withRows(res: CaseResult, db: string, paths: string[]): Promise<CaseResult> {
  if (res.outcome !== "clean-error" && res.outcome !== "correct") return res;
  const why = await rowsProblem(db, paths);
  return why ? { outcome: "data-lost", detail: why } : res;
}

function cliIndex(roots: string[], db: string, extra: string[] = [], opts: CliOptions = {}): Promise<CliResult> {
  return runCli(["index", ...roots, "--model", F32, "--db", db, ...extra], opts);
}

/** The JSON summary line of an index run (or undefined). */
function summaryOf(r: CliResult): Record<string, number | boolean | string> | undefined {
  return jsonLines(r.stdout).find((l): l is Record<string, number | boolean | string> => typeof l === "object" && l !== null && "found" in l);
}

/** A check on the summary: every key of `want` must match. */
function summaryIs(want: Record<string, number | boolean>) {
  return (_: unknown[], r: CliResult): string | null => {
    const s = summaryOf(r);
    if (!s) return `no summary line: ${r.stdout.slice(0, 200)}`;
    for (const [k, v] of Object.entries(want)) if (s[k] !== v) return `${k} is ${String(s[k])}, expected ${String(v)}`;
    return null;
  };
}

/** No Rust source locations or LanceDB internals in what the user sees. */
function noInternals(res: CaseResult, r: CliResult): CaseResult {
  if (res.outcome === "clean-error" && /rustc|\/cargo\/|\.rs:\d|LanceError|Caused by/.test(r.stderr)) return { outcome: "unclear-error", detail: `LanceDB internals: ${r.stderr.slice(0, 200)}` };
  return res;
}

/** An exit-1 index run prints its error lines, the human summary and "N inputs failed": every line starts with "siglip2: ". */
function expectInputErrors(r: CliResult, count: number, e: ErrorExpectation): CaseResult {
  const res = expectCleanError(r, { code: 1, allowStdout: true, lines: count + 1, ...e });
  if (res.outcome !== "clean-error") return res;
  const lines = r.stderr.split("\n").filter((l) => l.length > 0);
  const stray = lines.find((l) => !l.startsWith("siglip2: "));
  if (stray !== undefined) return { outcome: "unclear-error", detail: `a line broken in two: ${JSON.stringify(stray)}` };
  if (lines.length !== count + 2) return { outcome: "unclear-error", detail: `${lines.length} stderr lines, expected ${count} errors + summary + count` };
  return res;
}

/** Damage every LanceDB data file of the table. */
function damageData(db: string, how: "truncate" | "remove"): void {
  const data = join(db, "images.lance", "data");
  for (const f of readdirSync(data)) (how === "truncate" ? truncateSync(join(data, f), 100) : rmSync(join(data, f)));
}

/** As root, permission checks do not apply: such runs go as user nobody (65534), on files it owns. */
const AS_ROOT = process.getuid?.() === 0;
const NOBODY = 65534;
function nobodyOpts(tree: string[]): CliOptions {
  if (!AS_ROOT) return {};
  const home = tempDir("siglip2-nobody-");
  for (const t of [...tree, home]) chownTree(t);
  // nobody must reach the folders: every folder from the temporary directory down is opened to it.
  for (const t of [...tree, home]) for (let p = t; p !== "/" && p.startsWith(`${tmpdir()}/`); p = join(p, "..")) chmodSync(p, statSync(p).mode | 0o755);
  return { uid: NOBODY, gid: NOBODY, env: { HOME: home, XDG_CACHE_HOME: home, SIGLIP2_CACHE: join(home, "onnx") } };
}
function chownTree(p: string): void {
  chownSync(p, NOBODY, NOBODY);
  if (lstatSync(p).isDirectory()) for (const n of readdirSync(p)) chownTree(join(p, n));
}
function chmodTree(p: string, dirMode: number, fileMode: number): void {
  const st = lstatSync(p);
  if (st.isDirectory()) {
    for (const n of readdirSync(p)) chmodTree(join(p, n), dirMode, fileMode);
    chmodSync(p, dirMode);
  } else if (st.isFile()) chmodSync(p, fileMode);
}

/** Start `siglip2 index`, send `sig` once `commits` more table versions exist; resolve when it ends. */
function runAndSignal(args: string[], db: string, commits: number, sig: NodeJS.Signals): Promise<CliResult> {
  const versions = join(db, "images.lance", "_versions");
  const count = () => (existsSync(versions) ? readdirSync(versions).length : 0);
  const start = count();
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HF_HUB_OFFLINE: "1" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    let sent = false;
    const poll = setInterval(() => {
      if (!sent && count() - start >= commits) {
        sent = true;
        child.kill(sig);
      }
    }, 2);
    const limit = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code, signal) => {
      clearInterval(poll);
      clearTimeout(limit);
      resolve({ code, signal: sent && sig === "SIGKILL" ? null : signal, stdout, stderr: sent ? stderr : `${stderr}(finished before the signal)`, timedOut: false, ms: performance.now() - t0 });
    });
  });
}

/** N distinct small PNGs (noise) in a folder. */
async function manyImages(n: number): Promise<{ dir: string; paths: string[] }> {
  const sharp = (await import("sharp")).default;
  const dir = join(tempDir("siglip2-many-"), "many");
  mkdirSync(dir, { recursive: true });
  const paths = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const px = Buffer.alloc(10 * 10 * 3);
    let s = (i * 2654435761 + 99) >>> 0 || 1;
    for (let j = 0; j < px.length; j++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      px[j] = s & 255;
    }
    const p = join(dir, `img${String(i).padStart(3, "0")}.png`);
    writeFileSync(p, await sharp(px, { raw: { width: 10, height: 10, channels: 3 } }).png().toBuffer());
    return p;
  }));
  return { dir, paths };
}

const WEIRD = [`it's a "quote".png`, "new\nline.png", "back\\slash é 🙂 日本.png", `${"x".repeat(250)}.png`, "tab\there.PNG", "pct%_under_[1].jpg", join(...Array.from({ length: 12 }, () => "d".repeat(200)), "deep.png")];

/** Write a NaN over the first stored vector's second component, in the data file. */
function poisonVector(db: string, v: Float32Array): boolean {
  const data = join(db, "images.lance", "data");
  const needle = Buffer.from(v.buffer, v.byteOffset, 16);
  for (const f of readdirSync(data)) {
    const b = readFileSync(join(data, f));
    const at = b.indexOf(needle);
    if (at >= 0) {
      b.writeFloatLE(Number.NaN, at + 4);
      writeFileSync(join(data, f), b);
      return true;
    }
  }
  return false;
}

export const cases: HostileCase[] = [
  // ── The checkpoint fingerprint reads the weights the loader reads ──────────
  {
    id: "index-single-file-beside-a-stray-shard-index",
    area: "index",
    expect: "correct",
    run: async () => {
      // model.safetensors wins over an index (as WeightStore.openDir decides), so the stray
      // index, which names a shard in a sub-folder, is not read by the fingerprint either.
      const model = copyFixture("fixres-f32");
      writeFileSync(join(model, "model.safetensors.index.json"), JSON.stringify({ weight_map: { logit_scale: "sub/model-00001-of-00001.safetensors" } }));
      const a = folder(GOOD.slice(0, 2));
      const db = newDb();
      const r = await runCli(["index", a.dir, "--model", model, "--db", db]);
      return withRows(expectCorrect(r, summaryIs({ added: 2, total: 2 })), db, a.paths);
    },
  },
  {
    id: "index-sub-folder-shard-refused",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const model = copyFixture("fixres-sharded");
      const p = join(model, "model.safetensors.index.json");
      const idx = JSON.parse(readFileSync(p, "utf8")) as { weight_map: Record<string, string> };
      idx.weight_map["logit_scale"] = "sub/" + idx.weight_map["logit_scale"];
      writeFileSync(p, JSON.stringify(idx));
      const a = folder(GOOD.slice(0, 2));
      const r = await runCli(["index", a.dir, "--model", model, "--db", newDb()]);
      return expectCleanError(r, { mentions: ["invalid shard name", "sub/"] });
    },
  },
  // ── Rows lost or duplicated ──────────────────────────────────────────────
  {
    id: "index-emptied-mount-point-refused",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const a = folder(GOOD.slice(0, 4));
      const mnt = folder(GOOD.slice(4));
      const db = newDb();
      await libIndex(db, [a.dir, mnt.dir]);
      for (const p of mnt.paths) rmSync(p); // the folder exists, and is empty
      const r = await cliIndex([mnt.dir], db);
      return withRows(expectCleanError(r, { mentions: ["refusing to remove all 4 rows", mnt.dir, "--prune"] }), db, [...a.paths, ...mnt.paths]);
    },
  },
  {
    id: "index-emptied-mount-point-with-prune",
    area: "index",
    expect: "correct",
    run: async () => {
      const a = folder(GOOD.slice(0, 4));
      const mnt = folder(GOOD.slice(4));
      const db = newDb();
      await libIndex(db, [a.dir, mnt.dir]);
      for (const p of mnt.paths) rmSync(p);
      const r = await cliIndex([mnt.dir], db, ["--prune"]);
      return withRows(expectCorrect(r, summaryIs({ removed: 4, total: 4 })), db, a.paths);
    },
  },
  {
    id: "index-most-files-gone-refused",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder();
      const db = newDb();
      await libIndex(db, [f.dir]);
      for (const p of f.paths.slice(0, 5)) rmSync(p);
      const r = await cliIndex([f.dir], db);
      return withRows(expectCleanError(r, { mentions: ["refusing to remove 5 of the 8 rows", f.dir] }), db, f.paths);
    },
  },
  {
    id: "index-half-the-files-gone-removed",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder();
      const db = newDb();
      await libIndex(db, [f.dir]);
      for (const p of f.paths.slice(0, 4)) rmSync(p);
      const r = await cliIndex([f.dir], db);
      return withRows(expectCorrect(r, summaryIs({ removed: 4, total: 4, unchanged: 4 })), db, f.paths.slice(4));
    },
  },
  {
    id: "index-same-generation-duplicates-cleaned",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder();
      const db = newDb();
      await libIndex(db, [f.dir]);
      // A second writer wrote every row again, with the same generation.
      const st = await ImageStore.open(db, "images");
      await st.add(await st.all());
      st.close();
      const r = await cliIndex([f.dir], db);
      const res = expectCorrect(r, (l, rr) => summaryIs({ recovered: 8, total: 8, embedded: 0, unchanged: 8 })(l, rr) ?? (/cleaned up 8 duplicate rows/.test(rr.stderr) ? null : `no clean-up note: ${rr.stderr}`));
      return withRows(res, db, f.paths);
    },
  },
  {
    id: "index-stale-lock-six-processes-one-writer",
    area: "index",
    expect: "correct",
    timeoutMs: 60_000,
    run: () =>
      expectReturns(() => lockRace(3, 6), (trials) => {
        const bad = trials.findIndex((t) => t.winners.length !== 1 || t.losers.length !== 5);
        return bad >= 0 ? `trial ${bad}: ${trials[bad]!.winners.length} writers` : null;
      }),
  },
  {
    id: "index-live-lock-refused",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 3));
      const db = newDb();
      await libIndex(db, [f.dir]);
      const lock = join(db, "images.lock");
      const held = JSON.stringify({ pid: process.pid, host: hostname() }); // this test process: alive
      writeFileSync(lock, held);
      const r = await cliIndex([f.dir], db, ["--rebuild"]);
      const res = expectCleanError(r, { mentions: [`another siglip2 index (pid ${process.pid})`, lock] });
      if (readFileSync(lock, "utf8") !== held) return { outcome: "garbage", detail: "a live lock was taken" };
      return withRows(res, db, f.paths);
    },
  },
  {
    id: "index-garbage-lock-file-taken-over",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder(GOOD.slice(0, 3));
      const db = newDb();
      mkdirSync(db, { recursive: true });
      const lock = join(db, "images.lock");
      writeFileSync(lock, "\u0000\u0001 not json");
      utimesSync(lock, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
      const r = await cliIndex([f.dir], db);
      const res = expectCorrect(r, (l, rr) => summaryIs({ added: 3 })(l, rr) ?? (existsSync(lock) ? "the lock was not released" : null));
      return withRows(res, db, f.paths);
    },
  },
  // ── Damaged tables, full disk ────────────────────────────────────────────
  {
    id: "index-truncated-data-file-search",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 4));
      const db = newDb();
      await libIndex(db, [f.dir]);
      damageData(db, "truncate");
      const r = await runCli(["search", "a cat", "--db", db]);
      return noInternals(expectCleanError(r, { mentions: [`table "images" in db ${db} is damaged`, "--rebuild", "--model"] }), r);
    },
  },
  {
    id: "index-truncated-data-file-index-then-rebuild",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder(GOOD.slice(0, 4));
      const db = newDb();
      await libIndex(db, [f.dir]);
      damageData(db, "truncate");
      const r1 = await cliIndex([f.dir], db);
      const first = noInternals(expectCleanError(r1, { mentions: ["is damaged", `--rebuild --db ${db}`] }), r1);
      if (first.outcome !== "clean-error") return first;
      const r2 = await cliIndex([f.dir], db, ["--rebuild"]);
      return withRows(expectCorrect(r2, summaryIs({ added: 4, total: 4 })), db, f.paths);
    },
  },
  {
    id: "index-missing-data-file",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 4));
      const db = newDb();
      await libIndex(db, [f.dir]);
      damageData(db, "remove");
      const r = await cliIndex([f.dir], db);
      return noInternals(expectCleanError(r, { mentions: ["is damaged", "--rebuild"] }), r);
    },
  },
  {
    id: "index-garbage-manifest",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 4));
      const db = newDb();
      await libIndex(db, [f.dir]);
      const versions = join(db, "images.lance", "_versions");
      for (const v of readdirSync(versions)) if (v.endsWith(".manifest")) writeFileSync(join(versions, v), Buffer.alloc(300, 0xa5));
      const r = await runCli(["search", "a cat", "--db", db, "--json"]);
      return noInternals(expectCleanError(r, { mentions: ["is damaged", "--rebuild"] }), r);
    },
  },
  {
    id: "index-nan-in-a-stored-vector",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 4));
      const db = newDb();
      await libIndex(db, [f.dir]);
      const [first] = await tableRows(db);
      if (!poisonVector(db, first!.vector)) return { outcome: "unclear-error", detail: "the stored vector was not found in the data files" };
      const r = await runCli(["search", "a cat", "--db", db, "--json"]);
      return noInternals(expectCleanError(r, { mentions: ["is damaged", "cannot be scored", "--rebuild"] }), r);
    },
  },
  {
    id: "index-disk-full",
    area: "index",
    expect: "clean-error",
    timeoutMs: 60_000,
    run: async () => {
      const many = await manyImages(40);
      const db = newDb();
      // Writes beyond 8 KiB per file fail (EFBIG, as on a full disk); SIGXFSZ is ignored so the write just fails.
      const cmd = `trap '' XFSZ; ulimit -f 8; exec "$0" "$@"`;
      const r = await runProcess("bash", ["-c", cmd, process.execPath, BIN, "index", many.dir, "--model", F32, "--db", db, "--batch-size", "4"]);
      const res = noInternals(expectCleanError(r, { mentions: ["no space left on the device", `table "images" in db ${db}`] }), r);
      if (res.outcome !== "clean-error") return res;
      // Every finished batch is kept, and the same command finishes the job.
      const kept = (await tableRows(db)).length;
      const r2 = await cliIndex([many.dir], db, ["--batch-size", "4"]);
      const resumed = await withRows(expectCorrect(r2, summaryIs({ unchanged: kept, embedded: 40 - kept, total: 40 })), db, many.paths);
      return resumed.outcome === "correct" ? res : resumed;
    },
  },
  // ── The DB path and the table name ───────────────────────────────────────
  {
    id: "index-db-path-is-a-file",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 2));
      const file = join(tempDir(), "not-a-folder");
      writeFileSync(file, "precious");
      const r = await cliIndex([f.dir], file);
      const res = expectCleanError(r, { mentions: [file, "is a file, not a folder"] });
      return readFileSync(file, "utf8") === "precious" ? res : { outcome: "data-lost", detail: "the file given as --db was changed" };
    },
  },
  {
    id: "index-search-db-path-is-a-file",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const file = join(tempDir(), "not-a-folder");
      writeFileSync(file, "precious");
      return expectCleanError(await runCli(["search", "a cat", "--db", file]), { mentions: [file, "is a file, not a folder"] });
    },
  },
  {
    id: "index-db-path-empty",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await cliIndex([folder(GOOD.slice(0, 1)).dir], ""), { mentions: ["--db", "empty path"] }),
  },
  {
    id: "index-table-name-with-slash",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const db = newDb();
      const r = await cliIndex([folder(GOOD.slice(0, 1)).dir], db, ["--table", "a/b"]);
      const res = expectCleanError(r, { mentions: ['table name "a/b"'] });
      return existsSync(db) ? { outcome: "garbage", detail: "the DB folder was created for a bad table name" } : res;
    },
  },
  {
    id: "index-read-only-db-refused",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 3));
      const db = newDb();
      await libIndex(db, [f.dir]);
      writeFileSync(join(f.dir, "new.png"), readFileSync(join(IMG, "rgba_19x29.png")));
      const opts = nobodyOpts([join(db, ".."), join(f.dir, "..")]);
      chmodTree(db, 0o555, 0o444);
      const r = await cliIndex([f.dir], db, [], opts);
      const res = expectCleanError(r, { mentions: [join(db, "images.lock"), "permission denied"] });
      return withRows(res, db, f.paths);
    },
  },
  {
    id: "index-search-read-only-db",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder(GOOD.slice(0, 3));
      const db = newDb();
      await libIndex(db, [f.dir]);
      const opts = nobodyOpts([join(db, ".."), join(f.dir, "..")]);
      chmodTree(db, 0o555, 0o444);
      const r = await runCli(["search", "a cat", "--db", db, "--json"], opts);
      const res = expectCorrect(r, (lines) => {
        const got = (lines as Array<{ path?: string }>).map((l) => l.path).sort();
        return JSON.stringify(got) === JSON.stringify([...f.paths].sort()) ? null : `hits ${JSON.stringify(got)}`;
      });
      return withRows(res, db, f.paths);
    },
  },
  {
    id: "index-another-checkpoint-refused",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 3));
      const db = newDb();
      await libIndex(db, [f.dir]);
      const r = await runCli(["index", f.dir, "--model", ODD, "--db", db]);
      return withRows(expectCleanError(r, { mentions: ["never mixed", "fixres-odd", "fixres-f32"] }), db, f.paths);
    },
  },
  // ── File names, links, roots ─────────────────────────────────────────────
  {
    id: "index-odd-file-names-index-and-search",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder(GOOD.slice(0, WEIRD.length), WEIRD);
      const db = newDb();
      const r = await cliIndex([f.dir], db);
      const res = expectCorrect(r, summaryIs({ added: WEIRD.length, total: WEIRD.length, failed: 0 }));
      if (res.outcome !== "correct") return res;
      const s = await runCli(["search", "a cat", "--db", db, "--k", "20"]);
      const table = expectCorrect(s, (_, rr) => {
        const lines = rr.stdout.trimEnd().split("\n");
        if (lines.length !== WEIRD.length + 1) return `${lines.length} table lines for ${WEIRD.length} hits: a file name broke a line`;
        if (!lines.some((l) => l.endsWith("new\\nline.png"))) return "the newline is not shown escaped";
        return lines.some((l) => l.endsWith(`it's a "quote".png`)) ? null : "the quoted name is not shown as it is";
      });
      return withRows(table, db, f.paths);
    },
  },
  {
    id: "index-odd-file-names-update-and-delete",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder(GOOD.slice(0, WEIRD.length), WEIRD);
      const db = newDb();
      await libIndex(db, [f.dir]);
      // Rewrite three (new content, new mtime) and delete two: the SQL filters must match these names exactly.
      for (const [i, p] of f.paths.slice(0, 3).entries()) {
        copyFileSync(join(IMG, GOOD[7 - i]!), p);
        utimesSync(p, new Date(), new Date(Date.now() + 5000));
      }
      for (const p of f.paths.slice(3, 5)) rmSync(p);
      const r = await cliIndex([f.dir], db);
      const res = expectCorrect(r, summaryIs({ updated: 3, removed: 2, total: WEIRD.length - 2 }));
      if (res.outcome !== "correct") return res;
      const rows = await tableRows(db);
      for (const p of f.paths.slice(0, 3)) {
        const row = rows.find((x) => x.path === p);
        if (!row || row.sha256 !== (await sha256File(p))) return { outcome: "garbage", detail: `the row of ${JSON.stringify(p)} was not updated` };
      }
      return withRows(res, db, [...f.paths.slice(0, 3), ...f.paths.slice(5)]);
    },
  },
  {
    id: "index-corrupt-file-with-newline-in-name",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder([...GOOD.slice(0, 3), "bad_truncated.png"], [...GOOD.slice(0, 3), "bad\nname.png"]);
      const db = newDb();
      const r = await cliIndex([f.dir], db);
      return withRows(expectInputErrors(r, 1, { mentions: [`${f.dir}/bad\\nname.png`, "corrupt"] }), db, f.paths.slice(0, 3));
    },
  },
  {
    id: "index-symlink-loop-and-dangling-link",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 3));
      symlinkSync("loop.png", join(f.dir, "loop.png"));
      symlinkSync("gone.png", join(f.dir, "dangling.jpg"));
      const db = newDb();
      const r = await cliIndex([f.dir], db);
      return withRows(expectInputErrors(r, 2, { mentions: [`${f.dir}/loop.png: symbolic link loop`, `${f.dir}/dangling.jpg: broken symbolic link`] }), db, f.paths);
    },
  },
  {
    id: "index-file-turned-into-link-loop-keeps-row",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 4));
      const db = newDb();
      await libIndex(db, [f.dir]);
      rmSync(f.paths[0]!);
      symlinkSync(f.paths[0]!, f.paths[0]!);
      const r = await cliIndex([f.dir], db);
      const res = expectInputErrors(r, 1, { mentions: [`${f.paths[0]}: symbolic link loop`] });
      return withRows(res.outcome === "clean-error" && summaryOf(r)?.["removed"] !== 0 ? { outcome: "data-lost", detail: "the row was removed" } : res, db, f.paths);
    },
  },
  {
    id: "index-unreadable-subfolder-keeps-rows",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD, [...GOOD.slice(0, 4), ...GOOD.slice(4).map((n) => join("private", n))]);
      const db = newDb();
      const opts = nobodyOpts([join(db, ".."), join(f.dir, "..")]);
      const first = await cliIndex([f.dir], db, [], opts);
      if (first.code !== 0) return { outcome: "unclear-error", detail: `set-up run: exit ${first.code}: ${first.stderr}` };
      chmodSync(join(f.dir, "private"), 0o000);
      const r = await cliIndex([f.dir], db, [], opts);
      chmodSync(join(f.dir, "private"), 0o755);
      const res = expectInputErrors(r, 1, { mentions: [`${join(f.dir, "private")}: permission denied`] });
      return withRows(res.outcome === "clean-error" && summaryOf(r)?.["removed"] !== 0 ? { outcome: "data-lost", detail: `removed ${String(summaryOf(r)?.["removed"])}` } : res, db, f.paths);
    },
  },
  {
    id: "index-root-given-twice-and-nested",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder(GOOD, [...GOOD.slice(0, 4), ...GOOD.slice(4).map((n) => join("sub", n))]);
      const db = newDb();
      const r = await cliIndex([f.dir, f.dir, join(f.dir, "sub"), `${f.dir}/`, join(f.dir, "sub", "..", "sub")], db);
      return withRows(expectCorrect(r, summaryIs({ found: 8, added: 8, total: 8 })), db, f.paths);
    },
  },
  {
    id: "index-file-vanishes-between-walk-and-read",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder(GOOD.slice(0, 4));
      const db = newDb();
      await libIndex(db, [f.dir]);
      copyFileSync(join(IMG, "rgba_19x29.png"), f.paths[0]!); // changed: to be read again...
      utimesSync(f.paths[0]!, new Date(), new Date(Date.now() + 5000));
      const errors: SiglipError[] = [];
      const r = await expectReturns(
        () => libIndex(db, [f.dir], { onError: (e) => errors.push(e), onPlan: () => rmSync(f.paths[0]!) }), // ...but gone once walked
        (s) => s.failed === 1 && s.removed === 1 && s.total === 3 && errors.length === 1 && errors[0]!.message === `cannot read ${f.paths[0]}: vanished while indexing`
          ? null : `summary ${JSON.stringify(s)}; errors ${errors.map((e) => e.message).join(" | ")}`,
      );
      return withRows(r, db, f.paths.slice(1));
    },
  },
  {
    id: "index-file-changes-during-the-run",
    area: "index",
    expect: "correct",
    run: async () => {
      const f = folder(GOOD.slice(0, 3));
      const db = newDb();
      const late = join(f.dir, "late.png");
      copyFileSync(join(IMG, "rgba_19x29.png"), late);
      const errors: SiglipError[] = [];
      // The new file is rewritten after the walk saw it: what was hashed/embedded is not what the walk's size and mtime describe.
      const onPlan = () => {
        copyFileSync(join(IMG, "photo_200x300.png"), late);
        utimesSync(late, new Date(), new Date(Date.now() + 5000));
      };
      const r = await expectReturns(() => libIndex(db, [f.dir], { onError: (e) => errors.push(e), onPlan }), (s) =>
        s.failed === 1 && s.added === 3 && errors[0]?.message.includes(`${late}: it changed while being indexed`) ? null : `summary ${JSON.stringify(s)}; ${errors.map((e) => e.message).join(" | ")}`);
      if (r.outcome !== "correct") return r;
      const again = await cliIndex([f.dir], db);
      const res = expectCorrect(again, summaryIs({ added: 1, unchanged: 3, total: 4 }));
      if (res.outcome !== "correct") return res;
      const row = (await tableRows(db)).find((x) => x.path === late);
      if (row?.sha256 !== (await sha256File(late))) return { outcome: "garbage", detail: "the row does not hold the file's content hash" };
      return withRows(res, db, [...f.paths, late]);
    },
  },
  // ── search ───────────────────────────────────────────────────────────────
  {
    id: "index-search-empty-table",
    area: "index",
    expect: "correct",
    run: async () => {
      const empty = join(tempDir(), "empty");
      mkdirSync(empty);
      const db = newDb();
      const r1 = await cliIndex([empty], db);
      const first = expectCorrect(r1, summaryIs({ found: 0, total: 0 }));
      if (first.outcome !== "correct") return first;
      const r = await runCli(["search", "a cat", "--db", db, "--json"]);
      return expectCorrect(r, (lines, rr) => (lines.length === 0 && /table "images" in DB .* is empty/.test(rr.stderr) ? null : `stdout ${rr.stdout.slice(0, 100)} stderr ${rr.stderr}`));
    },
  },
  {
    id: "index-search-missing-table",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 1));
      const db = newDb();
      await libIndex(db, [f.dir]);
      return expectCleanError(await runCli(["search", "a cat", "--db", db, "--table", "nope"]), { mentions: ['table "nope"', "does not exist", "siglip2 index"] });
    },
  },
  {
    id: "index-search-top-zero",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["search", "a cat", "--db", newDb(), "--top", "0"]), { mentions: ["--top must be an integer from 1 to 10000", '"0"'] }),
  },
  {
    id: "index-search-k-negative",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["search", "a cat", "--db", newDb(), "--k", "-5"]), { mentions: ["--k must be an integer from 1 to 10000", '"-5"'] }),
  },
  {
    id: "index-search-k-huge",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["search", "a cat", "--db", newDb(), "--k", "9".repeat(400)]), { mentions: ["--k must be an integer from 1 to 10000"] }),
  },
  {
    id: "index-search-empty-query",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 1));
      const db = newDb();
      await libIndex(db, [f.dir]);
      return expectCleanError(await runCli(["search", " \t ", "--db", db]), { mentions: ["the text query is empty"] });
    },
  },
  {
    id: "index-search-corrupt-query-image",
    area: "index",
    expect: "clean-error",
    run: async () => {
      const f = folder(GOOD.slice(0, 2));
      const db = newDb();
      await libIndex(db, [f.dir]);
      const bad = join(IMG, "bad_truncated.jpg");
      return withRows(expectCleanError(await runCli(["search", "--image", bad, "--db", db]), { mentions: [bad, "corrupt or truncated"] }), db, f.paths);
    },
  },
  // ── Interruptions ────────────────────────────────────────────────────────
  {
    id: "index-sigint-mid-run-then-resume",
    area: "index",
    expect: "correct",
    timeoutMs: 90_000,
    run: async () => {
      const many = await manyImages(24);
      const db = newDb();
      const args = ["index", many.dir, "--model", F32, "--db", db, "--batch-size", "2"];
      const r = await runAndSignal(args, db, 3, "SIGINT");
      const s = summaryOf(r);
      if (r.code !== 130 || s?.["interrupted"] !== true) return { outcome: "unclear-error", detail: `exit ${r.code}, summary ${r.stdout.slice(0, 200)} ${r.stderr.slice(-200)}` };
      const partial = await tableRows(db);
      if (partial.length !== s["total"] || new Set(partial.map((x) => x.path)).size !== partial.length) return { outcome: "data-lost", detail: `${partial.length} rows after the interruption, summary total ${String(s["total"])}` };
      const again = await cliIndex([many.dir], db);
      return withRows(expectCorrect(again, summaryIs({ unchanged: partial.length, embedded: 24 - partial.length, total: 24 })), db, many.paths);
    },
  },
  {
    id: "index-kill-9-mid-run-then-resume",
    area: "index",
    expect: "correct",
    timeoutMs: 90_000,
    run: async () => {
      const many = await manyImages(24);
      const db = newDb();
      const r = await runAndSignal(["index", many.dir, "--model", F32, "--db", db, "--batch-size", "2"], db, 4, "SIGKILL");
      if (r.code === 0) return { outcome: "unclear-error", detail: "the run finished before it was killed" };
      const partial = await tableRows(db);
      if (partial.length % 2 !== 0 || new Set(partial.map((x) => x.path)).size !== partial.length) return { outcome: "data-lost", detail: `${partial.length} rows after kill -9: a batch was half written or duplicated` };
      const again = await cliIndex([many.dir], db); // the dead writer's lock is taken over
      return withRows(expectCorrect(again, summaryIs({ unchanged: partial.length, embedded: 24 - partial.length, total: 24 })), db, many.paths);
    },
  },
];
