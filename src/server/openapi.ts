/** The OpenAPI 3.1 document served at GET /openapi.json. */

const imageRef = {
  oneOf: [
    { type: "string", description: "a data: URL (data:image/png;base64,...) or bare base64 of an image file (JPEG, PNG, WebP, GIF, AVIF, TIFF)" },
    {
      type: "object",
      required: ["type", "image_url"],
      properties: {
        type: { const: "image_url" },
        image_url: { oneOf: [{ type: "object", required: ["url"], properties: { url: { type: "string" } } }, { type: "string" }] },
      },
    },
  ],
};

const error = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: {
        message: { type: "string" },
        type: { type: "string" },
        param: { type: ["string", "null"] },
        code: { type: ["string", "null"] },
      },
    },
  },
};

function errors(...codes: number[]): Record<string, unknown> {
  const text: Record<number, string> = {
    400: "bad JSON, a bad field or an unreadable image",
    401: "missing or wrong bearer token",
    413: "request body or input list too large",
    429: "queue full; retry (Retry-After header)",
    503: "shutting down",
    504: "the request's time limit passed",
  };
  return Object.fromEntries(codes.map((c) => [String(c), { description: text[c], content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } }]));
}

const scores = {
  type: "array",
  items: {
    type: "object",
    properties: {
      label: { type: "string" },
      logit: { type: "number", description: "cos · exp(logit_scale) + logit_bias" },
      probability: { type: "number", description: "sigmoid(logit), independent per label" },
    },
  },
};

export function openApiDocument(o: { modelName: string; search: boolean; auth: boolean }): Record<string, unknown> {
  const post = (summary: string, schema: unknown, response: unknown) => ({
    summary,
    ...(o.auth ? { security: [{ bearer: [] }] } : {}),
    requestBody: { required: true, content: { "application/json": { schema } } },
    responses: { "200": { description: "OK", content: { "application/json": { schema: response } } }, ...errors(400, 401, 413, 429, 503, 504) },
  });
  const paths: Record<string, unknown> = {
    "/v1/embeddings": {
      post: post(
        "Text and image embeddings (OpenAI-compatible), L2-normalised",
        {
          type: "object",
          required: ["input"],
          properties: {
            input: {
              oneOf: [
                { type: "string" },
                {
                  type: "array",
                  items: {
                    oneOf: [
                      { type: "string", description: "a text" },
                      { type: "object", required: ["type", "text"], properties: { type: { const: "text" }, text: { type: "string" } } },
                      imageRef.oneOf[1],
                    ],
                  },
                },
              ],
            },
            model: { type: "string", description: "echoed in the response" },
            encoding_format: { enum: ["float", "base64"], default: "float", description: "base64: little-endian float32 bytes" },
            dimensions: { type: "integer", description: "must equal the model's dimension if given" },
          },
        },
        {
          type: "object",
          properties: {
            object: { const: "list" },
            data: {
              type: "array",
              items: { type: "object", properties: { object: { const: "embedding" }, index: { type: "integer" }, embedding: { oneOf: [{ type: "array", items: { type: "number" } }, { type: "string" }] } } },
            },
            model: { type: "string" },
            usage: { type: "object", properties: { prompt_tokens: { type: "integer" }, total_tokens: { type: "integer" } } },
          },
        },
      ),
    },
    "/v1/classify": {
      post: post(
        "Zero-shot classification: per image, every label's sigmoid probability",
        {
          type: "object",
          required: ["images", "labels"],
          properties: {
            images: { type: "array", items: imageRef },
            labels: { type: "array", items: { type: "string" } },
            template: { type: "string", default: "This is a photo of {}." },
            model: { type: "string" },
          },
        },
        { type: "object", properties: { object: { const: "list" }, model: { type: "string" }, data: { type: "array", items: { type: "object", properties: { index: { type: "integer" }, scores } } } } },
      ),
    },
    "/v1/models": { get: { summary: "The served model", ...(o.auth ? { security: [{ bearer: [] }] } : {}), responses: { "200": { description: "OK" } } } },
    "/health": { get: { summary: "Liveness (no token needed)", responses: { "200": { description: "OK" } } } },
    "/stats": { get: { summary: "Batch sizes, queue depths, request counts, memory", ...(o.auth ? { security: [{ bearer: [] }] } : {}), responses: { "200": { description: "OK" } } } },
  };
  if (o.search) {
    paths["/v1/search"] = {
      post: post(
        "Search the image index: a text query (with sigmoid probability) or an image query (cosine only)",
        {
          type: "object",
          properties: { query: { type: "string" }, image: imageRef, k: { type: "integer", minimum: 1, maximum: 10000, default: 10 } },
        },
        {
          type: "object",
          properties: {
            object: { const: "list" },
            model: { type: "string" },
            data: { type: "array", items: { type: "object", properties: { rank: { type: "integer" }, path: { type: "string" }, cosine: { type: "number" }, probability: { type: "number" } } } },
          },
        },
      ),
    };
  }
  return {
    openapi: "3.1.0",
    info: { title: "siglip2 server", version: "1", description: `SigLIP 2 embeddings for model ${o.modelName}` },
    paths,
    components: {
      schemas: { Error: error },
      ...(o.auth ? { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } } : {}),
    },
  };
}
