// Linux's struct statx (include/uapi/linux/stat.h), read field by field from a buffer that one
// walk reuses for every object: the scan's walker (walker-sync.ts) describes each object from
// statx(dirfd, name) through bun:ffi instead of lstat(path) through node:fs, which walks the
// whole path every time and builds a BigIntStats object per call. Pure layout code: no FFI here,
// so Node can load and test it.
import type { InodeNumber, Timespec } from "../../formats/entry.ts";

/** STATX_BASIC_STATS: type, mode, nlink, uid, gid, atime, mtime, ctime, ino, size, blocks. */
export const STATX_BASIC_STATS = 0x7ff;
/** struct statx is 256 bytes. */
export const STATX_SIZE = 256;

const TWO_32 = 2 ** 32;

/** One statx result; the fields read the buffer a call filled. */
export class StatxBuffer {
  readonly buf = new Uint8Array(STATX_SIZE);
  private readonly view = new DataView(this.buf.buffer);

  /** The stx_mask bits the kernel filled. */
  get mask(): number {
    return this.view.getUint32(0, true);
  }
  get nlink(): number {
    return this.view.getUint32(16, true);
  }
  get uid(): number {
    return this.view.getUint32(20, true);
  }
  get gid(): number {
    return this.view.getUint32(24, true);
  }
  /** st_mode: the file type and permission bits. */
  get mode(): number {
    return this.view.getUint16(28, true);
  }
  get ino(): InodeNumber {
    return this.u64(32);
  }
  get size(): number {
    return Number(this.u64(40));
  }
  /** 512-byte blocks allocated. */
  get blocks(): number {
    return Number(this.u64(48));
  }
  get atime(): Timespec {
    return this.time(64);
  }
  get ctime(): Timespec {
    return this.time(96);
  }
  get mtime(): Timespec {
    return this.time(112);
  }
  get rdevMajor(): number {
    return this.view.getUint32(128, true);
  }
  get rdevMinor(): number {
    return this.view.getUint32(132, true);
  }
  /** st_dev as lstat gives it: glibc's makedev of stx_dev_major and stx_dev_minor. */
  get dev(): InodeNumber {
    return makedevNumber(this.view.getUint32(136, true), this.view.getUint32(140, true));
  }

  /** An unsigned 64-bit field: a number below 2^53, else the exact bigint (as inodeNumber). */
  private u64(at: number): InodeNumber {
    const hi = this.view.getUint32(at + 4, true);
    const lo = this.view.getUint32(at, true);
    return hi < 0x20_0000 ? hi * TWO_32 + lo : (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** struct statx_timestamp: i64 tv_sec, u32 tv_nsec. */
  private time(at: number): Timespec {
    return { sec: this.view.getInt32(at + 4, true) * TWO_32 + this.view.getUint32(at, true), nsec: this.view.getUint32(at + 8, true) };
  }
}

/** glibc's makedev (12+20 bits of major, 8+24 of minor, interleaved), as an InodeNumber. */
export function makedevNumber(major: number, minor: number): InodeNumber {
  // The common case in numbers: bits 0-7 minor's low 8, 8-19 major, 20-31 the rest of minor.
  if (major < 0x1000 && minor < 0x10_0000) return (major << 8) + (minor & 0xff) + (minor >>> 8) * 0x10_0000;
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  const v = ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
