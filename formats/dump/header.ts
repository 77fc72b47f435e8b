/**
 * The 1 KiB header record of the BSD/Linux dump format (NFS_MAGIC, Linux "new" layout),
 * shared by the writer and the reader. Field offsets follow shared/spec/dump-format.md
 * section 1; everything is little-endian.
 */
import { Buffer } from "node:buffer";

/** Every record (header or data) is this many bytes. */
export const TP_BSIZE = 1024;
/** Slots (1 KiB pieces of a file) one header can describe. */
export const TP_NINDIR = 512;
export const NFS_MAGIC = 60012;
const OFS_MAGIC = 60011;
const FS_UFS2_MAGIC = 0x19540119;
/** A valid header's 256 int32 words add up to this. */
export const CHECKSUM = 84446;
export const ROOTINO = 2;
/** Restore refuses EA records larger than this (XATTR_MAXSIZE). */
export const XATTR_MAXSIZE = 4096;
/** Restore's old-tape heuristic misreads directories larger than this (spec 5.2). */
export const MAX_DIR_SIZE = 0x0fffffff;

export const TS_TAPE = 1;
export const TS_INODE = 2;
export const TS_BITS = 3;
export const TS_ADDR = 4;
export const TS_END = 5;
export const TS_CLRI = 6;

export const DR_NEWHEADER = 0x0001;
export const DR_NEWINODEFMT = 0x0002;
export const DR_COMPRESSED = 0x0080;
export const DR_METAONLY = 0x0100;
export const DR_EXTATTRIBUTES = 0x8000;
export const EXT_XATTR = 3;

/** File type bits of di_mode. */
export const S_IFMT = 0o170000;
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFDIR = 0o040000;
export const S_IFBLK = 0o060000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFSOCK = 0o140000;

/** A malformed or unsupported stream. `offset` is the absolute byte offset of the problem. */
export class DumpFormatError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} (at byte offset ${offset})`);
    this.name = "DumpFormatError";
    this.offset = offset;
  }
}

/** Seconds (u32 on tape) and microseconds. */
export interface DumpTime {
  sec: number;
  usec: number;
}

/** `struct new_bsd_inode` (c_dinode, 128 bytes at record offset 32). */
export interface DumpDinode {
  mode: number;
  nlink: number;
  size: number;
  atime: DumpTime;
  mtime: DumpTime;
  ctime: DumpTime;
  /** di_db[0]: the encoded rdev for devices, else 0. */
  rdev: number;
  flags: number;
  blocks: number;
  uid: number;
  gid: number;
}

/**
 * ndmpd's extension, in c_spare (bytes 904-1023), which Linux dump writes as zeros and restore
 * never reads: what the 1980s fields cannot hold, for our own recovery. Self-identifying (a
 * magic word), so a stream without it reads as before.
 */
export interface HeaderExt {
  /** The inode's times exactly: signed seconds (before 1970, after 2106), nanoseconds. */
  times?: { atime: ExtTime; mtime: ExtTime; ctime: ExtTime };
  /**
   * A directory whose 255-byte names are written as their first 254 bytes (all restore 0.4b47
   * can take) with the last byte in the entry's pad byte (see directory.ts).
   */
  longNamesInPad?: boolean;
}

export interface ExtTime {
  sec: number;
  nsec: number;
}

const EXT_OFFSET = 904;
/** "NDX1", little-endian. */
const EXT_MAGIC = 0x3158444e;
const EXT_TIMES = 1;
const EXT_LONG_NAMES = 2;

export interface DumpHeader {
  type: number;
  date: number;
  ddate: number;
  volume: number;
  tapea: number;
  inumber: number;
  dinode: DumpDinode;
  count: number;
  /** c_addr[512]; also c_inos[128] as u32s on TS_TAPE/TS_END. */
  addr: Uint8Array;
  label: Buffer;
  level: number;
  filesys: Buffer;
  dev: Buffer;
  host: Buffer;
  flags: number;
  firstrec: number;
  ntrec: number;
  extattributes: number;
  ext?: HeaderExt;
}

export function emptyDinode(): DumpDinode {
  const zero = { sec: 0, usec: 0 };
  return { mode: 0, nlink: 0, size: 0, atime: zero, mtime: zero, ctime: zero, rdev: 0, flags: 0, blocks: 0, uid: 0, gid: 0 };
}

/** Sum of the 256 little-endian int32 words, with 32-bit wrap-around. */
export function wordSum(rec: Buffer): number {
  let sum = 0;
  for (let i = 0; i < TP_BSIZE; i += 4) sum = (sum + rec.readInt32LE(i)) | 0;
  return sum;
}

/** Copy a C string field of `size` bytes (always NUL-terminated, so at most size-1 bytes). */
function putCString(rec: Buffer, offset: number, size: number, value: Buffer): void {
  value.copy(rec, offset, 0, Math.min(value.length, size - 1));
}

function getCString(rec: Buffer, offset: number, size: number): Buffer {
  const field = rec.subarray(offset, offset + size);
  const nul = field.indexOf(0);
  return Buffer.from(nul < 0 ? field : field.subarray(0, nul));
}

/** Encode a header, computing c_checksum last. */
export function encodeHeader(h: DumpHeader): Buffer {
  return encodeHeaderInto(h, Buffer.alloc(TP_BSIZE));
}

/** The header fields that are the same in every header of one dump (the writer's options). */
export type FixedFields = Pick<DumpHeader, "date" | "ddate" | "volume" | "label" | "level" | "filesys" | "dev" | "host" | "firstrec" | "ntrec">;

/**
 * A record holding only the fixed fields (and the magic), zeros elsewhere: encodeHeaderInto
 * starts from a copy of it rather than from zeros, so a dump's per-inode headers copy 1 KiB
 * instead of zero-filling it and writing the same names and numbers into every header (each
 * Buffer.copy and fill is a native call, and a tree of small files has a header per file).
 */
export function headerBase(f: FixedFields): Buffer {
  const rec = Buffer.alloc(TP_BSIZE);
  writeFixed(rec, f);
  return rec;
}

function writeFixed(rec: Buffer, f: FixedFields): void {
  rec.writeInt32LE(f.date | 0, 4);
  rec.writeInt32LE(f.ddate | 0, 8);
  rec.writeInt32LE(f.volume, 12);
  rec.writeInt32LE(NFS_MAGIC, 24);
  putCString(rec, 676, 16, f.label);
  rec.writeInt32LE(f.level, 692);
  putCString(rec, 696, 64, f.filesys);
  putCString(rec, 760, 64, f.dev);
  putCString(rec, 824, 64, f.host);
  rec.writeInt32LE(f.firstrec, 892);
  rec.writeInt32LE(f.ntrec, 896);
}

/**
 * encodeHeader into `rec` (TP_BSIZE bytes, overwritten whole): the engine puts headers into the
 * room its read-ahead buffers leave in front of each file, so they go out with the content
 * without a copy. With `base` (headerBase of the same fixed fields as `h`'s) the record starts
 * as a copy of it and the fixed fields are not written again. Returns `rec`.
 */
export function encodeHeaderInto(h: DumpHeader, rec: Buffer, base?: Buffer): Buffer {
  if (rec.length !== TP_BSIZE) throw new RangeError(`a header takes ${TP_BSIZE} bytes, not ${rec.length}`);
  if (base) {
    rec.set(base); // (TypedArray.set of one Uint8Array into another: a plain memcpy)
  } else {
    rec.fill(0);
    writeFixed(rec, h);
  }
  rec.writeInt32LE(h.type, 0);
  rec.writeUInt32LE(h.tapea % 2 ** 32, 16); // wraps at 4 TiB; fh_info keeps the full offset
  rec.writeUInt32LE(h.inumber, 20);
  const d = h.dinode;
  rec.writeUInt16LE(d.mode, 32);
  rec.writeInt16LE(Math.min(d.nlink, 32767), 34);
  rec.writeUInt16LE(d.uid & 0xffff, 36); // di_ouid, only read without DR_NEWINODEFMT
  rec.writeUInt16LE(d.gid & 0xffff, 38);
  writeU64(rec, d.size, 40);
  rec.writeUInt32LE(d.atime.sec, 48);
  rec.writeUInt32LE(d.atime.usec, 52);
  rec.writeUInt32LE(d.mtime.sec, 56);
  rec.writeUInt32LE(d.mtime.usec, 60);
  rec.writeUInt32LE(d.ctime.sec, 64);
  rec.writeUInt32LE(d.ctime.usec, 68);
  rec.writeUInt32LE(d.rdev, 72);
  rec.writeUInt32LE(d.flags, 132);
  rec.writeInt32LE(Math.min(d.blocks, 0x7fffffff), 136);
  rec.writeUInt32LE(d.uid, 144);
  rec.writeUInt32LE(d.gid, 148);
  rec.writeInt32LE(h.count, 160);
  // Not subarray() unless needed: on a small fresh Uint8Array it makes the engine move its
  // storage into an ArrayBuffer of its own, which cost more than the rest of the header.
  rec.set(h.addr.length > TP_NINDIR ? h.addr.subarray(0, TP_NINDIR) : h.addr, 164);
  rec.writeInt32LE(h.flags, 888);
  rec.writeInt32LE(h.extattributes, 900);
  if (h.ext) encodeExt(rec, h.ext);
  rec.writeInt32LE((CHECKSUM - wordSum(rec)) | 0, 28);
  return rec;
}

/** True when `rec` has the dump magic and a valid checksum. */
export function isHeader(rec: Buffer): boolean {
  return rec.length === TP_BSIZE && rec.readInt32LE(24) === NFS_MAGIC && wordSum(rec) === CHECKSUM;
}

/**
 * Decode and validate a header. `offset` (absolute) is only used in error messages.
 * Rejects other magics, bad checksums, unknown record types and impossible counts.
 */
export function decodeHeader(rec: Buffer, offset: number): DumpHeader {
  const magic = rec.readInt32LE(24);
  if (magic !== NFS_MAGIC) {
    const why =
      magic === OFS_MAGIC
        ? "old 4.3BSD dump format is not supported"
        : magic === FS_UFS2_MAGIC
          ? "FreeBSD UFS2 dump format is not supported"
          : `bad magic ${magic >>> 0}: expected a dump header`;
    throw new DumpFormatError(why, offset);
  }
  const sum = wordSum(rec);
  if (sum !== CHECKSUM) throw new DumpFormatError(`bad header checksum (sum ${sum >>> 0})`, offset);
  const type = rec.readInt32LE(0);
  if (type < TS_TAPE || type > TS_CLRI) throw new DumpFormatError(`unknown record type ${type}`, offset);
  const size = rec.readBigUInt64LE(40);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new DumpFormatError(`size ${size} too large`, offset);
  const dinode: DumpDinode = {
    mode: rec.readUInt16LE(32),
    nlink: rec.readInt16LE(34),
    size: Number(size),
    atime: { sec: rec.readUInt32LE(48), usec: rec.readUInt32LE(52) },
    mtime: { sec: rec.readUInt32LE(56), usec: rec.readUInt32LE(60) },
    ctime: { sec: rec.readUInt32LE(64), usec: rec.readUInt32LE(68) },
    rdev: rec.readUInt32LE(72),
    flags: rec.readUInt32LE(132),
    blocks: rec.readInt32LE(136),
    uid: rec.readUInt32LE(144),
    gid: rec.readUInt32LE(148),
  };
  return {
    type,
    date: rec.readInt32LE(4),
    ddate: rec.readInt32LE(8),
    volume: rec.readInt32LE(12),
    tapea: rec.readUInt32LE(16),
    inumber: rec.readUInt32LE(20),
    dinode,
    count: rec.readInt32LE(160),
    addr: Uint8Array.from(rec.subarray(164, 164 + TP_NINDIR)),
    label: getCString(rec, 676, 16),
    level: rec.readInt32LE(692),
    filesys: getCString(rec, 696, 64),
    dev: getCString(rec, 760, 64),
    host: getCString(rec, 824, 64),
    flags: rec.readInt32LE(888),
    firstrec: rec.readInt32LE(892),
    ntrec: rec.readInt32LE(896),
    extattributes: rec.readInt32LE(900),
    ext: decodeExt(rec),
  };
}

function encodeExt(rec: Buffer, ext: HeaderExt): void {
  let flags = 0;
  if (ext.times) {
    flags |= EXT_TIMES;
    const at = EXT_OFFSET + 8;
    writeTime(rec, ext.times.atime, at);
    writeTime(rec, ext.times.mtime, at + 12);
    writeTime(rec, ext.times.ctime, at + 24);
  }
  if (ext.longNamesInPad) flags |= EXT_LONG_NAMES;
  if (flags === 0) return;
  rec.writeUInt32LE(EXT_MAGIC, EXT_OFFSET);
  rec.writeUInt32LE(flags, EXT_OFFSET + 4);
}

/**
 * A safe integer as a little-endian u64/s64 (two's complement), in two 32-bit writes: no BigInt
 * per header. Math.floor(v / 2^32) is the high word of a negative value too.
 */
function writeU64(rec: Buffer, v: number, at: number): void {
  const hi = Math.floor(v / 0x1_0000_0000);
  rec.writeUInt32LE(v - hi * 0x1_0000_0000, at);
  rec.writeInt32LE(hi | 0, at + 4);
}

/** An extension time: s64 seconds, u32 nanoseconds. */
function writeTime(rec: Buffer, t: ExtTime, at: number): void {
  writeU64(rec, t.sec, at);
  rec.writeUInt32LE(t.nsec, at + 8);
}

function decodeExt(rec: Buffer): HeaderExt | undefined {
  if (rec.readUInt32LE(EXT_OFFSET) !== EXT_MAGIC) return undefined;
  const flags = rec.readUInt32LE(EXT_OFFSET + 4);
  const ext: HeaderExt = {};
  if (flags & EXT_TIMES) {
    const times: ExtTime[] = [];
    let at = EXT_OFFSET + 8;
    for (let i = 0; i < 3; i++) {
      const sec = rec.readBigInt64LE(at);
      const nsec = rec.readUInt32LE(at + 8);
      at += 12;
      // Out-of-range values are not ours: ignore the times, keep the dinode's.
      if (sec < BigInt(Number.MIN_SAFE_INTEGER) || sec > BigInt(Number.MAX_SAFE_INTEGER) || nsec > 999_999_999) return flags & EXT_LONG_NAMES ? { longNamesInPad: true } : undefined;
      times.push({ sec: Number(sec), nsec });
    }
    ext.times = { atime: times[0]!, mtime: times[1]!, ctime: times[2]! };
  }
  if (flags & EXT_LONG_NAMES) ext.longNamesInPad = true;
  return ext;
}

/** Linux 32-bit "new" dev_t encoding, as restore passes di_db[0] to mknod (spec 6.5). */
export function encodeRdev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function decodeRdev(rdev: number): { major: number; minor: number } {
  return { major: (rdev >>> 8) & 0xfff, minor: ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)) >>> 0 };
}
