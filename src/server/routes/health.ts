/** GET /health (open), GET /stats (counters; `?gc=1` collects first), GET /openapi.json (open). */
import type { FastifyInstance } from "fastify";
import type { ServerContext, ServerStats } from "../context.js";
import { openApiDocument } from "../openapi.js";

export function healthRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { modelName } = ctx.cfg;
  app.get("/health", async (_req, reply) => {
    if (ctx.draining) reply.code(503);
    return { status: ctx.draining ? "draining" : "ok", model: modelName, uptime_s: Math.round((Date.now() - ctx.started) / 1000) };
  });

  // `?gc=1` runs a full garbage collection first when node was started with --expose-gc
  // (bench/serve-load.ts uses it to tell retained memory from garbage awaiting collection).
  app.get("/stats", async (req): Promise<ServerStats> => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if ((req.query as Record<string, string> | undefined)?.["gc"] === "1" && typeof gc === "function") gc();
    return {
      model: modelName,
      uptimeS: (Date.now() - ctx.started) / 1000,
      draining: ctx.draining,
      requests: { ...ctx.requests },
      batches: { text: ctx.texts.stats(), image: ctx.images.stats() },
      labelCache: ctx.labels.stats(),
      memory: process.memoryUsage(),
    };
  });

  app.get("/openapi.json", async () => openApiDocument({ modelName, search: ctx.options.store !== undefined, auth: ctx.cfg.keyDigest !== null }));
}
