/** Baseline cases that hold already: the campaign's own sanity checks. */
import { join } from "node:path";
import { FIXTURES } from "../harness/paths.js";
import { expectCleanError, expectCorrect, runCli, type HostileCase } from "./harness.js";

const F32 = join(FIXTURES, "models", "fixres-f32");

export const cases: HostileCase[] = [
  {
    id: "smoke-missing-model-dir",
    area: "checkpoint",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["embed", "--model", "/nonexistent/model", "--text", "a"]), { mentions: ["/nonexistent/model"] }),
  },
  {
    id: "smoke-embed-text",
    area: "text",
    expect: "correct",
    run: async () =>
      expectCorrect(await runCli(["embed", "--model", F32, "--text", "a cat"]), (lines) => {
        const l = lines[0] as { embedding?: number[] } | undefined;
        if (!l?.embedding || l.embedding.length !== 32) return "no 32-d embedding";
        const n = Math.hypot(...l.embedding);
        return Math.abs(n - 1) < 1e-5 ? null : `norm ${n}`;
      }),
  },
];
