/**
 * The page's client of the server's JSON API (same origin): POST /v1/search, POST
 * /v1/classify, GET /v1/index, GET /v1/thumbnails. The API key, when the server asks for
 * one (401), is typed in by the user and kept in sessionStorage for this tab only.
 */

const KEY_ITEM = "siglip2-api-key";

/** A failed request: the HTTP status and the server's one-line message. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "ApiError";
  }
}

/** One search result, as POST /v1/search gives it. */
export interface Hit {
  rank: number;
  path: string;
  cosine: number;
  /** Text queries only. */
  probability?: number;
}

/** One label's score, as POST /v1/classify gives it. */
export interface LabelScore {
  label: string;
  logit: number;
  probability: number;
}

/** GET /v1/index. */
export interface IndexInfo {
  model: string;
  table: string;
  images: number;
  dimensions: number;
}

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setApiKey(key: string): void {
  if (key.trim() === "") sessionStorage.removeItem(KEY_ITEM);
  else sessionStorage.setItem(KEY_ITEM, key.trim());
}

function headers(json: boolean): Headers {
  const h = new Headers();
  const key = apiKey();
  if (key) h.set("authorization", `Bearer ${key}`);
  if (json) h.set("content-type", "application/json");
  return h;
}

async function failure(r: Response): Promise<ApiError> {
  let message = `HTTP ${r.status}`;
  try {
    const body = (await r.json()) as { error?: { message?: unknown } };
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    // not JSON: keep the status
  }
  return new ApiError(r.status, message);
}

async function request<T>(path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  let r: Response;
  try {
    r = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers: headers(body !== undefined),
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      ...(signal ? { signal } : {}),
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, "the server cannot be reached");
  }
  if (!r.ok) throw await failure(r);
  return (await r.json()) as T;
}

/** The `k` nearest images to a text or an image (a data: URL). */
export async function search(query: { text: string } | { image: string }, k: number, signal?: AbortSignal): Promise<Hit[]> {
  const body = "text" in query ? { query: query.text, k } : { image: query.image, k };
  return (await request<{ data: Hit[] }>("/v1/search", body, signal)).data;
}

/** Zero-shot scores of one image (a data: URL) against labels, sorted by the server. */
export async function classify(image: string, labels: string[], template: string | null): Promise<LabelScore[]> {
  const body = { images: [image], labels, ...(template ? { template } : {}) };
  return (await request<{ data: Array<{ scores: LabelScore[] }> }>("/v1/classify", body)).data[0]!.scores;
}

export function indexInfo(): Promise<IndexInfo> {
  return request<IndexInfo>("/v1/index");
}

/** A thumbnail of an indexed path as a blob: URL (revoke it when done). */
export async function thumbnailUrl(path: string, size: 256 | 1024, signal?: AbortSignal): Promise<string> {
  const r = await fetch(`/v1/thumbnails?${new URLSearchParams({ path, size: String(size) }).toString()}`, { headers: headers(false), ...(signal ? { signal } : {}) });
  if (!r.ok) throw await failure(r);
  return URL.createObjectURL(await r.blob());
}

/** A file's bytes as a data: URL (sent as is: the server decodes and resizes, never the browser). */
export function fileAsDataUrl(file: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(fr.result as string);
    fr.onerror = () => reject(new ApiError(0, `cannot read the file (${fr.error?.message ?? "unknown error"})`));
    fr.readAsDataURL(file);
  });
}
