/**
 * Image decoding and bit-exact fixed-resolution preprocessing (spec §4) against goldens
 * from transformers / torchvision / Pillow (tools/reference/preprocess_goldens.py).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { SiglipError } from "../src/errors.js";
import {
  decodeImage,
  normalizeToChw,
  parseImageProcessorConfig,
  preprocessFixed,
  resizeRgb,
  resizeTarget,
  triangleWeights,
  triangleWeightsF32,
  type ImageProcessorConfig,
  type ResizeBackend,
  type RgbImage,
} from "../src/preprocess/index.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const IMAGES = join(FIXTURES, "images");
const GOLDENS = join(FIXTURES, "goldens");

// ---------------------------------------------------------------------------------------
// A tiny safetensors reader (F32 / F64 / U8 only), local to this test.
// ---------------------------------------------------------------------------------------
type Tensor = { dtype: string; shape: number[]; bytes: Uint8Array };

function readSafetensors(path: string): Map<string, Tensor> {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString("utf8")) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLen;
  const out = new Map<string, Tensor>();
  for (const [name, h] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [a, b] = h.data_offsets;
    out.set(name, { dtype: h.dtype, shape: h.shape, bytes: new Uint8Array(buf.buffer, buf.byteOffset + base + a, b - a) });
  }
  return out;
}

const tensors = readSafetensors(join(GOLDENS, "preprocess.safetensors"));
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const manifest = JSON.parse(readFileSync(join(GOLDENS, "preprocess.json"), "utf8")) as any;

function tensor(key: string, dtype: string): Tensor {
  const t = tensors.get(key);
  assert.ok(t, `golden tensor ${key} missing`);
  assert.equal(t.dtype, dtype, `${key} dtype`);
  return t;
}
function u8(key: string): Uint8Array {
  return tensor(key, "U8").bytes;
}
function f32(key: string): Float32Array {
  const t = tensor(key, "F32");
  return new Float32Array(t.bytes.slice().buffer);
}
function f64(key: string): Float64Array {
  const t = tensor(key, "F64");
  return new Float64Array(t.bytes.slice().buffer);
}

function sha256(a: Uint8Array | Float32Array | Float64Array): string {
  return createHash("sha256").update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest("hex");
}

function bytesOf(a: Uint8Array | Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Bit-exact comparison with a useful message on failure. */
function assertSameArray(actual: Uint8Array | Float32Array, expected: Uint8Array | Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (Buffer.compare(bytesOf(actual), bytesOf(expected)) === 0) return;
  let n = 0;
  let maxd = 0;
  let first = -1;
  for (let i = 0; i < actual.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      n++;
      if (first < 0) first = i;
      maxd = Math.max(maxd, Math.abs(actual[i]! - expected[i]!));
    }
  }
  assert.fail(`${what}: ${n}/${actual.length} values differ (max |diff| ${maxd}; first at ${first}: ${actual[first]} vs ${expected[first]})`);
}

const decodeCache = new Map<string, Promise<RgbImage>>();
function load(name: string): Promise<RgbImage> {
  let p = decodeCache.get(name);
  if (!p) {
    p = decodeImage(join(IMAGES, name));
    decodeCache.set(name, p);
  }
  return p;
}

// ---------------------------------------------------------------------------------------
describe("decodeImage", () => {
  for (const c of manifest.decode as any[]) {
    test(`${c.file} (${c.pil_mode}${c.note ? `; ${c.note}` : ""})`, async () => {
      const img = await decodeImage(join(IMAGES, c.file));
      assert.equal(img.height, c.height, "height");
      assert.equal(img.width, c.width, "width");
      assert.equal(img.data.length, c.height * c.width * 3);
      if (c.exact) {
        if (c.key) assertSameArray(img.data, u8(c.key), `${c.file} vs PIL convert("RGB")`);
        assert.equal(sha256(img.data), c.sha256, `${c.file}: sha256 of RGB pixels vs PIL`);
        return;
      }
      if (c.file === "grey16_12x10.png") {
        // PIL clips 16-bit grey to 255 in convert("RGB"); the port keeps the high byte instead.
        const hi = u8("grey16_12x10.png/high_byte");
        const want = new Uint8Array(hi.length * 3);
        hi.forEach((v, i) => want.fill(v, 3 * i, 3 * i + 3));
        assertSameArray(img.data, want, "16-bit grey -> high byte");
        return;
      }
      // Lossy formats decoded by two different libraries: close, not identical.
      const ref = u8(c.key);
      let sum = 0;
      let max = 0;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(img.data[i]! - ref[i]!);
        sum += d;
        if (d > max) max = d;
      }
      const mean = sum / ref.length;
      // AVIF: libavif (PIL) and libheif (sharp) convert YUV 4:2:0 to RGB differently.
      const tol = c.file.endsWith(".avif") ? 4 : 0.5;
      assert.ok(mean <= tol, `${c.file}: mean |diff| vs PIL ${mean.toFixed(3)} (max ${max}) exceeds ${tol}`);
    });
  }

  test("EXIF orientation 6 rotates the JPEG 90° clockwise", async () => {
    // Same JPEG data as photo_48x64.jpg (same pixels, same encoder settings), plus the EXIF tag.
    const plain = await decodeImage(join(IMAGES, "photo_48x64.jpg"));
    const img = await decodeImage(join(IMAGES, "exif6_48x64.jpg"));
    assert.equal(plain.width, 64);
    assert.equal(plain.height, 48);
    assert.equal(img.width, 48);
    assert.equal(img.height, 64);
    // Orientation 6: displayed (y, x) = stored (H-1-x, y) with H = 48 stored rows.
    const want = new Uint8Array(img.data.length);
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 48; x++) {
        for (let c = 0; c < 3; c++) want[(y * 48 + x) * 3 + c] = plain.data[((47 - x) * 64 + y) * 3 + c]!;
      }
    }
    assertSameArray(img.data, want, "EXIF-rotated JPEG vs rotated plain JPEG");
  });

  test("EXIF orientation 3 in a PNG: exact, rotated 180°", async () => {
    const plain = await load("rgb_23x37.png");
    const img = await decodeImage(join(IMAGES, "exif3_23x37.png"));
    assert.equal(img.width, 37);
    assert.equal(img.height, 23);
    const n = 23 * 37;
    const want = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) want.set(plain.data.subarray(3 * (n - 1 - i), 3 * (n - i)), 3 * i);
    assertSameArray(img.data, want, "PNG rotated 180°");
  });

  test("GIF: first frame of an animation", async () => {
    const img = await decodeImage(join(IMAGES, "anim_48x64.gif"));
    const c = (manifest.decode as any[]).find((d) => d.file === "anim_48x64.gif");
    assert.equal(sha256(img.data), c.sha256, "first GIF frame equals PIL's");
    // Frame 0 is the photo, frame 1 its negative.
    const src = u8("photo_48x64/source");
    let d0 = 0;
    let d1 = 0;
    for (let i = 0; i < src.length; i++) {
      d0 += Math.abs(img.data[i]! - src[i]!);
      d1 += Math.abs(img.data[i]! - (255 - src[i]!));
    }
    assert.ok(d0 < d1 / 10, `frame 0 should be the photo (distance ${d0} vs ${d1})`);
  });

  test("encoded bytes decode like the file", async () => {
    const bytes = new Uint8Array(readFileSync(join(IMAGES, "pal_21x33.png")));
    const a = await decodeImage(bytes, { name: "palette.png" });
    const b = await load("pal_21x33.png");
    assertSameArray(a.data, b.data, "bytes vs path");
  });

  const bad: { file: string; problem: string }[] = manifest.bad;
  for (const b of bad) {
    test(`bad file ${b.file}: ${b.problem}`, async () => {
      const p = join(IMAGES, b.file);
      await assert.rejects(decodeImage(p), (e: unknown) => {
        assert.ok(e instanceof SiglipError, `expected SiglipError, got ${String(e)}`);
        assert.equal(e.code, "image");
        assert.ok(e.message.includes(b.file), `message names the file: ${e.message}`);
        return true;
      });
    });
  }

  test("bad-file messages say what is wrong", async () => {
    const msg = async (file: string, opts?: { maxPixels?: number }) => {
      try {
        await decodeImage(join(IMAGES, file), opts);
      } catch (e) {
        assert.ok(e instanceof SiglipError);
        return e.message;
      }
      assert.fail(`${file} decoded`);
    };
    assert.match(await msg("does_not_exist.png"), /not found/);
    assert.match(await msg("bad_empty.png"), /empty/);
    assert.match(await msg("bad_text.txt"), /not an image|unsupported format/);
    assert.match(await msg("bad_random.png"), /not an image|unsupported format/);
    assert.match(await msg("bad_truncated.png"), /corrupt or truncated/);
    assert.match(await msg("bad_truncated.jpg"), /corrupt or truncated/);
    assert.match(await msg("bad_huge.png"), /too many pixels \(100000×100000/);
    assert.match(await msg("bad_zero.png"), /corrupt image header/);
    assert.match(await msg("rgb_37x23.png", { maxPixels: 100 }), /too many pixels \(23×37 = 851, limit 100/);
  });

  test("bytes input: errors use the given name; empty bytes; directories", async () => {
    await assert.rejects(decodeImage(new Uint8Array(0), { name: "upload-1" }), (e: unknown) => {
      assert.ok(e instanceof SiglipError && e.code === "image" && /upload-1.*empty/.test(e.message), String(e));
      return true;
    });
    await assert.rejects(decodeImage(new Uint8Array([1, 2, 3, 4, 5]), { name: "upload-2" }), (e: unknown) => {
      assert.ok(e instanceof SiglipError && e.code === "image" && e.message.includes("upload-2"), String(e));
      return true;
    });
    const dir = mkdtempSync(join(tmpdir(), "siglip-img-"));
    try {
      await assert.rejects(decodeImage(dir), (e: unknown) => {
        assert.ok(e instanceof SiglipError && e.code === "image" && e.message.includes(dir), String(e));
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

// ---------------------------------------------------------------------------------------
describe("triangle weights", () => {
  function dense(w: { start: Int32Array; size: Int32Array; weights: ArrayLike<number>[] }, nIn: number, nOut: number, T: typeof Float64Array | typeof Float32Array) {
    const m = new T(nOut * nIn);
    for (let i = 0; i < nOut; i++) {
      for (let x = 0; x < w.size[i]!; x++) m[i * nIn + w.start[i]! + x] = w.weights[i]![x]!;
    }
    return m;
  }
  for (const c of manifest.weights as any[]) {
    test(`${c.n_in} -> ${c.n_out}: float64 weights equal torch (double) exactly`, () => {
      const m = dense(triangleWeights(c.n_in, c.n_out), c.n_in, c.n_out, Float64Array) as Float64Array;
      if (c.f64) {
        const ref = f64(c.f64);
        for (let i = 0; i < ref.length; i++) assert.equal(m[i], ref[i], `entry ${i}`);
      } else {
        assert.equal(sha256(m), c.f64_sha256);
      }
    });
    test(`${c.n_in} -> ${c.n_out}: float32 weights equal torch (float) exactly`, () => {
      const m = dense(triangleWeightsF32(c.n_in, c.n_out), c.n_in, c.n_out, Float32Array) as Float32Array;
      if (c.f32) assertSameArray(m, f32(c.f32), "float32 weights");
      else assert.equal(sha256(m), c.f32_sha256);
    });
  }
  test("rows sum to 1 and stay inside the input", () => {
    for (const [a, b] of [[640, 224], [224, 640], [1, 1], [3, 1000], [1000, 3]] as const) {
      const w = triangleWeights(a, b);
      for (let i = 0; i < b; i++) {
        assert.ok(w.start[i]! >= 0 && w.start[i]! + w.size[i]! <= a);
        const s = w.weights[i]!.reduce((p, q) => p + q, 0);
        assert.ok(Math.abs(s - 1) < 1e-12, `${a}->${b} row ${i} sums to ${s}`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------
describe("resizeRgb (uint8, bit-exact per backend)", () => {
  for (const c of manifest.resize as any[]) {
    test(`${c.image} -> ${c.height}x${c.width} [${c.backend}]`, async () => {
      const img = await load(c.image);
      // Both kernels (WebAssembly SIMD where it applies, and JavaScript) against the golden.
      for (const kernels of ["auto", "js"] as const) {
        const out = resizeRgb(img, c.height, c.width, c.backend as ResizeBackend, kernels);
        assert.equal(out.height, c.height);
        assert.equal(out.width, c.width);
        if (c.key) assertSameArray(out.data, u8(c.key), `resized (${kernels})`);
        assert.equal(sha256(out.data), c.sha256, `sha256 of resized uint8 (${kernels})`);
      }
    });
  }
  for (const c of manifest.synthetic.cases as any[]) {
    test(`synthetic ${c.height}x${c.width} -> ${c.target[0]}x${c.target[1]} [${c.backend}] (resize and pixel_values)`, () => {
      // ${manifest.synthetic.formula}
      const { height: h, width: w } = c;
      const data = new Uint8Array(h * w * 3);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const o = (y * w + x) * 3;
          data[o] = (x * 7 + y * 13) % 256;
          data[o + 1] = (x * x + 3 * y) % 256;
          data[o + 2] = (x ^ (y * 5)) & 255;
        }
      }
      const img = { width: w, height: h, data };
      for (const kernels of ["auto", "js"] as const) {
        const out = resizeRgb(img, c.target[0], c.target[1], c.backend, kernels);
        assert.equal(sha256(out.data), c.resized_sha256, `resized uint8 (${kernels})`);
      }
      const cfg = parseImageProcessorConfig({ size: { height: c.target[0], width: c.target[1] }, resample: 2 }, 224);
      assert.equal(sha256(preprocessFixed(img, cfg, c.backend)), c.pixel_values_sha256, "pixel_values");
    });
  }

  test("same size is an exact copy (not aliased)", async () => {
    const img = await load("rgb_37x23.png");
    for (const b of ["torch", "pil"] as const) {
      const out = resizeRgb(img, img.height, img.width, b);
      assert.notEqual(out.data, img.data);
      assertSameArray(out.data, img.data, "identity");
    }
  });
  test("torch and pil differ by at most the recorded amount", async () => {
    for (const d of manifest.backend_diff as any[]) {
      const img = await load(d.image);
      const a = resizeRgb(img, d.height, d.width, "torch").data;
      const b = resizeRgb(img, d.height, d.width, "pil").data;
      let max = 0;
      for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
      assert.equal(max, d.max_abs, `${d.image} ${d.height}x${d.width}`);
    }
  });
});

// ---------------------------------------------------------------------------------------
describe("pixel_values (HF SiglipImageProcessor, bit-exact per backend)", () => {
  for (const c of manifest.pixel_values as any[]) {
    const label = c.norm ? `${c.norm} ${JSON.stringify(c.config.size)}` : `${c.target[0]}x${c.target[1]}`;
    test(`${c.image} ${label} [${c.backend}]`, async () => {
      const img = await load(c.image);
      const cfg = parseImageProcessorConfig(c.config, 224, "test-config");
      const [h, w] = resizeTarget(cfg, img.height, img.width);
      assert.deepEqual([h, w], [c.height, c.width], "resize target");
      const pv = preprocessFixed(img, cfg, c.backend as ResizeBackend);
      assert.equal(pv.length, 3 * c.height * c.width);
      if (c.key) assertSameArray(pv, f32(c.key), "pixel_values");
      assert.equal(sha256(pv), c.sha256, "sha256 of pixel_values (float32 CHW)");
    });
  }

  test("normalizeToChw without resizing: torch fused vs pil two-step differ by ≤ 1 ulp", () => {
    const data = new Uint8Array(256 * 3);
    for (let i = 0; i < 256; i++) data.fill(i, 3 * i, 3 * i + 3);
    const img = { width: 256, height: 1, data };
    const cfg = parseImageProcessorConfig(undefined, 224);
    const a = normalizeToChw(img, cfg, "torch");
    const b = normalizeToChw(img, cfg, "pil");
    for (let i = 0; i < a.length; i++) {
      const x = i % 256;
      assert.equal(a[i], Math.fround((x - 127.5) / 127.5));
      assert.ok(Math.abs(a[i]! - b[i]!) <= 6e-8, `value ${x}`);
    }
  });
});

// ---------------------------------------------------------------------------------------
describe("parseImageProcessorConfig", () => {
  for (const c of manifest.configs as any[]) {
    const r = c.resolved;
    if (!c.hf_processes) {
      test(`${c.name}: refused like transformers ("${c.hf_error}"), naming the file`, () => {
        assert.throws(() => parseImageProcessorConfig(c.json, 224, "ckpt/preprocessor_config.json"), (e: unknown) => {
          assert.ok(e instanceof SiglipError && e.message.includes("ckpt/preprocessor_config.json"), String(e));
          return true;
        });
      });
      continue;
    }
    if (r.do_resize && r.resample !== 2) {
      test(`${c.name}: unsupported resample ${r.resample} is refused, naming the file`, () => {
        assert.throws(() => parseImageProcessorConfig(c.json, 224, "ckpt/preprocessor_config.json"), (e: unknown) => {
          assert.ok(e instanceof SiglipError && e.message.includes("ckpt/preprocessor_config.json"), String(e));
          assert.match((e as Error).message, /resample/);
          return true;
        });
      });
      continue;
    }
    test(`${c.name}: resolves like transformers`, () => {
      const cfg: ImageProcessorConfig = parseImageProcessorConfig(c.json, 999, "x.json");
      // transformers keeps an explicit null as None: a falsy switch.
      assert.equal(cfg.doResize, Boolean(r.do_resize));
      assert.equal(cfg.doRescale, Boolean(r.do_rescale));
      assert.equal(cfg.doNormalize, Boolean(r.do_normalize));
      if (r.do_resize) assert.equal(cfg.resample, r.resample);
      if (r.do_rescale) assert.equal(cfg.rescaleFactor, r.rescale_factor);
      const triple = (v: number | number[]) => (typeof v === "number" ? [v, v, v] : v);
      if (r.do_normalize) {
        assert.deepEqual(cfg.imageMean, triple(r.image_mean));
        assert.deepEqual(cfg.imageStd, triple(r.image_std));
      }
      const s = r.size;
      if (s.height !== undefined) {
        assert.deepEqual([cfg.height, cfg.width], [s.height, s.width]);
        assert.equal(cfg.shortestEdge, undefined);
      } else {
        assert.equal(cfg.shortestEdge, s.shortest_edge);
        assert.equal(cfg.longestEdge, s.longest_edge);
      }
    });
  }

  test("absent file: SigLIP 2 Hub settings at the vision image_size", () => {
    const cfg = parseImageProcessorConfig(undefined, 384);
    assert.deepEqual(cfg, {
      doResize: true,
      height: 384,
      width: 384,
      resample: 2,
      doRescale: true,
      rescaleFactor: 1 / 255,
      doNormalize: true,
      imageMean: [0.5, 0.5, 0.5],
      imageStd: [0.5, 0.5, 0.5],
    });
  });

  test("invalid values are refused with the file name", () => {
    const bad: unknown[] = [
      { resample: 2, size: { height: 0, width: 3 } },
      { resample: 2, size: { max_height: 10, max_width: 10 } },
      { resample: 2, image_mean: [0.5, 0.5] },
      { resample: 2, image_std: [0.5, 0, 0.5] },
      { resample: "bilinear" },
      { resample: 2, do_center_crop: true, crop_size: { height: 5, width: 5 } },
      "not an object",
    ];
    for (const j of bad) {
      assert.throws(() => parseImageProcessorConfig(j, 224, "some/preprocessor_config.json"), (e: unknown) => {
        assert.ok(e instanceof SiglipError && e.message.includes("some/preprocessor_config.json"), `${JSON.stringify(j)}: ${String(e)}`);
        return true;
      });
    }
  });
});
