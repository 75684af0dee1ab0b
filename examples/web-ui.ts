/**
 * The web UI of `siglip2 serve --db`, from the library: index a folder, then serve the search
 * page, the zero-shot page and the JSON API on 127.0.0.1 until Ctrl-C.
 *
 *   npx tsx examples/web-ui.ts [FOLDER] [MODEL] [PORT]
 *
 * FOLDER defaults to the fixture images and MODEL to the tiny random-weight fixture in this
 * repository (rankings are meaningless with it); pass a folder of photos and a real checkpoint
 * (e.g. google/siglip2-base-patch16-224) for real results. The index goes to a temporary folder.
 * The same from the CLI: `siglip2 index FOLDER --model M --db D && siglip2 serve --model M --db D`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SigLIP2 } from "siglip2";
import { buildIndex, embeddingSetup, modelName, openForIndexing } from "siglip2/search";
import { createServer } from "siglip2/server";

const [folder = "tests/fixtures/images", model = "tests/fixtures/models/fixres-f32", port = "8080"] = process.argv.slice(2);

const siglip = await SigLIP2.load(model);
const db = mkdtempSync(join(tmpdir(), "siglip2-web-ui-"));
const store = await openForIndexing(db, "images", await embeddingSetup(siglip, modelName(model)));
const summary = await buildIndex(siglip, store, [folder], { onError: (e) => console.error(e.message) });
console.log(`indexed ${summary.added} images of ${folder}`);

const app = createServer(siglip, { store });
const url = await app.listen({ host: "127.0.0.1", port: Number(port) });
console.log(`web UI at ${url}/ (Ctrl-C stops)`);

process.once("SIGINT", async () => {
  await app.close();
  store.close();
  await siglip.close();
  rmSync(db, { recursive: true, force: true });
});
