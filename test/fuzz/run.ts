/**
 * The fuzz target: the compiled binary on loopback, fed structure-aware inputs (generate.ts) from
 * several connections at once, before and after authentication, in v4 and v3, with liveness
 * probes (a fresh session must get CONFIG_GET_SERVER_INFO answered) and the server's descriptors
 * and RSS sampled after a warm-up and at the end. Run it in a network namespace of its own (the
 * server connects where inputs tell it to): CI does (test/integration/fuzz.test.ts), and so does
 * `npm run fuzz`, which runs it longer.
 *
 *   bun test/fuzz/run.ts --binary dist/ndmpd --seconds 20 [--seed N] [--findings DIR]
 *
 * Prints one JSON line: cases, records, crashes, hangs, fds and RSS. Exit 0 when all is clean.
 * A finding (the server died, or a probe went unanswered) is written to the findings directory
 * with the seeds of the cases in flight, to replay and to turn into a regression test.
 */
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NdmpClient } from "../../src/client/client.ts";
import { Message } from "../../src/protocol/codes.ts";
import { record, Rng } from "./generate.ts";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "");
const BINARY = args.get("binary") ?? "dist/ndmpd";
const SECONDS = Number(args.get("seconds") ?? 20);
const SEED = Number(args.get("seed") ?? Date.now() % 1_000_000);
const FINDINGS = args.get("findings") ?? "test/fuzz/findings";
const CONCURRENCY = 4;
const USER = "ndmp";
const PASSWORD = "fuzz-secret";
/** Descriptors and RSS may move this much between the warm-up and the end. */
const FD_SLACK = 4;
const RSS_SLACK_KIB = 96 * 1024;

const dir = mkdtempSync(join(tmpdir(), "ndmpd-fuzz-"));
const cfg = join(dir, "ndmpd.toml");
writeFileSync(
  cfg,
  `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "${dir}/state"\nauth_failure_delay_ms = 0\n\n[auth]\nmethods = ["md5", "text"]\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n\n[[tape]]\nname = "vt0"\npath = "${dir}/vt0.tape"\ncapacity = "64MiB"\n`,
);
chmodSync(cfg, 0o600);

const server = spawn(BINARY, ["serve", "--config", cfg, "--log-format", "json", "--log-level", "info"], { stdio: ["ignore", "ignore", "pipe"] });
const tail: string[] = [];
let pending = "";
let resolvePort!: (p: number) => void;
const portReady = new Promise<number>((r) => (resolvePort = r));
server.stderr!.on("data", (c: Buffer) => {
  pending += c.toString();
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    tail.push(line);
    if (tail.length > 200) tail.shift();
    if (line.includes('"listening"')) resolvePort(JSON.parse(line).port);
  }
});
let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
server.once("exit", (code, signal) => (exit = { code, signal }));
const port = await Promise.race([portReady, new Promise<number>((_, rej) => setTimeout(() => rej(new Error(`no listening line: ${tail.join("\n")}`)), 15_000))]);

const fds = () => readdirSync(`/proc/${server.pid}/fd`).length;
const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))![1]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const findings: Array<Record<string, unknown>> = [];
let cases = 0;
let records = 0;
const inFlight = new Set<number>();

/** One case: a connection, maybe authenticated (v4 or v3), then 1-30 records, then a close or a drop. */
async function fuzzCase(seed: number): Promise<void> {
  const r = new Rng(seed);
  inFlight.add(seed);
  let c: NdmpClient | undefined;
  try {
    c = await NdmpClient.connect("127.0.0.1", port, { timeoutMs: 10_000 });
    (c as unknown as { socket: { on(e: string, f: () => void): void } }).socket.on("error", () => {});
    if (r.chance(0.6)) {
      await c.open(r.chance(0.8) ? 4 : 3);
      await c.authText(USER, PASSWORD);
    }
    const n = 1 + r.below(30);
    for (let i = 0; i < n; i++) {
      c.sendRaw(record(r, 100 + i).bytes);
      records++;
      if (r.chance(0.1)) await sleep(r.below(30));
    }
    await sleep(r.chance(0.5) ? r.below(300) : 0);
  } catch {
    // the server refused or closed: its right, for hostile input
  } finally {
    const sock = (c as unknown as { socket?: { destroy(): void } } | undefined)?.socket;
    if (c && r.chance(0.5)) c.close();
    else sock?.destroy();
    inFlight.delete(seed);
    cases++;
  }
}

/** A fresh, well-behaved session must be served within 10 s. */
async function probe(): Promise<string | undefined> {
  let c: NdmpClient | undefined;
  const timer = new Promise<string>((r) => setTimeout(() => r("no answer within 10 s"), 10_000));
  const work = (async () => {
    c = await NdmpClient.connect("127.0.0.1", port, { timeoutMs: 10_000 });
    await c.open(4);
    await c.authText(USER, PASSWORD);
    const info = await c.request(Message.CONFIG_GET_SERVER_INFO);
    c.close();
    return info.body.vendor_name ? undefined : "no vendor in CONFIG_GET_SERVER_INFO";
  })().catch((e: Error) => `probe failed: ${e.message}`);
  const why = await Promise.race([work, timer]);
  (c as unknown as { socket?: { destroy(): void } } | undefined)?.socket?.destroy();
  return why;
}

function finding(kind: string, detail: unknown): void {
  findings.push({ kind, detail, seed: SEED, inFlight: [...inFlight], serverLog: tail.slice(-40) });
}

async function batch(from: number): Promise<void> {
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => fuzzCase(SEED * 1000 + from + i)));
}

// Warm-up, then the baseline.
let next = 0;
for (; next < 40; next += CONCURRENCY) await batch(next);
await sleep(1000);
const before = { fds: fds(), rss: rssKiB() };
const deadline = Date.now() + SECONDS * 1000;
let lastProbe = Date.now();
while (Date.now() < deadline && !exit) {
  await batch(next);
  next += CONCURRENCY;
  if (exit) break;
  if (Date.now() - lastProbe > 2000) {
    lastProbe = Date.now();
    const why = await probe();
    if (why) {
      finding("hang", why);
      break;
    }
  }
}
if (exit) finding("crash", exit);
await sleep(2000); // sessions wind down
let after = { fds: -1, rss: -1 };
if (!exit) {
  const why = await probe();
  if (why) finding("hang", why);
  await sleep(500);
  after = { fds: fds(), rss: rssKiB() };
  if (after.fds > before.fds + FD_SLACK) finding("fd leak", { before: before.fds, after: after.fds });
  if (after.rss > before.rss + RSS_SLACK_KIB) finding("memory growth", { beforeKiB: before.rss, afterKiB: after.rss });
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
}
if (findings.length > 0) {
  mkdirSync(FINDINGS, { recursive: true });
  writeFileSync(join(FINDINGS, `finding-${SEED}.json`), JSON.stringify(findings, null, 2));
}
rmSync(dir, { recursive: true, force: true });
const crashes = findings.filter((f) => f.kind === "crash").length;
const hangs = findings.filter((f) => f.kind === "hang").length;
const leaks = findings.length - crashes - hangs;
console.log(JSON.stringify({ seed: SEED, seconds: SECONDS, cases, records, crashes, hangs, leaks, fds: [before.fds, after.fds], rssKiB: [before.rss, after.rss], findings }));
process.exit(findings.length === 0 ? 0 : 1);
