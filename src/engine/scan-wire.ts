/**
 * How the scan workers hand entries over: a batch is one flat byte buffer, moved (transferred)
 * between threads, not an array of objects. Structured clone costs ~15 µs per Entry under Bun
 * (nested objects, many small Uint8Arrays), more than the walk itself; writing and reading the
 * fields here costs about a tenth of that.
 *
 * Layout, little-endian, one record after another:
 *   u8 kind = ITEM:   u8 type, u8 flags, u32 mode, f64 uid gid size, u64 dev ino (exact: they
 *                     may pass 2^53; 2^64-1 = unknown; written and read as two u32 halves, so
 *                     a number below 2^53 never becomes a BigInt on the way), f64 nlink,
 *                     f64 mtime.sec, u32 mtime.nsec, [f64 u32 atime], [f64 u32 ctime],
 *                     bytes path, bytes absPath, [u32 major, u32 minor], [bytes linkTarget],
 *                     [bytes uname], [bytes gname], [u32 n, n x (bytes name, bytes value)] xattrs,
 *                     [u32 n, n x (f64 offset, f64 length)] sparse runs
 *   u8 kind = REPORT: bytes relPath, bytes message (UTF-8), bytes code (ASCII, empty = none)
 *   u8 kind = LISTED: bytes dir, u64 dev, u32 n, n x (u8 type, u64 ino, bytes name): a
 *                     directory's non-directories from its listing alone (walker.ts ListedNames)
 * where bytes = u32 length + the bytes, and [..] is present when its flag is set.
 *
 * Contents of small files travel beside a batch (the reader fills them in): one buffer with the
 * bytes of every file, and per item a [start, length] pair (start -1: no content). The reader
 * needs only each record's type, size and absolute path: planBatch finds them without making
 * the entries.
 */
import type { Entry, EntryType, InodeNumber } from "../../formats/entry.ts";
import type { ListedNames } from "./walker.ts";

/** dev or ino not known (the kernel never hands out 2^64-1): both u32 halves all ones. */
const NO_ID_HALF = 0xffff_ffff;
const TWO_32 = 0x1_0000_0000;
/** A high half below this keeps the value under 2^53: a number, exactly (as inodeNumber() gives). */
const SAFE_HIGH = 0x20_0000;

const ITEM = 1;
const REPORT = 2;
const LISTED = 3;

const F_ATIME = 1;
const F_CTIME = 2;
const F_DEVICE = 4;
const F_LINK = 8;
const F_XATTRS = 16;
const F_SPARSE = 32;
const F_UNAME = 64;
const F_GNAME = 128;

const TYPES: EntryType[] = ["file", "directory", "symlink", "hardlink", "fifo", "chardev", "blockdev", "socket"];
const TYPE_CODE = new Map(TYPES.map((t, i) => [t, i]));

export interface WireError {
  message: string;
  code?: string;
}

export type DecodedItem = { entry: Entry; absPath: Buffer } | { report: { rel: Buffer; error: WireError } } | { listed: ListedNames };

/** Appends records to a growing buffer. */
export class BatchWriter {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private pos = 0;
  /** Records written (items and reports). */
  count = 0;

  addItem(entry: Entry, absPath: Buffer): void {
    let flags = 0;
    if (entry.atime) flags |= F_ATIME;
    if (entry.ctime) flags |= F_CTIME;
    if (entry.devMajor !== undefined || entry.devMinor !== undefined) flags |= F_DEVICE;
    if (entry.linkTarget) flags |= F_LINK;
    if (entry.uname) flags |= F_UNAME;
    if (entry.gname) flags |= F_GNAME;
    if (entry.xattrs) flags |= F_XATTRS;
    if (entry.sparse) flags |= F_SPARSE;
    this.room(128);
    this.u8(ITEM);
    this.u8(TYPE_CODE.get(entry.type)!);
    this.u8(flags);
    this.u32(entry.mode);
    for (const v of [entry.uid, entry.gid, entry.size]) this.f64(v);
    this.u64(entry.dev);
    this.u64(entry.ino);
    this.f64(entry.nlink ?? -1);
    this.f64(entry.mtime.sec);
    this.u32(entry.mtime.nsec);
    if (entry.atime) (this.f64(entry.atime.sec), this.u32(entry.atime.nsec));
    if (entry.ctime) (this.f64(entry.ctime.sec), this.u32(entry.ctime.nsec));
    this.bytes(entry.path);
    this.bytes(absPath);
    if (flags & F_DEVICE) {
      this.room(8);
      this.u32(entry.devMajor ?? 0);
      this.u32(entry.devMinor ?? 0);
    }
    if (entry.linkTarget) this.bytes(entry.linkTarget);
    if (entry.uname) this.bytes(entry.uname);
    if (entry.gname) this.bytes(entry.gname);
    if (entry.xattrs) {
      this.room(4);
      this.u32(entry.xattrs.length);
      for (const [name, value] of entry.xattrs) (this.bytes(name), this.bytes(value));
    }
    if (entry.sparse) {
      this.room(4 + 16 * entry.sparse.length);
      this.u32(entry.sparse.length);
      for (const run of entry.sparse) (this.f64(run.offset), this.f64(run.length));
    }
    this.count++;
  }

  /** The names count as records (a batch's size is in records). */
  addListed(l: ListedNames): void {
    this.room(1);
    this.u8(LISTED);
    this.bytes(l.dir);
    this.room(12);
    this.u64(l.dev);
    this.u32(l.count);
    for (let i = 0; i < l.count; i++) {
      const length = l.lengths[i]!;
      this.room(13 + length);
      this.u8(TYPE_CODE.get(l.types[i]!)!);
      this.u64(l.inos[i]!);
      this.u32(length);
      l.bytes.copy(this.buf, this.pos, l.starts[i]!, l.starts[i]! + length);
      this.pos += length;
    }
    this.count += l.count;
  }

  addReport(rel: Buffer, error: WireError): void {
    this.room(1);
    this.u8(REPORT);
    this.bytes(rel);
    this.bytes(Buffer.from(error.message, "utf8"));
    this.bytes(Buffer.from(error.code ?? "", "latin1"));
    this.count++;
  }

  get size(): number {
    return this.pos;
  }

  /** The records as a buffer of its own (safe to transfer), and a fresh start. */
  take(): ArrayBuffer {
    const out = new ArrayBuffer(this.pos);
    new Uint8Array(out).set(this.buf.subarray(0, this.pos));
    this.pos = 0;
    this.count = 0;
    return out;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }
  private u8(v: number): void {
    this.buf[this.pos++] = v;
  }
  private u32(v: number): void {
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
  }
  private u64(v: InodeNumber | undefined): void {
    let lo = NO_ID_HALF;
    let hi = NO_ID_HALF;
    if (typeof v === "number") {
      lo = v % TWO_32;
      hi = (v - lo) / TWO_32;
    } else if (v !== undefined) {
      const u = BigInt.asUintN(64, v);
      lo = Number(u & 0xffff_ffffn);
      hi = Number(u >> 32n);
    }
    this.buf.writeUInt32LE(lo >>> 0, this.pos);
    this.buf.writeUInt32LE(hi >>> 0, this.pos + 4);
    this.pos += 8;
  }

  private f64(v: number): void {
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }
  private bytes(b: Uint8Array): void {
    this.room(4 + b.length);
    this.u32(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

/** A placeholder while an entry's fields are read in order (its path comes after its times): one Buffer for all. */
const NO_PATH = Buffer.alloc(0);

/** The records of a batch; Buffers in them are views of `data`. */
export function decodeBatch(data: ArrayBuffer): DecodedItem[] {
  const buf = Buffer.from(data);
  const out: DecodedItem[] = [];
  let pos = 0;
  const u8 = () => buf[pos++]!;
  const u32 = () => {
    const v = buf.readUInt32LE(pos);
    pos += 4;
    return v;
  };
  const f64 = () => {
    const v = buf.readDoubleLE(pos);
    pos += 8;
    return v;
  };
  const u64 = (): InodeNumber | undefined => {
    const lo = buf.readUInt32LE(pos);
    const hi = buf.readUInt32LE(pos + 4);
    pos += 8;
    if (hi < SAFE_HIGH) return hi * TWO_32 + lo;
    if (lo === NO_ID_HALF && hi === NO_ID_HALF) return undefined;
    return (BigInt(hi) << 32n) | BigInt(lo);
  };
  const bytes = () => {
    const n = u32();
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  while (pos < buf.length) {
    const kind = u8();
    if (kind === REPORT) {
      const rel = bytes();
      const message = bytes().toString("utf8");
      const code = bytes().toString("latin1");
      out.push({ report: { rel, error: code ? { message, code } : { message } } });
      continue;
    }
    if (kind === LISTED) {
      const dir = bytes();
      const dev = u64() ?? 0;
      const count = u32();
      const l: ListedNames = { dir, dev, count, bytes: buf, starts: new Array(count), lengths: new Array(count), types: new Array(count), inos: new Array(count) };
      for (let i = 0; i < count; i++) {
        l.types[i] = TYPES[u8()]!;
        l.inos[i] = u64() ?? 0;
        const n = u32();
        l.starts[i] = pos;
        l.lengths[i] = n;
        pos += n;
      }
      out.push({ listed: l });
      continue;
    }
    if (kind !== ITEM) throw new Error(`scan batch: bad record kind ${kind} at ${pos - 1}`);
    const type = TYPES[u8()]!;
    const flags = u8();
    const mode = u32();
    const uid = f64();
    const gid = f64();
    const size = f64();
    const dev = u64();
    const ino = u64();
    const nlink = f64();
    const entry: Entry = { path: NO_PATH, type, mode, uid, gid, size, mtime: { sec: f64(), nsec: u32() } };
    if (flags & F_ATIME) entry.atime = { sec: f64(), nsec: u32() };
    if (flags & F_CTIME) entry.ctime = { sec: f64(), nsec: u32() };
    if (dev !== undefined) entry.dev = dev;
    if (ino !== undefined) entry.ino = ino;
    if (nlink >= 0) entry.nlink = nlink;
    entry.path = bytes();
    const absPath = bytes();
    if (flags & F_DEVICE) {
      entry.devMajor = u32();
      entry.devMinor = u32();
    }
    if (flags & F_LINK) entry.linkTarget = bytes();
    if (flags & F_UNAME) entry.uname = bytes();
    if (flags & F_GNAME) entry.gname = bytes();
    if (flags & F_XATTRS) {
      const n = u32();
      entry.xattrs = [];
      for (let i = 0; i < n; i++) entry.xattrs.push([bytes(), bytes()]);
    }
    if (flags & F_SPARSE) {
      const n = u32();
      entry.sparse = [];
      for (let i = 0; i < n; i++) entry.sparse.push({ offset: f64(), length: f64() });
    }
    out.push({ entry, absPath });
  }
  return out;
}

/**
 * What the reader needs of a batch (scan-worker.ts readContents), read straight off the records:
 * per record whether it is an item, the size of a regular file that has no data runs (-1 for
 * anything else: a report, another type, a sparse file), and where its absolute path lies in
 * the batch. No Entry objects, no Buffers: at 64-byte files decoding every entry cost the
 * reader more than reading the file.
 */
export interface BatchPlan {
  count: number;
  isItem: Uint8Array;
  fileSize: Float64Array;
  absStart: Int32Array;
  absLength: Int32Array;
}

const FILE_CODE = TYPE_CODE.get("file")!;

export function planBatch(data: ArrayBuffer): BatchPlan {
  const buf = Buffer.from(data);
  let count = 0;
  const starts: number[] = [];
  // First pass: where each record starts (records have no length prefix; their fields say it).
  let pos = 0;
  const skipBytes = () => {
    pos += 4 + buf.readUInt32LE(pos);
  };
  while (pos < buf.length) {
    starts.push(pos);
    count++;
    const kind = buf[pos]!;
    if (kind === REPORT) {
      pos++;
      skipBytes();
      skipBytes();
      skipBytes();
      continue;
    }
    if (kind === LISTED) {
      pos++;
      skipBytes(); // dir
      const n = buf.readUInt32LE(pos + 8);
      pos += 12;
      for (let i = 0; i < n; i++) {
        pos += 9;
        skipBytes();
      }
      continue;
    }
    if (kind !== ITEM) throw new Error(`scan batch: bad record kind ${kind} at ${pos}`);
    const flags = buf[pos + 2]!;
    pos += ITEM_FIXED + (flags & F_ATIME ? 12 : 0) + (flags & F_CTIME ? 12 : 0);
    skipBytes(); // path
    skipBytes(); // absPath
    if (flags & F_DEVICE) pos += 8;
    if (flags & F_LINK) skipBytes();
    if (flags & F_UNAME) skipBytes();
    if (flags & F_GNAME) skipBytes();
    if (flags & F_XATTRS) {
      const n = buf.readUInt32LE(pos);
      pos += 4;
      for (let i = 0; i < 2 * n; i++) skipBytes();
    }
    if (flags & F_SPARSE) pos += 4 + 16 * buf.readUInt32LE(pos);
  }
  if (pos !== buf.length) throw new Error("scan batch: a record runs past the end");
  const plan: BatchPlan = { count, isItem: new Uint8Array(count), fileSize: new Float64Array(count).fill(-1), absStart: new Int32Array(count), absLength: new Int32Array(count) };
  for (let i = 0; i < count; i++) {
    const at = starts[i]!;
    if (buf[at] !== ITEM) continue;
    plan.isItem[i] = 1;
    const flags = buf[at + 2]!;
    if (buf[at + 1] === FILE_CODE && !(flags & F_SPARSE)) plan.fileSize[i] = buf.readDoubleLE(at + SIZE_AT);
    let p = at + ITEM_FIXED + (flags & F_ATIME ? 12 : 0) + (flags & F_CTIME ? 12 : 0);
    p += 4 + buf.readUInt32LE(p); // path
    plan.absLength[i] = buf.readUInt32LE(p);
    plan.absStart[i] = p + 4;
  }
  return plan;
}

/** An item's fixed part: kind, type, flags, mode, uid, gid, size, dev, ino, nlink, mtime. */
const ITEM_FIXED = 1 + 1 + 1 + 4 + 3 * 8 + 8 + 8 + 8 + 8 + 4;
/** Where an item's size lies from its start (after kind, type, flags, mode, uid, gid). */
const SIZE_AT = 1 + 1 + 1 + 4 + 8 + 8;
