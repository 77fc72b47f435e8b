/**
 * What `ndmpd sessions` shows of a session: a plain JSON-able snapshot, and its table.
 */
import { DataOperation, DataState, MoverMode, MoverState } from "../protocol/codes.ts";
import type { Session } from "../server/session.ts";
import { DataService } from "../data/service.ts";
import { ratesOf } from "../metrics/rates.ts";

export interface SessionInfo {
  id: number;
  peer: string;
  user: string | null;
  version: number | null;
  openedAt: string;
  data: {
    state: string;
    operation: string;
    bytes: number;
    entries: number;
    rate: number;
    butype: string | null;
    path: string | null;
    current: string | null;
    /** The snapshot a backup reads (btrfs:NAME, hook:NAME), once made. */
    snapshot?: string | null;
  };
  mover: { state: string; mode: string; bytes: number; rate: number };
  /** "tape vt0 (READ_WRITE)", "scsi lib0". */
  devices: string[];
}

const nameOf = (table: Record<string, number>, v: number) => Object.entries(table).find(([, x]) => x === v)?.[0] ?? String(v);

/** A path for display: UTF-8 when it is, else with \xNN escapes for the bytes that are not. */
function show(p: Buffer | undefined): string | null {
  if (!p) return null;
  const s = p.toString("utf8");
  if (Buffer.from(s, "utf8").equals(p)) return s;
  return [...p].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`)).join("");
}

export function describeSession(s: Session): SessionInfo {
  const d = s.data instanceof DataService ? s.data : undefined;
  const m = s.mover;
  const active = d !== undefined && d.state === DataState.ACTIVE;
  const bytes = d ? Number(d.bytesProcessed) : 0;
  const rates = ratesOf(s);
  const devices: string[] = [];
  if (s.tape) devices.push(`tape ${s.tape.drive.config.name} (${s.tape.mode})`);
  if (s.scsi) devices.push(`scsi ${s.scsi.target.config.name}`);
  return {
    id: s.id,
    peer: s.peer,
    user: s.authUser ?? null,
    version: s.version ?? null,
    openedAt: new Date(s.openedAt).toISOString(),
    data: {
      state: d ? nameOf(DataState, d.state) : "IDLE",
      operation: d ? nameOf(DataOperation, d.operation) : "NOACTION",
      bytes,
      entries: d?.entries ?? 0,
      rate: active ? rates.data : 0,
      butype: d?.envValue("TYPE") ?? null,
      path: d?.envValue("FILESYSTEM") ?? d?.envValue("PREFIX") ?? null,
      current: active ? show(d!.currentPath) : null,
      snapshot: snapshotOf(d?.envValue("SNAPSHOT")),
    },
    mover: {
      state: m ? nameOf(MoverState, m.state) : "IDLE",
      mode: m ? nameOf(MoverMode, m.mode) : "NOACTION",
      bytes: m ? Number(m.bytesMoved) : 0,
      rate: m && m.state === MoverState.ACTIVE ? rates.mover : 0,
    },
    devices,
  };
}

/** DATA_GET_ENV's SNAPSHOT once the job has made one (before that it is the DMA's y/n/auto). */
function snapshotOf(v: string | undefined): string | null {
  return v !== undefined && /^(btrfs|hook):/.test(v) ? v : null;
}

function human(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** The table `ndmpd sessions` prints. */
export function formatSessions(list: SessionInfo[]): string {
  if (list.length === 0) return "no sessions\n";
  const rows = list.map((s) => [
    String(s.id),
    s.peer,
    s.user ?? "-",
    s.version ? `v${s.version}` : "-",
    s.data.operation === "NOACTION" ? s.data.state : `${s.data.state} ${s.data.operation}${s.data.butype ? ` ${s.data.butype}` : ""}`,
    s.mover.state === "IDLE" ? "IDLE" : `${s.mover.state} ${s.mover.mode}`,
    human(Math.max(s.data.bytes, s.mover.bytes)),
    s.data.rate || s.mover.rate ? `${human(Math.max(s.data.rate, s.mover.rate))}/s` : "-",
    s.devices.join(", ") || "-",
    [s.data.path && s.data.snapshot ? `${s.data.path} [${s.data.snapshot}]` : s.data.path, s.data.current].filter(Boolean).join(" : ") || "-",
  ]);
  const head = ["ID", "PEER", "USER", "VER", "DATA", "MOVER", "BYTES", "RATE", "DEVICES", "PATH : CURRENT"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ") + "\n";
  return line(head) + rows.map(line).join("");
}
