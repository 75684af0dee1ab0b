/**
 * The added-token matcher of the Gemma tokenizer (step 1 of the pipeline in ./gemma.ts): a trie
 * over UTF-16 code units that splits a text into added tokens (leftmost-longest, as the
 * `AddedVocabulary` of Hugging Face `tokenizers` matches them) and the stretches between them.
 */

/** One node of the added-token trie, over UTF-16 code units. */
interface TrieNode {
  id: number;
  children: Map<number, TrieNode>;
}

/** Leftmost-longest matcher over a fixed set of strings. */
export class AddedTokenMatcher {
  private readonly root: TrieNode = { id: -1, children: new Map() };
  private count = 0;

  add(content: string, id: number): void {
    let node = this.root;
    for (let i = 0; i < content.length; i++) {
      const c = content.charCodeAt(i);
      let child = node.children.get(c);
      if (child === undefined) {
        child = { id: -1, children: new Map() };
        node.children.set(c, child);
      }
      node = child;
    }
    // On duplicate contents the later entry wins, like a map keyed by content.
    node.id = id;
    this.count++;
  }

  get empty(): boolean {
    return this.count === 0;
  }

  /**
   * Calls `onText` for every non-empty stretch between matches and `onToken` for every match, in
   * order. At each position the longest token starting there wins; scanning resumes after it.
   */
  split(text: string, onText: (s: string) => void, onToken: (id: number) => void): void {
    const r = this.splitUntil(text, text.length, onText, onToken);
    if (r.segStart < text.length) onText(text.slice(r.segStart));
  }

  /**
   * {@link split}, but scanning stops at the first position at or after `stop` that no match
   * covers. Everything reported is exactly what `split` reports for the whole text: the trie walk
   * from a position before `stop` reads the whole text, not a copy cut at `stop`. The stretch from
   * `segStart` to `pos` is not reported: it is the start of the next text stretch, whose end is not
   * known yet (empty when `segStart === pos`). `pos === text.length` when the whole text was scanned.
   */
  splitUntil(text: string, stop: number, onText: (s: string) => void, onToken: (id: number) => void): { segStart: number; pos: number } {
    const n = text.length;
    if (this.count === 0) return { segStart: 0, pos: Math.min(n, Math.max(stop, 0)) };
    let segStart = 0;
    let i = 0;
    while (i < n && i < stop) {
      let node = this.root.children.get(text.charCodeAt(i));
      if (node === undefined) {
        i++;
        continue;
      }
      let bestId = -1;
      let bestEnd = i;
      let j = i + 1;
      for (;;) {
        if (node.id >= 0) {
          bestId = node.id;
          bestEnd = j;
        }
        if (j >= n) break;
        const next: TrieNode | undefined = node.children.get(text.charCodeAt(j));
        if (next === undefined) break;
        node = next;
        j++;
      }
      if (bestId < 0) {
        i++;
        continue;
      }
      if (i > segStart) onText(text.slice(segStart, i));
      onToken(bestId);
      i = bestEnd;
      segStart = i;
    }
    return { segStart, pos: i };
  }
}
