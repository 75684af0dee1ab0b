/**
 * The browser's stand-in for src/graph/runtime.ts: the same exports (`Pipeline`, `ort`,
 * `CARRY_IN`/`CARRY_OUT`, `ortError`), on onnxruntime-web. tools/build-web.ts resolves every
 * import of `graph/runtime.js` to this file, so src/models builds and runs its towers here
 * unchanged.
 *
 * The model cache is the Cache API instead of a folder: the serialised ONNX stages of a tower
 * are stored under the SHA-256 of the same key material as on Node (graph version, package
 * version, weight identity, config, build mode). A hit creates the sessions from the cached
 * bytes without reading a weight; a miss asks the page's `beforeBuild` hook to fetch the
 * tower's tensors, builds, stores and drops them again (`afterBuild`).
 *
 * Reference: onnxruntime-web `InferenceSession.create(bytes, { executionProviders })`, `env.wasm`;
 * the Cache API (https://developer.mozilla.org/docs/Web/API/Cache).
 */
import type * as OrtTypes from "onnxruntime-web";
import { SiglipError } from "../errors.js";
import { releaseStages, runStages } from "../graph/stages.js";
import type { Graph } from "../graph/graph.js";
import { ort } from "./ort.js";
import { webSessionOptions, type WebSessionSettings } from "./session-options.js";

/** Bump when the graphs a given checkpoint and options produce change (as src/graph/runtime.ts). */
export const GRAPH_VERSION = 2;
/** Part of every cache key (set by the bundle; a new release never reuses old graphs). */
export const PACKAGE_VERSION: string = typeof __SIGLIP2_VERSION__ === "string" ? __SIGLIP2_VERSION__ : "dev";
declare const __SIGLIP2_VERSION__: string | undefined;


export { CARRY_IN, CARRY_OUT } from "../graph/stages.js";

/** What src/models passes (the Node options; only those that mean something here are read). */
export interface RuntimeOptions extends WebSessionSettings {
  threads?: number;
  optimizationLevel?: "disabled" | "basic" | "extended" | "all";
  cacheDir?: string | null;
  cacheMaxBytes?: number;
}

/** As in src/graph/runtime.ts. */
export interface CacheSpec {
  model: string;
  tower: string;
  key: (hashDir: string) => Promise<unknown> | unknown;
}

/** How the page runs sessions; set by src/web/index.ts before a tower is built. */
export interface WebRuntimeSettings {
  /** onnxruntime-web execution providers, in order of preference ("webgpu", "wasm"). */
  executionProviders: string[];
  /** Cache API cache name for built ONNX stages; null: no cache. */
  cacheName: string | null;
  /** Fetch the tensors of `spec.tower` before it is built (a cache miss). */
  beforeBuild?: (spec: CacheSpec) => Promise<void>;
  /** The tower is built and its sessions exist: its tensors may be dropped. */
  afterBuild?: (spec: CacheSpec) => void;
  /** Called when a tower came from the cache (true) or was built (false). */
  onCache?: (tower: string, hit: boolean) => void;
}

export const webRuntime: WebRuntimeSettings = { executionProviders: ["wasm"], cacheName: "siglip2-onnx" };

/** An onnxruntime failure as one line naming what was being done. */
export function ortError(what: string, e: unknown): SiglipError {
  const raw = e instanceof Error ? e.message : String(e);
  const line = raw.split("\n").map((l) => l.trim()).filter((l) => l.length > 0).join(" ").replace(/\s+/g, " ");
  const msg = line.length > 300 ? `${line.slice(0, 300)}…` : line;
  return new SiglipError("runtime", `onnxruntime-web failed ${what}: ${msg}`, { cause: e });
}

export function defaultModelCacheDir(): string | null {
  return null;
}

async function sha256Hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Cache API keys of one entry (never fetched: the Cache API only needs a URL). */
function entryUrl(id: string, file: string): string {
  return `https://siglip2.cache/onnx/${id}/${file}`;
}

async function openCache(): Promise<Cache | null> {
  if (webRuntime.cacheName === null || typeof caches === "undefined") return null;
  try {
    return await caches.open(webRuntime.cacheName);
  } catch {
    return null; // opaque origins, private modes
  }
}

interface WebManifest {
  stages: number;
  names: string[];
  model: string;
  tower: string;
}

async function readEntry(cache: Cache, id: string): Promise<{ m: WebManifest; bytes: Uint8Array[] } | null> {
  const mr = await cache.match(entryUrl(id, "manifest.json"));
  if (!mr) return null;
  try {
    const m = (await mr.json()) as WebManifest;
    const bytes: Uint8Array[] = [];
    for (let i = 0; i < m.stages; i++) {
      const r = await cache.match(entryUrl(id, `stage-${i}.onnx`));
      if (!r) return null;
      bytes.push(new Uint8Array(await r.arrayBuffer()));
    }
    return { m, bytes };
  } catch {
    return null; // damaged: rebuilt
  }
}

async function createSession(model: Uint8Array, name: string, options: RuntimeOptions): Promise<OrtTypes.InferenceSession> {
  try {
    return await ort.InferenceSession.create(model, webSessionOptions(options, webRuntime.executionProviders));
  } catch (e) {
    throw ortError(`to load the ${name} graph`, e);
  }
}

/** A sequence of onnxruntime-web sessions run as one model (as src/graph/runtime.ts). */
export class Pipeline {
  private constructor(private readonly sessions: OrtTypes.InferenceSession[], private readonly names: string[]) {}

  /** The stages cached under the key of `spec` in the Cache API, or built (and stored). */
  static async cached(spec: CacheSpec, build: () => Graph[], options: RuntimeOptions = {}): Promise<Pipeline> {
    const cache = await openCache();
    const id = (await sha256Hex(JSON.stringify({ v: GRAPH_VERSION, pkg: PACKAGE_VERSION, key: await spec.key("") }))).slice(0, 32);
    if (cache) {
      const hit = await readEntry(cache, id);
      if (hit) {
        webRuntime.onCache?.(spec.tower, true);
        return Pipeline.fromBytes(hit.bytes, hit.m.names, options);
      }
    }
    await webRuntime.beforeBuild?.(spec);
    const stages = build();
    const names = stages.map((g) => g.name);
    const bytes = stages.map((g) => g.toModelBytes());
    webRuntime.afterBuild?.(spec);
    webRuntime.onCache?.(spec.tower, false);
    const p = await Pipeline.fromBytes(bytes, names, options);
    if (cache) {
      try {
        for (const [i, b] of bytes.entries()) await cache.put(entryUrl(id, `stage-${i}.onnx`), new Response(b as Uint8Array<ArrayBuffer>));
        const m: WebManifest = { stages: bytes.length, names, model: spec.model, tower: spec.tower };
        await cache.put(entryUrl(id, "manifest.json"), new Response(JSON.stringify(m))); // last: marks the entry complete
      } catch {
        /* quota: run without caching */
      }
    }
    return p;
  }

  static async create(stages: Graph[], options: RuntimeOptions = {}): Promise<Pipeline> {
    return Pipeline.fromBytes(stages.map((g) => g.toModelBytes()), stages.map((g) => g.name), options);
  }

  private static async fromBytes(bytes: Uint8Array[], names: string[], options: RuntimeOptions): Promise<Pipeline> {
    const sessions: OrtTypes.InferenceSession[] = [];
    try {
      for (const [i, b] of bytes.entries()) sessions.push(await createSession(b, names[i] ?? `stage ${i}`, options));
    } catch (e) {
      for (const s of sessions) await s.release().catch(() => undefined);
      throw e;
    }
    return new Pipeline(sessions, names);
  }

  get stageCount(): number {
    return this.sessions.length;
  }

  /** Run all stages; returns every non-carry output of every stage plus the final carry (src/graph/stages.ts). */
  run(feeds: Record<string, OrtTypes.Tensor>): Promise<Record<string, OrtTypes.Tensor>> {
    return runStages(this.sessions, this.names, feeds, ortError);
  }

  release(): Promise<void> {
    return releaseStages(this.sessions);
  }
}

export { ort };
