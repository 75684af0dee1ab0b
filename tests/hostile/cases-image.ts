/**
 * Hostile preprocessor_config.json files: settings that do not fit the tower (transformers
 * refuses them too), values that would feed NaN/Inf pixels to the model, wrong types,
 * and files that are not regular files.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { copyFixture } from "../harness/files.js";
import { expectCleanError, expectReturns, expectThrows, runCli, type HostileCase } from "./harness.js";
import { IMG_32, IMG_47x61, IMG_PHOTO, apiRun, embedImage, withPreprocessor } from "./weights-kit.js";

const PP = "preprocessor_config.json";

interface Opts { fixture?: string; image?: string; via?: "cli" | "api" }

/** A preprocessor config that is refused as a whole: exit 2, one line naming the file and `mentions`. */
function refused(id: string, edit: ((c: Record<string, any>) => void) | string, mentions: Array<string | RegExp>, o: Opts = {}): HostileCase {
  return {
    id,
    area: "image",
    expect: "clean-error",
    run: async () => {
      const dir = withPreprocessor(o.fixture ?? "fixres-f32", edit);
      if ((o.via ?? "api") === "api") return expectThrows(() => apiRun(dir, "image", o.image), [join(dir, PP), ...mentions]);
      return expectCleanError(await embedImage(dir, o.image), { mentions: [join(dir, PP), ...mentions] });
    },
  };
}

/** A config that works: a finite, normalised embedding (library call, in-process). */
function works(id: string, edit: (c: Record<string, any>) => void, o: Opts = {}): HostileCase {
  return {
    id,
    area: "image",
    expect: "correct",
    run: async () => expectReturns(() => apiNorm(withPreprocessor(o.fixture ?? "fixres-f32", edit), o.image ?? IMG_47x61), (n) => (Math.abs(n - 1) < 1e-4 ? null : `norm ${n}`)),
  };
}

/** The norm of one image embedding (finite, or the call throws). */
async function apiNorm(dir: string, image: string): Promise<number> {
  const { SigLIP2 } = await import("../../src/api.js");
  const m = await SigLIP2.load(dir);
  try {
    const [e] = await m.embedImages([image]);
    return Math.hypot(...e!);
  } finally {
    await m.close();
  }
}

const cases: HostileCase[] = [
  // --- does not fit the tower ----------------------------------------------------------------
  {
    // do_resize false: each image that is not 32×32 is an error naming it; the others still work
    id: "image-no-resize-mixed-sizes",
    area: "image",
    expect: "clean-error",
    run: async () => {
      const dir = withPreprocessor("fixres-f32", (c) => { c.do_resize = false; });
      const r = await runCli(["embed", "--model", dir, "--image", IMG_47x61, IMG_32]);
      const res = expectCleanError(r, { code: 1, allowStdout: true, mentions: [IMG_47x61, "47×61", "do_resize is false", "32×32"] });
      if (res.outcome === "clean-error" && !r.stdout.includes(`"input":${JSON.stringify(IMG_32)}`)) return { outcome: "data-lost", detail: "the 32×32 image was not embedded" };
      return res;
    },
  },
  works("image-no-resize-exact-size", (c) => { c.do_resize = false; }, { image: IMG_32 }),
  {
    id: "image-shortest-edge-non-square",
    area: "image",
    expect: "clean-error",
    run: async () => {
      const dir = withPreprocessor("fixres-f32", (c) => { c.size = { shortest_edge: 32 }; });
      return expectCleanError(await embedImage(dir, IMG_47x61), { code: 1, mentions: [IMG_47x61, "becomes 32×41", "shortest_edge: 32", "32×32"] });
    },
  },
  works("image-shortest-edge-square", (c) => { c.size = { shortest_edge: 32 }; }, { image: IMG_32 }),
  {
    // refused once for the checkpoint (exit 2, one line), not once per image
    id: "image-fixed-size-mismatch",
    area: "image",
    expect: "clean-error",
    run: async () => {
      const dir = withPreprocessor("fixres-f32", (c) => { c.size = { height: 64, width: 64 }; });
      return expectCleanError(await runCli(["embed", "--model", dir, "--image", IMG_47x61, IMG_32]), { mentions: [join(dir, PP), "size 64×64", "takes 32×32 images"] });
    },
  },
  refused("image-fixed-size-list-mismatch", (c) => { c.size = [32, 48]; }, ["size 32×48", "takes 32×32"]),
  refused("image-naflex-patch-size-mismatch", (c) => { c.patch_size = 8; }, ["patch_size 8 does not fit the model", "vision_config.patch_size 4"], { fixture: "naflex-f32" }),
  // a sparse config takes the class default patch_size 16, which does not fit a 4-pixel-patch model
  refused("image-naflex-patch-size-default", (c) => { delete c.patch_size; }, ["patch_size 16 does not fit the model"], { fixture: "naflex-grid" }),

  // --- non-finite pixels -------------------------------------------------------------------------
  refused("image-rescale-1e300", (c) => { c.rescale_factor = 1e300; }, ["rescale_factor 1e+300", "pixel value", "must be finite"]),
  refused("image-std-denormal", (c) => { c.image_std = [0.5, 1e-45, 0.5]; }, ["image_std[1] 1e-45", "channel 1"]),
  refused("image-mean-beyond-float32", (c) => { c.image_mean = 1e39; }, ["image_mean[0] 1e+39"]),
  refused("image-rescale-off-mean-huge", (c) => { c.do_rescale = false; c.image_mean = [3e38, 0, 0]; c.image_std = [1e-3, 1, 1]; }, ["image_mean[0] 3e+38"]),
  works("image-rescale-tiny", (c) => { c.rescale_factor = 1e-30; }),
  refused("image-std-zero", (c) => { c.image_std = [0.5, 0, 0.5]; }, ["image_std contains 0"]),
  refused("image-rescale-zero", (c) => { c.rescale_factor = 0; }, ["rescale_factor must be a non-zero number"]),

  // --- types and shapes ----------------------------------------------------------------------------
  refused("image-mean-two-values", (c) => { c.image_mean = [0.5, 0.5]; }, ["image_mean must be a number or a list of 3 numbers"]),
  refused("image-std-strings", (c) => { c.image_std = ["0.5", "0.5", "0.5"]; }, ["image_std must be a number or a list of 3 numbers"]),
  refused("image-mean-huge-list", (c) => { c.image_mean = Array.from({ length: 100_000 }, () => 0.5); }, ["image_mean must be"]),
  refused("image-size-negative", (c) => { c.size = { height: -32, width: 32 }; }, ["size.height must be a positive integer, got -32"]),
  refused("image-size-fractional", (c) => { c.size = { height: 32.5, width: 32 }; }, ["size.height must be a positive integer, got 32.5"]),
  refused("image-size-string", (c) => { c.size = "32"; }, ["size must be an object, a list or an integer"]),
  refused("image-size-unknown-keys", (c) => { c.size = { longest_edge: 32 }; }, ["unsupported size keys {longest_edge}"]),
  refused("image-resample-bicubic", (c) => { c.resample = 3; }, ["resample 3 (bicubic) is not supported"]),
  refused("image-do-resize-string", (c) => { c.do_resize = "yes"; }, ["do_resize must be true or false, got \"yes\""]),
  refused("image-nan-literal", "{\"size\": {\"height\": NaN, \"width\": 32}}", ["not valid JSON"]),
  refused("image-json-array", "[0.5, 0.5, 0.5]", ["expected a JSON object"]),
  refused("image-naflex-max-patches-zero", (c) => { c.max_num_patches = 0; }, ["max_num_patches must be a positive integer, got 0"], { fixture: "naflex-f32" }),
  refused("image-naflex-max-patches-huge", (c) => { c.max_num_patches = 1e9; }, ["max_num_patches 1000000000 is beyond the supported maximum"], { fixture: "naflex-f32" }),
  refused("image-naflex-patch-size-huge-string", (c) => { c.patch_size = "p".repeat(100_000); }, ["patch_size must be a positive integer"], { fixture: "naflex-f32" }),
  refused("image-naflex-rescale-1e300", (c) => { c.rescale_factor = 1e300; }, ["rescale_factor 1e+300"], { fixture: "naflex-f32" }),
  {
    // NaFlex without resizing: an image that is not a multiple of the patch size is an error naming it
    id: "image-naflex-no-resize-odd-image",
    area: "image",
    expect: "clean-error",
    run: async () => {
      const dir = withPreprocessor("naflex-f32", (c) => { c.do_resize = false; });
      return expectCleanError(await embedImage(dir, IMG_47x61), { code: 1, mentions: [IMG_47x61, "not a multiple of the patch size 4"] });
    },
  },
  {
    id: "image-preprocessor-directory",
    area: "image",
    expect: "clean-error",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, PP));
      mkdirSync(join(dir, PP));
      return expectThrows(() => apiRun(dir, "image"), [join(dir, PP), "a directory"]);
    },
  },
  {
    id: "image-preprocessor-fifo",
    area: "image",
    expect: "clean-error",
    timeoutMs: 10_000,
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, PP));
      execFileSync("mkfifo", [join(dir, PP)]);
      return expectCleanError(await embedImage(dir, IMG_47x61, { timeoutMs: 10_000 }), { mentions: [join(dir, PP), "a FIFO"] });
    },
  },
  {
    // no preprocessor config: the Hub defaults and the config's image_size apply
    id: "image-preprocessor-absent",
    area: "image",
    expect: "correct",
    run: async () => {
      const dir = copyFixture("fixres-f32");
      rmSync(join(dir, PP));
      return expectReturns(() => apiNorm(dir, IMG_PHOTO), (n) => (Math.abs(n - 1) < 1e-4 ? null : `norm ${n}`));
    },
  },
];

export { cases };
