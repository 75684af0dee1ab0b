/**
 * A checkpoint folder served over HTTP, in the Hugging Face layout of src/weights/checkpoint.ts:
 * `config.json`, `model.safetensors` or `model.safetensors.index.json` + shards,
 * `preprocessor_config.json`, `tokenizer.json`. The JSON files are fetched whole; the weights
 * are opened by their header (two range requests per file) and read by tensor afterwards
 * through {@link PrefetchedSource}. Same parsers and checks as on Node (config, shard index,
 * safetensors header, WeightStore).
 *
 * Reference: huggingface_hub file URLs (`https://huggingface.co/<id>/resolve/<revision>/<file>`).
 */
import { SiglipError } from "../errors.js";
import { parseConfig, type SiglipConfig } from "../weights/config.js";
import { SafetensorsReader, readHeader } from "../weights/safetensors-format.js";
import { SHARD_INDEX_FILE, parseShardIndex } from "../weights/shard-index.js";
import { WeightStore } from "../weights/weight-store.js";
import { HttpSource, PrefetchedSource, type HttpOptions, type Range } from "./http-source.js";

/** Largest JSON file fetched (as MAX_JSON_BYTES on Node). */
const MAX_JSON_BYTES = 64 * 1024 * 1024;

/** A Hub id (`org/name`) → its file base URL; any other string is a base URL (relative ones resolve against the page). */
export function checkpointBaseUrl(model: string, revision = "main"): string {
  if (/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(model) && !model.includes("..")) {
    return `https://huggingface.co/${model}/resolve/${encodeURIComponent(revision)}/`;
  }
  const base = typeof location !== "undefined" ? new URL(model, location.href) : new URL(model);
  return base.href.endsWith("/") ? base.href : `${base.href}/`;
}

/** Fetch a JSON file; `optional` → undefined on 404. Errors name the URL. */
export async function fetchJson(url: string, optional = false, f: typeof fetch = globalThis.fetch.bind(globalThis)): Promise<unknown> {
  let r: Response;
  try {
    r = await f(url);
  } catch (e) {
    throw new SiglipError("checkpoint", `${url}: cannot fetch (${e instanceof Error ? e.message : String(e)})`, { subject: url, cause: e });
  }
  if (r.status === 404 && optional) return undefined;
  if (!r.ok) throw new SiglipError("checkpoint", `${url}: HTTP ${r.status}${r.status === 404 ? " (not a checkpoint folder?)" : ""}`, { subject: url });
  const text = await r.text();
  if (text.length > MAX_JSON_BYTES) throw new SiglipError("checkpoint", `${url}: too large for a JSON file (limit ${MAX_JSON_BYTES} bytes)`, { subject: url });
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SiglipError("checkpoint", `${url}: not valid JSON (${(e as Error).message})`, { subject: url });
  }
}

/** The checkpoint of a base URL; `dir`, `config` and `weights` are what src/models reads. */
export class WebCheckpoint {
  private constructor(
    readonly dir: string,
    readonly config: SiglipConfig,
    readonly preprocessorConfig: unknown,
    readonly weights: WeightStore,
    private readonly sources: PrefetchedSource[],
  ) {}

  static async open(base: string, options: HttpOptions = {}): Promise<WebCheckpoint> {
    const dir = base.replace(/\/$/, "");
    const f = options.fetch ?? globalThis.fetch.bind(globalThis);
    const [cfgJson, pp, index] = await Promise.all([
      fetchJson(`${base}config.json`, false, f),
      fetchJson(`${base}preprocessor_config.json`, true, f),
      fetchJson(`${base}${SHARD_INDEX_FILE}`, true, f),
    ]);
    const config = parseConfig(cfgJson, `${base}config.json`);
    const open = async (url: string): Promise<{ reader: SafetensorsReader; source: PrefetchedSource }> => {
      const http = await HttpSource.open(url, options);
      const source = new PrefetchedSource(http);
      return { reader: new SafetensorsReader(source, await readHeader(http)), source };
    };
    if (index === undefined) {
      const single = await open(`${base}model.safetensors`);
      return new WebCheckpoint(dir, config, pp, WeightStore.of(single.reader.path, [single.reader]), [single.source]);
    }
    const parsed = parseShardIndex(index, `${base}${SHARD_INDEX_FILE}`);
    const opened = await Promise.all(parsed.shards.map((s) => open(`${base}${s}`)));
    const store = WeightStore.of(parsed.path, opened.map((o) => o.reader), { entries: parsed.entries, resolve: (s) => `${base}${s}` });
    return new WebCheckpoint(dir, config, pp, store, opened.map((o) => o.source));
  }

  private source(file: string): PrefetchedSource {
    return this.sources.find((s) => s.name === file)!;
  }

  /** Fetch every tensor whose name starts with one of `prefixes` (except `skip`), tagged `tag`. */
  async fetchTensors(prefixes: readonly string[], tag: string, skip: readonly string[] = []): Promise<void> {
    const byFile = new Map<string, Range[]>();
    for (const n of this.weights.names()) {
      if (!prefixes.some((p) => n.startsWith(p)) || skip.includes(n)) continue;
      const i = this.weights.info(n);
      byFile.set(i.file, [...(byFile.get(i.file) ?? []), [i.begin, i.end]]);
    }
    for (const [file, ranges] of byFile) await this.source(file).fetchRanges(ranges, tag);
  }

  /** Forget the tensors fetched under `tag` (a tower is built: its weights live in its session). */
  dropTensors(tag: string): void {
    for (const s of this.sources) s.drop(tag);
  }

  /** Fetch the rows `ids` of a 2-D tensor (the token table), by range requests. */
  async fetchRows(name: string, ids: Iterable<number>): Promise<void> {
    const i = this.weights.info(name);
    const rowBytes = (i.end - i.begin) / (i.shape[0] || 1);
    const valid = [...ids].filter((id) => Number.isInteger(id) && id >= 0 && id < i.shape[0]!); // others: the reader's error
    await this.source(i.file).fetchRows(i.begin, rowBytes, valid);
  }

  /** True when every weight file is read by ranges (false: a server without range support). */
  get ranged(): boolean {
    return this.sources.every((s) => s.http.ranged);
  }

  close(): void {
    for (const s of this.sources) s.clear();
  }
}
