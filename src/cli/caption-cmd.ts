/**
 * `siglip2 caption --model M IMAGE ...` and `siglip2 locate --model M "TEXT" IMAGE ...`: the LocCa
 * decoder of a checkpoint trained with `siglip2 train --objectives sigmoid,locca` (library:
 * `SigLIP2.captionSettled` / `locateSettled`, decoding in src/tasks/caption.ts).
 *
 * Output: one JSON line per image, in input order — caption `{"input","caption","score"}`, locate
 * `{"input","query","box":[x0,y0,x1,y1],"score"}` (pixels of the original image). `locate` decodes
 * under the box grammar, so its answer is always a box; `--unconstrained` decodes freely. A bad
 * image, or (unconstrained) a decoder answer that is not a box, is one line on stderr (exit 1); a
 * checkpoint without a decoder is one line and exit 2.
 */
import type { Command } from "commander";
import type { CaptionOptions, LocateOptions, SigLIP2 } from "../api.js";
import { SiglipError } from "../errors.js";
import { intOption } from "./args.js";
import type { CliContext, ModelOpts } from "./context.js";

interface DecodeOpts extends ModelOpts {
  beam?: number;
  maxTokens?: number;
  unconstrained?: boolean;
}

/** Images decoded per library call (the CLI prints each chunk as soon as it is done). */
const CHUNK = 32;

function decodeOptions(o: DecodeOpts): CaptionOptions {
  const c: CaptionOptions = {};
  if (o.beam !== undefined) c.beam = o.beam;
  if (o.maxTokens !== undefined) c.maxTokens = o.maxTokens;
  return c;
}

function line(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function inChunks<R>(
  images: string[], ctx: CliContext, work: (paths: string[]) => Promise<Array<R | SiglipError>>, emit: (path: string, r: R) => void,
): Promise<void> {
  for (let s = 0; s < images.length; s += CHUNK) {
    const part = images.slice(s, s + CHUNK);
    const results = await work(part);
    results.forEach((r, i) => (r instanceof SiglipError ? ctx.reportInput(r) : emit(part[i]!, r)));
  }
}

function withDecodeOptions(cmd: Command): Command {
  return cmd
    .option("--beam <n>", "beam width (default 1: greedy; at most 16)", intOption("--beam", { min: 1, max: 16, maxWhy: "the largest beam accepted" }))
    .option("--max-tokens <n>", "most generated tokens, EOS included (default: what the decoder's positions allow)", intOption("--max-tokens", { min: 1, max: 4096, maxWhy: "far beyond any decoder's length" }));
}

function needImages(images: string[]): void {
  if (images.length === 0) throw new SiglipError("usage", "no images given: pass image paths after the options");
}

export function registerCaptionCommands(program: Command, ctx: CliContext): void {
  withDecodeOptions(ctx.withModelOptions(
    program.command("caption").description('caption images with the checkpoint\'s LocCa decoder: {"input","caption","score"} per image'),
  ))
    .argument("[images...]", "image files")
    .action(async (images: string[], o: DecodeOpts) => {
      needImages(images);
      const model: SigLIP2 = await ctx.loadModel(o);
      await model.loccaDecoder(); // no decoder: one line, exit 2, before any image is read
      await inChunks(images, ctx, (paths) => model.captionSettled(paths, decodeOptions(o)), (input, r) => line({ input, caption: r.caption, score: r.score }));
    });

  withDecodeOptions(ctx.withModelOptions(
    program.command("locate").description('locate TEXT in images with the LocCa decoder: {"input","query","box":[x0,y0,x1,y1],"score"} per image (pixels)'),
  ))
    .option("--unconstrained", "decode freely instead of under the box grammar (an answer that is not a box is then an error for that image)")
    .argument("<text>", "what to locate (a referring expression)")
    .argument("[images...]", "image files")
    .action(async (query: string, images: string[], o: DecodeOpts) => {
      if (query.trim() === "") throw new SiglipError("usage", "locate: the text to locate is empty (an unset shell variable?)");
      needImages(images);
      const model: SigLIP2 = await ctx.loadModel(o);
      await model.loccaDecoder();
      await inChunks(images, ctx, (paths) => model.locateSettled(query, paths, { ...decodeOptions(o), ...(o.unconstrained ? { constrained: false } : {}) } satisfies LocateOptions), (input, r) => line({ input, query, box: r.box, score: r.score }));
    });
}
