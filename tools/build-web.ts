/**
 * `npm run build:web`: the browser bundle `dist/web/siglip2.js` (one ESM file, onnxruntime-web
 * bundled in) from src/web/index.ts, plus onnxruntime-web's .wasm next to it (the bundle loads
 * it from its own folder unless `wasmPaths` says otherwise).
 *
 * Two Node modules have browser stand-ins, resolved here like a package.json "browser" map:
 * src/graph/runtime.ts → src/web/runtime.ts (onnxruntime-web, Cache API model cache) and
 * src/weights/fingerprint.ts → src/web/fingerprint.ts (server validators instead of file hashes).
 * Other Node-only imports (node:*, sharp, onnxruntime-node, LanceDB, fastify) resolve to an empty
 * side-effect-free stub; they come from Node-only functions of shared modules, which tree-shaking
 * drops. The build FAILS if any stub's code reaches the bundle, or if the bundle imports a
 * Node module — so Node-only code cannot creep into the browser build.
 *
 * Reference: esbuild's build API (plugins: onResolve/onLoad, metafile).
 */
import { build, type Metafile, type Plugin } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const OUT_DIR = join(REPO, "dist", "web");
export const BUNDLE = join(OUT_DIR, "siglip2.js");
/** The Web Worker entry (src/web/worker.ts), loaded by SigLIP2Worker from next to the bundle. */
export const WORKER_BUNDLE = join(OUT_DIR, "siglip2.worker.js");
/** The onnxruntime-web files the bundle may load: the default build's .wasm (JSEP: WASM + WebGPU) and the CPU-only build (module, loader, .wasm; src/web/ort.ts). */
export const WASM_FILES = ["ort-wasm-simd-threaded.jsep.wasm", "ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"];

/** Node-only modules: they must never be reached by browser code. */
const NODE_ONLY = /^(node:|sharp$|onnxruntime-node$|@lancedb\/|apache-arrow|fastify|@fastify\/|commander$|cli-progress$|(fs|path|os|crypto|url|worker_threads|stream|util|child_process)(\/.*)?$)/;

/**
 * Node-only modules still referenced by code the bundle keeps, each for a stated reason; their
 * stub throws "not available in the browser" if ever called. Anything else reaching a stub fails
 * the build.
 */
const DORMANT: Record<string, string> = {
  "node:fs/promises": "GemmaTokenizer.fromFile (a class method, so kept; the browser uses GemmaTokenizer.fromJSON)",
};

/** Browser stand-ins of Node modules (repo-relative source → repo-relative replacement). */
const STAND_INS: Record<string, string> = {
  "src/graph/runtime.ts": "src/web/runtime.ts",
  "src/weights/fingerprint.ts": "src/web/fingerprint.ts",
};

function webPlugin(stubbed: Map<string, Set<string>>): Plugin {
  return {
    name: "siglip2-web",
    setup(b) {
      b.onResolve({ filter: NODE_ONLY }, (args) => {
        const importers = stubbed.get(args.path) ?? new Set<string>();
        importers.add(args.importer.replace(`${REPO}/`, ""));
        stubbed.set(args.path, importers);
        return { path: args.path, namespace: "node-only", sideEffects: false };
      });
      b.onLoad({ filter: /.*/, namespace: "node-only" }, (args) => ({
        contents: `module.exports = new Proxy({}, { get(_, k) { throw new Error("siglip2/web: ${args.path} is not available in the browser (" + String(k) + ")"); } });`,
        loader: "js",
      }));
      b.onResolve({ filter: /^\.\.?\// }, (args) => {
        const target = resolve(args.resolveDir, args.path).replace(/\.js$/, ".ts");
        const rel = target.replace(`${REPO}/`, "");
        const standIn = STAND_INS[rel];
        return standIn ? { path: join(REPO, standIn) } : undefined;
      });
    },
  };
}

/** Build the bundle; throws (listing the culprits) when Node-only code would reach it. */
export async function buildWeb(): Promise<{ bytes: number; file: string }> {
  mkdirSync(OUT_DIR, { recursive: true });
  const stubbed = new Map<string, Set<string>>();
  const version = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version;
  const common = {
    bundle: true,
    format: "esm" as const,
    platform: "browser" as const,
    target: "es2022",
    sourcemap: true,
    metafile: true,
    logLevel: "silent" as const,
    define: { __SIGLIP2_VERSION__: JSON.stringify(version) },
    plugins: [webPlugin(stubbed)],
  };
  const worker = await build({ ...common, entryPoints: [join(REPO, "src", "web", "worker.ts")], outfile: WORKER_BUNDLE });
  const result = await build({
    entryPoints: [join(REPO, "src", "web", "index.ts")],
    outfile: BUNDLE,
    ...common,
  });
  for (const [out, meta] of [[BUNDLE, result.metafile!], [WORKER_BUNDLE, worker.metafile!]] as const) checkMetafile(out, meta, stubbed);
  for (const out of [BUNDLE, WORKER_BUNDLE]) {
    const bad = checkBundleText(readFileSync(out, "utf8"));
    if (bad.length > 0) throw new Error(`build:web: ${out} imports Node-only modules: ${bad.join(", ")}`);
  }
  const ortDist = join(REPO, "node_modules", "onnxruntime-web", "dist");
  for (const f of WASM_FILES) copyFileSync(join(ortDist, f), join(OUT_DIR, f));
  return { bytes: statSync(BUNDLE).size, file: BUNDLE };
}

/** Fail when a Node-only stub's code reached `out` (beyond the DORMANT list). */
function checkMetafile(out: string, meta: Metafile, stubbed: Map<string, Set<string>>): void {
  const key = Object.keys(meta.outputs).find((k) => k.endsWith(`/${basename(out)}`))!;
  const leaked = Object.entries(meta.outputs[key]!.inputs)
    .filter(([path, info]) => path.startsWith("node-only:") && info.bytesInOutput > 0 && !(path.slice("node-only:".length) in DORMANT))
    .map(([path]) => `${path.slice("node-only:".length)} (imported by ${[...(stubbed.get(path.slice("node-only:".length)) ?? [])].join(", ")})`);
  if (leaked.length > 0) throw new Error(`build:web: Node-only code would reach ${out}: ${leaked.join("; ")}`);
}

/** Module specifiers in `text` (import/export from, dynamic import, require) that name Node-only modules. */
export function checkBundleText(text: string): string[] {
  const found = new Set<string>();
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["']([^"']+)["']/g)) {
    if (NODE_ONLY.test(m[1]!) || /sharp|lancedb|fastify/.test(m[1]!)) found.add(m[1]!);
  }
  return [...found];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildWeb().then(
    ({ bytes, file }) => console.log(`${file.replace(`${REPO}/`, "")}: ${(bytes / 1024).toFixed(0)} KiB (+ siglip2.worker.js, ${WASM_FILES.join(", ")})`),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : String(e));
      process.exit(1);
    },
  );
}
