/**
 * Incremental backups, shared by every format: which level a backup is, what it is based on,
 * and the records that make the next one possible. Formats never read the environment or the
 * state directory for this themselves.
 *
 * The interface, in the order a backup uses it:
 *
 *   const base = resolveBase(env, { stateDir, root });   // throws BaseError: ILLEGAL_ARGS + LOG_MESSAGE
 *   base.notes                                             // LOG_MESSAGEs to send (e.g. BASE_DATE won over LEVEL)
 *   ... the format backs up, with `base` and a start time taken before the walk:
 *       changedSince(entry, base)                          // mtime/ctime >= base.since (inclusive, ns)
 *       dirIsKnown(base, relKey, dev, ino)                 // false: a moved or new directory, back up all of it
 *   envOut = dumpDateEnv(base, startNs)                    // DUMP_DATE (token) and LEVEL, for DATA_GET_ENV
 *   await recordBackup(stateDir, base, startNs, dirs)      // only when the backup succeeded
 *
 * Levels and bases:
 *  - LEVEL=N (0-31, default 0): a level N > 0 backs up what changed since the start of the most
 *    recent recorded backup of a lower level of the same filesystem and path (dumpdates).
 *    UPDATE=n leaves dumpdates alone. None recorded: BaseError naming the missing level.
 *  - Token mode (ONTAP, illumos): BASE_DATE=0 is a level 0 that starts token mode;
 *    BASE_DATE=<token from an earlier DUMP_DATE> backs up what changed since that backup, with
 *    no dumpdates involved (the level is the token's sequence number, see token.ts);
 *    BASE_DATE=-1, empty or absent: no token. BASE_DATE wins over LEVEL (a note says so).
 *  - IGNORE_CTIME=y compares mtimes only (trees where something touches ctimes).
 *
 * Identity: a dumpdates line (and a backup's record) is keyed by the filesystem (the backup
 * root's st_dev as "major:minor"), the backup type (tar, dump: a chain never mixes them), the
 * root path and the level.
 */
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { deviceNumbers } from "../engine/fsutil.ts";
import { pruneBackupRecords, putDumpdate, readBackupRecord, readDumpdates, writeBackupRecord, type DirInventory } from "./records.ts";
import { withStateLock } from "./lock.ts";
import { decodeToken, encodeToken, MAX_LEVEL } from "./token.ts";

export { MAX_LEVEL } from "./token.ts";
export type { DirInventory, DumpdatesRecord } from "./records.ts";
export { readDumpdates, formatNs, isoSeconds, escapePath } from "./records.ts";

export interface BackupBase {
  level: number;
  /** Back up what changed at or after this time (ns since the epoch); undefined: everything. */
  since?: bigint;
  /** The base backup's date (ns), for dump's c_ddate; undefined for a full backup. */
  baseDate?: bigint;
  /** Compare mtimes only. */
  ignoreCtime: boolean;
  /** The base backup's directories (moved/new ones are backed up whole); undefined: not known. */
  baseDirs?: DirInventory;
  /** "dumpdates" (LEVEL), "token" (BASE_DATE). */
  mode: "dumpdates" | "token";
  /** Record this backup in dumpdates on success (UPDATE, dumpdates mode only). */
  update: boolean;
  /** The token of the base backup (token mode). */
  baseToken?: string;
  fsid: string;
  /** The butype (tar, dump). */
  type: string;
  root: Buffer;
  /** Things the DMA should be told (LOG_MESSAGE NORMAL). */
  notes: string[];
}

/** A request the base cannot be resolved for: the data service answers ILLEGAL_ARGS and logs the message. */
export class BaseError extends Error {
  override name = "BaseError";
}

export interface ResolveTarget {
  stateDir: string;
  /** The butype: each has its own chains. */
  type: string;
  /** The backup root, absolute, without trailing slashes. */
  root: Buffer;
  /** Defaults to the root's st_dev. */
  fsid?: string;
}

export function filesystemIdentity(root: Buffer): string {
  const { major, minor } = deviceNumbers(statSync(root, { bigint: true }).dev);
  return `${major}:${minor}`;
}

export function resolveBase(env: ReadonlyMap<string, string>, target: ResolveTarget): BackupBase {
  const fsid = target.fsid ?? filesystemIdentity(target.root);
  const root = target.root;
  const type = target.type;
  const shown = root.toString("utf8");
  const ignoreCtime = yes(env.get("IGNORE_CTIME"), false);
  const update = yes(env.get("UPDATE"), true);
  const notes: string[] = [];
  const levelText = env.get("LEVEL")?.trim();
  const baseDate = env.get("BASE_DATE")?.trim();

  if (baseDate !== undefined && baseDate !== "" && baseDate !== "-1") {
    const tok = decodeToken(baseDate);
    if (!tok || tok.seq > MAX_LEVEL || (tok.seq === 0 && tok.sec !== 0)) {
      throw new BaseError(`BASE_DATE=${baseDate}: not a token this server can use (a DUMP_DATE value from an earlier backup, 0 to start, or -1)`);
    }
    if (levelText !== undefined && levelText !== "") notes.push(`BASE_DATE is set: it decides the level, LEVEL=${levelText} is not used`);
    const common = { ignoreCtime, mode: "token" as const, update: false, fsid, type, root, notes };
    if (tok.seq === 0) {
      notes.push("token mode: level 0 (BASE_DATE=0)");
      return { level: 0, ...common };
    }
    const rec = readBackupRecord(target.stateDir, fsid, type, root, baseDate);
    let since = BigInt(tok.sec) * 1_000_000_000n;
    if (rec) since = rec.date;
    else notes.push(`BASE_DATE=${baseDate} was not issued here for ${shown}: changes are taken from its whole second on, and directories changed since then are backed up whole`);
    notes.push(`token mode: level ${tok.seq} of ${shown}, since ${formatDate(since)}`);
    return { level: tok.seq, since, baseDate: since, baseDirs: rec?.dirs, baseToken: baseDate, ...common };
  }

  const text = levelText === undefined || levelText === "" ? "0" : levelText;
  if (!/^\d{1,2}$/.test(text) || Number(text) > MAX_LEVEL) throw new BaseError(`LEVEL=${text}: must be a number from 0 to ${MAX_LEVEL}`);
  const level = Number(text);
  const common = { level, ignoreCtime, mode: "dumpdates" as const, update, fsid, type, root, notes };
  if (level === 0) return common;
  const lower = readDumpdates(target.stateDir).filter((r) => r.fsid === fsid && r.type === type && r.path.equals(root) && r.level < level);
  if (lower.length === 0) {
    throw new BaseError(
      `LEVEL=${level}: no ${type} backup of level ${level === 1 ? "0" : `0-${level - 1}`} of ${shown} (filesystem ${fsid}) is recorded here; ` +
        `run a level 0 backup first (with UPDATE=y)`,
    );
  }
  const base = lower.reduce((a, b) => (b.date > a.date ? b : a));
  const rec = readBackupRecord(target.stateDir, fsid, type, root, base.token);
  if (!rec?.dirs) notes.push(`the record of the level ${base.level} backup lists no directories: directories changed since then are backed up whole`);
  notes.push(`level ${level} of ${shown}: changes since the level ${base.level} backup of ${formatDate(base.date)}`);
  return { ...common, since: base.date, baseDate: base.date, baseDirs: rec?.dirs };
}

/** Whether an object's times say it changed at or after the base (always true for a full backup). */
export function changedSince(t: { mtime: { sec: number; nsec: number }; ctime?: { sec: number; nsec: number } }, base: BackupBase): boolean {
  if (base.since === undefined) return true;
  if (toNs(t.mtime) >= base.since) return true;
  return !base.ignoreCtime && t.ctime !== undefined && toNs(t.ctime) >= base.since;
}

/**
 * Whether the directory at `key` was there at the base, as the same directory. A directory
 * that moved here or is new keeps its files' old times, so it is backed up whole. Without an
 * inventory (a foreign token), a directory whose ctime moved since the base is taken as new.
 */
export function dirIsKnown(base: BackupBase, key: string, dev: number | bigint, ino: number | bigint, ctime?: { sec: number; nsec: number }): boolean {
  if (base.since === undefined) return true;
  if (base.baseDirs) return base.baseDirs.get(key) === `${dev}:${ino}`;
  return !(ctime && toNs(ctime) >= base.since);
}

/** DUMP_DATE (a token, in both modes) and LEVEL for DATA_GET_ENV. */
export function dumpDateEnv(base: BackupBase, startNs: bigint): Map<string, string> {
  return new Map([
    ["DUMP_DATE", encodeToken(base.level, startNs)],
    ["LEVEL", String(base.level)],
  ]);
}

/**
 * After a successful backup: our record of it (for the next incremental of either mode) and,
 * in dumpdates mode with UPDATE, its dumpdates line. `dirs`: the tree's directories as walked.
 */
export async function recordBackup(stateDir: string, base: BackupBase, startNs: bigint, dirs?: DirInventory): Promise<void> {
  const token = encodeToken(base.level, startNs);
  await withStateLock(stateDir, async () => {
    const key = { fsid: base.fsid, type: base.type, path: base.root, level: base.level, date: startNs, token };
    await writeBackupRecord(stateDir, { ...key, dirs });
    if (base.mode === "dumpdates" && base.update) await putDumpdate(stateDir, key);
    await pruneBackupRecords(stateDir, base.fsid, base.type, base.root);
  });
}

/**
 * A backup's start time (ns since the epoch) when no snapshot gives one: the time the kernel
 * stamps on a file written now. File times come from the kernel's coarse clock, which lags the
 * wall clock by up to a tick, so Date.now() could be later than the mtime of a file changed just
 * after it, and the next incremental would miss that file.
 */
export function backupStartTime(stateDir: string): bigint {
  const stamp = join(stateDir, "incremental", ".clock");
  try {
    mkdirSync(dirname(stamp), { recursive: true, mode: 0o700 });
    writeFileSync(stamp, "ndmpd backup start time\n", { mode: 0o600 });
    return statSync(stamp, { bigint: true }).mtimeNs;
  } catch {
    return (BigInt(Date.now()) - 20n) * 1_000_000n;
  }
}

function toNs(t: { sec: number; nsec: number }): bigint {
  return BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
}

function formatDate(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  return new Date(ms).toISOString();
}

function yes(v: string | undefined, dflt: boolean): boolean {
  const s = v?.trim().toLowerCase();
  if (s === undefined || s === "") return dflt;
  if (["y", "yes", "t", "true", "1", "on"].includes(s)) return true;
  if (["n", "no", "f", "false", "0", "off"].includes(s)) return false;
  return dflt;
}
