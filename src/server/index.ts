/** The embedding server (see README "Server"): `createServer(model, options)` returns a fastify instance. */
export { createServer, parseCorsOrigins, type ServerOptions, type ServerStats } from "./app.js";
export { MicroBatcher, Gate, QueueFullError, ClosedError, type BatcherOptions, type BatcherStats } from "./batcher.js";
export { float32ToBase64, base64ToFloat32 } from "./inputs.js";
export { SERVER_DEFAULTS } from "./defaults.js";
