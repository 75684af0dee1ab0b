/**
 * One measurement of bench/int8-end-to-end.ts, in its own process; prints one JSON object.
 *
 *   folder     --model DIR --list FILE --threads N [--dtype int8] [--int8 JSON] [--out F32FILE]
 *              load + decode + preprocess + embed every image listed in FILE (one path a line),
 *              through the library's own image pipeline (what `siglip2 embed` and `index` run);
 *              writes the L2-normalised embeddings (row-major float32) to --out.
 *   throughput --model DIR --threads N --batch B --min-seconds S [--dtype int8] [--int8 JSON]
 *              the B/16 image tower alone on synthetic pixels (images/s).
 *
 * `--int8` is a JSON {@link Int8Options} object (src/models/loader.ts), e.g. '{"attention":"unfused"}'.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { SigLIP2 } from "../src/api.js";
import type { Int8Options } from "../src/models/loader.js";
import type { FixresVisionTower } from "../src/models/siglip.js";
import { opt } from "./common.js";

const argv = process.argv.slice(2);
const threads = Number(opt("threads", "2"));
const dtype = opt("dtype", "fp32") as "fp32" | "int8";
const int8 = JSON.parse(opt("int8", "{}")!) as Int8Options;

async function load(): Promise<SigLIP2> {
  return SigLIP2.load(opt("model")!, { threads, dtype, tower: { int8 } });
}

async function folder(): Promise<unknown> {
  const files = readFileSync(opt("list")!, "utf8").split("\n").filter((l) => l.length > 0);
  const t0 = performance.now();
  const model = await load();
  await model.visionTower();
  const loadS = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const embs = await model.embedImages(files);
  const embedS = (performance.now() - t1) / 1000;
  await model.close();
  const out = opt("out");
  if (out) {
    const d = embs[0]!.length;
    const all = new Float32Array(embs.length * d);
    embs.forEach((e, i) => all.set(e, i * d));
    writeFileSync(out, Buffer.from(all.buffer));
  }
  return { load_s: loadS, embed_s: embedS, images: embs.length, peak_rss_mb: process.resourceUsage().maxRSS / 1024 };
}

/**
 * Image-tower throughput of several variants in ONE process, alternating batch by batch so
 * that a shared machine's load falls on all of them alike: the median seconds per batch each.
 */
async function throughput(): Promise<unknown> {
  const b = Number(opt("batch", "8"));
  const rounds = Number(opt("rounds", "6"));
  type Variant = { dtype: "fp32" | "int8"; int8?: Int8Options; session?: { prepack?: boolean; spin?: boolean } };
  const variants = JSON.parse(opt("variants", JSON.stringify([{ dtype, int8 }]))!) as Variant[];
  const models = await Promise.all(variants.map((v) => SigLIP2.load(opt("model")!, { threads, dtype: v.dtype, tower: { int8: v.int8 ?? {}, ...(v.session ?? {}) } })));
  const towers = await Promise.all(models.map(async (m) => (await m.visionTower()) as FixresVisionTower));
  const R = models[0]!.config.vision_config.image_size;
  const px = new Float32Array(b * 3 * R * R);
  let s = 3;
  for (let i = 0; i < px.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    px[i] = s / 2 ** 31 - 1;
  }
  const times: number[][] = variants.map(() => []);
  const outs: Float32Array[] = [];
  for (const [i, t] of towers.entries()) outs[i] = (await t.run(px, b)).pooled; // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [i, t] of towers.entries()) {
      const t0 = performance.now();
      await t.run(px, b);
      times[i]!.push((performance.now() - t0) / 1000);
    }
  }
  for (const m of models) await m.close();
  const med = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  const d = outs[0]!.length / b;
  const cos = (x: Float32Array, y: Float32Array): number[] =>
    Array.from({ length: b }, (_, k) => {
      let xy = 0, xx = 0, yy = 0;
      for (let j = k * d; j < (k + 1) * d; j++) { xy += x[j]! * y[j]!; xx += x[j]! ** 2; yy += y[j]! ** 2; }
      return xy / Math.sqrt(xx * yy);
    });
  return variants.map((v, i) => ({ ...v, items_per_s: b / med(times[i]!), batch_s: times[i], cos_to_first_min: Math.min(...cos(outs[0]!, outs[i]!)) }));
}

const modes: Record<string, () => Promise<unknown>> = { folder, throughput };
const mode = argv[0];
if (!mode || !modes[mode]) {
  process.stderr.write("usage: tsx bench/int8-child.ts folder|throughput [options]\n");
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(await modes[mode]!())}\n`);
