/**
 * NaFlex preprocessing (spec §4.5) and the position-embedding grid resize (spec §1.4) against
 * goldens from transformers' own Siglip2ImageProcessor / Siglip2ImageProcessorPil /
 * Siglip2VisionEmbeddings.resize_positional_embeddings
 * (tools/reference/naflex_preprocess_goldens.py).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { SiglipError } from "../src/errors.js";
import { fma32, resizePositionGrid } from "../src/models/position-resize.js";
import {
  naflexTargetSize,
  parseNaflexProcessorConfig,
  preprocessNaflex,
  type NaflexProcessorConfig,
  type ResizeBackend,
  type RgbImage,
} from "../src/preprocess/index.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";

const GOLDENS = fileURLToPath(new URL("./fixtures/goldens/", import.meta.url));
const golden = SafetensorsFile.open(join(GOLDENS, "naflex-preprocess.safetensors"));
after(() => golden.close());

type Json = Record<string, unknown>;
interface ProcessorCase {
  image: string;
  backend: ResizeBackend;
  init: Json;
  call: { max_num_patches?: number };
  tag: string;
  spatial_shapes: [number, number];
  mask_sum: number;
  pixel_values_shape: [number, number];
  sha256: string;
  key?: string;
}
interface ConfigCase {
  name: string;
  json: Json;
  resolved: {
    patch_size: number | null;
    max_num_patches: number | null;
    do_resize: boolean | null;
    resample: number | null;
    do_rescale: boolean | null;
    rescale_factor: number | null;
    do_normalize: boolean | null;
    image_mean: number | number[] | null;
    image_std: number | number[] | null;
  };
  hf_processes: boolean;
  spatial_shapes?: [number, number];
  hf_error?: string;
}
interface PositionCase {
  grid: number;
  dim: number;
  h: number;
  w: number;
  table: string;
  quirk: boolean;
  replicated_row0?: boolean;
  hf_sha256: string;
  hf?: string;
  ref_f64?: string;
}
interface Manifest {
  target_sizes: { spec_table: number[][]; random: number[][] };
  images: Record<string, { height: number; width: number; key: string }>;
  processor: ProcessorCase[];
  configs: ConfigCase[];
  position: {
    cpu_capability: string;
    grids: { grid: number; dim: number; key?: string; formula?: string }[];
    cases: PositionCase[];
    sweep: [number, number, string, boolean][];
    sweep_grid: { grid: number; dim: number; table: string };
  };
}
const manifest = JSON.parse(readFileSync(join(GOLDENS, "naflex-preprocess.json"), "utf8")) as Manifest;

/** PyTorch's x86 SIMD kernels (what this port models bit-exactly); other builds round every product (≤ 1 ulp apart). */
const EXACT_CAPABILITY = ["AVX2", "AVX512"].includes(manifest.position.cpu_capability);

function f32(name: string): Float32Array {
  assert.equal(golden.info(name).dtype, "F32", name);
  return golden.readFloat32(name);
}
function f64(name: string): Float64Array {
  assert.equal(golden.info(name).dtype, "F64", name);
  return new Float64Array(golden.readBytes(name).buffer);
}
function image(name: string): RgbImage {
  const meta = manifest.images[name];
  assert.ok(meta, `image ${name}`);
  assert.equal(golden.info(meta.key).dtype, "U8");
  return { height: meta.height, width: meta.width, data: golden.readBytes(meta.key) };
}
function sha256(a: Float32Array): string {
  return createHash("sha256").update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest("hex");
}
function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
function firstMismatch(a: Float32Array, b: Float32Array): string {
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `index ${i}: ${a[i]} vs ${b[i]}`;
  return "none";
}

// ---------------------------------------------------------------------------------------
describe("NaFlex target size (get_image_size_for_max_num_patches)", () => {
  test("spec §4.5 table (P = 16), written out literally", () => {
    // [H, W, M, gridH, gridW]
    const table: [number, number, number, number, number][] = [
      [224, 224, 256, 16, 16], [224, 224, 1024, 32, 32],
      [480, 640, 256, 14, 18], [480, 640, 1024, 27, 36],
      [640, 480, 256, 18, 14], [640, 480, 1024, 36, 27],
      [1080, 1920, 256, 12, 21], [1080, 1920, 1024, 24, 42],
      [768, 1024, 256, 14, 18], [768, 1024, 1024, 27, 36],
      [1000, 333, 256, 28, 9], [1000, 333, 1024, 55, 18],
      [17, 23, 256, 14, 18], [17, 23, 1024, 27, 37],
      [1, 1, 256, 7, 7], [1, 1, 1024, 7, 7],
      [32, 32, 256, 16, 16], [32, 32, 1024, 32, 32],
      [16, 4000, 256, 1, 250], [16, 4000, 1024, 2, 500],
      [4000, 16, 256, 250, 1], [4000, 16, 1024, 500, 2],
      [300, 1, 256, 256, 1], [300, 1, 1024, 512, 2],
      [37, 900, 256, 3, 73],
      [300, 200, 256, 19, 13],
    ];
    for (const [h, w, m, gh, gw] of table) {
      assert.deepEqual(naflexTargetSize(h, w, 16, m), [gh * 16, gw * 16], `${h}×${w} M=${m}`);
    }
  });

  test("equals transformers on the spec table and 300 random sizes (P ∈ {4, 14, 16}, M ∈ {64 … 1024})", () => {
    const rows = [...manifest.target_sizes.spec_table, ...manifest.target_sizes.random];
    assert.ok(rows.length >= 300);
    for (const [h, w, p, m, th, tw] of rows as [number, number, number, number, number, number][]) {
      assert.deepEqual(naflexTargetSize(h, w, p, m), [th, tw], `${h}×${w} P=${p} M=${m}`);
    }
  });

  test("rejects non-integer or non-positive arguments", () => {
    assert.throws(() => naflexTargetSize(0, 5, 16, 256), RangeError);
    assert.throws(() => naflexTargetSize(5, 5.5, 16, 256), RangeError);
    assert.throws(() => naflexTargetSize(5, 5, 0, 256), RangeError);
    assert.throws(() => naflexTargetSize(5, 5, 16, 0), RangeError);
  });
});

// ---------------------------------------------------------------------------------------
describe("NaFlex pixel values (Siglip2ImageProcessor, both backends)", () => {
  test("golden coverage: both backends, P 4/14/16, budgets 64/256/576/1024, all images", () => {
    const backends = new Set(manifest.processor.map((c) => c.backend));
    assert.deepEqual([...backends].sort(), ["pil", "torch"]);
    const images = new Set(manifest.processor.map((c) => c.image));
    for (const n of ["square_48x48", "landscape_40x72", "portrait_72x40", "px_1x1", "tiny_3x5", "extreme_4x1000", "extreme_1000x4"]) {
      assert.ok(images.has(n), n);
    }
    assert.ok(manifest.processor.filter((c) => c.key !== undefined).length >= 4, "some cases stored in full");
  });

  for (const c of manifest.processor) {
    const label = `${c.image} ${JSON.stringify(c.init)} ${JSON.stringify(c.call)} ${c.backend} (${c.tag})`;
    test(label, () => {
      const cfg = parseNaflexProcessorConfig(c.init, 16, "case");
      const budget = c.call.max_num_patches ?? cfg.maxNumPatches;
      assert.equal(c.pixel_values_shape[0], budget);
      assert.equal(c.pixel_values_shape[1], 3 * cfg.patchSize * cfg.patchSize);
      const out = preprocessNaflex(image(c.image), cfg, budget, c.backend);
      assert.deepEqual([out.gridH, out.gridW], c.spatial_shapes, "spatial_shapes");
      assert.equal(out.gridH * out.gridW, c.mask_sum, "pixel_attention_mask sum");
      assert.equal(out.patches.length, c.mask_sum * 3 * cfg.patchSize * cfg.patchSize);
      if (c.key !== undefined) {
        const want = f32(c.key);
        assert.equal(firstMismatch(out.patches, want), "none", "full values bit-identical");
      }
      assert.equal(sha256(out.patches), c.sha256, "valid pixel_values rows bit-identical (sha256)");
    });
  }

  test("the two backends differ only by the ±1-level resize (≤ 2/255 after normalisation)", () => {
    const img = image("landscape_40x72");
    const cfg = parseNaflexProcessorConfig({ patch_size: 4, max_num_patches: 256 }, 16);
    const a = preprocessNaflex(img, cfg, 256, "torch").patches;
    const b = preprocessNaflex(img, cfg, 256, "pil").patches;
    const d = maxAbs(a, b);
    assert.ok(d > 0 && d <= 2 / 255 + 1e-6, `max-abs ${d}`);
  });

  test("patch layout: row = py·gridW + px, column = (yIn·P + xIn)·3 + c", () => {
    // 8×12 image, P = 4, no resize: values encode (y, x, c).
    const h = 8;
    const w = 12;
    const data = new Uint8Array(h * w * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = y * 12 + x + 80 * c;
    const cfg: NaflexProcessorConfig = {
      ...parseNaflexProcessorConfig({ patch_size: 4, max_num_patches: 6 }, 16),
      doResize: false,
      doRescale: false,
      doNormalize: false,
    };
    const out = preprocessNaflex({ width: w, height: h, data }, cfg);
    assert.deepEqual([out.gridH, out.gridW], [2, 3]);
    for (let py = 0; py < 2; py++) {
      for (let px = 0; px < 3; px++) {
        for (let yi = 0; yi < 4; yi++) {
          for (let xi = 0; xi < 4; xi++) {
            for (let c = 0; c < 3; c++) {
              const got = out.patches[(py * 3 + px) * 48 + (yi * 4 + xi) * 3 + c];
              assert.equal(got, (py * 4 + yi) * 12 + px * 4 + xi + 80 * c);
            }
          }
        }
      }
    }
  });

  test("do_resize off: a size that is not a multiple of P, or too many patches, is refused", () => {
    const cfg = { ...parseNaflexProcessorConfig({}, 16), doResize: false };
    const img = image("tiny_3x5");
    assert.throws(() => preprocessNaflex(img, cfg), (e: unknown) => e instanceof SiglipError && e.code === "image" && /multiple of the patch size 16/.test(e.message));
    const exact = image("exact_32x64");
    assert.throws(() => preprocessNaflex(exact, cfg, 7), (e: unknown) => e instanceof SiglipError && /more than max_num_patches 7/.test(e.message));
    assert.equal(preprocessNaflex(exact, cfg, 8).patches.length, 8 * 768);
    assert.throws(() => preprocessNaflex(exact, cfg, 0), (e: unknown) => e instanceof SiglipError && e.code === "input");
  });
});

// ---------------------------------------------------------------------------------------
describe("parseNaflexProcessorConfig", () => {
  const probe = (): RgbImage => image("exact_32x64");
  const triple = (v: number | number[] | null): number[] => (typeof v === "number" ? [v, v, v] : (v ?? []));

  for (const c of manifest.configs) {
    test(`${c.name}: as transformers resolves it`, () => {
      const r = c.resolved;
      const unsupportedResample = r.do_resize === true && r.resample !== null && r.resample !== 2;
      if (!c.hf_processes || unsupportedResample) {
        assert.throws(
          () => parseNaflexProcessorConfig(c.json, 16, "x/preprocessor_config.json"),
          (e: unknown) =>
            e instanceof SiglipError && e.code === "checkpoint" && e.message.startsWith("x/preprocessor_config.json: "),
          `${c.name} must be refused (HF: ${c.hf_error ?? "bicubic, not implemented here"})`,
        );
        return;
      }
      const cfg = parseNaflexProcessorConfig(c.json, 99, "x/preprocessor_config.json");
      assert.equal(cfg.patchSize, r.patch_size);
      assert.equal(cfg.maxNumPatches, r.max_num_patches);
      assert.equal(cfg.doResize, r.do_resize === true);
      assert.equal(cfg.doRescale, r.do_rescale === true);
      assert.equal(cfg.doNormalize, r.do_normalize === true);
      if (cfg.doResize) assert.equal(cfg.resample, r.resample ?? 2); // null resample = bilinear in both backends
      if (cfg.doRescale) assert.equal(cfg.rescaleFactor, r.rescale_factor);
      if (cfg.doNormalize) {
        assert.deepEqual(cfg.imageMean, triple(r.image_mean));
        assert.deepEqual(cfg.imageStd, triple(r.image_std));
      }
      const out = preprocessNaflex(probe(), cfg);
      assert.deepEqual([out.gridH, out.gridW], c.spatial_shapes);
    });
  }

  test("absent file: Hub NaFlex settings with config.json's patch size", () => {
    assert.deepEqual(parseNaflexProcessorConfig(undefined, 14), {
      patchSize: 14,
      maxNumPatches: 256,
      doResize: true,
      resample: 2,
      doRescale: true,
      rescaleFactor: 1 / 255,
      doNormalize: true,
      imageMean: [0.5, 0.5, 0.5],
      imageStd: [0.5, 0.5, 0.5],
    });
    // a present file without patch_size uses the class default 16, as HF does
    assert.equal(parseNaflexProcessorConfig({}, 14).patchSize, 16);
  });

  test("malformed values name the file", () => {
    const bad: unknown[] = [
      [],
      "x",
      { patch_size: 0 },
      { patch_size: 16.5 },
      { max_num_patches: "256" },
      { do_resize: "yes" },
      { image_mean: [0.5, 0.5] },
      { image_std: [0, 1, 1] },
      { rescale_factor: 0 },
      { resample: "bilinear" },
    ];
    for (const j of bad) {
      assert.throws(
        () => parseNaflexProcessorConfig(j, 16, "m/preprocessor_config.json"),
        (e: unknown) => e instanceof SiglipError && e.code === "checkpoint" && e.subject === "m/preprocessor_config.json",
        JSON.stringify(j),
      );
    }
  });
});

// ---------------------------------------------------------------------------------------
/** Exact float32 fused multiply-add with BigInt arithmetic (all float32 values are multiples of 2^-149). */
function exactFma32(a: number, b: number, c: number): number {
  const S = 2 ** 149;
  const A = BigInt(a * S);
  const B = BigInt(b * S);
  const C = BigInt(c * S);
  const exact = A * B + C * BigInt(S); // scaled by 2^298
  const approx = Math.fround(Number(exact) / S / S);
  // candidates: approx and its float32 neighbours; pick the nearest (ties: even significand)
  const bits = new Uint32Array(1);
  const fl = new Float32Array(bits.buffer);
  fl[0] = approx;
  const cands: number[] = [];
  for (const dbits of [-1, 0, 1]) {
    bits[0] = (new Uint32Array(new Float32Array([approx]).buffer)[0]! + dbits) >>> 0;
    cands.push(fl[0]!);
  }
  let best = cands[1]!;
  let bestDist = -1n;
  let bestEven = false;
  for (const v of cands) {
    if (!Number.isFinite(v)) continue;
    const V = BigInt(v * S) * BigInt(S);
    const d = V > exact ? V - exact : exact - V;
    const even = (new Uint32Array(new Float32Array([v]).buffer)[0]! & 1) === 0;
    if (bestDist < 0n || d < bestDist || (d === bestDist && even && !bestEven)) {
      best = v;
      bestDist = d;
      bestEven = even;
    }
  }
  return best;
}

describe("fma32 (float32 fused multiply-add)", () => {
  test("double-rounding midpoint cases", () => {
    const e = 2 ** -23;
    // p = 2^-24 - 2^-70; c = 1 + 2^-23: float64 sum lands on a float32 midpoint; true result rounds down.
    assert.equal(fma32(2 ** -24 * (1 + e), 1 - e, 1 + e), 1 + e);
    assert.equal(exactFma32(2 ** -24 * (1 + e), 1 - e, 1 + e), 1 + e);
    assert.equal(fma32(-(2 ** -24) * (1 + e), 1 - e, -(1 + e)), -(1 + e));
    // naive Math.fround(a * b + c) gets these wrong
    assert.notEqual(Math.fround(2 ** -24 * (1 + e) * (1 - e) + (1 + e)), 1 + e);
  });

  test("agrees with an exact BigInt reference on random and near-cancelling inputs", () => {
    let seed = 12345;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const r32 = () => Math.fround((rnd() * 2 - 1) * 2 ** Math.floor(rnd() * 20 - 10));
    for (let i = 0; i < 20000; i++) {
      const a = r32();
      const b = r32();
      let c = r32();
      if (i % 3 === 0) c = Math.fround(-a * b + (rnd() - 0.5) * 2 ** -30); // cancellation
      if (i % 3 === 1) c = Math.fround(Math.fround(a * b) * 2 ** Math.floor(rnd() * 50 - 25)); // wide exponent gaps
      assert.equal(fma32(a, b, c), exactFma32(a, b, c), `${a} * ${b} + ${c}`);
    }
  });
});

// ---------------------------------------------------------------------------------------
describe("position-embedding grid resize (resize_positional_embeddings)", () => {
  const tables = new Map<string, Float32Array>();
  const table = (key: string): Float32Array => {
    let t = tables.get(key);
    if (!t) {
      t = f32(key);
      tables.set(key, t);
    }
    return t;
  };
  let worst = 0;
  after(() => {
    console.log(`# position resize: max-abs vs HF over all full-value cases = ${worst} (cpu capability of the goldens: ${manifest.position.cpu_capability})`);
  });

  const full = manifest.position.cases.filter((c) => c.hf !== undefined);
  test("golden coverage: grids 16/8/6, quirk and non-quirk cases", () => {
    assert.deepEqual([...new Set(full.map((c) => c.grid))].sort((a, b) => a - b), [6, 8, 16]);
    assert.ok(full.filter((c) => c.quirk).length >= 6);
    assert.ok(full.filter((c) => c.w === 1 && !c.quirk).length >= 4); // (1,1), (g,1)
  });

  for (const c of full) {
    const label = `g=${c.grid} D=${c.dim} → ${c.h}×${c.w}${c.quirk ? " (w = 1 quirk)" : ""}`;
    test(label, () => {
      const hf = f32(c.hf!);
      const t = table(c.table);
      const compat = resizePositionGrid(t, c.grid, c.dim, c.h, c.w, { torchCpuCompat: true });
      const plain = resizePositionGrid(t, c.grid, c.dim, c.h, c.w);
      assert.equal(compat.length, c.h * c.w * c.dim);
      const d = maxAbs(compat, hf);
      worst = Math.max(worst, d);
      assert.ok(d <= 1e-6, `compat vs HF max-abs ${d}`);
      if (EXACT_CAPABILITY) assert.equal(firstMismatch(compat, hf), "none", "bit-identical with HF");
      assert.equal(sha256(hf), c.hf_sha256);
      if (!c.quirk) {
        assert.equal(firstMismatch(plain, compat), "none", "the switch only matters for the quirk");
      } else {
        // HF replicates row 0; the default (correct) mode follows the float64 reference instead.
        assert.equal(c.replicated_row0, true);
        assert.equal(firstMismatch(plain.subarray(0, c.dim), compat.subarray(0, c.dim)), "none", "row 0 is right in both");
        const diff = maxAbs(plain, hf);
        assert.ok(diff > 1e-3, `default mode must differ from HF's quirky output (max-abs ${diff})`);
      }
      if (c.ref_f64 !== undefined) {
        const ref = f64(c.ref_f64);
        const dr = maxAbs(plain, ref);
        assert.ok(dr <= 1e-6, `default mode vs float64 reference max-abs ${dr}`);
      }
    });
  }

  test("larger width (D = 64, formula table): bit-identical hashes", () => {
    const g = manifest.position.grids.find((x) => x.formula !== undefined)!;
    const t = new Float32Array(g.grid * g.grid * g.dim);
    for (let i = 0; i < g.grid * g.grid; i++) {
      for (let d = 0; d < g.dim; d++) t[i * g.dim + d] = Math.fround((((i * 7919 + d * 104729) % 2001) - 1000) / 20000);
    }
    const cases = manifest.position.cases.filter((c) => c.table === "formula");
    assert.ok(cases.length >= 8);
    for (const c of cases) {
      const out = resizePositionGrid(t, c.grid, c.dim, c.h, c.w, { torchCpuCompat: true });
      if (EXACT_CAPABILITY) assert.equal(sha256(out), c.hf_sha256, `${c.h}×${c.w}`);
    }
  });

  test("sweep: every (h, w) in 1..24 × 1..24 from the 16×16 grid is bit-identical (compat mode)", { skip: !EXACT_CAPABILITY }, () => {
    const s = manifest.position.sweep_grid;
    const t = table(s.table);
    assert.equal(manifest.position.sweep.length, 24 * 24);
    for (const [h, w, digest, quirk] of manifest.position.sweep) {
      assert.equal(quirk, w === 1 && h !== 1 && h !== s.grid, "quirk condition: w == 1 && h ∉ {1, g}");
      const out = resizePositionGrid(t, s.grid, s.dim, h, w, { torchCpuCompat: true });
      assert.equal(sha256(out).slice(0, 16), digest, `${h}×${w}`);
    }
  });

  test("same size is a copy; bad arguments are refused", () => {
    const t = table(manifest.position.grids[0]!.key!);
    const g = manifest.position.grids[0]!;
    const out = resizePositionGrid(t, g.grid, g.dim, g.grid, g.grid);
    assert.notEqual(out, t);
    assert.deepEqual(out, t);
    assert.throws(() => resizePositionGrid(t, g.grid, g.dim, 0, 3), RangeError);
    assert.throws(() => resizePositionGrid(t, g.grid + 1, g.dim, 3, 3), RangeError);
  });

  test("`out` receives the result; a 1×1 grid broadcasts its single row (no quirk for g = 1)", () => {
    const c = full.find((x) => x.grid === 16 && x.h === 7 && x.w === 5)!;
    const t = table(c.table);
    const buf = new Float32Array(c.h * c.w * c.dim + 5).fill(42);
    const got = resizePositionGrid(t, c.grid, c.dim, c.h, c.w, { out: buf });
    assert.equal(got, buf);
    assert.deepEqual(buf.subarray(0, c.h * c.w * c.dim), f32(c.hf!));
    assert.deepEqual([...buf.subarray(c.h * c.w * c.dim)], [42, 42, 42, 42, 42]);
    assert.throws(() => resizePositionGrid(t, c.grid, c.dim, c.h, c.w, { out: new Float32Array(3) }), RangeError);
    const one = new Float32Array([0.5, -0.25, 0.125]);
    for (const compat of [false, true]) {
      const r = resizePositionGrid(one, 1, 3, 9, 1, { torchCpuCompat: compat });
      for (let i = 0; i < 9; i++) assert.deepEqual([...r.subarray(i * 3, i * 3 + 3)], [0.5, -0.25, 0.125]);
    }
  });

  test("speed: 16×16×1152 grid to 32×32 and 250×1 in a few ms", () => {
    const D = 1152;
    const t = new Float32Array(256 * D);
    for (let i = 0; i < t.length; i++) t[i] = Math.fround(Math.sin(i) * 0.05);
    resizePositionGrid(t, 16, D, 27, 36); // warm-up
    const t0 = performance.now();
    const n = 5;
    for (let i = 0; i < n; i++) {
      resizePositionGrid(t, 16, D, 32, 32);
      resizePositionGrid(t, 16, D, 12, 21);
    }
    const ms = (performance.now() - t0) / (2 * n);
    console.log(`# resizePositionGrid D=1152: ${ms.toFixed(2)} ms per call`);
    assert.ok(ms < 250, `${ms} ms per call`);
  });
});
