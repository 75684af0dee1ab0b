/**
 * The embedding server: a fastify app around one loaded model.
 *
 * ```ts
 * const app = createServer(model, { apiKey: "secret" });
 * await app.listen({ host: "127.0.0.1", port: 8080 });
 * ...
 * await app.close(); // stops accepting, finishes in-flight requests, drains the batchers
 * ```
 *
 * Endpoints (see README "Server" and GET /openapi.json): POST /v1/embeddings
 * (OpenAI-compatible), POST /v1/classify, POST /v1/search (with a store),
 * GET /v1/models, GET /v1/models/{id}, GET /health, GET /stats, GET /openapi.json; with a store
 * also the web UI at GET / (routes/ui.ts: the page, GET /v1/thumbnails, GET /v1/index).
 *
 * Texts are tokenized on the event loop in short slices (the tokenizer reads only the start of a
 * long text), then texts and images from concurrent requests are merged into model calls by two
 * {@link MicroBatcher}s that share a {@link Gate} (one forward pass at a time).
 *
 * The parts: options and shared state (context.ts), request plumbing (hooks.ts), API keys
 * (auth.ts), CORS (cors.ts), error mapping (errors.ts), body validation (inputs.ts), and one
 * file per route group (routes/).
 */
import { fastify, type FastifyInstance } from "fastify";
import type { SigLIP2 } from "../api.js";
import { ServerContext, resolveConfig, type ServerOptions } from "./context.js";
import { corsPreflightRoute } from "./cors.js";
import { clientErrorHandler, frameworkErrors, installErrorHandlers } from "./errors.js";
import { installHooks } from "./hooks.js";
import { classifyRoute } from "./routes/classify.js";
import { embeddingsRoute } from "./routes/embeddings.js";
import { healthRoutes } from "./routes/health.js";
import { modelRoutes } from "./routes/models.js";
import { searchRoute } from "./routes/search.js";
import { uiRoutes } from "./routes/ui.js";

export type { ServerOptions, ServerStats } from "./context.js";
export { parseCorsOrigins } from "./cors.js";

/**
 * Build the server (not yet listening). Throws a SiglipError (code "usage") for inconsistent
 * options, e.g. `maxInputs` larger than `maxQueue`.
 */
export function createServer(model: SigLIP2, options: ServerOptions = {}): FastifyInstance {
  const cfg = resolveConfig(model, options);
  const ctx = new ServerContext(model, cfg, options);
  const app = fastify({
    logger: options.logger ?? false,
    bodyLimit: cfg.bodyLimit,
    // node's own limits, the backstop for slow clients: the headers within 10 s, the whole
    // request a little after bodyTimeoutMs (the preParsing hook answers 408 first),
    // checked every second (node's default is every 30 s).
    requestTimeout: cfg.bodyTimeoutMs + 5_000,
    http: { headersTimeout: Math.min(10_000, cfg.bodyTimeoutMs + 5_000), connectionsCheckingInterval: 1_000 },
    return503OnClosing: false, // the onRequest hook answers 503 in our error shape
    forceCloseConnections: "idle",
    frameworkErrors,
    clientErrorHandler,
  });
  installHooks(app, ctx);
  installErrorHandlers(app, cfg.bodyLimit);
  healthRoutes(app, ctx);
  modelRoutes(app, ctx);
  corsPreflightRoute(app, cfg.corsOrigins);
  embeddingsRoute(app, ctx);
  classifyRoute(app, ctx);
  if (options.store) {
    searchRoute(app, ctx, options.store);
    uiRoutes(app, ctx, options.store);
  }
  return app;
}
