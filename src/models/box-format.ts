/**
 * The box text formats a LocCa decoder can be trained on (recorded as `box_format` in
 * decoder.safetensors, read by ./locca-infer.ts). Kept in the models layer so that the decoder's
 * file reader needs nothing from tasks/; src/tasks/boxes.ts writes and parses the formats.
 */

/** How box coordinates are written as text (src/tasks/boxes.ts module comment). */
export type BoxFormat = "canonical" | "padded";

/** The box formats, default first. */
export const BOX_FORMATS: readonly BoxFormat[] = ["canonical", "padded"];

/** The format of a decoder that records none (every checkpoint before `box_format` existed). */
export const DEFAULT_BOX_FORMAT: BoxFormat = "canonical";

/** Whether `v` names a box format. */
export function isBoxFormat(v: unknown): v is BoxFormat {
  return typeof v === "string" && (BOX_FORMATS as readonly string[]).includes(v);
}
