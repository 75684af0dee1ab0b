/**
 * `siglip2 dedupe [--threshold 0.97] [--non-best]`: groups of near-duplicate images in the
 * index (see src/search/dedupe.ts). stdout: JSON Lines {group:[{path,width,height,bytes}],
 * best}, one per group; with --non-best, the paths of every copy but the best, one per line
 * (for `xargs -d '\n' mv -t review/`). No model is loaded: the stored vectors decide.
 */
import type { Command } from "commander";
import { DEFAULT_DB_HELP, DEFAULT_TABLE, note } from "./context.js";
import { Progress } from "./progress.js";

interface DedupeOpts {
  db?: string;
  table: string;
  threshold: number;
  nonBest?: boolean;
  exact?: boolean;
}

async function cmdDedupe(o: DedupeOpts): Promise<void> {
  const { findDuplicates, checkThreshold } = await import("../search/dedupe.js");
  const { ImageStore, defaultDbPath } = await import("../search/store.js");
  const { shownPath } = await import("../search/paths.js");
  checkThreshold(o.threshold);
  const store = await ImageStore.open(o.db ?? defaultDbPath(), o.table);
  try {
    let progress: Progress | undefined;
    const groups = await findDuplicates(store, {
      threshold: o.threshold,
      ...(o.exact ? { exact: true } : {}),
      onProgress: (done, total) => {
        progress ??= new Progress(total, "images");
        progress.update(done);
      },
    });
    progress?.stop();
    for (const g of groups) {
      if (o.nonBest) {
        for (const m of g.group.slice(1)) process.stdout.write(`${shownPath(m.path)}\n`);
      } else process.stdout.write(`${JSON.stringify(g)}\n`);
    }
    const copies = groups.reduce((a, g) => a + g.group.length - 1, 0);
    note(`${groups.length} group${groups.length === 1 ? "" : "s"} of near-duplicates (cosine ≥ ${o.threshold}) in ${store.where}; ${copies} cop${copies === 1 ? "y is" : "ies are"} not the best`);
  } finally {
    store.close();
  }
}

export function registerDedupeCommand(program: Command): void {
  program
    .command("dedupe")
    .description("find groups of near-duplicate images in the index (JSON Lines), or list the non-best copies")
    .option("--db <path>", `database folder (default: ${DEFAULT_DB_HELP})`)
    .option("--table <name>", "table in the database", DEFAULT_TABLE)
    .option("--threshold <cosine>", "cosine from which two images are duplicates", (v: string) => Number(v), 0.97)
    .option("--non-best", "print only the copies that are not the best of their group, one path per line")
    .option("--exact", "exact scans even when the table has an ANN index")
    .addHelpText("after", "\nBest copy: the largest resolution (width × height), then the most bytes, then the first path.\nGroups are joined by single linkage: A~B and B~C make one group.")
    .action((opts: DedupeOpts) => cmdDedupe(opts));
}
