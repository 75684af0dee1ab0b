/**
 * A small least-recently-used cache (Map keeps insertion order; a hit moves the key to the end).
 * Shared by the library's label-set cache (src/api.ts) and the server's per-prompt label cache
 * (src/server/classify): every cache of this project is bounded.
 */
export class LruCache<K, V> {
  private readonly map = new Map<K, V>();
  private hits = 0;
  private misses = 0;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError("capacity must be at least 1");
  }

  get size(): number {
    return this.map.size;
  }

  has(k: K): boolean {
    return this.map.has(k);
  }

  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(k);
    this.map.set(k, v);
    return v;
  }

  set(k: K, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    while (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as K);
  }

  stats(): { size: number; hits: number; misses: number } {
    return { size: this.map.size, hits: this.hits, misses: this.misses };
  }
}
