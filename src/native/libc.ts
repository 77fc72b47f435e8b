// The libc calls ndmpd needs and Node cannot make, bound through Bun's FFI. This file must only be
// loaded with a live `bun:ffi` module in hand (see index.ts): it never imports it itself, so Node
// and Deno can type-check and load the rest of the program.
import type * as BunFfi from "bun:ffi";
import type { Pointer } from "bun:ffi";
import { ERRNO, NativeError } from "./errno.ts";
import { SYS_listxattrat, SYS_openat2 } from "./at.ts";
import fs from "node:fs";
import { STATX_BASIC_STATS } from "./statx.ts";
import type { AtApi, AtCallsApi, DirApi, DirListing, FsApi, IoctlApi, NativeApi, SeekApi, XattrApi } from "./types.ts";

/** Names the C library goes by (glibc first). */
export const LIBC_CANDIDATES = ["libc.so.6", "libc.so"];

/** lseek whence values for sparse files (Linux >= 3.1). */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const LOCK_EX = 2;
const LOCK_NB = 4;
const O_DIRECTORY = 0o200000;
const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;

/** glibc's makedev: 12+20 bits of major, 8+24 bits of minor, interleaved. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

type LibcSymbol =
  | "ioctl"
  | "lseek"
  | "llistxattr"
  | "lgetxattr"
  | "lsetxattr"
  | "lremovexattr"
  | "fsetxattr"
  | "utimensat"
  | "syscall"
  | "openat"
  | "mkdirat"
  | "symlinkat"
  | "linkat"
  | "mknodat"
  | "renameat"
  | "unlinkat"
  | "fchownat"
  | "mknod"
  | "flock"
  | "open"
  | "close"
  | "statx"
  | "pread"
  | "pwrite"
  | "fchown"
  | "fchmod"
  | "futimens"
  | "__errno_location";

function openLibc(ffi: typeof BunFfi): BunFfi.Library<LibcSymbol> {
  const symbols = {
    // The request is an unsigned long; "u64" keeps 0x80306d02 from turning negative.
    ioctl: { args: ["i32", "u64", "ptr"], returns: "i32" },
    lseek: { args: ["i32", "i64", "i32"], returns: "i64" },
    llistxattr: { args: ["ptr", "ptr", "usize"], returns: "i64" },
    lgetxattr: { args: ["ptr", "ptr", "ptr", "usize"], returns: "i64" },
    lsetxattr: { args: ["ptr", "ptr", "ptr", "usize", "i32"], returns: "i32" },
    lremovexattr: { args: ["ptr", "ptr"], returns: "i32" },
    fsetxattr: { args: ["i32", "ptr", "ptr", "usize", "i32"], returns: "i32" },
    utimensat: { args: ["i32", "ptr", "ptr", "i32"], returns: "i32" },
    // syscall(2) is variadic; every argument goes as a full register (openat2 has no wrapper).
    syscall: { args: ["i64", "i64", "ptr", "ptr", "u64"], returns: "i64" },
    openat: { args: ["i32", "ptr", "i32", "u32"], returns: "i32" },
    mkdirat: { args: ["i32", "ptr", "u32"], returns: "i32" },
    symlinkat: { args: ["ptr", "i32", "ptr"], returns: "i32" },
    linkat: { args: ["i32", "ptr", "i32", "ptr", "i32"], returns: "i32" },
    mknodat: { args: ["i32", "ptr", "u32", "u64"], returns: "i32" },
    renameat: { args: ["i32", "ptr", "i32", "ptr"], returns: "i32" },
    unlinkat: { args: ["i32", "ptr", "i32"], returns: "i32" },
    fchownat: { args: ["i32", "ptr", "u32", "u32", "i32"], returns: "i32" },
    mknod: { args: ["ptr", "u32", "u64"], returns: "i32" },
    flock: { args: ["i32", "i32"], returns: "i32" },
    // open is variadic in C; a fixed third argument is how every caller passes the mode.
    open: { args: ["ptr", "i32", "u32"], returns: "i32" },
    close: { args: ["i32"], returns: "i32" },
    statx: { args: ["i32", "ptr", "i32", "u32", "ptr"], returns: "i32" },
    pread: { args: ["i32", "ptr", "usize", "i64"], returns: "i64" },
    pwrite: { args: ["i32", "ptr", "usize", "i64"], returns: "i64" },
    fchown: { args: ["i32", "u32", "u32"], returns: "i32" },
    fchmod: { args: ["i32", "u32"], returns: "i32" },
    futimens: { args: ["i32", "ptr"], returns: "i32" },
    __errno_location: { args: [], returns: "ptr" },
  } as const;
  let lastError: unknown;
  for (const name of LIBC_CANDIDATES) {
    try {
      return ffi.dlopen<LibcSymbol>(name, symbols);
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`cannot load the C library (${LIBC_CANDIDATES.join(", ")}): ${String(lastError)}`);
}

/** dlopen of the C library (its first name that loads) with these symbols. */
function openLibraryWith<Names extends string>(ffi: typeof BunFfi, symbols: Record<Names, BunFfi.FFIFunctionSpec>): BunFfi.Library<Names> {
  let lastError: unknown;
  for (const name of LIBC_CANDIDATES) {
    try {
      return ffi.dlopen<Names>(name, symbols);
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`cannot load the C library (${LIBC_CANDIDATES.join(", ")}): ${String(lastError)}`);
}

/** Paths and xattr names go to libc as C strings: copy and terminate, refuse embedded NULs. */
export function cString(value: Uint8Array | string): Buffer {
  const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  const nul = bytes.indexOf(0);
  if (nul !== -1 && nul !== bytes.length - 1) {
    throw new NativeError("cstring", ERRNO.EINVAL);
  }
  if (nul === bytes.length - 1) return Buffer.from(bytes);
  const out = Buffer.allocUnsafe(bytes.length + 1);
  out.set(bytes, 0);
  out[bytes.length] = 0;
  return out;
}

/** Splits llistxattr's "a\0b\0" into raw names (bytes, not strings: names need not be UTF-8). */
export function splitNameList(list: Uint8Array): Buffer[] {
  const names: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    if (list[i] !== 0) continue;
    if (i > start) names.push(Buffer.from(list.subarray(start, i)));
    start = i + 1;
  }
  return names;
}

export function bindLibc(ffi: typeof BunFfi): NativeApi {
  const lib = openLibc(ffi);
  const sym = lib.symbols;
  const lastErrno = (): number => ffi.read.i32(sym.__errno_location() as Pointer, 0);
  // errno is thread-local and FFI calls run on the JS thread, so reading it right after the call
  // (before anything else can touch it) gives the call's own error.
  const fail = (syscall: string): never => {
    throw new NativeError(syscall, lastErrno());
  };

  const ioctl: IoctlApi = {
    ioctl(fd, request, arg) {
      for (;;) {
        const rc = sym.ioctl(fd, request, arg) as number;
        if (rc !== -1) return rc;
        const errno = lastErrno();
        // A signal can interrupt a long tape motion before it starts; just ask again.
        if (errno !== ERRNO.EINTR) throw new NativeError("ioctl", errno);
      }
    },
    address(buf) {
      return buf.length === 0 ? 0n : BigInt(ffi.ptr(buf));
    },
  };

  const seek: SeekApi = {
    seekData(fd, offset) {
      const rc = Number(sym.lseek(fd, BigInt(offset), SEEK_DATA) as bigint);
      if (rc >= 0) return rc;
      const errno = lastErrno();
      if (errno === ERRNO.ENXIO) return null; // no data at or after offset
      throw new NativeError("lseek(SEEK_DATA)", errno);
    },
    seekHole(fd, offset) {
      const rc = Number(sym.lseek(fd, BigInt(offset), SEEK_HOLE) as bigint);
      if (rc < 0) fail("lseek(SEEK_HOLE)");
      return rc;
    },
  };

  // Size-probe then fetch; the value can grow between the two calls (ERANGE), so loop.
  const fetchSized = (syscall: string, call: (buf: Uint8Array, size: number) => number): Buffer => {
    for (;;) {
      const size = call(new Uint8Array(0), 0);
      if (size < 0) fail(syscall);
      const buf = Buffer.alloc(size);
      if (size === 0) return buf;
      const got = call(buf, size);
      if (got >= 0) return buf.subarray(0, got);
      const errno = lastErrno();
      if (errno !== ERRNO.ERANGE) throw new NativeError(syscall, errno);
    }
  };

  const listScratch = Buffer.allocUnsafe(64 * 1024);
  const xattr: XattrApi = {
    list(path) {
      const cPath = cString(path);
      // One call into a scratch buffer serves nearly every file (a backup lists every file's
      // attributes, so the size probe would double the calls); a bigger list falls back.
      const got = Number(sym.llistxattr(cPath, listScratch, listScratch.length) as bigint);
      if (got >= 0) return splitNameList(listScratch.subarray(0, got));
      if (lastErrno() !== ERRNO.ERANGE) fail("llistxattr");
      const raw = fetchSized("llistxattr", (buf, size) =>
        Number(sym.llistxattr(cPath, buf, size) as bigint),
      );
      return splitNameList(raw);
    },
    get(path, name) {
      const cPath = cString(path);
      const cName = cString(name);
      try {
        return fetchSized("lgetxattr", (buf, size) =>
          Number(sym.lgetxattr(cPath, cName, buf, size) as bigint),
        );
      } catch (error) {
        if (error instanceof NativeError && error.errno === ERRNO.ENODATA) return null;
        throw error;
      }
    },
    set(path, name, value, flags = 0) {
      const rc = sym.lsetxattr(cString(path), cString(name), value, value.length, flags) as number;
      if (rc === -1) fail("lsetxattr");
    },
    remove(path, name) {
      const rc = sym.lremovexattr(cString(path), cString(name)) as number;
      if (rc === -1 && lastErrno() !== ERRNO.ENODATA) fail("lremovexattr");
    },
    fset(fd, name, value, flags = 0) {
      const rc = sym.fsetxattr(fd, cString(name), value, value.length, flags) as number;
      if (rc === -1) fail("fsetxattr");
    },
  };

  const fsApi: FsApi = {
    utimens(path, atime, mtime, nofollow) {
      const rc = sym.utimensat(AT_FDCWD, cString(path), timespecPair(atime, mtime), nofollow ? AT_SYMLINK_NOFOLLOW : 0) as number;
      if (rc === -1) fail("utimensat");
    },
    mknod(path, mode, major, minor) {
      const rc = sym.mknod(cString(path), mode >>> 0, makedev(major, minor)) as number;
      if (rc === -1) fail("mknod");
    },
    tryLockExclusive(fd) {
      for (;;) {
        if ((sym.flock(fd, LOCK_EX | LOCK_NB) as number) === 0) return true;
        const errno = lastErrno();
        if (errno === ERRNO.EAGAIN) return false; // EWOULDBLOCK is EAGAIN on Linux
        if (errno !== ERRNO.EINTR) throw new NativeError("flock", errno);
      }
    },
  };

  // Names go to statx NUL-terminated from this scratch (a name is at most 255 bytes).
  const nameScratch = Buffer.allocUnsafe(4096);
  const toScratch = (name: Uint8Array): boolean => {
    if (name.length >= nameScratch.length || name.indexOf(0) >= 0) return false;
    nameScratch.set(name, 0);
    nameScratch[name.length] = 0;
    return true;
  };
  const at: AtApi = {
    openDir(path, follow) {
      return sym.open(cString(path), O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW), 0) as number;
    },
    close(fd) {
      sym.close(fd);
    },
    lstatAt(dirfd, name, out) {
      if (!toScratch(name)) return false;
      if ((sym.statx(dirfd, nameScratch, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, out.buf) as number) !== 0) return false;
      return (out.mask & STATX_BASIC_STATS) === STATX_BASIC_STATS;
    },
    openAt(dirfd, name, flags) {
      if (!toScratch(name)) return -1;
      return sym.openat(dirfd, nameScratch, flags | O_CLOEXEC, 0) as number;
    },
    readAt(fd, buf, at, length, position) {
      if (length === 0) return 0;
      if (at < 0 || length < 0 || at + length > buf.length) throw new RangeError("readAt: outside the buffer");
      return Number(sym.pread(fd, ffi.ptr(buf, at), length, position) as bigint);
    },
  };
  const listAt = bindListxattrat(ffi, lastErrno, toScratch, nameScratch, listScratch);
  if (listAt) at.listXattrsAt = listAt;

  // struct open_how { u64 flags; u64 mode; u64 resolve; }: one scratch copy, filled per call
  // (the kernel reads it during the call and keeps nothing).
  const openHow = Buffer.alloc(24);
  const timesScratch = Buffer.alloc(32);
  const check = (syscall: string, rc: number): void => {
    if (rc === -1) fail(syscall);
  };
  const atCalls: AtCallsApi = {
    openat2(dirfd, path, flags, mode, resolve) {
      openHow.writeBigUInt64LE(BigInt(flags >>> 0), 0);
      openHow.writeBigUInt64LE(BigInt(mode >>> 0), 8);
      openHow.writeBigUInt64LE(BigInt(resolve >>> 0), 16);
      const rc = Number(sym.syscall(SYS_openat2, dirfd, cString(path), openHow, openHow.length) as bigint);
      if (rc < 0) fail("openat2");
      return rc;
    },
    openat(dirfd, path, flags, mode) {
      // A name (the common case) goes through the scratch, a longer path gets its own copy.
      const rc = sym.openat(dirfd, toScratch(path) ? nameScratch : cString(path), flags, mode >>> 0) as number;
      if (rc < 0) fail("openat");
      return rc;
    },
    mkdirat: (dirfd, path, mode) => check("mkdirat", sym.mkdirat(dirfd, cString(path), mode >>> 0) as number),
    symlinkat: (target, dirfd, path) => check("symlinkat", sym.symlinkat(cString(target), dirfd, cString(path)) as number),
    linkat: (olddirfd, oldpath, newdirfd, newpath, flags) =>
      check("linkat", sym.linkat(olddirfd, cString(oldpath), newdirfd, cString(newpath), flags) as number),
    mknodat: (dirfd, path, mode, major, minor) =>
      check("mknodat", sym.mknodat(dirfd, cString(path), mode >>> 0, makedev(major, minor)) as number),
    renameat: (olddirfd, oldpath, newdirfd, newpath) =>
      check("renameat", sym.renameat(olddirfd, cString(oldpath), newdirfd, cString(newpath)) as number),
    unlinkat: (dirfd, path, flags) => check("unlinkat", sym.unlinkat(dirfd, cString(path), flags) as number),
    fchownat: (dirfd, path, uid, gid, flags) => check("fchownat", sym.fchownat(dirfd, cString(path), uid >>> 0, gid >>> 0, flags) as number),
    utimensat: (dirfd, path, atime, mtime, flags) =>
      check("utimensat", sym.utimensat(dirfd, cString(path), timespecPair(atime, mtime), flags) as number),
    pwrite(fd, buf, offset, length, position) {
      if (length === 0) return 0;
      if (offset < 0 || length < 0 || offset + length > buf.length) throw new RangeError("pwrite: outside the buffer");
      for (;;) {
        const rc = Number(sym.pwrite(fd, ffi.ptr(buf, offset), length, position) as bigint);
        if (rc >= 0) return rc;
        const errno = lastErrno();
        if (errno !== ERRNO.EINTR) throw new NativeError("pwrite", errno);
      }
    },
    fchown: (fd, uid, gid) => check("fchown", sym.fchown(fd, uid >>> 0, gid >>> 0) as number),
    fchmod: (fd, mode) => check("fchmod", sym.fchmod(fd, mode >>> 0) as number),
    futimens(fd, atime, mtime) {
      fillTimespecPair(timesScratch, atime, mtime);
      check("futimens", sym.futimens(fd, timesScratch) as number);
    },
    // Linux frees the descriptor even when close reports an error: never retried.
    close: (fd) => check("close", sym.close(fd) as number),
  };

  return { runtime: "bun-ffi", ioctl, seek, xattr, fs: fsApi, at, atCalls, dir: bindGetdents(ffi, lastErrno) };
}

/**
 * listxattrat through syscall(2), bound with its own argument list (openat2's binding passes a
 * struct pointer where this one passes flags). The list lands in the xattr scratch, as llistxattr's
 * does; a list bigger than that (ERANGE) or any failure gives null, and the caller lists by path.
 * After ENOSYS (a kernel before 6.13, or a seccomp filter that refuses it) it is not tried again.
 */
function bindListxattrat(
  ffi: typeof BunFfi,
  lastErrno: () => number,
  toScratch: (name: Uint8Array) => boolean,
  nameScratch: Buffer,
  listScratch: Buffer,
): AtApi["listXattrsAt"] | null {
  let call: (dirfd: number) => number;
  try {
    const lib = openLibraryWith<"syscall">(ffi, { syscall: { args: ["i64", "i64", "ptr", "u32", "ptr", "usize"], returns: "i64" } });
    call = (dirfd) => Number(lib.symbols.syscall(SYS_listxattrat, dirfd, nameScratch, AT_SYMLINK_NOFOLLOW, listScratch, listScratch.length) as bigint);
  } catch {
    return null;
  }
  let missing = false;
  return (dirfd, name) => {
    if (missing || !toScratch(name)) return null;
    const got = call(dirfd);
    if (got >= 0) return got === 0 ? [] : splitNameList(listScratch.subarray(0, got));
    if (lastErrno() === ERRNO.ENOSYS) missing = true;
    return null;
  };
}

/** struct timespec[2] on x86_64/aarch64: i64 sec, i64 nsec. */
function timespecPair(atime: { sec: number; nsec: number }, mtime: { sec: number; nsec: number }): Buffer {
  return fillTimespecPair(Buffer.alloc(32), atime, mtime);
}

function fillTimespecPair(times: Buffer, atime: { sec: number; nsec: number }, mtime: { sec: number; nsec: number }): Buffer {
  writeI64(times, 0, Math.floor(atime.sec));
  writeI64(times, 8, atime.nsec);
  writeI64(times, 16, Math.floor(mtime.sec));
  writeI64(times, 24, mtime.nsec);
  return times;
}

/** A little-endian i64 from a safe integer, without a BigInt (two's complement by halves). */
function writeI64(buf: Buffer, at: number, value: number): void {
  const lo = value % 0x1_0000_0000;
  const hi = Math.floor(value / 0x1_0000_0000);
  buf.writeUInt32LE(lo < 0 ? lo + 0x1_0000_0000 : lo, at);
  buf.writeInt32LE(hi, at + 4);
}

/**
 * getdents64 through its own dlopen: a C library without the symbol (glibc before 2.30) then
 * costs only this interface (null), not the whole native layer.
 */
function bindGetdents(ffi: typeof BunFfi, lastErrno: () => number): DirApi | null {
  let call: (fd: number, buf: Uint8Array, size: number) => number;
  try {
    const lib = openLibraryWith<"getdents64">(ffi, { getdents64: { args: ["i32", "ptr", "usize"], returns: "i64" } });
    call = (fd, buf, size) => Number(lib.symbols.getdents64(fd, buf, size) as bigint);
  } catch {
    return null;
  }
  // One scratch buffer for every call (this thread's); a listing takes as many calls as it needs.
  const scratch = Buffer.allocUnsafe(256 * 1024);
  return {
    list(path) {
      const fd = fs.openSync(Buffer.from(path.buffer, path.byteOffset, path.byteLength), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
      try {
        const out = new ListingBuilder();
        for (;;) {
          const got = call(fd, scratch, scratch.length);
          if (got === 0) break;
          if (got < 0) {
            const errno = lastErrno();
            if (errno === ERRNO.EINTR) continue;
            throw new NativeError("getdents64", errno);
          }
          parseDirents(scratch, got, out);
        }
        return out.done();
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

/** A DirListing as getdents64's records come in: the names copied into one growing buffer. */
export class ListingBuilder {
  private bytes = Buffer.allocUnsafe(4096);
  private used = 0;
  readonly starts: number[] = [];
  readonly lengths: number[] = [];
  readonly inos: Array<number | bigint> = [];
  private readonly types: number[] = [];

  /** Name `buf[from, to)`, its d_ino and d_type. */
  add(buf: Buffer, from: number, to: number, ino: number | bigint, type: number): void {
    const n = to - from;
    if (this.used + n > this.bytes.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.used + n));
      this.bytes.copy(bigger, 0, 0, this.used);
      this.bytes = bigger;
    }
    // Byte by byte: names are short, and a native copy per name costs more than the loop.
    const bytes = this.bytes;
    for (let i = 0, at = this.used; i < n; i++) bytes[at + i] = buf[from + i]!;
    this.starts.push(this.used);
    this.lengths.push(n);
    this.used += n;
    this.inos.push(ino);
    this.types.push(type);
  }

  done(): DirListing {
    return { count: this.starts.length, bytes: this.bytes.subarray(0, this.used), starts: this.starts, lengths: this.lengths, inos: this.inos, types: Uint8Array.from(this.types) };
  }
}

/**
 * struct linux_dirent64 records, one after another: u64 d_ino, s64 d_off, u16 d_reclen,
 * u8 d_type, then the NUL-terminated name (little-endian: the hosts ndmpd runs on).
 */
export function parseDirents(buf: Buffer, length: number, out: ListingBuilder): void {
  for (let at = 0; at + 19 <= length; ) {
    const reclen = buf.readUInt16LE(at + 16);
    if (reclen < 20 || at + reclen > length) throw new NativeError("getdents64", ERRNO.EINVAL);
    let end = at + 19;
    while (end < at + reclen && buf[end] !== 0) end++;
    const nameLength = end - at - 19;
    // "." and "..": not entries of the walk.
    const dots = buf[at + 19] === 0x2e && (nameLength === 1 || (nameLength === 2 && buf[at + 20] === 0x2e));
    if (!dots) {
      const lo = buf.readUInt32LE(at);
      const hi = buf.readUInt32LE(at + 4);
      out.add(buf, at + 19, end, hi < 0x20_0000 ? hi * 0x1_0000_0000 + lo : (BigInt(hi) << 32n) | BigInt(lo), buf[at + 18]!);
    }
    at += reclen;
  }
}
