/**
 * `siglip2 train --model M --data DATA --out DIR`: fine-tune (or train from scratch) a
 * fixed-resolution SigLIP checkpoint on image–caption pairs with the sigmoid loss.
 *
 * stdout: one JSON line per logged step {step, loss, lr, grad_norm, pairs_per_s, logit_scale,
 * logit_bias}, then {done, out, step}. stderr: a progress bar on a terminal. DIR receives a
 * Hub-layout checkpoint (config.json, model.safetensors, tokenizer and preprocessor files) that
 * transformers and this package load, plus optimizer.safetensors and trainer_state.json for
 * `--resume`. Ctrl-C saves the current step before exiting.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import cliProgress from "cli-progress";
import { Command, Option } from "commander";
import { SiglipError } from "../errors.js";
import { resolveModel } from "../hub/download.js";
import { parseImageProcessorConfig } from "../preprocess/index.js";
import { GemmaTokenizer } from "../tokenizer/gemma.js";
import { Checkpoint } from "../weights/checkpoint.js";
import { FilePairs, readManifest } from "../train/data.js";
import { initParams } from "../train/init.js";
import { paramSpecs } from "../train/model.js";
import { DEFAULT_OPTIMIZER, type DecayConvention } from "../train/optim.js";
import { loadParams } from "../train/session.js";
import { Trainer, type Freeze } from "../train/trainer.js";

interface TrainOpts {
  model: string;
  data: string;
  out: string;
  steps: number;
  batchSize: number;
  accumSteps: number;
  lr: number;
  warmup?: number;
  weightDecay: number;
  decayConvention: DecayConvention;
  beta1: number;
  beta2: number;
  eps: number;
  clip: number;
  freeze: Freeze;
  lossChunk?: number;
  seed: number;
  saveEvery: number;
  logEvery: number;
  resume?: boolean;
  stopAt?: number;
  fromScratch?: boolean;
  threads?: number;
  lowercase: boolean;
  offline?: boolean;
}

const posInt = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new SiglipError("usage", `${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
};
const nonNegInt = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new SiglipError("usage", `${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
};
const num = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new SiglipError("usage", `${name} must be a non-negative number, got ${JSON.stringify(v)}`);
  return n;
};

async function cmdTrain(o: TrainOpts): Promise<void> {
  const dir = await resolveModel(o.model, o.offline ? { offline: true } : {});
  const ckpt = new Checkpoint(dir);
  const config = ckpt.config;
  if (config.model_type !== "siglip") throw new SiglipError("usage", `${dir}: training supports fixed-resolution (model_type "siglip") checkpoints; this one is ${config.model_type}`);
  const specs = paramSpecs(config);
  if (existsSync(join(o.out, "trainer_state.json")) && !o.resume) {
    throw new SiglipError("usage", `${o.out} already holds a training run: pass --resume to continue it, or choose another --out`);
  }
  const params = o.fromScratch ? initParams(specs, o.seed) : loadParams(ckpt.weights, specs);
  const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
  const processor = parseImageProcessorConfig(ckpt.preprocessorConfig, config.vision_config.image_size);
  const records = readManifest(o.data);
  const data = new FilePairs(records, processor, tok, config.text_config.max_position_embeddings, o.lowercase);
  const warmup = o.warmup ?? Math.round(0.05 * o.steps);
  const tc: Parameters<typeof Trainer.create>[2] = {
    batchSize: o.batchSize, accumSteps: o.accumSteps, steps: o.steps, seed: o.seed, freeze: o.freeze,
    optimizer: {
      ...DEFAULT_OPTIMIZER, lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay,
      decayConvention: o.decayConvention, clipNorm: o.clip, warmupSteps: warmup, totalSteps: o.steps,
    },
  };
  if (o.lossChunk !== undefined) tc.lossChunk = o.lossChunk;
  if (o.threads !== undefined) tc.threads = o.threads;
  const trainer = await Trainer.create(config, params, tc);
  if (o.resume && existsSync(join(o.out, "trainer_state.json"))) trainer.resume(o.out);
  const configJson = readFileSync(join(dir, "config.json"), "utf8"); // copied verbatim
  const save = (): void => trainer.save(o.out, configJson, dir);

  let stop = false;
  const onSigint = (): void => {
    stop = true;
  };
  process.once("SIGINT", onSigint);
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar({ stream: process.stderr, format: "{bar} {value}/{total} steps | loss {loss} | lr {lr} | {rate} pairs/s | ETA {eta_formatted}", hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  bar?.start(o.steps, trainer.step, { loss: "-", lr: "-", rate: "-" });
  try {
    while (trainer.step < Math.min(o.steps, o.stopAt ?? Infinity) && !stop) {
      const s = await trainer.trainStep(data);
      const done = trainer.step;
      bar?.update(done, { loss: s.loss.toFixed(4), lr: s.lr.toExponential(2), rate: s.pairsPerSecond.toFixed(1) });
      if (done % o.logEvery === 0 || done === o.steps) {
        process.stdout.write(`${JSON.stringify({ step: done, loss: s.loss, lr: s.lr, grad_norm: s.gradNorm, pairs_per_s: s.pairsPerSecond, logit_scale: s.logitScale, logit_bias: s.logitBias })}\n`);
      }
      if (o.saveEvery > 0 && done % o.saveEvery === 0 && done < o.steps) save();
    }
  } finally {
    bar?.stop();
    process.removeListener("SIGINT", onSigint);
  }
  save();
  await trainer.release();
  ckpt.close();
  process.stdout.write(`${JSON.stringify({ done: trainer.step >= o.steps, out: o.out, step: trainer.step })}\n`);
  if (stop) {
    process.stderr.write(`siglip2: interrupted at step ${trainer.step}; saved to ${o.out} (continue with --resume)\n`);
    process.exitCode = 130;
  }
}

/** Add the `train` command to the program. */
export function registerTrainCommand(program: Command): void {
  program.command("train")
    .description("fine-tune a fixed-resolution checkpoint on image-caption pairs with the sigmoid loss; writes a Hub-layout checkpoint")
    .requiredOption("-m, --model <model>", "checkpoint to start from: local directory or Hub id (its config, tokenizer and preprocessor are used)")
    .requiredOption("--data <path>", "a .jsonl/.csv manifest, or a folder holding metadata.jsonl / captions.jsonl / metadata.csv / captions.csv (fields: image|file_name, caption|text; paths relative to the manifest)")
    .requiredOption("--out <dir>", "output directory (checkpoint + optimiser state)")
    .option("--steps <n>", "optimiser steps", posInt("--steps"), 100)
    .option("--batch-size <n>", "pairs per optimiser step", posInt("--batch-size"), 32)
    .option("--accum-steps <n>", "micro-batches per step (gradient accumulation; each micro-batch has its own sigmoid loss)", posInt("--accum-steps"), 1)
    .option("--lr <x>", "peak learning rate", num("--lr"), 1e-4)
    .option("--warmup <n>", "linear warm-up steps, then cosine decay to 0 (default: 5% of --steps)", nonNegInt("--warmup"))
    .option("--weight-decay <x>", "decoupled weight decay on kernels", num("--weight-decay"), DEFAULT_OPTIMIZER.weightDecay)
    .addOption(new Option("--decay-convention <c>", "big_vision: θ -= sched·wd·θ (not scaled by lr); torch: θ -= sched·lr·wd·θ").choices(["big_vision", "torch"]).default("big_vision"))
    .option("--beta1 <x>", "Adam β1", num("--beta1"), DEFAULT_OPTIMIZER.beta1)
    .option("--beta2 <x>", "Adam β2 (SigLIP: 0.95)", num("--beta2"), DEFAULT_OPTIMIZER.beta2)
    .option("--eps <x>", "Adam ε", num("--eps"), DEFAULT_OPTIMIZER.eps)
    .option("--clip <x>", "global gradient-norm clip (0: off)", num("--clip"), DEFAULT_OPTIMIZER.clipNorm)
    .addOption(new Option("--freeze <tower>", "freeze a tower: vision (LiT), text, or none").choices(["none", "vision", "text"]).default("none"))
    .option("--loss-chunk <n>", "compute the sigmoid loss in n×n blocks (same loss and gradients, bounded memory)", posInt("--loss-chunk"))
    .option("--seed <n>", "seed of the data order (and of the init with --from-scratch)", nonNegInt("--seed"), 0)
    .option("--save-every <n>", "also save every n steps (0: only at the end)", nonNegInt("--save-every"), 100)
    .option("--log-every <n>", "print a JSON line every n steps", posInt("--log-every"), 1)
    .option("--resume", "continue the run saved in --out (same settings give the same result as an uninterrupted run)")
    .option("--stop-at <n>", "stop after step n and save (continue later with --resume)", posInt("--stop-at"))
    .option("--from-scratch", "re-initialise the weights instead of loading them (t' = log 10, b = -10)")
    .option("--threads <n>", "onnxruntime intra-op threads", posInt("--threads"))
    .option("--no-lowercase", "do not lowercase captions")
    .option("--offline", "never contact the Hub")
    .action((opts: TrainOpts) => cmdTrain(opts));
}
