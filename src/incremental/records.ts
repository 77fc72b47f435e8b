/**
 * What the incremental machinery keeps under state_dir:
 *
 *  - `dumpdates`: a text file, one line per (filesystem identity, backup type, path, level), the
 *    most recent backup of that level that succeeded with UPDATE not n. Readable by a person:
 *
 *        # fsid  type  level  date (Unix seconds.nanoseconds)  date (UTC)  token  path
 *        8:3  tar  0  1764751260.123456789  2026-12-03T08:41:00Z  4294967296123  /srv/export
 *
 *    The type is part of the key: a dump chain never builds on a tar backup of the same path
 *    (the changes between the two would be in neither chain).
 *
 *    The path is written with bytes outside printable ASCII (and space, backslash) as \ooo
 *    octal, as /proc/self/mountinfo does, so every name survives and the columns stay columns.
 *  - `incremental/<path hash>-<token>.json`: one record per backup (either mode), found by its
 *    DUMP_DATE token: the full start time and the directories of the tree at that time
 *    (path -> dev:ino), from which the next incremental tells a moved or new directory (whose
 *    files keep their old times) from one that was there at the base.
 *
 * Every file is written whole to a temporary name, fsynced, renamed over the old one and the
 * directory fsynced; read-modify-write of dumpdates happens under withStateLock.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import { dirname, join } from "node:path";

export interface DumpdatesRecord {
  fsid: string;
  /** The butype: tar or dump. */
  type: string;
  /** The backup root (bytes). */
  path: Buffer;
  level: number;
  /** Start time of that backup, ns since the epoch. */
  date: bigint;
  /** Its DUMP_DATE token (decimal). */
  token: string;
}

/** A tree's directories at backup time: latin1 path key (relative, "." = root) -> "dev:ino". */
export type DirInventory = Map<string, string>;

export interface BackupRecord {
  fsid: string;
  type: string;
  path: Buffer;
  level: number;
  date: bigint;
  token: string;
  dirs?: DirInventory;
}

const DUMPDATES = "dumpdates";
const RECORDS = "incremental";
const HEADER = "# ndmpd dumpdates: fsid  type  level  date (Unix s.ns)  date (UTC)  token  path\n";

// ---- dumpdates -------------------------------------------------------------------------------

export function readDumpdates(stateDir: string): DumpdatesRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(join(stateDir, DUMPDATES), "latin1");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return parseDumpdates(text);
}

export function parseDumpdates(text: string): DumpdatesRecord[] {
  const out: DumpdatesRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim() || line.startsWith("#")) continue;
    const f = line.trim().split(/\s+/);
    if (f.length < 7) continue;
    const [fsid, type, level, date, , token, path] = f as [string, string, string, string, string, string, string];
    const ns = parseNs(date);
    if (ns === undefined || !/^\d+$/.test(level) || !/^\d+$/.test(token)) continue;
    out.push({ fsid, type, level: Number(level), date: ns, token, path: unescapePath(path) });
  }
  return out;
}

export function formatDumpdates(records: DumpdatesRecord[]): string {
  const sorted = [...records].sort((a, b) => Buffer.compare(a.path, b.path) || a.fsid.localeCompare(b.fsid) || a.type.localeCompare(b.type) || a.level - b.level);
  return HEADER + sorted.map((r) => `${r.fsid}  ${r.type}  ${r.level}  ${formatNs(r.date)}  ${isoSeconds(r.date)}  ${r.token}  ${escapePath(r.path)}\n`).join("");
}

/** Replaces the record of (fsid, type, path, level). Call under withStateLock. */
export async function putDumpdate(stateDir: string, rec: DumpdatesRecord): Promise<void> {
  const all = readDumpdates(stateDir).filter((r) => !(r.fsid === rec.fsid && r.type === rec.type && r.level === rec.level && r.path.equals(rec.path)));
  all.push(rec);
  await writeAtomically(join(stateDir, DUMPDATES), Buffer.from(formatDumpdates(all), "latin1"));
}

// ---- backup records --------------------------------------------------------------------------

function recordId(fsid: string, type: string, path: Buffer): string {
  return createHash("sha256").update(fsid).update("\0").update(type).update("\0").update(path).digest("hex").slice(0, 24);
}

function recordPath(stateDir: string, fsid: string, type: string, path: Buffer, token: string): string {
  return join(stateDir, RECORDS, `${recordId(fsid, type, path)}-${token}.json`);
}

/** Records kept per (filesystem, path) and level, newest first, beside those dumpdates points at. */
export const RECORDS_KEPT_PER_LEVEL = 2;

/**
 * Drops the records of (fsid, type, path) that no next backup is likely to name: beyond the newest
 * RECORDS_KEPT_PER_LEVEL of each level, unless dumpdates points at them. A DMA in token mode
 * that comes back with an older token still gets a correct incremental (from the token's
 * seconds, with changed directories taken whole), only a larger one. Call under withStateLock.
 */
export async function pruneBackupRecords(stateDir: string, fsid: string, type: string, path: Buffer): Promise<void> {
  const dir = join(stateDir, RECORDS);
  const prefix = `${recordId(fsid, type, path)}-`;
  const inUse = new Set(readDumpdates(stateDir).filter((r) => r.fsid === fsid && r.type === type && r.path.equals(path)).map((r) => r.token));
  const byLevel = new Map<number, Array<{ file: string; token: bigint }>>();
  for (const file of await fsp.readdir(dir).catch(() => [] as string[])) {
    const m = new RegExp(`^${prefix}(\\d+)\\.json$`).exec(file);
    if (!m) continue;
    const token = BigInt(m[1]!);
    const level = Number(token >> 32n) - 1;
    byLevel.set(level, [...(byLevel.get(level) ?? []), { file, token }]);
  }
  for (const list of byLevel.values()) {
    list.sort((a, b) => (a.token < b.token ? 1 : a.token > b.token ? -1 : 0)); // same level: newer start = larger token
    for (const old of list.slice(RECORDS_KEPT_PER_LEVEL)) {
      if (!inUse.has(old.token.toString())) await fsp.unlink(join(dir, old.file)).catch(() => {});
    }
  }
}

export async function writeBackupRecord(stateDir: string, rec: BackupRecord): Promise<void> {
  const json = {
    version: 1,
    fsid: rec.fsid,
    type: rec.type,
    path: rec.path.toString("latin1"),
    level: rec.level,
    date: formatNs(rec.date),
    token: rec.token,
    dirs: rec.dirs ? Object.fromEntries(rec.dirs) : undefined,
  };
  await writeAtomically(recordPath(stateDir, rec.fsid, rec.type, rec.path, rec.token), Buffer.from(JSON.stringify(json)));
}

/** Our record of the backup that issued `token` for (fsid, type, path); undefined if there is none (or it is damaged). */
export function readBackupRecord(stateDir: string, fsid: string, type: string, path: Buffer, token: string): BackupRecord | undefined {
  let text: string;
  try {
    text = fs.readFileSync(recordPath(stateDir, fsid, type, path, token), "utf8");
  } catch {
    return undefined;
  }
  try {
    const j = JSON.parse(text) as { version: number; fsid: string; type: string; path: string; level: number; date: string; token: string; dirs?: Record<string, string> };
    const date = parseNs(j.date);
    if (j.version !== 1 || date === undefined || j.fsid !== fsid || j.type !== type || j.token !== token || !Buffer.from(j.path, "latin1").equals(path)) return undefined;
    return { fsid, type, path, level: j.level, date, token, dirs: j.dirs ? new Map(Object.entries(j.dirs)) : undefined };
  } catch {
    return undefined;
  }
}

// ---- helpers ---------------------------------------------------------------------------------

/** "sec.nnnnnnnnn" (sec may be negative: the fraction is always forward in time). */
export function formatNs(ns: bigint): string {
  let sec = ns / 1_000_000_000n;
  let frac = ns % 1_000_000_000n;
  if (frac < 0n) {
    frac += 1_000_000_000n;
    sec -= 1n;
  }
  return `${sec}.${frac.toString().padStart(9, "0")}`;
}

export function parseNs(text: string): bigint | undefined {
  const m = /^(-?\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (!m) return undefined;
  return BigInt(m[1]!) * 1_000_000_000n + BigInt((m[2] ?? "").padEnd(9, "0"));
}

export function isoSeconds(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  return Number.isFinite(ms) ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z") : "?";
}

export function escapePath(p: Buffer): string {
  let s = "";
  for (const b of p) s += b > 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : "\\" + b.toString(8).padStart(3, "0");
  return s;
}

export function unescapePath(s: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\\" && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else bytes.push(s.charCodeAt(i) & 0xff);
  }
  return Buffer.from(bytes);
}

/** Write to a temporary file, fsync, rename over `path`, fsync the directory. */
export async function writeAtomically(path: string, data: Buffer): Promise<void> {
  const dir = dirname(path);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fh = await fsp.open(tmp, "w", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await fsp.unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  await fsp.rename(tmp, path);
  const d = await fsp.open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
