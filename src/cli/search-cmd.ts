/**
 * `siglip2 search "query"` / `siglip2 search --image PATH`: rank the indexed images.
 * The model defaults to the one the table was built with. stdout: a ranked table,
 * or JSON Lines with --json.
 */
import { Option, type Command } from "commander";
import type { SigLIP2 } from "../api.js";
import { SiglipError, errorMessage } from "../errors.js";
import type { SearchHit } from "../search/search.js";
import { maxThreads } from "../load-options.js";
import { CPU_BOUND, intOption } from "./args.js";
import { DEFAULT_DB_HELP, DEFAULT_TABLE, note, type CliContext, type ModelOpts } from "./context.js";

const DEFAULT_K = 10;
const MAX_K = 10_000;

interface SearchOpts {
  image?: string;
  db?: string;
  table: string;
  k: number;
  top?: number;
  json?: boolean;
  model?: string;
  lowercase: boolean;
  threads?: number;
  offline?: boolean;
  revision?: string;
}

/** --k and --top: an integer from 1 to {@link MAX_K}. */
const kArg = (name: string) => intOption(name, { min: 1, max: MAX_K, range: true });

function printTable(hits: SearchHit[], withProb: boolean, shownPath: (p: string) => string): void {
  const lines = [withProb ? "rank  cosine   probability  path" : "rank  cosine   path"];
  for (const h of hits) {
    const rank = String(h.rank).padStart(4);
    const cos = h.cosine.toFixed(4).padStart(7);
    const path = shownPath(h.path); // one line per hit, whatever the file name holds
    lines.push(withProb ? `${rank}  ${cos}  ${h.probability!.toExponential(3).padStart(11)}  ${path}` : `${rank}  ${cos}  ${path}`);
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

async function cmdSearch(ctx: CliContext, query: string | undefined, o: SearchOpts): Promise<void> {
  if ((query === undefined) === (o.image === undefined)) {
    throw new SiglipError("usage", 'give either a text query (siglip2 search "a red car") or --image PATH');
  }
  if (o.top !== undefined) o.k = o.top;
  const { assertSameModel, embeddingSetup, modelName } = await import("../search/identity.js");
  const { checkQuery, searchImage, searchText } = await import("../search/search.js");
  const { shownPath } = await import("../search/paths.js");
  if (query !== undefined) checkQuery(query);
  const { ImageStore, defaultDbPath } = await import("../search/store.js");
  const dbPath = o.db ?? defaultDbPath();
  const store = await ImageStore.open(dbPath, o.table);
  let model: SigLIP2 | undefined;
  try {
    const meta = store.meta;
    const mopts: ModelOpts = { model: o.model ?? meta.model, lowercase: o.lowercase, resampler: meta.resampler };
    if (o.threads !== undefined) mopts.threads = o.threads;
    if (o.offline) mopts.offline = true;
    const revision = o.revision ?? (o.model === undefined ? meta.revision : undefined);
    if (revision !== undefined) mopts.revision = revision;
    if (meta.maxPatches !== undefined) mopts.maxPatches = meta.maxPatches;
    if (meta.dtype !== undefined) mopts.dtype = meta.dtype; // queries in the table's precision
    try {
      model = await ctx.loadModel(mopts);
    } catch (e) {
      if (o.model !== undefined || !(e instanceof SiglipError)) throw e;
      throw new SiglipError(e.code, `${store.where} was built with model ${meta.model}, which cannot be loaded (${errorMessage(e)}); pass --model`);
    }
    const setup = await embeddingSetup(model, modelName(mopts.model), { resampler: meta.resampler, ...(meta.maxPatches !== undefined ? { maxPatches: meta.maxPatches } : {}) });
    assertSameModel(meta, setup, store.where, "search");
    const total = await store.count();
    if (total === 0) note(`${store.where} is empty`);
    const hits = query !== undefined
      ? await searchText(model, store, query, o.k)
      : await searchImage(model, store, o.image!, o.k, meta.maxPatches !== undefined ? { maxPatches: meta.maxPatches } : {});
    if (o.json) {
      for (const h of hits) {
        const line: Record<string, unknown> = { rank: h.rank, path: h.path, cosine: h.cosine };
        if (h.probability !== undefined) line["probability"] = h.probability;
        process.stdout.write(`${JSON.stringify(line)}\n`);
      }
    } else if (hits.length > 0) {
      printTable(hits, query !== undefined, shownPath);
    }
  } finally {
    store.close();
    await model?.close();
  }
}

export function registerSearchCommand(program: Command, ctx: CliContext): void {
  program
    .command("search")
    .description("search the image index: text → image (any language) or --image PATH → similar images")
    .argument("[query]", "text query")
    .option("--image <path>", "find images similar to this image instead")
    .option("--db <path>", `database folder (default: ${DEFAULT_DB_HELP})`)
    .option("--table <name>", "table in the database", DEFAULT_TABLE)
    .option("-k, --k <n>", "number of results", kArg("--k"), DEFAULT_K)
    .addOption(new Option("--top <n>", "the same as --k").argParser(kArg("--top")).hideHelp())
    .option("--json", "print JSON Lines {rank, path, cosine, probability} instead of a table")
    .option("-m, --model <model>", "model for the query (default: the model the table was built with; must be the same checkpoint)")
    .option("--no-lowercase", "do not lowercase the query text")
    .option("--threads <n>", "onnxruntime intra-op threads (default: all cores)", intOption("--threads", { min: 1, max: maxThreads, maxWhy: CPU_BOUND }))
    .option("--revision <rev>", "Hub revision (branch, tag or commit)")
    .option("--offline", "never contact the Hub; use the local cache only")
    .addHelpText("after", "\nText queries report cosine and sigmoid probability; image queries report cosine only.")
    .action((query: string | undefined, opts: SearchOpts) => cmdSearch(ctx, query, opts));
}
