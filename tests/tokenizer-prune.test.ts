/**
 * A Gemma sub-vocabulary (src/tokenizer/prune.ts) tokenises its corpus exactly as the full 256k
 * Gemma tokenizer does (same token strings, renumbered ids), keeps ids 0–472, and still tokenises
 * texts outside the corpus.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { GemmaTokenizer } from "../src/tokenizer/gemma.js";
import { GEMMA_FIXED_IDS, pruneTokenizer } from "../src/tokenizer/prune.js";
import { generateScenes, SCENE_LANGUAGES, zeroShotPrompt } from "../src/train/scenes/index.js";
import { REPO } from "./harness/paths.js";

const fullJson = JSON.parse(readFileSync(join(REPO, "node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json"), "utf8"));
const full = GemmaTokenizer.fromJSON(fullJson);

describe("Gemma sub-vocabulary", () => {
  const scenes = generateScenes({ seed: 5, count: 600, size: 64, langs: [...SCENE_LANGUAGES] });
  const corpus = [...new Set(scenes.flatMap((s) => [s.caption, ...s.regions.map((r) => r.text)]))];
  const held = generateScenes({ seed: 99, count: 300, size: 64, langs: [...SCENE_LANGUAGES] }).map((s) => s.caption).filter((c) => !corpus.includes(c));
  const used = corpus.flatMap((t) => full.tokenize(t, { lowercase: true }));
  const p = pruneTokenizer(fullJson, used);
  const small = GemmaTokenizer.fromJSON(p.json);

  it("is small, and keeps the added and byte tokens with their ids", () => {
    assert.ok(p.vocabSize < 2000, `vocab ${p.vocabSize}`);
    assert.ok(p.vocabSize > GEMMA_FIXED_IDS);
    const v = (p.json as any).model.vocab;
    for (const t of ["<pad>", "<eos>", "<bos>", "<unk>", "<0x00>", "<0xFF>"]) assert.equal(v[t], fullJson.model.vocab[t], t);
  });

  it("every corpus text gives Gemma's tokens (renumbered)", () => {
    for (const t of corpus) {
      const want = full.tokenize(t, { lowercase: true }).map((id) => p.idMap.get(id));
      assert.deepEqual(small.tokenize(t, { lowercase: true }), want, t);
    }
  });

  it("held-out captions of the same grammar also match (the merges they need are there)", () => {
    let same = 0;
    for (const t of held) {
      const want = full.tokenize(t, { lowercase: true }).map((id) => p.idMap.get(id));
      if (JSON.stringify(small.tokenize(t, { lowercase: true })) === JSON.stringify(want)) same++;
    }
    assert.ok(held.length > 20 && same === held.length, `${same}/${held.length}`);
  });

  it("text outside the corpus still tokenises, into kept ids (characters, bytes)", () => {
    for (const t of ["a purple hexagon 🙂", "ein lila Sechseck", zeroShotPrompt("red", "star", "zh") + "吗？"]) {
      const ids = small.tokenize(t, { lowercase: true });
      assert.ok(ids.length > 0 && ids.every((i) => i >= 0 && i < p.vocabSize), t);
    }
  });

  it("without the merge ancestors the corpus would not round-trip (the closure matters)", () => {
    // keep only the final tokens, drop the closure: some corpus text must then tokenise differently
    const onlyUsed = pruneTokenizer(fullJson, []);
    const bare = GemmaTokenizer.fromJSON(onlyUsed.json);
    const differs = corpus.some((t) => bare.tokenize(t, { lowercase: true }).length !== full.tokenize(t, { lowercase: true }).length);
    assert.ok(differs);
  });
});
