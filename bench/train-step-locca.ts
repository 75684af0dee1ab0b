/**
 * One training step of sigmoid + LocCa at B/16 width — forward, backward and the AdamW update —
 * ours (onnxruntime, our autodiff, the vocabulary-chunked LocCa cross-entropy, AdamW in JS) against
 * the same step in PyTorch (bench/train_step_locca.py: transformers' SiglipModel + the decoder of
 * tools/reference/locca_goldens.py, full-vocabulary cross-entropy, torch.optim.AdamW), in one run.
 *
 *   npm run bench:train-step [-- --batch 8 --steps 3 --threads 2]
 *   npx tsx bench/train-step-locca.ts [--batch 8] [--steps 3] [--threads 2] [--tiny]
 *
 * Model (both sides, one config.json): vision ViT-B/16 at 224 px (width 768, 12 layers, 12 heads,
 * MLP 3072, 196 patches); text tower the same width and depth, 64 tokens, vocabulary 256 000; the
 * LocCa decoder half the text depth (6 layers), the same width, cross-attention to the 196 un-pooled
 * patch tokens, 3·batch rows of 64 tokens (captions, referring expressions, grounded captions),
 * half the captions parallel. Each side runs in its own child process (so its peak RSS is its own):
 * initialise, build, one warm-up step, then `--steps` timed steps; the median is reported.
 * `--tiny` runs a small model (width 64, 2 layers, 64 px, the same vocabulary) to check the harness quickly.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { childJson, decoderRowFlops, encoderFlops, referencePython, visionFlops } from "./common.js";

const { values: args } = parseArgs({
  options: {
    batch: { type: "string", default: "8" },
    steps: { type: "string", default: "3" },
    threads: { type: "string", default: String(Math.min(2, cpus().length)) },
    tiny: { type: "boolean", default: false },
    child: { type: "string" }, // internal: the config.json our side reads
  },
});
const B = Number(args.batch);
const STEPS = Number(args.steps);
const THREADS = Number(args.threads);
const log = (m: string) => process.stderr.write(`${m}\n`);

/** The benchmark model's config.json (model_type siglip, both towers, text settings shared with the decoder). */
function benchConfig(tiny: boolean): Record<string, unknown> {
  const [D, M, L, H] = tiny ? [64, 256, 2, 4] : [768, 3072, 12, 12];
  return {
    architectures: ["SiglipModel"],
    model_type: "siglip",
    text_config: { hidden_size: D, intermediate_size: M, num_attention_heads: H, num_hidden_layers: L, vocab_size: 256000, max_position_embeddings: 64, model_type: "siglip_text_model" },
    vision_config: { hidden_size: D, intermediate_size: M, num_attention_heads: H, num_hidden_layers: L, image_size: tiny ? 64 : 224, patch_size: 16, model_type: "siglip_vision_model" },
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Our side: a Trainer step on B generated scenes (captions and boxes), as `siglip2 train --objectives sigmoid,locca` runs it. */
async function ourSide(configPath: string): Promise<unknown> {
  const { parseConfig } = await import("../src/weights/config.js");
  const { paramSpecs } = await import("../src/train/model.js");
  const { initParams } = await import("../src/train/init.js");
  const { Trainer } = await import("../src/train/trainer.js");
  const { DEFAULT_OPTIMIZER } = await import("../src/train/optim.js");
  const { InMemoryPairs } = await import("../src/train/data.js");
  const { GemmaTokenizer } = await import("../src/tokenizer/gemma.js");
  const { generateScenes, renderScene } = await import("../src/train/scenes/index.js");
  const { parseImageProcessorConfig, preprocessFixed } = await import("../src/preprocess/index.js");
  const { scenePreprocessorConfig } = await import("../src/train/scenes/vocab.js");
  const configJson = JSON.parse(readFileSync(configPath, "utf8"));
  const config = parseConfig(configJson);
  const R = config.vision_config.image_size;
  const T = config.text_config.max_position_embeddings;
  const V = config.text_config.vocab_size;
  let t = performance.now();
  const params = initParams(paramSpecs(config, { objectives: ["sigmoid", "locca"] }), 0);
  const initS = (performance.now() - t) / 1000;
  // Data: B scenes at R px with their captions and boxes, the Gemma tokenizer.
  const tok = GemmaTokenizer.fromJSON(JSON.parse(readFileSync(join("node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json"), "utf8")));
  const scenes = generateScenes({ seed: 1, count: B, size: R, langs: ["en"] });
  const cfg = parseImageProcessorConfig(scenePreprocessorConfig(R), R);
  const pixels = [];
  for (const s of scenes) pixels.push(preprocessFixed(await renderScene(s.spec), cfg));
  const data = new InMemoryPairs(pixels, scenes.map((s) => s.caption), tok, T, { locca: { vocab: V, regions: scenes.map((s) => s.regions), size: R } });
  t = performance.now();
  const trainer = await Trainer.create(config, params, {
    batchSize: B, accumSteps: 1, steps: STEPS + 1, seed: 0, freeze: "none", threads: THREADS, objectives: ["sigmoid", "locca"],
    optimizer: { ...DEFAULT_OPTIMIZER, totalSteps: STEPS + 1, warmupSteps: 0 },
  });
  const buildS = (performance.now() - t) / 1000;
  const times: number[] = [];
  for (let i = 0; i <= STEPS; i++) {
    t = performance.now();
    const s = await trainer.trainStep(data);
    times.push((performance.now() - t) / 1000);
    log(`train-step (ours): step ${i} ${times[i]!.toFixed(2)} s, loss ${s.loss.toFixed(3)} (sigmoid ${s.sigmoidLoss!.toFixed(3)}, locca ${s.loccaLoss!.toFixed(3)})`);
  }
  await trainer.release();
  return { init_s: initS, build_s: buildS, warmup_s: times[0], step_s: times.slice(1), peak_rss_mb: process.resourceUsage().maxRSS / 1024, params: [...params.values()].reduce((a, p) => a + p.length, 0) };
}

async function main(): Promise<void> {
  const python = referencePython("train-step");
  const work = mkdtempSync(join(tmpdir(), "siglip2-train-step-"));
  const configJson = benchConfig(args.tiny!);
  const configPath = join(work, "config.json");
  writeFileSync(configPath, JSON.stringify(configJson, null, 2));
  const common = ["--batch", String(B), "--steps", String(STEPS), "--threads", String(THREADS)];
  const gemm = () => Math.max(childJson(process.execPath, ["--import", "tsx", "bench/ours.ts", "gemm", "--threads", String(THREADS)], THREADS).gflops, childJson(python, ["bench/reference_bench.py", "gemm", "--threads", String(THREADS)], THREADS).gflops);
  // Memory: parameters, gradients (ours: onnxruntime's outputs and their JS copies) and two AdamW
  // moments, 4 bytes each, before activations. A side that cannot fit is not started (no OOM killer
  // on a shared machine): the message says what is missing.
  const { parseConfig } = await import("../src/weights/config.js");
  const { paramSpecs } = await import("../src/train/model.js");
  const nParams = paramSpecs(parseConfig(configJson), { objectives: ["sigmoid", "locca"] }).reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  const needMb = (nParams * 4 * 5) / 2 ** 20;
  const availableMb = () => Number(readFileSync("/proc/meminfo", "utf8").match(/^MemAvailable:\s+(\d+)/m)?.[1] ?? 0) / 1024;
  const checkMemory = (side: string) => {
    const avail = availableMb();
    log(`train-step: ${side}: ${avail.toFixed(0)} MB available, about ${needMb.toFixed(0)} MB needed before activations (${(nParams / 1e6).toFixed(0)} M parameters)`);
    if (avail < needMb) throw new Error(`train-step: not enough memory for the ${side} side (${avail.toFixed(0)} MB available, ${needMb.toFixed(0)} MB needed); stop other jobs or use --tiny`);
    return avail;
  };
  try {
    let peak = gemm();
    log(`train-step: fp32 GEMM peak ${peak.toFixed(0)} GFLOP/s; our side (batch ${B}, ${STEPS} steps after a warm-up)`);
    const availOurs = checkMemory("ours");
    const ours = childJson(process.execPath, ["--import", "tsx", "bench/train-step-locca.ts", "--child", configPath, ...common], THREADS);
    log("train-step: PyTorch side");
    const availRef = checkMemory("PyTorch");
    const ref = childJson(python, ["bench/train_step_locca.py", "--config", configPath, ...common], THREADS);
    peak = Math.max(peak, gemm()); // machines drift: the better of the two measurements
    report(configJson, ours, ref, peak, [availOurs, availRef]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function report(configJson: Record<string, unknown>, ours: any, ref: any, peak: number, available: number[]): void {
  const tc = configJson.text_config as Record<string, number>;
  const vc = configJson.vision_config as Record<string, number>;
  const D = vc.hidden_size!, M = vc.intermediate_size!, L = vc.num_hidden_layers!, P = (vc.image_size! / vc.patch_size!) ** 2;
  const T = tc.max_position_embeddings!, V = tc.vocab_size!;
  const S = 3 * B;
  const forward = B * visionFlops(P, D, M, L, vc.patch_size!) + B * (encoderFlops(T, D, M, L) + 2 * D * D)
    + S * decoderRowFlops({ L: T, D, M, layers: Math.max(1, Math.floor(L / 2)), P, Dv: D, V });
  const flops = 3 * forward; // forward + backward (twice the forward's multiply-adds)
  const o = median(ours.step_s), r = median(ref.step_s);
  const cpu = cpus()[0]?.model ?? "cpu";
  const flags = readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1] ?? "";
  const avx512 = [...new Set(flags.trim().split(/\s+/).filter((f) => f.startsWith("avx512")))];
  const f2 = (x: number) => x.toFixed(2);
  console.log(`\n## One training step, sigmoid + LocCa, ${args.tiny ? "tiny model (harness check)" : "B/16 width"}: batch ${B} (${S} decoder rows × ${T} tokens), ${THREADS} threads\n`);
  console.log(`Machine: ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; AVX-512: ${avx512.length ? avx512.join(" ") : "no"}. fp32 GEMM peak ${peak.toFixed(0)} GFLOP/s measured in this run (1568×768·768×3072, the better of onnxruntime and torch ${ref.torch}).`);
  console.log(`Parameters: ${(ours.params / 1e6).toFixed(0)} M (towers + decoder; the two 256k-row token tables and lm_head are ${((3 * V * D) / 1e6).toFixed(0)} M). FLOPs per step (analytic, forward + backward = 3× forward): ${(flops / 1e12).toFixed(2)} TFLOP.`);
  console.log(`Command: \`npx tsx bench/train-step-locca.ts --batch ${B} --steps ${STEPS} --threads ${THREADS}${args.tiny ? " --tiny" : ""}\` (median of ${STEPS} steps after one warm-up step).\n`);
  console.log("| | ours (onnxruntime) | PyTorch | ours / PyTorch |");
  console.log("|---|---|---|---|");
  console.log(`| s / step (median) | ${f2(o)} | ${f2(r)} | **${f2(o / r)}×** |`);
  console.log(`| steps (s) | ${ours.step_s.map(f2).join(", ")} | ${ref.step_s.map(f2).join(", ")} | |`);
  console.log(`| warm-up step (s) | ${f2(ours.warmup_s)} | ${f2(ref.warmup_s)} | |`);
  console.log(`| % of the GEMM peak | ${((100 * flops) / o / 1e9 / peak).toFixed(1)} % | ${((100 * flops) / r / 1e9 / peak).toFixed(1)} % | |`);
  console.log(`| peak RSS (MB) | ${ours.peak_rss_mb.toFixed(0)} | ${ref.peak_rss_mb.toFixed(0)} | ${f2(ours.peak_rss_mb / ref.peak_rss_mb)} |`);
  console.log(`| memory available at the side's start (MB) | ${available[0]!.toFixed(0)} | ${available[1]!.toFixed(0)} | |`);
  console.log(`| initialise parameters (s) | ${f2(ours.init_s)} | ${f2(ref.init_s)} | |`);
  console.log(`| build (ours: graph + session; PyTorch: optimiser) (s) | ${f2(ours.build_s)} | ${f2(ref.build_s)} | |`);
}

if (args.child !== undefined) process.stdout.write(`${JSON.stringify(await ourSide(args.child))}\n`);
else await main();
