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

export function badRequest(message: string, param: string | null = null, code: string | null = null): HttpError {
  return new HttpError(400, message, "invalid_request_error", param, code);
}

/**
 * A short description of a JSON value for an error message: strings and numbers quoted up to
 * 40 characters, arrays and objects by kind only (never serialised: they may be huge or nested
 * a million levels deep).
 */
export function preview(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return v.length === 0 ? "an empty array" : `an array of ${v.length}`;
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return v.length > 40 ? `${JSON.stringify(v.slice(0, 40))}… (${v.length} characters)` : JSON.stringify(v);
  return String(v);
}

/** `body[key]`, with JSON `null` read as absent: clients send `null` for "not set" (the Python SDK does). */
export function optional(body: Record<string, unknown>, key: string): unknown {
  const v = Object.hasOwn(body, key) ? body[key] : undefined;
  return v === null ? undefined : v;
}

/** An optional string field (`model`, `user`, `template`, ...). */
export function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = optional(body, key);
  if (v !== undefined && typeof v !== "string") throw badRequest(`"${key}" must be a string, got ${preview(v)}`, key);
  return v;
}

/** An optional boolean field (`truncate`). */
export function optionalBoolean(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = optional(body, key);
  if (v !== undefined && typeof v !== "boolean") throw badRequest(`"${key}" must be true or false, got ${preview(v)}`, key);
  return v;
}

/** `encoding_format`: "float" (default) or "base64". */
export function parseEncodingFormat(body: Record<string, unknown>): "float" | "base64" {
  const v = optional(body, "encoding_format") ?? "float";
  if (v !== "float" && v !== "base64") throw badRequest(`"encoding_format" must be "float" or "base64", got ${preview(v)}`, "encoding_format");
  return v;
}

/** `dimensions`: absent, or exactly the model's dimension (SigLIP embeddings cannot be shortened). */
export function checkDimensions(body: Record<string, unknown>, dim: number): void {
  const v = optional(body, "dimensions");
  if (v === undefined) return;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw badRequest(`"dimensions" must be a positive integer, got ${preview(v)}`, "dimensions");
  if (v !== dim) {
    throw badRequest(`"dimensions" is ${v}, but this model gives ${dim}-dimensional embeddings only (they cannot be shortened); leave it out or send ${dim}`, "dimensions");
  }
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
  if (/^data:/i.test(s)) {
    const comma = s.indexOf(",");
    if (comma < 0) throw badRequest(`${param}: malformed data URL (no comma)`, param);
    const head = s.slice(5, comma);
    if (!/;base64$/i.test(head)) throw badRequest(`${param}: data URLs must be base64-encoded (data:image/...;base64,...)`, param);
    // The format is read from the bytes, so image/png holding a JPEG is fine; a media type that
    // is not an image at all is a client mistake worth naming.
    const mime = head.split(";")[0]!.trim().toLowerCase();
    if (mime !== "" && !mime.startsWith("image/") && mime !== "application/octet-stream") {
      throw badRequest(`${param}: the data URL's media type ${preview(mime)} is not an image (send data:image/...;base64,...)`, param);
    }
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
    if (o["type"] !== undefined && o["type"] !== "image_url") throw badRequest(`${param}: expected an image (type "image_url"), got type ${preview(o["type"])}`, param);
    const iu = o["image_url"];
    if (typeof iu === "string") return decodeImageString(iu, `${param}.image_url`);
    if (iu && typeof iu === "object" && typeof (iu as Record<string, unknown>)["url"] === "string") {
      return decodeImageString((iu as Record<string, string>)["url"]!, `${param}.image_url.url`);
    }
    throw badRequest(`${param}: an image_url item needs "image_url": {"url": "data:image/...;base64,..."}`, param);
  }
  throw badRequest(`${param}: expected an image as a data: URL, base64, or {"type": "image_url", "image_url": {"url": ...}}, got ${preview(v)}`, param);
}

function tooMany(n: number, max: number, param: string): HttpError {
  return new HttpError(413, `${param}: ${n} items; at most ${max} per request`, "invalid_request_error", param, "too_many_inputs");
}

/**
 * `input` of /v1/embeddings: a string, or an array whose items are strings (texts),
 * `{"type": "text", "text": ...}` or image_url items.
 */
export function parseEmbeddingInput(input: unknown, maxInputs: number): EmbeddingInput[] {
  if (input === undefined || input === null) throw badRequest(`missing "input": a string or an array of strings and images`, "input");
  if (typeof input === "string") return [{ kind: "text", text: input }];
  if (!Array.isArray(input)) throw badRequest(`"input" must be a string or an array, got ${preview(input)}`, "input");
  if (input.length === 0) throw badRequest(`"input" is empty`, "input");
  if (input.length > maxInputs) throw tooMany(input.length, maxInputs, "input");
  return input.map((item: unknown, i): EmbeddingInput => {
    const param = `input[${i}]`;
    if (typeof item === "string") return { kind: "text", text: item };
    if (typeof item === "number" || Array.isArray(item)) {
      // OpenAI accepts token ids of its own tokenizer (tiktoken); they mean nothing to Gemma's.
      throw badRequest(
        `${param}: token-id inputs are not supported (this model uses its own tokenizer); send texts as strings (LangChain's Python OpenAIEmbeddings: set check_embedding_ctx_length=False)`,
        param,
        "token_ids_unsupported",
      );
    }
    if (item && typeof item === "object" && !Array.isArray(item)) {
      const o = item as Record<string, unknown>;
      if (o["type"] === "text") {
        if (typeof o["text"] !== "string") throw badRequest(`${param}: a text item needs "text": "..."`, param);
        return { kind: "text", text: o["text"] };
      }
      if (o["type"] === "image_url" || (o["type"] === undefined && "image_url" in o)) return { kind: "image", bytes: parseImageRef(o, param) };
    }
    throw badRequest(`${param}: expected a string, {"type": "text", "text": ...} or {"type": "image_url", "image_url": {"url": "data:..."}}, got ${preview(item)}`, param);
  });
}

/** A list of images (classify). */
export function parseImageList(v: unknown, param: string, maxInputs: number): Uint8Array[] {
  if (v === undefined || v === null) throw badRequest(`missing "${param}": an array of images (data: URLs or base64)`, param);
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw badRequest(`"${param}" is empty`, param);
  if (list.length > maxInputs) throw tooMany(list.length, maxInputs, param);
  return list.map((x, i) => parseImageRef(x, `${param}[${i}]`));
}

/** A non-empty list of strings. */
export function parseStringList(v: unknown, param: string, maxItems: number): string[] {
  if (v === undefined || v === null) throw badRequest(`missing "${param}": a non-empty array of strings`, param);
  if (!Array.isArray(v) || v.length === 0) throw badRequest(`"${param}" must be a non-empty array of strings, got ${preview(v)}`, param);
  if (v.length > maxItems) throw tooMany(v.length, maxItems, param);
  v.forEach((x, i) => {
    if (typeof x !== "string") throw badRequest(`${param}[${i}]: expected a string, got ${preview(x)}`, `${param}[${i}]`);
  });
  return v as string[];
}

/** Limits on the shape of a JSON request body, checked before it is parsed ({@link jsonShapeProblem}). */
export interface JsonShapeLimits {
  /** Deepest nesting of arrays and objects (ours need 4). */
  maxDepth: number;
  /** Most keys in one object (ours have fewer than 10). */
  maxKeys: number;
  /** Most arrays and objects in the whole body (ours need 2 per input, plus a few). */
  maxContainers: number;
}

/**
 * What is wrong with the shape of JSON text, found without parsing it, or null. V8's JSON.parse
 * spends seconds, all of it on the event loop, on a few megabytes of `[[[[…` (about 4 µs a level),
 * on one object with 10⁵ keys, or on millions of tiny objects; a request never needs any of them.
 * Strings are skipped with indexOf, so a body that is mostly one long base64 string costs next to
 * nothing. Text that is not JSON is left for JSON.parse to report.
 */
export function jsonShapeProblem(text: string, limits: JsonShapeLimits): HttpError | null {
  let depth = 0;
  let containers = 0;
  // Keys so far of the object open at each depth (-1: an array).
  const keys = new Int32Array(limits.maxDepth + 2);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip to the closing quote: one not preceded by an odd number of backslashes.
      let j = i + 1;
      for (;;) {
        j = text.indexOf('"', j);
        if (j < 0) return null; // unterminated: JSON.parse reports it
        let k = j - 1;
        while (text.charCodeAt(k) === 0x5c) k--;
        if ((j - 1 - k) % 2 === 0) break;
        j++;
      }
      i = j;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limits.maxDepth) return badRequest(`the request body nests arrays or objects more than ${limits.maxDepth} levels deep`);
      if (++containers > limits.maxContainers) {
        return new HttpError(413, `the request body holds more than ${limits.maxContainers} arrays and objects (too many inputs)`, "invalid_request_error", null, "too_many_inputs");
      }
      keys[depth] = c === 0x7b ? 0 : -1;
    } else if (c === 0x5d || c === 0x7d) {
      if (depth > 0) depth--;
    } else if (c === 0x3a && depth > 0 && keys[depth]! >= 0) {
      if (++keys[depth]! > limits.maxKeys) return badRequest(`an object in the request body has more than ${limits.maxKeys} keys`);
    }
  }
  return null;
}

/** The request body as an object (fastify has parsed the JSON). */
export function bodyObject(body: unknown): Record<string, unknown> {
  if (body === undefined) throw badRequest("the request has no body; send a JSON object with Content-Type: application/json");
  if (!body || typeof body !== "object" || Array.isArray(body)) throw badRequest(`the request body must be a JSON object, got ${preview(body)}`);
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

/** The fields every POST accepts and ignores or checks: `model` (any name; one model is served), `user`. */
export function commonFields(body: Record<string, unknown>): void {
  optionalString(body, "model");
  optionalString(body, "user");
}
