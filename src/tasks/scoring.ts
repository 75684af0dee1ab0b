/**
 * The parts of the SigLIP2 API that are pure logic, shared by the Node class (src/api.ts) and
 * the browser class (src/web/index.ts): token-id checks, `logit_scale`/`logit_bias` from the
 * checkpoint, the pairwise logits and probabilities, prompt templates, label scores.
 *
 * Reference: transformers `SiglipModel.forward` (logits_per_image = exp(scale)·img·txtᵀ + bias,
 * probabilities = sigmoid(logits)).
 */
import { SiglipError, assertFinite } from "../errors.js";
import type { WeightStore } from "../weights/weight-store.js";
import { logitsPerImage, sigmoid, type LogitParams } from "./similarity.js";

/** One label's score for one image. */
export interface LabelScoreRow {
  label: string;
  logit: number;
  probability: number;
}

/** The largest `logit_scale` whose exponential is finite in float64 (ln of the largest double). */
export const LOGIT_SCALE_MAX = Math.log(Number.MAX_VALUE);

/** How a text is named in messages: quoted, cut to 60 characters. */
export function textName(text: string): string {
  const q = JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);
  return `text ${q}`;
}

/** Fill a prompt template: every `{}` becomes the label. */
export function applyTemplate(template: string, label: string): string {
  if (!template.includes("{}")) throw new SiglipError("input", `template ${JSON.stringify(template)} has no {} placeholder for the label`);
  return template.split("{}").join(label);
}

/**
 * Every row must hold `T` ids inside the vocabulary `V`. With `names` (texts the tokenizer
 * made), an id outside it means the tokenizer does not belong to the checkpoint.
 */
export function checkTokenIds(ids: readonly Int32Array[], T: number, V: number, names?: readonly string[]): void {
  const name = (i: number): string => names?.[i] ?? `token ids ${i}`;
  ids.forEach((row, i) => {
    if (row.length !== T) throw new SiglipError("input", `${name(i)}: ${row.length} ids, expected ${T}`, { subject: name(i) });
    const bad = row.find((id) => !(id >= 0 && id < V));
    if (bad === undefined) return;
    if (names) {
      throw new SiglipError("checkpoint", `${name(i)}: token id ${bad} is outside the model's vocabulary (text_config.vocab_size ${V}); tokenizer.json does not belong to this checkpoint`, { subject: name(i) });
    }
    throw new SiglipError("input", `${name(i)}: id ${bad} is outside the vocabulary (0 to ${V - 1})`, { subject: name(i) });
  });
}

/** Check the text embeddings (raw and as returned), naming the row. */
export function checkTextEmbeddings(raw: readonly Float32Array[], result: readonly Float32Array[], names?: readonly string[]): void {
  result.forEach((e, i) => {
    const n = names?.[i] ?? `token ids ${i}`;
    assertFinite(raw[i]!, n, "text embedding");
    assertFinite(e, n, "normalised text embedding (a zero vector?)");
  });
}

/**
 * `logit_scale` and `logit_bias` from the checkpoint (finite, as every weight read). A
 * `logit_scale` whose exponential overflows even float64 is an error naming it.
 */
export function readLogitParams(w: WeightStore): LogitParams {
  const p = { logitScale: w.float32("logit_scale", [1])[0]!, logitBias: w.float32("logit_bias", [1])[0]! };
  if (!Number.isFinite(Math.exp(p.logitScale))) {
    throw new SiglipError(
      "checkpoint",
      `${w.info("logit_scale").file}: logit_scale ${p.logitScale} is too large: exp(logit_scale) overflows (the largest usable value is about ${LOGIT_SCALE_MAX.toFixed(2)})`,
      { subject: "logit_scale" },
    );
  }
  return p;
}

/** Logits and sigmoid probabilities, [image][text], from L2-normalised embeddings. */
export function similarityTable(imageEmbeds: Float32Array[], textEmbeds: Float32Array[], p: LogitParams): { logits: number[][]; probabilities: number[][] } {
  const logits = logitsPerImage(imageEmbeds, textEmbeds, p);
  logits.forEach((row, i) => assertFinite(row, `image ${i}`, "logits"));
  return { logits, probabilities: logits.map((r) => r.map(sigmoid)) };
}

/** Per image, every label's logit and probability, highest probability first. */
export function labelScores(logits: number[][], labels: readonly string[]): LabelScoreRow[][] {
  return logits.map((row) =>
    row.map((logit, j) => ({ label: labels[j]!, logit, probability: sigmoid(logit) })).sort((a, b) => b.probability - a.probability),
  );
}
