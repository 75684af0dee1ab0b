/**
 * Every hostile-input case: the modules `tests/hostile/cases-*.ts`, each exporting
 * `cases: HostileCase[]`, loaded in file-name order.
 */
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { HostileCase } from "./harness.js";

const HERE = dirname(fileURLToPath(import.meta.url));

export async function loadCases(): Promise<HostileCase[]> {
  const files = readdirSync(HERE).filter((f) => /^cases-.*\.ts$/.test(f)).sort();
  const all: HostileCase[] = [];
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(HERE, f)).href)) as { cases?: HostileCase[] };
    if (!Array.isArray(mod.cases)) throw new Error(`${f} exports no cases array`);
    all.push(...mod.cases);
  }
  const seen = new Set<string>();
  for (const c of all) {
    if (seen.has(c.id)) throw new Error(`duplicate hostile case id ${c.id}`);
    seen.add(c.id);
  }
  return all;
}
