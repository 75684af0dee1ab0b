/**
 * Zero-shot classification accuracy from in-memory parameters: embed images and class prompts
 * with forward-only graphs, pick the class with the largest cosine (the sigmoid is monotonic,
 * so t' and b do not change the argmax).
 */
import type { GemmaTokenizer } from "../tokenizer/gemma.js";
import type { SiglipConfig } from "../weights/config.js";
import { tokenizeCaptions } from "./data.js";
import { EmbedSession, type Batch, type Params } from "./session.js";

export class ZeroShotEvaluator {
  private constructor(private readonly vision: EmbedSession, private readonly text: EmbedSession, private readonly tok: GemmaTokenizer, private readonly config: SiglipConfig) {}

  static async create(config: SiglipConfig, tok: GemmaTokenizer, threads?: number): Promise<ZeroShotEvaluator> {
    const o = threads === undefined ? {} : { threads };
    return new ZeroShotEvaluator(await EmbedSession.create(config, "vision", o), await EmbedSession.create(config, "text", o), tok, config);
  }

  /** Fraction of images whose best-scoring prompt is their label. `pixels`: (n, 3, R, R) flat, or a padded NaFlex batch. */
  async accuracy(params: Params, pixels: Float32Array | Pick<Batch, "pixelValues" | "naflex">, labels: readonly number[], prompts: readonly string[]): Promise<number> {
    const n = labels.length;
    const D = this.config.vision_config.hidden_size;
    const img = await this.vision.embed(params, pixels, n);
    const T = this.config.text_config.max_position_embeddings;
    const txt = await this.text.embed(params, tokenizeCaptions(this.tok, prompts, T), prompts.length);
    let correct = 0;
    for (let i = 0; i < n; i++) {
      let best = -Infinity;
      let arg = -1;
      for (let k = 0; k < prompts.length; k++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += img[i * D + d]! * txt[k * D + d]!;
        if (s > best) { best = s; arg = k; }
      }
      if (arg === labels[i]) correct++;
    }
    return correct / n;
  }

  async release(): Promise<void> {
    await this.vision.release();
    await this.text.release();
  }
}
