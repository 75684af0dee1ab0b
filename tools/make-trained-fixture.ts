/**
 * Writes tests/fixtures/models/trained-f32: a Hub-layout checkpoint produced by our trainer
 * (see tests/harness/trained-fixture.ts). Then run tools/reference/train_goldens.py, which loads
 * it with transformers and stores the embeddings the tests compare against.
 *
 *   npx tsx tools/make-trained-fixture.ts && /path/to/python tools/reference/train_goldens.py
 */
import { rmSync } from "node:fs";
import { saveCheckpoint } from "../src/train/checkpoint.js";
import { SOURCE_FIXTURE, TRAINED_FIXTURE, trainFixture } from "../tests/harness/trained-fixture.js";

const { trainer, configJson } = await trainFixture();
rmSync(TRAINED_FIXTURE, { recursive: true, force: true });
// Weights and side files only (no optimiser state): this is the artefact transformers loads.
saveCheckpoint(TRAINED_FIXTURE, { configJson, specs: trainer.specs, params: trainer.params, sourceDir: SOURCE_FIXTURE });
await trainer.release();
process.stdout.write(`wrote ${TRAINED_FIXTURE} after ${trainer.step} steps; losses ${trainer.history.map((h) => h.loss.toFixed(4)).join(" ")}\n`);
