/**
 * Print the parity table (max-abs difference to transformers per stage per fixture)
 * as Markdown. Usage: `npm run parity`.
 */
import { FIXTURE_NAMES, measureFixture, type StageResult } from "../tests/harness/parity.js";

const results = new Map<string, StageResult[]>();
for (const f of FIXTURE_NAMES) results.set(f, await measureFixture(f));

const stages: string[] = [];
for (const rs of results.values()) for (const r of rs) if (!stages.includes(r.stage)) stages.push(r.stage);

const fmt = (r: StageResult | undefined): string => {
  if (!r) return "–";
  if (r.exact) return r.ok ? "exact" : `**${r.maxAbs} differ**`;
  const v = r.maxAbs === 0 ? "0" : r.maxAbs.toExponential(1);
  return r.ok ? v : `**${v}**`;
};
const tolOf = (s: string): string => {
  for (const rs of results.values()) {
    const r = rs.find((x) => x.stage === s);
    if (r) return r.exact ? "exact" : s.includes("hidden") || s.includes("pooler") ? "1e-4·max(1,‖ref‖∞)" : r.tol.toExponential(0);
  }
  return "";
};
console.log(`| stage | tolerance | ${FIXTURE_NAMES.join(" | ")} |`);
console.log(`|---|---|${FIXTURE_NAMES.map(() => "---").join("|")}|`);
for (const s of stages) console.log(`| ${s} | ${tolOf(s)} | ${FIXTURE_NAMES.map((f) => fmt(results.get(f)!.find((r) => r.stage === s))).join(" | ")} |`);
const bad = [...results.values()].flat().filter((r) => !r.ok).length;
console.log(`\n${bad === 0 ? "all stages within tolerance" : `${bad} stage(s) out of tolerance`}`);
process.exitCode = bad === 0 ? 0 : 1;
