/**
 * Consistent backups: the snapshot a backup reads instead of the live tree.
 *
 *   const plan = planSnapshot(config, root)        // sync, before the job starts: a method, or why none
 *   const snap = await takeSnapshot(plan, ctx)     // recorded in STATE_DIR/snapshots first, then made
 *   ... the engine reads snap.dir (FILESYSTEM's view inside the snapshot), names stay the live ones,
 *       and snap.remap(entry) gives each object the live filesystem's st_dev back ...
 *   await snap.release()                           // always: success, failure, abort, lost DMA
 *   cleanupLeftovers(stateDir, native, log)        // at start: what a crash or kill -9 left
 *
 * snap.time is the backup's date (DUMP_DATE, dumpdates): the file clock read just before the
 * snapshot was made, so anything written after it is newer and goes into the next incremental.
 */
import fs from "node:fs";
import type { Config } from "../config.ts";
import { inodeNumber, type Entry } from "../../formats/entry.ts";
import { backupStartTime } from "../incremental/index.ts";
import type { Logger } from "../log.ts";
import type { NativeApi } from "../native/index.ts";
import { createBtrfs, destroyBtrfs, findSubvolume, snapshotParent, type BtrfsTarget } from "./btrfs.ts";
import { fillIn, findHook, printedDir, runHook } from "./hook.ts";
import { newSnapshotName, ownerAlive, processStart, readRecords, removeRecord, writeRecord, type SnapshotRecord } from "./records.ts";
import type { SnapshotHook } from "../config.ts";

export { parsePolicy, SNAPSHOT_POLICIES, type SnapshotPolicy } from "./policy.ts";
export { SNAPSHOT_PREFIX } from "./records.ts";
export { ownDirectories } from "./btrfs.ts";

export type SnapshotPlan =
  | { method: "btrfs"; root: Buffer; target: BtrfsTarget }
  | { method: "hook"; root: Buffer; hook: SnapshotHook };

export interface Snapshot {
  /** What DATA_GET_ENV's SNAPSHOT says: btrfs:<name> or hook:<name>. */
  label: string;
  name: string;
  /** FILESYSTEM as it is in the snapshot: what the backup reads. */
  dir: Buffer;
  /** The backup's date (ns since the epoch), taken just before the snapshot was made. */
  time: bigint;
  /** How it was made, for the log: "ioctl", "btrfs-tool", "hook". */
  via: string;
  /** Gives an object read from the snapshot the live filesystem's identity (st_dev). */
  remap(entry: Entry): void;
  /** Deletes the snapshot and its record; never throws (a failure is logged and the record kept). */
  release(): Promise<void>;
}

/** How the snapshot of `root` would be made: a [[snapshot]] hook that matches, else btrfs; or why none. */
export function planSnapshot(config: Pick<Config, "snapshotHooks">, root: Buffer): SnapshotPlan | string {
  // Hooks see the real path: a FILESYSTEM with ".." or a symlink in it matches what it names.
  let real: Buffer;
  try {
    real = fs.realpathSync(root, { encoding: "buffer" });
  } catch (e) {
    return (e as Error).message;
  }
  const hook = findHook(config.snapshotHooks, real.toString("utf8"));
  if (hook) return { method: "hook", root: real, hook };
  const target = findSubvolume(root);
  if (typeof target === "string") return target;
  return { method: "btrfs", root, target };
}

/** CONFIG_GET_FS_INFO's SNAPSHOT_METHOD of a mounted filesystem: btrfs, hook or none. */
export function snapshotMethod(config: Pick<Config, "snapshotHooks">, mountPoint: string, fsType: string): "btrfs" | "hook" | "none" {
  if (findHook(config.snapshotHooks, mountPoint)) return "hook";
  if (fsType !== "btrfs") return "none";
  return typeof findSubvolume(Buffer.from(mountPoint)) === "string" ? "none" : "btrfs";
}

export interface SnapshotContext {
  stateDir: string;
  native: NativeApi;
  log: Logger;
}

/** Snapshots made and not yet deleted (each settles when its release is done), for the server's shutdown. */
const active = new Set<Promise<void>>();

export async function takeSnapshot(plan: SnapshotPlan, ctx: SnapshotContext): Promise<Snapshot> {
  const name = newSnapshotName();
  const base = { version: 1 as const, name, created: new Date().toISOString(), pid: process.pid, pidStart: processStart() };
  return plan.method === "btrfs" ? takeBtrfs(plan, ctx, base) : takeHook(plan, ctx, base);
}

type RecordBase = Pick<SnapshotRecord, "version" | "name" | "created" | "pid" | "pidStart">;

async function takeBtrfs(plan: Extract<SnapshotPlan, { method: "btrfs" }>, ctx: SnapshotContext, base: RecordBase): Promise<Snapshot> {
  const parent = snapshotParent(plan.target);
  writeRecord(ctx.stateDir, { ...base, method: "btrfs", parentHex: parent.toString("hex") });
  const time = backupStartTime(ctx.stateDir);
  let made: { root: Buffer; via: string };
  try {
    made = await createBtrfs(ctx.native, plan.target, base.name);
  } catch (e) {
    removeRecord(ctx.stateDir, base.name);
    throw new Error(`btrfs snapshot of ${plan.target.subvolume.toString()} failed: ${(e as Error).message}`);
  }
  const rel = plan.target.rel;
  const dir = rel.length ? Buffer.concat([made.root, Buffer.from("/"), rel]) : made.root;
  return finish(ctx, base.name, `btrfs:${base.name}`, dir, plan.root, time, made.via, true, async () => {
    await destroyBtrfs(ctx.native, parent, base.name);
  });
}

async function takeHook(plan: Extract<SnapshotPlan, { method: "hook" }>, ctx: SnapshotContext, base: RecordBase): Promise<Snapshot> {
  const path = plan.root.toString("utf8");
  const hook = plan.hook;
  const vars = { path, name: base.name };
  const rec: SnapshotRecord = { ...base, method: "hook", hook: { delete: fillIn(hook.delete, vars), timeoutMs: hook.timeoutMs, path } };
  writeRecord(ctx.stateDir, rec);
  const time = backupStartTime(ctx.stateDir);
  let dir: string;
  try {
    const r = await runHook(fillIn(hook.create, vars), vars, hook.timeoutMs);
    if (r.stderr.trim()) ctx.log.info("snapshot hook create: stderr", { name: base.name, stderr: r.stderr.trim() });
    dir = printedDir(r.stdout);
  } catch (e) {
    // It may have made something before failing: its delete is told the name, and the record goes only if that works.
    ctx.log.warn("snapshot hook create failed", { name: base.name, err: e });
    await deleteHook(rec, ctx.log).then(
      () => removeRecord(ctx.stateDir, base.name),
      (d: Error) => ctx.log.error("snapshot hook delete failed after a failed create: record kept", { name: base.name, err: d }),
    );
    throw e;
  }
  rec.hook!.dir = dir;
  rec.hook!.delete = fillIn(hook.delete, { ...vars, dir });
  writeRecord(ctx.stateDir, rec);
  return finish(ctx, base.name, `hook:${base.name}`, Buffer.from(dir), plan.root, time, "hook", false, () => deleteHook(rec, ctx.log));
}

async function deleteHook(rec: SnapshotRecord, log: Logger): Promise<void> {
  const h = rec.hook!;
  const r = await runHook(h.delete, { path: h.path, name: rec.name, dir: h.dir }, h.timeoutMs);
  if (r.stderr.trim()) log.info("snapshot hook delete: stderr", { name: rec.name, stderr: r.stderr.trim() });
}

function finish(
  ctx: SnapshotContext,
  name: string,
  label: string,
  dir: Buffer,
  liveRoot: Buffer,
  time: bigint,
  via: string,
  btrfs: boolean,
  destroy: () => Promise<void>,
): Snapshot {
  let done: () => void = () => {};
  const held = new Promise<void>((r) => (done = r));
  active.add(held);
  // Exact device numbers, in the form the walker's entries carry them (formats/entry.ts).
  const snapDev = inodeNumber(fs.statSync(dir, { bigint: true }).dev);
  const liveDev = inodeNumber(fs.statSync(liveRoot, { bigint: true }).dev);
  let released: Promise<void> | undefined;
  return {
    label,
    name,
    dir,
    time,
    via,
    remap(entry) {
      if (entry.dev !== snapDev) return;
      // A subvolume nested in the snapshotted one is an empty directory numbered 2 in the snapshot:
      // it keeps a device of its own, like the mount point it is in the live tree.
      if (btrfs && entry.type === "directory" && entry.ino === 2) return;
      entry.dev = liveDev;
    },
    release() {
      released ??= (async () => {
        try {
          await destroy();
          removeRecord(ctx.stateDir, name);
          ctx.log.info("snapshot deleted", { snapshot: label });
        } catch (e) {
          ctx.log.error("snapshot not deleted: the next start tries again", { snapshot: label, err: e });
        } finally {
          active.delete(held);
          done();
        }
      })();
      return released;
    },
  };
}

/** Waits up to `ms` for every snapshot still held by a job to be deleted; false when time ran out. */
export async function waitForSnapshots(ms: number): Promise<boolean> {
  const all = Promise.all([...active]).then(() => true);
  const timer = new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref());
  return Promise.race([all, timer]);
}

export function snapshotsHeld(): number {
  return active.size;
}

/**
 * At start: deletes every snapshot a record names whose process is gone (a crash, kill -9),
 * and drops the record. Logs each one. Never throws.
 */
export async function cleanupLeftovers(stateDir: string, native: NativeApi, log: Logger): Promise<number> {
  const { records, broken } = readRecords(stateDir);
  for (const b of broken) log.warn("unreadable snapshot record left alone", { file: b });
  let n = 0;
  for (const rec of records) {
    if (ownerAlive(rec)) continue;
    try {
      if (rec.method === "btrfs") {
        const parent = Buffer.from(rec.parentHex ?? "", "hex");
        const was = await destroyBtrfs(native, parent, rec.name);
        log.info(was ? "leftover snapshot deleted" : "leftover snapshot record dropped (no snapshot)", { snapshot: `btrfs:${rec.name}`, parent: parent.toString() });
      } else {
        await deleteHook(rec, log);
        log.info("leftover snapshot deleted", { snapshot: `hook:${rec.name}`, dir: rec.hook?.dir });
      }
      removeRecord(stateDir, rec.name);
      n++;
    } catch (e) {
      log.error("leftover snapshot not deleted: record kept", { snapshot: `${rec.method}:${rec.name}`, err: e });
    }
  }
  return n;
}
