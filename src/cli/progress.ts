/**
 * The CLI's progress bars, the only ones in the package (cli-progress, on stderr, only
 * when stderr is a terminal; never on stdout). One {@link Bar} with three uses:
 * - {@link Progress}: inputs embedded / indexed (shown from {@link PROGRESS_MIN_ITEMS} inputs);
 * - {@link downloadProgress}: the `onProgress` callback of a Hub download, one bar per
 *   large file (the library reports progress, it draws nothing);
 * - `siglip2 train`: steps, with loss, learning rate and throughput (src/cli/train-cmd.ts).
 */
import cliProgress from "cli-progress";
import type { DownloadProgress } from "../hub/settings.js";

/** Minimum number of inputs before a bar is shown. */
export const PROGRESS_MIN_ITEMS = 8;

/** Files smaller than this are downloaded without a bar (config files); LFS files always get one. */
const DOWNLOAD_BAR_MIN_BYTES = 1_000_000;

/** True when bars may be drawn: stderr is a terminal. */
export function barsEnabled(): boolean {
  return process.stderr.isTTY === true;
}

/** One bar on stderr; `format` uses cli-progress placeholders ({bar}, {value}, {total}, {eta_formatted}) and payload keys. */
export class Bar {
  private readonly bar: cliProgress.SingleBar;
  private stopped = false;

  constructor(format: string, total: number, start: number, payload: Record<string, string>, options: { clearOnComplete?: boolean } = {}) {
    this.bar = new cliProgress.SingleBar(
      { stream: process.stderr, format, hideCursor: true, clearOnComplete: options.clearOnComplete ?? false, barsize: 30, etaBuffer: 50 },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total, start, payload);
  }

  update(value: number, payload?: Record<string, string>): void {
    if (!this.stopped) this.bar.update(value, payload ?? {});
  }

  setTotal(total: number): void {
    if (!this.stopped) this.bar.setTotal(total);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.bar.stop();
  }
}

/** Inputs done of `total`, with a rate; nothing unless stderr is a terminal and there are enough inputs. */
export class Progress {
  private readonly bar: Bar | null;
  private readonly start = Date.now();

  constructor(total: number, unit: string) {
    this.bar =
      barsEnabled() && total >= PROGRESS_MIN_ITEMS
        ? new Bar(`{bar} {value}/{total} ${unit} | {rate}/s | ETA {eta_formatted}`, total, 0, { rate: "0.0" }, { clearOnComplete: true })
        : null;
  }

  update(done: number): void {
    if (!this.bar) return;
    const secs = (Date.now() - this.start) / 1000;
    this.bar.update(done, { rate: secs > 0 ? (done / secs).toFixed(1) : "0.0" });
  }

  stop(): void {
    this.bar?.stop();
  }
}

/** `1234567` → `1.23MB` (powers of 1000, as huggingface_hub's bars show sizes). */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${v}${units[u]}` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[u]}`;
}

/**
 * An `onProgress` for resolveModel / SigLIP2.load that draws one bar per downloaded file of
 * at least 1 MB (or of unknown size); undefined when stderr is not a terminal.
 */
export function downloadProgress(): ((p: DownloadProgress) => void) | undefined {
  if (!barsEnabled()) return undefined;
  let current: { file: string; bar: Bar; startTime: number; startBytes: number; total: number | undefined } | undefined;
  return (p) => {
    if (current !== undefined && current.file !== p.file) {
      current.bar.stop();
      current = undefined;
    }
    if (current === undefined) {
      if (p.done || (p.total !== undefined && p.total < DOWNLOAD_BAR_MIN_BYTES)) return;
      const name = p.file.length > 40 ? `(…)${p.file.slice(-40)}` : p.file;
      const format =
        p.total !== undefined ? `${name} |{bar}| {percentage}% | {done}/{size} | {rate} | ETA {eta_formatted}` : `${name} | {done} | {rate}`;
      current = { file: p.file, bar: new Bar(format, p.total ?? 0, p.bytes, {}), startTime: Date.now(), startBytes: p.bytes, total: p.total };
    }
    if (p.total !== undefined && p.total !== current.total) {
      current.total = p.total;
      current.bar.setTotal(p.total);
    }
    const secs = (Date.now() - current.startTime) / 1000;
    const rate = secs > 0 ? (p.bytes - current.startBytes) / secs : 0;
    current.bar.update(p.bytes, {
      done: formatBytes(p.bytes),
      size: current.total !== undefined ? formatBytes(current.total) : "?",
      rate: `${formatBytes(Math.round(rate))}/s`,
    });
    if (p.done) {
      current.bar.stop();
      current = undefined;
    }
  };
}
