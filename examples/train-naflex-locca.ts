/**
 * Train a NaFlex checkpoint (model_type "siglip2") with the sigmoid + LocCa losses from code: images of
 * mixed aspect ratios with captions and boxed regions, a patch budget per example, and the LocCa
 * decoder cross-attending to each image's real patches (with the sincos2d code of its own grid).
 * Then save it and ask the decoder where something is. Uses the tiny test checkpoint, so it runs in
 * seconds (and the answers mean nothing); point MODEL at a real NaFlex checkpoint for real use.
 *
 *   npx tsx examples/train-naflex-locca.ts [MODEL]
 *
 * The same from the command line: `siglip2 train --model M --data DATA --out DIR --max-patches 16-64
 * --objectives sigmoid,locca`, with `"regions": [{"box": [x0, y0, x1, y1], "text": "..."}]` on the
 * manifest rows (boxes in the image's pixels).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SigLIP2 } from "../src/api.js";
import { parseNaflexProcessorConfig, type RgbImage } from "../src/preprocess/index.js";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { initDecoderParams } from "../src/train/init.js";
import { paramSpecs } from "../src/train/model.js";
import { NaflexPairs, parsePatchBudgets } from "../src/train/naflex-data.js";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.js";
import { generateScenes, renderScene } from "../src/train/scenes/index.js";
import { loadParams } from "../src/train/session.js";
import { Trainer } from "../src/train/trainer.js";
import { Checkpoint } from "../src/weights/checkpoint.js";

const model = process.argv[2] ?? join(import.meta.dirname, "..", "tests", "fixtures", "models", "naflex-f32");
const ckpt = new Checkpoint(model);
const config = ckpt.config;
const tok = await GemmaTokenizer.fromFile(ckpt.tokenizerPath());
const processor = parseNaflexProcessorConfig(ckpt.preprocessorConfig, config.vision_config.patch_size);

// 48 scenes of 48×32, 32×48 and 40×40 pixels; each object is a region {box, text}
const scenes = [[48, 32], [32, 48], [40, 40]].flatMap(([w, h], k) => generateScenes({ seed: k, count: 16, size: w!, height: h!, langs: ["en"] }));
const images: RgbImage[] = [];
for (const s of scenes) {
  const b = await renderScene(s.spec);
  images.push({ width: b.width, height: b.height, data: b.data } as RgbImage);
}
const data = new NaflexPairs(async (i) => images[i]!, scenes.map((s) => s.caption), processor, tok, config.text_config.max_position_embeddings, true, {
  locca: { vocab: config.text_config.vocab_size, regions: scenes.map((s) => s.regions.map((r) => ({ box: [...r.box], text: r.text }))) },
});

// the towers from the checkpoint, a fresh decoder (decoder.* parameters)
const objectives = ["sigmoid", "locca"] as Array<"sigmoid" | "locca">;
const specs = paramSpecs(config, { objectives });
const params = loadParams(ckpt.weights, specs.filter((s) => !s.name.startsWith("decoder.")));
for (const [k, v] of initDecoderParams(specs, 0)) params.set(k, v);

const steps = 10;
const trainer = await Trainer.create(config, params, {
  batchSize: 16, accumSteps: 1, steps, seed: 0, freeze: "none", objectives, memoryPosition: "sincos2d",
  maxPatches: parsePatchBudgets("16-64"),
  optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-4, totalSteps: steps, warmupSteps: 1 },
});
while (trainer.step < steps) {
  const s = await trainer.trainStep(data);
  console.log(`step ${s.step}: sigmoid ${s.sigmoidLoss!.toFixed(4)}, LocCa ${s.loccaLoss!.toFixed(4)}`);
}
const out = mkdtempSync(join(tmpdir(), "siglip2-naflex-locca-"));
trainer.save(out, readFileSync(join(model, "config.json"), "utf8"), model); // config.json verbatim; tokenizer and preprocessor copied from MODEL
await trainer.release();
ckpt.close();

// the saved checkpoint (model.safetensors + decoder.safetensors) through the public API
const m = await SigLIP2.load(out);
const [where] = await m.locate(scenes[0]!.regions[0]!.text, [images[0]!]);
console.log(`"${scenes[0]!.regions[0]!.text}" on a 48×32 image: box ${where!.box.map((v) => v.toFixed(1)).join(", ")} (truth ${scenes[0]!.regions[0]!.box.join(", ")})`);
await m.close();
rmSync(out, { recursive: true, force: true });
