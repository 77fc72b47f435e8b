/**
 * The snapshots this server made and has not deleted yet: one file per snapshot in
 * STATE_DIR/snapshots/, written (and synced) before the snapshot is made and removed after it
 * is deleted. After a crash or kill -9 the next start deletes what they name, and only that:
 * a snapshot without a record of ours is never touched.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { join } from "node:path";

/** Every snapshot we make is named with this prefix (and nothing we delete lacks it). */
export const SNAPSHOT_PREFIX = "ndmpd-";

export interface SnapshotRecord {
  version: 1;
  name: string;
  method: "btrfs" | "hook";
  /** ISO time the record was written. */
  created: string;
  /** The process that made it, and when that process started (a pid alone may be reused). */
  pid: number;
  pidStart: string;
  /** btrfs: the directory holding the snapshot (hex of the path's bytes). */
  parentHex?: string;
  /** hook: the delete command (placeholders filled in), its time limit, the job's path, the printed directory. */
  hook?: { delete: string[]; timeoutMs: number; path: string; dir?: string };
}

export function recordsDir(stateDir: string): string {
  return join(stateDir, "snapshots");
}

/** A new snapshot name: our prefix, the time, our pid and a random part (names never repeat). */
export function newSnapshotName(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${SNAPSHOT_PREFIX}${t}-${process.pid}-${randomBytes(3).toString("hex")}`;
}

export function writeRecord(stateDir: string, rec: SnapshotRecord): void {
  const dir = recordsDir(stateDir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${rec.name}.json`);
  const tmp = `${path}.tmp`;
  const fd = fs.openSync(tmp, "w", 0o600);
  try {
    fs.writeFileSync(fd, JSON.stringify(rec) + "\n");
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path);
  syncDir(dir);
}

export function removeRecord(stateDir: string, name: string): void {
  fs.rmSync(join(recordsDir(stateDir), `${name}.json`), { force: true });
  syncDir(recordsDir(stateDir));
}

/** Every record, with the ones that cannot be read reported (and left alone). */
export function readRecords(stateDir: string): { records: SnapshotRecord[]; broken: string[] } {
  const dir = recordsDir(stateDir);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return { records: [], broken: [] };
  }
  const records: SnapshotRecord[] = [];
  const broken: string[] = [];
  for (const n of names.sort()) {
    if (!n.endsWith(".json")) continue;
    try {
      const r = JSON.parse(fs.readFileSync(join(dir, n), "utf8")) as SnapshotRecord;
      if (r.version !== 1 || typeof r.name !== "string" || !r.name.startsWith(SNAPSHOT_PREFIX) || `${r.name}.json` !== n) throw new Error("not a record");
      records.push(r);
    } catch {
      broken.push(n);
    }
  }
  return { records, broken };
}

/** This process's start time (field 22 of /proc/self/stat), which tells a live owner from a reused pid. */
export function processStart(pid: number | "self" = "self"): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count from the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

/** Whether the process that wrote a record is still running (then its snapshot is its own business). */
export function ownerAlive(rec: SnapshotRecord): boolean {
  if (rec.pid === process.pid && rec.pidStart === processStart()) return true;
  const start = processStart(rec.pid);
  return start !== "" && start === rec.pidStart;
}

function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // best effort: the rename itself is what matters
  }
}
