/**
 * The int8 graph variants of src/models/loader.ts (`Int8Options`) on the committed fixture
 * checkpoints: the default (packed q;k;v + fused MultiHeadAttention, key mask included for
 * NaFlex) computes what the standard-op path computes from the same quantised operands, and
 * every variant stays close to fp32. The fixtures are tiny (D = 32, O(1) random weights), which
 * is harder on int8 than real checkpoints (cosine ≥ 0.9998 on B/16, bench/int8-end-to-end.ts).
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SigLIP2 } from "../src/api.js";
import type { Int8Options } from "../src/models/loader.js";
import { FIXTURES } from "./harness/paths.js";

const IMAGES = ["photo_200x300.png", "grad_224x224.png", "rgb_64x64.png", "strip_5x400.png"].map((f) => join(FIXTURES, "images", f));
const NOISE = readdirSync(join(FIXTURES, "model-inputs")).filter((f) => f.startsWith("noise_") && f.endsWith(".png")).map((f) => join(FIXTURES, "model-inputs", f));

async function embed(model: string, dtype: "fp32" | "int8", int8?: Int8Options): Promise<Float32Array[]> {
  const m = await SigLIP2.load(join(FIXTURES, "models", model), { dtype, tower: { cacheDir: null, ...(int8 ? { int8 } : {}) } });
  try {
    return await m.embedImages([...IMAGES, ...NOISE]);
  } finally {
    await m.close();
  }
}

const dot = (a: Float32Array, b: Float32Array): number => a.reduce((s, x, i) => s + x * b[i]!, 0);
const minCos = (a: Float32Array[], b: Float32Array[]): number => Math.min(...a.map((x, i) => dot(x, b[i]!)));

for (const model of ["fixres-f32", "naflex-f32"]) {
  describe(`int8 variants: ${model}`, () => {
    it("default (fused attention) matches the standard-op attention on the same quantised operands; every variant stays close to fp32", async () => {
      const fp32 = await embed(model, "fp32");
      const fused = await embed(model, "int8");
      const unfused = await embed(model, "int8", { attention: "unfused" });
      const qattn = await embed(model, "int8", { attention: "int8" });
      const perTensor = await embed(model, "int8", { weightScales: "per-tensor" });
      const same = minCos(fused, unfused);
      const c = { fused: minCos(fused, fp32), unfused: minCos(unfused, fp32), qattn: minCos(qattn, fp32), perTensor: minCos(perTensor, fp32) };
      process.stderr.write(`# ${model} int8 min cosine: fused vs unfused ${same.toFixed(6)}; to fp32: fused ${c.fused.toFixed(5)}, unfused ${c.unfused.toFixed(5)}, int8 attention ${c.qattn.toFixed(5)}, per-tensor ${c.perTensor.toFixed(5)}\n`);
      // same quantised q;k;v (one activation scale for the packed matmul = the scale each separate matmul computes);
      // only summation order differs, which can move a later activation across one int8 rounding step
      assert.ok(same >= 0.99999, `fused vs unfused int8: min cosine ${same}`);
      for (const [k, v] of Object.entries(c)) assert.ok(v >= 0.95, `${k} int8 vs fp32: min cosine ${v}`);
      // int8 attention quantises four more tensors: never closer to fp32 than the fp32-attention default by much
      assert.ok(c.qattn <= c.fused + 1e-3, `int8 attention ${c.qattn} vs fused ${c.fused}`);
    });
  });
}
