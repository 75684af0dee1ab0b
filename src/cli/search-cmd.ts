/**
 * `siglip2 search "query"` / `siglip2 search --image PATH`: rank the indexed images.
 * The model defaults to the one the table was built with. stdout: a ranked table,
 * or JSON Lines with --json. Filters (--path-prefix, --glob, --after/--before,
 * --taken-after/--taken-before, --type, --min-width/--min-height, --where) apply inside
 * the query; --plus/--minus add weighted terms (see src/search/search.ts); --exact scans.
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
  plus: string[];
  minus: string[];
  exact?: boolean;
  pathPrefix?: string;
  glob?: string;
  after?: string;
  before?: string;
  takenAfter?: string;
  takenBefore?: string;
  type?: string;
  minWidth?: number;
  minHeight?: number;
  where?: string;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** The named filters of the command line. */
function filtersOf(o: SearchOpts): import("../search/filters.js").SearchFilters {
  const f: import("../search/filters.js").SearchFilters = {};
  if (o.pathPrefix !== undefined) f.pathPrefix = o.pathPrefix;
  if (o.glob !== undefined) f.glob = o.glob;
  if (o.after !== undefined) f.after = o.after;
  if (o.before !== undefined) f.before = o.before;
  if (o.takenAfter !== undefined) f.takenAfter = o.takenAfter;
  if (o.takenBefore !== undefined) f.takenBefore = o.takenBefore;
  if (o.type !== undefined) f.types = [o.type];
  if (o.minWidth !== undefined) f.minWidth = o.minWidth;
  if (o.minHeight !== undefined) f.minHeight = o.minHeight;
  if (o.where !== undefined) f.where = o.where;
  return f;
}

/** --k and --top: an integer from 1 to {@link MAX_K}. */
const kArg = (name: string) => intOption(name, { min: 1, max: MAX_K, range: true });

/**
 * The ranked table. When a hit is a video frame, a `time` column (m:ss.s, from the start of
 * the video) follows the path; images leave it empty.
 */
function printTable(hits: SearchHit[], withProb: boolean, shownPath: (p: string) => string, formatTime: (s: number) => string): void {
  const withTime = hits.some((h) => h.timeS !== undefined);
  const paths = hits.map((h) => shownPath(h.path)); // one line per hit, whatever the file name holds
  const width = withTime ? Math.max(4, ...paths.map((p) => p.length)) : 0;
  const head = withProb ? "rank  cosine   probability  path" : "rank  cosine   path";
  const lines = [withTime ? `${head.padEnd(head.length - 4 + width)}  time` : head];
  hits.forEach((h, i) => {
    const rank = String(h.rank).padStart(4);
    const cos = h.cosine.toFixed(4).padStart(7);
    let line = withProb ? `${rank}  ${cos}  ${h.probability!.toExponential(3).padStart(11)}  ${paths[i]!}` : `${rank}  ${cos}  ${paths[i]!}`;
    if (h.timeS !== undefined) line = `${line.padEnd(line.length - paths[i]!.length + width)}  ${formatTime(h.timeS)}`;
    lines.push(line);
  });
  process.stdout.write(`${lines.join("\n")}\n`);
}

async function cmdSearch(ctx: CliContext, query: string | undefined, o: SearchOpts): Promise<void> {
  if (query === undefined && o.image === undefined && o.plus.length === 0) {
    throw new SiglipError("usage", 'give a text query (siglip2 search "a red car"), --image PATH or --plus TERM');
  }
  if (o.top !== undefined) o.k = o.top;
  const { assertSameModel, embeddingSetup, modelName } = await import("../search/identity.js");
  const { checkQuery, parseWeighted, searchTerms } = await import("../search/search.js");
  const { filterSql } = await import("../search/filters.js");
  const { shownPath } = await import("../search/paths.js");
  const { existsSync, statSync } = await import("node:fs");
  if (query !== undefined) checkQuery(query);
  const filters = filtersOf(o);
  filterSql(filters); // bad flags fail before the model loads
  // The terms: the query (weight 1), --image (weight 1), --plus / --minus TERM[:WEIGHT],
  // where a TERM naming an existing file is an image.
  const terms: import("../search/search.js").QueryTerm[] = [];
  if (query !== undefined) terms.push({ text: query, weight: 1 });
  if (o.image !== undefined) terms.push({ image: o.image, weight: 1 });
  for (const [list, sign] of [[o.plus, 1], [o.minus, -1]] as const) {
    for (const t of list) {
      const isFile = (p: string) => existsSync(p) && statSync(p).isFile();
      if (isFile(t)) terms.push({ image: t, weight: sign });
      else {
        const { value, weight } = parseWeighted(t, sign);
        terms.push(isFile(value) ? { image: value, weight } : { text: value, weight });
      }
    }
  }
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
    const where = filterSql(filters);
    if (where !== undefined) await store.checkWhere(where);
    const hits = await searchTerms(model, store, terms, o.k, {
      filters,
      ...(o.exact ? { exact: true } : {}),
      ...(meta.maxPatches !== undefined ? { maxPatches: meta.maxPatches } : {}),
    });
    if (o.json) {
      for (const h of hits) {
        const line: Record<string, unknown> = { rank: h.rank, path: h.path, cosine: h.cosine };
        if (h.probability !== undefined) line["probability"] = h.probability;
        if (h.timeS !== undefined) line["time_s"] = h.timeS;
        process.stdout.write(`${JSON.stringify(line)}\n`);
      }
    } else if (hits.length > 0) {
      const { formatTime } = await import("../search/video.js");
      printTable(hits, hits[0]!.probability !== undefined, shownPath, formatTime);
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
    .option("--image <path>", "find images similar to this image (alone, or combined with the text)")
    .option("--plus <term>", "add a text or image term, optionally weighted: --plus \"sunset:0.5\" (repeatable)", collect, [])
    .option("--minus <term>", "subtract a text or image term: --minus people, --minus \"people:0.5\" (repeatable)", collect, [])
    .option("--exact", "scan every row exactly, even when the table has an ANN index")
    .option("--path-prefix <dir>", "only files under this folder")
    .option("--glob <pattern>", "only files matching this glob (without /: the file name; with /: the path)")
    .option("--after <date>", "only files modified at or after this date (ISO 8601; no zone = UTC)")
    .option("--before <date>", "only files modified before this date")
    .option("--taken-after <date>", "only photos taken (EXIF DateTimeOriginal) at or after this date")
    .option("--taken-before <date>", "only photos taken before this date")
    .option("--type <exts>", "only these file types, e.g. jpg,png")
    .option("--min-width <px>", "only images at least this wide", intOption("--min-width", { min: 1, max: 1_000_000 }))
    .option("--min-height <px>", "only images at least this high", intOption("--min-height", { min: 1, max: 1_000_000 }))
    .option("--where <sql>", "a LanceDB SQL filter over path, size, mtime_ms, ext, width, height, taken_ms, time_s (video frames; NULL for images)")
    .option("--db <path>", `database folder (default: ${DEFAULT_DB_HELP})`)
    .option("--table <name>", "table in the database", DEFAULT_TABLE)
    .option("-k, --k <n>", "number of results", kArg("--k"), DEFAULT_K)
    .addOption(new Option("--top <n>", "the same as --k").argParser(kArg("--top")).hideHelp())
    .option("--json", "print JSON Lines {rank, path, cosine, probability, time_s (video frames)} instead of a table")
    .option("-m, --model <model>", "model for the query (default: the model the table was built with; must be the same checkpoint)")
    .option("--no-lowercase", "do not lowercase the query text")
    .option("--threads <n>", "onnxruntime intra-op threads (default: all cores)", intOption("--threads", { min: 1, max: maxThreads, maxWhy: CPU_BOUND }))
    .option("--revision <rev>", "Hub revision (branch, tag or commit)")
    .option("--offline", "never contact the Hub; use the local cache only")
    .addHelpText("after", "\nA video is one hit: its best frame, with its time (m:ss.s) after the path.\nText queries report cosine and sigmoid probability; image and combined queries report cosine only.\nCombined query: normalise(Σ wᵢ·eᵢ) over the L2-normalised term embeddings (query and --plus: +w, --minus: −w; w = 1 unless TERM:W).")
    .action((query: string | undefined, opts: SearchOpts) => cmdSearch(ctx, query, opts));
}
