/**
 * Request plumbing, in the order a request meets it: the JSON body parser (JSON only, shape
 * limits), onRequest (CORS, draining, API key, Content-Encoding), preParsing (the body
 * deadline, 408), onSend/onResponse (close while draining, status counters), and shutdown
 * (preClose starts draining, onClose drains the batchers).
 */
import { PassThrough } from "node:stream";
import type { FastifyInstance } from "fastify";
import { checkApiKey } from "./auth.js";
import { ClosedError } from "./batcher.js";
import type { ServerContext } from "./context.js";
import { applyCors } from "./cors.js";
import { firstLine } from "./errors.js";
import { HttpError, badRequest, jsonShapeProblem, preview } from "./inputs.js";

export function installHooks(app: FastifyInstance, ctx: ServerContext): void {
  const { cfg } = ctx;
  // Bodies are JSON only: fastify's text/plain parser would turn a text body into a string
  // (then a confusing "must be an object"); without a parser it is the 415 it should be.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    let text = body as string;
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a byte-order mark, as some Windows tools send
    if (text.trim().length === 0) return done(badRequest("the request body is empty; send a JSON object"), undefined);
    const shape = jsonShapeProblem(text, cfg.jsonLimits);
    if (shape !== null) return done(shape, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(badRequest(`the request body is not valid JSON (${firstLine(e instanceof Error ? e.message : String(e), 160)})`), undefined);
    }
  });

  app.addHook("onRequest", async (req, reply) => {
    if (applyCors(req, reply, cfg.corsOrigins)) return; // preflight: browsers send no credentials
    if (ctx.draining && req.routeOptions.url !== "/health") throw new ClosedError();
    checkApiKey(req, reply, cfg.keyDigest);
    const enc = req.headers["content-encoding"];
    if (enc !== undefined && enc.trim().toLowerCase() !== "identity") {
      reply.header("connection", "close");
      throw new HttpError(415, `Content-Encoding ${preview(enc)} is not supported; send the body uncompressed`, "invalid_request_error", null, "unsupported_encoding");
    }
  });
  // A slow body is cut off at bodyTimeoutMs with a 408 (the stream fastify reads errors out).
  app.addHook("preParsing", async (_req, reply, payload) => {
    const out = new PassThrough();
    const timer = setTimeout(() => {
      payload.unpipe(out);
      reply.header("connection", "close");
      out.destroy(new HttpError(408, `the request body did not arrive within ${cfg.bodyTimeoutMs} ms`, "timeout_error", null, "body_timeout"));
    }, cfg.bodyTimeoutMs);
    const stop = () => clearTimeout(timer);
    out.once("end", stop);
    out.once("close", stop);
    reply.raw.once("close", stop);
    payload.once("error", (e) => out.destroy(e));
    payload.pipe(out);
    return out;
  });
  app.addHook("onResponse", async (_req, reply) => {
    const k = String(reply.statusCode);
    ctx.requests[k] = (ctx.requests[k] ?? 0) + 1;
  });
  app.addHook("preClose", async () => {
    ctx.draining = true;
  });
  // While draining, close each connection after its response: a keep-alive connection
  // that turns idle after close() began would otherwise hold the shutdown open.
  app.addHook("onSend", async (_req, reply, payload) => {
    if (ctx.draining) reply.header("connection", "close");
    return payload;
  });
  app.addHook("onClose", async () => {
    await Promise.all([ctx.texts.close(), ctx.images.close()]);
  });
}
