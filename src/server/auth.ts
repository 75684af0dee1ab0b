/**
 * API-key authentication: `Authorization: Bearer <key>` on every route except the open ones
 * ({@link OPEN_ROUTES}). Keys are compared as SHA-256 digests in constant time.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { SiglipError } from "../errors.js";
import { HttpError } from "./inputs.js";

/**
 * Routes that need no key: load balancers and API browsers reach them without one, and
 * browsers load the web UI's page and script (they hold no data; the page asks for the key).
 */
export const OPEN_ROUTES = new Set(["/health", "/openapi.json", "/", "/ui/:file"]);

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/** The digest of the configured key (surrounding spaces ignored), or null when auth is off; an empty key is an error. */
export function apiKeyDigest(apiKey: string | undefined): Buffer | null {
  if (apiKey === undefined) return null;
  if (apiKey.trim().length === 0) throw new SiglipError("usage", "the API key is empty");
  return digest(apiKey.trim());
}

/** Throw a 401 HttpError (with `www-authenticate`) unless the request may reach its route. */
export function checkApiKey(req: FastifyRequest, reply: FastifyReply, keyDigest: Buffer | null): void {
  const route = req.routeOptions.url;
  if (keyDigest === null || (route !== undefined && OPEN_ROUTES.has(route))) return;
  const h = req.headers.authorization ?? "";
  const m = /^Bearer\s+(\S.*)$/i.exec(h);
  // Both sides are SHA-256 digests: equal length, and the comparison takes the same time
  // wherever they differ.
  if (!m || !timingSafeEqual(digest(m[1]!.trim()), keyDigest)) {
    reply.header("www-authenticate", 'Bearer realm="siglip2"');
    const why = m ? "invalid API key" : h === "" ? "missing API key: send Authorization: Bearer <key>" : "the Authorization header is not a Bearer token: send Authorization: Bearer <key>";
    throw new HttpError(401, why, "authentication_error");
  }
}
