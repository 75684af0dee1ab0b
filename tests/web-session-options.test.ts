/**
 * src/web/session-options.ts `webSessionOptions` (used by src/web/runtime.ts): the tower's runtime options that mean something in
 * onnxruntime-web reach its session options (the text tower's `spin: false`, as on Node,
 * src/graph/session-options.ts), and nothing else changes onnxruntime's defaults.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { runtimeOptions } from "../src/models/tower.js";
import { webSessionOptions } from "../src/web/session-options.js";

test("webSessionOptions: spin=false becomes session.intra_op.allow_spinning=0", () => {
  const o = webSessionOptions({ spin: false }, ["wasm"]);
  assert.deepEqual(o.extra, { session: { "intra_op.allow_spinning": "0" } });
  assert.equal(o.graphOptimizationLevel, "all");
  assert.equal(o.logSeverityLevel, 4);
  assert.deepEqual(o.executionProviders, ["wasm"]);
});

test("webSessionOptions: without spin=false, onnxruntime-web's defaults (no extra session entries)", () => {
  assert.equal(webSessionOptions({}, ["wasm"]).extra, undefined);
  assert.equal(webSessionOptions({ spin: true, prepack: true }, ["wasm"]).extra, undefined);
  // the vision towers' options (no spin setting)
  assert.equal(webSessionOptions(runtimeOptions({ dtype: "int8" }), ["wasm"]).extra, undefined);
});
