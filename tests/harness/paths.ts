import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Repository root and fixture folder. */
export const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const FIXTURES = join(REPO, "tests", "fixtures");

// Built ONNX models go to a fresh cache per test process (spawned CLIs inherit it), never ~/.cache.
process.env["SIGLIP2_CACHE"] ??= mkdtempSync(join(tmpdir(), "siglip2-onnx-cache-"));
