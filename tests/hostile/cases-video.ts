/**
 * Hostile and careless videos for `siglip2 index` (area "index"): a truncated mp4, a zero-byte
 * file, a text file named .mp4, frames of absurd size in the header, a stream damaged in the
 * middle, ffmpeg missing from PATH, contradictory or out-of-range --video-* flags. Every case
 * checks the exact outcome and the table's rows: the good files indexed (a video with all of its
 * frames, nothing of a bad one).
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ImageStore } from "../../src/search/store.js";
import { tempDir } from "../harness/files.js";
import { FIXTURES } from "../harness/paths.js";
import { expectCleanError, expectCorrect, jsonLines, runCli, type CaseResult, type CliOptions, type CliResult, type HostileCase } from "./harness.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const IMG = join(FIXTURES, "images", "rgb_64x64.png");
const HAVE_FFMPEG = spawnSync("ffmpeg", ["-version"], { stdio: "ignore" }).status === 0;

let goodVideo: Buffer | undefined;
/** A 6 s, 64×48 test pattern (3 frames at the default rate), made once by ffmpeg. */
function goodVideoBytes(): Buffer {
  if (!HAVE_FFMPEG) return Buffer.from("not decoded: ffmpeg is not installed");
  if (!goodVideo) {
    const p = join(tempDir("siglip2-hv-"), "v.mp4");
    const r = spawnSync("ffmpeg", ["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=6", "-pix_fmt", "yuv420p", p], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`ffmpeg: ${r.stderr}`);
    goodVideo = readFileSync(p);
  }
  return goodVideo;
}

/** A folder with one good image, one good video (good.mp4) and `bad` (name → bytes). */
function folder(bad: Record<string, Buffer | string>): { dir: string; image: string; video: string } {
  const dir = join(tempDir("siglip2-hv-"), "media");
  mkdirSync(dir, { recursive: true });
  const image = join(dir, "a.png");
  copyFileSync(IMG, image);
  const video = join(dir, "good.mp4");
  writeFileSync(video, goodVideoBytes());
  for (const [name, bytes] of Object.entries(bad)) writeFileSync(join(dir, name), bytes);
  return { dir, image, video };
}

function newDb(): string {
  return join(tempDir("siglip2-hvdb-"), "db");
}

/** Per-case limit: a run loads the model and decodes a video (about 2 s of CPU; on a 2-core machine shared by many jobs, 30 s or more). */
const LIMIT_MS = 180_000;

function cliIndex(dir: string, db: string, extra: string[] = [], opts: CliOptions = {}): Promise<CliResult> {
  return runCli(["index", dir, "--model", F32, "--db", db, ...extra], { timeoutMs: LIMIT_MS, ...opts });
}

/** Why the table's rows are not exactly `want` (path → number of rows), or null. */
async function rowsProblem(db: string, want: Record<string, number>): Promise<string | null> {
  let st: ImageStore;
  try {
    st = await ImageStore.open(db, "images");
  } catch (e) {
    return `cannot open the table: ${(e as Error).message}`;
  }
  try {
    const seen = new Map<string, number>();
    for (const r of await st.all()) {
      seen.set(r.path, (seen.get(r.path) ?? 0) + 1);
      if (!(Math.abs(Math.hypot(...r.vector) - 1) < 1e-4)) return `the vector of ${r.path} is not a unit vector`;
    }
    for (const [p, n] of Object.entries(want)) if ((seen.get(p) ?? 0) !== n) return `${seen.get(p) ?? 0} rows for ${p}, expected ${n}`;
    const extra = [...seen.keys()].filter((p) => !(p in want));
    return extra.length > 0 ? `unexpected rows for ${extra[0]}` : null;
  } finally {
    st.close();
  }
}

async function withRows(res: CaseResult, db: string, want: Record<string, number>): Promise<CaseResult> {
  if (res.outcome !== "clean-error" && res.outcome !== "correct") return res;
  const why = await rowsProblem(db, want);
  return why ? { outcome: "data-lost", detail: why } : res;
}

/** An index run that goes on past `count` bad files: exit 1, one line each (mentioning `mentions`), the summary and the count. */
function expectBadFiles(r: CliResult, count: number, mentions: Array<string | RegExp>): CaseResult {
  const res = expectCleanError(r, { code: 1, allowStdout: true, lines: count + 1, mentions });
  if (res.outcome !== "clean-error") return res;
  const lines = r.stderr.split("\n").filter((l) => l.length > 0);
  if (lines.some((l) => !l.startsWith("siglip2: "))) return { outcome: "unclear-error", detail: `a line that is not siglip2's: ${r.stderr.slice(0, 300)}` };
  if (lines.length !== count + 2) return { outcome: "unclear-error", detail: `${lines.length} stderr lines, expected ${count} errors + summary + count` };
  const s = jsonLines(r.stdout).find((l): l is Record<string, unknown> => typeof l === "object" && l !== null && "found" in l);
  if (!s || s["failed"] !== count) return { outcome: "garbage", detail: `summary says failed=${String(s?.["failed"])}, expected ${count}` };
  return res;
}

/** A bad video next to a good image and a good video: one line, the good ones fully indexed. */
function badVideoCase(id: string, name: string, bytes: () => Buffer | string, mentions: Array<string | RegExp>): HostileCase {
  return {
    id,
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      if (!HAVE_FFMPEG) return { outcome: "clean-error", detail: "skipped: ffmpeg is not installed" };
      const f = folder({ [name]: bytes() });
      const db = newDb();
      const r = await cliIndex(f.dir, db);
      return withRows(expectBadFiles(r, 1, [name, ...mentions]), db, { [f.image]: 1, [f.video]: 3 });
    },
  };
}

/** A YUV4MPEG2 header (ffmpeg probes by content, whatever the extension) announcing w×h frames. */
const y4m = (w: number, h: number) => `YUV4MPEG2 W${w} H${h} F25:1 C420jpeg\nFRAME\n${"x".repeat(64)}`;

export const cases: HostileCase[] = [
  badVideoCase("video-truncated-mp4", "cut.mp4", () => goodVideoBytes().subarray(0, 3000), [/cannot read video .*not a readable video/]),
  badVideoCase("video-zero-byte", "empty.mp4", () => Buffer.alloc(0), [/cannot read video .*empty file \(0 bytes\)/]),
  badVideoCase("video-text-named-mp4", "notes.mp4", () => "this is a text file, not a video\n".repeat(40), [/cannot read video .*not a readable video/]),
  {
    // ffmpeg reads the PNG inside (it probes content, not names): a "video" of one frame at 0 s.
    id: "video-image-named-mov",
    area: "index",
    expect: "correct",
    timeoutMs: LIMIT_MS,
    run: async () => {
      if (!HAVE_FFMPEG) return { outcome: "correct", detail: "skipped: ffmpeg is not installed" };
      const f = folder({ "photo.mov": readFileSync(IMG) });
      const db = newDb();
      const r = await cliIndex(f.dir, db);
      return withRows(expectCorrect(r, () => null), db, { [f.image]: 1, [f.video]: 3, [join(f.dir, "photo.mov")]: 1 });
    },
  },
  badVideoCase("video-huge-frames-header", "huge.mkv", () => y4m(16000, 16000), [/16000×16000 are too large/]),
  badVideoCase("video-absurd-frames-header", "absurd.webm", () => y4m(100000, 100000), [/cannot read video .*not a readable video/]),
  badVideoCase("video-damaged-mid-stream", "mid.mp4", () => {
    const b = Buffer.from(goodVideoBytes());
    b.fill(0x5a, Math.floor(b.length / 3), Math.floor(b.length / 3) + 3000);
    return b;
  }, [/cannot read video .*ffmpeg failed/]),
  {
    id: "video-ffmpeg-absent",
    area: "index",
    expect: "correct",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const f = folder({});
      const db = newDb();
      const bin = join(tempDir("siglip2-hvbin-"), "bin");
      mkdirSync(bin);
      symlinkSync(process.execPath, join(bin, "node"));
      const r = await cliIndex(f.dir, db, [], { env: { PATH: bin } });
      const res = expectCorrect(r, (_, rr) => {
        const lines = rr.stderr.split("\n").filter((l) => /ffmpeg/.test(l));
        if (lines.length !== 1) return `${lines.length} lines about ffmpeg: ${rr.stderr.slice(0, 300)}`;
        if (!/^siglip2: videos need the system ffmpeg and ffprobe \(apt-get install ffmpeg\); skipped 1 video /.test(lines[0]!)) return `unclear line: ${lines[0]}`;
        return null;
      }, 1);
      return withRows(res, db, { [f.image]: 1 });
    },
  },
  {
    id: "video-fps-and-scenes-together",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await cliIndex(folder({}).dir, newDb(), ["--video-fps", "1", "--video-scenes", "0.2"]), { mentions: ["not both"] }),
  },
  {
    id: "video-fps-zero",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await cliIndex(folder({}).dir, newDb(), ["--video-fps", "0"]), { mentions: ["--video-fps must be a number above 0"] }),
  },
  {
    id: "video-scenes-out-of-range",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await cliIndex(folder({}).dir, newDb(), ["--video-scenes", "nan"]), { mentions: ["--video-scenes must be a scene score between 0 and 1"] }),
  },
  {
    id: "video-max-frames-zero",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await cliIndex(folder({}).dir, newDb(), ["--video-max-frames", "0"]), { mentions: ["--video-max-frames must be an integer from 1"] }),
  },
];
