/**
 * One writer per table: `siglip2 index` holds `<db>/<table>.lock` (the writer's
 * pid) while it runs. A lock left by a process that no longer exists (kill -9, power
 * loss) is taken over; a live one is a one-line error.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { SiglipError } from "../errors.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export class TableLock {
  private constructor(readonly path: string) {}

  /** Take the lock for `table` in `dbPath`, or throw a SiglipError naming the holder. */
  static acquire(dbPath: string, table: string): TableLock {
    mkdirSync(dbPath, { recursive: true });
    const path = join(dbPath, `${table}.lock`);
    const mine = JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() });
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        writeFileSync(path, mine, { flag: "wx" });
        return new TableLock(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
          throw new SiglipError("index", `cannot create the lock file ${path} (${(e as Error).message})`, { subject: path });
        }
      }
      let holder: { pid?: number; host?: string } = {};
      try {
        holder = JSON.parse(readFileSync(path, "utf8")) as typeof holder;
      } catch {
        /* unreadable or half-written: treat as stale */
      }
      const sameHost = holder.host === undefined || holder.host === hostname();
      if (typeof holder.pid === "number" && holder.pid !== process.pid && (!sameHost || alive(holder.pid))) {
        throw new SiglipError(
          "index",
          `another siglip2 index (pid ${holder.pid}${sameHost ? "" : ` on ${holder.host}`}) is updating table "${table}" in DB ${dbPath}; wait for it, or delete ${path} if that process is gone`,
          { subject: path },
        );
      }
      rmSync(path, { force: true }); // stale: its writer is gone
    }
    throw new SiglipError("index", `cannot take the lock ${path}`, { subject: path });
  }

  release(): void {
    rmSync(this.path, { force: true });
  }
}
