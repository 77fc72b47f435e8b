/**
 * The built-in method: a read-only snapshot of the btrfs subvolume that holds FILESYSTEM, made
 * in SUBVOLUME/.ndmpd-snapshots/ (same filesystem, as btrfs requires; a snapshot does not
 * contain the snapshots below it, so they never end up in each other), and FILESYSTEM's path
 * inside it is what the backup reads. The calls are src/native/btrfs.ts: the kernel's ioctls
 * under Bun (the binary), the btrfs tool elsewhere.
 */
import fs from "node:fs";
import { btrfsApi, BTRFS_SUPER_MAGIC, SUBVOL_ROOT_INO } from "../native/btrfs.ts";
import type { NativeApi } from "../native/index.ts";
import { joinPath } from "../engine/fsutil.ts";
import { listFilesystems } from "../host/mounts.ts";
import { SNAPSHOT_PREFIX } from "./records.ts";

/** The directory, at the subvolume's root, that holds our snapshots. */
export const SNAPSHOT_DIR = ".ndmpd-snapshots";

export interface BtrfsTarget {
  /** The subvolume's root directory (real path, bytes). */
  subvolume: Buffer;
  /** FILESYSTEM relative to it ("" when it is the root). */
  rel: Buffer;
}

/** Where a btrfs snapshot of `path` would come from, or why there is none (a string). */
export function findSubvolume(path: Buffer): BtrfsTarget | string {
  let real: Buffer;
  try {
    real = fs.realpathSync(path, { encoding: "buffer" });
    const type = Number(fs.statfsSync(real).type);
    if (type !== BTRFS_SUPER_MAGIC) return "not on btrfs";
  } catch (e) {
    return (e as Error).message;
  }
  // Up from the path to the root of its subvolume: the directory numbered 256 with the same st_dev.
  const dev = fs.statSync(real, { bigint: true }).dev;
  let dir = real;
  for (;;) {
    const st = fs.statSync(dir, { bigint: true });
    if (st.dev !== dev) return "its subvolume's root is not visible here (a bind mount of a directory inside a subvolume?)";
    if (st.ino === SUBVOL_ROOT_INO) break;
    const slash = dir.lastIndexOf(0x2f);
    if (dir.length <= 1) return "no subvolume root above it";
    dir = slash <= 0 ? Buffer.from("/") : dir.subarray(0, slash);
  }
  const rel = real.length === dir.length ? Buffer.alloc(0) : real.subarray(dir.length === 1 ? 1 : dir.length + 1);
  // A snapshot we could make but not delete would stay behind after every backup.
  if (!mayDeleteSubvolumes(real)) return "deleting btrfs snapshots needs CAP_SYS_ADMIN (root; the packaged service drops it) or the filesystem mounted with user_subvol_rm_allowed";
  return { subvolume: Buffer.from(dir), rel: Buffer.from(rel) };
}

/**
 * Deleting a subvolume takes CAP_SYS_ADMIN, or a filesystem mounted with user_subvol_rm_allowed
 * (then write access to the directory suffices).
 */
function mayDeleteSubvolumes(real: Buffer): boolean {
  if (process.getuid?.() === 0 && hasSysAdmin()) return true;
  const path = real.toString("utf8");
  const mount = listFilesystems()
    .filter((m) => path === m.mountPoint || path.startsWith(m.mountPoint.endsWith("/") ? m.mountPoint : `${m.mountPoint}/`))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
  return !!mount && `${mount.options},${mount.superOptions}`.split(",").includes("user_subvol_rm_allowed");
}

/**
 * What every backup of `root` leaves out, live or from a snapshot: our snapshot directory, when
 * `root` is the root of a subvolume that has one (as an EXCLUDE pattern anchored at the root).
 */
export function ownDirectories(root: Buffer): string[] {
  try {
    if (fs.statSync(root, { bigint: true }).ino !== SUBVOL_ROOT_INO) return [];
    if (!fs.lstatSync(joinPath(root, Buffer.from(SNAPSHOT_DIR))).isDirectory()) return [];
    return Number(fs.statfsSync(root).type) === BTRFS_SUPER_MAGIC ? [`/${SNAPSHOT_DIR}`] : [];
  } catch {
    return [];
  }
}

export function snapshotParent(t: BtrfsTarget): Buffer {
  return joinPath(t.subvolume, Buffer.from(SNAPSHOT_DIR));
}

/** Makes SUBVOLUME/.ndmpd-snapshots (0700) if needed; refuses anything there that is not a plain directory. */
export function ensureParent(parent: Buffer): void {
  try {
    fs.mkdirSync(parent, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  const st = fs.lstatSync(parent);
  if (!st.isDirectory()) throw new Error(`${parent.toString()} is not a directory`);
}

export async function createBtrfs(native: NativeApi, t: BtrfsTarget, name: string): Promise<{ root: Buffer; via: string }> {
  const parent = snapshotParent(t);
  ensureParent(parent);
  const api = btrfsApi(native);
  await api.snapshot(t.subvolume, parent, name);
  return { root: joinPath(parent, Buffer.from(name)), via: api.via };
}

/** How often a delete is tried while the snapshot is still busy (a file of it still open). */
const DESTROY_TRIES = 10;

/**
 * Deletes our snapshot `parent`/`name`: only a subvolume root with our prefix. False when it is
 * not there (any more).
 */
export async function destroyBtrfs(native: NativeApi, parent: Buffer, name: string): Promise<boolean> {
  if (!name.startsWith(SNAPSHOT_PREFIX) || name.includes("/")) throw new Error(`${name} is not a snapshot name of ours`);
  const path = joinPath(parent, Buffer.from(name));
  let st: fs.BigIntStats;
  try {
    st = fs.lstatSync(path, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
  if (!st.isDirectory() || st.ino !== SUBVOL_ROOT_INO) throw new Error(`${path.toString()} is not a btrfs subvolume: not deleted`);
  const api = btrfsApi(native);
  for (let i = 1; ; i++) {
    try {
      await api.destroy(parent, name);
      return true;
    } catch (e) {
      const busy = (e as NodeJS.ErrnoException).code === "EBUSY" || /busy/i.test((e as Error).message);
      if (!busy || i >= DESTROY_TRIES) throw e;
      await new Promise((r) => setTimeout(r, 200 * i));
    }
  }
}

const CAP_SYS_ADMIN = 21n;

/** Whether this process holds CAP_SYS_ADMIN (its effective set, /proc/self/status CapEff). */
export function hasSysAdmin(status?: string): boolean {
  try {
    const text = status ?? fs.readFileSync("/proc/self/status", "utf8");
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(text)?.[1];
    return hex !== undefined && ((BigInt(`0x${hex}`) >> CAP_SYS_ADMIN) & 1n) === 1n;
  } catch {
    return false;
  }
}
