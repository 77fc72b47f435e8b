// What both walkers (the asynchronous one in walker.ts and the synchronous one in walker-sync.ts,
// which runs in a worker thread) share: turning an lstat result into an Entry, hard-link
// bookkeeping, which extended attributes a backup carries, and the zero-block scan that stands in
// for SEEK_DATA. Only the system calls differ between the two walkers; these rules must not.
import type { BigIntStats } from "node:fs";
import { inodeNumber, type DataRun, type Entry, type EntryType } from "../../formats/entry.ts";
import type { XattrApi } from "../native/index.ts";
import type { StatxBuffer } from "../native/statx.ts";
import { deviceNumbers, errorCode, timespecFromNs } from "./fsutil.ts";

export const DOT = Buffer.from(".");

/** Extended attributes a restore can meaningfully carry back (system.* other than ACLs are kernel state). */
const XATTR_PREFIXES = ["user.", "trusted.", "security."].map((p) => Buffer.from(p));
const XATTR_ACLS = ["system.posix_acl_access", "system.posix_acl_default"].map((p) => Buffer.from(p));

/** The Entry fields that come straight from lstat. */
export function entryFromStat(rel: Buffer, st: BigIntStats, type: EntryType): Entry {
  const entry: Entry = {
    path: rel,
    type,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: type === "file" || type === "symlink" ? Number(st.size) : 0,
    mtime: timespecFromNs(st.mtimeNs),
    atime: timespecFromNs(st.atimeNs),
    ctime: timespecFromNs(st.ctimeNs),
    // Exact: above 2^53 (overlayfs xino, some FUSE) a number would give two files one identity.
    dev: inodeNumber(st.dev),
    ino: inodeNumber(st.ino),
    nlink: Number(st.nlink),
  };
  if (type === "chardev" || type === "blockdev") {
    const { major, minor } = deviceNumbers(st.rdev);
    entry.devMajor = major;
    entry.devMinor = minor;
  }
  return entry;
}

/** The same Entry from a statx result (the native walk): every field as entryFromStat gives it. */
export function entryFromStatx(rel: Buffer, sx: StatxBuffer, type: EntryType): Entry {
  const entry: Entry = {
    path: rel,
    type,
    mode: sx.mode & 0o7777,
    uid: sx.uid,
    gid: sx.gid,
    size: type === "file" || type === "symlink" ? sx.size : 0,
    mtime: sx.mtime,
    atime: sx.atime,
    ctime: sx.ctime,
    dev: sx.dev,
    ino: sx.ino,
    nlink: sx.nlink,
  };
  if (type === "chardev" || type === "blockdev") {
    entry.devMajor = sx.rdevMajor;
    entry.devMinor = sx.rdevMinor;
  }
  return entry;
}

/** mayBeSparse for a statx result. */
export function statxMayBeSparse(type: EntryType, sx: StatxBuffer): boolean {
  return type === "file" && sx.size > 0 && sx.blocks * 512 < sx.size;
}

/** A regular file whose allocated blocks do not cover its size may have holes worth finding. */
export function mayBeSparse(type: EntryType, st: BigIntStats): boolean {
  return type === "file" && st.size > 0n && st.blocks * 512n < st.size;
}

interface LinkSeen {
  path: Buffer;
  /** Names of this inode not met yet; at 0 the record is dropped, keeping the map small. */
  remaining: number;
}

/** What the link bookkeeping needs of an lstat (BigIntStats) or a statx result. */
export interface LinkFacts {
  nlink: bigint | number;
  dev: bigint | number;
  ino: bigint | number;
}

/** Second and later names of a multiply-linked inode become "hardlink" entries to the first name. */
export class LinkTracker {
  private readonly links = new Map<string, LinkSeen>();

  /** Its key when this object has other names (to remember() once it is described), else undefined. */
  keyOf(type: EntryType, st: LinkFacts): string | undefined {
    // Keyed on the exact dev:ino (st_ino can exceed 2^53 on some filesystems: a bigint then).
    return type !== "directory" && st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined;
  }

  /** Turns `entry` into a link to the first name if that name was already met; true if so. */
  linkToFirst(key: string, entry: Entry): boolean {
    const seen = this.links.get(key);
    if (!seen) return false;
    if (--seen.remaining <= 0) this.links.delete(key);
    entry.type = "hardlink";
    entry.linkTarget = seen.path;
    delete entry.devMajor;
    delete entry.devMinor;
    // size stays the inode's size for information; storedSize() of a hardlink is 0.
    return true;
  }

  remember(key: string, rel: Buffer, st: LinkFacts): void {
    this.links.set(key, { path: rel, remaining: Number(st.nlink) - 1 });
  }
}

/**
 * The attributes a backup carries, sorted by name; throws what llistxattr/lgetxattr throw.
 * `names`: the list already made (listxattrat relative to the directory), else listed by path.
 */
export function readXattrs(api: XattrApi, abs: Buffer, names?: Buffer[]): Array<[Buffer, Buffer]> {
  const out: Array<[Buffer, Buffer]> = [];
  for (const name of names ?? api.list(abs)) {
    const wanted = XATTR_PREFIXES.some((p) => name.length > p.length && name.subarray(0, p.length).equals(p)) ||
      XATTR_ACLS.some((n) => name.equals(n));
    if (!wanted) continue;
    const value = api.get(abs, name);
    if (value !== null) out.push([name, value]);
  }
  out.sort((a, b) => Buffer.compare(a[0], b[0]));
  return out;
}

/**
 * Reads the attributes onto the entry. False when the object is gone (ENOENT, reported): leave it
 * out. Any other failure is reported and the object kept without them (EOPNOTSUPP, a filesystem
 * without xattrs, silently).
 */
export function attachXattrs(entry: Entry, api: XattrApi, abs: Buffer, report: (error: unknown) => void, names?: Buffer[]): boolean {
  try {
    const xattrs = readXattrs(api, abs, names);
    if (xattrs.length > 0) entry.xattrs = xattrs;
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT") {
      report(error);
      return false;
    }
    if (code !== "EOPNOTSUPP") report(error);
  }
  return true;
}

/** Zero-block scan (no SEEK_DATA): the read size and the granularity of the runs it reports. */
export const SCAN_READ = 1024 * 1024;
const SCAN_BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(SCAN_BLOCK);
const ZERO_READ = Buffer.alloc(SCAN_READ);

/**
 * Without SEEK_DATA: the caller reads the file in SCAN_READ pieces and feeds them here; every
 * 4 KiB block that is not all zeros is data. Holes and allocated zeros both read as zeros, so the
 * result restores the same bytes (and leaves zeros as holes, which a sparse-aware copy should do).
 */
export class ZeroScan {
  readonly runs: DataRun[] = [];
  private runStart = -1;

  /** `got` bytes of `buf` read at file offset `pos`. */
  feed(buf: Buffer, got: number, pos: number): void {
    if (got === SCAN_READ && buf.equals(ZERO_READ)) {
      this.close(pos);
      return;
    }
    for (let off = 0; off < got; off += SCAN_BLOCK) {
      const end = Math.min(off + SCAN_BLOCK, got);
      const zero = buf.compare(ZERO_BLOCK, 0, end - off, off, end) === 0;
      if (!zero && this.runStart < 0) this.runStart = pos + off;
      else if (zero) this.close(pos + off);
    }
  }

  /** The runs, given where the reading stopped. */
  finish(pos: number): DataRun[] {
    this.close(pos);
    return this.runs;
  }

  private close(at: number): void {
    if (this.runStart < 0) return;
    this.runs.push({ offset: this.runStart, length: at - this.runStart });
    this.runStart = -1;
  }
}

/** Runs that cover the whole file mean it is not sparse after all. */
export function sparseOrUndefined(runs: DataRun[], size: number): DataRun[] | undefined {
  return runs.length === 1 && runs[0]!.offset === 0 && runs[0]!.length === size ? undefined : runs;
}
