// The libc calls ndmpd needs and Node cannot make, bound through Bun's FFI. This file must only be
// loaded with a live `bun:ffi` module in hand (see index.ts): it never imports it itself, so Node
// and Deno can type-check and load the rest of the program.
import type * as BunFfi from "bun:ffi";
import type { Pointer } from "bun:ffi";
import { ERRNO, NativeError } from "./errno.ts";
import { STATX_BASIC_STATS } from "./statx.ts";
import type { AtApi, FsApi, IoctlApi, NativeApi, SeekApi, XattrApi } from "./types.ts";

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
  | "utimensat"
  | "mknod"
  | "flock"
  | "open"
  | "close"
  | "statx"
  | "openat"
  | "pread"
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
    utimensat: { args: ["i32", "ptr", "ptr", "i32"], returns: "i32" },
    mknod: { args: ["ptr", "u32", "u64"], returns: "i32" },
    flock: { args: ["i32", "i32"], returns: "i32" },
    // open is variadic in C; a fixed third argument is how every caller passes the mode.
    open: { args: ["ptr", "i32", "u32"], returns: "i32" },
    close: { args: ["i32"], returns: "i32" },
    statx: { args: ["i32", "ptr", "i32", "u32", "ptr"], returns: "i32" },
    openat: { args: ["i32", "ptr", "i32", "u32"], returns: "i32" },
    pread: { args: ["i32", "ptr", "usize", "i64"], returns: "i64" },
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
  };

  const fsApi: FsApi = {
    utimens(path, atime, mtime, nofollow) {
      const times = Buffer.alloc(32); // struct timespec[2] on x86_64/aarch64: i64 sec, i64 nsec
      times.writeBigInt64LE(BigInt(Math.floor(atime.sec)), 0);
      times.writeBigInt64LE(BigInt(atime.nsec), 8);
      times.writeBigInt64LE(BigInt(Math.floor(mtime.sec)), 16);
      times.writeBigInt64LE(BigInt(mtime.nsec), 24);
      const rc = sym.utimensat(AT_FDCWD, cString(path), times, nofollow ? AT_SYMLINK_NOFOLLOW : 0) as number;
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

  return { runtime: "bun-ffi", ioctl, seek, xattr, fs: fsApi, at };
}
