/**
 * The browser's stand-in for src/weights/fingerprint.ts (tools/build-web.ts resolves
 * `weights/fingerprint.js` here): a weight file's identity is what its server says about it
 * — the URL, the size and the ETag (else Last-Modified) seen by src/web/http-source.ts —
 * instead of a SHA-256 of the file, which would mean downloading all of it.
 *
 * Reference: RFC 9110 §8.8 (validators: ETag, Last-Modified).
 */

/** URL → "size/etag" as recorded when the file was opened. */
const identities = new Map<string, string>();

/** Record the validator of an opened weight file. */
export function recordIdentity(url: string, identity: string): void {
  identities.set(url, identity);
}

/** Same signature as the Node version: identity of the weight files, in order. */
export async function contentIdentity(paths: readonly string[], _memoDir: string | null): Promise<string> {
  return JSON.stringify(paths.map((p) => [p, identities.get(p) ?? "unknown"]));
}
