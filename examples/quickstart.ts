/**
 * Library quickstart: embed images and texts, score pairs, zero-shot classify.
 *
 *   npx tsx examples/quickstart.ts [MODEL] [IMAGE ...]
 *
 * MODEL defaults to the tiny random-weight fixture in this repository (scores are
 * meaningless with it); pass a real checkpoint directory or a Hub id such as
 * google/siglip2-base-patch16-224 for real results.
 */
import { SigLIP2 } from "siglip2";

const [model = "tests/fixtures/models/fixres-f32", ...args] = process.argv.slice(2);
const images = args.length > 0 ? args : ["tests/fixtures/model-inputs/noise_32x32.png", "tests/fixtures/model-inputs/grey_20x30.png"];

const siglip = await SigLIP2.load(model);

// L2-normalised embeddings (one Float32Array per input).
const imageEmbeds = await siglip.embedImages(images);
const textEmbeds = await siglip.embedTexts(["a photo of a cat", "a photo of a dog"]);
console.log(`image embedding: ${imageEmbeds[0]!.length} dims`);

// Logits and independent sigmoid probabilities for every (image, text) pair.
const { logits, probabilities } = siglip.similarity(imageEmbeds, textEmbeds);
console.log("logits[image][text]", logits);
console.log("probabilities", probabilities);

// Zero-shot classification ("This is a photo of {}." by default); label embeddings are cached.
const results = await siglip.classify(images, ["cat", "dog", "car"]);
results.forEach((scores, i) => console.log(images[i], scores.map((s) => `${s.label}: ${s.probability.toFixed(4)}`).join(", ")));

await siglip.close();
