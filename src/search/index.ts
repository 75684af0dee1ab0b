/** Image index and search on LanceDB (see README "Index and search"). */
export { DEFAULT_TABLE, ImageStore, defaultDbPath, rowModelId, storeFailure, type TableMeta, type ImageRow, type StoredImage } from "./store.js";
export { buildIndex, openForIndexing, DEFAULT_INDEX_BATCH, type IndexOptions, type IndexPlan, type IndexSummary } from "./indexer.js";
export { searchByVector, searchImage, searchText, checkK, checkQuery, DEFAULT_K, MAX_K, type SearchHit } from "./search.js";
export { embeddingSetup, modelName, assertSameModel, type EmbeddingSetup } from "./identity.js";
export { checkpointFingerprint } from "./fingerprint.js";
export { walkImages, sha256File, IMAGE_EXTENSIONS, type WalkedFile } from "./walk.js";
export { TableLock } from "./lock.js";
export { shownPath, checkTableName } from "./paths.js";
