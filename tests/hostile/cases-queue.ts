/**
 * Hostile and careless use of `siglip2 index --queue` / `siglip2 worker` (area "index"):
 * URLs that are not Redis URLs, a closed port, a server that needs a password or gets a
 * wrong one, something that is not Redis (an HTTP answer, a silent port), absurd
 * --concurrency values, a queue nobody filled, and malformed job data pushed into the queue
 * by someone else (the worker fails that job with one line and goes on).
 * Every error case must be one line, exit 2, within the connect timeout (no hang).
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { Queue } from "bullmq";
import { tempDir } from "../harness/files.js";
import { FIXTURES } from "../harness/paths.js";
import { freePort, startRedis } from "../harness/redis.js";
import { expectCleanError, expectCorrect, jsonLines, runCli as runCliRaw, type CaseResult, type CliOptions, type CliResult, type HostileCase } from "./harness.js";

/**
 * Per-case limit: the connect timeout is 5 s; the rest is the CLI's start-up, which on a
 * machine shared by many jobs can take tens of seconds. A hang is still a hang at 60 s.
 */
const LIMIT_MS = 60_000;
const runCli = (args: string[], opts: CliOptions = {}): Promise<CliResult> => runCliRaw(args, { timeoutMs: LIMIT_MS, ...opts });

const F32 = join(FIXTURES, "models", "fixres-f32");

function onePhotoDir(): string {
  const dir = join(tempDir("siglip2-hq-"), "photos");
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(FIXTURES, "images", "rgb_23x37.png"), join(dir, "a.png"));
  return dir;
}

/** A TCP server on a free port that answers like `answer` (or never, when undefined). */
async function fakeServer(answer?: string): Promise<{ port: number; server: Server }> {
  const port = await freePort();
  const server = createServer((sock) => {
    sock.on("error", () => undefined);
    if (answer !== undefined) sock.on("data", () => sock.end(answer));
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return { port, server };
}

/** A clean error within the connect timeout (5 s) plus a (loaded machine's) start-up: a hang is not a clean error. */
function quick(res: CaseResult, ms: number, limit = LIMIT_MS): CaseResult {
  if (res.outcome === "clean-error" && ms > limit) return { outcome: "hang", detail: `took ${Math.round(ms)} ms: ${res.detail}` };
  return res;
}

const badUrls: Array<[string, string, Array<string | RegExp>]> = [
  ["queue-url-http-scheme", "http://127.0.0.1:6379", ["scheme is http", "redis://HOST:PORT"]],
  ["queue-url-not-a-url", "localhost:6379", ["not a URL", "redis://"]],
  ["queue-url-no-host", "redis://", ["no host"]],
  ["queue-url-port-too-large", "redis://127.0.0.1:70000", ["port must be 1 to 65535"]],
  ["queue-url-port-zero", "redis://127.0.0.1:0", ["port must be 1 to 65535"]],
  ["queue-url-db-not-a-number", "redis://127.0.0.1:6379/queue", ["database number"]],
  ["queue-url-query-string", "redis://127.0.0.1:6379?password=x", ["query strings"]],
  ["queue-url-newline", "redis://127.0.0.1:6379\n/0", ["control characters"]],
];

export const cases: HostileCase[] = [
  ...badUrls.map(([id, url, mentions]): HostileCase => ({
    id,
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const r = await runCli(["worker", "--queue", url, "--model", F32]);
      return expectCleanError(r, { mentions: ["--queue", ...mentions] });
    },
  })),
  {
    id: "queue-index-bad-url-before-any-work",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const db = join(tempDir("siglip2-hqdb-"), "db");
      const r = await runCli(["index", onePhotoDir(), "--queue", "ftp://x", "--model", F32, "--db", db]);
      return expectCleanError(r, { mentions: ["scheme is ftp"] });
    },
  },
  {
    id: "queue-closed-port-refused",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const port = await freePort(); // nothing listens there
      const r = await runCli(["index", onePhotoDir(), "--queue", `redis://127.0.0.1:${port}`, "--model", F32, "--db", join(tempDir(), "db")]);
      return quick(expectCleanError(r, { mentions: [`127.0.0.1:${port}`, "connection refused"] }), r.ms);
    },
  },
  {
    id: "queue-status-closed-port-refused",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const port = await freePort();
      const r = await runCli(["index", "--queue", `redis://127.0.0.1:${port}`, "--status"]);
      return quick(expectCleanError(r, { mentions: ["connection refused"] }), r.ms);
    },
  },
  {
    id: "queue-worker-closed-port-refused",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const port = await freePort();
      const r = await runCli(["worker", "--queue", `redis://127.0.0.1:${port}`, "--model", F32]);
      return quick(expectCleanError(r, { mentions: ["connection refused"] }), r.ms);
    },
  },
  {
    id: "queue-unknown-host",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const r = await runCli(["index", "--queue", "redis://no-such-host.invalid:6379", "--status"]);
      return quick(expectCleanError(r, { mentions: ["unknown host no-such-host.invalid"] }), r.ms);
    },
  },
  {
    id: "queue-http-server-not-redis",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const { port, server } = await fakeServer("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
      try {
        const r = await runCli(["index", "--queue", `redis://127.0.0.1:${port}`, "--status"]);
        return quick(expectCleanError(r, { mentions: [`127.0.0.1:${port}`] }), r.ms);
      } finally {
        server.close();
      }
    },
  },
  {
    id: "queue-silent-server-times-out",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const { port, server } = await fakeServer(); // accepts, never answers
      try {
        const r = await runCli(["worker", "--queue", `redis://127.0.0.1:${port}`, "--model", F32]);
        return quick(expectCleanError(r, { mentions: ["no answer within 5 s"] }), r.ms);
      } finally {
        server.close();
      }
    },
  },
  {
    id: "queue-password-needed",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const redis = await startRedis(["--requirepass", "s3cret"]);
      try {
        const r = await runCli(["index", "--queue", redis.url, "--status"]);
        return quick(expectCleanError(r, { mentions: ["needs a password", "redis://:PASSWORD@"] }), r.ms);
      } finally {
        await redis.stop();
      }
    },
  },
  {
    id: "queue-wrong-password-not-echoed",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const redis = await startRedis(["--requirepass", "s3cret"]);
      try {
        const r = await runCli(["worker", "--queue", `redis://:guess@127.0.0.1:${redis.port}`, "--model", F32]);
        const res = quick(expectCleanError(r, { mentions: ["refused the user name or password", ":***@"] }), r.ms);
        if (res.outcome === "clean-error" && r.stderr.includes("guess")) return { outcome: "unclear-error", detail: "the password is echoed" };
        return res;
      } finally {
        await redis.stop();
      }
    },
  },
  {
    id: "queue-right-password-works",
    area: "index",
    expect: "correct",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const redis = await startRedis(["--requirepass", "s3cret"]);
      try {
        const r = await runCli(["index", "--queue", `redis://:s3cret@127.0.0.1:${redis.port}`, "--status"]);
        return expectCorrect(r, (lines) => {
          const s = lines[0] as Record<string, unknown> | undefined;
          return s && s["waiting"] === 0 && s["filesTotal"] === 0 && !r.stdout.includes("s3cret") ? null : `status: ${r.stdout}`;
        });
      } finally {
        await redis.stop();
      }
    },
  },
  ...[["0", "positive integer"], ["100000", "at most 64"], ["1e12", "at most 64"], ["-3", "positive integer"], ["two", "positive integer"]].map(([n, why]): HostileCase => ({
    id: `queue-worker-concurrency-${n}`,
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const r = await runCli(["worker", "--queue", "redis://127.0.0.1:1", "--model", F32, "--concurrency", n!]);
      return expectCleanError(r, { mentions: ["--concurrency", why!] });
    },
  })),
  {
    id: "queue-worker-on-a-queue-nobody-filled",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const redis = await startRedis();
      try {
        const r = await runCli(["worker", "--queue", redis.url, "--model", F32, "--queue-name", "empty-one"]);
        return expectCleanError(r, { mentions: ["queue empty-one", "has no index run", "siglip2 index DIR --queue"] });
      } finally {
        await redis.stop();
      }
    },
  },
  {
    id: "queue-bad-queue-name",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const r = await runCli(["index", "--queue", "redis://127.0.0.1:1", "--queue-name", "a b:c", "--status"]);
      return expectCleanError(r, { mentions: ["--queue-name"] });
    },
  },
  {
    id: "queue-status-with-folders",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const r = await runCli(["index", onePhotoDir(), "--queue", "redis://127.0.0.1:1", "--status"]);
      return expectCleanError(r, { mentions: ["--status takes no folders"] });
    },
  },
  {
    id: "queue-status-without-queue",
    area: "index",
    expect: "clean-error",
    timeoutMs: LIMIT_MS,
    run: async () => {
      const r = await runCli(["index", "--status"]);
      return expectCleanError(r, { mentions: ["--status needs --queue"] });
    },
  },
  {
    id: "queue-malformed-jobs-fail-one-line-each-worker-goes-on",
    area: "index",
    expect: "correct",
    timeoutMs: 240_000,
    run: async () => {
      const redis = await startRedis();
      try {
        const db = join(tempDir("siglip2-hqdb-"), "db");
        const enq = await runCli(["index", onePhotoDir(), "--queue", redis.url, "--model", F32, "--db", db], { timeoutMs: 120_000 });
        if (enq.code !== 0) return { outcome: "unclear-error", detail: `enqueue failed: ${enq.stderr}` };
        const q = new Queue("siglip2-images", { connection: { host: "127.0.0.1", port: redis.port } });
        try {
          await q.add("batch", { garbage: true }, { jobId: "junk-1" });
          await q.add("batch", "not even an object", { jobId: "junk-2" });
          await q.add("batch", { v: 1, db, table: "images", fingerprint: "ab".repeat(32), files: [{ path: "../../etc/passwd", size: 1, mtimeMs: 1, sha256: "0".repeat(64) }] }, { jobId: "junk-3" });
        } finally {
          await q.close();
        }
        const r = await runCli(["worker", "--queue", redis.url, "--model", F32, "--until-empty", "--stalled-interval", "500"], { timeoutMs: 120_000 });
        const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
        const junk = lines.filter((l) => /malformed job data/.test(l));
        return expectCorrect(r, (out) => {
          if (junk.length !== 3) return `${junk.length} malformed-job lines, expected 3: ${r.stderr.slice(0, 400)}`;
          if (lines.some((l) => !l.startsWith("siglip2: "))) return `a stray stderr line: ${r.stderr.slice(0, 300)}`;
          if (!junk.every((l) => /job failed: job junk-\d: malformed job data/.test(l))) return `unclear line: ${junk[0]}`;
          const done = jsonLines(r.stdout) as Array<Record<string, unknown>>;
          return done.length === 1 && done[0]!["written"] === 1 ? null : `the real job: ${r.stdout}`;
        }, 1);
      } finally {
        await redis.stop();
      }
    },
  },
];
