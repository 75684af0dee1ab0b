/**
 * The layering of ARCHITECTURE.md holds: every relative import in src/ goes to the same layer or a
 * lower one. A new import that points up (a model importing the API, the tokenizer importing the
 * server, ...) fails here with the file and the import named.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative, sep } from "node:path";
import { describe, it } from "node:test";
import { REPO } from "./harness/paths.js";

const SRC = join(REPO, "src");

/** Layer of each folder of src/ (and of the top-level files), lowest first; keep in step with ARCHITECTURE.md. */
export const LAYERS: ReadonlyArray<readonly string[]> = [
  ["errors", "user-dirs", "lru", "wasm-simd"], // shared basics
  ["weights"], // safetensors, config.json, checkpoints, fingerprints
  ["load-options", "hub"], // option bounds; Hub download into the HF cache
  ["preprocess", "tokenizer"], // pure-TS image and text preprocessing
  ["graph"], // ONNX writer, graph builder, autodiff, onnxruntime sessions, model cache
  ["models"], // the architecture, written once against a parameter source
  ["tasks"], // embedding maths, image pipeline, metrics, eval harness, boxes
  ["train"], // losses, optimiser, trainer, data, scene generator
  ["api", "api-types", "index"], // the library interface (SigLIP2)
  ["web"], // the same interface in browsers (onnxruntime-web, HTTP range reads), bundled by tools/build-web.ts
  ["search"], // LanceDB index and search
  ["server"], // HTTP server
  ["cli"], // the siglip2 command
];

const rank = new Map(LAYERS.flatMap((names, r) => names.map((n) => [n, r] as const)));

function unitOf(file: string): string {
  const parts = relative(SRC, file).split(sep);
  return parts.length === 1 ? parts[0]!.replace(/\.ts$/, "") : parts[0]!;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []));
}

describe("layering", () => {
  const files = tsFiles(SRC);

  it("every folder and top-level file of src/ has a layer", () => {
    const missing = [...new Set(files.map(unitOf))].filter((u) => !rank.has(u));
    assert.deepEqual(missing, [], `add these to LAYERS (tests/layers.test.ts) and ARCHITECTURE.md: ${missing.join(", ")}`);
  });

  it("no import points to a higher layer, nor sideways between folders of one layer", () => {
    const bad: string[] = [];
    for (const f of files) {
      const src = readFileSync(f, "utf8");
      for (const m of src.matchAll(/(?:from\s+|import\s*\(\s*)["'](\.[^"']+)["']/g)) {
        const target = normalize(join(dirname(f), m[1]!)).replace(/\.js$/, ".ts");
        const a = unitOf(f);
        const b = unitOf(target);
        if (a === b) continue;
        const ra = rank.get(a)!;
        const rb = rank.get(b)!;
        const libraryFiles = LAYERS[rank.get("api")!]!;
        if (rb < ra || (ra === rb && libraryFiles.includes(a) && libraryFiles.includes(b))) continue;
        bad.push(`${relative(SRC, f)} imports ${m[1]} (${b} is ${rb > ra ? "above" : "beside"} ${a})`);
      }
    }
    assert.deepEqual(bad, []);
  });

  it("the check sees dynamic imports and would catch an upward one", () => {
    const cliLoads = readFileSync(join(SRC, "cli", "search-cmd.ts"), "utf8").match(/import\(\s*["'](\.[^"']+)["']/g) ?? [];
    assert.ok(cliLoads.length > 0, "search-cmd.ts loads the search modules lazily");
    assert.ok(rank.get("models")! < rank.get("api")!, "models sit below the API");
  });
});
