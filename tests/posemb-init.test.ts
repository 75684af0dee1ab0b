/**
 * The sine–cosine start of the image tower's position table (src/train/posemb-init.ts) against
 * big_vision's posemb_sincos_2d (goldens: tools/reference/posemb_goldens.py), and its use on fresh
 * parameters.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { initParams } from "../src/train/init.js";
import { paramSpecs } from "../src/train/model.js";
import { POSITION_TABLE, sincos2d, sincosPositionInit } from "../src/train/posemb-init.js";
import { tinyConfigJson } from "../src/train/experiment.js";
import { parseConfig } from "../src/weights/config.js";
import { FIXTURES } from "./harness/paths.js";

const golden = JSON.parse(readFileSync(join(FIXTURES, "goldens", "posemb-sincos.json"), "utf8")) as { cases: Array<{ h: number; w: number; width: number; table: number[] }> };

describe("sine–cosine position init", () => {
  for (const c of golden.cases) {
    it(`equals big_vision's posemb_sincos_2d for a ${c.h}×${c.w} grid, width ${c.width} (max |Δ| ≤ 1e-6)`, () => {
      const ours = sincos2d(c.h, c.w, c.width);
      assert.equal(ours.length, c.table.length);
      let m = 0;
      for (let i = 0; i < ours.length; i++) m = Math.max(m, Math.abs(ours[i]! - c.table[i]!));
      assert.ok(m <= 1e-6, `max |Δ| ${m}`);
    });
  }

  it("refuses widths that are not a multiple of 4 and empty grids", () => {
    assert.throws(() => sincos2d(2, 2, 10), /multiple of 4/);
    assert.throws(() => sincos2d(0, 2, 8), /grid/);
  });

  it("overwrites only the position table of fresh parameters", () => {
    const config = parseConfig(tinyConfigJson({ width: 16, layers: 1, heads: 2, mlp: 32, vocab: 40, seqLen: 8, image: 16, patch: 4 }));
    const specs = paramSpecs(config, { objectives: ["sigmoid", "locca"] });
    const before = initParams(specs, 3);
    const after = initParams(specs, 3);
    sincosPositionInit(after, config.vision_config);
    for (const [name, v] of before) {
      if (name === POSITION_TABLE) assert.deepEqual([...after.get(name)!], [...sincos2d(4, 4, 16)]);
      else assert.deepEqual(after.get(name), v, name);
    }
    const missing = new Map(before);
    missing.delete(POSITION_TABLE);
    assert.throws(() => sincosPositionInit(missing, config.vision_config), /no vision_model/);
  });
});
