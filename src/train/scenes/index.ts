/** Generated shape scenes with captions, referring expressions and boxes (issue 11, LocCa demo data). */
export * from "./spec.js";
export * from "./language.js";
export * from "./raster.js";
export * from "./svg.js";
export * from "./dataset.js";
export * from "./locca.js";
export * from "./dense.js";
export * from "./vocab.js";
export * from "./eval.js";
