/**
 * Request bodies: validation with one clear message per problem, and the decoding
 * of inline images (data URLs or bare base64; remote URLs are never fetched).
 */

/** An error that becomes an HTTP response: `{"error": {"message", "type", "param", "code"}}`. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly type = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

export function badRequest(message: string, param: string | null = null): HttpError {
  return new HttpError(400, message, "invalid_request_error", param);
}

/** One input of /v1/embeddings. */
export type EmbeddingInput = { kind: "text"; text: string } | { kind: "image"; bytes: Uint8Array };

const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;
const BASE64URL_RE = /^[A-Za-z0-9_-]+={0,2}$/;

function decodeBase64(s: string, param: string): Uint8Array {
  const t = s.replace(/\s+/g, "");
  if (t.length === 0) throw badRequest(`${param}: empty image data`, param);
  if (!BASE64_RE.test(t) && !BASE64URL_RE.test(t)) {
    throw badRequest(`${param}: not valid base64 image data (send a data: URL or base64 of the image file)`, param);
  }
  const bytes = Buffer.from(t, BASE64_RE.test(t) ? "base64" : "base64url");
  if (bytes.length === 0) throw badRequest(`${param}: empty image data`, param);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decode an image given as a data URL (`data:image/png;base64,...`) or bare base64. */
export function decodeImageString(s: string, param: string): Uint8Array {
  if (s.startsWith("data:")) {
    const comma = s.indexOf(",");
    if (comma < 0) throw badRequest(`${param}: malformed data URL (no comma)`, param);
    const head = s.slice(5, comma);
    if (!/;base64$/i.test(head)) throw badRequest(`${param}: data URLs must be base64-encoded (data:image/...;base64,...)`, param);
    return decodeBase64(s.slice(comma + 1), param);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    throw badRequest(`${param}: remote image URLs are not fetched; send the image inline as a data: URL or base64`, param);
  }
  return decodeBase64(s, param);
}

/**
 * An image reference: a data URL / base64 string, or an OpenAI-style content part
 * `{"type": "image_url", "image_url": {"url": "data:..."}}` (`image_url` may also be
 * the string itself).
 */
export function parseImageRef(v: unknown, param: string): Uint8Array {
  if (typeof v === "string") return decodeImageString(v, param);
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (o["type"] !== undefined && o["type"] !== "image_url") throw badRequest(`${param}: expected an image (type "image_url"), got type ${JSON.stringify(o["type"])}`, param);
    const iu = o["image_url"];
    if (typeof iu === "string") return decodeImageString(iu, `${param}.image_url`);
    if (iu && typeof iu === "object" && typeof (iu as Record<string, unknown>)["url"] === "string") {
      return decodeImageString((iu as Record<string, string>)["url"]!, `${param}.image_url.url`);
    }
    throw badRequest(`${param}: an image_url item needs "image_url": {"url": "data:image/...;base64,..."}`, param);
  }
  throw badRequest(`${param}: expected an image as a data: URL, base64, or {"type": "image_url", "image_url": {"url": ...}}`, param);
}

function tooMany(n: number, max: number, param: string): HttpError {
  return new HttpError(413, `${param}: ${n} items; at most ${max} per request`, "invalid_request_error", param, "too_many_inputs");
}

/**
 * `input` of /v1/embeddings: a string, or an array whose items are strings (texts),
 * `{"type": "text", "text": ...}` or image_url items.
 */
export function parseEmbeddingInput(input: unknown, maxInputs: number): EmbeddingInput[] {
  if (input === undefined) throw badRequest(`missing "input": a string or an array of strings and images`, "input");
  if (typeof input === "string") return [{ kind: "text", text: input }];
  if (!Array.isArray(input)) throw badRequest(`"input" must be a string or an array, got ${typeof input}`, "input");
  if (input.length === 0) throw badRequest(`"input" is empty`, "input");
  if (input.length > maxInputs) throw tooMany(input.length, maxInputs, "input");
  if (typeof input[0] === "number" || Array.isArray(input[0])) {
    throw badRequest(`token-id inputs are not supported; send texts as strings`, "input");
  }
  return input.map((item: unknown, i): EmbeddingInput => {
    const param = `input[${i}]`;
    if (typeof item === "string") return { kind: "text", text: item };
    if (item && typeof item === "object" && !Array.isArray(item)) {
      const o = item as Record<string, unknown>;
      if (o["type"] === "text") {
        if (typeof o["text"] !== "string") throw badRequest(`${param}: a text item needs "text": "..."`, param);
        return { kind: "text", text: o["text"] };
      }
      if (o["type"] === "image_url" || (o["type"] === undefined && "image_url" in o)) return { kind: "image", bytes: parseImageRef(o, param) };
    }
    throw badRequest(`${param}: expected a string, {"type": "text", "text": ...} or {"type": "image_url", "image_url": {"url": "data:..."}}`, param);
  });
}

/** A list of images (classify). */
export function parseImageList(v: unknown, param: string, maxInputs: number): Uint8Array[] {
  if (v === undefined) throw badRequest(`missing "${param}": an array of images (data: URLs or base64)`, param);
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw badRequest(`"${param}" is empty`, param);
  if (list.length > maxInputs) throw tooMany(list.length, maxInputs, param);
  return list.map((x, i) => parseImageRef(x, `${param}[${i}]`));
}

/** A non-empty list of strings. */
export function parseStringList(v: unknown, param: string, maxItems: number): string[] {
  if (!Array.isArray(v) || v.length === 0) throw badRequest(`"${param}" must be a non-empty array of strings`, param);
  if (v.length > maxItems) throw tooMany(v.length, maxItems, param);
  v.forEach((x, i) => {
    if (typeof x !== "string") throw badRequest(`${param}[${i}]: expected a string`, `${param}[${i}]`);
  });
  return v as string[];
}

/** The request body as an object (fastify has parsed the JSON). */
export function bodyObject(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== "object" || Array.isArray(body)) throw badRequest("the request body must be a JSON object");
  return body as Record<string, unknown>;
}

/** Float32 vector as base64 of its little-endian bytes (OpenAI's `encoding_format: "base64"`). */
export function float32ToBase64(v: Float32Array): string {
  const buf = Buffer.alloc(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i]!, i * 4);
  return buf.toString("base64");
}

/** The inverse of {@link float32ToBase64}. */
export function base64ToFloat32(s: string): Float32Array {
  const buf = Buffer.from(s, "base64");
  const out = new Float32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}
