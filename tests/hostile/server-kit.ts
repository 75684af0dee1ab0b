/**
 * Shared pieces of the server cases (cases-server*.ts): one real server per case file,
 * started on first use (127.0.0.1, port 0), reused by its cases, and closed once no case has
 * used it for a moment (the campaign and the test runner give no "end of file" hook; the
 * server is also unref'd, so it never keeps the process alive).
 */
import type { FastifyInstance } from "fastify";
import { SigLIP2 } from "../../src/api.js";
import { createServer, type ServerOptions } from "../../src/server/app.js";
import { httpRequest, type CaseResult, type HttpResult } from "./harness.js";

export interface Served {
  url: string;
  app: FastifyInstance;
  model: SigLIP2;
  /** Run after the server and the model are closed. */
  onClose?: () => Promise<void> | void;
}

/** A lazily started server shared by the cases of one file. */
export function sharedServer(start: () => Promise<Served>, idleCloseMs = 1500): { use<T>(fn: (s: Served) => Promise<T>): Promise<T> } {
  let running: Promise<Served> | null = null;
  let users = 0;
  let idle: NodeJS.Timeout | null = null;
  const close = async (p: Promise<Served>) => {
    const s = await p;
    await s.app.close();
    await s.model.close();
    await s.onClose?.();
  };
  return {
    async use<T>(fn: (s: Served) => Promise<T>): Promise<T> {
      if (idle) clearTimeout(idle);
      idle = null;
      users++;
      running ??= start().then((s) => {
        s.app.server.unref();
        return s;
      });
      const p = running;
      try {
        return await fn(await p);
      } finally {
        if (--users === 0) {
          idle = setTimeout(() => {
            if (users > 0 || running !== p) return;
            running = null;
            void close(p);
          }, idleCloseMs);
          idle.unref();
        }
      }
    },
  };
}

/** Start a server on 127.0.0.1 with a free port. */
export async function listen(model: SigLIP2, options: ServerOptions = {}): Promise<Served> {
  const app = createServer(model, options);
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  return { url, app, model };
}

/** Whether GET /health answers 200 "ok" within `timeoutMs`. */
export async function healthy(url: string, timeoutMs = 3000): Promise<string | null> {
  const r = await httpRequest(`${url}/health`, { timeoutMs });
  if (r.timedOut) return `GET /health did not answer within ${timeoutMs} ms`;
  if (r.status !== 200 || (r.json as { status?: string } | undefined)?.status !== "ok") return `GET /health gave HTTP ${r.status}: ${r.text.slice(0, 120)}`;
  return null;
}

/** Run one case against a server, then require the server to be healthy (else the case is a hang). */
export async function thenHealthy(url: string, result: CaseResult): Promise<CaseResult> {
  const why = await healthy(url);
  return why ? { outcome: "hang", detail: `${result.outcome} (${result.detail}), but then ${why}` } : result;
}

/** JSON POST. */
export function postJson(url: string, body: unknown, headers: Record<string, string> = {}, timeoutMs?: number): Promise<HttpResult> {
  return httpRequest(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });
}
