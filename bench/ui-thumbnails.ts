/**
 * Thumbnail latency of the web UI (GET /v1/thumbnails): a first request (open, size check,
 * SHA-256 of the file, sharp resize to WebP), a repeat (served from the cache after a stat), and
 * a revalidation (If-None-Match → 304), for a few image sizes, at 256 and 1024 px.
 *
 *   npx tsx bench/ui-thumbnails.ts [--repeats 20]
 *
 * The images are generated (smooth gradients with noise, PNG and JPEG) in a temporary folder,
 * indexed with the tiny fixture checkpoint, and served by createServer on 127.0.0.1. The first
 * request of each (file, size) is the cold one; the cache is per content and size, so each file
 * is cold once per size (after one warm-up request of another file). Median of --repeats for the
 * warm ones.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { SigLIP2 } from "../src/api.js";
import { embeddingSetup, modelName } from "../src/search/identity.js";
import { buildIndex, openForIndexing } from "../src/search/indexer.js";
import { createServer } from "../src/server/app.js";

const args = process.argv.slice(2);
const repeats = Number(args[args.indexOf("--repeats") + 1] ?? 20) || 20;
const MODEL = join(import.meta.dirname, "..", "tests", "fixtures", "models", "fixres-f32");

/** A w×h RGB image: gradients plus deterministic noise (so that it does not compress to nothing). */
async function makeImage(path: string, w: number, h: number): Promise<void> {
  const px = Buffer.alloc(w * h * 3);
  let x = 7;
  for (let y = 0; y < h; y++) {
    for (let c = 0; c < w; c++) {
      const i = (y * w + c) * 3;
      x = (x * 1103515245 + 12345) >>> 0;
      const n = (x >>> 27) - 16;
      px[i] = Math.max(0, Math.min(255, ((c * 255) / w + n) | 0));
      px[i + 1] = Math.max(0, Math.min(255, ((y * 255) / h + n) | 0));
      px[i + 2] = Math.max(0, Math.min(255, 128 + n));
    }
  }
  const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
  await (path.endsWith(".jpg") ? img.jpeg({ quality: 90 }) : img.png()).toFile(path);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timed(url: string, headers: Record<string, string> = {}): Promise<{ ms: number; status: number; etag: string | null }> {
  const t0 = performance.now();
  const r = await fetch(url, { headers });
  await r.arrayBuffer();
  return { ms: performance.now() - t0, status: r.status, etag: r.headers.get("etag") };
}

const work = mkdtempSync(join(tmpdir(), "siglip2-bench-thumbs-"));
try {
  const photos = join(work, "photos");
  mkdirSync(photos);
  const files = [["photo-640x480.jpg", 640, 480], ["photo-4000x3000.jpg", 4000, 3000], ["scan-2000x2000.png", 2000, 2000]] as const;
  for (const [f, w, h] of files) await makeImage(join(photos, f), w, h);
  await makeImage(join(photos, "warmup.png"), 64, 64);
  const model = await SigLIP2.load(MODEL);
  const store = await openForIndexing(join(work, "db"), "images", await embeddingSetup(model, modelName(MODEL)));
  await buildIndex(model, store, [photos]);
  const app = createServer(model, { store });
  const base = await app.listen({ host: "127.0.0.1", port: 0 });
  // One request first, so that the table lookup, sharp and fetch are warm for the first measured one.
  await timed(`${base}/v1/thumbnails?path=${encodeURIComponent(join(photos, "warmup.png"))}`);
  console.log(`\n## Thumbnails (GET /v1/thumbnails): ${cpus()[0]?.model ?? "cpu"}, ${cpus().length} cores, sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips}); median of ${repeats} for warm requests\n`);
  console.log("| file | bytes | size | first (ms) | cached (ms) | 304 (ms) |");
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const [f] of files) {
    const path = join(photos, f);
    for (const size of [256, 1024]) {
      const url = `${base}/v1/thumbnails?path=${encodeURIComponent(path)}&size=${size}`;
      const cold = await timed(url);
      if (cold.status !== 200) throw new Error(`${f}: HTTP ${cold.status}`);
      const warm: number[] = [];
      const revalidate: number[] = [];
      for (let i = 0; i < repeats; i++) {
        warm.push((await timed(url)).ms);
        const r = await timed(url, { "if-none-match": cold.etag! });
        if (r.status !== 304) throw new Error(`${f}: expected 304, got ${r.status}`);
        revalidate.push(r.ms);
      }
      console.log(`| ${f} | ${statSync(path).size} | ${size} | ${cold.ms.toFixed(1)} | ${median(warm).toFixed(2)} | ${median(revalidate).toFixed(2)} |`);
    }
  }
  await app.close();
  store.close();
  await model.close();
} finally {
  rmSync(work, { recursive: true, force: true });
}
