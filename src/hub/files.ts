/**
 * One blob of the cache, downloaded safely: into `blobs/<etag>.incomplete` (resumed from
 * what is already there), retried while the transfer makes progress, checked against the
 * expected size and (for LFS files, whose ETag is the SHA-256 of the content) the digest,
 * then renamed atomically to `blobs/<etag>`. A half-written blob is never visible under
 * its final name; a corrupt one is deleted.
 */
import { existsSync } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { SiglipError } from "../errors.js";
import { sha256File } from "../weights/hash.js";
import { HubNetworkError, getOnce, hostOf, sameOrHubHost, type FileMeta } from "./http.js";
import type { HubContext } from "./settings.js";

/** Attempts without any new byte before a download is given up. */
const RETRIES = 5;
const RETRY_DELAY_MS = 1000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function fileSize(p: string): Promise<number> {
  try {
    return (await fsp.stat(p)).size;
  } catch {
    return 0;
  }
}

/** Downloads into `blobs/<etag>.incomplete` (resuming it), verifies it and renames it to `blobs/<etag>`. */
export async function downloadBlob(ctx: HubContext, filename: string, meta: FileMeta): Promise<void> {
  const blob = ctx.cache.blobPath(meta.etag);
  const incomplete = `${blob}.incomplete`;
  await fsp.mkdir(path.dirname(blob), { recursive: true });
  const { have, expected } = await fetchWithRetries(ctx, filename, meta, incomplete);
  await verify(ctx, filename, meta, incomplete, have, expected);
  try {
    await fsp.rename(incomplete, blob);
  } catch (e) {
    // Another process finished the same blob first.
    if ((e as NodeJS.ErrnoException).code !== "ENOENT" || !existsSync(blob)) throw e;
  }
}

/**
 * GETs the content into `incomplete`, from what it already holds, until it has the expected
 * size; a network failure is retried (from where it stopped) up to {@link RETRIES} times in a
 * row without progress. Reports progress to `ctx.onProgress`, ending with `done: true`.
 */
async function fetchWithRetries(ctx: HubContext, filename: string, meta: FileMeta, incomplete: string): Promise<{ have: number; expected: number | undefined }> {
  const headers: Record<string, string> = { ...ctx.headers, "accept-encoding": "identity" };
  if (!sameOrHubHost(ctx, meta.hubUrl, meta.location)) delete headers["authorization"];

  let expected = meta.size;
  let have = await fileSize(incomplete);
  if (expected !== undefined && have > expected) {
    await fsp.truncate(incomplete, 0);
    have = 0;
  }
  const report = ctx.onProgress;
  let lastTotal: number | undefined = expected;
  const onBytes = (bytes: number, total: number | undefined): void => {
    lastTotal = total;
    report?.({ file: filename, bytes, total, done: false });
  };
  let retriesLeft = RETRIES;
  try {
    while (expected === undefined || have < expected) {
      const before = have;
      try {
        const result = await getOnce(ctx, filename, meta.location, headers, incomplete, have, expected, onBytes);
        have = result.have;
        if (expected === undefined) expected = result.total ?? have;
        if (have >= expected) break;
        // The body ended early: resume.
        throw new HubNetworkError("connection closed early", hostOf(meta.location), undefined);
      } catch (e) {
        if (!(e instanceof HubNetworkError)) throw e;
        have = await fileSize(incomplete);
        if (have > before) retriesLeft = RETRIES;
        else retriesLeft--;
        if (retriesLeft <= 0) throw e;
        await sleep(RETRY_DELAY_MS);
      }
    }
  } finally {
    report?.({ file: filename, bytes: have, total: lastTotal, done: true });
  }
  return { have, expected };
}

/** Deletes `incomplete` and throws unless it has the expected size and (LFS files) SHA-256. */
async function verify(ctx: HubContext, filename: string, meta: FileMeta, incomplete: string, have: number, expected: number | undefined): Promise<void> {
  if (expected !== undefined && have !== expected) {
    await fsp.rm(incomplete, { force: true });
    throw new SiglipError(
      "hub",
      `download of ${filename} from ${ctx.repoId} has ${have} bytes instead of ${expected}; run again to retry`,
      { subject: filename },
    );
  }
  if (meta.linked && /^[0-9a-f]{64}$/.test(meta.etag)) {
    const digest = await sha256File(incomplete);
    if (digest !== meta.etag) {
      await fsp.rm(incomplete, { force: true });
      throw new SiglipError(
        "hub",
        `download of ${filename} from ${ctx.repoId} is corrupt (SHA-256 ${digest}, expected ${meta.etag}); run again to retry`,
        { subject: filename },
      );
    }
  }
}
