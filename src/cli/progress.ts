/**
 * Progress bar on stderr (cli-progress), shown only when stderr is a terminal
 * and there are enough inputs to be worth it. Never writes to stdout.
 */
import cliProgress from "cli-progress";

/** Minimum number of inputs before a bar is shown. */
export const PROGRESS_MIN_ITEMS = 8;

export class Progress {
  private readonly bar: cliProgress.SingleBar | null;

  constructor(total: number, unit: string) {
    if (process.stderr.isTTY && total >= PROGRESS_MIN_ITEMS) {
      this.bar = new cliProgress.SingleBar(
        { stream: process.stderr, format: `{bar} {value}/{total} ${unit} | {rate}/s | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: true },
        cliProgress.Presets.shades_classic,
      );
      this.start = Date.now();
      this.bar.start(total, 0, { rate: "0.0" });
    } else {
      this.bar = null;
    }
  }

  private start = 0;

  update(done: number): void {
    if (!this.bar) return;
    const secs = (Date.now() - this.start) / 1000;
    this.bar.update(done, { rate: secs > 0 ? (done / secs).toFixed(1) : "0.0" });
  }

  stop(): void {
    this.bar?.stop();
  }
}
