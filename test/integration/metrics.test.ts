/**
 * The metrics listener against the compiled binary: /metrics is parsed by the Prometheus
 * project's own Python parser (python3-prometheus-client), and the counters move with what
 * happens: a failed login, a backup by ndmjob with file history, a job running right now.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClient, NdmpClientError } from "../../src/client/client.ts";
import { AddrType, Message, TapeOpenMode } from "../../src/protocol/codes.ts";
import { tcpAddr } from "../../src/transport/tcp.ts";
import { dma, seededBytes, tapeServerConfig } from "../helpers/dma.ts";
import { jobSucceeded, ndmjob } from "../helpers/ndmjob.ts";
import { havePeers, IN_CI } from "../helpers/peers.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { createServer, type Socket } from "node:net";

const PY = "/usr/bin/python3";
const haveParser = existsSync(PY) && spawnSync(PY, ["-c", "import prometheus_client.parser"]).status === 0;
if (!haveParser && !IN_CI) console.warn("skipping metrics tests: no python3-prometheus-client");
const ready = havePeers("binary", "ndmjob") && (haveParser || IN_CI);

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  type: string;
}

/** Scrapes /metrics and parses it with prometheus_client's text-format parser. */
async function scrape(port: number): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const py = `import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value, "type": fam.type})
print(json.dumps(out))`;
  const r = spawnSync(PY, ["-c", py], { input: text, encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value ?? 0;
}

describe.runIf(ready)("/metrics", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-metrics-"));
  const SRC = join(W, "src");
  let srv: RunningServer;
  let port: number;

  beforeAll(async () => {
    mkdirSync(join(SRC, "a/b"), { recursive: true });
    for (let i = 0; i < 20; i++) writeFileSync(join(SRC, "a/b", `f${i}`), seededBytes(10_000 + i, i));
    for (let i = 0; i < 4; i++) writeFileSync(join(SRC, `big${i}`), seededBytes(8 * 1024 * 1024, 100 + i));
    srv = await startServer({ config: tapeServerConfig([{ name: "vt0", capacity: "1GiB" }]) + `\n[metrics]\nlisten = "127.0.0.1:0"\n` });
    port = srv.logs.find((l) => l.msg === "metrics listening")!.port;
  }, 60_000);

  afterAll(async () => {
    await srv?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("serves only /metrics, in the text format, with every family described", async () => {
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" })).status).toBe(405);
    const m = await scrape(port);
    const names = new Set(m.map((s) => s.name));
    for (const n of ["ndmpd_process_open_fds", "ndmpd_process_resident_memory_bytes", "ndmpd_sessions", "ndmpd_active_jobs", "ndmpd_throughput_bytes_per_second", "ndmpd_control_queue_bytes", "ndmpd_request_queue_depth", "ndmpd_tape_drive_open", "ndmpd_tape_drive_loaded"]) {
      expect(names, n).toContain(n);
    }
    expect(value(m, "ndmpd_tape_drive_open", { drive: "vt0" })).toBe(0);
    expect(value(m, "ndmpd_tape_drive_loaded", { drive: "vt0" })).toBe(1);
  });

  it("the counters move: a failed login, a backup with file history; the gauges show a running job", async () => {
    const before = await scrape(port);

    const bad = await NdmpClient.connect("127.0.0.1", srv.port);
    await bad.open(4);
    await expect(bad.authText(USER, "wrong")).rejects.toBeInstanceOf(NdmpClientError);
    await bad.close();

    const A = `127.0.0.1:${srv.port}/4,${USER},${PASSWORD}`;
    const b = await ndmjob(undefined, ["-c", "-v", "-D", A, "-T", A, "-f", "vt0", "-B", "tar", "-C", SRC, "-I", join(W, "idx")], 120_000);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);

    const after = await scrape(port);
    const d = (name: string, labels: Record<string, string> = {}) => value(after, name, labels) - value(before, name, labels);
    expect(d("ndmpd_auth_failures_total", { method: "text" })).toBe(1);
    expect(d("ndmpd_connections_total", { outcome: "accepted" })).toBeGreaterThanOrEqual(2);
    expect(d("ndmpd_jobs_total", { kind: "backup", outcome: "successful" })).toBe(1);
    expect(d("ndmpd_data_bytes_total", { kind: "backup" })).toBeGreaterThan(32 * 1024 * 1024);
    expect(d("ndmpd_data_files_total", { kind: "backup" })).toBe(27); // ., a, a/b, 20 files, 4 big
    expect(d("ndmpd_file_history_entries_total")).toBeGreaterThanOrEqual(27);
    expect(d("ndmpd_mover_bytes_total", { direction: "to_tape" })).toBeGreaterThan(32 * 1024 * 1024);
    expect(after.find((s) => s.name === "ndmpd_jobs_total")?.type).toBe("counter");

    // A job running now: a backup whose data connection stopped being read.
    const c = await dma(srv.port);
    await c.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
    const l = createServer();
    const accepted = new Promise<Socket>((r) => l.once("connection", r));
    const lp = await new Promise<number>((r) => l.listen(0, "127.0.0.1", () => r((l.address() as { port: number }).port)));
    await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", lp)] } });
    const sock = await accepted;
    l.close();
    sock.once("data", () => sock.pause());
    await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: SRC }] });
    const during = await scrape(port);
    expect(value(during, "ndmpd_sessions")).toBe(1);
    expect(value(during, "ndmpd_active_jobs", { kind: "backup" })).toBe(1);
    expect(value(during, "ndmpd_tape_drive_open", { drive: "vt0" })).toBe(1);
    await c.request(Message.DATA_ABORT);
    await c.close();
    sock.destroy();
  });
});
