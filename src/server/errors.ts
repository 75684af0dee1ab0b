/**
 * Error mapping: every failure becomes `{"error": {"message", "type", "param", "code"}}` with the
 * status OpenAI clients expect (see README "Server" for the table). Covers errors thrown by
 * routes and hooks (the fastify error handler), unknown routes (404), requests fastify refuses
 * before routing, and malformed HTTP answered on the socket.
 */
import type { Socket } from "node:net";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { SiglipError } from "../errors.js";
import { ClosedError, QueueFullError } from "./batcher.js";
import { HttpError, preview } from "./inputs.js";

/** The error body of every failed request. */
export function errorBody(message: string, type: string, param: string | null = null, code: string | null = null) {
  return { error: { message, type, param, code } };
}

/** The OpenAI error `type` of an HTTP status. */
export function statusType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 404) return "not_found_error";
  if (status === 408) return "timeout_error";
  if (status === 429) return "rate_limit_error";
  if (status === 503) return "service_unavailable";
  if (status === 504) return "timeout_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** The request's deadline passed (504). */
export class TimeoutError extends Error {
  constructor(ms: number) {
    super(`request timed out after ${ms} ms`);
    this.name = "TimeoutError";
  }
}

/** The client went away: its work is dropped, and there is nobody to answer. */
export class ClientGoneError extends Error {
  constructor() {
    super("client closed the connection");
    this.name = "ClientGoneError";
  }
}

/** The first line of a message, cut to `max` characters. */
export function firstLine(s: string, max = 200): string {
  const l = s.split("\n")[0]!;
  return l.length > max ? `${l.slice(0, max)}…` : l;
}

/** fastify's `frameworkErrors`: requests refused before routing (a malformed %-escape in the path), in our shape. */
export function frameworkErrors(err: Error, _req: unknown, reply: unknown): void {
  void (reply as FastifyReply).code(400).send(errorBody(`bad request URL: ${firstLine(err.message)}`, "invalid_request_error", null, "bad_url"));
}

/** fastify's `clientErrorHandler`: malformed HTTP, oversized headers, node's own timeouts, answered on the socket. */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, text, message] =
    err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? [408, "Request Timeout", "the request did not arrive in time"]
      : err.code === "HPE_HEADER_OVERFLOW" ? [431, "Request Header Fields Too Large", "the request headers are too large (16 KiB at most)"]
        : [400, "Bad Request", `malformed HTTP request (${err.code ?? "parse error"})`];
  const body = JSON.stringify(errorBody(message, statusType(status)));
  if (socket.writable) socket.write(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  socket.destroy(err);
}

/**
 * The error and not-found handlers. Status by error: HttpError its own; QueueFullError 429
 * (retry-after 1); ClosedError 503; TimeoutError 504; ClientGoneError 499; SiglipError 400 for
 * the client's problems (codes input, image, usage), else 500 (logged); fastify's 4xx with
 * clearer messages; anything else 500 (logged).
 */
export function installErrorHandlers(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof HttpError) return reply.code(err.statusCode).send(errorBody(err.message, err.type, err.param, err.code));
    if (err instanceof QueueFullError) return reply.code(429).header("retry-after", "1").send(errorBody(err.message, "rate_limit_error", null, "queue_full"));
    if (err instanceof ClosedError) return reply.code(503).header("connection", "close").send(errorBody(err.message, "service_unavailable", null, "shutting_down"));
    if (err instanceof TimeoutError) return reply.code(504).send(errorBody(err.message, "timeout_error", null, "timeout"));
    if (err instanceof ClientGoneError) return reply.code(499).send(errorBody(err.message, "invalid_request_error"));
    if (err instanceof SiglipError) {
      const client = ["input", "image", "usage"].includes(err.code);
      if (!client) req.log.error(err);
      return reply.code(client ? 400 : 500).send(errorBody(firstLine(err.message, 400), client ? "invalid_request_error" : "server_error", null, err.code));
    }
    const status = (err as FastifyError).statusCode;
    if (typeof status === "number" && status >= 400 && status < 500) {
      const code = (err as FastifyError).code;
      let msg = firstLine(err.message);
      if (code === "FST_ERR_CTP_BODY_TOO_LARGE") msg = `request body too large (limit ${bodyLimit} bytes)`;
      if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") msg = `unsupported content type ${preview(req.headers["content-type"] ?? "")}; send application/json`;
      if (code === "FST_ERR_CTP_INVALID_CONTENT_LENGTH") msg = "the request body's length does not match its Content-Length header";
      return reply.code(status).send(errorBody(msg, statusType(status)));
    }
    req.log.error(err);
    return reply.code(500).send(errorBody(`internal error: ${firstLine(err.message)}`, "server_error"));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(`no route ${req.method} ${req.url.split("?")[0]!.slice(0, 200)}`, "not_found_error"));
  });
}
