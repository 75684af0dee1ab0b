/**
 * Prints the hostile-input campaign table: cases tried per area and how each ended.
 *
 *   npm run hostile            # all cases
 *   npm run hostile -- server  # one area (or several, space-separated)
 *   npm run hostile -- --list  # every case with its outcome and detail
 *
 * The columns crash, hang, garbage (silently wrong output), data lost and unclear error
 * must all be 0; "mismatch" counts cases whose clean outcome differs from the one expected
 * (an error where a result was due, or the reverse).
 */
import { loadCases } from "../tests/hostile/cases.js";
import { OUTCOMES, runCases, type CaseResult, type HostileCase } from "../tests/hostile/harness.js";

const args = process.argv.slice(2);
const list = args.includes("--list");
const areas = args.filter((a) => !a.startsWith("--"));
const all = await loadCases();
const cases = areas.length > 0 ? all.filter((c) => areas.includes(c.area)) : all;
const t0 = performance.now();
const results = await runCases(cases, 2, (c, r) => {
  if (list || (r.outcome !== c.expect)) process.stderr.write(`${r.outcome === c.expect ? "ok  " : "FAIL"} ${c.area}/${c.id}: ${r.outcome}: ${r.detail}\n`);
});

type Row = Record<string, number>;
const rows = new Map<string, Row>();
const blank = (): Row => Object.fromEntries([["tried", 0], ...OUTCOMES.map((o) => [o, 0]), ["mismatch", 0]]);
for (const c of cases) {
  const r = results.get(c.id) as CaseResult;
  for (const key of [c.area, "total"]) {
    const row = rows.get(key) ?? blank();
    row["tried"]!++;
    row[r.outcome]!++;
    if ((r.outcome === "clean-error" || r.outcome === "correct") && r.outcome !== c.expect) row["mismatch"]!++;
    rows.set(key, row);
  }
}
const order = [...[...rows.keys()].filter((k) => k !== "total").sort(), "total"];
const cols: Array<[string, string]> = [
  ["tried", "cases tried"], ["clean-error", "clean error"], ["correct", "correct result"], ["crash", "crash"],
  ["hang", "hang"], ["garbage", "silent garbage"], ["data-lost", "data lost"], ["unclear-error", "unclear error"], ["mismatch", "mismatch"],
];
console.log(`hostile-input campaign: ${cases.length} cases, ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
console.log(`| area | ${cols.map((c) => c[1]).join(" | ")} |`);
console.log(`|---|${cols.map(() => "---").join("|")}|`);
for (const k of order) {
  const row = rows.get(k)!;
  const name = k === "total" ? "**total**" : k;
  console.log(`| ${name} | ${cols.map(([c]) => String(row[c])).join(" | ")} |`);
}
const bad = cases.filter((c: HostileCase) => results.get(c.id)!.outcome !== c.expect).length;
process.exitCode = bad > 0 ? 1 : 0;
