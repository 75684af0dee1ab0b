/**
 * Print the parity tables (max-abs difference to transformers per stage per fixture)
 * as Markdown: fixed-resolution fixtures, then NaFlex fixtures. Usage: `npm run parity`.
 */
import {
  FIXTURE_NAMES, NAFLEX_FIXTURE_NAMES, measureFixture, measureNaflexFixture, type StageResult,
} from "../tests/harness/parity.js";

const fmt = (r: StageResult | undefined): string => {
  if (!r) return "–";
  if (r.exact) return r.ok ? "exact" : `**${r.maxAbs} differ**`;
  const v = r.maxAbs === 0 ? "0" : r.maxAbs.toExponential(1);
  return r.ok ? v : `**${v}**`;
};

function table(results: Map<string, StageResult[]>): number {
  const names = [...results.keys()];
  const stages: string[] = [];
  for (const rs of results.values()) for (const r of rs) if (!stages.includes(r.stage)) stages.push(r.stage);
  const tolOf = (s: string): string => {
    for (const rs of results.values()) {
      const r = rs.find((x) => x.stage === s);
      if (r) return r.exact ? "exact" : /hidden|pooler/.test(s) ? "1e-4·max(1,‖ref‖∞)" : r.tol.toExponential(0);
    }
    return "";
  };
  console.log(`| stage | tolerance | ${names.join(" | ")} |`);
  console.log(`|---|---|${names.map(() => "---").join("|")}|`);
  for (const s of stages) console.log(`| ${s} | ${tolOf(s)} | ${names.map((f) => fmt(results.get(f)!.find((r) => r.stage === s))).join(" | ")} |`);
  return [...results.values()].flat().filter((r) => !r.ok).length;
}

const fixres = new Map<string, StageResult[]>();
for (const f of FIXTURE_NAMES) fixres.set(f, await measureFixture(f));
/** Fold per-image NaFlex rows (`….<image>`) into one row holding the worst image. */
function perImageMax(rs: StageResult[]): StageResult[] {
  const out = new Map<string, StageResult>();
  for (const r of rs) {
    const key = /^(m\d+\.(hidden_states\.\d+|last_hidden_state|position_embeddings|pixel_values\.valid))\.\d+$/.test(r.stage) ? r.stage.replace(/\.\d+$/, "[i]") : r.stage;
    const prev = out.get(key);
    if (!prev) out.set(key, { ...r, stage: key });
    else out.set(key, { ...prev, maxAbs: Math.max(prev.maxAbs, r.maxAbs), ok: prev.ok && r.ok });
  }
  return [...out.values()];
}

const naflex = new Map<string, StageResult[]>();
for (const f of NAFLEX_FIXTURE_NAMES) naflex.set(f, perImageMax(await measureNaflexFixture(f)));

console.log("Fixed resolution\n");
let bad = table(fixres);
console.log("\nNaFlex\n");
bad += table(naflex);
console.log(`\n${bad === 0 ? "all stages within tolerance" : `${bad} stage(s) out of tolerance`}`);
process.exitCode = bad === 0 ? 0 : 1;
