/**
 * The hostile-input suite: every case in tests/hostile/cases-*.ts must get the outcome it
 * expects (one clear error, or the correct result), never a crash, a hang, garbage or
 * lost rows. `npm run hostile` prints the same cases as a table.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadCases } from "./hostile/cases.js";
import { runCases } from "./hostile/harness.js";

const cases = await loadCases();

describe("hostile inputs", { concurrency: 2 }, () => {
  // Run through the same runner as the campaign so that both count the same thing.
  for (const c of cases) {
    it(`${c.area}: ${c.id}`, { timeout: (c.timeoutMs ?? 20_000) + 30_000 }, async () => {
      const r = (await runCases([c], 1)).get(c.id)!;
      assert.equal(r.outcome, c.expect, `${c.id}: ${r.outcome}: ${r.detail}`);
    });
  }
});
