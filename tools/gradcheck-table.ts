/**
 * Prints the gradient-check table: every autodiff rule against central finite differences,
 * and the whole tiny SigLIP's loss and parameter gradients against PyTorch autograd
 * (tests/fixtures/goldens/train-grads.safetensors, float64), full and chunked loss; then the
 * same with the LocCa decoder (tests/fixtures/goldens/locca-grads.safetensors), the NaFlex
 * tower (tests/fixtures/goldens/naflex-train-grads.safetensors: in-graph position resize, masks),
 * self-distillation + masked prediction (tests/fixtures/goldens/distill-grads.safetensors), and
 * LocCa on the NaFlex tower (tests/fixtures/goldens/naflex-locca-grads.safetensors).
 *
 *   npx tsx tools/gradcheck-table.ts
 */
import { join } from "node:path";
import { gradCheck, opCases } from "../src/train/gradcheck.js";
import { TrainSession, loadParams } from "../src/train/session.js";
import { Checkpoint } from "../src/weights/checkpoint.js";
import { SafetensorsFile } from "../src/weights/safetensors.js";
import { loccaGolden, loccaStep, maxErr } from "../tests/harness/locca-golden.js";
import { naflexCheckpoint, naflexGold, naflexGoldenBatch, naflexLoccaGolden, naflexLoccaStep } from "../tests/harness/naflex-golden.js";
import { FIXTURES } from "../tests/harness/paths.js";
import { distillGolden, distillManifest, goldenCentreUpdate } from "../tests/harness/distill-golden.js";
import { TeacherSession, emaUpdate, teacherProbs } from "../src/train/distill.js";
import { cropResize } from "../src/train/views.js";

const e = (x: number) => x.toExponential(1);

/** Worst error per tensor group (`keyOf(name)`) of `grads` against `refOf(name)`, in first-seen order. */
function groupErrors(grads: Iterable<[string, ArrayLike<number>]>, refOf: (name: string) => ArrayLike<number>, keyOf: (name: string) => string): Map<string, { n: number; abs: number; rel: number }> {
  const groups = new Map<string, { n: number; abs: number; rel: number }>();
  for (const [name, g] of grads) {
    const m = maxErr(g, refOf(name));
    const key = keyOf(name);
    const gr = groups.get(key) ?? { n: 0, abs: 0, rel: 0 };
    gr.n++;
    gr.abs = Math.max(gr.abs, m.abs);
    gr.rel = Math.max(gr.rel, m.abs / Math.max(1, m.scale));
    groups.set(key, gr);
  }
  return groups;
}
process.stdout.write("| op | dtype | ε | elements | max-abs vs FD | max \\|grad\\| | tolerance |\n|---|---|---|---|---|---|---|\n");
for (const c of opCases()) {
  const r = await gradCheck(c.label, c.dtype, c.inputs, c.build);
  process.stdout.write(`| ${c.label} | ${c.dtype} | ${c.dtype === "float64" ? "1e-6" : "1e-2"} | ${r.checked} | ${e(r.maxAbs)} | ${e(r.scale)} | ${e(r.tol)} |\n`);
}
const gold = SafetensorsFile.open(join(FIXTURES, "goldens", "train-grads.safetensors"));
const ckpt = new Checkpoint(join(FIXTURES, "models", "fixres-f32"));
const px = gold.readFloat32("inputs.pixel_values");
const ids = BigInt64Array.from(gold.readFloat32("inputs.input_ids"), (v) => BigInt(v));
process.stdout.write("\nwhole model (fixres-f32, n = 4) vs PyTorch float64 autograd; tolerance 1e-5·max(1, ‖ref‖∞)\n\n| loss | tensor group | tensors | worst max-abs | worst max-abs / max(1, ‖ref‖∞) |\n|---|---|---|---|---|\n");
for (const chunk of [undefined, 3]) {
  const s = await TrainSession.create(ckpt.config, chunk === undefined ? { batch: 4, threads: 1 } : { batch: 4, lossChunk: chunk, threads: 1 });
  const r = await s.step(loadParams(ckpt.weights, s.params), { pixelValues: px, inputIds: ids, n: 4 });
  const label = chunk === undefined ? "full (autodiff)" : `chunked (blocks of ${chunk})`;
  process.stdout.write(`| ${label} | loss | 1 | ${e(Math.abs(r.loss - gold.readFloat32("loss")[0]!))} | – |\n`);
  const groups = groupErrors(r.grads, (name) => gold.readFloat32(`grad.${name}`), (name) =>
    name.replace(/\.layers\.\d+\./, ".layers.*.").replace(/^(vision_model|text_model)\.(embeddings|encoder|head|post_layernorm|final_layer_norm).*$/, "$1.$2"));
  for (const [k, gr] of groups) process.stdout.write(`| ${label} | ${k} | ${gr.n} | ${e(gr.abs)} | ${e(gr.rel)} |\n`);
  await s.release();
}

// LocCa decoder (tests/fixtures/goldens/locca-grads.safetensors, tools/reference/locca_goldens.py):
// sigmoid + LocCa loss, the 88 tower and 32 decoder gradients, full logits and vocabulary chunks.
const lg = loccaGolden();
process.stdout.write("\nLocCa: sigmoid + LocCa (fixres-f32, 4 images, 8 decoder sequences of 12) vs PyTorch float64 autograd; tolerance 1e-5·max(1, ‖ref‖∞)\n\n| LocCa loss | tensor group | tensors | worst max-abs | worst max-abs / max(1, ‖ref‖∞) |\n|---|---|---|---|---|\n");
for (const chunk of [undefined, 128]) {
  const r = await loccaStep(lg, chunk === undefined ? { outputLogits: true } : { vocabChunk: chunk });
  const label = chunk === undefined ? "full (autodiff)" : `chunked (vocab ${chunk})`;
  process.stdout.write(`| ${label} | loss | 1 | ${e(Math.abs(r.loss - lg.gold.readFloat32("loss")[0]!))} | – |\n`);
  process.stdout.write(`| ${label} | LocCa part | 1 | ${e(Math.abs(r.loccaLoss! - lg.gold.readFloat32("locca_loss")[0]!))} | – |\n`);
  if (r.decoderLogits) {
    const m = maxErr(r.decoderLogits, lg.gold.readFloat32("decoder_logits"));
    process.stdout.write(`| ${label} | decoder logits | 1 | ${e(m.abs)} | ${e(m.abs / Math.max(1, m.scale))} |\n`);
  }
  const groups = groupErrors(r.grads, (name) => lg.gold.readFloat32(`grad.${name}`), (name) =>
    name.startsWith("decoder.")
      ? name.replace(/^decoder\.layers\.\d+\.(self_attn|cross_attn|mlp|layer_norm\d).*$/, "decoder.layers.*.$1").replace(/^decoder\.(embed_tokens|position_embedding|final_layer_norm|lm_head)\..*$/, "decoder.$1")
      : name.startsWith("vision_model.") || name.startsWith("text_model.") ? name.split(".")[0]! : "logit_scale, logit_bias");
  for (const [k, gr] of groups) process.stdout.write(`| ${label} | ${k} | ${gr.n} | ${e(gr.abs)} | ${e(gr.rel)} |\n`);
}

// Self-distillation + masked prediction (tests/fixtures/goldens/distill-grads.safetensors,
// tools/reference/distill_goldens.py): sigmoid + 0.25·(L_SD + 0.25·L_MP), the teacher's head
// outputs, and every gradient incl. both heads and the mask token.
{
  const dg = distillGolden();
  const K = distillManifest.head.out;
  process.stdout.write(`\nSelf-distillation + masked prediction (fixres-f32, ${distillManifest.images} images, ${distillManifest.local_views} local views of ${distillManifest.local_size} px, heads ${distillManifest.head.hidden}/${distillManifest.head.bottleneck}/${K}) vs PyTorch float64 autograd; tolerance 1e-5·max(1, ‖ref‖∞)\n\n| tensor group | tensors | worst max-abs | worst max-abs / max(1, ‖ref‖∞) |\n|---|---|---|---|\n`);
  const t = await TeacherSession.create(dg.v, distillManifest.head, { threads: 1 });
  const to = await t.run(dg.teacher, dg.batch.distill!.global, distillManifest.images);
  await t.release();
  for (const [k, got] of [["teacher_sd", to.sd], ["teacher_mp", to.mp]] as const) {
    const m = maxErr(got, dg.gold.readFloat32(k));
    process.stdout.write(`| teacher head outputs (${k}) | 1 | ${e(m.abs)} | ${e(m.abs / Math.max(1, m.scale))} |\n`);
  }
  for (const [which, label] of [["sd", "image"], ["mp", "patch"]] as const) {
    const m = maxErr(teacherProbs(dg.gold.readFloat32(`teacher_${which}`), K, dg.gold.readFloat32(`center.${which}`), distillManifest.teacher_temp), dg.gold.readFloat32(`${which}_teacher_probs`));
    process.stdout.write(`| centred, sharpened teacher probabilities (${label}) | 1 | ${e(m.abs)} | ${e(m.abs)} |\n`);
  }
  // centre EMA from the step's teacher outputs: c ← μc + (1−μ)·mean of the rows
  for (const which of ["sd", "mp"] as const) {
    const m = maxErr(goldenCentreUpdate(dg.gold, which), dg.gold.readFloat32(`center_after.${which}`));
    process.stdout.write(`| centre update (${which}, momentum ${distillManifest.center_momentum}) | 1 | ${e(m.abs)} | ${e(m.abs / Math.max(1, m.scale))} |\n`);
  }
  // EMA teacher update θ_t ← μθ_t + (1−μ)θ_s over the image tower and both heads
  {
    const t = new Map([...dg.teacher].map(([n, v]) => [n, v.slice()]));
    emaUpdate(t, dg.params, distillManifest.ema_momentum);
    const groups = groupErrors(t, (name) => dg.gold.readFloat32(`ema.${name}`), () => "all");
    const gr = groups.get("all")!;
    process.stdout.write(`| EMA teacher update (momentum ${distillManifest.ema_momentum}) | ${gr.n} | ${e(gr.abs)} | ${e(gr.rel)} |\n`);
  }
  // the view resampler: crop + antialiased bilinear resize + flip against torch interpolate
  {
    const m = maxErr(cropResize(dg.gold.readFloat32("crop.src"), 3, 32, 32, { top: 3, left: 5, height: 13, width: 20, flip: true }, 16), dg.gold.readFloat32("crop.out"));
    process.stdout.write(`| view crop + resize + flip (13×20 → 16×16) | 1 | ${e(m.abs)} | ${e(m.abs / Math.max(1, m.scale))} |\n`);
  }
  const s = await TrainSession.create(dg.ckpt.config, { batch: distillManifest.images, threads: 1, distill: dg.opts });
  const r = await s.step(dg.params, dg.batch);
  await s.release();
  for (const [k, got] of [["loss", r.loss], ["sigmoid_loss", r.sigmoidLoss!], ["sd_loss", r.sdLoss!], ["mp_loss", r.mpLoss!]] as const) {
    process.stdout.write(`| ${k} | 1 | ${e(Math.abs(got - dg.gold.readFloat32(k)[0]!))} | – |\n`);
  }
  const groups = groupErrors(r.grads, (name) => dg.gold.readFloat32(`grad.${name}`), (name) =>
    name.startsWith("distill.") ? name.replace(/^(distill\.(sd_head|mp_head|mask_token)).*$/, "$1") : name.startsWith("vision_model.") || name.startsWith("text_model.") ? name.split(".")[0]! : "logit_scale, logit_bias");
  for (const [k, gr] of groups) process.stdout.write(`| grad ${k} | ${gr.n} | ${e(gr.abs)} | ${e(gr.rel)} |\n`);
}
// NaFlex (tests/fixtures/goldens/naflex-train-grads.safetensors, tools/reference/naflex_train_goldens.py):
// Siglip2Model, 4 grids padded to 20 rows, random padding contents; the position table's gradient
// goes through the in-graph antialiased resize, the key mask acts in every layer and the MAP head.
const ng = naflexGold();
const nck = naflexCheckpoint();
process.stdout.write("\nNaFlex: naflex-f32 (grids 4×5, 2×8, 5×3, 1×18 padded to 20) vs PyTorch float64 autograd; tolerance 1e-5·max(1, ‖ref‖∞)\n\n| loss | tensor group | tensors | worst max-abs | worst max-abs / max(1, ‖ref‖∞) |\n|---|---|---|---|---|\n");
for (const chunk of [undefined, 3]) {
  const b = naflexGoldenBatch(ng);
  const s = await TrainSession.create(nck.config, { batch: 4, patches: b.naflex!.length, threads: 1, ...(chunk === undefined ? {} : { lossChunk: chunk }) });
  const r = await s.step(loadParams(nck.weights, s.params), b);
  const label = chunk === undefined ? "full (autodiff)" : `chunked (blocks of ${chunk})`;
  process.stdout.write(`| ${label} | loss | 1 | ${e(Math.abs(r.loss - ng.readFloat32("loss")[0]!))} | – |\n`);
  const groups = groupErrors(r.grads, (name) => ng.readFloat32(`grad.${name}`), (name) =>
    name.replace(/\.layers\.\d+\./, ".layers.*.").replace(/^vision_model\.embeddings\.(position_embedding|patch_embedding)\..*$/, "vision_model.embeddings.$1")
      .replace(/^(vision_model|text_model)\.(encoder|head|post_layernorm|final_layer_norm).*$/, "$1.$2").replace(/^text_model\.embeddings.*$/, "text_model.embeddings"));
  for (const [k, gr] of groups) process.stdout.write(`| ${label} | ${k} | ${gr.n} | ${e(gr.abs)} | ${e(gr.rel)} |\n`);
  await s.release();
}

// NaFlex + LocCa (tests/fixtures/goldens/naflex-locca-grads.safetensors, tools/reference/naflex_locca_goldens.py):
// the decoder's cross-attention key-masked by the tower's padding, and each image's own memory position code.
{
  const lg = naflexLoccaGolden();
  process.stdout.write("\nNaFlex + LocCa: naflex-f32 (the 4 grids above, padded to 20) + 8 decoder sequences of 12 vs PyTorch float64 autograd; tolerance 1e-5·max(1, ‖ref‖∞)\n\n| memory position, LocCa loss | tensor group | tensors | worst max-abs | worst max-abs / max(1, ‖ref‖∞) |\n|---|---|---|---|---|\n");
  for (const [prefix, memoryPosition] of [["", "none"], ["pos.", "sincos2d"]] as const) {
    for (const vocabChunk of [undefined, 128]) {
      const r = await naflexLoccaStep(lg, { memoryPosition, ...(vocabChunk === undefined ? {} : { vocabChunk }) });
      const label = `${memoryPosition}, ${vocabChunk === undefined ? "full (autodiff)" : `chunked (vocab ${vocabChunk})`}`;
      for (const [k, got] of [["loss", r.loss], ["locca_loss", r.loccaLoss!]] as const) {
        process.stdout.write(`| ${label} | ${k} | 1 | ${e(Math.abs(got - lg.gold.readFloat32(`${prefix}${k}`)[0]!))} | – |\n`);
      }
      const groups = groupErrors(r.grads, (name) => lg.gold.readFloat32(`${prefix}grad.${name}`), (name) =>
        name.startsWith("decoder.") ? name.replace(/\.layers\.\d+\./, ".layers.*.").replace(/^(decoder\.(?:layers\.\*\.)?[a-z_0-9]+)\..*$/, "$1") : name.startsWith("vision_model.embeddings.position_embedding") ? "vision_model.embeddings.position_embedding" : name.split(".")[0]!);
      for (const [k, gr] of groups) process.stdout.write(`| ${label} | ${k} | ${gr.n} | ${e(gr.abs)} | ${e(gr.rel)} |\n`);
    }
  }
}
