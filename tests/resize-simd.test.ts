/**
 * The WebAssembly SIMD kernels of the resampler (src/preprocess/resize-simd.ts) give the same
 * bytes as the JavaScript kernels, which tests/preprocess.test.ts holds to the torch/Pillow
 * goldens (it runs both kernels on every golden case). Here: the committed bytes are the
 * .wat's, and the two kernels agree on random images over shapes that reach every edge of the
 * kernels (width or height 1, odd tap counts, up- and downscaling, saturation, several strips).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { resizeRgb, type RgbImage } from "../src/preprocess/index.js";
import { RESIZE_SIMD_WASM } from "../src/preprocess/resize-simd-bytes.js";
import { resizeSimdAvailable } from "../src/preprocess/resize-simd.js";
import { assembleResizeSimd } from "../tools/build-wasm.js";

/** Deterministic xorshift32 bytes. */
function randomImage(width: number, height: number, seed: number, fill?: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    data[i] = fill ?? s & 255;
  }
  return { width, height, data };
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return -2;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function assertSame(img: RgbImage, h: number, w: number, label: string): void {
  const simd = resizeRgb(img, h, w, "torch", "auto").data;
  const js = resizeRgb(img, h, w, "torch", "js").data;
  const d = firstDiff(simd, js);
  assert.equal(d, -1, `${label}: ${img.width}x${img.height} -> ${w}x${h} differs at byte ${d}`);
}

describe("resize SIMD kernels", () => {
  test("this Node has WebAssembly SIMD, so resizeRgb uses the kernels", () => {
    assert.equal(resizeSimdAvailable(), true);
  });

  test("the committed bytes are resize-simd.wat assembled", async () => {
    const bytes = await assembleResizeSimd();
    assert.equal(Buffer.from(bytes).toString("base64"), RESIZE_SIMD_WASM, "run `npx tsx tools/build-wasm.ts`");
  });

  test("same bytes as the JavaScript kernels on a grid of small shapes", () => {
    const sizes = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33];
    let seed = 1;
    for (const wIn of sizes) for (const hIn of [1, 3, 8, 17]) {
      const img = randomImage(wIn, hIn, seed++);
      for (const wOut of sizes) for (const hOut of [1, 2, 5, 16]) assertSame(img, hOut, wOut, "grid");
    }
  });

  test("same bytes on photo-like downscales, big ratios and non-square targets", () => {
    const cases: Array<[number, number, number, number]> = [
      [640, 480, 224, 224], [1023, 767, 224, 224], [4000, 3, 224, 224], [3, 4000, 224, 224],
      [999, 1001, 384, 512], [257, 255, 256, 256], [100, 60, 1000, 37], [5000, 40, 13, 7],
    ];
    cases.forEach(([w, h, tw, th], i) => assertSame(randomImage(w, h, 100 + i), th, tw, "photo"));
  });

  test("saturated and black images (the clamp and the rounding offset)", () => {
    for (const fill of [0, 1, 254, 255]) {
      const img = randomImage(301, 199, 7, fill);
      for (const [h, w] of [[224, 224], [17, 500], [199, 3]] as const) {
        assertSame(img, h, w, `fill ${fill}`);
        const out = resizeRgb(img, h, w, "torch", "auto").data;
        assert.ok(out.every((v) => v === fill), `fill ${fill} survives ${w}x${h}`);
      }
    }
  });

  test("same bytes when the passes run in several strips (inputs past 4 MiB)", () => {
    // Width pass: 2000x1500 (9 MB) in 3 strips; height pass: 1500 rows x 3000 px wide (13.5 MB).
    const img = randomImage(2000, 1500, 42);
    assertSame(img, 224, 224, "width strips");
    assertSame(img, 901, 3000, "height strips (upscale)");
  });

  test("SIGLIP2_RESIZE_SIMD=0 turns the kernels off", () => {
    const mod = fileURLToPath(new URL("../src/preprocess/resize-simd.ts", import.meta.url));
    const code = `import { resizeSimdAvailable } from ${JSON.stringify(mod)}; console.log(resizeSimdAvailable());`;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
      env: { ...process.env, SIGLIP2_RESIZE_SIMD: "0" }, encoding: "utf8", timeout: 60_000,
    });
    assert.equal(r.stdout.trim(), "false", r.stderr);
  });
});
