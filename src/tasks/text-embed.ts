/**
 * The text embedding loop shared by the Node class (src/api.ts) and the browser class
 * (src/web/index.ts): check the token-id rows, run the text tower in batches, L2-normalise
 * (unless asked not to) and check every embedding is finite, naming the text.
 *
 * No Node-only imports: the browser bundle (tools/build-web.ts) includes this file.
 */
import type { TextTower } from "../models/siglip.js";
import { checkTextEmbeddings, checkTokenIds } from "./scoring.js";
import { l2normalize, rows } from "./similarity.js";

export interface TextEmbedLoop {
  /** Rows per tower run (at least 1). */
  batchSize: number;
  /** false: the raw tower outputs (default: L2-normalised). */
  normalize?: boolean;
  /** Row names in errors (`text "…"`); default `token ids <i>`. */
  names?: readonly string[];
  /** Called with each batch's flat ids (B·T) before it runs (the browser fetches token-table rows here). */
  beforeBatch?: (flat: Int32Array) => Promise<void>;
}

/** Embed `ids` (one row of `tower.sequenceLength` ids per text) with `tower`; one vector per row, in order. */
export async function embedTokenRows(tower: TextTower, ids: readonly Int32Array[], loop: TextEmbedLoop): Promise<Float32Array[]> {
  const T = tower.sequenceLength;
  checkTokenIds(ids, T, tower.config.vocab_size, loop.names);
  const bs = Math.max(1, loop.batchSize);
  const out: Float32Array[] = [];
  for (let s = 0; s < ids.length; s += bs) {
    const chunk = ids.slice(s, s + bs);
    const flat = new Int32Array(chunk.length * T); // (B, T)
    chunk.forEach((c, i) => flat.set(c, i * T));
    await loop.beforeBatch?.(flat);
    const r = await tower.run(flat, chunk.length);
    out.push(...rows(r.pooled, tower.config.projection_size)); // (B, projection_size)
  }
  const result = loop.normalize === false ? out : out.map(l2normalize);
  checkTextEmbeddings(out, result, loop.names);
  return result;
}
