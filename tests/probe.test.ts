/**
 * Dense-probe parts: per-patch scene labels (src/train/scenes/dense.ts), the linear probe and mean IoU
 * (src/tasks/probe.ts), on cases whose answers are known.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { meanIoU, predictLinearProbe, standardize, trainLinearProbe } from "../src/tasks/probe.js";
import { DENSE_CLASSES, patchLabels } from "../src/train/scenes/dense.js";
import { Rng } from "../src/train/rng.js";
import type { SceneSpec } from "../src/train/scenes/spec.js";

describe("dense probe", () => {
  it("patch labels: the topmost shape covering each cell centre, else background", () => {
    const spec: SceneSpec = {
      size: 40, background: { kind: "plain", rgb: [0, 0, 0] },
      objects: [
        { shape: "square", colour: "red", rgb: [200, 0, 0], center: [10, 10], radius: 10 * Math.SQRT2, rotation: 0, box: [0, 0, 20, 20] },
        { shape: "circle", colour: "blue", rgb: [0, 0, 200], center: [20, 20], radius: 8, rotation: 0, box: [12, 12, 28, 28] },
      ],
    } as SceneSpec;
    const l = patchLabels(spec, 4); // cells of 10 px, centres at 5, 15, 25, 35
    const sq = DENSE_CLASSES.indexOf("square"), ci = DENSE_CLASSES.indexOf("circle");
    assert.deepEqual([...l], [
      sq, sq, 0, 0,
      sq, ci, ci, 0, // (15,15) is inside both: the circle is drawn last
      0, ci, ci, 0,
      0, 0, 0, 0,
    ]);
  });

  it("mean IoU on a hand-made case, absent classes left out", () => {
    const r = meanIoU([0, 0, 1, 1, 2], [0, 1, 1, 1, 2], 4);
    assert.deepEqual(r.perClass.slice(0, 3), [1 / 2, 2 / 3, 1]);
    assert.ok(Number.isNaN(r.perClass[3]!));
    assert.ok(Math.abs(r.mIoU - (1 / 2 + 2 / 3 + 1) / 3) < 1e-12);
  });

  it("the probe separates linearly separable classes and is chance on noise labels", () => {
    const rng = new Rng(4);
    const mk = (n: number, informative: boolean) => {
      const x: Float32Array[] = [], y: number[] = [];
      for (let i = 0; i < n; i++) {
        const c = rng.int(3);
        const v = Float32Array.from({ length: 6 }, () => rng.normal());
        if (informative) v[c] += 4;
        x.push(v); y.push(informative ? c : rng.int(3));
      }
      return { x, y };
    };
    const tr = mk(300, true), te = mk(300, true);
    const s = standardize(tr.x); standardize(te.x, s);
    const p = trainLinearProbe(tr.x, tr.y, 3, { steps: 200 });
    const acc = [...predictLinearProbe(p, te.x)].filter((c, i) => c === te.y[i]).length / te.x.length;
    assert.ok(acc > 0.9, `separable: ${acc}`);
    const ntr = mk(300, false), nte = mk(300, false);
    const q = trainLinearProbe(ntr.x, ntr.y, 3, { steps: 200 });
    const nacc = [...predictLinearProbe(q, nte.x)].filter((c, i) => c === nte.y[i]).length / nte.x.length;
    assert.ok(nacc < 0.45, `noise labels: ${nacc}`);
  });
});
