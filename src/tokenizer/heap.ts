/**
 * A binary min-heap of numbers, the priority queue of BPE merges (./bpe.ts): keys are
 * `rank * POS_LIMIT + position`, so the lowest rank pops first and, among equal ranks, the
 * leftmost position.
 */

/** Binary min-heap of numbers (the composite keys `rank * POS_LIMIT + position`). */
export class MinHeap {
  private a: number[] = [];

  get size(): number {
    return this.a.length;
  }

  push(v: number): void {
    const a = this.a;
    let i = a.length;
    a.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pv = a[p]!;
      if (pv <= v) break;
      a[i] = pv;
      i = p;
    }
    a[i] = v;
  }

  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let m = l;
        let mv = a[l]!;
        if (r < n && a[r]! < mv) {
          m = r;
          mv = a[r]!;
        }
        if (mv >= last) break;
        a[i] = mv;
        i = m;
      }
      a[i] = last;
    }
    return top;
  }
}
