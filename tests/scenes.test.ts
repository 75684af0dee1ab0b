/**
 * Generated scenes (src/train/scenes): determinism, boxes against the rendered pixels of both
 * renderers, caption grammar in five languages, distinct pairs, background kinds, language mix,
 * and the manifest that `train` reads.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { spawnSync } from "node:child_process";
import { isSiglipError } from "../src/errors.js";
import { parseBoxText, dequantizeBox, BINS } from "../src/tasks/boxes.js";
import { Rng } from "../src/train/rng.js";
import { readManifest } from "../src/train/data.js";
import {
  BACKGROUND_KINDS, SCENE_COLOURS, SCENE_LANGUAGES, SCENE_SHAPES, className, definitePhrase, generateScenes, indefinitePhrase, joinPhrases,
  locCaTargets, parseLanguageMix, rasterizeScene, renderScene, renderSceneSvg, sceneCaption, sceneLabels, sceneToSvg, writeSceneDataset,
  type Box, type RgbBuffer, type SceneLanguage, type SceneObject, type SceneRenderer, type SceneSpec,
} from "../src/train/scenes/index.js";

const tmp = mkdtempSync(join(tmpdir(), "siglip2-scenes-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function filesOf(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of readdirSync(dir, { recursive: true, encoding: "utf8" }).sort()) {
    const p = join(dir, f);
    if (f.endsWith(".png") || f.endsWith(".json") || f.endsWith(".jsonl")) out.set(f, readFileSync(p));
  }
  return out;
}

describe("scenes: determinism", () => {
  for (const renderer of ["ours", "svg"] as SceneRenderer[]) {
    it(`same seed → byte-identical PNGs and manifest; another seed → different (${renderer})`, async () => {
      const make = async (seed: number, name: string) => {
        const dir = join(tmp, `${renderer}-${name}`);
        await writeSceneDataset(dir, generateScenes({ seed, count: 10, size: 48 }), renderer);
        return filesOf(dir);
      };
      const a = await make(7, "a"), b = await make(7, "b"), c = await make(8, "c");
      assert.equal(a.size, 10 + 3);
      assert.deepEqual([...a.keys()], [...b.keys()]);
      for (const [k, v] of a) assert.ok(v.equals(b.get(k)!), `${k} differs between two runs with seed 7`);
      assert.ok(!a.get("manifest.jsonl")!.equals(c.get("manifest.jsonl")!));
      const pngs = [...a.keys()].filter((k) => k.endsWith(".png"));
      assert.ok(pngs.filter((k) => !a.get(k)!.equals(c.get(k)!)).length >= 9, "seed 8 should change (nearly) every image");
      // the PNGs are lossless: decoding gives the renderer's pixels back
      const recs = generateScenes({ seed: 7, count: 1, size: 48 });
      const { default: sharp } = await import("sharp");
      const px = await sharp(a.get(pngs[0]!)!).raw().toBuffer();
      assert.ok(Buffer.from((await renderScene(recs[0]!.spec, renderer)).data).equals(px));
    });
  }

  it("generateScenes is a pure function of its options", () => {
    assert.deepEqual(generateScenes({ seed: 3, count: 50 }), generateScenes({ seed: 3, count: 50 }));
    assert.deepEqual(generateScenes({ seed: 3, count: 50 }).slice(0, 20), generateScenes({ seed: 3, count: 20 }));
    // the language mix does not change the images
    const a = generateScenes({ seed: 3, count: 30, langs: ["en"] }), b = generateScenes({ seed: 3, count: 30, langs: { zh: 1, fr: 2 } });
    assert.deepEqual(a.map((r) => r.spec), b.map((r) => r.spec));
    // specs are JSON round-trippable
    assert.deepEqual(JSON.parse(JSON.stringify(a)), a);
  });
});

/** Bounding box [x0, y0, x1, y1] of pixels that differ from `base` (sum of channel differences > thr). */
function changedBox(img: RgbBuffer, base: RgbBuffer, thr = 24): Box | null {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 3;
      const d = Math.abs(img.data[i]! - base.data[i]!) + Math.abs(img.data[i + 1]! - base.data[i + 1]!) + Math.abs(img.data[i + 2]! - base.data[i + 2]!);
      if (d > thr) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + 1); y1 = Math.max(y1, y + 1); }
    }
  }
  return x0 === Infinity ? null : [x0, y0, x1, y1];
}

describe("scenes: boxes", () => {
  it("every box lies inside the image, is non-empty and belongs to a drawn object", () => {
    for (const size of [16, 64, 224]) {
      for (const r of generateScenes({ seed: 21, count: 300, size })) {
        assert.equal(r.regions.length, r.spec.objects.length);
        for (const g of r.regions) {
          const [x0, y0, x1, y1] = g.box;
          assert.ok(0 <= x0 && x0 < x1 && x1 <= size && 0 <= y0 && y0 < y1 && y1 <= size, `${JSON.stringify(g.box)} at size ${size}`);
        }
      }
    }
  });

  it("each object drawn alone matches its box to 1 px with both renderers (120 objects, sizes 64 and 160)", async () => {
    let worst = 0, n = 0;
    for (const size of [64, 160]) {
      for (const r of generateScenes({ seed: 5, count: 30, size })) {
        for (const o of r.spec.objects) {
          for (const bg of [[0, 0, 0], [250, 250, 250]] as [number, number, number][]) {
            const spec: SceneSpec = { size, background: { kind: "plain", rgb: bg }, objects: [o] };
            const empty: SceneSpec = { ...spec, objects: [] };
            for (const render of [async (s: SceneSpec) => rasterizeScene(s), renderSceneSvg]) {
              const got = changedBox(await render(spec), await render(empty));
              assert.ok(got, `${o.colour} ${o.shape} not visible`);
              for (let k = 0; k < 4; k++) {
                const err = Math.abs(got[k]! - o.box[k]!);
                worst = Math.max(worst, err);
                assert.ok(err <= 1, `${o.colour} ${o.shape} at ${size}: pixels ${JSON.stringify(got)} vs box ${JSON.stringify(o.box)}`);
              }
            }
          }
          n++;
        }
      }
    }
    assert.ok(n >= 100, `only ${n} objects`);
    console.log(`# worst box error ${worst.toFixed(2)} px over ${n} objects × 2 backgrounds × 2 renderers`);
  });

  it("the two renderers draw the same scene (mean |Δ| < 1 level per channel)", async () => {
    for (const r of generateScenes({ seed: 9, count: 12, size: 96 })) {
      const a = rasterizeScene(r.spec), b = await renderSceneSvg(r.spec);
      let d = 0;
      for (let i = 0; i < a.data.length; i++) d += Math.abs(a.data[i]! - b.data[i]!);
      assert.ok(d / a.data.length < 1, `${r.spec.background.kind}: mean |Δ| ${(d / a.data.length).toFixed(2)}`);
    }
    assert.match(sceneToSvg(generateScenes({ seed: 9, count: 1 })[0]!.spec), /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="64" height="64"/);
  });
});

describe("scenes: mixed aspect ratios (width ≠ height, for NaFlex training)", () => {
  it("96×64 and 64×96 scenes: boxes inside W×H and matching the drawn pixels with both renderers; renderers agree; every background kind", async () => {
    const kinds = new Set<string>();
    for (const [W, H] of [[96, 64], [64, 96]] as const) {
      for (const r of generateScenes({ seed: 13, count: 16, size: W, height: H })) {
        assert.equal(r.spec.height, H);
        kinds.add(r.spec.background.kind);
        const a = rasterizeScene(r.spec), b = await renderSceneSvg(r.spec);
        assert.deepEqual([a.width, a.height, b.width, b.height], [W, H, W, H]);
        let d = 0;
        for (let i = 0; i < a.data.length; i++) d += Math.abs(a.data[i]! - b.data[i]!);
        assert.ok(d / a.data.length < 1, `${r.spec.background.kind}: mean |Δ| ${(d / a.data.length).toFixed(2)}`);
        for (const o of r.spec.objects) {
          const [x0, y0, x1, y1] = o.box;
          assert.ok(0 <= x0 && x0 < x1 && x1 <= W && 0 <= y0 && y0 < y1 && y1 <= H, `${JSON.stringify(o.box)} in ${W}×${H}`);
          const spec: SceneSpec = { size: W, height: H, background: { kind: "plain", rgb: [0, 0, 0] }, objects: [o] };
          const got = changedBox(rasterizeScene(spec), rasterizeScene({ ...spec, objects: [] }));
          assert.ok(got, `${o.colour} ${o.shape} not visible`);
          for (let k = 0; k < 4; k++) assert.ok(Math.abs(got[k]! - o.box[k]!) <= 1, `pixels ${JSON.stringify(got)} vs box ${JSON.stringify(o.box)}`);
        }
      }
    }
    assert.equal(kinds.size, BACKGROUND_KINDS.length, `background kinds ${[...kinds]}`);
    // objects spread over the long side: some centre lies beyond the short side's extent
    const far = generateScenes({ seed: 2, count: 40, size: 128, height: 32 }).some((r) => r.spec.objects.some((o) => o.center[0] > 64));
    assert.ok(far, "objects never placed in the far half of a 128×32 scene");
    // square specs keep their old form (no height key)
    assert.equal("height" in generateScenes({ seed: 1, count: 1, size: 64, height: 64 })[0]!.spec, false);
  });
});

// Hand-written: colour-major (red, green, blue, yellow) × (circle, square, triangle, star).
const INDEFINITE: Record<SceneLanguage, string[]> = {
  en: [
    "a red circle", "a red square", "a red triangle", "a red star", "a green circle", "a green square", "a green triangle", "a green star",
    "a blue circle", "a blue square", "a blue triangle", "a blue star", "a yellow circle", "a yellow square", "a yellow triangle", "a yellow star",
  ],
  de: [
    "ein roter Kreis", "ein rotes Quadrat", "ein rotes Dreieck", "ein roter Stern", "ein grüner Kreis", "ein grünes Quadrat", "ein grünes Dreieck", "ein grüner Stern",
    "ein blauer Kreis", "ein blaues Quadrat", "ein blaues Dreieck", "ein blauer Stern", "ein gelber Kreis", "ein gelbes Quadrat", "ein gelbes Dreieck", "ein gelber Stern",
  ],
  es: [
    "un círculo rojo", "un cuadrado rojo", "un triángulo rojo", "una estrella roja", "un círculo verde", "un cuadrado verde", "un triángulo verde", "una estrella verde",
    "un círculo azul", "un cuadrado azul", "un triángulo azul", "una estrella azul", "un círculo amarillo", "un cuadrado amarillo", "un triángulo amarillo", "una estrella amarilla",
  ],
  fr: [
    "un cercle rouge", "un carré rouge", "un triangle rouge", "une étoile rouge", "un cercle vert", "un carré vert", "un triangle vert", "une étoile verte",
    "un cercle bleu", "un carré bleu", "un triangle bleu", "une étoile bleue", "un cercle jaune", "un carré jaune", "un triangle jaune", "une étoile jaune",
  ],
  zh: [
    "红色的圆", "红色的正方形", "红色的三角形", "红色的星星", "绿色的圆", "绿色的正方形", "绿色的三角形", "绿色的星星",
    "蓝色的圆", "蓝色的正方形", "蓝色的三角形", "蓝色的星星", "黄色的圆", "黄色的正方形", "黄色的三角形", "黄色的星星",
  ],
};
const DEFINITE: Record<SceneLanguage, string[]> = {
  en: [
    "the red circle", "the red square", "the red triangle", "the red star", "the green circle", "the green square", "the green triangle", "the green star",
    "the blue circle", "the blue square", "the blue triangle", "the blue star", "the yellow circle", "the yellow square", "the yellow triangle", "the yellow star",
  ],
  de: [
    "der rote Kreis", "das rote Quadrat", "das rote Dreieck", "der rote Stern", "der grüne Kreis", "das grüne Quadrat", "das grüne Dreieck", "der grüne Stern",
    "der blaue Kreis", "das blaue Quadrat", "das blaue Dreieck", "der blaue Stern", "der gelbe Kreis", "das gelbe Quadrat", "das gelbe Dreieck", "der gelbe Stern",
  ],
  es: [
    "el círculo rojo", "el cuadrado rojo", "el triángulo rojo", "la estrella roja", "el círculo verde", "el cuadrado verde", "el triángulo verde", "la estrella verde",
    "el círculo azul", "el cuadrado azul", "el triángulo azul", "la estrella azul", "el círculo amarillo", "el cuadrado amarillo", "el triángulo amarillo", "la estrella amarilla",
  ],
  fr: [
    "le cercle rouge", "le carré rouge", "le triangle rouge", "l'étoile rouge", "le cercle vert", "le carré vert", "le triangle vert", "l'étoile verte",
    "le cercle bleu", "le carré bleu", "le triangle bleu", "l'étoile bleue", "le cercle jaune", "le carré jaune", "le triangle jaune", "l'étoile jaune",
  ],
  zh: INDEFINITE.zh,
};
const NAMES: Record<SceneLanguage, string[]> = {
  en: INDEFINITE.en.map((s) => s.slice(2)),
  de: [
    "roter Kreis", "rotes Quadrat", "rotes Dreieck", "roter Stern", "grüner Kreis", "grünes Quadrat", "grünes Dreieck", "grüner Stern",
    "blauer Kreis", "blaues Quadrat", "blaues Dreieck", "blauer Stern", "gelber Kreis", "gelbes Quadrat", "gelbes Dreieck", "gelber Stern",
  ],
  es: [
    "círculo rojo", "cuadrado rojo", "triángulo rojo", "estrella roja", "círculo verde", "cuadrado verde", "triángulo verde", "estrella verde",
    "círculo azul", "cuadrado azul", "triángulo azul", "estrella azul", "círculo amarillo", "cuadrado amarillo", "triángulo amarillo", "estrella amarilla",
  ],
  fr: [
    "cercle rouge", "carré rouge", "triangle rouge", "étoile rouge", "cercle vert", "carré vert", "triangle vert", "étoile verte",
    "cercle bleu", "carré bleu", "triangle bleu", "étoile bleue", "cercle jaune", "carré jaune", "triangle jaune", "étoile jaune",
  ],
  zh: INDEFINITE.zh,
};

describe("scenes: language", () => {
  it("16 (colour, shape) × 5 languages: indefinite, definite and class-name forms match the hand-written table", () => {
    for (const lang of SCENE_LANGUAGES) {
      let k = 0;
      for (const colour of SCENE_COLOURS) {
        for (const shape of SCENE_SHAPES) {
          assert.equal(indefinitePhrase(colour, shape, lang), INDEFINITE[lang][k], `${lang} indefinite ${colour} ${shape}`);
          assert.equal(definitePhrase(colour, shape, lang), DEFINITE[lang][k], `${lang} definite ${colour} ${shape}`);
          assert.equal(className(colour, shape, lang), NAMES[lang][k], `${lang} name ${colour} ${shape}`);
          k++;
        }
      }
    }
  });

  it("multi-object captions join with the language's 'and'", () => {
    const o = (colour: SceneObject["colour"], shape: SceneObject["shape"]) => ({ colour, shape });
    const two = [o("red", "circle"), o("blue", "star")];
    const three = [o("red", "circle"), o("blue", "triangle"), o("yellow", "star")];
    const cases: [SceneLanguage, string, string][] = [
      ["en", "a red circle and a blue star", "a red circle, a blue triangle and a yellow star"],
      ["de", "ein roter Kreis und ein blauer Stern", "ein roter Kreis, ein blaues Dreieck und ein gelber Stern"],
      ["es", "un círculo rojo y una estrella azul", "un círculo rojo, un triángulo azul y una estrella amarilla"],
      ["fr", "un cercle rouge et une étoile bleue", "un cercle rouge, un triangle bleu et une étoile jaune"],
      ["zh", "红色的圆和蓝色的星星", "红色的圆、蓝色的三角形和黄色的星星"],
    ];
    for (const [lang, c2, c3] of cases) {
      assert.equal(sceneCaption(two, lang), c2);
      assert.equal(sceneCaption(three, lang), c3);
      assert.equal(sceneCaption([two[0]!], lang), INDEFINITE[lang][0]);
    }
    assert.equal(joinPhrases([], "en"), "");
  });

  it("records: caption and referring expressions follow the objects; labels.json per language", () => {
    for (const r of generateScenes({ seed: 4, count: 200 })) {
      assert.equal(r.caption, sceneCaption(r.spec.objects, r.lang));
      assert.deepEqual(r.regions.map((g) => g.text), r.spec.objects.map((o) => definitePhrase(o.colour, o.shape, r.lang)));
      assert.equal(new Set(r.regions.map((g) => g.text)).size, r.regions.length, "referring expressions are unique in an image");
    }
    const labels = sceneLabels();
    assert.equal(labels.classes.length, 16);
    assert.equal(labels.classes[5]!.id, "green_square");
    for (const lang of SCENE_LANGUAGES) {
      assert.deepEqual(labels.languages[lang]!.names, NAMES[lang]);
      assert.equal(new Set(labels.languages[lang]!.prompts).size, 16);
    }
    assert.equal(labels.languages.en!.prompts[0], "a photo of a red circle");
    assert.equal(labels.languages.de!.prompts[5], "Auf dem Bild ist ein grünes Quadrat.");
    assert.equal(labels.languages.es!.prompts[15], "una foto de una estrella amarilla");
    assert.equal(labels.languages.fr!.prompts[7], "une photo d'une étoile verte");
    assert.equal(labels.languages.zh!.prompts[0], "图片里有红色的圆");
  });
});

describe("scenes: distributions", () => {
  const recs = generateScenes({ seed: 31, count: 600 });

  it("(colour, shape) pairs are distinct within an image; 1–3 objects all occur", () => {
    const counts = [0, 0, 0, 0];
    for (const r of recs) {
      const keys = r.spec.objects.map((o) => `${o.colour} ${o.shape}`);
      assert.equal(new Set(keys).size, keys.length, keys.join(", "));
      counts[r.spec.objects.length]!++;
    }
    assert.equal(counts[0], 0);
    for (let k = 1; k <= 3; k++) assert.ok(counts[k]! > 100, `object counts ${counts}`);
    const four = generateScenes({ seed: 1, count: 200, maxObjects: 5 });
    assert.ok(four.some((r) => r.spec.objects.length >= 4));
    assert.ok(generateScenes({ seed: 1, count: 100, maxObjects: 1 }).every((r) => r.spec.objects.length === 1));
  });

  it("every background kind occurs (each ≥ 25%)", () => {
    for (const kind of BACKGROUND_KINDS) {
      const n = recs.filter((r) => r.spec.background.kind === kind).length;
      assert.ok(n >= 0.25 * recs.length, `${kind}: ${n} of ${recs.length}`);
    }
  });

  it("all 16 pairs, rotations and sizes in range occur", () => {
    const pairs = new Set(recs.flatMap((r) => r.spec.objects.map((o) => `${o.colour} ${o.shape}`)));
    assert.equal(pairs.size, 16);
    const objs = recs.flatMap((r) => r.spec.objects);
    for (const o of objs) {
      assert.ok(o.radius * 2 >= 0.15 * 64 - 0.02 && o.radius * 2 <= 0.45 * 64 + 0.02, `radius ${o.radius}`);
      if (o.shape === "circle") assert.equal(o.rotation, 0);
    }
    assert.ok(new Set(objs.filter((o) => o.shape === "square").map((o) => o.rotation)).size > 50);
  });

  it("language mix realised within tolerance", () => {
    const n = 4000;
    const share = (rs: { lang: string }[], l: string) => rs.filter((r) => r.lang === l).length / rs.length;
    const uniform = generateScenes({ seed: 2, count: n, size: 16 });
    for (const l of SCENE_LANGUAGES) assert.ok(Math.abs(share(uniform, l) - 0.2) < 0.03, `${l}: ${share(uniform, l)}`);
    const mixed = generateScenes({ seed: 2, count: n, size: 16, langs: { en: 3, zh: 1, de: 0 } });
    assert.ok(Math.abs(share(mixed, "en") - 0.75) < 0.03 && Math.abs(share(mixed, "zh") - 0.25) < 0.03);
    assert.equal(share(mixed, "de"), 0);
    const listed = generateScenes({ seed: 2, count: n, size: 16, langs: parseLanguageMix("de,fr") });
    assert.ok(Math.abs(share(listed, "de") - 0.5) < 0.03 && share(listed, "de") + share(listed, "fr") === 1);
    assert.deepEqual(parseLanguageMix("en=3,zh=1"), { en: 3, zh: 1 });
  });

  it("bad options are SiglipErrors", () => {
    const bad: unknown[] = [
      { seed: 1, count: 1, langs: ["xx"] }, { seed: 1, count: 1, langs: { en: -1 } }, { seed: 1, count: 1, langs: { en: 0 } }, { seed: 1, count: 1, langs: [] },
      { seed: 1, count: -1 }, { seed: 1.5, count: 1 }, { seed: 1, count: 1, size: 4 }, { seed: 1, count: 1, maxObjects: 0 }, { seed: 1, count: 1, langs: { en: NaN } },
    ];
    for (const o of bad) assert.throws(() => generateScenes(o as Parameters<typeof generateScenes>[0]), (e: unknown) => isSiglipError(e), JSON.stringify(o));
    for (const s of ["", "en=x", "en=1=2", "en,en", "en=1,en=2", "klingon"]) assert.throws(() => parseLanguageMix(s), (e: unknown) => isSiglipError(e), s);
  });
});

describe("scenes: dataset files", () => {
  it("manifest.jsonl rows {image, text, lang, regions}, readable by train's manifest reader; labels.json", async () => {
    const dir = join(tmp, "dataset");
    const recs = generateScenes({ seed: 12, count: 6, size: 32, langs: ["fr", "zh"] });
    await writeSceneDataset(dir, recs, "svg");
    const rows = readFileSync(join(dir, "manifest.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(rows.length, 6);
    rows.forEach((row, i) => {
      assert.deepEqual(Object.keys(row), ["image", "text", "lang", "regions"]);
      assert.equal(row.image, `images/${String(i).padStart(6, "0")}.png`);
      assert.equal(row.text, recs[i]!.caption);
      assert.deepEqual(row.regions, recs[i]!.regions);
    });
    const pairs = readManifest(join(dir, "manifest.jsonl"));
    assert.deepEqual(pairs.map((p) => p.caption), recs.map((r) => r.caption));
    const labels = JSON.parse(readFileSync(join(dir, "labels.json"), "utf8")) as ReturnType<typeof sceneLabels>;
    assert.deepEqual(labels, sceneLabels());
    const specs = readFileSync(join(dir, "specs.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { spec: SceneSpec });
    assert.deepEqual(specs.map((s) => s.spec), recs.map((r) => r.spec));
    await assert.rejects(writeSceneDataset(join(tmp, "x"), recs, "gl" as SceneRenderer), (e: unknown) => isSiglipError(e));
  });
});

describe("scenes: LocCa targets and the CLI", () => {
  it("Cap / ARef / GCap sequences of a record; the ARef box decodes back to the region within side/(2·BINS)", () => {
    const rng = new Rng(1);
    for (const r of generateScenes({ seed: 40, count: 50, size: 64, langs: ["de"] })) {
      const t = locCaTargets({ text: r.caption, regions: r.regions }, 64, 64, rng);
      assert.equal(t.cap.text, `Cap: ${r.caption}`);
      const m = /^ARef: (.+) : (\d+ \d+ \d+ \d+)$/.exec(t.aref!.text)!;
      const region = r.regions.find((g) => g.text === m[1])!;
      assert.ok(region, t.aref!.text);
      const p = parseBoxText(m[2]!);
      assert.ok(p.ok);
      dequantizeBox(p.box, 64, 64).forEach((v, k) => assert.ok(Math.abs(v - region.box[k]!) <= 64 / (2 * BINS) + 1e-9));
      assert.match(t.gcap!.text, /^GCap: \d+ \d+ \d+ \d+ : (der|das) /);
    }
    assert.deepEqual(locCaTargets({ text: "x" }, 10, 10, rng).aref, null);
  });

  it("tools/make-scenes.ts writes a dataset; bad options exit 2 with one line", () => {
    const out = join(tmp, "cli");
    const ok = spawnSync(process.execPath, ["--import", "tsx", "tools/make-scenes.ts", "--out", out, "--count", "3", "--seed", "5", "--renderer", "svg", "--size", "32", "--langs", "es=1,fr=1"], { encoding: "utf8" });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /^3 scenes \(svg renderer\)/);
    assert.equal(readFileSync(join(out, "manifest.jsonl"), "utf8").trim().split("\n").length, 3);
    for (const args of [["--count", "3", "--seed", "5"], ["--out", out, "--count", "x", "--seed", "1"], ["--out", out, "--count", "1", "--seed", "1", "--renderer", "gl"], ["--out", out, "--count", "1", "--seed", "1", "--langs", "xx"]]) {
      const bad = spawnSync(process.execPath, ["--import", "tsx", "tools/make-scenes.ts", ...args], { encoding: "utf8" });
      assert.equal(bad.status, 2, args.join(" "));
      assert.ok(bad.stderr.trim().length > 0);
    }
  });
});
