/**
 * The `siglip2` CLI as a child process for the queue tests: output collected, a wait for a line on
 * stderr or stdout, and a kill guard (SIGKILL after `guardMs`, default 90 s) so that a hang is a
 * failing test, never a stuck suite.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { REPO } from "./paths.js";

export const BIN = join(REPO, "dist", "cli", "main.js");

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the kill guard had to end it. */
  guarded: boolean;
}

export interface Child {
  proc: ChildProcess;
  done: Promise<Run>;
  /** Resolves when stderr (or stdout) has matched `re`. */
  waitFor(re: RegExp, ms?: number, stream?: "stderr" | "stdout"): Promise<void>;
}

/** Start `siglip2 ARGS` (HF_HUB_OFFLINE=1 plus `env`), in `cwd` when given. */
export function start(args: string[], env: NodeJS.ProcessEnv = {}, guardMs = 90_000, cwd?: string): Child {
  const proc = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, HF_HUB_OFFLINE: "1", ...env }, stdio: ["ignore", "pipe", "pipe"], ...(cwd !== undefined ? { cwd } : {}) });
  const text = { stdout: "", stderr: "" };
  let guarded = false;
  const guard = setTimeout(() => {
    guarded = true;
    proc.kill("SIGKILL");
  }, guardMs);
  const waiters: { re: RegExp; stream: "stderr" | "stdout"; resolve: () => void }[] = [];
  const check = () => {
    for (const w of waiters.splice(0)) (w.re.test(text[w.stream]) ? w.resolve() : waiters.push(w));
  };
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => ((text.stdout += d), check()));
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => ((text.stderr += d), check()));
  const done = new Promise<Run>((resolve) => proc.on("close", (code, signal) => (clearTimeout(guard), resolve({ code, signal, stdout: text.stdout, stderr: text.stderr, guarded }))));
  return {
    proc,
    done,
    waitFor: (re, ms = 60_000, stream = "stderr") => new Promise<void>((resolve, reject) => {
      if (re.test(text[stream])) return resolve();
      const t = setTimeout(() => reject(new Error(`no ${re} on ${stream} within ${ms} ms; stderr: ${text.stderr.slice(-500)}`)), ms);
      waiters.push({ re, stream, resolve: () => (clearTimeout(t), resolve()) });
      void done.then(() => setTimeout(() => reject(new Error(`exited before ${re}; stderr: ${text.stderr.slice(-500)}`)), 100));
    }),
  };
}

/** Run `siglip2 ARGS` to its end. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}, guardMs = 90_000, cwd?: string): Promise<Run> {
  return start(args, env, guardMs, cwd).done;
}
