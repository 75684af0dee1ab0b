/**
 * A real redis-server for the queue tests, started by the test on a free loopback port
 * (`--save '' --appendonly no`: nothing written to disk) and stopped after. redis-server is
 * required (Debian package `redis-server`, installed by .ci/run): its absence is a failure,
 * never a skipped test.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer, connect } from "node:net";

export interface RedisServer {
  port: number;
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** A port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function answers(port: number, password?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, "127.0.0.1");
    let buf = "";
    c.setTimeout(500, () => (c.destroy(), resolve(false)));
    c.on("error", () => resolve(false));
    c.on("connect", () => c.write(password !== undefined ? `AUTH ${password}\r\nPING\r\n` : "PING\r\n"));
    c.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("PONG") || buf.includes("NOAUTH")) {
        c.destroy();
        resolve(true);
      }
    });
  });
}

/**
 * Start redis-server (extra args e.g. `--requirepass x`); throws with a clear message when it is
 * not installed. `at.port`: that port (a restart), not a free one; `at.dir`: its working folder, so
 * that `SHUTDOWN SAVE` writes dump.rdb there and a restart with the same folder loads it.
 */
export async function startRedis(extra: string[] = [], at: { port?: number; dir?: string } = {}): Promise<RedisServer> {
  const which = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  if (which.error || which.status !== 0) {
    throw new Error("redis-server is not installed: the queue tests need it (apt-get install redis-server; .ci/run installs it)");
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = at.port ?? (await freePort());
    const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...(at.dir !== undefined ? ["--dir", at.dir] : []), ...extra], { stdio: "ignore" });
    const deadline = Date.now() + 10_000;
    let exited = false;
    proc.once("exit", () => (exited = true));
    const pwIdx = extra.indexOf("--requirepass");
    while (!exited && Date.now() < deadline) {
      if (await answers(port, pwIdx >= 0 ? extra[pwIdx + 1] : undefined)) {
        return {
          port,
          url: `redis://127.0.0.1:${port}`,
          proc,
          stop: () => new Promise<void>((r) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return r();
            proc.once("exit", () => r());
            proc.kill("SIGKILL");
          }),
        };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    proc.kill("SIGKILL");
    if (at.port !== undefined) break;
  }
  throw new Error("redis-server did not start on a free port (5 tries)");
}
