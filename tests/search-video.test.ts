/**
 * Videos in the index (src/search/video.ts): frames sampled by the system ffmpeg at a set rate
 * or at scene changes, with their times; one row per frame whose vector equals the embedding of
 * the same frame extracted by ffmpeg as a PNG (the same image pipeline); search returns the
 * video with the right time; re-runs skip unchanged videos, a changed video replaces all of its
 * rows, a touched or copied one reuses its frames; a crash between the write and the delete,
 * and a real kill -9 in the middle of a video, never leave a partial video; without ffmpeg the
 * images are indexed and one line says so. All videos are made by ffmpeg here (lavfi).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import sharp from "sharp";
import { SigLIP2 } from "../src/api.js";
import { SiglipError } from "../src/errors.js";
import { embeddingSetup, modelName } from "../src/search/identity.js";
import { buildIndex, openForIndexing, type IndexOptions, type IndexSummary } from "../src/search/indexer.js";
import { parseBatchJob } from "../src/search/queue.js";
import { searchImage } from "../src/search/search.js";
import { ImageStore, type StoredImage } from "../src/search/store.js";
import { embedVideo, formatTime, probeVideo, readFrames, RGB_SWS_FLAGS, selectFilter, type VideoSampling } from "../src/search/video.js";
import { findDuplicates } from "../src/search/dedupe.js";
import { Thumbnailer } from "../src/server/ui/thumbnails.js";
import { cli as queueCli } from "./harness/cli-child.js";
import { tempDir } from "./harness/files.js";
import { startRedis } from "./harness/redis.js";
import { FIXTURES, REPO } from "./harness/paths.js";

const BIN = join(REPO, "dist", "cli", "main.js");
const F32 = join(FIXTURES, "models", "fixres-f32");
const HAVE_FFMPEG = spawnSync("ffmpeg", ["-version"], { stdio: "ignore" }).status === 0;

function ffmpeg(args: string[]): void {
  const r = spawnSync("ffmpeg", ["-nostdin", "-v", "error", "-y", ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
}

/** Solid colour segments of `seconds` each at 64×48, 10 fps, H.264 yuv420p. */
function colourVideo(path: string, colours: string[], seconds = 2): string {
  const inputs = colours.flatMap((c) => ["-f", "lavfi", "-i", `color=${c}:s=64x48:d=${seconds}:r=10`]);
  ffmpeg([...inputs, "-filter_complex", `${colours.map((_, i) => `[${i}]`).join("")}concat=n=${colours.length}:v=1:a=0`, "-pix_fmt", "yuv420p", path]);
  return path;
}

/** Frames of a video extracted by ffmpeg as PNG files, with the indexer's sampling filter and conversion. */
function framePngs(video: string, dir: string, fps: number): string[] {
  mkdirSync(dir, { recursive: true });
  ffmpeg(["-i", video, "-vf", selectFilter({}, { mode: "fps", fps, maxFrames: 1000 }), "-vsync", "vfr", "-sws_flags", RGB_SWS_FLAGS, "-pix_fmt", "rgb24", join(dir, "f%03d.png")]);
  return readdirSync(dir).sort().map((f) => join(dir, f));
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1", ...env } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function lastJson<T>(stdout: string): T {
  return JSON.parse(stdout.trim().split("\n").pop()!) as T;
}

const mean = (d: Uint8Array) => [0, 1, 2].map((c) => {
  let s = 0;
  for (let i = c; i < d.length; i += 3) s += d[i]!;
  return s / (d.length / 3);
});

describe("videos in the index", { skip: HAVE_FFMPEG ? false : "ffmpeg is not installed" }, () => {
  let model: SigLIP2;
  let base: string;
  let rgb: string; // red 0–2 s, lime 2–4 s, blue 4–6 s
  before(async () => {
    model = await SigLIP2.load(F32, { threads: 1 });
    base = tempDir("siglip2-video-");
    rgb = colourVideo(join(base, "rgb.mp4"), ["red", "0x00FF00", "blue"]);
  });
  after(async () => {
    await model.close();
  });

  async function index(db: string, roots: string[], options: IndexOptions = {}): Promise<IndexSummary> {
    const store = await openForIndexing(db, "images", await embeddingSetup(model, modelName(F32)));
    try {
      return await buildIndex(model, store, roots, options);
    } finally {
      store.close();
    }
  }

  async function rows(db: string): Promise<StoredImage[]> {
    const store = await ImageStore.open(db, "images");
    try {
      return (await store.all()).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : (a.timeS ?? -1) - (b.timeS ?? -1)));
    } finally {
      store.close();
    }
  }

  it("frames at a set rate, capped and spread, and at scene changes, with their times and colours", async () => {
    const info = await probeVideo(rgb);
    assert.deepEqual([info.width, info.height, info.duration, info.startTime], [64, 48, 6, 0]);
    const grab = async (s: VideoSampling) => {
      const out: { t: number; rgb: number[] }[] = [];
      for await (const f of readFrames(rgb, s)) {
        assert.deepEqual([f.image.width, f.image.height, f.image.data.length], [64, 48, 64 * 48 * 3]);
        out.push({ t: f.timeS, rgb: mean(f.image.data) });
      }
      return out;
    };
    const half = await grab({ mode: "fps", fps: 0.5, maxFrames: 1000 });
    assert.deepEqual(half.map((f) => f.t), [0, 2, 4]);
    const dominant = half.map((f) => f.rgb.indexOf(Math.max(...f.rgb)));
    assert.deepEqual(dominant, [0, 1, 2], `mean colours ${JSON.stringify(half.map((f) => f.rgb))}`);
    assert.deepEqual((await grab({ mode: "fps", fps: 1, maxFrames: 1000 })).map((f) => f.t), [0, 1, 2, 3, 4, 5]);
    // 2 frames at most: the rate drops to 2 / 6 s, so they cover the whole video.
    assert.deepEqual((await grab({ mode: "fps", fps: 1, maxFrames: 2 })).map((f) => f.t), [0, 3]);
    const scenes = await grab({ mode: "scenes", threshold: 0.3, maxFrames: 1000 });
    assert.deepEqual(scenes.map((f) => f.t), [0, 2, 4], "the first frame and the two cuts");
    assert.deepEqual(scenes.map((f) => f.rgb.indexOf(Math.max(...f.rgb))), [0, 1, 2]);
    assert.deepEqual((await grab({ mode: "scenes", threshold: 0.3, maxFrames: 2 })).map((f) => f.t), [0, 2]);
    // The container's rotation is applied (as EXIF orientation is for photos): 64×48 turned a quarter.
    const rot = join(base, "rot.mp4");
    ffmpeg(["-i", rgb, "-c", "copy", "-metadata:s:v", "rotate=90", rot]);
    const turned: string[] = [];
    for await (const f of readFrames(rot, { mode: "fps", fps: 0.5, maxFrames: 1000 })) turned.push(`${f.timeS}:${f.image.width}x${f.image.height}`);
    assert.deepEqual(turned, ["0:48x64", "2:48x64", "4:48x64"]);
    // A clip shorter than 1/fps (one frame) still gives its frame.
    const one = colourVideo(join(base, "one-frame.mp4"), ["red"], 0.1);
    const single: number[] = [];
    for await (const f of readFrames(one, { mode: "fps", fps: 0.5, maxFrames: 1000 })) single.push(f.timeS);
    assert.deepEqual(single, [0]);
    // Stopping early kills ffmpeg and returns.
    for await (const f of readFrames(rgb, { mode: "fps", fps: 10, maxFrames: 1000 })) if (f.timeS >= 0) break;
    assert.deepEqual([formatTime(0), formatTime(4), formatTime(61.26), formatTime(3725.04)], ["00:00.0", "00:04.0", "01:01.3", "1:02:05.0"]);
  });

  it("one row per frame whose vector equals the embedding of the same frame as a PNG; search finds the video at the right time", async () => {
    const dir = join(base, "one");
    mkdirSync(dir);
    copyFileSync(rgb, join(dir, "rgb.mp4"));
    const pngs = framePngs(rgb, join(base, "png-one"), 0.5);
    assert.equal(pngs.length, 3);
    copyFileSync(pngs[0]!, join(dir, "still.png")); // an image next to the video
    const db = join(tempDir(), "db");
    const s = await index(db, [dir]);
    assert.deepEqual([s.found, s.added, s.videos, s.frames, s.embedded, s.failed, s.total], [2, 2, 1, 3, 1, 0, 4]);
    const rs = await rows(db);
    const video = rs.filter((r) => r.path === join(dir, "rgb.mp4"));
    assert.deepEqual(video.map((r) => r.timeS), [0, 2, 4]);
    assert.equal(new Set(video.map((r) => r.gen)).size, 1, "one commit, one gen");
    assert.deepEqual(video[0]!.meta, { ext: "mp4", width: 64, height: 48 });
    const still = rs.find((r) => r.path === join(dir, "still.png"))!;
    assert.equal(still.timeS, undefined);
    const ref = await model.imageFeaturesSettled(pngs);
    ref.forEach((r, i) => {
      assert.ok(!(r instanceof SiglipError));
      assert.deepEqual(Array.from(video[i]!.vector), Array.from(r.embedding), `frame ${i} differs from its PNG`);
    });
    // The still (frame 0 as a PNG, embedded alone through the image path) agrees with frame 0 up to
    // float32 rounding: onnxruntime sums in another order for a batch of 1 than for a batch of 3.
    assert.ok(still.vector.every((x, i) => Math.abs(x - video[0]!.vector[i]!) < 1e-5));
    const store = await ImageStore.open(db, "images");
    try {
      for (const [i, t] of [[1, 2], [2, 4]] as const) {
        const hits = await searchImage(model, store, pngs[i]!, 2);
        assert.equal(hits[0]!.path, join(dir, "rgb.mp4"));
        assert.equal(hits[0]!.timeS, t);
        assert.ok(Math.abs(hits[0]!.cosine - 1) < 1e-6);
        assert.equal(new Set(hits.map((h) => h.path)).size, hits.length, "one hit per file");
      }
      // Dedupe: the still and the video's first frame are one group; a video's own frames are not duplicates.
      const groups = await findDuplicates(store, { threshold: 0.999 });
      assert.deepEqual(groups.map((g) => g.group.map((m) => m.path).sort()), [[join(dir, "rgb.mp4"), join(dir, "still.png")]]);
      // The web UI makes no thumbnail of a video: one clear 422.
      const thumbs = new Thumbnailer(store);
      await assert.rejects(thumbs.thumbnail(await thumbs.row(join(dir, "rgb.mp4")), 128), (e: Error & { statusCode?: number }) => /rgb\.mp4 is a video: the web UI makes no thumbnails of video frames$/.test(e.message));
      assert.ok((await thumbs.thumbnail(await thumbs.row(join(dir, "still.png")), 128)).bytes.length > 0);
    } finally {
      store.close();
    }
    // The CLI: the table carries the time after the path, --json carries time_s.
    if (existsSync(BIN)) {
      const j = cli(["search", "--image", pngs[2]!, "--db", db, "--json", "-k", "1"]);
      assert.equal(j.code, 0, j.stderr);
      assert.deepEqual(JSON.parse(j.stdout) as unknown, { rank: 1, path: join(dir, "rgb.mp4"), cosine: (JSON.parse(j.stdout) as { cosine: number }).cosine, time_s: 4 });
      const t = cli(["search", "--image", pngs[1]!, "--db", db, "-k", "2"]);
      assert.equal(t.code, 0, t.stderr);
      const lines = t.stdout.trim().split("\n");
      assert.match(lines[0]!, /^rank\s+cosine\s+path\s+time$/);
      assert.match(lines[1]!, /rgb\.mp4\s+00:02\.0$/);
      assert.match(lines[2]!, /still\.png$/);
      // time_s is a filter column: only frames after 3 s pass (the blue one), no image.
      const w = cli(["search", "--image", pngs[1]!, "--db", db, "--json", "--where", "time_s > 3"]);
      assert.equal(w.code, 0, w.stderr);
      assert.deepEqual(w.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { time_s: number }).time_s), [4]);
    }
  });

  it("re-runs skip unchanged videos; touched and copied videos reuse their frames; a changed video replaces all of its rows", async () => {
    const dir = join(base, "rerun");
    mkdirSync(dir);
    const v = join(dir, "clip.mp4");
    copyFileSync(rgb, v);
    const db = join(tempDir(), "db");
    await index(db, [dir]);
    const first = await rows(db);
    let s = await index(db, [dir]);
    assert.deepEqual([s.unchanged, s.frames, s.videos, s.total], [1, 0, 0, 3]);

    utimesSync(v, new Date(), new Date(Date.now() + 5000));
    s = await index(db, [dir]);
    assert.deepEqual([s.touched, s.frames, s.total], [1, 0, 3]);
    assert.deepEqual((await rows(db)).map((r) => [r.timeS, Array.from(r.vector)]), first.map((r) => [r.timeS, Array.from(r.vector)]));

    copyFileSync(v, join(dir, "copy.mp4"));
    s = await index(db, [dir]);
    assert.deepEqual([s.added, s.reused, s.frames, s.total], [1, 1, 0, 6]);

    colourVideo(v, ["blue", "red"]); // 4 s: frames at 0 and 2
    s = await index(db, [dir]);
    assert.deepEqual([s.updated, s.frames, s.total], [1, 2, 5]);
    const now = (await rows(db)).filter((r) => r.path === v);
    assert.deepEqual(now.map((r) => r.timeS), [0, 2]);
    assert.equal(new Set(now.map((r) => r.gen)).size, 1);
    const want = await embedVideo(model, v, { mode: "fps", fps: 0.5, maxFrames: 1000 });
    assert.deepEqual(now.map((r) => Array.from(r.vector)), want!.frames.map((f) => Array.from(f.vector)));

    // --video-scenes on a new video; the other videos stay as they are.
    colourVideo(join(dir, "new.mkv"), ["red", "0x00FF00", "blue"]);
    s = await index(db, [dir], { videos: { mode: "scenes", threshold: 0.3, maxFrames: 1000 } });
    assert.deepEqual([s.added, s.unchanged, s.frames], [1, 2, 3]);
    // --no-videos: videos are neither walked nor removed.
    s = await index(db, [dir], { videos: false });
    assert.deepEqual([s.found, s.removed, s.total], [0, 0, 8]);
    // A removed video loses all of its rows.
    spawnSync("rm", [join(dir, "copy.mp4")]);
    s = await index(db, [dir]);
    assert.deepEqual([s.removed, s.total], [1, 5]);
  });

  it("a crash between a changed video's write and the delete of its old rows: the next run keeps only the new frames", async () => {
    const dir = join(base, "crash");
    mkdirSync(dir);
    const v = join(dir, "clip.webm");
    ffmpeg(["-i", rgb, "-c:v", "libvpx", "-b:v", "200k", v]);
    const db = join(tempDir(), "db");
    await index(db, [dir]);
    assert.equal((await rows(db)).length, 3);
    colourVideo(join(base, "two.mp4"), ["blue", "red"]);
    ffmpeg(["-i", join(base, "two.mp4"), "-c:v", "libvpx", "-b:v", "200k", v]);
    await assert.rejects(index(db, [dir], { afterWrite: () => { throw new Error("crash"); } }), /crash/);
    const both = await rows(db);
    assert.equal(both.length, 5, "old and new frames after the crash");
    const s = await index(db, [dir]);
    assert.deepEqual([s.recovered, s.unchanged, s.total], [3, 1, 2]);
    const gens = new Set((await rows(db)).map((r) => r.gen));
    assert.equal(gens.size, 1);
    assert.equal([...gens][0], Math.max(...both.map((r) => r.gen)), "the newest frames are kept");
  });

  it("damaged, empty and fake videos: one line each, the rest index; an old row of a video that became damaged is removed", async () => {
    const dir = join(base, "bad");
    mkdirSync(dir);
    copyFileSync(rgb, join(dir, "good.mp4"));
    const good = await sharp({ create: { width: 20, height: 20, channels: 3, background: "#808000" } }).png().toBuffer();
    writeFileSync(join(dir, "a.png"), good);
    writeFileSync(join(dir, "empty.mp4"), "");
    writeFileSync(join(dir, "text.mov"), "this is not a video\n".repeat(50));
    const bytes = readFileSync(rgb);
    writeFileSync(join(dir, "cut.mp4"), bytes.subarray(0, 3000));
    writeFileSync(join(dir, "huge.mkv"), "YUV4MPEG2 W16000 H16000 F25:1 C420jpeg\nFRAME\nabc");
    const db = join(tempDir(), "db");
    const errors: SiglipError[] = [];
    const s = await index(db, [dir], { onError: (e) => errors.push(e) });
    assert.deepEqual([s.added, s.failed, s.videos], [2, 4, 1]);
    assert.equal(errors.length, 4);
    for (const e of errors) assert.ok(!e.message.includes("\n") && /^cannot read video /.test(e.message), e.message);
    assert.match(errors.find((e) => e.message.includes("huge.mkv"))!.message, /16000×16000 are too large/);
    assert.ok(errors.some((e) => e.message.includes("empty.mp4")));
    // good.mp4 damaged in place: its rows go, with one line.
    writeFileSync(join(dir, "good.mp4"), bytes.subarray(0, 2000));
    errors.length = 0;
    const s2 = await index(db, [dir], { onError: (e) => errors.push(e) });
    assert.equal(s2.removed, 1);
    assert.deepEqual((await rows(db)).map((r) => r.path), [join(dir, "a.png")]);
  });

  it("without ffmpeg on PATH: one line, images still index, the old rows of videos stay; --no-videos is quiet", { skip: existsSync(BIN) ? false : "dist/ not built" }, () => {
    const dir = join(base, "noffmpeg");
    mkdirSync(dir);
    copyFileSync(rgb, join(dir, "clip.mp4"));
    copyFileSync(rgb, join(dir, "clip2.mov"));
    writeFileSync(join(dir, "a.png"), spawnSync("ffmpeg", ["-v", "error", "-f", "lavfi", "-i", "color=red:s=8x8:d=0.1", "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"]).stdout);
    const db = join(tempDir(), "db");
    const bin = join(tempDir(), "bin"); // a PATH without ffmpeg
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, "node"));
    const r = cli(["index", dir, "--model", F32, "--db", db], { PATH: bin });
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split("\n").filter((l) => /ffmpeg/.test(l));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /videos need the system ffmpeg and ffprobe \(apt-get install ffmpeg\); skipped 2 videos/);
    const s = lastJson<IndexSummary>(r.stdout);
    assert.deepEqual([s.added, s.failed, s.total], [1, 2, 1]);
    const quiet = cli(["index", dir, "--model", F32, "--db", db, "--no-videos"], { PATH: bin });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.ok(!/ffmpeg/.test(quiet.stderr), quiet.stderr);
    // With ffmpeg: the videos are indexed; then without it again, their rows stay.
    const w = cli(["index", dir, "--model", F32, "--db", db]);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(lastJson<IndexSummary>(w.stdout).total, 7);
    utimesSync(join(dir, "clip.mp4"), new Date(), new Date(Date.now() + 9000));
    const again = cli(["index", dir, "--model", F32, "--db", db], { PATH: bin });
    assert.equal(again.code, 1);
    assert.deepEqual([lastJson<IndexSummary>(again.stdout).total, lastJson<IndexSummary>(again.stdout).removed], [7, 0]);
    // Flags: one usage line each.
    const both = cli(["index", dir, "--model", F32, "--db", db, "--video-fps", "1", "--video-scenes"]);
    assert.equal(both.code, 2);
    assert.match(both.stderr.trim(), /^siglip2: give either --video-fps .* not both$/);
    const bad = cli(["index", dir, "--model", F32, "--db", db, "--video-scenes", "1.5"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr.trim(), /--video-scenes must be a scene score between 0 and 1, got "1\.5"/);
  });

  it("kill -9 in the middle of a video: no partial video, and the re-run writes all of its frames", { skip: existsSync(BIN) ? false : "dist/ not built" }, async () => {
    const dir = join(base, "kill");
    mkdirSync(dir);
    writeFileSync(join(dir, "a.png"), await sharp({ create: { width: 16, height: 16, channels: 3, background: "#204060" } }).png().toBuffer());
    const v = join(dir, "long.mp4");
    // 900 frames to embed: long enough (seconds) that the kill below lands inside the video, also
    // with the fast resampler (60 s / 300 frames were written within the 300 ms before the kill).
    ffmpeg(["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=180", "-pix_fmt", "yuv420p", v]);
    const db = join(tempDir(), "db");
    const versions = join(db, "images.lance", "_versions");
    const args = [BIN, "index", dir, "--model", F32, "--db", db, "--video-fps", "5", "--threads", "1"];
    // Kill once the image batch is committed (table creation + 1 commit) and ffmpeg has been
    // decoding the video for a while (its process is a child of the index run).
    const ffmpegChild = (pid: number) => {
      try {
        const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
        return kids.some((k) => readFileSync(`/proc/${k}/comm`, "utf8").trim() === "ffmpeg");
      } catch {
        return false;
      }
    };
    const killed = await new Promise<{ signal: NodeJS.Signals | null; sawFfmpeg: boolean }>((resolve) => {
      const child = spawn(process.execPath, args, { stdio: "ignore" });
      let sawFfmpeg = false;
      const poll = setInterval(() => {
        if (existsSync(versions) && readdirSync(versions).filter((f) => f.endsWith(".manifest")).length >= 2 && ffmpegChild(child.pid!)) {
          clearInterval(poll);
          sawFfmpeg = true;
          setTimeout(() => child.kill("SIGKILL"), 300);
        }
      }, 5);
      child.on("close", (_code, signal) => {
        clearInterval(poll);
        resolve({ signal, sawFfmpeg });
      });
    });
    assert.equal(killed.signal, "SIGKILL", "the run finished before it could be killed");
    assert.ok(killed.sawFfmpeg, "killed before ffmpeg ran");
    const partial = await rows(db);
    assert.deepEqual(partial.map((r) => r.path), [join(dir, "a.png")], "the killed video left rows");
    const r = cli(args.slice(1));
    assert.equal(r.code, 0, r.stderr);
    const s = lastJson<IndexSummary>(r.stdout);
    assert.deepEqual([s.unchanged, s.added, s.frames, s.total], [1, 1, 900, 901]);
    const frames = (await rows(db)).filter((x) => x.path === v);
    assert.deepEqual(frames.map((x) => x.timeS), Array.from({ length: 900 }, (_, i) => Math.round(i * 0.2 * 1e6) / 1e6));
  });

  it("a relative --db starting with \"db\" is a folder, not a LanceDB Cloud URI", { skip: existsSync(BIN) ? false : "dist/ not built" }, () => {
    const cwd = tempDir();
    const r = spawnSync(process.execPath, [BIN, "index", rgb, "--model", F32, "--db", "dbv"], { cwd, encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1" } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(lastJson<IndexSummary>(r.stdout).total, 3);
    assert.ok(existsSync(join(cwd, "dbv", "images.lance")));
  });

  it("a table written before time_s existed gets the column on its next index run, and its images keep their rows", async () => {
    const dir = join(base, "migrate");
    mkdirSync(dir);
    writeFileSync(join(dir, "a.png"), await sharp({ create: { width: 16, height: 16, channels: 3, background: "#a04060" } }).png().toBuffer());
    const db = join(tempDir(), "db");
    await index(db, [dir]);
    const { connect } = await import("@lancedb/lancedb");
    const conn = await connect(db);
    const t = await conn.openTable("images");
    await t.dropColumns(["time_s"]);
    t.close();
    conn.close();
    const old = await ImageStore.open(db, "images");
    assert.equal(old.hasTimeColumn, false);
    assert.equal((await old.all())[0]!.timeS, undefined);
    old.close();
    copyFileSync(rgb, join(dir, "v.mp4"));
    const s = await index(db, [dir]);
    assert.deepEqual([s.unchanged, s.added, s.total], [1, 1, 4]);
    assert.deepEqual((await rows(db)).map((r) => r.timeS), [undefined, 0, 2, 4]);
  });
  it("videos through the queue: one job per video, a worker writes its frames as a local run does; a re-run enqueues nothing", { skip: existsSync(BIN) ? false : "dist/ not built" }, async () => {
    const dir = join(base, "queued");
    mkdirSync(dir);
    copyFileSync(rgb, join(dir, "clip.mp4"));
    for (const [i, c] of ["#204080", "#c08020"].entries()) writeFileSync(join(dir, `p${i}.png`), await sharp({ create: { width: 20, height: 14, channels: 3, background: c } }).png().toBuffer());
    const local = join(tempDir(), "db");
    assert.equal(cli(["index", dir, "--model", F32, "--db", local, "--video-fps", "1"]).code, 0);
    const redis = await startRedis();
    try {
      const db = join(tempDir(), "db");
      const q = await queueCli(["index", dir, "--queue", redis.url, "--db", db, "--model", F32, "--video-fps", "1"]);
      assert.equal(q.code, 0, q.stderr);
      const summary = JSON.parse(q.stdout) as { files: number; enqueued: number; videos: number; batches: number };
      assert.deepEqual([summary.files, summary.enqueued, summary.videos, summary.batches], [3, 3, 1, 2]); // one job of 2 images, one of the video
      assert.match(q.stderr, /enqueued 3 of 3 files \(1 video, one job each\) in 2 batches/);
      const w = await queueCli(["worker", "--queue", redis.url, "--model", F32, "--until-empty", "--stalled-interval", "1000"]);
      assert.equal(w.code, 0, w.stderr);
      const reports = w.stdout.trim().split("\n").map((l) => JSON.parse(l) as { files: number; frames: number; written: number });
      assert.deepEqual(reports.map((r) => [r.files, r.frames, r.written]).sort(), [[1, 6, 1], [2, 0, 2]]); // 6 s at 1 fps
      const want = await rows(local);
      const got = await rows(db);
      assert.deepEqual(got.map((r) => [r.path, r.timeS]), want.map((r) => [r.path, r.timeS]));
      assert.equal(got.filter((r) => r.timeS !== undefined).length, 6);
      for (const [i, r] of got.entries()) assert.ok(r.vector.every((x, j) => Math.abs(x - want[i]!.vector[j]!) <= 1e-6), `${r.path} @ ${r.timeS}`);
      const again = await queueCli(["index", dir, "--queue", redis.url, "--db", db, "--model", F32, "--video-fps", "1"]);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual([(JSON.parse(again.stdout) as { unchanged: number }).unchanged, (JSON.parse(again.stdout) as { enqueued: number }).enqueued], [3, 0]);
    } finally {
      await redis.stop();
    }
  });

  it("a queued video job's data is checked: one file, a sampling within the CLI's bounds", () => {
    const job = { v: 1, db: "/tmp/db", table: "images", fingerprint: "ab".repeat(32), files: [{ path: "/tmp/a.mp4", size: 1, mtimeMs: 1, sha256: "0".repeat(64) }] };
    assert.deepEqual(parseBatchJob({ ...job, video: { mode: "fps", fps: 0.5, maxFrames: 10 } }).video, { mode: "fps", fps: 0.5, maxFrames: 10 });
    assert.deepEqual(parseBatchJob({ ...job, video: { mode: "scenes", threshold: 0.3, maxFrames: 5 } }).video, { mode: "scenes", threshold: 0.3, maxFrames: 5 });
    assert.equal(parseBatchJob(job).video, undefined);
    const bad: [unknown, RegExp][] = [
      [{ ...job, files: [job.files[0], { ...job.files[0], path: "/tmp/b.mp4" }], video: { mode: "fps", fps: 1, maxFrames: 1 } }, /a video job holds 2 files, not 1/],
      [{ ...job, video: { mode: "fps", fps: 0, maxFrames: 10 } }, /"video": --video-fps must be a number above 0/],
      [{ ...job, video: { mode: "fps", fps: 1, maxFrames: 1.5 } }, /"video": --video-max-frames must be an integer/],
      [{ ...job, video: { mode: "blink", maxFrames: 1 } }, /"video.mode" is neither "fps" nor "scenes"/],
      [{ ...job, video: { mode: "scenes", threshold: "0.3", maxFrames: 1 } }, /"video.threshold" is not a number/],
      [{ ...job, video: [1] }, /"video" is not an object/],
    ];
    for (const [data, re] of bad) assert.throws(() => parseBatchJob(data), (e: Error) => e instanceof SiglipError && /^malformed job data: /.test(e.message) && re.test(e.message), JSON.stringify(data));
  });
});
