/**
 * Several real processes racing for one table lock (src/search/lock.ts, built into
 * dist/): each waits at a barrier, then all call TableLock.acquire at once. A winner
 * holds the lock until the race is over, so two winners in one trial mean two writers.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { tempDir } from "./files.js";
import { REPO } from "./paths.js";

const CHILD = `
const [lockUrl, db, go] = process.argv.slice(1);
const { existsSync } = await import("node:fs");
const { TableLock } = await import(lockUrl);
const nap = new Int32Array(new SharedArrayBuffer(4));
process.stdout.write("ready\\n");
while (!existsSync(go)) Atomics.wait(nap, 0, 0, 1);
let lock;
try {
  lock = TableLock.acquire(db, "images");
} catch (e) {
  process.stdout.write("lost " + JSON.stringify(e.message) + "\\n");
  process.exit(0);
}
process.stdout.write("won " + process.pid + "\\n");
process.stdin.resume();
process.stdin.on("end", () => { lock.release(); process.exit(0); });
`;

export interface RaceTrial {
  /** pids of the processes that got the lock. */
  winners: number[];
  /** The error messages of the others. */
  losers: string[];
}

/**
 * `trials` races of `contenders` processes against a stale lock (a dead pid on this
 * host), each in a fresh DB folder. `prepare(db)` may add more (e.g. a stale guard).
 */
export async function lockRace(trials: number, contenders: number, prepare?: (db: string) => void): Promise<RaceTrial[]> {
  const lockUrl = pathToFileURL(join(REPO, "dist", "search", "lock.js")).href;
  const out: RaceTrial[] = [];
  for (let t = 0; t < trials; t++) {
    const db = tempDir("siglip2-lock-");
    writeFileSync(join(db, "images.lock"), JSON.stringify({ pid: 2 ** 22 + 4321, host: hostname(), since: "2020-01-01T00:00:00Z" }));
    prepare?.(db);
    const go = join(db, "go");
    const kids = Array.from({ length: contenders }, () =>
      spawn(process.execPath, ["--input-type=module", "-e", CHILD, lockUrl, db, go], { stdio: ["pipe", "pipe", "pipe"] }));
    const text = kids.map(() => "");
    kids.forEach((k, i) => k.stdout.on("data", (d: Buffer) => (text[i] += d.toString())));
    const closed = kids.map((k) => new Promise<void>((res) => k.on("close", () => res())));
    const lineOf = (i: number, re: RegExp, ms: number) =>
      new Promise<boolean>((res) => {
        const timer = setTimeout(() => res(false), ms);
        const check = () => {
          if (re.test(text[i]!)) {
            clearTimeout(timer);
            res(true);
          }
        };
        kids[i]!.stdout.on("data", check);
        void closed[i]!.then(() => {
          check();
          clearTimeout(timer);
          res(re.test(text[i]!));
        });
      });
    const ready = kids.map((_, i) => lineOf(i, /ready/, 20_000));
    const finished = kids.map((_, i) => lineOf(i, /won|lost/, 40_000));
    const allReady = (await Promise.all(ready)).every(Boolean);
    writeFileSync(go, "");
    const allDone = allReady && (await Promise.all(finished)).every(Boolean);
    for (const k of kids) k.stdin.end();
    await Promise.all(closed);
    if (!allDone) throw new Error(`lock race trial ${t}: a contender did not answer: ${JSON.stringify(text)}`);
    out.push({
      winners: text.flatMap((s) => [...s.matchAll(/^won (\d+)$/gm)].map((m) => Number(m[1]))),
      losers: text.flatMap((s) => [...s.matchAll(/^lost (.*)$/gm)].map((m) => JSON.parse(m[1]!) as string)),
    });
  }
  return out;
}
