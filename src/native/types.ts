// The native calls ndmpd can use, each behind a small interface. A null interface in NativeApi
// means "not available in this runtime": callers fall back (a zero-block scan instead of
// SEEK_DATA, no xattrs) or report a clear error (st tape drives need ioctl).
import type { StatxBuffer } from "./statx.ts";

export interface IoctlApi {
  /** ioctl(fd, request, arg) with arg as an in/out struct buffer; returns the result (>= 0) or throws NativeError. */
  ioctl(fd: number, request: number, arg: Uint8Array): number;
  /**
   * The address of a buffer's first byte, for structs that carry pointers (sg_io_hdr). It stays
   * valid while the buffer is referenced; empty buffers have no address (0n). Optional so that
   * test doubles of ioctl-only users (st tapes) need not provide it.
   */
  address?(buf: Uint8Array): bigint;
}

export interface SeekApi {
  /** lseek(fd, offset, SEEK_DATA): the next data offset at or after `offset`, or null past the last data. */
  seekData(fd: number, offset: number): number | null;
  /** lseek(fd, offset, SEEK_HOLE): the next hole at or after `offset` (the file end counts as a hole). */
  seekHole(fd: number, offset: number): number;
}

/** Extended attributes on byte paths, not following symlinks (l*xattr). Names are raw bytes. */
export interface XattrApi {
  list(path: Uint8Array): Buffer[];
  /** null when the attribute does not exist (ENODATA). */
  get(path: Uint8Array, name: Uint8Array | string): Buffer | null;
  /** flags: 0, XATTR_CREATE (1) or XATTR_REPLACE (2). */
  set(path: Uint8Array, name: Uint8Array | string, value: Uint8Array, flags?: number): void;
  /** lremovexattr; an attribute that is already gone (ENODATA) is not an error. */
  remove?(path: Uint8Array, name: Uint8Array | string): void;
  /** fsetxattr on an open file: the very inode, whatever its name has become meanwhile. */
  fset?(fd: number, name: Uint8Array | string, value: Uint8Array, flags?: number): void;
}

/** Calls on byte paths that node:fs lacks or makes lossy (nanosecond times, device nodes). */
export interface FsApi {
  /**
   * utimensat(AT_FDCWD, path, [atime, mtime], nofollow ? AT_SYMLINK_NOFOLLOW : 0): exact
   * nanoseconds (node:fs takes times as float seconds and loses the last digits).
   */
  utimens(path: Uint8Array, atime: { sec: number; nsec: number }, mtime: { sec: number; nsec: number }, nofollow: boolean): void;
  /** mknod(path, mode, makedev(major, minor)): device nodes and fifos. */
  mknod(path: Uint8Array, mode: number, major: number, minor: number): void;
  /**
   * flock(fd, LOCK_EX | LOCK_NB): an exclusive lock on an open file, released by the kernel when
   * the file is closed or the process dies. False when another open file holds it.
   */
  tryLockExclusive(fd: number): boolean;
}

/**
 * The *at calls, relative to a directory descriptor, so that a name is looked up in a directory
 * already opened (and checked) rather than by walking a path again. Names are raw bytes; each
 * call returns or throws NativeError (code, errno) like node:fs does. Constants: at.ts.
 */
export interface AtCallsApi {
  /**
   * openat2(dirfd, path, { flags, mode, resolve }): the RESOLVE_* flags restrict the whole walk
   * (Linux >= 5.6; ENOSYS before, EPERM/ENOSYS under some seccomp filters).
   */
  openat2(dirfd: number, path: Uint8Array, flags: number, mode: number, resolve: number): number;
  openat(dirfd: number, path: Uint8Array, flags: number, mode: number): number;
  mkdirat(dirfd: number, path: Uint8Array, mode: number): void;
  symlinkat(target: Uint8Array, dirfd: number, path: Uint8Array): void;
  /** Without AT_SYMLINK_FOLLOW in flags a symlink at oldpath is linked itself. */
  linkat(olddirfd: number, oldpath: Uint8Array, newdirfd: number, newpath: Uint8Array, flags: number): void;
  /** mknodat(dirfd, path, mode, makedev(major, minor)). */
  mknodat(dirfd: number, path: Uint8Array, mode: number, major: number, minor: number): void;
  renameat(olddirfd: number, oldpath: Uint8Array, newdirfd: number, newpath: Uint8Array): void;
  /** flags: 0 or AT_REMOVEDIR. */
  unlinkat(dirfd: number, path: Uint8Array, flags: number): void;
  fchownat(dirfd: number, path: Uint8Array, uid: number, gid: number, flags: number): void;
  /** utimensat(dirfd, path, [atime, mtime], flags): exact nanoseconds. */
  utimensat(dirfd: number, path: Uint8Array, atime: { sec: number; nsec: number }, mtime: { sec: number; nsec: number }, flags: number): void;
  // Calls on an open descriptor, for a restore's hot path: node:fs's sync calls cost several times
  // the system call itself in wrapping (a restore of 20,000 small files makes six per file).
  /** pwrite(fd, buf + offset, length, position): bytes written. EINTR is retried. */
  pwrite(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number;
  fchown(fd: number, uid: number, gid: number): void;
  fchmod(fd: number, mode: number): void;
  /** futimens(fd, [atime, mtime]): exact nanoseconds, on the very inode. */
  futimens(fd: number, atime: { sec: number; nsec: number }, mtime: { sec: number; nsec: number }): void;
  /** close(fd); an error (EIO on NFS: a write that failed late) is thrown, the descriptor is gone anyway. */
  close(fd: number): void;
}

/**
 * A directory's entries as getdents64 gives them: per name its d_ino and d_type (DT_*), with "."
 * and ".." left out. On ext4, xfs, btrfs and tmpfs d_ino is the st_ino lstat would give, so a
 * walk that needs only identities and types can skip an lstat per file.
 */
export interface DirApi {
  list(path: Uint8Array): DirListing;
}

export interface DirListing {
  /** How many names ("." and ".." are not among them). */
  count: number;
  /**
   * The names one after another, name i at starts[i] for lengths[i] bytes: one buffer, not a
   * Buffer per name (a tree of small files is mostly names, and each Buffer costs an object).
   */
  bytes: Buffer;
  starts: number[];
  lengths: number[];
  /** d_ino of name i; numbers above 2^53 - 1 as bigints. */
  inos: Array<number | bigint>;
  /** d_type of name i: DT_REG 8, DT_DIR 4, DT_LNK 10, DT_FIFO 1, DT_CHR 2, DT_BLK 6, DT_SOCK 12, DT_UNKNOWN 0. */
  types: Uint8Array;
}

/** Name i of a listing, as a Buffer of its own. */
export function listingName(listing: DirListing, i: number): Buffer {
  const start = listing.starts[i]!;
  return Buffer.from(listing.bytes.subarray(start, start + listing.lengths[i]!));
}

/**
 * Calls relative to an open directory (the scan's walker): a name looked up in a directory
 * already open costs the kernel one path component, not the whole path, and the result lands in
 * a reused buffer instead of a new stat object. Failures return -1 / false with no error object:
 * the caller asks again by path through node:fs, which says what went wrong in its own words.
 */
export interface AtApi {
  /** open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC [| O_NOFOLLOW]): a directory fd, or -1. */
  openDir(path: Uint8Array, follow: boolean): number;
  close(fd: number): void;
  /** statx(dirfd, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS) into `out`; false if it failed or left a basic field out. */
  lstatAt(dirfd: number, name: Uint8Array, out: StatxBuffer): boolean;
  /** openat(dirfd, name, flags | O_CLOEXEC): an fd, or -1. */
  openAt(dirfd: number, name: Uint8Array, flags: number): number;
  /** pread(fd, buf + at, length, position): bytes read, or -1. */
  readAt(fd: number, buf: Uint8Array, at: number, length: number, position: number): number;
  /**
   * listxattrat(dirfd, name, AT_SYMLINK_NOFOLLOW) (Linux >= 6.13): the attribute names as
   * llistxattr gives them, for one path component instead of the whole path. null when it failed
   * or the kernel lacks it (ENOSYS, remembered): the caller lists by path. Optional: test doubles
   * and older bindings need not have it.
   */
  listXattrsAt?(dirfd: number, name: Uint8Array): Buffer[] | null;
}

export interface NativeApi {
  /** "bun-ffi" when libc is bound; "none" under Node and Deno. */
  readonly runtime: "bun-ffi" | "none";
  readonly ioctl: IoctlApi | null;
  readonly seek: SeekApi | null;
  readonly xattr: XattrApi | null;
  readonly fs: FsApi | null;
  /** Calls relative to an open directory for the scan; absent or null: callers use paths (node:fs). */
  readonly at?: AtApi | null;
  /** The *at calls with openat2 (AtCallsApi); optional so that test doubles need not provide it; null or absent: not available. */
  readonly atCalls?: AtCallsApi | null;
  /** Directory listings with d_ino and d_type (getdents64); absent or null: not available. */
  readonly dir?: DirApi | null;
  /** Why the interfaces are null, for error messages. */
  readonly reason?: string;
}

/** A run of data in a sparse file: [offset, offset + length). */
export interface DataRun {
  offset: number;
  length: number;
}
