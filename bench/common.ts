/**
 * Shared by the benchmark scripts: the reference Python, one-JSON-line child processes, and the
 * analytic FLOP counts (multiply-add = 2 FLOPs) used for "% of the GEMM peak measured in this run".
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(fileURLToPath(new URL("..", import.meta.url)));

/** The reference interpreter: $SIGLIP2_REF_PYTHON or .venv-ref/bin/python (exits with a hint when absent). */
export function referencePython(tool: string): string {
  const python = process.env["SIGLIP2_REF_PYTHON"] ?? join(REPO, ".venv-ref", "bin", "python");
  if (!existsSync(python)) {
    console.error(`${tool}: no reference Python at ${python}; run 'bash tools/reference/regenerate.sh' once (creates .venv-ref) or set SIGLIP2_REF_PYTHON`);
    process.exit(2);
  }
  return python;
}

/** Run a child that prints one JSON object on its last stdout line; `threads` sets OMP_NUM_THREADS. */
export function childJson(cmd: string, args: string[], threads: number, env: NodeJS.ProcessEnv = {}): any {
  const r = spawnSync(cmd, args, { cwd: REPO, encoding: "utf8", maxBuffer: 64 << 20, env: { ...process.env, ...env, OMP_NUM_THREADS: String(threads) } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  const line = r.stdout.trim().split("\n").pop()!;
  return JSON.parse(line);
}

/** One pre-LN encoder of L layers on S tokens of width D, MLP M (projections, MLP, attention scores and mixing). */
export function encoderFlops(S: number, D: number, M: number, L: number): number {
  return L * (2 * S * (4 * D * D + 2 * D * M) + 2 * 2 * S * S * D);
}

/** A fixed-resolution image tower on S patches of P×P pixels: patch embedding, encoder, MAP head. */
export function visionFlops(S: number, D: number, M: number, L: number, P: number): number {
  const embed = 2 * S * 3 * P * P * D;
  const head = 2 * S * 2 * D * D + 2 * 2 * S * D + 2 * (D * D + 2 * D * M);
  return embed + encoderFlops(S, D, M, L) + head;
}

/**
 * The LocCa decoder on one row of L tokens: per layer causal/parallel self-attention, cross-attention
 * to P image tokens of width Dv (keys and values projected per row, as both implementations gather the
 * image tokens per row), MLP; then the vocabulary projection to V.
 */
export function decoderRowFlops(o: { L: number; D: number; M: number; layers: number; P: number; Dv: number; V: number }): number {
  const { L, D, M, layers, P, Dv, V } = o;
  const layer = 2 * L * (4 * D * D + 2 * D * D + 2 * D * M) + 2 * P * 2 * Dv * D + 2 * 2 * L * L * D + 2 * 2 * L * P * D;
  return layers * layer + 2 * L * D * V;
}

/** The value after `--name` on this process's command line, else `dflt`. */
export function opt(name: string, dflt: string): string;
export function opt(name: string, dflt?: string): string | undefined;
export function opt(name: string, dflt?: string): string | undefined {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? (argv[i + 1] ?? dflt) : dflt;
}
