/** GET /v1/models and GET /v1/models/{id} (the OpenAI SDKs' models.list and models.retrieve): one model is served. */
import type { FastifyInstance } from "fastify";
import type { ServerContext } from "../context.js";
import { HttpError, preview } from "../inputs.js";

export function modelRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { model } = ctx;
  const { modelName } = ctx.cfg;
  const modelCard = () => ({
    id: modelName, object: "model", created: Math.floor(ctx.started / 1000), owned_by: "siglip2", dimensions: model.dim, naflex: model.isNaflex,
  });
  app.get("/v1/models", async () => ({ object: "list", data: [modelCard()] }));
  // The SDKs' models.retrieve(id): ids may hold "/" (Hub ids), sent as is or as %2F.
  app.get("/v1/models/*", async (req) => {
    const id = (req.params as Record<string, string>)["*"] ?? "";
    if (id !== modelName) {
      throw new HttpError(404, `model ${preview(id)} is not served here; this server serves ${JSON.stringify(modelName)}`, "not_found_error", "model", "model_not_found");
    }
    return modelCard();
  });
}
