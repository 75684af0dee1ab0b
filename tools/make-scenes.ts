/**
 * Write a generated scene dataset (images/*.png, manifest.jsonl, specs.jsonl, labels.json):
 *
 *   npx tsx tools/make-scenes.ts --out DIR --count N --seed S [--renderer ours|svg] [--size 64] [--height H]
 *       [--max-objects 3] [--langs en,de,es,fr,zh | en=3,zh=1]
 *
 * The same seed gives byte-identical files. See src/train/scenes/dataset.ts for the formats.
 */
import { parseArgs } from "node:util";
import { errorMessage, isSiglipError } from "../src/errors.js";
import { SCENE_RENDERERS, generateScenes, parseLanguageMix, writeSceneDataset, type SceneRenderer } from "../src/train/scenes/index.js";

const USAGE = "usage: tsx tools/make-scenes.ts --out DIR --count N --seed S [--renderer ours|svg] [--size 64] [--height H] [--max-objects 3] [--langs en,de | en=3,zh=1]";

function int(name: string, v: string | undefined, fallback?: number): number {
  if (v === undefined) {
    if (fallback === undefined) throw new Error(`--${name} is required`);
    return fallback;
  }
  if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a non-negative integer (got ${JSON.stringify(v)})`);
  return Number(v);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: "string" }, count: { type: "string" }, seed: { type: "string" }, renderer: { type: "string" },
      size: { type: "string" }, height: { type: "string" }, "max-objects": { type: "string" }, langs: { type: "string" }, help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) { console.log(USAGE); return; }
  if (!values.out) throw new Error("--out is required");
  const renderer = (values.renderer ?? "ours") as SceneRenderer;
  if (!SCENE_RENDERERS.includes(renderer)) throw new Error(`--renderer must be ours or svg (got ${JSON.stringify(values.renderer)})`);
  const records = generateScenes({
    seed: int("seed", values.seed), count: int("count", values.count), size: int("size", values.size, 64),
    ...(values.height !== undefined ? { height: int("height", values.height) } : {}),
    maxObjects: int("max-objects", values["max-objects"], 3), ...(values.langs !== undefined ? { langs: parseLanguageMix(values.langs) } : {}),
  });
  const t = Date.now();
  const w = await writeSceneDataset(values.out, records, renderer);
  const byLang: Record<string, number> = {};
  for (const r of records) byLang[r.lang] = (byLang[r.lang] ?? 0) + 1;
  console.log(`${records.length} scenes (${renderer} renderer) in ${((Date.now() - t) / 1000).toFixed(1)} s → ${w.manifest}; languages ${JSON.stringify(byLang)}`);
}

main().catch((e: unknown) => {
  console.error(isSiglipError(e) ? e.message : `make-scenes: ${errorMessage(e)}\n${USAGE}`);
  process.exitCode = 2;
});
