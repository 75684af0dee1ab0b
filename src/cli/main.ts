#!/usr/bin/env node
/**
 * `siglip2` command line: embed, classify, tokenize.
 *
 * Output contract (scripts depend on it): JSON Lines on stdout only; errors and
 * progress on stderr. Bad inputs are reported one line each and skipped; the exit
 * code is then 1. A fatal problem (bad checkpoint, bad usage) exits with 2.
 */
import { Command, Option } from "commander";
import { SigLIP2, DEFAULT_TEMPLATE, type ImageFeatures, type ImageOptions, type LoadOptions } from "../api.js";
import { SiglipError, errorMessage } from "../errors.js";
import type { ModelOpts } from "./context.js";
import { Progress } from "./progress.js";
import { registerTrainCommand } from "./train-cmd.js";
import { registerIndexCommand } from "./index-cmd.js";
import { registerSearchCommand } from "./search-cmd.js";
import { registerServeCommand } from "./serve-cmd.js";
import { registerCacheCommand } from "./cache-cmd.js";

const PROG = "siglip2";
let debug = false;
let inputFailures = 0;
/** Every model a command loaded: closed at exit whatever happened (worker threads, sessions). */
const openModels: SigLIP2[] = [];

function out(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Report a problem with one input (the run continues). */
function reportInput(e: SiglipError): void {
  inputFailures++;
  process.stderr.write(`${PROG}: ${e.message}\n`);
  if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
}

/** The options every model command takes (see withModelOptions). */
type CommonOpts = ModelOpts;

function intArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new SiglipError("usage", `${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
}

function withModelOptions(cmd: Command): Command {
  return cmd
    .requiredOption("-m, --model <model>", "local checkpoint directory or Hugging Face Hub id (org/name)")
    .option("--no-lowercase", "do not lowercase texts (reproduces transformers' GemmaTokenizer exactly)")
    .option("--threads <n>", "onnxruntime intra-op threads (default: all cores)", intArg("--threads"))
    .addOption(new Option("--resampler <backend>", "resize arithmetic: torch (transformers default) or pil").choices(["torch", "pil"]))
    .option("--batch-size <n>", "inputs per forward pass", intArg("--batch-size"))
    .option("--revision <rev>", "Hub revision (branch, tag or commit)")
    .option("--offline", "never contact the Hub; use the local cache only")
    .option("--max-patches <n>", "NaFlex patch budget per image (default: the checkpoint's max_num_patches)", intArg("--max-patches"))
    .addOption(new Option("--dtype <dtype>", "weight precision: fp32 (exact parity) or int8 (faster, cosine ≈ 0.99+ to fp32)").choices(["fp32", "int8"]))
    .option("--workers <n>", "worker threads for image decoding and preprocessing (default 1)", (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new SiglipError("usage", `--workers must be a non-negative integer, got ${JSON.stringify(v)}`);
      return n;
    })
    .option("--torch-cpu-compat", "NaFlex: reproduce PyTorch-CPU's position-resize quirk for 1-column grids (exact transformers parity)");
}

async function loadModel(o: CommonOpts): Promise<SigLIP2> {
  const opts: LoadOptions = { lowercase: o.lowercase };
  if (o.threads !== undefined) opts.threads = o.threads;
  if (o.resampler !== undefined) opts.resampler = o.resampler;
  if (o.batchSize !== undefined) {
    opts.imageBatchSize = o.batchSize;
    opts.textBatchSize = o.batchSize;
  }
  if (o.offline) opts.offline = true;
  if (o.revision !== undefined) opts.revision = o.revision;
  if (o.maxPatches !== undefined) opts.maxPatches = o.maxPatches;
  if (o.torchCpuCompat) opts.torchCpuCompat = true;
  if (o.dtype !== undefined) opts.dtype = o.dtype;
  opts.workers = o.workers ?? 1;
  const model = await SigLIP2.load(o.model, opts);
  openModels.push(model);
  if (o.maxPatches !== undefined && !model.isNaflex) {
    process.stderr.write(`${PROG}: note: --max-patches applies to NaFlex checkpoints only; ignored for ${o.model}\n`);
  }
  return model;
}

/** Embed images in batches, printing each result as soon as its batch is done. */
async function embedImageFiles(
  model: SigLIP2,
  paths: string[],
  options: ImageOptions,
  emit: (path: string, features: ImageFeatures) => void,
): Promise<void> {
  const progress = new Progress(paths.length, "images");
  let printed = 0;
  await model.imageFeaturesSettled(paths, options, (done, results) => {
    for (; printed < done; printed++) {
      const r = results[printed]!;
      if (r instanceof SiglipError) reportInput(r);
      else emit(paths[printed]!, r);
    }
    progress.update(done);
  });
  progress.stop();
}

/** Patch features as JSON: one entry per valid patch with its grid position. */
function patchesJson(f: ImageFeatures): Array<{ row: number; col: number; features: number[] }> {
  const n = f.gridH * f.gridW;
  const d = f.patches!.length / n;
  return Array.from({ length: n }, (_, k) => ({ row: Math.floor(k / f.gridW), col: k % f.gridW, features: Array.from(f.patches!.subarray(k * d, (k + 1) * d)) }));
}

async function cmdEmbed(o: CommonOpts & { image?: string[]; text?: string[]; patches?: boolean }): Promise<void> {
  const images = o.image ?? [];
  const texts = o.text ?? [];
  if (images.length === 0 && texts.length === 0) throw new SiglipError("usage", "nothing to embed: give --image PATH ... and/or --text TEXT ...");
  const model = await loadModel(o);
  if (images.length > 0) {
    await embedImageFiles(model, images, { patches: Boolean(o.patches) }, (input, f) => {
      const line: Record<string, unknown> = { kind: "image", input, embedding: Array.from(f.embedding) };
      if (o.patches) Object.assign(line, { grid: [f.gridH, f.gridW], patches: patchesJson(f) });
      out(line);
    });
  }
  if (texts.length > 0) {
    const progress = new Progress(texts.length, "texts");
    const embs = await model.embedTexts(texts);
    progress.update(texts.length);
    progress.stop();
    texts.forEach((input, i) => out({ kind: "text", input, embedding: Array.from(embs[i]!) }));
  }
  await model.close();
}

async function cmdClassify(imagesArg: string[], o: CommonOpts & { labels: string[]; template?: string }): Promise<void> {
  const labels = o.labels.filter((l) => l.length > 0);
  if (labels.length === 0) throw new SiglipError("usage", "no labels given: pass --labels LABEL [LABEL ...]");
  if (imagesArg.length === 0) throw new SiglipError("usage", "no images given: pass image paths after the options (use -- after --labels)");
  const model = await loadModel(o);
  const cls: { template?: string } = {};
  if (o.template !== undefined) cls.template = o.template;
  const labelEmb = await model.labelEmbeddings(labels, cls);
  await embedImageFiles(model, imagesArg, {}, (input, f) => {
    const [scores] = model.scoreLabels([f.embedding], labels, labelEmb);
    out({ input, scores });
  });
  await model.close();
}

async function cmdTokenize(texts: string[], o: CommonOpts): Promise<void> {
  const model = await loadModel(o);
  const ids = await model.tokenize(texts);
  texts.forEach((input, i) => out({ input, ids: Array.from(ids[i]!) }));
  await model.close();
}

function buildProgram(): Command {
  const program = new Command();
  program
    .name(PROG)
    .description("SigLIP 2 image/text embeddings and zero-shot classification (ONNX Runtime, Hugging Face parity)")
    .option("--debug", "print stack traces")
    .showHelpAfterError()
    .hook("preAction", (cmd) => {
      debug = Boolean(cmd.opts()["debug"]);
    });

  withModelOptions(program.command("embed").description("print one JSON line per input: {kind, input, embedding} (L2-normalised)"))
    .option("--image <paths...>", "image files (repeatable)")
    .option("--text <texts...>", "texts (repeatable; the empty string is valid)")
    .option("--patches", "also print patch features: grid [rows, cols] and per patch {row, col, features} (last hidden state)")
    .action((opts) => cmdEmbed(opts));

  withModelOptions(program.command("classify").description("zero-shot classification: per image {input, scores:[{label, logit, probability}]}, sigmoid per label"))
    .requiredOption("--labels <labels...>", "candidate labels")
    .option("--template <template>", "prompt template, {} is the label", DEFAULT_TEMPLATE)
    .argument("[images...]", "image files (put -- before them when they follow --labels)")
    .action((images: string[], opts) => cmdClassify(images, opts));

  withModelOptions(program.command("tokenize").description("print {input, ids} per text: 64 ids, EOS then padding, no BOS"))
    .argument("<texts...>", "texts (the empty string is valid)")
    .action((texts: string[], opts) => cmdTokenize(texts, opts));

  const ctx = { withModelOptions, loadModel, reportInput };
  registerIndexCommand(program, ctx);
  registerSearchCommand(program, ctx);
  registerServeCommand(program, ctx);
  registerTrainCommand(program);
  registerCacheCommand(program);
  return program;
}

async function main(): Promise<void> {
  debug = process.argv.includes("--debug");
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (e) {
    if (e instanceof SiglipError) {
      process.stderr.write(`${PROG}: ${e.message}\n`);
    } else {
      process.stderr.write(`${PROG}: internal error: ${errorMessage(e)}${debug ? "" : " (run with --debug for details)"}\n`);
    }
    if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    process.exitCode = 2;
    return;
  } finally {
    for (const m of openModels.splice(0)) await m.close().catch(() => undefined);
  }
  if (inputFailures > 0) {
    process.stderr.write(`${PROG}: ${inputFailures} input${inputFailures > 1 ? "s" : ""} failed\n`);
    process.exitCode = 1;
  }
}

void main();
