/**
 * The one description of a filesystem object that every format codec reads and writes.
 *
 * Codecs are pure: they turn an Entry (plus its content bytes, which the caller streams
 * separately) into stream bytes, and stream bytes back into Entries. Names are bytes end to
 * end (Linux names need not be UTF-8), so every name and link target is a Buffer.
 */

export type EntryType =
  | "file"
  | "directory"
  | "symlink"
  | "hardlink" // a second or later name of an inode already in the stream; linkTarget = first name
  | "fifo"
  | "chardev"
  | "blockdev"
  | "socket";

/** Seconds since the epoch (may be negative or past 2038) and nanoseconds 0..999_999_999. */
export interface Timespec {
  sec: number;
  nsec: number;
}

/** One run of real data in a sparse file; everything outside the runs reads as zeros. */
export interface DataRun {
  offset: number;
  length: number;
}

export interface Entry {
  /** Path relative to the backup root, "/"-separated, no leading "/"; the root itself is ".". */
  path: Buffer;
  type: EntryType;
  /** Permission bits only (mode & 0o7777); the type lives in `type`. */
  mode: number;
  uid: number;
  gid: number;
  uname?: Buffer;
  gname?: Buffer;
  /** Logical size in bytes (regular files; symlinks carry their target length). */
  size: number;
  mtime: Timespec;
  atime?: Timespec;
  ctime?: Timespec;
  /** Symlink target, or for "hardlink" the path of the first name (same form as `path`). */
  linkTarget?: Buffer;
  devMajor?: number;
  devMinor?: number;
  /** Extended attributes (including system.posix_acl_*), name bytes -> value bytes. */
  xattrs?: Array<[name: Buffer, value: Buffer]>;
  /** For sparse regular files: the data runs. Absent means the whole file is data. */
  sparse?: DataRun[];
  /** Source inode identity, when the walker knows it (used for hard links and dump inodes). */
  dev?: InodeNumber;
  ino?: InodeNumber;
  nlink?: number;
  /**
   * A directory of an incremental tar backup: its full list of names as GNU tar writes it for
   * --listed-incremental (GNU.dumpdir, formats/tar/dumpdir.ts). Names not in it were deleted.
   */
  dumpdir?: Buffer;
}

/** Bytes of content a codec carries for this entry (sum of the data runs for sparse files). */
export function storedSize(entry: Entry): number {
  if (entry.type !== "file") return 0;
  if (!entry.sparse) return entry.size;
  let total = 0;
  for (const run of entry.sparse) total += run.length;
  return total;
}

/**
 * A device or inode number: a number while it is exact (below 2^53), a bigint above (overlayfs
 * xino, some FUSE filesystems), so two files never share one. Compare with sameInode or key
 * with inodeKey, never with ===.
 */
export type InodeNumber = number | bigint;

/** "dev:ino", exact whatever the size of the numbers. */
export function inodeKey(dev: InodeNumber | undefined, ino: InodeNumber | undefined): string {
  return `${BigInt(dev ?? 0)}:${BigInt(ino ?? 0)}`;
}

/**
 * The number form of a kernel bigint (dev_t, ino_t): exact below 2^53, else the bigint itself.
 * Node's and Bun's BigIntStats are signed 64-bit: 2^63 + n arrives negative, and is made unsigned.
 */
export function inodeNumber(v: bigint): InodeNumber {
  const u = BigInt.asUintN(64, v);
  return u <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(u) : u;
}
