/**
 * `siglip2 export --model M --out DIR [--dtype fp32|int8] [--towers vision,text] [--fused]`:
 * standalone ONNX models of the towers plus the checkpoint's configs, in the folder layout
 * transformers.js reads (src/models/export.ts). Prints one JSON line per written file
 * `{file, bytes}` (paths relative to DIR).
 */
import { Option, type Command } from "commander";
import { SiglipError } from "../errors.js";
import type { ExportTower } from "../models/export.js";
import { downloadProgress } from "./progress.js";

interface ExportOpts {
  model: string;
  out: string;
  dtype: "fp32" | "int8";
  towers: string;
  fused?: boolean;
  offline?: boolean;
  revision?: string;
}

const TOWERS: readonly ExportTower[] = ["vision", "text"];

/** Parse `--towers vision,text` (each at most once, at least one). */
export function parseTowers(s: string): ExportTower[] {
  const parts = s.split(",").map((p) => p.trim());
  const bad = parts.filter((p) => !(TOWERS as readonly string[]).includes(p));
  if (bad.length > 0 || parts.length === 0) {
    throw new SiglipError("usage", `--towers ${JSON.stringify(s)}: expected a comma-separated list of vision, text (not ${bad.map((b) => JSON.stringify(b)).join(", ")})`);
  }
  return [...new Set(parts as ExportTower[])];
}

/** Register `export` on the program. */
export function registerExportCommand(program: Command): void {
  program
    .command("export")
    .description("write standalone ONNX models (onnx/vision_model.onnx, onnx/text_model.onnx) plus the configs, in the folder layout transformers.js reads; one JSON line {file, bytes} per file")
    .requiredOption("-m, --model <model>", "local checkpoint directory or Hugging Face Hub id (org/name)")
    .requiredOption("-o, --out <dir>", "output folder (created; files in it are overwritten)")
    .addOption(new Option("--dtype <dtype>", "weights: fp32, or int8 (files *_int8.onnx, transformers.js dtype \"int8\")").choices(["fp32", "int8"]).default("fp32"))
    .option("--towers <list>", "towers to export: vision,text", "vision,text")
    .option("--fused", "fp32: use onnxruntime's contrib ops (Attention, FastGelu) instead of standard ONNX ops only")
    .option("--offline", "never use the network (Hub ids must be in the cache)")
    .option("--revision <rev>", "Hub branch, tag or commit (default main)")
    .action(async (o: ExportOpts) => {
      const towers = parseTowers(o.towers);
      if (o.out === "") throw new SiglipError("usage", "--out must not be empty");
      const { resolveModel } = await import("../hub/download.js");
      const { Checkpoint } = await import("../weights/checkpoint.js");
      const { exportModel } = await import("../models/export.js");
      const resolve: { offline?: boolean; revision?: string; onProgress?: NonNullable<ReturnType<typeof downloadProgress>> } = {};
      const bar = downloadProgress();
      if (bar) resolve.onProgress = bar;
      if (o.offline) resolve.offline = true;
      if (o.revision !== undefined) resolve.revision = o.revision;
      const dir = await resolveModel(o.model, resolve);
      const ckpt = new Checkpoint(dir);
      try {
        const report = exportModel(ckpt, o.out, { dtype: o.dtype, towers, fused: o.fused ?? false });
        for (const f of report.files) process.stdout.write(`${JSON.stringify(f)}\n`);
      } finally {
        ckpt.close();
      }
    });
}
