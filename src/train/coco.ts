/**
 * COCO annotation files as training pairs (the format of cocodataset.org, "Data format"):
 * `images[]` {id, file_name}, `annotations[]` {image_id, caption} (captions_*.json) or
 * {image_id, bbox: [x, y, w, h], category_id} (instances_*.json), `categories[]` {id, name}.
 *
 * One or more files are merged by image id. Each caption of an image becomes one pair; every
 * box of the image becomes a region of each of those pairs, its text the category's name, the
 * box [x, y, x + w, y + h] in the image's pixels. An image with boxes but no caption (an
 * instances file alone) gets the caption "{names}" — its distinct category names, in the order
 * of first appearance, joined by ", ". Images with neither are skipped. Image paths are
 * `file_name` under `imagesDir`, or relative to the first file's folder. Errors name the file
 * and the entry (`annotations[12]`), in one line.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { SiglipError } from "../errors.js";
import type { PairRecord, Region } from "./data.js";

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

function what(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : `a ${typeof v}`;
}

/** Read COCO annotation `files` (see the module comment) into pairs with regions. */
export function readCoco(files: readonly string[], imagesDir?: string): PairRecord[] {
  const images = new Map<number, { file: string; source: string }>();
  const captions = new Map<number, string[]>();
  const boxes = new Map<number, Region[]>();
  const categories = new Map<number, string>();
  const pendingBoxes: Array<{ image: number; box: [number, number, number, number]; category: number; where: string; file: string }> = [];
  for (const file of files) {
    const bad = (why: string): SiglipError => new SiglipError("usage", `${file}: ${why}`, { subject: file });
    if (!existsSync(file)) throw bad("no such file");
    if (statSync(file).isDirectory()) throw bad("is a directory, not a COCO annotation file");
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, "utf8").replace(/^\ufeff/, ""));
    } catch (e) {
      throw bad(`not valid JSON (${(e as Error).message})`);
    }
    if (!isObj(json)) throw bad(`not a COCO annotation file (the top level is ${what(json)}, not an object)`);
    const list = (key: string, required: boolean): unknown[] => {
      const v = json[key];
      if (v === undefined && !required) return [];
      if (!Array.isArray(v)) throw bad(`not a COCO annotation file ("${key}" is ${v === undefined ? "missing" : what(v)}, expected an array)`);
      return v;
    };
    const id = (o: Obj, key: string, where: string): number => {
      const v = o[key];
      if (typeof v !== "number" || !Number.isSafeInteger(v)) throw bad(`${where}: "${key}" is ${JSON.stringify(v) ?? "missing"}, not an integer`);
      return v;
    };
    const base = imagesDir ?? dirname(resolve(files[0]!));
    for (const [k, im] of list("images", true).entries()) {
      const where = `images[${k}]`;
      if (!isObj(im)) throw bad(`${where} is ${what(im)}, not an object`);
      const name = im["file_name"];
      if (typeof name !== "string" || name.trim() === "") throw bad(`${where}: "file_name" must be a non-empty string`);
      const iid = id(im, "id", where);
      images.set(iid, { file: isAbsolute(name) ? name : join(base, name), source: `${file}: ${where}` });
    }
    for (const [k, c] of list("categories", false).entries()) {
      const where = `categories[${k}]`;
      if (!isObj(c)) throw bad(`${where} is ${what(c)}, not an object`);
      const name = c["name"];
      if (typeof name !== "string" || name.trim() === "") throw bad(`${where}: "name" must be a non-empty string`);
      categories.set(id(c, "id", where), name);
    }
    for (const [k, a] of list("annotations", true).entries()) {
      const where = `annotations[${k}]${isObj(a) && a["id"] !== undefined ? ` (id ${JSON.stringify(a["id"])})` : ""}`;
      if (!isObj(a)) throw bad(`${where} is ${what(a)}, not an object`);
      const image = id(a, "image_id", where);
      if ("caption" in a) {
        if (typeof a["caption"] !== "string") throw bad(`${where}: "caption" is ${what(a["caption"])}, not a string`);
        captions.set(image, [...(captions.get(image) ?? []), a["caption"]]);
      } else if ("bbox" in a) {
        const b = a["bbox"];
        if (!Array.isArray(b) || b.length !== 4) throw bad(`${where}: "bbox" must be [x, y, width, height]`);
        for (const v of b) if (typeof v !== "number" || !Number.isFinite(v)) throw bad(`${where}: bbox value ${JSON.stringify(v) ?? String(v)} is not a finite number`);
        const [x, y, w, h] = b as number[];
        if (!(w! > 0 && h! > 0)) throw bad(`${where}: bbox [${b.join(", ")}] has no area (width and height must be > 0)`);
        pendingBoxes.push({ image, box: [x!, y!, x! + w!, y! + h!], category: id(a, "category_id", where), where, file });
      } else {
        throw bad(`${where}: neither "caption" nor "bbox"`);
      }
    }
  }
  for (const p of pendingBoxes) {
    const text = categories.get(p.category);
    if (text === undefined) throw new SiglipError("usage", `${p.file}: ${p.where}: category_id ${p.category} is not in categories[]`, { subject: p.file });
    boxes.set(p.image, [...(boxes.get(p.image) ?? []), { box: p.box, text }]);
  }
  for (const [image, from] of [...[...captions.keys()].map((i) => [i, "captions"] as const), ...[...boxes.keys()].map((i) => [i, "boxes"] as const)]) {
    if (!images.has(image)) throw new SiglipError("usage", `${files.join(", ")}: ${from} of image_id ${image}, which is not in images[]`, { subject: files[0]! });
  }
  const out: PairRecord[] = [];
  for (const [iid, im] of images) {
    const regions = boxes.get(iid) ?? [];
    const caps = captions.get(iid) ?? (regions.length > 0 ? [[...new Set(regions.map((r) => r.text))].join(", ")] : []);
    for (const caption of caps) out.push({ image: im.file, caption, source: im.source, regions });
  }
  if (out.length === 0) throw new SiglipError("usage", `${files.join(", ")}: no image has a caption or a box`, { subject: files[0]! });
  return out;
}
