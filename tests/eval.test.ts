/**
 * The eval harness (src/tasks/eval.ts): ImageFolder and manifest readers, prompt filling, and the
 * zero-shot and retrieval reports computed through a stand-in embedder whose answers are known.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { describe, it } from "node:test";
import { SigLIP2 } from "../src/api.js";
import { ensembleClassEmbeddings } from "../src/tasks/metrics.js";
import { evalRetrieval, evalZeroShot, fillTemplate, readImageFolder, readRetrievalManifest, type EvalEmbedder } from "../src/tasks/eval.js";

import { tempDir } from "./harness/files.js";
import { FIXTURES, REPO } from "./harness/paths.js";

const axis = (k: number, d = 4) => { const v = new Float32Array(d); v[k] = 1; return v; };

/** Texts embed by the first known word in them, images by the word in their file name ("a|b": either). */
function fake(words: string[]): EvalEmbedder & { prompts: string[] } {
  const emb = (s: string) => {
    const k = words.findIndex((w) => w.split("|").some((a) => s.includes(a)));
    if (k < 0) throw new Error(`no known word in ${s}`);
    return axis(k);
  };
  const prompts: string[] = [];
  return {
    prompts,
    embedImages: async (paths) => paths.map((p) => emb(basename(p))),
    embedTexts: async (texts) => { prompts.push(...texts); return texts.map(emb); },
  };
}

function folder(): string {
  const dir = mkdtempSync(join(tmpdir(), "siglip2-eval-"));
  for (const [c, files] of Object.entries({ red_circle: ["a-circle.png", "b-circle.png", "c-star.png"], star: ["d-star.jpg", "notes.txt", ".hidden.png"] })) {
    mkdirSync(join(dir, c));
    for (const f of files) writeFileSync(join(dir, c, f), "");
  }
  writeFileSync(join(dir, "README"), "");
  return dir;
}

describe("eval harness", () => {
  it("an ImageFolder: classes sorted, images only, dot files and loose files ignored", () => {
    const f = readImageFolder(folder());
    assert.deepEqual(f.classes, ["red_circle", "star"]);
    assert.deepEqual(f.items.map((i) => [basename(i.path), i.label]), [["a-circle.png", 0], ["b-circle.png", 0], ["c-star.png", 0], ["d-star.jpg", 1]]);
  });

  it("zero-shot: labels from folder names, every template per class, accuracy per class", async () => {
    const m = fake(["circle", "star"]);
    const r = await evalZeroShot(m, readImageFolder(folder()), { templates: ["a photo of a {}.", "{}"] });
    assert.deepEqual(m.prompts, ["a photo of a red circle.", "red circle", "a photo of a star.", "star"]);
    assert.equal(r.top1, 3 / 4); // c-star.png is filed under red_circle
    assert.deepEqual(r.perClass.map((p) => [p.label, p.n, p.top1]), [["red circle", 3, 2 / 3], ["star", 1, 1]]);
  });

  it("label overrides and bad templates", async () => {
    const m = fake(["Kreis|circle", "Stern|star"]);
    const r = await evalZeroShot(m, readImageFolder(folder()), { labels: { red_circle: "roter Kreis", star: "Stern" }, templates: ["ein Foto: {}"] });
    assert.deepEqual(m.prompts, ["ein Foto: roter Kreis", "ein Foto: Stern"]);
    assert.equal(r.perClass[0]!.label, "roter Kreis");
    assert.throws(() => fillTemplate("no slot", "x"), /has no \{\} for the label/);
  });

  it("retrieval: several captions per image, per-language numbers", async () => {
    const dir = mkdtempSync(join(tmpdir(), "siglip2-ret-"));
    writeFileSync(join(dir, "m.jsonl"), [
      JSON.stringify({ image: "circle.png", texts: ["a circle", "ein circle"], lang: "en" }),
      JSON.stringify({ image: "star.png", text: "a star", lang: "en" }),
      JSON.stringify({ image: "square.png", text: "a circle too", lang: "de" }),
      "",
    ].join("\n"));
    const data = readRetrievalManifest(join(dir, "m.jsonl"));
    assert.equal(data.images[0], join(dir, "circle.png"));
    assert.equal(data.texts.length, 4);
    const r = await evalRetrieval(fake(["circle", "star", "square"]), data, [1]);
    // text→image: "a circle too" (square.png) embeds as circle → miss; the others hit
    assert.equal(r.textToImage["R@1"], 3 / 4);
    assert.equal(r.perLang.en!.textToImage["R@1"], 1);
    assert.equal(r.perLang.de!.textToImage["R@1"], 1, "alone in its language, square.png is the only candidate");
    assert.equal(r.perLang.en!.images, 2);
  });

  it("a bad manifest line is one error naming file and line", () => {
    const dir = mkdtempSync(join(tmpdir(), "siglip2-ret-"));
    writeFileSync(join(dir, "m.jsonl"), `${JSON.stringify({ image: "a.png", text: "x" })}\n{"image": "b.png"}\n`);
    assert.throws(() => readRetrievalManifest(join(dir, "m.jsonl")), /m\.jsonl:2: "text" must be a string/);
    writeFileSync(join(dir, "n.jsonl"), "[1,2]\n");
    assert.throws(() => readRetrievalManifest(join(dir, "n.jsonl")), /n\.jsonl:1: not a JSON object/);
  });
});

describe("siglip2 eval (CLI) on the fixture model", () => {
  const BIN = join(REPO, "dist", "cli", "main.js");
  const MODEL = join(FIXTURES, "models", "fixres-f32");
  const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1" } });

  it("zeroshot: the JSON report equals the library's own embeddings, ensembled and ranked here", async () => {
    const dir = tempDir("siglip2-evalcli-");
    const files: Record<string, string[]> = { cat: ["noise_32x32.png", "noise_30x30.png", "grey_20x30.png"], dog: ["noise_47x61.png", "noise_61x47.png", "rgba_40x25.png"] };
    for (const [c, fs] of Object.entries(files)) {
      mkdirSync(join(dir, c));
      for (const f of fs) copyFileSync(join(FIXTURES, "model-inputs", f), join(dir, c, f));
    }
    const templates = ["a photo of a {}.", "a drawing of a {}"];
    const r = run(["eval", "zeroshot", "--model", MODEL, "--data", dir, ...templates.flatMap((t) => ["--template", t])]);
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.match(r.stderr, /all\s+6\s/);
    const m = await SigLIP2.load(MODEL);
    try {
      const classes = ensembleClassEmbeddings(await Promise.all(["cat", "dog"].map((c) => m.embedTexts(templates.map((t) => t.replace("{}", c))))));
      const paths = Object.entries(files).flatMap(([c, fs]) => fs.map((f) => join(dir, c, f)));
      const imgs = await m.embedImages(paths);
      const right = imgs.filter((im, i) => {
        const s = classes.map((c) => im.reduce((a, x, k) => a + x * c[k]!, 0));
        return (s[0]! > s[1]! ? 0 : 1) === (i < 3 ? 0 : 1);
      }).length;
      assert.equal(rep.top1, right / 6);
      assert.equal(rep.top5, 1);
      assert.deepEqual(rep.templates, templates);
    } finally {
      await m.close();
    }
  });

  it("retrieval: a manifest with an unreadable image is one line naming it, exit non-zero", () => {
    const dir = tempDir("siglip2-evalcli-");
    copyFileSync(join(FIXTURES, "model-inputs", "noise_32x32.png"), join(dir, "a.png"));
    writeFileSync(join(dir, "b.png"), "not a png");
    writeFileSync(join(dir, "m.jsonl"), `${JSON.stringify({ image: "a.png", text: "a cat" })}\n${JSON.stringify({ image: "b.png", text: "a dog" })}\n`);
    const r = run(["eval", "retrieval", "--model", MODEL, "--data", join(dir, "m.jsonl")]);
    assert.notEqual(r.status, 0);
    assert.equal(r.stdout, "");
    const lines = r.stderr.trim().split("\n").filter((l) => !l.includes("images,"));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /b\.png/);
  });

  it("retrieval: R@K both ways on a valid manifest", () => {
    const dir = tempDir("siglip2-evalcli-");
    const rows = ["noise_32x32.png", "noise_47x61.png", "grey_20x30.png"].map((f, i) => {
      copyFileSync(join(FIXTURES, "model-inputs", f), join(dir, f));
      return JSON.stringify({ image: f, texts: [`caption ${i}`, `other ${i}`], lang: i === 2 ? "de" : "en" });
    });
    writeFileSync(join(dir, "m.jsonl"), rows.join("\n"));
    const r = run(["eval", "retrieval", "--model", MODEL, "--data", join(dir, "m.jsonl")]);
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.texts, 6);
    assert.equal(rep.imageToText["R@5"], 1, "3 images: every image's texts are within the top 5 of 6");
    assert.deepEqual(Object.keys(rep.perLang), ["de", "en"]);
    assert.equal(rep.perLang.de.textToImage["R@1"], 1, "one image in German: always right");
  });
});
