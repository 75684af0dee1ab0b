/**
 * `siglip2 eval zeroshot --model M --data DIR`, `siglip2 eval retrieval --model M --data MANIFEST` and
 * `siglip2 eval locate --model M --data MANIFEST` (regions; the checkpoint's LocCa decoder):
 * the numbers CLIP-style papers report (src/tasks/eval.ts). One JSON object on stdout, a readable
 * table on stderr.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { SiglipError, errorMessage } from "../errors.js";
import type { RetrievalReport, ZeroShotReport } from "../tasks/eval.js";
import type { RetrievalMetrics } from "../tasks/metrics.js";
import { collect } from "./args.js";
import { note, type CliContext, type ModelOpts } from "./context.js";

interface ZeroShotOpts extends ModelOpts {
  data: string;
  template: string[];
  templates?: string;
  labels?: string;
}

interface RetrievalOpts extends ModelOpts {
  data: string;
}

const pct = (x: number) => `${(100 * x).toFixed(1).padStart(5)}%`;

/** Label overrides: a JSON object {folder: label} in a file. */
function readLabels(file: string): Record<string, string> {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new SiglipError("input", `${file}: not a readable JSON file (${errorMessage(e)})`, { subject: file });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v) || !Object.values(v).every((x) => typeof x === "string")) {
    throw new SiglipError("input", `${file}: --labels must be a JSON object mapping class folder names to labels`, { subject: file });
  }
  return v as Record<string, string>;
}

/** Templates: one per line in a file (blank lines ignored). */
function readTemplates(file: string): string[] {
  try {
    return readFileSync(file, "utf8").split("\n").map((l) => l.trim()).filter((l) => l !== "");
  } catch (e) {
    throw new SiglipError("input", `${file}: cannot read the templates (${errorMessage(e)})`, { subject: file });
  }
}

function zeroShotTable(r: ZeroShotReport): string {
  const w = Math.max(5, ...r.perClass.map((p) => p.label.length));
  const lines = [`${"class".padEnd(w)}  images   top-1   top-5`];
  for (const p of r.perClass) lines.push(`${p.label.padEnd(w)}  ${String(p.n).padStart(6)}  ${pct(p.top1)}  ${pct(p.top5)}`);
  lines.push(`${"all".padEnd(w)}  ${String(r.n).padStart(6)}  ${pct(r.top1)}  ${pct(r.top5)}   (mean per class ${pct(r.meanPerClassTop1).trim()}, ${r.templates.length} template${r.templates.length === 1 ? "" : "s"})`);
  return lines.join("\n");
}

function retrievalTable(r: RetrievalReport): string {
  const ks = Object.keys(r.imageToText);
  const row = (name: string, m: RetrievalMetrics) => `${name.padEnd(6)} ${String(m.images).padStart(6)} ${String(m.texts).padStart(6)}  ${ks.map((k) => pct(m.imageToText[k]!)).join(" ")}   ${ks.map((k) => pct(m.textToImage[k]!)).join(" ")}`;
  const head = `${"lang".padEnd(6)} ${"images".padStart(6)} ${"texts".padStart(6)}  image→text ${ks.join("/")}   text→image ${ks.join("/")}`;
  return [head, row("all", r), ...Object.entries(r.perLang).map(([l, m]) => row(l, m))].join("\n");
}

export function registerEvalCommand(program: Command, ctx: CliContext): void {
  const evalCmd = program.command("eval").description("evaluate a model: zero-shot classification, retrieval, localisation (LocCa)");
  ctx.withModelOptions(
    evalCmd.command("zeroshot").description("zero-shot accuracy on an ImageFolder (one folder per class, named by its label): top-1, top-5, per class"),
  )
    .requiredOption("--data <dir>", "ImageFolder root")
    .option("--template <t>", 'prompt template, {} stands for the label (repeatable; default "a photo of a {}.")', collect, [])
    .option("--templates <file>", "templates, one per line")
    .option("--labels <file>", "JSON object {folder: label} overriding the folder names")
    .action(async (o: ZeroShotOpts) => {
      const { evalZeroShot, readImageFolder } = await import("../tasks/eval.js");
      const folder = readImageFolder(o.data);
      const templates = [...o.template, ...(o.templates ? readTemplates(o.templates) : [])];
      const model = await ctx.loadModel(o);
      note(`${folder.items.length} images in ${folder.classes.length} classes`);
      const r = await evalZeroShot(model, folder, { ...(templates.length ? { templates } : {}), ...(o.labels ? { labels: readLabels(o.labels) } : {}) });
      process.stdout.write(`${JSON.stringify({ task: "zeroshot", data: o.data, ...r })}\n`);
      process.stderr.write(`${zeroShotTable(r)}\n`);
    });
  ctx.withModelOptions(
    evalCmd.command("retrieval").description('image↔text retrieval R@1/5/10 on a JSON Lines manifest ({"image", "text"|"texts", "lang"?}), per language'),
  )
    .requiredOption("--data <manifest>", "JSON Lines manifest")
    .action(async (o: RetrievalOpts) => {
      const { evalRetrieval, readRetrievalManifest } = await import("../tasks/eval.js");
      const data = readRetrievalManifest(o.data);
      const model = await ctx.loadModel(o);
      note(`${data.images.length} images, ${data.texts.length} texts`);
      const r = await evalRetrieval(model, data);
      process.stdout.write(`${JSON.stringify({ task: "retrieval", data: o.data, ...r })}\n`);
      process.stderr.write(`${retrievalTable(r)}\n`);
    });
  ctx.withModelOptions(
    evalCmd.command("locate").description('referring-expression localisation Acc@0.5 and mean IoU on a JSON Lines manifest ({"image", "regions":[{"box":[x0,y0,x1,y1],"text"}]}) with the LocCa decoder'),
  )
    .requiredOption("--data <manifest>", "JSON Lines manifest with regions (boxes in the image's pixels)")
    .action(async (o: RetrievalOpts) => {
      const { evalLocate, readLocateManifest } = await import("../tasks/eval.js");
      const data = readLocateManifest(o.data);
      const model = await ctx.loadModel(o);
      await model.loccaDecoder();
      note(`${data.items.length} regions in ${data.images} images`);
      const r = await evalLocate(model, data);
      process.stdout.write(`${JSON.stringify({ task: "locate", data: o.data, ...r })}\n`);
      process.stderr.write(`Acc@${r.threshold} ${pct(r.accuracy).trim()}  mean IoU ${r.meanIoU.toFixed(3)}  (${r.regions} regions, ${r.unanswered} answers not a box)\n`);
    });
}
