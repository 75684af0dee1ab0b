/**
 * Videos in the index: frames sampled and decoded by the system `ffmpeg` (Debian package
 * `ffmpeg`, which also ships `ffprobe`), one index row per kept frame with its time.
 *
 * Sampling ({@link VideoSampling}):
 * - `fps`: a set rate, by default {@link DEFAULT_VIDEO_FPS} (one frame every 2 s): the first
 *   frame, then each frame at least 1/fps after the last one kept ({@link selectFilter}). A video longer than `maxFrames / fps` is sampled
 *   at `maxFrames / duration` instead, so that its frames stay spread over all of it.
 * - `scenes`: the first frame and every frame whose scene-change score exceeds the threshold
 *   (ffmpeg's `select='eq(n,0)+gt(scene,T)'`; default {@link DEFAULT_SCENE_THRESHOLD}).
 * Both are capped at `maxFrames` ({@link DEFAULT_VIDEO_MAX_FRAMES}) frames (`-frames:v`).
 *
 * Decoders only decode: ffmpeg converts each kept frame to rgb24 at its native size (only the
 * container's rotation is applied, as EXIF orientation is for photos) and pipes it raw; our
 * resampler resizes it, exactly as for an image. Frames are streamed: one frame is held at a
 * time (plus the batch being embedded), never the whole video. A frame's time comes from
 * ffmpeg's `showinfo` filter (its `pts_time`, minus the container's start time), and the size
 * it reports is checked against the size read by ffprobe before the frame is used.
 */
import { spawn, spawnSync } from "node:child_process";
import { stat } from "node:fs/promises";
import { extname } from "node:path";
import { SiglipError } from "../errors.js";
import type { RgbImage } from "../preprocess/decode.js";
import { oneLine, shownPath } from "./paths.js";

/** Extensions walked as videos (case-insensitive). */
export const VIDEO_EXTENSIONS: ReadonlySet<string> = new Set([".mp4", ".mov", ".webm", ".mkv"]);
/** Default sampling rate: one frame every 2 seconds. */
export const DEFAULT_VIDEO_FPS = 0.5;
/** Default scene-change threshold of `--video-scenes` (ffmpeg's scene score, 0–1). */
export const DEFAULT_SCENE_THRESHOLD = 0.3;
/** Default cap on the frames kept per video. */
export const DEFAULT_VIDEO_MAX_FRAMES = 1000;
/** Largest frame accepted (pixels): 8K UHD (7680×4320 = 33.2 MP) fits; one rgb24 frame is then ≤ 120 MB. */
export const MAX_VIDEO_PIXELS = 40_000_000;
/** Largest side accepted. */
export const MAX_VIDEO_SIDE = 16_384;
/**
 * swscale flags of the yuv → rgb24 conversion (no resize happens): exact rounding and full
 * chroma interpolation, bit-exact, so that a frame extracted by ffmpeg as PNG with the same
 * flags holds the same pixels.
 */
export const RGB_SWS_FLAGS = "accurate_rnd+full_chroma_int+bitexact";

/** How frames are chosen. */
export type VideoSampling = { mode: "fps"; fps: number; maxFrames: number } | { mode: "scenes"; threshold: number; maxFrames: number };

/** The default sampling (one frame every 2 s, at most 1000 frames). */
export const DEFAULT_VIDEO_SAMPLING: VideoSampling = { mode: "fps", fps: DEFAULT_VIDEO_FPS, maxFrames: DEFAULT_VIDEO_MAX_FRAMES };

/** What ffprobe says about a video's first video stream. */
export interface VideoInfo {
  /** Frame size as ffmpeg outputs it (after the container's rotation). */
  width: number;
  height: number;
  /** Seconds, when the container says. */
  duration?: number;
  /** The container's start time (seconds; 0 when absent). */
  startTime: number;
  /** The container's creation_time tag as ms since the epoch, when present. */
  createdMs?: number;
}

/** One decoded frame and its time in seconds from the start of the video. */
export interface VideoFrame {
  timeS: number;
  image: RgbImage;
}

/** True when the path has a video extension. */
export function isVideoPath(path: string): boolean {
  return VIDEO_EXTENSIONS.has(extname(path).toLowerCase());
}

/** Check sampling options (one usage line each). */
export function checkSampling(s: VideoSampling): VideoSampling {
  if (!Number.isInteger(s.maxFrames) || s.maxFrames < 1 || s.maxFrames > 1_000_000) throw new SiglipError("usage", `--video-max-frames must be an integer from 1 to 1000000, got ${String(s.maxFrames)}`);
  if (s.mode === "fps" && !(Number.isFinite(s.fps) && s.fps > 0 && s.fps <= 240)) throw new SiglipError("usage", `--video-fps must be a number above 0 and at most 240 (frames per second), got ${String(s.fps)}`);
  if (s.mode === "scenes" && !(Number.isFinite(s.threshold) && s.threshold > 0 && s.threshold < 1)) throw new SiglipError("usage", `--video-scenes THRESHOLD must be a number between 0 and 1 (ffmpeg's scene score), got ${String(s.threshold)}`);
  return s;
}

let ffmpegFound: boolean | undefined;

/** Whether `ffmpeg` and `ffprobe` run from PATH (checked once per process). */
export function ffmpegAvailable(): boolean {
  if (ffmpegFound === undefined) {
    const ok = (cmd: string) => {
      const r = spawnSync(cmd, ["-version"], { stdio: "ignore", timeout: 10_000 });
      return !r.error && r.status === 0;
    };
    ffmpegFound = ok("ffmpeg") && ok("ffprobe");
  }
  return ffmpegFound;
}

/** The one line for videos skipped because ffmpeg is missing. */
export function ffmpegMissingMessage(n: number): string {
  return `videos need the system ffmpeg and ffprobe (apt-get install ffmpeg); skipped ${n} video${n === 1 ? "" : "s"} (images are indexed; pass --no-videos to leave videos out)`;
}

function videoError(path: string, why: string): SiglipError {
  return new SiglipError("image", `cannot read video ${shownPath(path)}: ${oneLine(why)}`, { subject: path });
}

/**
 * The telling part of ffmpeg's stderr: its last two distinct lines ("Picture size 100000x100000
 * is invalid; Device or resource busy"), without the file name prefix and ffmpeg's
 * "[demuxer @ 0x…]" tags, at most 160 characters.
 */
function ffmpegReason(stderr: string, path: string): string {
  const clean = (l: string) => {
    l = l.trim().replace(/^\[[^\]]*@ 0x[0-9a-f]+\]\s*/i, "");
    return l.startsWith(`${path}: `) ? l.slice(path.length + 2) : l;
  };
  const lines = stderr.split(/\r?\n/).map(clean).filter((l) => l !== "" && !/Parsed_showinfo|^Stream mapping|^Press \[q\]/.test(l));
  const last = [...new Set(lines.slice(-2))];
  let why = last.length > 0 ? last.join("; ") : "ffmpeg failed";
  if (why.length > 160) why = `${why.slice(0, 159)}…`;
  return why;
}

/** Run a command to completion, keeping its output (small: ffprobe's JSON). */
function runToEnd(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; error?: Error }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (stdout.length < 1 << 20) stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < 1 << 16) stderr += d;
    });
    child.on("error", (error) => resolve({ code: null, stdout, stderr, error }));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Probe a video with ffprobe: its first video stream's size, duration and start. One-line errors. */
export async function probeVideo(path: string): Promise<VideoInfo> {
  const size = await stat(path).then((st) => st.size, () => undefined);
  if (size === 0) throw videoError(path, "empty file (0 bytes)");
  const r = await runToEnd("ffprobe", [
    "-v", "error", "-select_streams", "v:0",
    "-show_entries", "stream=width,height:stream_side_data=rotation:stream_tags=rotate:format=duration,start_time:format_tags=creation_time",
    "-of", "json", "--", path,
  ]);
  if (r.error) throw videoError(path, (r.error as NodeJS.ErrnoException).code === "ENOENT" ? "ffprobe is not installed (apt-get install ffmpeg)" : r.error.message);
  if (r.code !== 0) throw videoError(path, `not a readable video (${ffmpegReason(r.stderr, path)})`);
  let j: { streams?: { width?: number; height?: number; side_data_list?: { rotation?: number }[]; tags?: { rotate?: string } }[]; format?: { duration?: string; start_time?: string; tags?: { creation_time?: string } } };
  try {
    j = JSON.parse(r.stdout);
  } catch {
    throw videoError(path, "ffprobe gave unreadable output");
  }
  const s = j.streams?.[0];
  if (!s) throw videoError(path, "no video stream");
  let { width, height } = s;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width! < 1 || height! < 1) throw videoError(path, "the video stream has no frame size (an unsupported or damaged stream)");
  if (width! > MAX_VIDEO_SIDE || height! > MAX_VIDEO_SIDE || width! * height! > MAX_VIDEO_PIXELS) {
    throw videoError(path, `frames of ${width}×${height} are too large (at most ${MAX_VIDEO_SIDE} per side and ${MAX_VIDEO_PIXELS / 1e6} megapixels)`);
  }
  const rot = s.side_data_list?.find((d) => typeof d.rotation === "number")?.rotation ?? (s.tags?.rotate !== undefined ? Number(s.tags.rotate) : 0);
  if (Number.isFinite(rot) && Math.abs(Math.round(rot / 90)) % 2 === 1) [width, height] = [height, width];
  const info: VideoInfo = { width: width!, height: height!, startTime: 0 };
  const duration = Number(j.format?.duration);
  if (Number.isFinite(duration) && duration > 0) info.duration = duration;
  const start = Number(j.format?.start_time);
  if (Number.isFinite(start)) info.startTime = start;
  const created = Date.parse(j.format?.tags?.creation_time ?? "");
  if (Number.isFinite(created)) info.createdMs = created;
  return info;
}

/** The decimal form of a rate for ffmpeg's filter options. */
function rate(x: number): string {
  return String(Number(x.toPrecision(12)));
}

/**
 * The ffmpeg filter that picks the sampled frames. A set rate keeps the first frame and then
 * each frame at least 1/fps after the last one kept (ffmpeg's `select` on the frames' own
 * times, less 1 ms of slack for rounded timestamps): real frames at their real times, never a
 * duplicated one, and a video of a single frame still gives it (ffmpeg's `fps` filter gives
 * none for a clip shorter than 1/fps).
 */
export function selectFilter(info: Pick<VideoInfo, "duration">, sampling: VideoSampling): string {
  if (sampling.mode === "fps") {
    let fps = sampling.fps;
    if (info.duration !== undefined && info.duration * fps > sampling.maxFrames) fps = sampling.maxFrames / info.duration;
    return `select='isnan(prev_selected_t)+gte(t-prev_selected_t\\,${rate(1 / fps - 1e-3)})'`;
  }
  return `select='eq(n\\,0)+gt(scene\\,${rate(sampling.threshold)})'`;
}

/** ffmpeg's arguments that decode the sampled frames of `path` to raw rgb24 on stdout. */
export function ffmpegFrameArgs(path: string, info: VideoInfo, sampling: VideoSampling): string[] {
  const select = selectFilter(info, sampling);
  return [
    "-nostdin", "-hide_banner", "-nostats", "-v", "info",
    "-i", path,
    "-map", "0:v:0", "-an", "-sn", "-dn",
    "-vf", `${select},showinfo`,
    "-vsync", "vfr",
    "-frames:v", String(sampling.maxFrames),
    "-sws_flags", RGB_SWS_FLAGS,
    "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1",
  ];
}

/**
 * The sampled frames of a video, streamed: each is yielded as soon as ffmpeg has decoded it,
 * and ffmpeg waits (pipe back-pressure) while the consumer is busy. A damaged video throws
 * one-line SiglipErrors (possibly after some frames: a consumer that must be all-or-nothing
 * keeps what it got until the generator ends). Stopping the iteration early kills ffmpeg.
 */
export async function* readFrames(path: string, sampling: VideoSampling, info?: VideoInfo): AsyncGenerator<VideoFrame> {
  checkSampling(sampling);
  const vi = info ?? (await probeVideo(path));
  const frameBytes = vi.width * vi.height * 3;
  const child = spawn("ffmpeg", ffmpegFrameArgs(path, vi, sampling), { stdio: ["ignore", "pipe", "pipe"] });
  let spawnError: Error | undefined;
  const closed = new Promise<number | null>((resolve) => {
    child.on("error", (e) => {
      spawnError = e;
      resolve(null);
    });
    child.on("close", (code) => resolve(code));
  });
  // stderr: the frame times and sizes from showinfo, and the last lines for errors.
  const times: { t: number; w: number; h: number }[] = [];
  let tail = "";
  let partial = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    const lines = (partial + d).split("\n");
    partial = lines.pop()!;
    for (const l of lines) {
      const m = /Parsed_showinfo.*\bpts_time:\s*(-?[\d.eE+-]+|nan).*\bs:(\d+)x(\d+)/.exec(l);
      if (m) times.push({ t: Number(m[1]), w: Number(m[2]), h: Number(m[3]) });
      else if (l.trim() !== "") tail = (tail + l + "\n").slice(-4096);
    }
  });
  const stderrDone = new Promise<void>((resolve) => child.stderr.on("close", () => resolve()));
  let n = 0;
  let done = false;
  try {
    let buf = new Uint8Array(frameBytes);
    let fill = 0;
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) {
        const take = Math.min(chunk.length - off, frameBytes - fill);
        buf.set(chunk.subarray(off, off + take), fill);
        fill += take;
        off += take;
        if (fill === frameBytes) {
          // The k-th showinfo line describes the k-th frame; stderr may lag behind stdout.
          while (times.length <= n && child.stderr.readable) await Promise.race([stderrDone, new Promise((r) => setTimeout(r, 5))]);
          const ti = times[n];
          if (ti && (ti.w !== vi.width || ti.h !== vi.height)) throw videoError(path, `frame ${n + 1} is ${ti.w}×${ti.h}, not ${vi.width}×${vi.height} as the header says (a stream whose frame size changes is not supported)`);
          const t = ti && Number.isFinite(ti.t) ? Math.max(0, ti.t - vi.startTime) : n / (sampling.mode === "fps" ? sampling.fps : 1);
          yield { timeS: Math.round(t * 1e6) / 1e6, image: { width: vi.width, height: vi.height, data: buf } };
          n++;
          buf = new Uint8Array(frameBytes);
          fill = 0;
        }
      }
    }
    const code = await closed;
    await stderrDone;
    if (spawnError) throw videoError(path, (spawnError as NodeJS.ErrnoException).code === "ENOENT" ? "ffmpeg is not installed (apt-get install ffmpeg)" : spawnError.message);
    if (code !== 0) throw videoError(path, `ffmpeg failed (${ffmpegReason(tail + partial, path)})`);
    if (n === 0) throw videoError(path, `no frame could be decoded${tail ? ` (${ffmpegReason(tail + partial, path)})` : ""}`);
    done = true;
  } finally {
    if (!done && child.exitCode === null) child.kill("SIGKILL");
  }
}

/** The part of the model that embeds frames (a `SigLIP2`; a stand-in in tests). */
export interface FrameEmbedder {
  imageFeaturesSettled(images: RgbImage[], options?: { maxPatches?: number }): Promise<({ embedding: Float32Array } | SiglipError)[]>;
}

/** Frames embedded per model call (ffmpeg waits meanwhile)... */
export const VIDEO_EMBED_BATCH = 8;
/** ... fewer when their rgb24 bytes would exceed this (8K frames: 2 per call). */
export const VIDEO_BATCH_BYTES = 256 * 2 ** 20;

/**
 * Sample, decode and embed the frames of one video: its probe info and one (time, vector)
 * per kept frame, in time order. All or nothing: a frame that cannot be decoded or embedded
 * makes the whole video a one-line SiglipError. Memory: one batch of frames
 * of at most {@link VIDEO_EMBED_BATCH} frames and {@link VIDEO_BATCH_BYTES} bytes at a time.
 * Returns undefined when `shouldStop` said so between two batches (nothing is kept).
 */
export async function embedVideo(
  model: FrameEmbedder,
  path: string,
  sampling: VideoSampling,
  options: { maxPatches?: number; shouldStop?: () => boolean } = {},
): Promise<{ info: VideoInfo; frames: { timeS: number; vector: Float32Array }[] } | undefined> {
  const info = await probeVideo(path);
  const perCall = Math.max(1, Math.min(VIDEO_EMBED_BATCH, Math.floor(VIDEO_BATCH_BYTES / (info.width * info.height * 3))));
  const frames: { timeS: number; vector: Float32Array }[] = [];
  let batch: VideoFrame[] = [];
  const flush = async () => {
    const out = await model.imageFeaturesSettled(batch.map((f) => f.image), options.maxPatches !== undefined ? { maxPatches: options.maxPatches } : {});
    out.forEach((r, i) => {
      if (r instanceof SiglipError) throw videoError(path, `frame at ${batch[i]!.timeS} s: ${r.message}`);
      frames.push({ timeS: batch[i]!.timeS, vector: r.embedding });
    });
    batch = [];
  };
  for await (const f of readFrames(path, sampling, info)) {
    batch.push(f);
    if (batch.length === perCall) {
      await flush();
      if (options.shouldStop?.()) return undefined; // leaving the loop kills ffmpeg
    }
  }
  if (batch.length > 0) await flush();
  return { info, frames };
}

/** A frame time as shown by `search`: m:ss.s, or h:mm:ss.s from one hour. */
export function formatTime(timeS: number): string {
  const tenths = Math.round(timeS * 10);
  const h = Math.floor(tenths / 36000);
  const m = Math.floor((tenths % 36000) / 600);
  const s = (tenths % 600) / 10;
  const ss = s.toFixed(1).padStart(4, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${String(m).padStart(2, "0")}:${ss}`;
}
