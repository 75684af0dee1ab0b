/**
 * The WebAssembly SIMD AdamW kernel (src/train/adamw-simd.ts) writes the JavaScript loop's values
 * bit for bit: parameters and both moments, over ten steps of random tensors of every length
 * class (below, at and past the kernel's 4-float blocks and its chunk size), both weight-decay
 * conventions, clipping, and parameters added mid-run (their own bias correction). The committed
 * bytes are adamw-simd.wat assembled, and SIGLIP2_ADAMW_SIMD=0 turns the kernel off.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import type { ParamSpec } from "../src/models/params.js";
import { ADAMW_SIMD_WASM } from "../src/train/adamw-simd-bytes.js";
import { CHUNK, adamwSimdAvailable } from "../src/train/adamw-simd.js";
import { AdamW, DEFAULT_OPTIMIZER, type DecayConvention } from "../src/train/optim.js";
import { Rng } from "../src/train/rng.js";
import type { Params } from "../src/train/session.js";
import { assembleSimd } from "../tools/build-wasm.js";

const LENGTHS = [1, 2, 3, 4, 5, 7, 8, 13, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3];

function tensors(specs: readonly ParamSpec[], rng: Rng, scale: number): Params {
  return new Map(specs.map((s) => [s.name, Float32Array.from({ length: s.shape[0]! }, () => (rng.next() * 2 - 1) * scale)]));
}

/** Bit patterns of a float32 array (NaN payloads aside, equal bits = equal values). */
const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

function assertSameBits(a: Params, b: Params, what: string): void {
  for (const [name, x] of a) {
    const y = b.get(name)!;
    const bx = bits(x);
    const by = bits(y);
    for (let i = 0; i < bx.length; i++) if (bx[i] !== by[i]) assert.fail(`${what} ${name}[${i}]: ${x[i]} (JS) vs ${y[i]} (SIMD)`);
  }
}

describe("AdamW in WebAssembly SIMD", () => {
  test("this Node has WebAssembly SIMD, so AdamW uses the kernel", () => {
    assert.equal(adamwSimdAvailable(), true);
  });

  test("the committed bytes are adamw-simd.wat assembled", async () => {
    const bytes = await assembleSimd("adamw");
    assert.equal(Buffer.from(bytes).toString("base64"), ADAMW_SIMD_WASM, "run `npx tsx tools/build-wasm.ts`");
  });

  for (const convention of ["big_vision", "torch"] as DecayConvention[]) {
    test(`${convention} decay: ten steps give the JavaScript loop's parameters and moments bit for bit (clipping, a parameter added at step 4)`, () => {
      const specs: ParamSpec[] = LENGTHS.map((n, i) => ({ name: `t${i}`, shape: [n], decay: i % 2 === 0 }));
      const late: ParamSpec = { name: "late", shape: [CHUNK + 5], decay: true };
      const config = { ...DEFAULT_OPTIMIZER, decayConvention: convention, clipNorm: 1, lr: 3e-3, weightDecay: 0.05, warmupSteps: 3, totalSteps: 10 };
      const js = new AdamW(config, specs, specs.map((s) => s.name));
      js.simd = false;
      const simd = new AdamW(config, specs, specs.map((s) => s.name));
      const start = tensors(specs, new Rng(1), 0.5);
      const pj: Params = new Map([...start].map(([k, v]) => [k, v.slice()]));
      const ps: Params = new Map([...start].map(([k, v]) => [k, v.slice()]));
      const rng = new Rng(2);
      for (let step = 0; step < 10; step++) {
        if (step === 4) {
          const v = Float32Array.from({ length: late.shape[0]! }, (_, i) => Math.sin(i));
          pj.set(late.name, v.slice());
          ps.set(late.name, v.slice());
          js.addParams([late], [late.name]);
          simd.addParams([late], [late.name]);
        }
        // gradients of a few scales, some clipped (norm > 1), some exact zeros
        const g = tensors([...specs, ...(step >= 4 ? [late] : [])], rng, step % 3 === 0 ? 2 : 1e-3);
        g.get("t0")!.fill(0);
        const gj: Params = new Map([...g].map(([k, v]) => [k, v.slice()]));
        const nj = js.update(pj, gj);
        const ns = simd.update(ps, g);
        assert.equal(nj, ns);
        assertSameBits(pj, ps, `step ${step} parameter`);
        assertSameBits(js.m, simd.m, `step ${step} first moment`);
        assertSameBits(js.v, simd.v, `step ${step} second moment`);
      }
      assert.ok([...ps.values()].every((p) => p.every(Number.isFinite)));
    });
  }

  test("SIGLIP2_ADAMW_SIMD=0 turns the kernel off", () => {
    const mod = fileURLToPath(new URL("../src/train/adamw-simd.ts", import.meta.url));
    const r = spawnSync(process.execPath, ["--import", "tsx", "-e", `import(${JSON.stringify(mod)}).then((m) => console.log(m.adamwSimdAvailable()))`], {
      env: { ...process.env, SIGLIP2_ADAMW_SIMD: "0" }, encoding: "utf8", timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), "false");
  });
});
