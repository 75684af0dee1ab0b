/**
 * Duplicate-key detection for JSON texts. `JSON.parse` silently keeps the last of two
 * equal keys; file formats whose reference readers refuse duplicates (safetensors
 * headers) need to find them. The scan is iterative (no recursion limit) and runs on a
 * text that `JSON.parse` has already accepted, so it only has to tell strings, objects and
 * arrays apart.
 */

/** A key that occurs twice in one JSON object: its name and the path of that object (`$`, `$.a`, `$.a[3]`). */
export interface DuplicateKey {
  key: string;
  path: string;
}

/** The first duplicated key in any object of `text` (valid JSON), or null. */
export function findDuplicateKey(text: string): DuplicateKey | null {
  interface Frame { keys: Set<string> | null; path: string; index: number; pendingKey: string | null }
  const stack: Frame[] = [];
  let i = 0;
  const n = text.length;
  let expectKey = false;
  const childPath = (f: Frame | undefined): string => {
    if (!f) return "$";
    if (f.keys === null) return `${f.path}[${f.index}]`;
    return `${f.path}.${f.pendingKey ?? ""}`;
  };
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // string: find its end, honouring escapes
      let j = i + 1;
      let escaped = false;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) {
          escaped = true;
          j += 2;
        } else if (d === 0x22) break;
        else j++;
      }
      const top = stack[stack.length - 1];
      if (expectKey && top && top.keys !== null) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (top.keys.has(key)) return { key, path: top.path };
        top.keys.add(key);
        top.pendingKey = key;
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const path = childPath(stack[stack.length - 1]);
      stack.push({ keys: c === 0x7b ? new Set() : null, path, index: 0, pendingKey: null });
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top) {
        if (top.keys !== null) expectKey = true;
        else top.index++;
      }
    }
    i++;
  }
  return null;
}
