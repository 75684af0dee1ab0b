/** Image index and search on LanceDB (see README "Index and search"). */
export { DEFAULT_TABLE, ImageStore, defaultDbPath, rowModelId, storeFailure, type TableMeta, type ImageRow, type StoredImage } from "./store.js";
export { buildIndex, openForIndexing, DEFAULT_INDEX_BATCH, type IndexOptions, type IndexPlan, type IndexSummary } from "./indexer.js";
export { searchByVector, searchImage, searchText, searchTerms, combineQueries, parseWeighted, checkK, checkQuery, DEFAULT_K, MAX_K, type SearchHit, type SearchOptions, type QueryTerm } from "./search.js";
export { filterSql, parseDate, parseTypes, globToRegex, type SearchFilters } from "./filters.js";
export { findDuplicates, type DuplicateGroup, type DedupeOptions } from "./dedupe.js";
export { DEFAULT_ANN_THRESHOLD, type AnnSettings, type AnnState, type NearestOptions, type FileMeta } from "./store.js";
export { embeddingSetup, modelName, assertSameModel, type EmbeddingSetup } from "./identity.js";
export { checkpointFingerprint } from "./fingerprint.js";
export { walkImages, sha256File, IMAGE_EXTENSIONS, type WalkedFile } from "./walk.js";
export { TableLock } from "./lock.js";
export { shownPath, checkTableName } from "./paths.js";
