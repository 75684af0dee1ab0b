/**
 * The web UI's files: `index.html`, `style.css` and `icon.svg` from src/server/ui/client/, and the page
 * script, compiled from the TypeScript beside them by `tsconfig.ui.json` (`npm run build`)
 * into dist/server/ui/client/. Both folders sit at the same place below the package root,
 * whether this module runs from src/ (tsx) or dist/, and both ship in the package.
 *
 * The files are read once, when the server is built; only these names are ever served.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root: this file is src/server/ui/assets.ts or dist/server/ui/assets.js. */
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** Where the HTML and CSS are. */
export const UI_SOURCE_DIR = join(ROOT, "src", "server", "ui", "client");
/** Where the compiled page script is. */
export const UI_BUILD_DIR = join(ROOT, "dist", "server", "ui", "client");

/** One file to serve. */
export interface Asset {
  bytes: Buffer;
  contentType: string;
  etag: string;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml",
};

/**
 * Content-Security-Policy of the page: its own scripts, styles and API only; images from
 * itself and the blob: URLs the page makes of thumbnails and query images.
 */
export const UI_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

function asset(path: string): Asset {
  const bytes = readFileSync(path);
  const ext = path.slice(path.lastIndexOf("."));
  return { bytes, contentType: TYPES[ext] ?? "application/octet-stream", etag: `"${createHash("sha256").update(bytes).digest("hex").slice(0, 32)}"` };
}

/** The UI's files by URL name (`index.html`, `style.css`, `icon.svg`, `app.js`, ...), or the one-line reason they are missing. */
export function loadUiAssets(): { assets: Map<string, Asset>; problem: string | null } {
  const assets = new Map<string, Asset>();
  const entry = join(UI_BUILD_DIR, "app.js");
  if (!existsSync(entry)) return { assets, problem: `the web UI is not built (${entry} is missing); run \`npm run build\`` };
  for (const f of ["index.html", "style.css", "icon.svg"]) assets.set(f, asset(join(UI_SOURCE_DIR, f)));
  for (const f of readdirSync(UI_BUILD_DIR)) if (/^[a-z][a-z0-9-]*\.js$/.test(f)) assets.set(f, asset(join(UI_BUILD_DIR, f)));
  return { assets, problem: null };
}
