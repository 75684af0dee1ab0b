/**
 * `npm run build:example-web`: the in-browser photo search demo (examples/web) as a static folder,
 * dist/examples/web/: index.html, demo.js (the page, bundled), and the siglip2/web worker bundle
 * with onnxruntime-web's .wasm next to it (built first by tools/build-web.ts). Serve the folder
 * with a checkpoint folder at ./model/ (or open it with ?model=URL).
 *
 * Reference: esbuild's build API.
 */
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WASM_FILES, WORKER_BUNDLE, buildWeb } from "./build-web.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const EXAMPLE_DIR = join(REPO, "dist", "examples", "web");

/** Build the demo folder; returns its path. */
export async function buildExampleWeb(): Promise<string> {
  await buildWeb();
  mkdirSync(EXAMPLE_DIR, { recursive: true });
  await build({
    entryPoints: [join(REPO, "examples", "web", "demo.ts")],
    outfile: join(EXAMPLE_DIR, "demo.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    sourcemap: true,
    logLevel: "silent",
  });
  copyFileSync(join(REPO, "examples", "web", "index.html"), join(EXAMPLE_DIR, "index.html"));
  const webDir = dirname(WORKER_BUNDLE);
  for (const f of ["siglip2.worker.js", "siglip2.worker.js.map", ...WASM_FILES]) copyFileSync(join(webDir, f), join(EXAMPLE_DIR, f));
  return EXAMPLE_DIR;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildExampleWeb().then(
    (dir) => console.log(`${dir.replace(`${REPO}/`, "")}: index.html, demo.js, siglip2.worker.js (serve it with a checkpoint folder at ./model/, or ?model=URL)`),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : String(e));
      process.exit(1);
    },
  );
}
