/**
 * The server's Prometheus metrics (prom-client). Counters are bumped where things happen (a
 * login fails, a job halts, file history is posted); gauges are read from the running server
 * when /metrics is scraped. One registry per process: the CLI's in-process server counts into
 * it too, harmlessly, since only `ndmpd serve` serves it.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { DataHaltReason, DataOperation, DataState, MoverHaltReason, MoverMode } from "../protocol/codes.ts";
import type { NdmpServer } from "../server/listener.ts";
import { ratesOf, startRateSampler } from "./rates.ts";

export const registry = new Registry();

const nameOf = (table: Record<string, number>, v: number) => (Object.entries(table).find(([, x]) => x === v)?.[0] ?? String(v)).toLowerCase();

const connections = new Counter({
  name: "ndmpd_connections_total",
  help: "Control connections, by outcome (accepted, or refused past max_sessions or while stopping)",
  labelNames: ["outcome"],
  registers: [registry],
});
const authFailures = new Counter({ name: "ndmpd_auth_failures_total", help: "Failed CONNECT_CLIENT_AUTH attempts, by method", labelNames: ["method"], registers: [registry] });
const jobs = new Counter({ name: "ndmpd_jobs_total", help: "Data service jobs that ended, by kind and outcome (the halt reason)", labelNames: ["kind", "outcome"], registers: [registry] });
const dataBytes = new Counter({ name: "ndmpd_data_bytes_total", help: "Bytes of backup stream written or read by the data service, by kind", labelNames: ["kind"], registers: [registry] });
const dataFiles = new Counter({ name: "ndmpd_data_files_total", help: "Entries (files, directories, ...) backed up or read back, by kind", labelNames: ["kind"], registers: [registry] });
const moverBytes = new Counter({
  name: "ndmpd_mover_bytes_total",
  help: "Bytes the mover moved: to_tape (backups; NDMP's mover mode READ) or from_tape (restores; mode WRITE)",
  labelNames: ["direction"],
  registers: [registry],
});
const moverHalts = new Counter({ name: "ndmpd_mover_halts_total", help: "Mover halts, by reason", labelNames: ["reason"], registers: [registry] });
const fhEntries = new Counter({ name: "ndmpd_file_history_entries_total", help: "File history entries posted to DMAs (FH_ADD_FILE, FH_ADD_DIR, FH_ADD_NODE)", registers: [registry] });

let server: NdmpServer | undefined;

/**
 * The server whose sessions and devices the gauges describe. The process's own metrics (CPU,
 * memory, open files, event-loop lag: prom-client's defaults) start here, in the server only.
 */
export function observe(s: NdmpServer): void {
  if (!server) {
    collectDefaultMetrics({ register: registry, prefix: "ndmpd_" });
    startRateSampler(() => sessions());
  }
  server = s;
}

const sessions = () => [...(server?.sessions ?? [])].filter((s) => !s.isClosed);
const dataOf = (s: ReturnType<typeof sessions>[number]) => s.data as { state?: number; operation?: number } | undefined;

new Gauge({
  name: "ndmpd_sessions",
  help: "Open sessions (control connections)",
  registers: [registry],
  collect() {
    this.set(sessions().length);
  },
});
new Gauge({
  name: "ndmpd_active_jobs",
  help: "Data service jobs running now, by kind",
  labelNames: ["kind"],
  registers: [registry],
  collect() {
    this.reset();
    for (const k of ["backup", "recover", "recover_filehist"]) this.set({ kind: k }, 0);
    for (const s of sessions()) {
      const d = dataOf(s);
      if (d?.state === DataState.ACTIVE) this.inc({ kind: nameOf(DataOperation, d.operation ?? 0) });
    }
  },
});
new Gauge({
  name: "ndmpd_throughput_bytes_per_second",
  help: "Current rate (last second) of all sessions together, by service: data (backup streams made or read) and mover (tape)",
  labelNames: ["service"],
  registers: [registry],
  collect() {
    let data = 0;
    let mover = 0;
    for (const s of sessions()) {
      const r = ratesOf(s);
      data += r.data;
      mover += r.mover;
    }
    this.set({ service: "data" }, data);
    this.set({ service: "mover" }, mover);
  },
});
new Gauge({
  name: "ndmpd_control_queue_bytes",
  help: "Bytes queued on control connections that DMAs have not read (file history back-pressure)",
  registers: [registry],
  collect() {
    this.set(sessions().reduce((sum, s) => sum + s.controlBacklog, 0));
  },
});
new Gauge({
  name: "ndmpd_request_queue_depth",
  help: "Requests received and waiting to be handled, all sessions together",
  registers: [registry],
  collect() {
    this.set(sessions().reduce((sum, s) => sum + s.requestBacklog, 0));
  },
});
new Gauge({
  name: "ndmpd_tape_drive_open",
  help: "1 while a session holds the drive open",
  labelNames: ["drive"],
  registers: [registry],
  collect() {
    this.reset();
    for (const [name, t] of server?.devices.tapes ?? []) this.set({ drive: name }, t.owner ? 1 : 0);
  },
});
new Gauge({
  name: "ndmpd_tape_drive_loaded",
  help: "1 while the drive holds a cartridge (virtual drives; a Linux st drive reports 1)",
  labelNames: ["drive"],
  registers: [registry],
  collect() {
    this.reset();
    for (const [name, t] of server?.devices.tapes ?? []) {
      const cart = (t.device as { cartridgePath?: string | null }).cartridgePath;
      this.set({ drive: name }, cart === null ? 0 : 1);
    }
  },
});
new Gauge({
  name: "ndmpd_changer_open",
  help: "1 while a session holds the changer open",
  labelNames: ["changer"],
  registers: [registry],
  collect() {
    this.reset();
    for (const [name, c] of server?.devices.changers ?? []) this.set({ changer: name }, c.owner ? 1 : 0);
  },
});

// ---- what the services report ----

export function countConnection(outcome: "accepted" | "refused"): void {
  connections.inc({ outcome });
}

export function countAuthFailure(method: string): void {
  authFailures.inc({ method });
}

/** A data service job halted. */
export function countJob(operation: number, reason: number, bytes: bigint, entries: number): void {
  if (operation === DataOperation.NOACTION) return; // halted before a job started (a failed connect)
  const kind = nameOf(DataOperation, operation);
  jobs.inc({ kind, outcome: nameOf(DataHaltReason, reason) });
  dataBytes.inc({ kind }, Number(bytes));
  dataFiles.inc({ kind }, entries);
}

export function countMoverHalt(mode: number, reason: number, bytes: bigint): void {
  moverHalts.inc({ reason: nameOf(MoverHaltReason, reason) });
  if (mode !== MoverMode.NOACTION) moverBytes.inc({ direction: mode === MoverMode.READ ? "to_tape" : "from_tape" }, Number(bytes));
}

export function countFileHistory(entries: number): void {
  if (entries > 0) fhEntries.inc(entries);
}
