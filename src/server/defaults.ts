/** Defaults of the server's options (src/server/app.ts), apart so that the CLI's --help needs no fastify. */
export const SERVER_DEFAULTS = {
  maxBatchSize: 32,
  maxWaitMs: 5,
  maxQueue: 4096,
  maxInputs: 2048,
  bodyLimit: 20 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  bodyTimeoutMs: 30_000,
  labelCacheSize: 4096,
} as const;

/** The longest time a timer can wait (node's setTimeout fires at once beyond it). */
export const MAX_TIMEOUT_MS = 2_147_483_647 - 10_000;
