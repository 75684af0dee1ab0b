/**
 * A small tokenizer for scene models: the sub-vocabulary of Gemma (src/tokenizer/prune.ts) that the
 * scene texts use — captions and referring expressions (both cases: the towers lowercase, the
 * decoder does not), zero-shot class names and prompts, the LocCa task prefixes and the 500 box
 * coordinates (src/tasks/boxes.ts) — so a tiny model's token table stays a few hundred rows.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GemmaTokenizer } from "../../tokenizer/gemma.js";
import { pruneTokenizer, siglip2PostProcessor, type PrunedTokenizer } from "../../tokenizer/prune.js";
import type { SceneRecord } from "./dataset.js";
import { sceneLabels } from "./language.js";

/** The texts a scene model meets: every caption and region text of `records`, labels, LocCa prefixes and box numbers. */
export function sceneCorpus(records: Iterable<SceneRecord>): Set<string> {
  const corpus = new Set<string>();
  for (const s of records) {
    corpus.add(s.caption);
    for (const r of s.regions) corpus.add(r.text);
  }
  for (const l of Object.values(sceneLabels().languages)) for (const t of [...l.names, ...l.prompts]) corpus.add(t);
  for (const p of ["Cap:", "ARef:", "GCap:", " : "]) corpus.add(p);
  for (let q = 0; q < 500; q++) corpus.add(`${q} `);
  return corpus;
}

/**
 * Prune the parsed Gemma tokenizer.json `gemmaJson` to the tokens of `corpus` (lowercased and as
 * written), with SigLIP 2's post-processor (`<eos>` appended) so that transformers gives our ids.
 */
export function sceneTokenizer(gemmaJson: unknown, corpus: Iterable<string>): PrunedTokenizer & { tokenizer: GemmaTokenizer } {
  const gemma = GemmaTokenizer.fromJSON(gemmaJson);
  const ids = [...corpus].flatMap((t) => [...gemma.tokenize(t, { lowercase: true }), ...gemma.tokenize(t, { lowercase: false })]);
  const pruned = pruneTokenizer(gemmaJson, ids);
  pruned.json["post_processor"] = siglip2PostProcessor();
  return { ...pruned, tokenizer: GemmaTokenizer.fromJSON(pruned.json) };
}

/** preprocessor_config.json of a square scene model of side `image` (mean = std = 0.5, bilinear, as SigLIP). */
export function scenePreprocessorConfig(image: number): Record<string, unknown> {
  return {
    do_convert_rgb: null, do_normalize: true, do_rescale: true, do_resize: true, image_mean: [0.5, 0.5, 0.5],
    image_processor_type: "SiglipImageProcessor", image_std: [0.5, 0.5, 0.5], resample: 2,
    rescale_factor: 0.00392156862745098, size: { height: image, width: image },
  };
}

/** Write a scene model's side files into `dir`: tokenizer.json (`tokenizerJson`), tokenizer_config.json (Gemma's, `seqLen` tokens) and preprocessor_config.json. */
export function writeSceneModelFiles(dir: string, tokenizerJson: unknown, o: { image: number; seqLen: number }): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson));
  writeFileSync(join(dir, "tokenizer_config.json"), `${JSON.stringify({
    add_bos_token: false, add_eos_token: true, backend: "tokenizers", bos_token: "<bos>", do_lower_case: true,
    eos_token: "<eos>", mask_token: "<mask>", model_input_names: ["input_ids"], model_max_length: o.seqLen,
    pad_token: "<pad>", padding_side: "right", tokenizer_class: "GemmaTokenizer", unk_token: "<unk>",
  }, null, 2)}\n`);
  writeFileSync(join(dir, "preprocessor_config.json"), `${JSON.stringify(scenePreprocessorConfig(o.image), null, 2)}\n`);
}
