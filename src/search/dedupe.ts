/**
 * Near-duplicate images in an index: a self-join of the table by cosine similarity.
 *
 * Every row asks the table for its neighbours with cosine ≥ `threshold` (LanceDB's
 * distance range; an exact scan on small tables, the IVF-PQ index with exact re-rank on
 * big ones, so a self-join costs one ANN query per row); the cosines are recomputed in
 * float64 from the stored vectors. Pairs are joined into groups by single linkage (A~B
 * and B~C put A, B and C in one group). The table is read page by page.
 *
 * The best copy of a group: the largest resolution (width × height, after EXIF
 * orientation; unknown = 0), then the most bytes, then the first path in code-point order.
 */
import { SiglipError } from "../errors.js";
import { dot } from "../tasks/similarity.js";
import type { ImageStore, StoredImage } from "./store.js";

export const DEFAULT_DEDUPE_THRESHOLD = 0.97;
/** Neighbours asked for per row (a group larger than this is still found through its members). */
const NEIGHBOURS = 64;
const PAGE = 4096;

export interface DedupeOptions {
  /** Cosine from which two images are duplicates (default 0.97). */
  threshold?: number;
  /** Exact scans even when the table has an ANN index. */
  exact?: boolean;
  /** Rows done so far of the table's rows. */
  onProgress?: (done: number, total: number) => void;
}

/** One member of a group: its path and what ranks it. */
export interface DuplicateMember {
  path: string;
  width: number | null;
  height: number | null;
  bytes: number;
}

/** A group of near-duplicates, best first; `best` is its path. */
export interface DuplicateGroup {
  group: DuplicateMember[];
  best: string;
}

export function checkThreshold(t: number): number {
  if (typeof t !== "number" || !Number.isFinite(t) || t <= 0 || t > 1) throw new SiglipError("usage", `--threshold must be a cosine above 0 and at most 1, got ${String(t)}`);
  return t;
}

/** Better copy first: resolution, then bytes, then path. */
export function compareCopies(a: DuplicateMember, b: DuplicateMember): number {
  const ra = (a.width ?? 0) * (a.height ?? 0);
  const rb = (b.width ?? 0) * (b.height ?? 0);
  if (ra !== rb) return rb - ra;
  if (a.bytes !== b.bytes) return b.bytes - a.bytes;
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

function member(r: StoredImage): DuplicateMember {
  const w = r.meta?.width;
  const h = r.meta?.height;
  return { path: r.path, width: w !== undefined && w >= 0 ? w : null, height: h !== undefined && h >= 0 ? h : null, bytes: r.size };
}

/** The groups of near-duplicate images in the table, sorted by their best path. */
export async function findDuplicates(store: ImageStore, options: DedupeOptions = {}): Promise<DuplicateGroup[]> {
  const threshold = checkThreshold(options.threshold ?? DEFAULT_DEDUPE_THRESHOLD);
  const total = await store.count();
  const parent = new Map<string, string>();
  const find = (x: string): string => {
    let r = x;
    while (parent.get(r) !== r) r = parent.get(r)!;
    for (let y = x; parent.get(y) !== r;) {
      const n = parent.get(y)!;
      parent.set(y, r);
      y = n;
    }
    return r;
  };
  const union = (a: string, b: string) => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent.set(ra < rb ? rb : ra, ra < rb ? ra : rb);
  };
  const members = new Map<string, { m: DuplicateMember; gen: number }>();
  // a little slack on LanceDB's float32 distance; the float64 cosine decides
  const maxDistance = 1 - threshold + 1e-4;
  let done = 0;
  for (let off = 0; off < total; off += PAGE) {
    const page = await store.page(off, PAGE);
    for (const r of page) {
      const near = await store.nearest(r.vector, NEIGHBOURS, { maxDistance, ...(options.exact ? { exact: true } : {}) });
      for (const n of near) {
        if (n.path === r.path || dot(n.vector, r.vector) < threshold) continue;
        for (const x of [r, n]) {
          if (!parent.has(x.path)) parent.set(x.path, x.path);
          const o = members.get(x.path);
          if (!o || x.gen > o.gen) members.set(x.path, { m: member(x), gen: x.gen });
        }
        union(r.path, n.path);
      }
    }
    done += page.length;
    options.onProgress?.(done, total);
    if (page.length === 0) break;
  }
  const groups = new Map<string, DuplicateMember[]>();
  for (const [path, { m }] of members) {
    const root = find(path);
    const g = groups.get(root);
    if (g) g.push(m);
    else groups.set(root, [m]);
  }
  const out: DuplicateGroup[] = [];
  for (const g of groups.values()) {
    if (g.length < 2) continue;
    g.sort(compareCopies);
    out.push({ group: g, best: g[0]!.path });
  }
  out.sort((a, b) => (a.best < b.best ? -1 : a.best > b.best ? 1 : 0));
  return out;
}
