/**
 * Imported before `@lancedb/lancedb` (src/search/store.ts): LanceDB's Rust side logs warnings
 * to stderr (object-store retries and throttling, "no existing dataset"), which would break the
 * one-line rule of our errors. Only errors are logged unless the user sets `LANCEDB_LOG`.
 */
process.env["LANCEDB_LOG"] ??= "error";
export {};
