/**
 * The self-distillation golden (tools/reference/distill_goldens.py, PyTorch float64 autograd) as
 * our sessions see it: the tiny fixres-f32 towers, the heads and mask token, the teacher's
 * values, and the batch (3 images, 2 local views of 16 px each). Shared by tests/distill.test.ts
 * and tools/gradcheck-table.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isDistillParam, updateCenter } from "../../src/train/distill.js";
import { paramSpecs } from "../../src/train/model.js";
import { loadParams, type Batch, type Params } from "../../src/train/session.js";
import { Checkpoint } from "../../src/weights/checkpoint.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import { FIXTURES } from "./paths.js";

const GOLD = join(FIXTURES, "goldens");

/** distill-grads.json: the golden's settings. */
export const distillManifest = JSON.parse(readFileSync(join(GOLD, "distill-grads.json"), "utf8")) as {
  images: number; local_views: number; local_size: number; head: { hidden: number; bottleneck: number; out: number };
  student_temp: number; teacher_temp: number; size_factor: number; ema_momentum: number; center_momentum: number;
};
const manifest = distillManifest;
const big = (a: Float32Array): BigInt64Array => BigInt64Array.from(a, (v) => BigInt(v));

/** The golden file, the checkpoint, the graph options, the student's and teacher's values, the batch. */
export function distillGolden() {
  const gold = SafetensorsFile.open(join(GOLD, "distill-grads.safetensors"));
  const ckpt = new Checkpoint(join(FIXTURES, "models", "fixres-f32"));
  const v = ckpt.config.vision_config;
  const opts = { localViews: manifest.local_views, localSize: manifest.local_size, head: manifest.head, studentTemp: manifest.student_temp, sizeFactor: manifest.size_factor };
  const specs = paramSpecs(ckpt.config, { distill: opts });
  const params: Params = loadParams(ckpt.weights, specs.filter((s) => !isDistillParam(s.name)));
  for (const s of specs) if (isDistillParam(s.name)) params.set(s.name, gold.readFloat32(s.name).slice());
  const teacher: Params = new Map();
  for (const n of gold.names()) if (n.startsWith("teacher.")) teacher.set(n.slice("teacher.".length), gold.readFloat32(n).slice());
  const n = manifest.images;
  const batch: Batch = {
    pixelValues: gold.readFloat32("inputs.pixel_values"), inputIds: big(gold.readFloat32("inputs.input_ids")), n,
    distill: {
      local: gold.readFloat32("inputs.sd_local_pixels"), global: gold.readFloat32("inputs.mp_global_pixels"), mask: gold.readFloat32("inputs.mp_mask"),
      sdTarget: gold.readFloat32("sd_teacher_probs"), mpTarget: gold.readFloat32("mp_teacher_probs"),
    },
  };
  return { gold, ckpt, v, opts, specs, params, teacher, batch };
}

/**
 * The centre after one update from the golden's teacher outputs (`which`: "sd" image rows, "mp"
 * patch rows): c ← μc + (1−μ)·mean of the rows, by src/train/distill.ts `updateCenter`.
 */
export function goldenCentreUpdate(gold: SafetensorsFile, which: "sd" | "mp"): Float32Array {
  const K = manifest.head.out;
  const rows = which === "sd" ? manifest.images : manifest.images * 16;
  const c = gold.readFloat32(`center.${which}`).slice();
  const sum = new Float64Array(K);
  const logits = gold.readFloat32(`teacher_${which}`);
  for (let i = 0; i < logits.length; i++) sum[i % K] = sum[i % K]! + logits[i]!;
  updateCenter(c, sum, rows, manifest.center_momentum);
  return c;
}
