/**
 * Code-size figures for reviews: lines per folder of src/ (non-blank, non-comment lines and
 * total lines) and the longest functions (by lines, including nested bodies), from the
 * TypeScript syntax tree.
 *
 *   npx tsx tools/code-stats.ts [--top N] [DIR]
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";

const args = process.argv.slice(2);
const topIdx = args.indexOf("--top");
const top = topIdx >= 0 ? Number(args[topIdx + 1]) : 10;
const root = args.find((a, i) => !a.startsWith("--") && args[i - 1] !== "--top") ?? "src";

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

interface Fn { name: string; file: string; line: number; lines: number }
const perFolder = new Map<string, { files: number; lines: number; code: number }>();
const fns: Fn[] = [];

for (const f of files(root)) {
  const text = readFileSync(f, "utf8");
  const rel = relative(root, f);
  const folder = rel.includes("/") ? rel.split("/")[0]! : "(top)";
  const lines = text.split("\n");
  let code = 0;
  let inBlock = false;
  for (const raw of lines) {
    const l = raw.trim();
    if (inBlock) {
      if (l.includes("*/")) inBlock = false;
      continue;
    }
    if (l.length === 0 || l.startsWith("//")) continue;
    if (l.startsWith("/*")) {
      if (!l.includes("*/")) inBlock = true;
      continue;
    }
    code++;
  }
  const row = perFolder.get(folder) ?? { files: 0, lines: 0, code: 0 };
  row.files++;
  row.lines += lines.length;
  row.code += code;
  perFolder.set(folder, row);

  const sf = ts.createSourceFile(f, text, ts.ScriptTarget.ES2022, true);
  const visit = (node: ts.Node, owner: string): void => {
    let name: string | null = null;
    if (ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node)) name = node.name?.getText(sf) ?? "(anonymous)";
    else if (ts.isConstructorDeclaration(node)) name = "constructor";
    else if ((ts.isArrowFunction(node) || ts.isFunctionExpression(node)) && ts.isVariableDeclaration(node.parent)) name = node.parent.name.getText(sf);
    else if (ts.isGetAccessor(node) || ts.isSetAccessor(node)) name = node.name.getText(sf);
    if (name !== null) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      fns.push({ name: owner ? `${owner}.${name}` : name, file: rel, line: start + 1, lines: end - start + 1 });
    }
    const nextOwner = ts.isClassDeclaration(node) && node.name ? node.name.text : owner;
    ts.forEachChild(node, (c) => visit(c, nextOwner));
  };
  visit(sf, "");
}

const total = { files: 0, lines: 0, code: 0 };
console.log(`| folder of ${root}/ | files | lines | code lines |`);
console.log("|---|---|---|---|");
for (const [k, v] of [...perFolder.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
  console.log(`| ${k} | ${v.files} | ${v.lines} | ${v.code} |`);
  total.files += v.files;
  total.lines += v.lines;
  total.code += v.code;
}
console.log(`| **total** | ${total.files} | ${total.lines} | ${total.code} |`);
console.log(`\n| longest functions in ${root}/ | file:line | lines |`);
console.log("|---|---|---|");
for (const f of fns.sort((a, b) => b.lines - a.lines).slice(0, top)) console.log(`| ${f.name} | ${f.file}:${f.line} | ${f.lines} |`);
