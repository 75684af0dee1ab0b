/**
 * Golden-state parity with transformers (spec §7): every stage of every fixture
 * checkpoint, within the spec §7.2 tolerances. Goldens come from
 * tools/reference/make_fixtures.py, never from this code.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FIXTURE_NAMES, measureFixture, type StageResult } from "./harness/parity.js";

function explain(rs: StageResult[]): string {
  return rs.filter((r) => !r.ok).map((r) => `${r.stage}: ${r.exact ? `${r.maxAbs} mismatches` : `max-abs ${r.maxAbs} > ${r.tol}${r.minCos !== undefined ? ` (min cos ${r.minCos})` : ""}`}`).join("; ");
}

describe("parity with transformers, every stage", () => {
  for (const name of FIXTURE_NAMES) {
    it(name, async () => {
      const rs = await measureFixture(name);
      assert.ok(rs.length >= 12, `only ${rs.length} stages compared`);
      assert.deepEqual(rs.filter((r) => !r.ok).map((r) => r.stage), [], explain(rs));
    });
  }

  it("fixres-f32 split into one ONNX model per layer gives the same results", async () => {
    const rs = await measureFixture("fixres-f32", { maxStageBytes: 1 });
    assert.deepEqual(rs.filter((r) => !r.ok).map((r) => r.stage), [], explain(rs));
  });
});
