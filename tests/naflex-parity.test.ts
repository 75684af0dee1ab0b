/**
 * NaFlex (Siglip2Model) parity with transformers: spatial shapes, patches, resized
 * position grids, per-layer valid rows, pooled outputs, embeddings and logits for
 * budgets 64–1024 on square, landscape, portrait, 1×1, tiny and extreme images in
 * one mixed batch; the w = 1 PyTorch-CPU quirk in both modes. Goldens come from
 * tools/reference/make_naflex_fixtures.py.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SigLIP2 } from "../src/api.js";
import { NAFLEX_FIXTURE_NAMES, loadManifest, measureNaflexFixture, type StageResult } from "./harness/parity.js";
import { REPO } from "./harness/paths.js";

function explain(rs: StageResult[]): string {
  return rs.filter((r) => !r.ok).map((r) => `${r.stage}: ${r.exact ? `${r.maxAbs} mismatches` : `max-abs ${r.maxAbs} > ${r.tol}${r.minCos !== undefined ? ` (min cos ${r.minCos})` : ""}`}`).join("; ");
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe("NaFlex parity with transformers", () => {
  for (const name of NAFLEX_FIXTURE_NAMES) {
    it(name, async () => {
      const rs = await measureNaflexFixture(name);
      assert.ok(rs.length >= 15, `only ${rs.length} stages compared`);
      assert.deepEqual(rs.filter((r) => !r.ok).map((r) => r.stage), [], explain(rs));
    });
  }

  it("naflex-f32 split into one ONNX model per layer (mask fed to every stage) gives the same results", async () => {
    const rs = await measureNaflexFixture("naflex-f32", { maxStageBytes: 1 });
    assert.deepEqual(rs.filter((r) => !r.ok).map((r) => r.stage), [], explain(rs));
  });
});

describe("NaFlex batching", () => {
  const man = loadManifest("naflex-f32");
  const paths = man.images.map((p) => join(REPO, p));

  it("a batch mixing shapes gives the same results as one image at a time", async () => {
    for (const bs of [1, 3, 8]) {
      const m = await SigLIP2.load(join(REPO, man.model_dir), { imageBatchSize: bs });
      for (const maxPatches of [64, 256]) {
        const batched = await m.imageFeatures(paths, { maxPatches, patches: true, normalize: false });
        for (let i = 0; i < paths.length; i++) {
          const [single] = await m.imageFeatures([paths[i]!], { maxPatches, patches: true, normalize: false });
          assert.deepEqual([single!.gridH, single!.gridW], [batched[i]!.gridH, batched[i]!.gridW]);
          assert.ok(maxAbs(single!.embedding, batched[i]!.embedding) <= 2e-6, `pooled, image ${i}, bs ${bs}, M ${maxPatches}`);
          assert.ok(maxAbs(single!.patches!, batched[i]!.patches!) <= 2e-6, `patches, image ${i}, bs ${bs}, M ${maxPatches}`);
        }
      }
      await m.close();
    }
  });

  it("results come back in input order whatever the grouping", async () => {
    const m = await SigLIP2.load(join(REPO, man.model_dir), { imageBatchSize: 2 });
    const reversed = [...paths].reverse();
    const a = await m.embedImages(paths, { maxPatches: 256 });
    const b = await m.embedImages(reversed, { maxPatches: 256 });
    a.forEach((e, i) => assert.ok(maxAbs(e, b[paths.length - 1 - i]!) <= 2e-6));
    await m.close();
  });
});
