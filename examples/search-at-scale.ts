/**
 * Search at scale with the library: index a folder, search with filters inside the query,
 * combine query terms, and find near-duplicates.
 *
 *   npx tsx examples/search-at-scale.ts [MODEL] [FOLDER]
 *
 * MODEL defaults to the tiny random-weight fixture (rankings are meaningless with it) and
 * FOLDER to the fixture images. The index goes to a temporary DB. A table of 50 000 rows or
 * more gets an IVF-PQ index on its next index run (`ann.threshold`); searches then re-rank
 * its candidates exactly, and `exact: true` scans every row.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SigLIP2 } from "siglip2";
import { buildIndex, embeddingSetup, findDuplicates, modelName, openForIndexing, searchTerms } from "siglip2/search";

const [model = "tests/fixtures/models/fixres-f32", folder = "tests/fixtures/images"] = process.argv.slice(2);
const db = mkdtempSync(join(tmpdir(), "siglip2-example-db-"));
const siglip = await SigLIP2.load(model);
const store = await openForIndexing(db, "images", await embeddingSetup(siglip, modelName(model)));
try {
  const summary = await buildIndex(siglip, store, [folder], { onError: (e) => console.error(`skipped: ${e.message}`) });
  console.log(`indexed ${summary.total} images; ANN index: ${summary.ann}`);

  // "a photo" + 0.5·"red" − "text", among PNGs at least 20 px wide (applied inside the query).
  const hits = await searchTerms(siglip, store, [
    { text: "a photo", weight: 1 },
    { text: "red", weight: 0.5 },
    { text: "text", weight: -1 },
  ], 5, { filters: { types: ["png"], minWidth: 20 } });
  for (const h of hits) console.log(`${h.rank}  ${h.cosine.toFixed(4)}  ${h.path}`);

  // Near-duplicate groups (best copy first: resolution, then bytes, then path).
  for (const g of await findDuplicates(store, { threshold: 0.99 })) console.log(`duplicates of ${g.best}: ${g.group.slice(1).map((m) => m.path).join(", ")}`);
} finally {
  store.close();
  await siglip.close();
  rmSync(db, { recursive: true, force: true });
}
