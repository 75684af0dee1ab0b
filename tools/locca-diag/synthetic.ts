// Decoder-only sanity experiment (h11-boxes, hypothesis 1): can the LocCa decoder read box POSITIONS
// from its memory at all? The decoder, its rows and its loss are built by the trainer's own code
// (src/models/locca.ts loccaDecoder + gatherPerSequence + selfAttentionMask, src/train/locca-loss.ts,
// src/train/autodiff backward, src/train/scenes/locca.ts + locca-batch.ts rows, AdamW of optim.ts with the
// trainer's schedule), but the image tower is replaced by a SYNTHETIC memory (N, P, Dv): P = g×g tokens,
// token (r, c) = a fixed 2-D sine–cosine position vector, plus a large "object" vector on the tokens of
// the cells inside a random box. Target: the ARef text "ARef: {text} : {box}". Evaluated with the
// inference decoder (src/models/locca-infer.ts LoccaDecoderModel, greedy `decode` of src/tasks/caption.ts)
// on held-out memories: Acc@0.5, mIoU, and teacher-forced accuracy of each coordinate's first digit.
//
//   node --import tsx tools/locca-diag/synthetic.ts --threads 1 --steps 300 [--objs 2] [--amp 3] [--ln] [--format canonical|padded]
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { backward } from "../../src/graph/autodiff.js";
import { Graph } from "../../src/graph/graph.js";
import { ort } from "../../src/graph/runtime.js";
import { sessionOptions } from "../../src/graph/session-options.js";
import { decoderConfig, gatherPerSequence, loccaDecoder, selfAttentionMask } from "../../src/models/locca.js";
import { DECODER_FILE, DECODER_FORMAT, DECODER_VERSION, LoccaDecoderModel } from "../../src/models/locca-infer.js";
import { InputParams } from "../../src/models/params.js";
import { BINS, dequantizeBox, parseArefOutput, quantizeBox, type BoxFormat, type PixelBox, boxToText } from "../../src/tasks/boxes.js";
import { decode, logSoftmax, referPrompt } from "../../src/tasks/caption.js";
import { safetensorsBytes } from "../../src/train/checkpoint.js";
import { decoderTokenizer } from "../../src/train/data.js";
import { tinyConfigJson } from "../../src/train/experiment.js";
import { initDecoderParams } from "../../src/train/init.js";
import { buildDecoderBatch } from "../../src/train/locca-batch.js";
import { loccaLoss } from "../../src/train/locca-loss.js";
import { LOCCA_INPUTS } from "../../src/train/model.js";
import { AdamW, DEFAULT_OPTIMIZER } from "../../src/train/optim.js";
import { Rng, mixSeed } from "../../src/train/rng.js";
import { locCaTargets } from "../../src/train/scenes/locca.js";
import type { Params } from "../../src/train/session.js";
import { GemmaTokenizer } from "../../src/tokenizer/gemma.js";
import { Checkpoint } from "../../src/weights/checkpoint.js";
import { SigLIP2 } from "../../src/api.js";
import { generateScenes, renderScenes } from "../../src/train/scenes/index.js";
import { parseConfig } from "../../src/weights/config.js";

const { values: a } = parseArgs({ options: {
  steps: { type: "string", default: "300" }, lr: { type: "string", default: "1e-3" }, batch: { type: "string", default: "32" },
  threads: { type: "string", default: "1" }, seed: { type: "string", default: "7" }, evaln: { type: "string", default: "200" },
  objs: { type: "string", default: "1" }, amp: { type: "string", default: "3" }, width: { type: "string", default: "128" },
  layers: { type: "string", default: "4" }, grid: { type: "string", default: "8" }, ln: { type: "boolean", default: false },
  name: { type: "string", default: "synthetic" }, format: { type: "string", default: "canonical" },
  tower: { type: "string" }, train: { type: "string", default: "4000" },
  // decoder kernel init: "bv" (src/train/init.ts, N(0, 0.02²)) or "lecun" (N(0, 1/fan_in), as the towers), optionally only
  // for the tensors matching --init-only (a regex, e.g. "cross_attn\\.(q|k)_proj")
  init: { type: "string", default: "bv" },
  // --tower only, bridging tests: add the clean sincos cell code (× this) / the clean object vector (× --amp) on the
  // cells whose centre lies in the region's box, to the real tokens
  "add-pos": { type: "string", default: "0" }, "add-obj": { type: "boolean", default: false }, "init-only": { type: "string", default: "" },
} });
const FORMAT = a.format as BoxFormat;
const STEPS = Number(a.steps), LR = Number(a.lr), B = Number(a.batch), THREADS = Number(a.threads), SEED = Number(a.seed);
const N = Number(a.evaln), OBJS = Number(a.objs), AMP = Number(a.amp), WIDTH = Number(a.width), G = Number(a.grid);
const log = (m: string) => process.stderr.write(`${m}\n`);
const t0 = performance.now();

// ---- the model: the demo's tokenizer and the from-scratch run's sizes (decoder = text layers / 2)
const tok = await GemmaTokenizer.fromFile("models/siglip2-demo/tokenizer.json");
const PATCH = 8, IMAGE = G * PATCH, SEQ = 32;
const configJson = tinyConfigJson({ width: WIDTH, layers: Number(a.layers), heads: 4, mlp: 4 * WIDTH, vocab: tok.vocabSize, seqLen: SEQ, image: IMAGE, patch: PATCH });
const config = parseConfig(configJson);
const dc = decoderConfig(config.text_config, config.vision_config);
const P = G * G, Dv = dc.memoryDim, L = dc.positions;

// ---- synthetic memories
const OBJECTS = [
  { text: "a red circle", seed: 101 },
  { text: "a blue square", seed: 202 },
  { text: "a green star", seed: 303 },
];
const objectVec = OBJECTS.map((o) => { const r = new Rng(o.seed); return Float32Array.from({ length: Dv }, () => r.normal()); });
const posVec = new Float32Array(P * Dv); // the from-scratch --posemb sincos table
{
  const q = Dv / 4;
  for (let y = 0; y < G; y++) for (let x = 0; x < G; x++) for (let k = 0; k < q; k++) {
    const om = 1 / 10000 ** (k / (q - 1)); const r = (y * G + x) * Dv;
    posVec[r + k] = Math.sin(x * om); posVec[r + q + k] = Math.cos(x * om); posVec[r + 2 * q + k] = Math.sin(y * om); posVec[r + 3 * q + k] = Math.cos(y * om);
  }
}
interface Example { memory: Float32Array; regions: Array<{ box: PixelBox; text: string }>; caption: string }
// --tower DIR: the memory is that checkpoint's real post-LN patch tokens of generated scenes (≤ --objs objects),
// computed once (train: --train scenes of seed 7000; held-out: seed 9_000_002 as from-scratch.ts's held-1obj)
async function towerSet(dir: string, seed: number, count: number): Promise<Example[]> {
  const m = await SigLIP2.load(dir, { threads: THREADS });
  const sc = generateScenes({ seed, count, size: IMAGE, maxObjects: OBJS });
  const out: Example[] = [];
  for (let s = 0; s < count; s += 256) {
    const part = sc.slice(s, s + 256);
    const f = await m.imageFeatures(await renderScenes(part), { patches: true });
    f.forEach((ff, i) => {
      const memory = ff.patches!.slice();
      const addPos = Number(a["add-pos"]);
      if (addPos) for (let k = 0; k < memory.length; k++) memory[k]! += addPos * posVec[k]!;
      if (a["add-obj"]) for (const r of part[i]!.regions.slice(0, 1)) {
        for (let y = 0; y < G; y++) for (let x = 0; x < G; x++) {
          const cy = (y + 0.5) * PATCH, cx = (x + 0.5) * PATCH;
          if (cx >= r.box[0] && cx < r.box[2] && cy >= r.box[1] && cy < r.box[3]) for (let k = 0; k < Dv; k++) memory[(y * G + x) * Dv + k]! += AMP * objectVec[0]![k]!;
        }
      }
      out.push({ memory, regions: part[i]!.regions.map((r) => ({ box: r.box, text: r.text })), caption: part[i]!.caption });
    });
  }
  await m.close();
  return out;
}
const towerTrain = a.tower ? await towerSet(a.tower, 7000, Number(a.train)) : null;
const towerHeld = a.tower ? await towerSet(a.tower, 9_000_002, N) : null;
let heldNext = 0;
function example(rng: Rng): Example {
  if (towerTrain) return rng === evalRng ? towerHeld![heldNext++]! : towerTrain[rng.int(towerTrain.length)]!;
  const memory = posVec.slice();
  const regions: Example["regions"] = [];
  const n = 1 + rng.int(OBJS);
  for (let o = 0; o < n; o++) {
    const r0 = rng.int(G), r1 = r0 + rng.int(G - r0), c0 = rng.int(G), c1 = c0 + rng.int(G - c0); // whole cells
    for (let y = r0; y <= r1; y++) for (let x = c0; x <= c1; x++) for (let k = 0; k < Dv; k++) memory[(y * G + x) * Dv + k]! += AMP * objectVec[o]![k]!;
    regions.push({ box: [c0 * PATCH, r0 * PATCH, (c1 + 1) * PATCH, (r1 + 1) * PATCH], text: OBJECTS[o]!.text });
  }
  if (a.ln) for (let p = 0; p < P; p++) { // like the tower's post-LN (no affine)
    let m = 0, v = 0;
    for (let k = 0; k < Dv; k++) m += memory[p * Dv + k]!;
    m /= Dv;
    for (let k = 0; k < Dv; k++) v += (memory[p * Dv + k]! - m) ** 2;
    const s = 1 / Math.sqrt(v / Dv + 1e-6);
    for (let k = 0; k < Dv; k++) memory[p * Dv + k] = (memory[p * Dv + k]! - m) * s;
  }
  return { memory, regions, caption: regions.map((r) => r.text).join(" and ") };
}

// ---- the training graph: the decoder part of src/train/model.ts buildTrainGraph, memory as an input
const g = new Graph("synthetic.decoder");
const p = InputParams.root(g);
const S = 3 * B;
const decoder = loccaDecoder(p, dc, S, L);
const memory = g.input("memory", "float32", [B, P, Dv]);
const targets = g.input(LOCCA_INPUTS.targets, "int64", [S, L]);
const weights = g.input(LOCCA_INPUTS.weights, "float32", [S, L]);
const causal = g.input(LOCCA_INPUTS.causal, "int64", [S]);
const image = g.input(LOCCA_INPUTS.image, "int64", [S]);
const hidden = decoder.hidden(gatherPerSequence(g, memory, image), selfAttentionMask(g, causal, L));
const loss = loccaLoss(g, decoder.head(hidden), targets, weights, { vocab: dc.vocab });
const specs = [...p.specs];
const names = specs.map((s) => s.name);
const grads = backward(g, [{ value: loss.loss }], names);
const emit = (v: string, name: string, shape: number[]) => { g.node("Identity", [v], { outputs: [name] }); g.output(name, "float32", shape); };
emit(loss.loss, "loss", []);
emit(loss.perSequence, "per_seq", [S]);
for (const s of specs) emit(grads[s.name]!, `grad.${s.name}`, s.shape);
const session = await ort.InferenceSession.create(g.toModelBytes(), sessionOptions({ threads: THREADS }));
const params: Params = initDecoderParams(specs, SEED);
if (a.init === "lecun") {
  const only = a["init-only"] ? new RegExp(a["init-only"]) : null;
  for (const s of specs) {
    if (!s.decay || s.name.startsWith("decoder.lm_head.") || (only && !only.test(s.name))) continue; // kernels only; lm_head stays zero
    const f = 1 / Math.sqrt(s.shape[s.shape.length - 1]!) / 0.02;
    const v = params.get(s.name)!;
    for (let i = 0; i < v.length; i++) v[i] = v[i]! * f;
  }
}
const opt = new AdamW({ ...DEFAULT_OPTIMIZER, lr: LR, totalSteps: STEPS, warmupSteps: Math.round(STEPS * 0.05) }, specs, names);
const dt = decoderTokenizer(tok, dc.vocab);

// ---- train
const dataRng = new Rng(mixSeed(SEED, 0x5e7));
const evalRng = new Rng(9_000_003);
let acc = 0, arefAcc = 0, cnt = 0;
for (let step = 0; step < STEPS; step++) {
  const ex = Array.from({ length: B }, () => example(dataRng));
  const rng = new Rng(mixSeed(mixSeed(SEED, 0x1cca), step)); // as the trainer: one RNG per step for rows
  const rows = ex.map((e) => locCaTargets({ text: e.caption, regions: e.regions }, IMAGE, IMAGE, rng, 1, FORMAT));
  const db = buildDecoderBatch(rows, { length: L, sequences: S, specials: dt.specials, tokenize: dt.tokenize, rng });
  const mem = new Float32Array(B * P * Dv);
  ex.forEach((e, i) => mem.set(e.memory, i * P * Dv));
  const feeds: Record<string, ort.Tensor> = {
    memory: new ort.Tensor("float32", mem, [B, P, Dv]),
    [LOCCA_INPUTS.ids]: new ort.Tensor("int64", db.inputIds, [S, L]),
    [LOCCA_INPUTS.targets]: new ort.Tensor("int64", db.targets, [S, L]),
    [LOCCA_INPUTS.weights]: new ort.Tensor("float32", db.weights, [S, L]),
    [LOCCA_INPUTS.causal]: new ort.Tensor("int64", db.causal, [S]),
    [LOCCA_INPUTS.image]: new ort.Tensor("int64", db.image, [S]),
  };
  for (const s of specs) feeds[s.name] = new ort.Tensor("float32", params.get(s.name)!, s.shape);
  const out = await session.run(feeds);
  const gr: Params = new Map(names.map((n) => [n, out[`grad.${n}`]!.data as Float32Array]));
  opt.update(params, gr);
  const ps = out["per_seq"]!.data as Float32Array;
  acc += Number(out["loss"]!.data[0]); cnt++;
  for (let i = 0; i < B; i++) arefAcc += ps[B + 2 * i]! / B; // rows: B captions, then (aref, gcap) per example
  if ((step + 1) % 50 === 0) { log(`${a.name} step ${step + 1} locca ${(acc / cnt).toFixed(3)} aref ${(arefAcc / cnt).toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`); acc = 0; arefAcc = 0; cnt = 0; }
}
await session.release();

// ---- save the decoder as the trainer does (decoder.safetensors beside config.json) and evaluate with the inference decoder
const dir = `/tmp/locca-exp/${a.name}`;
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "config.json"), JSON.stringify(configJson));
writeFileSync(join(dir, DECODER_FILE), safetensorsBytes(specs.map((s) => ({ name: s.name, shape: s.shape, data: params.get(s.name)! })), { format: DECODER_FORMAT, version: DECODER_VERSION, layers: String(dc.layers), box_bins: String(BINS), ...(FORMAT !== "canonical" ? { box_format: FORMAT } : {}) }));
const model = await LoccaDecoderModel.load(new Checkpoint(dir), { threads: THREADS });
const held = Array.from({ length: N }, () => example(evalRng));
const iou = (p: readonly number[], t: readonly number[]) => {
  const w = Math.max(0, Math.min(p[2]!, t[2]!) - Math.max(p[0]!, t[0]!)), h = Math.max(0, Math.min(p[3]!, t[3]!) - Math.max(p[1]!, t[1]!));
  const u = (p[2]! - p[0]!) * (p[3]! - p[1]!) + (t[2]! - t[0]!) * (t[3]! - t[1]!) - w * h;
  return u > 0 ? (w * h) / u : 0;
};
let hits = 0, sumIou = 0, unparsed = 0;
const d0 = [0, 0, 0, 0];
const spec = { bos: 2, eos: tok.eosId, vocab: dc.vocab, length: L };
for (let s = 0; s < N; s += 16) {
  const chunk = held.slice(s, s + 16);
  const mem = chunk.map((e) => ({ patches: e.memory, gridH: G, gridW: G }));
  const next = (rows: Array<{ ids: ArrayLike<number>; image: number }>) => model.logits(rows, mem, rows.map((r) => [r.ids.length - 1]));
  const prompts = chunk.map((e, i) => ({ prompt: tok.tokenize(referPrompt(e.regions[0]!.text), { lowercase: false }), image: i }));
  const res = await decode(next, prompts, spec);
  for (let i = 0; i < chunk.length; i++) {
    const r = chunk[i]!.regions[0]!;
    const parsed = parseArefOutput(tok.decode(res[i]!.tokens), model.boxFormat);
    if (!parsed.ok) { if (unparsed++ < 3) log(`unparsed: ${JSON.stringify(tok.decode(res[i]!.tokens))} (${parsed.reason})`); continue; }
    const v = iou(dequantizeBox(parsed.box, IMAGE, IMAGE), r.box);
    sumIou += v; hits += v >= 0.5 ? 1 : 0;
  }
  // teacher-forced: the first digit of each coordinate
  const rows = chunk.map((e, i) => {
    const r = e.regions[0]!;
    const boxText = boxToText(quantizeBox(r.box, IMAGE, IMAGE), model.boxFormat);
    const pre = [2, ...tok.tokenize(referPrompt(r.text), { lowercase: false })];
    const ids = [...pre, ...tok.tokenize(` ${boxText}`, { lowercase: false })];
    const firsts: number[] = []; // index in ids of each coordinate's first digit token
    for (let k = pre.length; k < ids.length; k++) if (tok.decode([ids[k - 1]!]) === " " && /^[0-9]$/.test(tok.decode([ids[k]!]))) firsts.push(k);
    return { ids, image: i, firsts };
  });
  const lg = await model.logits(rows.map((r) => ({ ids: r.ids, image: r.image })), mem, rows.map((r) => r.firsts.map((k) => k - 1)));
  rows.forEach((r, i) => r.firsts.forEach((k, c) => {
    const lp = logSoftmax(lg, (i * 4 + c) * dc.vocab, dc.vocab);
    let best = 0; for (let v = 1; v < dc.vocab; v++) if (lp[v]! > lp[best]!) best = v;
    d0[c]! += best === r.ids[k] ? 1 / N : 0;
  }));
}
await model.release();
log(`RESULT ${a.name} memory ${a.tower ?? "synthetic"} init ${a.init}${a["init-only"] ? `(${a["init-only"]})` : ""} add-pos ${a["add-pos"]} add-obj ${a["add-obj"]} format ${model.boxFormat} objs ${OBJS} amp ${AMP} ln ${a.ln} lr ${LR} steps ${STEPS} batch ${B} seed ${SEED}: held-out Acc@0.5 ${(hits / N).toFixed(3)} mIoU ${(sumIou / N).toFixed(3)} unparsed ${unparsed} | TF first-digit acc ymin ${d0[0]!.toFixed(2)} xmin ${d0[1]!.toFixed(2)} ymax ${d0[2]!.toFixed(2)} xmax ${d0[3]!.toFixed(2)} | ${((performance.now() - t0) / 1000).toFixed(0)} s`);
