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
    400: "bad JSON, a bad field, an unreadable image, or (truncate: false) a text over the model's window",
    401: "missing or wrong bearer token",
    408: "the request body did not arrive in time",
    413: "request body or input list too large",
    415: "the body is not application/json, or is compressed",
    429: "queue full; retry (Retry-After header)",
    500: "the model gave a non-finite result (a broken checkpoint)",
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

const truncate = { type: ["boolean", "null"], default: true, description: "false: a text over the model's 63-token window is a 400 instead of being cut" };
const anyModel = { type: ["string", "null"], description: "any name (one model is served; the response names it)" };

export function openApiDocument(o: { modelName: string; search: boolean; auth: boolean }): Record<string, unknown> {
  const post = (summary: string, schema: unknown, response: unknown) => ({
    summary,
    ...(o.auth ? { security: [{ bearer: [] }] } : {}),
    requestBody: { required: true, content: { "application/json": { schema } } },
    responses: { "200": { description: "OK", content: { "application/json": { schema: response } } }, ...errors(400, 401, 408, 413, 415, 429, 500, 503, 504) },
  });
  const modelSchema = {
    type: "object",
    properties: { id: { type: "string" }, object: { const: "model" }, created: { type: "integer" }, owned_by: { type: "string" }, dimensions: { type: "integer" }, naflex: { type: "boolean" } },
  };
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
                  maxItems: 2048,
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
            model: anyModel,
            encoding_format: { enum: ["float", "base64", null], default: "float", description: "base64: little-endian float32 bytes" },
            dimensions: { type: ["integer", "null"], description: "must equal the model's dimension if given" },
            user: { type: ["string", "null"], description: "accepted and ignored" },
            truncate,
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
            usage: {
              type: "object",
              properties: {
                prompt_tokens: { type: "integer", description: "tokens the text tower read: content kept plus <eos>, summed" },
                total_tokens: { type: "integer" },
                truncated_inputs: { type: "integer", description: "texts cut to the model's 63-token window" },
              },
            },
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
            template: { type: ["string", "null"], default: "This is a photo of {}." },
            model: anyModel,
            truncate,
          },
        },
        { type: "object", properties: { object: { const: "list" }, model: { type: "string" }, data: { type: "array", items: { type: "object", properties: { index: { type: "integer" }, scores } } } } },
      ),
    },
    "/v1/models": {
      get: {
        summary: "The served model",
        ...(o.auth ? { security: [{ bearer: [] }] } : {}),
        responses: { "200": { description: "OK", content: { "application/json": { schema: { type: "object", properties: { object: { const: "list" }, data: { type: "array", items: modelSchema } } } } } } },
      },
    },
    "/v1/models/{id}": {
      get: {
        summary: "The served model by id (models.retrieve); 404 model_not_found for any other",
        ...(o.auth ? { security: [{ bearer: [] }] } : {}),
        parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" }, description: "may contain / (or %2F)" }],
        responses: { "200": { description: "OK", content: { "application/json": { schema: modelSchema } } }, "404": { description: "not this server's model" } },
      },
    },
    "/health": { get: { summary: "Liveness (no token needed); 503 while draining", responses: { "200": { description: "OK" }, "503": { description: "shutting down" } } } },
    "/stats": { get: { summary: "Batch sizes, queue depths, request counts, memory", ...(o.auth ? { security: [{ bearer: [] }] } : {}), responses: { "200": { description: "OK" } } } },
  };
  if (o.search) {
    paths["/v1/search"] = {
      post: post(
        "Search the image index: a text query (with sigmoid probability) or an image query (cosine only)",
        {
          type: "object",
          properties: {
            query: { type: ["string", "null"] }, image: imageRef, k: { type: ["integer", "null"], minimum: 1, maximum: 10000, default: 10 }, truncate,
            plus: { type: "array", items: { type: "string" }, maxItems: 16, description: 'texts added to the query, optionally weighted: "sunset:0.5"' },
            minus: { type: "array", items: { type: "string" }, maxItems: 16, description: 'texts subtracted: "people" or "people:0.5"; the query becomes normalise(Σ wᵢ·eᵢ), cosines only' },
            exact: { type: "boolean", description: "scan every row even when the index has an ANN index" },
            filter: {
              type: "object",
              description: "applied inside the query; dates ISO 8601 (no zone = UTC), after inclusive, before exclusive",
              properties: {
                path_prefix: { type: "string" }, glob: { type: "string" }, after: { type: "string" }, before: { type: "string" },
                taken_after: { type: "string" }, taken_before: { type: "string" }, type: { type: ["string", "array"], items: { type: "string" } },
                min_width: { type: "integer", minimum: 1 }, min_height: { type: "integer", minimum: 1 },
                where: { type: "string", description: "LanceDB SQL over path, size, mtime_ms, ext, width, height, taken_ms" },
              },
              additionalProperties: false,
            },
          },
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
    const secured = o.auth ? { security: [{ bearer: [] }] } : {};
    paths["/v1/thumbnails"] = {
      get: {
        summary: "A WebP thumbnail of an indexed image (only files in the index, only while their bytes are the indexed ones)",
        ...secured,
        parameters: [
          { name: "path", in: "query", required: true, schema: { type: "string" }, description: "the path as /v1/search returns it" },
          { name: "size", in: "query", schema: { enum: ["256", "1024"], default: "256" }, description: "longest edge in pixels (never enlarged)" },
        ],
        responses: {
          "200": { description: "image/webp; ETag, Cache-Control: private, max-age=300", content: { "image/webp": {} } },
          "304": { description: "If-None-Match matched" },
          ...errors(400, 401, 503),
          "422": { description: "an indexed file too large (over 256 MiB) or impossible to resize", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
          "404": { description: "not in the index, or the file changed since it was indexed", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
        },
      },
    };
    paths["/v1/index"] = {
      get: {
        summary: "What the index holds: table, image count, dimensions",
        ...secured,
        responses: { "200": { description: "OK", content: { "application/json": { schema: { type: "object", properties: { object: { const: "index" }, model: { type: "string" }, table: { type: "string" }, images: { type: "integer" }, dimensions: { type: "integer" } } } } } } },
      },
    };
    paths["/"] = { get: { summary: "The web UI (no token needed for the page; it asks for the key)", responses: { "200": { description: "text/html" } } } };
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
