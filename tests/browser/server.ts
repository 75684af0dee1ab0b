/**
 * The browser tests' static server: node:http on 127.0.0.1 (random port), serving the test
 * page, the bundle (dist/web), and tests/fixtures, with byte ranges (`Accept-Ranges: bytes`,
 * `206` + `Content-Range`) and cross-origin isolation headers (so the page may use WASM threads).
 * Under `/noranges/` the same files are served without range support (plain 200). Every request
 * is logged (path, range, bytes sent) for the tests to inspect.
 *
 * Reference: RFC 9110 §14 (range requests); COOP/COEP (https://web.dev/articles/coop-coep).
 */
import { createReadStream, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";

export interface RequestLog {
  path: string;
  range: string | null;
  status: number;
  bytes: number;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json",
  ".wasm": "application/wasm", ".json": "application/json", ".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp",
  ".gif": "image/gif", ".safetensors": "application/octet-stream",
};

/** Serve `mounts` (URL prefix → folder). Resolves with the base URL, the log and a close function. */
export async function startServer(mounts: Record<string, string>): Promise<{ url: string; log: RequestLog[]; close: () => Promise<void>; server: Server }> {
  const log: RequestLog[] = [];
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    let path = decodeURIComponent(u.pathname);
    const noRanges = path.startsWith("/noranges/");
    if (noRanges) path = path.slice("/noranges".length);
    const mount = Object.keys(mounts).filter((m) => path.startsWith(m)).sort((a, b) => b.length - a.length)[0];
    const headers: Record<string, string> = {
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
      "Cache-Control": "no-store",
    };
    const done = (status: number, bytes: number): void => {
      log.push({ path: u.pathname, range: (req.headers.range as string | undefined) ?? null, status, bytes });
    };
    if (!mount) {
      res.writeHead(404, headers).end();
      return done(404, 0);
    }
    const root = mounts[mount]!;
    const file = normalize(join(root, path.slice(mount.length)));
    if (!(file === root || file.startsWith(root.endsWith(sep) ? root : root + sep))) {
      res.writeHead(403, headers).end();
      return done(403, 0);
    }
    let size: number;
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new Error("not a file");
      size = st.size;
    } catch {
      res.writeHead(404, headers).end();
      return done(404, 0);
    }
    headers["Content-Type"] = TYPES[extname(file)] ?? "application/octet-stream";
    headers["ETag"] = `"${size}-${Math.floor(statSync(file).mtimeMs)}"`;
    if (!noRanges) headers["Accept-Ranges"] = "bytes";
    const m = /^bytes=(\d+)-(\d*)$/.exec((req.headers.range as string | undefined) ?? "");
    if (m && !noRanges) {
      const start = Number(m[1]);
      const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start >= size || end < start) {
        res.writeHead(416, { ...headers, "Content-Range": `bytes */${size}` }).end();
        return done(416, 0);
      }
      res.writeHead(206, { ...headers, "Content-Range": `bytes ${start}-${end}/${size}`, "Content-Length": String(end - start + 1) });
      createReadStream(file, { start, end }).pipe(res);
      return done(206, end - start + 1);
    }
    res.writeHead(200, { ...headers, "Content-Length": String(size) });
    createReadStream(file).pipe(res);
    return done(200, size);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    server,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
