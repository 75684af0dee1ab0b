/**
 * Image index and search (src/search): the round trip against transformers'
 * goldens, incremental updates (counting what is embedded), unreadable files,
 * model mismatches, recovery from a crash between a batch's write and the delete
 * of the rows it replaces, and a real `kill -9` of `siglip2 index` followed by a
 * resume, compared with a fresh full index.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync, writeSync, closeSync, existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SigLIP2 } from "../src/api.js";
import { SiglipError } from "../src/errors.js";
import { embeddingSetup, modelName } from "../src/search/identity.js";
import { buildIndex, openForIndexing, type IndexOptions } from "../src/search/indexer.js";
import { TableLock, lockFileIdentity } from "../src/search/lock.js";
import { searchImage, searchText } from "../src/search/search.js";
import { DEFAULT_TABLE, ImageStore, defaultDbPath, type StoredImage } from "../src/search/store.js";
import { sha256File } from "../src/search/walk.js";
import { DEFAULT_TABLE as CLI_DEFAULT_TABLE } from "../src/cli/context.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { copyFixture, tempDir, noisePng } from "./harness/files.js";
import { lockRace } from "./harness/lock-race.js";
import { FIXTURES, REPO } from "./harness/paths.js";
import { loadManifest } from "./harness/parity.js";

const BIN = join(REPO, "dist", "cli", "main.js");
const F32 = join(FIXTURES, "models", "fixres-f32");
const man = loadManifest("fixres-f32");
const golden = SafetensorsFile.open(join(FIXTURES, "goldens", "fixres-f32.safetensors"));
const D = 32;

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1" } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function noStack(stderr: string): void {
  assert.ok(!/\n\s+at /.test(stderr), `stack trace in stderr:\n${stderr}`);
}


/** The 8 fixture images with golden embeddings, copied into a folder. */
function fixtureFolder(): { dir: string; paths: string[] } {
  const dir = join(tempDir(), "photos");
  mkdirSync(join(dir, "nested", "deeper"), { recursive: true });
  const paths = man.images.map((p, i) => {
    const dst = i < 4 ? join(dir, `img${i}.png`) : join(dir, "nested", i < 6 ? "" : "deeper", `img${i}.png`);
    copyFileSync(join(REPO, p), dst);
    return dst;
  });
  writeFileSync(join(dir, "notes.txt"), "not an image, not indexed");
  return { dir, paths };
}

/** The model's setup for the fixture and an open table in a fresh DB. */
async function freshStore(model: SigLIP2, db = join(tempDir(), "db"), name = F32): Promise<ImageStore> {
  return openForIndexing(db, "images", await embeddingSetup(model, modelName(name)));
}

/** Count the images the model embeds. */
function countEmbeds(model: SigLIP2): { n: number } {
  const c = { n: 0 };
  const orig = model.imageFeaturesSettled.bind(model);
  model.imageFeaturesSettled = async (images, ...rest) => {
    c.n += images.length;
    return orig(images, ...rest);
  };
  return c;
}

function byPath(rows: StoredImage[]): Map<string, StoredImage> {
  const m = new Map<string, StoredImage>();
  for (const r of rows) {
    assert.ok(!m.has(r.path), `duplicate row for ${r.path}`);
    m.set(r.path, r);
  }
  return m;
}

describe("index and search", () => {
  let model: SigLIP2;
  before(async () => {
    model = await SigLIP2.load(F32, { lowercase: false, imageBatchSize: 4 });
  });
  after(async () => {
    await model.close();
  });

  it("round trip: stored vectors are transformers' embeddings; a text query ranks as the goldens do", async () => {
    const { dir, paths } = fixtureFolder();
    const store = await freshStore(model);
    const s = await buildIndex(model, store, [dir], { batchSize: 3 });
    assert.equal(s.found, 8);
    assert.equal(s.added, 8);
    assert.equal(s.total, 8);
    const rows = byPath(await store.all());
    const gImg = golden.readFloat32("image.embeds");
    paths.forEach((p, i) => {
      const r = rows.get(p)!;
      assert.ok(r, p);
      assert.ok(maxAbs(r.vector, gImg.subarray(i * D, (i + 1) * D)) < 1e-5, p);
      assert.equal(r.size, statSync(p).size);
      assert.match(r.sha256, /^[0-9a-f]{64}$/);
    });
    // Text → image: the ranking and the scores follow from the golden embeddings and logits.
    const gTxt = golden.readFloat32("text.embeds");
    const gLogits = golden.readFloat32("logits_per_image"); // [image][text]
    for (const ti of [0, 2, 5]) {
      const hits = await searchText(model, store, man.texts[ti]!, 8);
      assert.equal(hits.length, 8);
      const gCos = paths.map((_, i) => dot(gImg.subarray(i * D, (i + 1) * D), gTxt.subarray(ti * D, (ti + 1) * D)));
      hits.forEach((h, k) => {
        const i = paths.indexOf(h.path);
        assert.equal(h.rank, k + 1);
        assert.ok(Math.abs(h.cosine - gCos[i]!) < 1e-5, `cosine of ${h.path}`);
        const gProb = 1 / (1 + Math.exp(-gLogits[i * man.texts.length + ti]!));
        assert.ok(Math.abs(h.probability! - gProb) < 1e-4, `probability of ${h.path}`);
        if (k > 0) assert.ok(gCos[paths.indexOf(hits[k - 1]!.path)]! >= gCos[i]! - 1e-6, "ranking differs from the goldens'");
      });
    }
    store.close();
  });

  it("image → image: an exact copy ranks first with cosine ≈ 1; no probability for image pairs", async () => {
    const { dir, paths } = fixtureFolder();
    const copy = join(dir, "nested", "copy-of-img2.png");
    copyFileSync(paths[2]!, copy);
    const store = await freshStore(model);
    const s = await buildIndex(model, store, [dir]);
    assert.equal(s.added, 9);
    assert.equal(s.reused, 1, "the copy's vector is reused, not embedded again");
    const hits = await searchImage(model, store, paths[2]!, 3);
    assert.deepEqual(new Set(hits.slice(0, 2).map((h) => h.path)), new Set([paths[2], copy]));
    for (const h of hits.slice(0, 2)) assert.ok(Math.abs(h.cosine - 1) < 1e-5, String(h.cosine));
    assert.ok(hits[2]!.cosine < 0.9999);
    assert.equal(hits[0]!.probability, undefined);
    const bad = join(FIXTURES, "images", "bad_text.txt");
    await assert.rejects(searchImage(model, store, bad), (e: unknown) => e instanceof SiglipError && e.message.includes(bad));
    await assert.rejects(searchText(model, store, "x", 0), /k must be an integer/);
    store.close();
    await assert.rejects(ImageStore.open(join(tempDir(), "none"), "images"), /no index: the DB folder .* does not exist/);
    await assert.rejects(ImageStore.open(store.dbPath, "other"), /no index: table "other" in DB .* does not exist/);
  });

  it("incremental: a re-run embeds only new and changed files, reuses touched and renamed ones, removes deleted ones", async () => {
    const { dir, paths } = fixtureFolder();
    const other = join(tempDir(), "elsewhere"); // rows outside the re-indexed folder must survive
    mkdirSync(other);
    copyFileSync(join(FIXTURES, "images", "photo_48x64.jpg"), join(other, "keep.jpg"));
    const store = await freshStore(model);
    const count = countEmbeds(model);
    await buildIndex(model, store, [dir, other]);
    assert.equal(count.n, 9);
    // Nothing changed: nothing is read.
    count.n = 0;
    let s = await buildIndex(model, store, [dir]);
    assert.equal(count.n, 0);
    assert.equal(s.unchanged, 8);
    // New, modified, deleted, touched (same bytes, new mtime) and renamed files.
    const added = join(dir, "nested", "new.png");
    writeFileSync(added, await noisePng(1));
    writeFileSync(paths[1]!, await noisePng(2));
    utimesSync(paths[1]!, new Date(), new Date(Date.now() + 5000));
    rmSync(paths[3]!);
    utimesSync(paths[4]!, new Date(), new Date(Date.now() + 5000));
    const renamed = join(dir, "renamed.png");
    renameSync(paths[5]!, renamed);
    count.n = 0;
    s = await buildIndex(model, store, [dir]);
    assert.equal(count.n, 2, "only the new and the modified file are embedded");
    assert.deepEqual(
      { added: s.added, updated: s.updated, touched: s.touched, reused: s.reused, removed: s.removed, unchanged: s.unchanged, embedded: s.embedded },
      { added: 2, updated: 1, touched: 1, reused: 1, removed: 2, unchanged: 4, embedded: 2 },
    );
    const rows = byPath(await store.all());
    assert.deepEqual([...rows.keys()].sort(), [paths[0], paths[1], paths[2], paths[4], paths[6], paths[7], added, renamed, join(other, "keep.jpg")].sort());
    const [fresh] = await model.embedImages([paths[1]!]);
    assert.ok(maxAbs(rows.get(paths[1]!)!.vector, fresh!) < 1e-6, "the modified file has its new vector");
    assert.equal(rows.get(paths[4]!)!.mtimeMs, statSync(paths[4]!).mtimeMs, "the touched file's mtime is updated");
    const gImg = golden.readFloat32("image.embeds");
    assert.ok(maxAbs(rows.get(renamed)!.vector, gImg.subarray(5 * D, 6 * D)) < 1e-5);
    store.close();
  });

  it("unreadable files are reported one each and skipped; the run completes", async () => {
    const { dir } = fixtureFolder();
    const bad = ["bad_truncated.png", "bad_empty.png", "bad_random.png", "bad_truncated.jpg"];
    for (const b of bad) copyFileSync(join(FIXTURES, "images", b), join(dir, "nested", b));
    const store = await freshStore(model);
    const errors: SiglipError[] = [];
    const s = await buildIndex(model, store, [dir], { onError: (e) => errors.push(e) });
    assert.equal(s.failed, 4);
    assert.equal(s.total, 8);
    assert.deepEqual(errors.map((e) => e.subject ?? "").sort(), bad.map((b) => join(dir, "nested", b)).sort());
    for (const e of errors) assert.ok(e.message.includes(e.subject!) && !e.message.includes("\n"), e.message);
    // A file that becomes unreadable loses its (stale) row.
    const p = join(dir, "img0.png");
    writeFileSync(p, "garbage");
    const s2 = await buildIndex(model, store, [dir], { onError: () => {} });
    assert.equal(s2.removed, 1);
    assert.equal(s2.total, 7);
    store.close();
  });

  it("a table built with one model refuses another, and a changed checkpoint under the same name", async () => {
    const db = join(tempDir(), "db");
    const { dir } = fixtureFolder();
    const ckpt = copyFixture("fixres-f32");
    const m1 = await SigLIP2.load(ckpt);
    const store = await openForIndexing(db, "images", await embeddingSetup(m1, modelName(ckpt)));
    await buildIndex(m1, store, [join(dir, "nested")]);
    store.close();
    await m1.close();
    const odd = await SigLIP2.load(join(FIXTURES, "models", "fixres-odd"));
    await assert.rejects(openForIndexing(db, "images", await embeddingSetup(odd, modelName(join(FIXTURES, "models", "fixres-odd")))), /was built with model .*fixres-f32.*not .*fixres-odd.*never mixed/);
    await odd.close();
    await assert.rejects(openForIndexing(db, "images", await embeddingSetup(m1, modelName(ckpt), { dtype: "int8" })), /built with --dtype fp32, not int8/);
    await assert.rejects(openForIndexing(db, "images", await embeddingSetup(m1, modelName(ckpt), { resampler: "pil" })), /built with --resampler torch, not pil/);
    // Same folder, different weights: a fine-tune written over the checkpoint.
    const fd = openSync(join(ckpt, "model.safetensors"), "r+");
    writeSync(fd, Buffer.from([1, 2, 3, 4]), 0, 4, statSync(join(ckpt, "model.safetensors")).size - 4);
    closeSync(fd);
    const m2 = await SigLIP2.load(ckpt);
    await assert.rejects(openForIndexing(db, "images", await embeddingSetup(m2, modelName(ckpt))), /different checkpoint under the same name/);
    // Another table in the same DB is fine, and --rebuild replaces the table.
    const t2 = await openForIndexing(db, "images-v2", await embeddingSetup(m2, modelName(ckpt)));
    t2.close();
    const rebuilt = await ImageStore.open(db, "images", { create: await embeddingSetup(m2, modelName(ckpt)), rebuild: true });
    assert.equal(await rebuilt.count(), 0);
    rebuilt.close();
    await m2.close();
  });

  it("a crash between a batch's write and the delete of the rows it replaces loses nothing and duplicates nothing", async () => {
    const { dir, paths } = fixtureFolder();
    const store = await freshStore(model);
    await buildIndex(model, store, [dir]);
    for (const [k, i] of [0, 1, 2].entries()) {
      writeFileSync(paths[i]!, await noisePng(10 + k));
      utimesSync(paths[i]!, new Date(), new Date(Date.now() + 5000));
    }
    const crash: IndexOptions = {
      batchSize: 2,
      afterWrite: (b) => {
        if (b === 1) throw new Error("simulated crash");
      },
    };
    await assert.rejects(buildIndex(model, store, [dir], crash), /simulated crash/);
    // Both batches' new rows are in; the second batch's old row was not deleted.
    assert.equal(await store.count(), 9);
    // Search already shows each path once, with the newest vector.
    const [q] = await model.embedImages([paths[2]!]);
    const hits = await searchImage(model, store, paths[2]!, 8);
    assert.equal(new Set(hits.map((h) => h.path)).size, 8);
    assert.ok(Math.abs(hits.find((h) => h.path === paths[2])!.cosine - dot(q!, q!)) < 1e-5);
    const s = await buildIndex(model, store, [dir]);
    assert.equal(s.recovered, 1);
    assert.equal(s.embedded, 0, "nothing is embedded again");
    const rows = byPath(await store.all());
    assert.equal(rows.size, 8);
    const fresh = await model.embedImages(paths);
    paths.forEach((p, i) => assert.ok(maxAbs(rows.get(p)!.vector, fresh[i]!) < 1e-6, p));
    store.close();
  });

  it("NaFlex checkpoints: vectors at the table's patch budget equal transformers'; another budget is refused", async () => {
    const NF = join(FIXTURES, "models", "naflex-f32");
    const nman = loadManifest("naflex-f32");
    const ngold = SafetensorsFile.open(join(FIXTURES, "goldens", "naflex-f32.safetensors"));
    const dir = join(tempDir(), "nf");
    mkdirSync(dir);
    const paths = nman.images.map((p) => {
      const dst = join(dir, p.split("/").pop()!);
      copyFileSync(join(REPO, p), dst);
      return dst;
    });
    const db = join(tempDir(), "db");
    const nf = await SigLIP2.load(NF);
    for (const [table, budget] of [["m64", undefined], ["m256", 256]] as const) {
      const setup = await embeddingSetup(nf, modelName(NF), budget !== undefined ? { maxPatches: budget } : {});
      assert.equal(setup.maxPatches, budget ?? 64, "the checkpoint's default budget is recorded");
      const st = await openForIndexing(db, table, setup);
      await buildIndex(nf, st, [dir], setup.maxPatches !== undefined ? { maxPatches: setup.maxPatches } : {});
      const rows = byPath(await st.all());
      const g = ngold.readFloat32(`${table}.embeds`);
      paths.forEach((p, i) => assert.ok(maxAbs(rows.get(p)!.vector, g.subarray(i * D, (i + 1) * D)) < 1e-5, `${table} ${p}`));
      st.close();
    }
    await assert.rejects(openForIndexing(db, "m64", await embeddingSetup(nf, modelName(NF), { maxPatches: 256 })), /built with --max-patches 64, not 256/);
    await nf.close();
  });

  it("a live lock refuses a second writer; a stale one (dead pid) is taken over", () => {
    const db = tempDir();
    const lock = TableLock.acquire(db, "images");
    assert.ok(existsSync(join(db, "images.lock")));
    lock.release();
    writeFileSync(join(db, "images.lock"), JSON.stringify({ pid: process.ppid })); // a live process
    assert.throws(() => TableLock.acquire(db, "images"), new RegExp(`another siglip2 index \\(pid ${process.ppid}\\)`));
    writeFileSync(join(db, "images.lock"), JSON.stringify({ pid: 2 ** 22 + 12345 })); // beyond pid_max: gone
    TableLock.acquire(db, "images").release();
    assert.ok(!existsSync(join(db, "images.lock")));
  });

  it("rows of one path with the same generation (two writers) are all removed but one; the count reported is what the table lost", async () => {
    const { dir, paths } = fixtureFolder();
    const store = await freshStore(model);
    await buildIndex(model, store, [dir]);
    const all = await store.all();
    // A second writer wrote the same rows with the same generations, and one path 12 more times.
    await store.add(all);
    for (let i = 0; i < 12; i++) await store.add(all.filter((r) => r.path === paths[0]));
    assert.equal(await store.count(), 28);
    // Search shows each path once, and still k of them (more duplicates than its headroom).
    const hits = await searchImage(model, store, paths[0]!, 8);
    assert.deepEqual(hits.map((h) => h.path).sort(), [...paths].sort());
    const count = countEmbeds(model);
    const s = await buildIndex(model, store, [dir]);
    assert.equal(s.recovered, 20);
    assert.equal(count.n, 0, "nothing is embedded again");
    assert.equal(await store.count(), 8);
    const rows = byPath(await store.all());
    assert.deepEqual([...rows.keys()].sort(), [...paths].sort());
    const gImg = golden.readFloat32("image.embeds");
    paths.forEach((p, i) => assert.ok(maxAbs(rows.get(p)!.vector, gImg.subarray(i * D, (i + 1) * D)) < 1e-5, p));
    assert.equal((await buildIndex(model, store, [dir])).recovered, 0);
    store.close();
  });

  it("the prune rule: a run that would remove more than half of a folder's rows is refused before anything is written; half is allowed; prune removes them", async () => {
    const { dir, paths } = fixtureFolder(); // 4 images at the top, 4 under nested/
    const store = await freshStore(model);
    await buildIndex(model, store, [dir]);
    // An emptied mount point: the folder exists and is empty.
    const mnt = join(dir, "nested");
    rmSync(mnt, { recursive: true });
    mkdirSync(mnt);
    const added = join(dir, "new.png");
    writeFileSync(added, await noisePng(3));
    const refused = (re: RegExp) => (e: unknown) => e instanceof SiglipError && re.test(e.message) && /pass --prune/.test(e.message) && !e.message.includes("\n");
    await assert.rejects(buildIndex(model, store, [mnt]), refused(new RegExp(`refusing to remove all 4 rows under ${mnt}`)));
    // Given together with its parent (which loses exactly half), the emptied folder is still refused, and nothing is written.
    await assert.rejects(buildIndex(model, store, [dir, mnt]), refused(/refusing to remove all 4 rows under/));
    assert.equal(await store.count(), 8);
    assert.ok(!(await store.rows()).some((r) => r.path === added), "nothing is written by a refused run");
    // Exactly half of the rows under the folder given: allowed.
    let s = await buildIndex(model, store, [dir]);
    assert.deepEqual({ removed: s.removed, added: s.added, total: s.total }, { removed: 4, added: 1, total: 5 });
    // 3 of 5: refused; with prune, removed.
    for (const p of [paths[0]!, paths[1]!, added]) rmSync(p);
    await assert.rejects(buildIndex(model, store, [dir]), refused(/refusing to remove 3 of the 5 rows under/));
    assert.equal(await store.count(), 5);
    s = await buildIndex(model, store, [dir], { prune: true });
    assert.deepEqual({ removed: s.removed, total: s.total }, { removed: 3, total: 2 });
    assert.deepEqual((await store.rows()).map((r) => r.path).sort(), [paths[2], paths[3]].sort());
    store.close();
  });

  it("a file that exists but cannot be read (a symbolic link loop) keeps its row", async () => {
    const { dir, paths } = fixtureFolder();
    const store = await freshStore(model);
    await buildIndex(model, store, [dir]);
    rmSync(paths[0]!);
    symlinkSync(paths[0]!, paths[0]!);
    const errors: SiglipError[] = [];
    const s = await buildIndex(model, store, [dir], { onError: (e) => errors.push(e) });
    assert.deepEqual({ failed: s.failed, removed: s.removed, total: s.total }, { failed: 1, removed: 0, total: 8 });
    assert.equal(errors[0]!.message, `cannot read ${paths[0]}: symbolic link loop`);
    assert.ok((await store.rows()).some((r) => r.path === paths[0]));
    store.close();
  });

  it("a file that changes while it is being indexed is not written (hash and vector would disagree); the next run indexes it", async () => {
    const { dir, paths } = fixtureFolder();
    const store = await freshStore(model);
    await buildIndex(model, store, [dir]);
    const before = byPath(await store.all()).get(paths[1]!)!;
    writeFileSync(paths[1]!, await noisePng(20));
    utimesSync(paths[1]!, new Date(), new Date(Date.now() + 5000));
    const orig = model.imageFeaturesSettled.bind(model);
    let changed = false;
    model.imageFeaturesSettled = async (images, ...rest) => {
      if (!changed) {
        changed = true; // another program rewrites the file while the batch is being embedded
        writeFileSync(paths[1]!, await noisePng(21));
        utimesSync(paths[1]!, new Date(), new Date(Date.now() + 10_000));
      }
      return orig(images, ...rest);
    };
    const errors: SiglipError[] = [];
    let s;
    try {
      s = await buildIndex(model, store, [dir], { onError: (e) => errors.push(e) });
    } finally {
      model.imageFeaturesSettled = orig;
    }
    assert.ok(changed);
    assert.deepEqual({ failed: s.failed, updated: s.updated, total: s.total }, { failed: 1, updated: 0, total: 8 });
    assert.match(errors[0]!.message, new RegExp(`${paths[1]}: it changed while being indexed`));
    const kept = byPath(await store.all()).get(paths[1]!)!;
    assert.equal(kept.sha256, before.sha256, "the old row stays as it was");
    s = await buildIndex(model, store, [dir]);
    assert.equal(s.updated, 1);
    const row = byPath(await store.all()).get(paths[1]!)!;
    const [fresh] = await model.embedImages([paths[1]!]);
    assert.ok(maxAbs(row.vector, fresh!) < 1e-6);
    assert.equal(row.sha256, await sha256File(paths[1]!));
    store.close();
  });

  it("a damaged table (truncated data files) is one SiglipError naming the table and how to rebuild it; --rebuild recovers", async () => {
    const { dir } = fixtureFolder();
    const db = join(tempDir(), "db");
    let store = await freshStore(model, db);
    await buildIndex(model, store, [dir]);
    store.close();
    const data = join(db, "images.lance", "data");
    for (const f of readdirSync(data)) truncateSync(join(data, f), 100);
    const damaged = (e: unknown) =>
      e instanceof SiglipError && /^table "images" in DB .* is damaged \(.*\); rebuild it with siglip2 index DIR --model .*fixres-f32 --rebuild --db /.test(e.message) && !/rustc|cargo|\.rs:\d/.test(e.message);
    store = await ImageStore.open(db, "images");
    await assert.rejects(store.rows(), damaged);
    await assert.rejects(searchText(model, store, "a cat"), damaged);
    store.close();
    store = await freshStore(model, db);
    await assert.rejects(buildIndex(model, store, [dir]), damaged);
    store.close();
    const setup = await embeddingSetup(model, modelName(F32));
    store = await ImageStore.open(db, "images", { create: setup, rebuild: true });
    assert.equal((await buildIndex(model, store, [dir])).total, 8);
    store.close();
  });

  it("six processes started together against a stale lock: exactly one becomes the writer, every time", async () => {
    const trials = await lockRace(6, 6);
    for (const [i, t] of trials.entries()) {
      assert.equal(t.winners.length, 1, `trial ${i}: ${t.winners.length} writers`);
      assert.equal(t.losers.length, 5);
      for (const l of t.losers) assert.match(l, new RegExp(`^another siglip2 index \\(pid ${t.winners[0]}\\) is updating table "images"`));
    }
    // A takeover guard left by a contender that died is taken over too, and cleaned up.
    let guard = "";
    const [t] = await lockRace(1, 4, (db) => {
      guard = join(db, `images.lock.takeover-${lockFileIdentity(join(db, "images.lock"))}`);
      writeFileSync(guard, JSON.stringify({ pid: 2 ** 22 + 4322 }));
    });
    assert.equal(t!.winners.length, 1);
    assert.ok(!existsSync(guard), "the dead contender's guard is removed");
  });

  it("default DB location: $SIGLIP2_DB, else $XDG_CACHE_HOME/siglip2/db, else ~/.cache/siglip2/db", () => {
    assert.equal(CLI_DEFAULT_TABLE, DEFAULT_TABLE);
    assert.equal(defaultDbPath({ SIGLIP2_DB: "/x/db" }), "/x/db");
    assert.equal(defaultDbPath({ XDG_CACHE_HOME: "/c" }), "/c/siglip2/db");
    assert.match(defaultDbPath({}), /\.cache\/siglip2\/db$/);
  });
});

describe("siglip2 index / search CLI", () => {
  it("index, re-index, search text and image, --json; unreadable files exit 1 with one line each", () => {
    const { dir, paths } = fixtureFolder();
    copyFileSync(join(FIXTURES, "images", "bad_truncated.png"), join(dir, "broken.png"));
    const db = join(tempDir(), "db");
    const r = cli(["index", dir, "--model", F32, "--db", db]);
    assert.equal(r.code, 1, r.stderr);
    const summary = JSON.parse(r.stdout.trim());
    assert.equal(summary.added, 8);
    assert.equal(summary.failed, 1);
    assert.equal(summary.total, 8);
    assert.equal(summary.model, F32);
    const errLines = r.stderr.trim().split("\n");
    assert.equal(errLines.filter((l) => l.includes(join(dir, "broken.png"))).length, 1);
    assert.ok(errLines.some((l) => /holds 8 images/.test(l)));
    noStack(r.stderr);

    const t = cli(["search", "A photo of two cats sleeping on a red sofa.", "--db", db, "--k", "3"]);
    assert.equal(t.code, 0, t.stderr);
    const lines = t.stdout.trim().split("\n");
    assert.match(lines[0]!, /^rank\s+cosine\s+probability\s+path$/);
    assert.equal(lines.length, 4);
    const j = cli(["search", "A photo of two cats sleeping on a red sofa.", "--db", db, "--k", "3", "--json", "--no-lowercase"]);
    const hits = j.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(hits.map((h) => h.rank), [1, 2, 3]);
    for (const h of hits) assert.ok(paths.includes(h.path) && typeof h.cosine === "number" && h.probability > 0 && h.probability < 1);
    const im = cli(["search", "--image", paths[6]!, "--db", db, "--json", "--k", "2"]);
    const ih = im.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(ih[0].path, paths[6]);
    assert.ok(Math.abs(ih[0].cosine - 1) < 1e-5);
    assert.equal("probability" in ih[0], false);
  });

  it("one-line errors, exit 2: no index, no query at all, another model, a missing folder", () => {
    const { dir } = fixtureFolder();
    const db = join(tempDir(), "db");
    assert.equal(cli(["index", join(dir, "nested"), "--model", F32, "--db", db]).code, 0);
    const cases: Array<[string[], RegExp]> = [
      [["search", "x", "--db", join(tempDir(), "none")], /no index: the DB folder/],
      [["search", "--db", db], /give a text query/],
      [["search", "x", "--db", db, "--model", join(FIXTURES, "models", "naflex-f32")], /never mixed/],
      [["index", join(dir, "missing"), "--model", F32, "--db", db], /missing: no such file or folder/],
    ];
    for (const [args, re] of cases) {
      const r = cli(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `${args.join(" ")}: ${r.stderr}`);
      assert.match(lines[0]!, re);
      noStack(r.stderr);
    }
  });

  it("kill -9 during `siglip2 index` (first run, then an update run), and Ctrl-C: a re-run finishes with every image once and the vectors of a fresh index", async () => {
    const dir = join(tempDir(), "many");
    for (let d = 0; d < 4; d++) mkdirSync(join(dir, `d${d}`), { recursive: true });
    const N = 200;
    const files = Array.from({ length: N }, (_, i) => join(dir, `d${i % 4}`, `img${String(i).padStart(3, "0")}.png`));
    await Promise.all(files.map(async (f, i) => writeFileSync(f, await noisePng(1000 + i))));
    const db = join(tempDir(), "db");
    const versions = join(db, "images.lance", "_versions");

    /** Start `siglip2 index`, send `sig` once `minCommits` more commits have landed; resolve with how it ended. */
    const runAndKill = (minCommits: number, sig: NodeJS.Signals = "SIGKILL") =>
      new Promise<{ signal: NodeJS.Signals | null; code: number | null; stdout: string }>((resolve) => {
        const start = existsSync(versions) ? readdirSync(versions).length : 0;
        const child = spawn(process.execPath, [BIN, "index", dir, "--model", F32, "--db", db, "--batch-size", "2"], { stdio: ["ignore", "pipe", "ignore"] });
        let stdout = "";
        child.stdout.on("data", (d) => (stdout += d));
        const poll = setInterval(() => {
          const n = existsSync(versions) ? readdirSync(versions).length : 0;
          if (n - start >= minCommits) {
            clearInterval(poll);
            child.kill(sig);
          }
        }, 2);
        child.on("close", (code, signal) => {
          clearInterval(poll);
          resolve({ signal, code, stdout });
        });
      });

    const rowsOf = async () => {
      const st = await ImageStore.open(db, "images");
      const rows = await st.all();
      st.close();
      return rows;
    };

    // 1. Killed during the first run.
    const k1 = await runAndKill(8);
    assert.equal(k1.signal, "SIGKILL", "the index run finished before it could be killed");
    const partial = await rowsOf();
    assert.ok(partial.length > 0 && partial.length < N, `rows after the kill: ${partial.length}`);
    assert.equal(new Set(partial.map((r) => r.path)).size, partial.length, "duplicates after the kill");
    assert.equal(partial.length % 2, 0, "a batch was half written");
    // 1b. The resumed run is stopped with Ctrl-C (SIGINT): it finishes its batch, reports, exits 130.
    const int = await runAndKill(8, "SIGINT");
    assert.equal(int.code, 130, "SIGINT should stop the run cleanly");
    const si = JSON.parse(int.stdout.trim());
    assert.equal(si.interrupted, true);
    assert.equal(si.unchanged, partial.length, "rows written before the kill are kept");
    assert.equal(si.embedded, si.total - partial.length);
    assert.ok(si.total < N);
    const r1 = cli(["index", dir, "--model", F32, "--db", db, "--batch-size", "16"]);
    assert.equal(r1.code, 0, r1.stderr);
    const s1 = JSON.parse(r1.stdout.trim());
    assert.equal(s1.unchanged, si.total);
    assert.equal(s1.embedded, N - si.total, "nothing written before the interruptions is embedded again");

    // 2. Killed during an update run that rewrites half the files.
    const changed = files.filter((_, i) => i % 2 === 0);
    await Promise.all(changed.map(async (f, i) => {
      writeFileSync(f, await noisePng(5000 + i));
      utimesSync(f, new Date(), new Date(Date.now() + 10_000));
    }));
    const k2 = await runAndKill(6);
    assert.equal(k2.signal, "SIGKILL", "the update run finished before it could be killed");
    const newest = new Map<string, StoredImage>();
    for (const r of await rowsOf()) if (!newest.has(r.path) || r.gen > newest.get(r.path)!.gen) newest.set(r.path, r);
    const done = changed.filter((f) => newest.get(f)!.mtimeMs === statSync(f).mtimeMs).length;
    assert.ok(done > 0 && done < changed.length, `updated before the kill: ${done}`);
    const r2 = cli(["index", dir, "--model", F32, "--db", db, "--batch-size", "16"]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(JSON.parse(r2.stdout.trim()).embedded, changed.length - done, "the resumed run redid finished work");

    // Every image exactly once, with the vectors of a fresh full index.
    const rows = byPath(await rowsOf());
    assert.equal(rows.size, N);
    assert.deepEqual([...rows.keys()].sort(), [...files].sort());
    const m = await SigLIP2.load(F32);
    const freshDb = join(tempDir(), "fresh");
    const fresh = await freshStore(m, freshDb);
    await buildIndex(m, fresh, [dir]);
    const ref = byPath(await fresh.all());
    for (const f of files) {
      assert.ok(maxAbs(rows.get(f)!.vector, ref.get(f)!.vector) < 1e-5, f);
      assert.equal(rows.get(f)!.sha256, ref.get(f)!.sha256, f);
    }
    fresh.close();
    await m.close();
    assert.ok(!existsSync(join(db, "images.lock")), "the lock is released");
  });
});
