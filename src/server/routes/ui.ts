/**
 * The web UI (only with an open index): GET / (the page), GET /ui/{file} (its script and
 * style; both open, they hold no data), GET /v1/thumbnails?path=P&size=S (a WebP thumbnail
 * of an indexed file; src/server/ui/thumbnails.ts) and GET /v1/index (what the index holds).
 * The page itself is a client of the JSON API (/v1/search, /v1/classify), with the API key
 * the user types in when the server asks for one.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ImageStore } from "../../search/store.js";
import type { ServerContext } from "../context.js";
import { HttpError } from "../inputs.js";
import { UI_CSP, loadUiAssets, type Asset } from "../ui/assets.js";
import { Thumbnailer, checkThumbnailPath, checkThumbnailSize } from "../ui/thumbnails.js";

/** True when the request's If-None-Match holds `etag` (or `*`). */
function fresh(req: FastifyRequest, etag: string): boolean {
  const inm = req.headers["if-none-match"];
  if (typeof inm !== "string") return false;
  return inm.split(",").some((t) => {
    const s = t.trim().replace(/^W\//, "");
    return s === etag || s === "*";
  });
}

function sendAsset(req: FastifyRequest, reply: FastifyReply, a: Asset): FastifyReply {
  reply.header("etag", a.etag).header("cache-control", "no-cache").header("x-content-type-options", "nosniff");
  if (fresh(req, a.etag)) return reply.code(304).send();
  return reply.type(a.contentType).send(a.bytes);
}

export function uiRoutes(app: FastifyInstance, ctx: ServerContext, store: ImageStore): void {
  const { assets, problem } = loadUiAssets();
  const missing = () => new HttpError(503, problem ?? "the web UI is not built", "server_error", null, "ui_not_built");
  const thumbs = new Thumbnailer(store);

  app.get("/", async (req, reply) => {
    const page = assets.get("index.html");
    if (!page) throw missing();
    reply.header("content-security-policy", UI_CSP).header("x-frame-options", "DENY").header("referrer-policy", "no-referrer");
    return sendAsset(req, reply, page);
  });

  app.get<{ Params: { file: string } }>("/ui/:file", async (req, reply) => {
    if (problem) throw missing();
    const a = req.params.file === "index.html" ? undefined : assets.get(req.params.file);
    if (!a) throw new HttpError(404, `no UI file ${JSON.stringify(req.params.file.slice(0, 100))}`, "not_found_error");
    return sendAsset(req, reply, a);
  });

  app.get<{ Querystring: Record<string, unknown> }>("/v1/thumbnails", async (req, reply) => {
    const path = checkThumbnailPath(req.query["path"]);
    const size = checkThumbnailSize(req.query["size"]);
    const row = await thumbs.row(path);
    const etag = Thumbnailer.etag(row, size);
    // The thumbnail may need the API key: private, and kept by the browser for a few minutes.
    reply.header("cache-control", "private, max-age=300").header("x-content-type-options", "nosniff");
    if (fresh(req, etag) && (await thumbs.unchanged(row))) return reply.header("etag", etag).code(304).send();
    const t = await thumbs.thumbnail(row, size);
    return reply.header("etag", t.etag).type(t.contentType).send(t.bytes);
  });

  app.get("/v1/index", async () => ({
    object: "index",
    model: ctx.cfg.modelName,
    table: store.tableName,
    images: await store.count(),
    dimensions: store.meta.dim,
    thumbnails: thumbs.stats(),
  }));
}
