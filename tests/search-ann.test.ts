/**
 * Search at scale (src/search): the IVF-PQ path (built by size, refreshed, retrained) gives
 * the exact ranking after the re-rank; filters are applied inside the query (k results still
 * come back, on the ANN path too, and a named flag cannot inject SQL); query arithmetic equals
 * the hand computation from embed outputs; the filter columns (and the migration of a table
 * that predates them); dedupe groups resized / re-encoded copies; bad filters are one line.
 *
 * The ANN tables are synthetic (dim 32, clustered) so that the index has enough rows to
 * train while the test stays fast; the oracle is a float64 brute force in this file.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect } from "@lancedb/lancedb";
import sharp from "sharp";
import { SigLIP2 } from "../src/api.js";
import { findDuplicates } from "../src/search/dedupe.js";
import { exifTakenMs, parseExifDate } from "../src/search/file-meta.js";
import { filterSql, globToRegex, parseDate } from "../src/search/filters.js";
import { embeddingSetup, modelName } from "../src/search/identity.js";
import { buildIndex, openForIndexing } from "../src/search/indexer.js";
import { combineQueries, searchByVector, searchTerms } from "../src/search/search.js";
import { ImageStore, META_UNREAD, type StoredImage } from "../src/search/store.js";
import { SiglipError } from "../src/errors.js";
import { tempDir } from "./harness/files.js";
import { FIXTURES, REPO } from "./harness/paths.js";

const BIN = join(REPO, "dist", "cli", "main.js");
const F32 = join(FIXTURES, "models", "fixres-f32");
const IMG = join(FIXTURES, "images");
const DIM = 32;

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1" } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Deterministic clustered unit vectors (xorshift + Box–Muller). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}
function clustered(n: number, seed: number): Float32Array[] {
  const r = rng(seed);
  const g = () => Math.sqrt(-2 * Math.log(r() || 1e-9)) * Math.cos(2 * Math.PI * r());
  const centres = Array.from({ length: 12 }, () => Float32Array.from({ length: DIM }, g));
  return Array.from({ length: n }, (_, i) => {
    const c = centres[Math.floor(r() * centres.length)]!; // random: not aligned with the folder (i % 2) or type (i % 3)
    const v = Float32Array.from(c, (x) => x + 0.5 * g());
    const norm = Math.sqrt(dot(v, v));
    return v.map((x) => x / norm);
  });
}

const META = { model: "synthetic", fingerprint: "f".repeat(64), dim: DIM, modelType: "siglip", resampler: "torch" as const };

/** A table of `n` synthetic rows: paths in folders a/ and b'q/ (a quote in the name), sizes and dates that vary. */
async function syntheticStore(n: number, seed = 7): Promise<{ store: ImageStore; rows: StoredImage[] }> {
  const store = await ImageStore.open(join(tempDir(), "db"), "images", { create: META });
  const vecs = clustered(n, seed);
  const rows: StoredImage[] = vecs.map((vector, i) => ({
    path: `/photos/${i % 2 ? "a" : "b'q"}/img${i}.${["jpg", "png", "jpeg"][i % 3]}`,
    size: 1000 + i,
    mtimeMs: Date.UTC(2024, 0, 1) + i * 86_400_000,
    sha256: i.toString(16).padStart(64, "0"),
    gen: 1,
    vector,
    meta: { ext: ["jpg", "png", "jpeg"][i % 3]!, width: 100 + (i % 10) * 100, height: 100 + (i % 7) * 100, ...(i % 4 ? { takenMs: Date.UTC(2020, 0, 1) + i * 3_600_000 } : {}) },
  }));
  for (let s = 0; s < rows.length; s += 500) await store.add(rows.slice(s, s + 500));
  return { store, rows };
}

/** The float64 brute-force top k among the rows that pass `keep`. */
function bruteTop(rows: StoredImage[], q: Float32Array, k: number, keep: (r: StoredImage) => boolean = () => true): string[] {
  return rows.filter(keep).map((r) => ({ p: r.path, c: dot(r.vector, q) })).sort((a, b) => b.c - a.c).slice(0, k).map((x) => x.p);
}

async function nearestPaths(store: ImageStore, q: Float32Array, k: number, o: Parameters<ImageStore["nearest"]>[2] = {}): Promise<string[]> {
  return (await store.nearest(q, k, o)).map((r) => ({ p: r.path, c: dot(r.vector, q) })).sort((a, b) => b.c - a.c).map((x) => x.p);
}

describe("ANN index", () => {
  it("is built at the threshold, refreshed past 5% new rows, retrained at 2×; ANN + re-rank equals the exact ranking", async () => {
    const { store, rows } = await syntheticStore(600);
    try {
      assert.equal(await store.ensureAnnIndex({ threshold: 601 }), "none");
      assert.equal((await store.annState()).name, undefined);
      assert.equal(await store.ensureAnnIndex({ threshold: 500, numPartitions: 4, numSubVectors: 16 }), "built");
      const st = await store.annState();
      assert.equal(st.name, "vector_ivfpq_600");
      assert.equal(st.indexedRows, 600);
      const queries = clustered(20, 99);
      for (const q of queries) {
        const truth = bruteTop(rows, q, 10);
        assert.deepEqual(await nearestPaths(store, q, 10), truth); // the ANN path (index present)
        assert.deepEqual(await nearestPaths(store, q, 10, { exact: true }), truth);
      }
      // Without the re-rank (refine 1) the PQ distances alone misrank: the re-rank is what makes it exact.
      let misses = 0;
      for (const q of queries) {
        const truth = bruteTop(rows, q, 10);
        const pq = await nearestPaths(store, q, 10, { refineFactor: 1, nprobes: 1 });
        misses += pq.filter((p, i) => p !== truth[i]).length;
      }
      assert.ok(misses > 0, "nprobes 1 / refine 1 should miss some: the test would not see a missing re-rank");
      // 20 more rows (3%): current; 40 more (> 5% unindexed): refreshed into the index.
      const more = clustered(60, 5).map((vector, i) => ({ ...rows[0]!, path: `/photos/new/n${i}.png`, sha256: `n${i}`, vector }));
      await store.add(more.slice(0, 20));
      assert.equal(await store.ensureAnnIndex({ threshold: 500, numPartitions: 4, numSubVectors: 16 }), "current");
      await store.add(more.slice(20));
      assert.equal((await store.annState()).unindexedRows, 60);
      assert.equal(await store.ensureAnnIndex({ threshold: 500, numPartitions: 4, numSubVectors: 16 }), "refreshed");
      assert.equal((await store.annState()).unindexedRows, 0);
      const all = [...rows, ...more];
      for (const q of queries.slice(0, 5)) assert.deepEqual(await nearestPaths(store, q, 10), bruteTop(all, q, 10));
      // Grow to 2× the trained rows: a new index replaces the old one.
      const grow = clustered(600, 11).map((vector, i) => ({ ...rows[0]!, path: `/photos/grow/g${i}.png`, sha256: `g${i}`, vector }));
      await store.add(grow);
      assert.equal(await store.ensureAnnIndex({ threshold: 500, numPartitions: 4, numSubVectors: 16 }), "retrained");
      const st2 = await store.annState();
      assert.equal(st2.name, "vector_ivfpq_1260");
      assert.equal(st2.indexedRows, 1260);
    } finally {
      store.close();
    }
  });
});

describe("filters inside the query", () => {
  let store: ImageStore;
  let rows: StoredImage[];
  before(async () => {
    ({ store, rows } = await syntheticStore(600, 3));
    await store.ensureAnnIndex({ threshold: 1, numPartitions: 8, numSubVectors: 4 });
  });
  after(() => store.close());

  const cases: Array<[string, Parameters<typeof filterSql>[0], (r: StoredImage) => boolean]> = [
    ["path prefix with a quote in the folder name", { pathPrefix: "/photos/b'q" }, (r) => r.path.startsWith("/photos/b'q/")],
    ["glob on the file name", { glob: "img1*.{png,jpeg}" }, (r) => /\/img1[^/]*\.(png|jpeg)$/.test(r.path)],
    ["type jpg (and jpeg)", { types: ["jpg"] }, (r) => /\.jpe?g$/.test(r.path)],
    ["min width and height", { minWidth: 700, minHeight: 400 }, (r) => r.meta!.width! >= 700 && r.meta!.height! >= 400],
    ["modified between", { after: "2024-03-01", before: "2024-09-01T00:00:00+00:00" }, (r) => r.mtimeMs >= Date.UTC(2024, 2, 1) && r.mtimeMs < Date.UTC(2024, 8, 1)],
    ["taken after (files without EXIF time never pass)", { takenAfter: "2020-01-10T12:00" }, (r) => r.meta!.takenMs !== undefined && r.meta!.takenMs >= Date.UTC(2020, 0, 10, 12)],
    ["raw where AND a named flag", { where: "size % 5 = 0", types: ["png"] }, (r) => r.size % 5 === 0 && r.path.endsWith(".png")],
  ];
  for (const [name, f, keep] of cases) {
    it(`${name}: the top k of the passing rows, k of them, ANN and exact`, async () => {
      const where = filterSql(f)!;
      for (const q of clustered(4, 1234)) {
        const truth = bruteTop(rows, q, 10, keep);
        assert.equal(truth.length, 10);
        // rows that would be in the unfiltered top 10 but fail the filter are really there to exclude
        assert.ok(bruteTop(rows, q, 10).some((p) => !truth.includes(p)), "the filter must change the top 10");
        assert.deepEqual(await nearestPaths(store, q, 10, { where, exact: true }), truth);
        assert.deepEqual(await nearestPaths(store, q, 10, { where }), truth);
      }
    });
  }

  it("a narrow filter on the ANN path with one probed partition still returns k rows (exact fallback)", async () => {
    const keep = (r: StoredImage) => r.path.startsWith("/photos/a/") && r.size % 23 === 0;
    const where = filterSql({ pathPrefix: "/photos/a", where: "size % 23 = 0" })!;
    const q = clustered(1, 77)[0]!;
    const truth = bruteTop(rows, q, 10, keep);
    assert.equal(truth.length, 10);
    assert.deepEqual(await nearestPaths(store, q, 10, { where, nprobes: 1, refineFactor: 1 }), truth);
  });

  it("named flags are quoted: a path with quotes, %, _ and SQL in it is a literal", async () => {
    const sql = filterSql({ pathPrefix: "/x' OR '1'='1", glob: "a_%'; DROP TABLE images; --*" })!;
    assert.equal((await store.nearest(clustered(1, 1)[0]!, 5, { where: sql })).length, 0);
    assert.match(globToRegex("**/a?[!b].{jpg,png}"), /^\^\(\?:\.\*\/\)\?a\[\^\/\]\[\^b\]\\\.\(\?:jpg\|png\)\$$/);
  });

  it("bad filters are one usage line", async () => {
    const q = clustered(1, 1)[0]!;
    const bad: Array<[() => Promise<unknown> | unknown, RegExp]> = [
      [() => store.nearest(q, 5, { where: "width >>> 3" }), /^invalid filter \(--where\): /],
      [() => store.nearest(q, 5, { where: "no_such_column = 1" }), /^invalid filter \(--where\): .*no_such_column/],
      [() => filterSql({ where: "1 = 1) OR (1 = 1" }), /unbalanced parentheses/],
      [() => filterSql({ after: "yesterday" }), /--after: expected a date/],
      [() => filterSql({ takenAfter: "2024-02-30" }), /--taken-after: expected a date/],
      [() => filterSql({ after: "2024-05-01", before: "2024-01-01" }), /is not before/],
      [() => filterSql({ types: ["jp g"] }), /not a file type/],
      [() => filterSql({ minWidth: 0 }), /--min-width must be an integer/],
    ];
    for (const [f, re] of bad) {
      await assert.rejects(async () => f(), (e: unknown) => e instanceof SiglipError && e.code === "usage" && re.test(e.message) && !e.message.includes("\n"));
    }
    assert.equal(parseDate("2024-06-01T12:30:00+02:00", "--after"), Date.UTC(2024, 5, 1, 10, 30));
  });
});

/** A fixture folder: a photo, its re-encoded and resized copies, and distinct images. */
async function dupFolder(): Promise<{ dir: string; src: string; q70: string; half: string; big: string; others: string[] }> {
  const dir = join(tempDir(), "photos");
  mkdirSync(join(dir, "copies"), { recursive: true });
  const src = join(dir, "photo.jpg");
  copyFileSync(join(IMG, "photo_48x64.jpg"), src);
  const q70 = join(dir, "copies", "photo-q70.jpg");
  writeFileSync(q70, await sharp(src).jpeg({ quality: 70 }).toBuffer());
  const half = join(dir, "copies", "photo-half.png");
  writeFileSync(half, await sharp(src).resize(24, 32).png().toBuffer());
  const big = join(dir, "copies", "photo-big.jpeg");
  writeFileSync(big, await sharp(src).resize(96, 128).jpeg({ quality: 90 }).toBuffer());
  const others = ["rgb_64x64.png", "grad_224x224.png", "bw_9x14.png", "rgb_23x37.png"].map((f) => {
    const p = join(dir, f);
    copyFileSync(join(IMG, f), p);
    return p;
  });
  return { dir, src, q70, half, big, others };
}

describe("real images: filter columns, arithmetic, dedupe, CLI", () => {
  let model: SigLIP2;
  before(async () => {
    model = await SigLIP2.load(F32, { lowercase: false });
  });
  after(async () => {
    await model.close();
  });

  it("the indexer fills the filter columns: size after EXIF orientation, extension, EXIF capture time", async () => {
    const dir = join(tempDir(), "photos");
    mkdirSync(dir);
    const six = join(dir, "rot.JPG");
    copyFileSync(join(IMG, "exif6_48x64.jpg"), six); // orientation 6: stored 64×48, shown 48×64
    const dated = join(dir, "dated.jpg");
    const exif = { IFD0: { Make: "test" }, IFD2: { DateTimeOriginal: "2021:07:04 18:30:05", OffsetTimeOriginal: "+02:00" } } as unknown as Record<string, Record<string, string>>;
    writeFileSync(dated, await sharp(join(IMG, "photo_48x64.jpg")).withExif(exif).jpeg().toBuffer());
    const store = await openForIndexing(join(tempDir(), "db"), "images", await embeddingSetup(model, modelName(F32)));
    try {
      await buildIndex(model, store, [dir]);
      const got = new Map((await store.all()).map((r) => [r.path, r.meta]));
      const rot = await sharp(six).metadata();
      assert.deepEqual(got.get(six), { ext: "jpg", width: rot.autoOrient.width, height: rot.autoOrient.height });
      assert.notEqual(rot.autoOrient.width, rot.width, "fixture must be rotated");
      const plain = await sharp(dated).metadata();
      assert.deepEqual(got.get(dated), { ext: "jpg", width: plain.width, height: plain.height, takenMs: Date.UTC(2021, 6, 4, 16, 30, 5) });
    } finally {
      store.close();
    }
    assert.equal(parseExifDate("2021:07:04 18:30:05"), Date.UTC(2021, 6, 4, 18, 30, 5));
    assert.equal(exifTakenMs(Buffer.from("Exif\0\0MM\0*\0\0\0\x08\xff\xff", "latin1")), undefined); // 65535 entries, cut short
  });

  it("a table that predates the filter columns: search says how to upgrade; the next index run adds them without embedding", async () => {
    const f = await dupFolder();
    const db = join(tempDir(), "db");
    assert.equal(cli(["index", f.dir, "--model", F32, "--db", db]).code, 0);
    const conn = await connect(db);
    const t = await conn.openTable("images");
    await t.dropColumns(["ext", "width", "height", "taken_ms"]);
    t.close();
    conn.close();
    const r = cli(["search", "x", "--db", db, "--min-width", "10"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr.trim(), /^siglip2: .*predates the filter columns .*run `siglip2 index`[^\n]*$/);
    const ix = cli(["index", f.dir, "--model", F32, "--db", db]);
    assert.equal(ix.code, 0, ix.stderr);
    const s = JSON.parse(ix.stdout.trim().split("\n").pop()!) as { embedded: number; touched: number; unchanged: number };
    assert.deepEqual([s.embedded, s.touched, s.unchanged], [0, 8, 0]);
    const store = await ImageStore.open(db, "images");
    try {
      const byPath = new Map((await store.all()).map((x) => [x.path, x.meta!]));
      assert.deepEqual(byPath.get(f.big), { ext: "jpeg", width: 96, height: 128 });
      assert.ok([...byPath.values()].every((m) => m.width !== META_UNREAD));
    } finally {
      store.close();
    }
    const again = JSON.parse(cli(["index", f.dir, "--model", F32, "--db", db]).stdout.trim().split("\n").pop()!) as { unchanged: number };
    assert.equal(again.unchanged, 8);
  });

  it("query arithmetic equals normalise(e_text + e_image − 0.5·e_minus) from embed outputs; CLI cosines agree", async () => {
    const f = await dupFolder();
    const db = join(tempDir(), "db");
    assert.equal(cli(["index", f.dir, "--model", F32, "--db", db]).code, 0);
    const [eText, eMinus] = await model.embedTexts(["a red square", "people"]);
    const [img] = await model.imageFeaturesSettled([f.others[1]!]);
    const eImg = (img as { embedding: Float32Array }).embedding;
    const sum = eText!.map((x, i) => x + eImg[i]! - 0.5 * eMinus![i]!);
    const n = Math.sqrt(dot(sum, sum));
    const hand = Array.from(sum, (x) => x / n);
    const got = await combineQueries(model, [{ text: "a red square", weight: 1 }, { image: f.others[1]!, weight: 1 }, { text: "people", weight: -0.5 }]);
    for (let i = 0; i < hand.length; i++) assert.ok(Math.abs(got[i]! - hand[i]!) < 1e-6);
    const store = await ImageStore.open(db, "images");
    try {
      const hits = await searchTerms(model, store, [{ text: "a red square", weight: 1 }, { image: f.others[1]!, weight: 1 }, { text: "people", weight: -0.5 }], 8);
      const rows = await store.all();
      const want = rows.map((r) => ({ p: r.path, c: dot(r.vector, hand) })).sort((a, b) => b.c - a.c);
      assert.deepEqual(hits.map((h) => h.path), want.map((w) => w.p));
      hits.forEach((h, i) => assert.ok(Math.abs(h.cosine - want[i]!.c) < 1e-6));
      assert.ok(hits.every((h) => h.probability === undefined));
      // the plain text query keeps its probability
      assert.ok((await searchByVector(model, store, eText!, "text", 3)).every((h) => h.probability !== undefined));
      const r = cli(["search", "a red square", "--image", f.others[1]!, "--minus", "people:0.5", "--db", db, "--json", "--no-lowercase"]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { path: string; cosine: number; probability?: number });
      assert.deepEqual(lines.map((l) => l.path), want.map((w) => w.p));
      lines.forEach((l, i) => assert.ok(Math.abs(l.cosine - want[i]!.c) < 1e-6 && l.probability === undefined));
      const cancel = cli(["search", "people", "--minus", "people", "--db", db]);
      assert.equal(cancel.code, 2);
      assert.match(cancel.stderr.trim(), /^siglip2: the query terms cancel out[^\n]*$/);
    } finally {
      store.close();
    }
  });

  it("dedupe groups the re-encoded and resized copies (best: resolution, then bytes); --non-best lists the others", async () => {
    const f = await dupFolder();
    const db = join(tempDir(), "db");
    assert.equal(cli(["index", f.dir, "--model", F32, "--db", db]).code, 0);
    // At 0.99 the random-weight fixture model joins the re-encode (0.999) and the two resizes
    // (0.999 between them, 0.95 to the original); distinct images stay below (at most 0.97).
    const r = cli(["dedupe", "--db", db, "--threshold", "0.99"]);
    assert.equal(r.code, 0, r.stderr);
    const groups = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { group: Array<{ path: string; width: number; height: number; bytes: number }>; best: string });
    const { statSync } = await import("node:fs");
    const [srcBytes, q70Bytes] = [statSync(f.src).size, statSync(f.q70).size];
    const first = srcBytes >= q70Bytes ? [f.src, f.q70] : [f.q70, f.src];
    assert.deepEqual(groups.map((g) => g.group.map((m) => m.path)).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)), [[f.big, f.half], first].sort((a, b) => (a[0]! < b[0]! ? -1 : 1)));
    for (const g of groups) assert.equal(g.best, g.group[0]!.path);
    assert.deepEqual(groups.find((g) => g.best === f.big)!.group[0], { path: f.big, width: 96, height: 128, bytes: statSync(f.big).size });
    const nb = cli(["dedupe", "--db", db, "--threshold", "0.99", "--non-best"]);
    assert.deepEqual(nb.stdout.trim().split("\n").sort(), [f.half, first[1]!].sort());
    // the library, exact and on an ANN index, agree
    const store = await ImageStore.open(db, "images");
    try {
      const exact = await findDuplicates(store, { threshold: 0.99, exact: true });
      assert.deepEqual(exact.map((g) => g.best).sort(), groups.map((g) => g.best).sort());
      const loose = await findDuplicates(store, { threshold: 0.94 });
      assert.ok(loose.some((g) => g.group.length >= 4 && g.group.some((m) => m.path === f.src) && g.group.some((m) => m.path === f.big)), "at 0.94 the original joins its resized copies");
    } finally {
      store.close();
    }
    const bad = cli(["dedupe", "--db", db, "--threshold", "1.5"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr.trim(), /^siglip2: --threshold must be a cosine above 0 and at most 1, got 1\.5$/);
  });

  it("CLI filters: --type, --min-width, --path-prefix, --glob, --after; bad --where is one line", async () => {
    const f = await dupFolder();
    utimesSync(f.others[0]!, new Date("2020-01-01T00:00:00Z"), new Date("2020-01-01T00:00:00Z"));
    const db = join(tempDir(), "db");
    assert.equal(cli(["index", f.dir, "--model", F32, "--db", db]).code, 0);
    const paths = (args: string[]) => {
      const r = cli(["search", "a photo", "--db", db, "--json", "-k", "8", ...args]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split("\n").filter((l) => l).map((l) => (JSON.parse(l) as { path: string }).path).sort();
    };
    assert.deepEqual(paths(["--type", "jpg"]), [f.src, f.q70, f.big].sort());
    assert.deepEqual(paths(["--min-width", "65"]), [f.big, f.others[1]!].sort()); // photo.jpg and rgb_64x64 are 64 wide
    assert.deepEqual(paths(["--path-prefix", join(f.dir, "copies")]), [f.q70, f.half, f.big].sort());
    assert.deepEqual(paths(["--glob", "**/copies/*.png"]), [f.half]);
    assert.deepEqual(paths(["--before", "2021-01-01", "--exact"]), [f.others[0]!]);
    for (const [args, re] of [
      [["--where", "width >>> 3"], /^siglip2: invalid filter \(--where\): /],
      [["--where", "nope = 1"], /^siglip2: invalid filter \(--where\): .*nope/],
      [["--after", "2024-13-01"], /^siglip2: --after: expected a date/],
    ] as Array<[string[], RegExp]>) {
      const r = cli(["search", "a photo", "--db", db, ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr.trim(), re);
    }
  });
});
