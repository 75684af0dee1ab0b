// Locate Acc@0.5 of a model on make-demo-model's held-out single-object scenes (seed SEED+2, 400, 96 px).
import { SigLIP2 } from "../../src/api.js";
import { SiglipError } from "../../src/errors.js";
import { boxIoU } from "../../src/tasks/metrics.js";
import { generateScenes, renderScene, SCENE_LANGUAGES } from "../../src/train/scenes/index.js";
const dir = process.argv[2]!;
const zs = generateScenes({ seed: 20261202 + 2, count: 400, size: 96, maxObjects: 1, langs: [...SCENE_LANGUAGES] });
const m = await SigLIP2.load(dir, { threads: 1 });
const per: Record<string, { n: number; hits: number; iou: number }> = {};
for (const s of zs) {
  const r = await renderScene(s.spec, "ours");
  const [res] = await m.locateSettled(s.regions[0]!.text, [{ width: r.width, height: r.height, data: r.data } as never]);
  const iou = res instanceof SiglipError ? 0 : boxIoU(res!.box, s.regions[0]!.box);
  const p = (per[s.lang] ??= { n: 0, hits: 0, iou: 0 }); p.n++; p.iou += iou; if (iou >= 0.5) p.hits++;
}
await m.close();
const all = Object.values(per).reduce((a, p) => ({ n: a.n + p.n, hits: a.hits + p.hits, iou: a.iou + p.iou }), { n: 0, hits: 0, iou: 0 });
console.log(JSON.stringify({ acc50: Object.fromEntries(SCENE_LANGUAGES.map((l) => [l, per[l]!.hits / per[l]!.n])), all: { n: all.n, acc50: all.hits / all.n, mean_iou: all.iou / all.n } }));
