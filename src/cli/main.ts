#!/usr/bin/env node
/**
 * `siglip2` command line: embed, classify, tokenize.
 *
 * Output contract (scripts depend on it): JSON Lines on stdout only; errors and
 * progress on stderr. Bad inputs are reported one line each and skipped; the exit
 * code is then 1. A fatal problem (bad checkpoint, bad usage) exits with 2. A queue whose
 * Redis stayed unreachable for --redis-timeout (SiglipError code "queue-lost": `worker`,
 * `index --queue`) exits with 3: nothing was wrong with the input, rerun once Redis is back.
 * An interrupted run exits with 130.
 */
import { Command, Option } from "commander";
// The library (onnxruntime, sharp) is loaded when a command needs a model, so that --help, usage
// errors and the re-launching parent of a long command line start at once.
import type { ImageFeatures, ImageOptions, LoadOptions, SigLIP2 } from "../api.js";
import { SiglipError, errorMessage } from "../errors.js";
import { MAX_BATCH_SIZE, maxThreads, maxWorkers } from "../load-options.js";
import { CPU_BOUND, applyUsagePolicy, collect, intOption, isCleanExit, readInputList, type ListEntry } from "./args.js";
import type { ModelOpts } from "./context.js";
import { Progress, downloadProgress } from "./progress.js";
import { adoptParentArgv, relaunchIfLong } from "./relaunch.js";
import { guardStdout } from "./stdout.js";
import { registerTrainCommand } from "./train-cmd.js";
import { registerIndexCommand } from "./index-cmd.js";
import { registerWorkerCommand } from "./worker-cmd.js";
import { registerSearchCommand } from "./search-cmd.js";
import { registerDedupeCommand } from "./dedupe-cmd.js";
import { registerServeCommand } from "./serve-cmd.js";
import { registerCacheCommand } from "./cache-cmd.js";
import { registerEvalCommand } from "./eval-cmd.js";
import { registerExportCommand } from "./export-cmd.js";
import { registerCaptionCommands } from "./caption-cmd.js";

const PROG = "siglip2";
/** Exit status when the queue's Redis was lost (code "queue-lost"); 2 is bad usage or input. */
const EXIT_QUEUE_LOST = 3;
let debug = false;
let inputFailures = 0;
/** Every model a command loaded: closed at exit whatever happened (worker threads, sessions). */
const openModels: SigLIP2[] = [];

function out(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Set by the first SIGINT/SIGTERM of embed, classify and tokenize: they stop after the current batch. */
let interrupted: NodeJS.Signals | null = null;

/** Stop after the current batch on SIGINT/SIGTERM (a second signal quits at once). Returns the uninstaller. */
function stopOnSignals(): () => void {
  const handler = (sig: NodeJS.Signals): void => {
    if (interrupted) process.exit(130);
    interrupted = sig;
    process.stderr.write(`${PROG}: ${sig}: stopping after the current batch (again to quit at once)\n`);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return () => {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
  };
}

/** After an interrupted run: say how far it got and exit 130. */
function reportInterrupted(done: number, total: number, unit: string): void {
  process.stderr.write(`${PROG}: interrupted: ${done} of ${total} ${unit} done\n`);
  process.exitCode = 130;
}

/** Report a problem with one input (the run continues). */
function reportInput(e: SiglipError): void {
  inputFailures++;
  process.stderr.write(`${PROG}: ${e.message}\n`);
  if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
}

/** The options every model command takes (see withModelOptions). */
type CommonOpts = ModelOpts;

/** api.ts's DEFAULT_TEMPLATE, for --help without loading the library (hostile case text-help-shows-the-library-default-template checks they agree). */
const HELP_DEFAULT_TEMPLATE = "This is a photo of {}.";

function withModelOptions(cmd: Command): Command {
  return cmd
    .requiredOption("-m, --model <model>", "local checkpoint directory or Hugging Face Hub id (org/name)")
    .option("--no-lowercase", "do not lowercase texts (reproduces transformers' GemmaTokenizer exactly)")
    .option("--threads <n>", `onnxruntime intra-op threads (default: all cores; at most ${CPU_BOUND})`, intOption("--threads", { min: 1, max: maxThreads, maxWhy: CPU_BOUND }))
    .addOption(new Option("--resampler <backend>", "resize arithmetic: torch (transformers default) or pil").choices(["torch", "pil"]))
    .option("--batch-size <n>", `inputs per forward pass (at most ${MAX_BATCH_SIZE}, and what fits in half of the memory)`, intOption("--batch-size", { min: 1, max: MAX_BATCH_SIZE, maxWhy: "the largest batch size accepted" }))
    .option("--revision <rev>", "Hub revision (branch, tag or commit)")
    .option("--offline", "never contact the Hub; use the local cache only")
    .option("--max-patches <n>", "NaFlex patch budget per image (default: the checkpoint's max_num_patches; at most 64 × its learned positions, and what memory allows)", intOption("--max-patches", { min: 1 }))
    .addOption(new Option("--dtype <dtype>", "weight precision: fp32 (exact parity) or int8 (faster, cosine ≈ 0.99+ to fp32)").choices(["fp32", "int8"]))
    .option("--workers <n>", `worker threads for image decoding and preprocessing (default 1; 0: the main thread; at most ${CPU_BOUND})`, intOption("--workers", { min: 0, max: maxWorkers, maxWhy: CPU_BOUND }))
    .option("--torch-cpu-compat", "NaFlex: reproduce PyTorch-CPU's position-resize quirk for 1-column grids (exact transformers parity)");
}

/** The CLI flag of each LoadOptions key, for the library's option errors. */
const FLAG_OF: Record<string, string> = {
  threads: "--threads", workers: "--workers", imageBatchSize: "--batch-size", textBatchSize: "--batch-size", maxPatches: "--max-patches",
};

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
  opts.onProgress = downloadProgress(); // bars for Hub downloads (the library draws none)
  let model: SigLIP2;
  try {
    const { SigLIP2 } = await import("../api.js");
    model = await SigLIP2.load(o.model, opts);
  } catch (e) {
    // the library names its options (maxPatches 20000 ...); say the flag instead
    const flag = e instanceof SiglipError && e.code === "options" && e.subject !== undefined ? FLAG_OF[e.subject] : undefined;
    if (flag) throw new SiglipError("usage", e instanceof Error ? e.message.replace((e as SiglipError).subject!, flag) : String(e));
    throw e;
  }
  openModels.push(model);
  if (o.maxPatches !== undefined && !model.isNaflex) {
    process.stderr.write(`${PROG}: note: --max-patches applies to NaFlex checkpoints only; ignored for ${o.model}\n`);
  }
  return model;
}

/** Inputs per chunk: the CLI checks for Ctrl-C between chunks and keeps one chunk's results in memory. */
const CHUNK_BATCHES = 8;
const DEFAULT_IMAGE_BATCH = 8;
const DEFAULT_TEXT_BATCH = 32;

/** Inputs from argv (values) followed by the entries of input lists (`-` is stdin). */
function gatherInputs(values: string[] | undefined, lists: string[] | undefined, kind: "image" | "text", flag: string): ListEntry[] {
  const entries: ListEntry[] = (values ?? []).map((value) => ({ value }));
  for (const l of lists ?? []) entries.push(...readInputList(l, kind, flag));
  return entries;
}

/** Refuse to read stdin twice (`--image-list - --text-list -`). */
function checkStdinOnce(...lists: Array<string[] | undefined>): void {
  const n = lists.flatMap((l) => l ?? []).filter((l) => l === "-").length;
  if (n > 1) throw new SiglipError("usage", "stdin can be read only once: give - to one of --image-list / --text-list, and a file to the other");
}

/**
 * Run `work` over `entries` in chunks, in order: entries that are already errors (a bad line of
 * a list) are reported in their place; `work` gets the values of one chunk and calls `deliver`
 * as results become final. Stops between chunks after Ctrl-C. Returns how many entries were done.
 */
async function inChunks<R>(
  entries: ListEntry[],
  chunk: number,
  work: (values: string[], deliver: (done: number, results: ReadonlyArray<R | SiglipError>) => void) => Promise<void>,
  emit: (value: string, result: R) => void,
  onProgress: (done: number) => void,
): Promise<number> {
  let done = 0;
  for (let s = 0; s < entries.length && !interrupted; s += chunk) {
    const part = entries.slice(s, s + chunk);
    const values = part.flatMap((e) => (e.value !== undefined ? [e.value] : []));
    let printed = 0;
    let valueIndex = 0;
    const deliver = (finalCount: number, results: ReadonlyArray<R | SiglipError>): void => {
      while (printed < part.length) {
        const e = part[printed]!;
        if (e.error) {
          reportInput(e.error);
        } else {
          if (valueIndex >= finalCount) break;
          const r = results[valueIndex++]!;
          if (r instanceof SiglipError) reportInput(r);
          else emit(e.value!, r);
        }
        printed++;
      }
      onProgress(s + printed);
    };
    if (values.length > 0) await work(values, deliver);
    deliver(values.length, []);
    done = s + part.length;
  }
  return done;
}

/** Embed images in chunks, printing each result as soon as its batch is done. */
async function embedImageFiles(
  model: SigLIP2,
  entries: ListEntry[],
  batch: number,
  options: ImageOptions,
  emit: (path: string, features: ImageFeatures) => void,
): Promise<number> {
  const progress = new Progress(entries.length, "images");
  const done = await inChunks<ImageFeatures>(
    entries,
    batch * CHUNK_BATCHES,
    async (paths, deliver) => {
      await model.imageFeaturesSettled(paths, options, (n, results) => deliver(n, results));
    },
    emit,
    (n) => progress.update(n),
  );
  progress.stop();
  return done;
}

/** Embed texts in chunks, printing each chunk as soon as it is done. */
async function embedTextList(model: SigLIP2, entries: ListEntry[], batch: number, emit: (text: string, embedding: Float32Array) => void): Promise<number> {
  const progress = new Progress(entries.length, "texts");
  const done = await inChunks<Float32Array>(
    entries,
    batch * CHUNK_BATCHES,
    async (texts, deliver) => deliver(texts.length, await model.embedTexts(texts)),
    emit,
    (n) => progress.update(n),
  );
  progress.stop();
  return done;
}

/** Patch features as JSON: one entry per valid patch with its grid position. */
function patchesJson(f: ImageFeatures): Array<{ row: number; col: number; features: number[] }> {
  const n = f.gridH * f.gridW;
  const d = f.patches!.length / n;
  return Array.from({ length: n }, (_, k) => ({ row: Math.floor(k / f.gridW), col: k % f.gridW, features: Array.from(f.patches!.subarray(k * d, (k + 1) * d)) }));
}

interface EmbedOpts extends CommonOpts {
  image?: string[];
  text?: string[];
  imageList?: string[];
  textList?: string[];
  patches?: boolean;
}

async function cmdEmbed(o: EmbedOpts): Promise<void> {
  checkStdinOnce(o.imageList, o.textList);
  const images = gatherInputs(o.image, o.imageList, "image", "--image-list");
  const texts = gatherInputs(o.text, o.textList, "text", "--text-list");
  if (images.length === 0 && texts.length === 0) {
    throw new SiglipError("usage", o.imageList || o.textList ? "nothing to embed: the input lists are empty" : "nothing to embed: give --image PATH ... and/or --text TEXT ... (or --image-list / --text-list FILE|-)");
  }
  const release = stopOnSignals();
  try {
    const model = await loadModel(o);
    let done = 0;
    if (images.length > 0) {
      done += await embedImageFiles(model, images, o.batchSize ?? DEFAULT_IMAGE_BATCH, { patches: Boolean(o.patches) }, (input, f) => {
        const line: Record<string, unknown> = { kind: "image", input, embedding: Array.from(f.embedding) };
        if (o.patches) Object.assign(line, { grid: [f.gridH, f.gridW], patches: patchesJson(f) });
        out(line);
      });
    }
    if (texts.length > 0 && !interrupted) {
      done += await embedTextList(model, texts, o.batchSize ?? DEFAULT_TEXT_BATCH, (input, e) => out({ kind: "text", input, embedding: Array.from(e) }));
    }
    if (interrupted) reportInterrupted(done, images.length + texts.length, "inputs");
    await model.close();
  } finally {
    release();
  }
}

async function cmdClassify(imagesArg: string[], o: CommonOpts & { labels: string[]; template?: string; imageList?: string[] }): Promise<void> {
  const labels = o.labels;
  if (labels.every((l) => l.length === 0)) throw new SiglipError("usage", "no labels given: pass --labels LABEL [LABEL ...]");
  const empty = labels.findIndex((l) => l.trim().length === 0);
  if (empty >= 0) throw new SiglipError("usage", `--labels: label ${empty + 1} of ${labels.length} is empty or blank (an unset shell variable?)`);
  const images = gatherInputs(imagesArg, o.imageList, "image", "--image-list");
  if (images.length === 0) {
    throw new SiglipError("usage", o.imageList ? "no images given: the image lists are empty" : "no images given: pass image paths after the options (use -- after --labels), or --image-list FILE|-");
  }
  const release = stopOnSignals();
  try {
    const model = await loadModel(o);
    const cls: { template?: string } = {};
    if (o.template !== undefined) cls.template = o.template;
    const labelEmb = await model.labelEmbeddings(labels, cls);
    const done = await embedImageFiles(model, images, o.batchSize ?? DEFAULT_IMAGE_BATCH, {}, (input, f) => {
      const [scores] = model.scoreLabels([f.embedding], labels, labelEmb);
      out({ input, scores });
    });
    if (interrupted) reportInterrupted(done, images.length, "images");
    await model.close();
  } finally {
    release();
  }
}

async function cmdTokenize(textsArg: string[], o: CommonOpts & { textList?: string[] }): Promise<void> {
  const texts = gatherInputs(textsArg, o.textList, "text", "--text-list");
  if (texts.length === 0) throw new SiglipError("usage", o.textList ? "nothing to tokenize: the text lists are empty" : "nothing to tokenize: give TEXT ... or --text-list FILE|-");
  const model = await loadModel(o);
  const values = texts.flatMap((t) => (t.value !== undefined ? [t.value] : []));
  const ids = await model.tokenize(values);
  let k = 0;
  for (const t of texts) {
    if (t.error) reportInput(t.error);
    else out({ input: t.value, ids: Array.from(ids[k++]!) });
  }
  await model.close();
}

function buildProgram(): Command {
  const program = new Command();
  program
    .name(PROG)
    .description("SigLIP 2 image/text embeddings and zero-shot classification (ONNX Runtime, Hugging Face parity)")
    .option("--debug", "print stack traces")
    .hook("preAction", (cmd) => {
      debug = Boolean(cmd.opts()["debug"]);
    });

  withModelOptions(program.command("embed").description("print one JSON line per input: {kind, input, embedding} (L2-normalised)"))
    .option("--image <paths...>", "image files (repeatable)")
    .option("--text <texts...>", "texts (repeatable; the empty string is valid)")
    .option("--image-list <file>", "read image paths from FILE, one per line or NUL-separated (find -print0); - reads stdin (repeatable)", collect)
    .option("--text-list <file>", "read texts from FILE, one per line (a blank line is the empty text); - reads stdin (repeatable)", collect)
    .option("--patches", "also print patch features: grid [rows, cols] and per patch {row, col, features} (last hidden state)")
    .action((opts) => cmdEmbed(opts));

  withModelOptions(program.command("classify").description("zero-shot classification: per image {input, scores:[{label, logit, probability}]}, sigmoid per label"))
    .requiredOption("--labels <labels...>", "candidate labels")
    .option("--template <template>", `prompt template, {} is the label (default: ${JSON.stringify(HELP_DEFAULT_TEMPLATE)})`)
    .option("--image-list <file>", "read image paths from FILE, one per line or NUL-separated (find -print0); - reads stdin (repeatable)", collect)
    .argument("[images...]", "image files (put -- before them when they follow --labels)")
    .action((images: string[], opts) => cmdClassify(images, opts));

  withModelOptions(program.command("tokenize").description("print {input, ids} per text: 64 ids, EOS then padding, no BOS"))
    .option("--text-list <file>", "read texts from FILE, one per line (a blank line is the empty text); - reads stdin (repeatable)", collect)
    .argument("[texts...]", "texts (the empty string is valid)")
    .action((texts: string[], opts) => cmdTokenize(texts, opts));

  const ctx = { withModelOptions, loadModel, reportInput };
  registerIndexCommand(program, ctx);
  registerWorkerCommand(program, ctx);
  registerSearchCommand(program, ctx);
  registerDedupeCommand(program);
  registerServeCommand(program, ctx);
  registerTrainCommand(program);
  registerCacheCommand(program);
  registerEvalCommand(program, ctx);
  registerExportCommand(program);
  registerCaptionCommands(program, ctx);
  return program;
}

async function main(): Promise<void> {
  try {
    // A command line too long for onnxruntime runs again with a short one (relaunch.ts).
    if (!adoptParentArgv() && relaunchIfLong()) return;
  } catch (e) {
    process.stderr.write(`${PROG}: ${errorMessage(e)}\n`);
    process.exitCode = 2;
    return;
  }
  debug = process.argv.includes("--debug");
  guardStdout(() => inputFailures > 0);
  try {
    const program = buildProgram();
    applyUsagePolicy(program);
    await program.parseAsync(process.argv);
  } catch (e) {
    if (isCleanExit(e)) {
      return; // --help
    } else if (e instanceof SiglipError) {
      process.stderr.write(`${PROG}: ${e.message}\n`);
    } else {
      process.stderr.write(`${PROG}: internal error: ${errorMessage(e)}${debug ? "" : " (run with --debug for details)"}\n`);
    }
    if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    const lost = e instanceof SiglipError && e.code === "queue-lost";
    process.exitCode = lost ? EXIT_QUEUE_LOST : 2;
    // Redis's client may still hold a socket or a reconnect timer that a dead server never ends:
    // the one line is out and every write is done, so such a leftover does not keep the process.
    if (lost) setTimeout(() => process.exit(EXIT_QUEUE_LOST), 2_000).unref();
    return;
  } finally {
    for (const m of openModels.splice(0)) await m.close().catch(() => undefined);
  }
  if (inputFailures > 0) {
    process.stderr.write(`${PROG}: ${inputFailures} input${inputFailures > 1 ? "s" : ""} failed\n`);
    if (!process.exitCode) process.exitCode = 1; // an interrupted run keeps its 130
  }
}

void main();
