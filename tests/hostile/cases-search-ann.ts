/**
 * Hostile and careless use of search at scale (area "index"): filters (--where SQL that does
 * not parse, names no column or tries to close its group; named flags carrying SQL; bad
 * dates, types and sizes), query arithmetic that cancels out or has bad weights, and bad
 * `dedupe` / `--ann-threshold` values. Every case expects one clear line (or, for quoting,
 * a correct empty answer), never a crash or a stack trace.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../harness/files.js";
import { FIXTURES } from "../harness/paths.js";
import { expectCleanError, expectCorrect, runCli, type ErrorExpectation, type HostileCase } from "./harness.js";

const F32 = join(FIXTURES, "models", "fixres-f32");
const IMG = join(FIXTURES, "images");

/** One small index shared by the cases (built once, on first use, by the CLI). */
let shared: Promise<{ db: string; dir: string }> | undefined;
function index(): Promise<{ db: string; dir: string }> {
  shared ??= (async () => {
    const dir = join(tempDir("siglip2-ann-"), "photos");
    mkdirSync(dir, { recursive: true });
    for (const f of ["photo_48x64.jpg", "rgb_64x64.png", "grad_224x224.png"]) copyFileSync(join(IMG, f), join(dir, f));
    const db = join(tempDir("siglip2-anndb-"), "db");
    const r = await runCli(["index", dir, "--model", F32, "--db", db]);
    if (r.code !== 0) throw new Error(`index failed: ${r.stderr}`);
    return { db, dir };
  })();
  return shared;
}

function searchError(id: string, args: string[], e: ErrorExpectation): HostileCase {
  return {
    id,
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["search", "a photo", "--db", (await index()).db, ...args]), e),
  };
}

export const cases: HostileCase[] = [
  searchError("search-where-not-sql", ["--where", "width >>> 3"], { mentions: ["invalid filter (--where)"] }),
  searchError("search-where-unknown-column", ["--where", "colour = 'red'"], { mentions: ["invalid filter (--where)", "colour"] }),
  searchError("search-where-closes-its-group", ["--where", "1 = 1) OR (1 = 1"], { mentions: ["unbalanced parentheses"] }),
  searchError("search-where-open-quote", ["--where", "path = 'abc"], { mentions: ["unbalanced parentheses or quotes"] }),
  searchError("search-where-blank", ["--where", "  "], { mentions: ["--where is empty"] }),
  searchError("search-where-statement", ["--where", "1=1; DROP TABLE images"], { mentions: ["invalid filter (--where)"] }),
  searchError("search-after-not-a-date", ["--after", "yesterday"], { mentions: ["--after: expected a date"] }),
  searchError("search-taken-after-feb-30", ["--taken-after", "2024-02-30"], { mentions: ["--taken-after: expected a date"] }),
  searchError("search-dates-reversed", ["--after", "2024-06-01", "--before", "2024-01-01"], { mentions: ["is not before", "no file can match"] }),
  searchError("search-type-with-space", ["--type", "jp g"], { mentions: ["not a file type"] }),
  searchError("search-type-only-commas", ["--type", ",,"], { mentions: ["--type: give file types"] }),
  searchError("search-min-width-zero", ["--min-width", "0"], { mentions: ["--min-width"] }),
  searchError("search-min-height-fraction", ["--min-height", "1.5"], { mentions: ["--min-height"] }),
  searchError("search-glob-open-brace", ["--glob", "*.{jpg,png"], { mentions: ["--glob: unbalanced"] }),
  searchError("search-path-prefix-empty", ["--path-prefix", ""], { mentions: ["--path-prefix is empty"] }),
  searchError("search-minus-cancels-query", ["--minus", "a photo"], { mentions: ["cancel out"] }),
  searchError("search-weight-zero", ["--minus", "people:0"], { mentions: ["must be a non-zero number"] }),
  searchError("search-plus-empty-term", ["--plus", ":0.5"], { mentions: ["a query term is empty"] }),
  {
    id: "search-path-prefix-carrying-sql",
    area: "index",
    expect: "correct",
    run: async () => {
      const { db } = await index();
      const r = await runCli(["search", "a photo", "--db", db, "--json", "--path-prefix", "/x' OR '1'='1", "--glob", "%'); --"]);
      return expectCorrect(r, (lines) => (lines.length === 0 ? null : `the quoted flags matched ${lines.length} rows`));
    },
  },
  {
    id: "search-filter-and-k-beyond-matches",
    area: "index",
    expect: "correct",
    run: async () => {
      const { db } = await index();
      const r = await runCli(["search", "a photo", "--db", db, "--json", "-k", "50", "--type", "png"]);
      return expectCorrect(r, (lines) => (lines.length === 2 && lines.every((l) => /\.png"/.test(JSON.stringify(l))) ? null : `expected the 2 PNGs, got ${JSON.stringify(lines)}`));
    },
  },
  {
    id: "dedupe-threshold-not-a-number",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["dedupe", "--db", (await index()).db, "--threshold", "high"]), { mentions: ["--threshold must be a cosine"] }),
  },
  {
    id: "dedupe-threshold-zero",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["dedupe", "--db", (await index()).db, "--threshold", "0"]), { mentions: ["--threshold must be a cosine"] }),
  },
  {
    id: "dedupe-no-index",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["dedupe", "--db", join(tempDir("siglip2-anndb-"), "none")]), { mentions: ["no index"] }),
  },
  {
    id: "index-ann-threshold-zero",
    area: "index",
    expect: "clean-error",
    run: async () => expectCleanError(await runCli(["index", (await index()).dir, "--model", F32, "--db", (await index()).db, "--ann-threshold", "0"]), { mentions: ["--ann-threshold"] }),
  },
];
