/**
 * CORS: with allowed origins configured, responses to those origins carry
 * `access-control-allow-origin`, and `OPTIONS *` answers preflights (204). Off by default.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { SiglipError } from "../errors.js";

/** Allowed origins: "*" for any, or a set of exact origins; null when CORS is off. */
export type CorsOrigins = "*" | Set<string> | null;

/**
 * The allowed CORS origins: null (CORS off), "*", or a set of exact origins. Each must be an
 * origin (scheme://host[:port], nothing after it).
 */
export function parseCorsOrigins(cors: string | string[] | undefined): CorsOrigins {
  if (cors === undefined) return null;
  const list = (Array.isArray(cors) ? cors : [cors]).flatMap((c) => c.split(",")).map((c) => c.trim()).filter((c) => c.length > 0);
  if (list.length === 0) throw new SiglipError("usage", `CORS origin list is empty (give "*" or origins like https://app.example)`);
  if (list.includes("*")) return "*";
  for (const o of list) {
    let ok = false;
    try {
      ok = new URL(o).origin === o;
    } catch {
      ok = false;
    }
    if (!ok) throw new SiglipError("usage", `CORS origin ${JSON.stringify(o.slice(0, 100))} is not an origin (scheme://host[:port], e.g. https://app.example or http://localhost:3000, or "*")`);
  }
  return new Set(list);
}

/** Set the CORS response headers for this request; true for a preflight (browsers send it without credentials). */
export function applyCors(req: FastifyRequest, reply: FastifyReply, origins: CorsOrigins): boolean {
  if (origins === null) return false;
  const origin = req.headers.origin;
  if (origin !== undefined && (origins === "*" || origins.has(origin))) {
    reply.header("access-control-allow-origin", origins === "*" ? "*" : origin);
    reply.header("access-control-expose-headers", "retry-after");
  }
  if (origins !== "*") reply.header("vary", "Origin");
  return req.method === "OPTIONS";
}

/** The preflight route (`OPTIONS *`), registered only when CORS is on. */
export function corsPreflightRoute(app: FastifyInstance, origins: CorsOrigins): void {
  if (origins === null) return;
  app.options("*", async (req, reply) => {
    const asked = req.headers["access-control-request-headers"];
    const allow = typeof asked === "string" && asked.length <= 1000 && /^[\w\-, ]*$/.test(asked) && asked.trim().length > 0 ? asked : "authorization, content-type";
    return reply
      .code(204)
      .header("access-control-allow-methods", "GET, POST, OPTIONS")
      .header("access-control-allow-headers", allow)
      .header("access-control-max-age", "600")
      .send();
  });
}
