/**
 * Dump stream writer: a pure codec that turns a walk into BSD/Linux dump bytes
 * (shared/spec/dump-format.md). It never touches the filesystem: file contents are
 * streamed by the caller following the steps the writer hands out.
 *
 * The engine drives it in the order a dump needs:
 *
 *   const w = new DumpWriter({ date, inodes, ... });
 *   out(w.begin());                                   // TS_TAPE, TS_CLRI, TS_BITS
 *   for each directory:  out(w.directory(ino, entry, children, parentIno).bytes)
 *   for each other inode, ascending:
 *     const { offset, steps } = w.inode(ino, entry);  // offset = NDMP fh_info
 *     for (const s of steps) s.kind === "bytes" ? out(s.bytes)
 *                            : out(read(s.fileOffset, s.length), zeros(s.pad));
 *   out(w.end());                                      // TS_END, padded to c_ntrec
 *
 * The writer counts every record it describes (including the data records the caller
 * writes), so `offset` and c_tapea are exact. Problems that lose information (names
 * restore cannot take, times outside u32 seconds, attributes that do not fit) are
 * collected in `warnings`; nothing is dropped without one.
 */
import { Buffer } from "node:buffer";
import type { Entry, EntryType, Timespec } from "../entry.ts";
import {
  DR_EXTATTRIBUTES,
  DR_NEWHEADER,
  DR_NEWINODEFMT,
  EXT_XATTR,
  MAX_DIR_SIZE,
  ROOTINO,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
  TP_BSIZE,
  TP_NINDIR,
  TS_ADDR,
  TS_BITS,
  TS_CLRI,
  TS_END,
  TS_INODE,
  TS_TAPE,
  XATTR_MAXSIZE,
  emptyDinode,
  encodeHeaderInto,
  headerBase,
  type FixedFields,
  encodeRdev,
  type DumpDinode,
  type DumpHeader,
  type DumpTime,
  type HeaderExt,
} from "./header.ts";
import { MAX_NAME, encodeDirectory, type DirChild } from "./directory.ts";
import { EMPTY_BLOCK_SIZE, aclXattrToDisk, encodeEaBlock, itemCost, splitName, type EaItem } from "./xattr.ts";

export type { DirChild } from "./directory.ts";

export interface DumpWriterOptions {
  /** c_date: this dump's date, Unix seconds. Identical in every header. */
  date: number;
  /** c_ddate: date of the dump this one is incremental against; 0 (default) for level 0. */
  ddate?: number;
  level?: number;
  /** At most 15 bytes (default "none"). */
  label?: string | Buffer;
  /** Backup path or mount point, at most 63 bytes. */
  filesys?: string | Buffer;
  dev?: string | Buffer;
  host?: string | Buffer;
  /** Records (1 KiB) per tape block: the NDMP mover record size / 1024. Default 10. */
  ntrec?: number;
  /** Every inode number that exists in the backed-up tree (TS_CLRI). Must include 2. */
  inodes: Iterable<number>;
  /** Inode numbers written to this stream (TS_BITS). Default: all of `inodes` (level 0). */
  dumped?: Iterable<number>;
  /** Highest inode number + 1. Computed from `inodes` when omitted. */
  maxino?: number;
  /**
   * 255-byte names, which restore 0.4b47 mangles: "pad" (default) writes the first 254 bytes
   * with the last one in the entry's pad byte (directory.ts): restore restores the file under
   * the 254-byte name, our reader under the whole one; where the 254-byte name would clash
   * with another name of the directory, the entry is left out. "skip" always leaves it out.
   * Either way a "name-too-long" warning is recorded.
   */
  longNames?: "skip" | "pad";
}

export type DumpWarningCode =
  | "name-too-long"
  | "bad-name"
  | "time-out-of-range"
  | "xattr-dropped"
  | "device-number"
  | "field-truncated"
  | "not-written";

export interface DumpWarning {
  code: DumpWarningCode;
  /** Dump inode number concerned (for names: the directory's). */
  ino?: number;
  name?: Buffer;
  message: string;
}

/** What the caller must put in the stream next, in order. */
export type WriteStep =
  /** Bytes produced by the writer (headers, symlink targets, EA records). */
  | { kind: "bytes"; bytes: Buffer }
  /**
   * `length` bytes of file content from `fileOffset`, then `pad` zero bytes. If the file
   * reads short (it shrank), pad with zeros up to `length + pad` all the same: the
   * headers already promised that many records.
   */
  | { kind: "data"; fileOffset: number; length: number; pad: number };

export interface InodeWrite {
  /** Absolute byte offset of the inode's TS_INODE header (NDMP fh_info). */
  offset: number;
  /** Consume fully before calling the writer again. */
  steps: Iterable<WriteStep>;
}

export interface DirectoryWrite {
  offset: number;
  bytes: Buffer;
}

const U32_MAX = 0xffffffff;
const NO_ADDR = new Uint8Array(TP_NINDIR);
const TYPE_BITS: Record<Exclude<EntryType, "hardlink">, number> = {
  file: S_IFREG,
  directory: S_IFDIR,
  symlink: S_IFLNK,
  fifo: S_IFIFO,
  chardev: S_IFCHR,
  blockdev: S_IFBLK,
  socket: S_IFSOCK,
};

function asBuffer(v: string | Buffer | undefined, fallback: string): Buffer {
  if (v === undefined) return Buffer.from(fallback);
  return typeof v === "string" ? Buffer.from(v) : v;
}

/** Inode n is bit (n-1) % 8 of byte (n-1) / 8. */
function setBit(map: Buffer, ino: number): void {
  map[(ino - 1) >>> 3] |= 1 << ((ino - 1) & 7);
}

function hasBit(map: Buffer, ino: number): boolean {
  return (map[(ino - 1) >>> 3] & (1 << ((ino - 1) & 7))) !== 0;
}

/** Sorted, merged runs clipped to [0, size). */
function normalizeRuns(entry: Entry): Array<[start: number, end: number]> {
  if (!entry.sparse) return entry.size > 0 ? [[0, entry.size]] : [];
  const runs = entry.sparse
    .map((r): [number, number] => [Math.max(0, r.offset), Math.min(entry.size, r.offset + r.length)])
    .filter(([s, e]) => e > s)
    .sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const run of runs) {
    const last = merged[merged.length - 1];
    if (last && run[0] <= last[1]) last[1] = Math.max(last[1], run[1]);
    else merged.push(run);
  }
  return merged;
}

export class DumpWriter {
  readonly warnings: DumpWarning[] = [];
  readonly maxino: number;
  private readonly opts: DumpWriterOptions;
  private readonly clri: Buffer;
  private readonly bits: Buffer;
  private readonly written: Buffer;
  /** Inodes named by at least one directory entry written so far. */
  private readonly named: Buffer;
  private records = 0;
  private phase: "new" | "dirs" | "files" | "ended" = "new";
  private busy = false;
  private lastFileIno = 0;
  /** Our c_spare extension for the inode being written (exact times, long names). */
  private ext: HeaderExt | undefined;
  /**
   * The header fields that are the same in every header, and a record holding them that every
   * header starts from (headerBase): made once, a tree of small files has a header per file.
   */
  private readonly fixed: FixedFields;
  private readonly base: Buffer;
  private readonly noDinode = emptyDinode();
  /** A file's c_addr of the group being written (encoded into its header before the next one is made). */
  private readonly fileAddr = new Uint8Array(TP_NINDIR);

  constructor(opts: DumpWriterOptions) {
    this.opts = opts;
    this.fixed = {
      date: opts.date,
      ddate: opts.ddate ?? 0,
      volume: 1,
      label: asBuffer(opts.label, "none"),
      level: opts.level ?? 0,
      filesys: asBuffer(opts.filesys, ""),
      dev: asBuffer(opts.dev, ""),
      host: asBuffer(opts.host, ""),
      firstrec: 0,
      ntrec: opts.ntrec ?? 10,
    };
    this.base = headerBase(this.fixed);
    const inodes = opts.maxino === undefined ? [...opts.inodes] : opts.inodes;
    let maxino = opts.maxino;
    if (maxino === undefined) {
      maxino = ROOTINO + 1;
      for (const n of inodes) maxino = Math.max(maxino, n + 1);
    }
    if (!Number.isInteger(maxino) || maxino <= ROOTINO || maxino - 1 > U32_MAX) throw new RangeError(`bad maxino ${maxino}`);
    this.maxino = maxino;
    // Map length: roundup(ceil(maxino / 8), 1024) bytes (spec 3.1).
    const mapBytes = Math.ceil(Math.ceil(maxino / 8) / TP_BSIZE) * TP_BSIZE;
    this.clri = Buffer.alloc(mapBytes);
    this.bits = Buffer.alloc(mapBytes);
    this.written = Buffer.alloc(mapBytes);
    this.named = Buffer.alloc(mapBytes);
    setBit(this.named, ROOTINO);
    for (const n of inodes) {
      this.checkIno(n);
      setBit(this.clri, n);
    }
    if (opts.dumped === undefined) {
      this.clri.copy(this.bits); // level 0: every existing inode is on the tape (iterables may be one-shot)
    } else {
      for (const n of opts.dumped) {
        this.checkIno(n);
        if (!hasBit(this.clri, n)) throw new RangeError(`dumped inode ${n} is not in the set of existing inodes`);
        setBit(this.bits, n);
      }
    }
    if (!hasBit(this.bits, ROOTINO)) throw new RangeError("the root directory (inode 2) must be dumped");
    for (const [field, max] of [["label", 15], ["filesys", 63], ["dev", 63], ["host", 63]] as const) {
      const v = opts[field];
      if (v !== undefined && Buffer.byteLength(v) > max) {
        this.warn({ code: "field-truncated", message: `${field} cut to ${max} bytes` });
      }
    }
  }

  /** Absolute byte offset of the next record. */
  get offset(): number {
    return this.records * TP_BSIZE;
  }

  /** TS_TAPE, then the TS_CLRI and TS_BITS maps. */
  begin(): Buffer {
    this.expect(this.phase === "new", "begin() must come first");
    this.phase = "dirs";
    const m = this.clri.length / TP_BSIZE;
    // c_inos[] stays zero, as Linux dump writes it. The spec's "volinfo tip" (c_inos[1] = 2,
    // so that restore -x does not ask for a volume) is NOT used: with it, restore -x/-i
    // start from curfile.ino = 0 and skip the first non-directory inode (it is reported
    // "not found on tape", or its EA record is extracted as its content). Verified with
    // restore 0.4b47; use `restore -x -a` (or pipe input) instead.
    const tape = this.header({ type: TS_TAPE, inumber: 0, count: 1, flags: DR_NEWHEADER | DR_NEWINODEFMT });
    const mapDinode = { ...emptyDinode(), size: m * TP_BSIZE };
    const clri = this.header({ type: TS_CLRI, inumber: this.maxino - 1, count: m, dinode: mapDinode });
    this.records += m;
    const bits = this.header({ type: TS_BITS, inumber: ROOTINO, count: m, dinode: mapDinode });
    this.records += m;
    return Buffer.concat([tape, clri, this.clri, bits, this.bits]);
  }

  /**
   * A directory: TS_INODE (+ TS_ADDR) with its entries, "." and ".." first, then its EA
   * record. `parent` is the parent's number (2 for the root). All directories must come
   * before any non-directory; children are the names in this directory (a hard-linked
   * file appears once per name, with the same ino).
   */
  directory(ino: number, entry: Entry, children: DirChild[], parent: number): DirectoryWrite {
    this.expect(this.phase === "dirs", "directories must follow begin() and precede other inodes");
    this.expect(entry.type === "directory", () => `inode ${ino} is not a directory`);
    this.startInode(ino);
    this.checkIno(parent);
    const list: DirChild[] = [
      { name: Buffer.from("."), ino, type: "directory" },
      { name: Buffer.from(".."), ino: parent, type: "directory" },
    ];
    const clashes = longNameClashes(children.map((c) => c.name));
    let longNames = false;
    for (const [i, child] of children.entries()) {
      if (!this.acceptName(ino, child, clashes.has(i))) continue;
      if (child.name.length > MAX_NAME) longNames = true;
      list.push(child);
      setBit(this.named, child.ino);
    }
    const data = encodeDirectory(list);
    if (data.length > MAX_DIR_SIZE) throw new RangeError(`directory ${ino} too large for restore (${data.length} bytes)`);
    const offset = this.offset;
    const dinode = this.dinode(ino, entry, data.length);
    if (longNames) this.ext = { ...this.ext, longNamesInPad: true };
    const parts: Buffer[] = [];
    const slots = Math.ceil(data.length / TP_BSIZE);
    for (let slot = 0; slot < slots; slot += TP_NINDIR) {
      const count = Math.min(TP_NINDIR, slots - slot);
      parts.push(this.slotHeader(slot === 0 ? TS_INODE : TS_ADDR, ino, dinode, count, new Uint8Array(TP_NINDIR).fill(1, 0, count)));
      parts.push(this.dataRecords(data.subarray(slot * TP_BSIZE, (slot + count) * TP_BSIZE)));
    }
    parts.push(...this.eaRecord(ino, entry, dinode));
    return { offset, bytes: Buffer.concat(parts) };
  }

  /**
   * A non-directory, in strictly ascending inode order. Regular files: headers for every
   * 512 slots, with holes (per `entry.sparse`) left out; the caller supplies the data.
   * Symlinks carry the target as data; devices, fifos and sockets are a header only.
   * With `room` (TP_BSIZE bytes) the inode's TS_INODE header is encoded there, and the first
   * step hands out `room` itself: the caller can tell the header is where it put the room
   * (in front of the file's content, say) and send both at once.
   */
  inode(ino: number, entry: Entry, room?: Buffer): InodeWrite {
    this.expect(this.phase === "dirs" || this.phase === "files", "inode() after end() or before begin()");
    this.expect(entry.type !== "directory", "use directory() for directories");
    this.expect(entry.type !== "hardlink", "a hard link is one inode with several directory entries: write the inode once");
    if (this.phase === "dirs") {
      this.expect(hasBit(this.written, ROOTINO), "the root directory (2) must be written before other inodes");
      this.phase = "files";
    }
    this.expect(ino > this.lastFileIno, () => `non-directories must be strictly ascending (${ino} after ${this.lastFileIno})`);
    this.startInode(ino);
    this.lastFileIno = ino;
    const offset = this.offset;
    this.busy = true;
    return { offset, steps: this.inodeSteps(ino, entry, room) };
  }

  /**
   * After the directories: does any written directory entry name this inode? An inode
   * whose only names were left out (see `longNames`) should not be written: restore
   * would only complain about an unexpected inode. Skipping it is not reported again.
   */
  isNamed(ino: number): boolean {
    return ino >= 1 && ino < this.maxino && hasBit(this.named, ino);
  }

  /** TS_END, repeated until the record count is a multiple of c_ntrec. */
  end(): Buffer {
    this.expect(this.phase === "dirs" || this.phase === "files", "end() before begin() or twice");
    this.expect(hasBit(this.written, ROOTINO), "the root directory (2) was never written");
    this.phase = "ended";
    for (let ino = 1; ino < this.maxino; ino++) {
      if (hasBit(this.bits, ino) && !hasBit(this.written, ino) && hasBit(this.named, ino)) {
        this.warn({ code: "not-written", ino, message: `inode ${ino} is in TS_BITS but was not written (restore warns "not found on tape")` });
      }
    }
    const ntrec = this.fixed.ntrec;
    const parts: Buffer[] = [];
    do {
      parts.push(this.header({ type: TS_END, inumber: this.maxino - 1 }));
    } while (this.records % ntrec !== 0);
    return Buffer.concat(parts);
  }

  // ---- internals -------------------------------------------------------------

  private *inodeSteps(ino: number, entry: Entry, room: Buffer | undefined): Generator<WriteStep> {
    if (entry.type === "file") {
      const dinode = this.dinode(ino, entry, entry.size);
      yield* this.fileSteps(ino, entry, dinode, room);
      for (const bytes of this.eaRecord(ino, entry, dinode)) yield { kind: "bytes", bytes };
    } else if (entry.type === "symlink") {
      const target = entry.linkTarget;
      if (!target) throw new TypeError(`symlink inode ${ino} has no linkTarget`);
      const dinode = this.dinode(ino, entry, target.length);
      const slots = Math.ceil(target.length / TP_BSIZE);
      for (let slot = 0; slot === 0 || slot < slots; slot += TP_NINDIR) {
        const count = Math.min(TP_NINDIR, slots - slot);
        yield { kind: "bytes", bytes: this.slotHeader(slot === 0 ? TS_INODE : TS_ADDR, ino, dinode, count, new Uint8Array(TP_NINDIR).fill(1, 0, count), slot === 0 ? room : undefined) };
        yield { kind: "bytes", bytes: this.dataRecords(target.subarray(slot * TP_BSIZE, (slot + count) * TP_BSIZE)) };
      }
      for (const bytes of this.eaRecord(ino, entry, dinode)) yield { kind: "bytes", bytes };
    } else {
      const dinode = this.dinode(ino, entry, 0);
      yield { kind: "bytes", bytes: this.slotHeader(TS_INODE, ino, dinode, 0, NO_ADDR, room) };
      for (const bytes of this.eaRecord(ino, entry, dinode)) yield { kind: "bytes", bytes };
    }
    this.busy = false;
  }

  /** Regular file: exactly ceil(size/1024) slots in groups of 512; a slot is present if any run touches it. */
  private *fileSteps(ino: number, entry: Entry, dinode: DumpDinode, room: Buffer | undefined): Generator<WriteStep> {
    const size = entry.size;
    const slots = Math.ceil(size / TP_BSIZE);
    const runs = normalizeRuns(entry);
    let runIdx = 0;
    for (let first = 0; first === 0 || first < slots; first += TP_NINDIR) {
      const count = Math.min(TP_NINDIR, slots - first);
      const groupStart = first * TP_BSIZE;
      const groupEnd = (first + count) * TP_BSIZE;
      const addr = this.fileAddr.fill(0);
      while (runIdx < runs.length && runs[runIdx][1] <= groupStart) runIdx++;
      for (let r = runIdx; r < runs.length && runs[r][0] < groupEnd; r++) {
        const from = Math.floor((Math.max(runs[r][0], groupStart) - groupStart) / TP_BSIZE);
        const to = Math.ceil((Math.min(runs[r][1], groupEnd) - groupStart) / TP_BSIZE);
        addr.fill(1, from, to);
      }
      yield { kind: "bytes", bytes: this.slotHeader(first === 0 ? TS_INODE : TS_ADDR, ino, dinode, count, addr, first === 0 ? room : undefined) };
      // One data step per run of consecutive present slots.
      let k = 0;
      while (k < count) {
        if (!addr[k]) {
          k++;
          continue;
        }
        let j = k;
        while (j < count && addr[j]) j++;
        const fileOffset = groupStart + k * TP_BSIZE;
        const length = Math.min(groupStart + j * TP_BSIZE, size) - fileOffset;
        this.records += j - k;
        yield { kind: "data", fileOffset, length, pad: (j - k) * TP_BSIZE - length };
        k = j;
      }
    }
  }

  /** The single EA record of an inode (spec 6.7), or nothing. */
  private eaRecord(ino: number, entry: Entry, dinode: DumpDinode): Buffer[] {
    const block = this.eaBlock(ino, entry);
    if (!block) return [];
    const count = Math.ceil(block.length / TP_BSIZE);
    const header = this.header({
      type: TS_INODE,
      inumber: ino,
      dinode: { ...dinode, size: block.length },
      count,
      addr: new Uint8Array(TP_NINDIR).fill(1, 0, count),
      flags: DR_NEWINODEFMT | DR_EXTATTRIBUTES,
      extattributes: EXT_XATTR,
    });
    return [header, this.dataRecords(block)];
  }

  /** Build the EA block: ACLs first (they matter most), then the rest in order, within 4096 bytes. */
  private eaBlock(ino: number, entry: Entry): Buffer | undefined {
    if (!entry.xattrs || entry.xattrs.length === 0) return undefined;
    const acls: EaItem[] = [];
    const others: EaItem[] = [];
    for (const [name, value] of entry.xattrs) {
      const split = splitName(name);
      if (!split || split.suffix.length > 255) {
        this.warn({ code: "xattr-dropped", ino, name, message: `xattr ${name.toString("latin1")} of inode ${ino}: namespace restore cannot store` });
        continue;
      }
      if (split.index === 2 || split.index === 3) {
        const disk = aclXattrToDisk(value);
        if (!disk) {
          this.warn({ code: "xattr-dropped", ino, name, message: `xattr ${name.toString("latin1")} of inode ${ino}: malformed ACL` });
          continue;
        }
        acls.push({ index: split.index, suffix: split.suffix, value: disk });
      } else {
        others.push({ index: split.index, suffix: split.suffix, value });
      }
    }
    const kept: EaItem[] = [];
    let size = EMPTY_BLOCK_SIZE;
    for (const item of [...acls, ...others]) {
      if (size + itemCost(item) <= XATTR_MAXSIZE) {
        kept.push(item);
        size += itemCost(item);
      } else {
        const name = Buffer.concat([Buffer.from(splitPrefix(item.index)), item.suffix]);
        this.warn({ code: "xattr-dropped", ino, name, message: `xattr ${name.toString("latin1")} of inode ${ino}: EA record would exceed ${XATTR_MAXSIZE} bytes` });
      }
    }
    return kept.length > 0 ? encodeEaBlock(kept) : undefined;
  }

  private acceptName(dir: number, child: DirChild, clash: boolean): boolean {
    const problem = nameProblem(child.name);
    if (problem === "invalid") {
      this.warn({ code: "bad-name", ino: dir, name: child.name, message: `directory ${dir}: invalid entry name left out` });
      return false;
    }
    this.checkIno(child.ino);
    if (problem === "too-long") {
      this.warn({ code: "name-too-long", ino: dir, name: child.name, message: `directory ${dir}: ${child.name.length}-byte name left out (dump names are at most 255 bytes)` });
      return false;
    }
    if (problem === "restore-limit") {
      const keep = this.opts.longNames !== "skip" && !clash;
      const why = keep
        ? "kept: Linux restore restores it as its first 254 bytes, ndmpd's recovery whole"
        : clash
          ? "left out: its first 254 bytes are another name here, which Linux restore would confuse it with"
          : "left out (restore 0.4b47 mangles it)";
      this.warn({ code: "name-too-long", ino: dir, name: child.name, message: `directory ${dir}: 255-byte name ${why}` });
      return keep;
    }
    return true;
  }

  private dinode(ino: number, entry: Entry, size: number): DumpDinode {
    const type = entry.type as Exclude<EntryType, "hardlink">;
    let rdev = 0;
    if (type === "chardev" || type === "blockdev") {
      const major = entry.devMajor ?? 0;
      const minor = entry.devMinor ?? 0;
      if (major > 0xfff || minor > 0xfffff) {
        this.warn({ code: "device-number", ino, message: `device ${major}:${minor} of inode ${ino} does not fit a 32-bit dev_t` });
      }
      rdev = encodeRdev(major, minor);
    }
    checkId(ino, "uid", entry.uid);
    checkId(ino, "gid", entry.gid);
    const stored = type === "file" ? Math.ceil(Math.min(size, storedBytes(entry)) / 512) : 0;
    const times = { atime: exactTime(entry.atime ?? entry.mtime), mtime: exactTime(entry.mtime), ctime: exactTime(entry.ctime ?? entry.mtime) };
    this.ext = this.ext ? { ...this.ext, times } : { times };
    return {
      mode: TYPE_BITS[type] | (entry.mode & 0o7777),
      nlink: entry.nlink ?? 1,
      size,
      atime: this.time(ino, "atime", entry.atime ?? entry.mtime),
      mtime: this.time(ino, "mtime", entry.mtime),
      ctime: this.time(ino, "ctime", entry.ctime ?? entry.mtime),
      rdev,
      flags: 0,
      blocks: stored,
      uid: entry.uid,
      gid: entry.gid,
    };
  }

  /**
   * Seconds are u32 on tape (1970..2106); microseconds = nsec / 1000. Clamped and reported;
   * the exact time goes into our header extension (for our own recovery) all the same.
   */
  private time(ino: number, field: string, t: Timespec): DumpTime {
    const usec = Math.min(999_999, Math.max(0, Math.floor(t.nsec / 1000)));
    const exact = "restored exactly by ndmpd's recovery";
    if (t.sec < 0) {
      this.warn({ code: "time-out-of-range", ino, message: `inode ${ino}: ${field} ${t.sec} is before 1970; stored as 0 for Linux restore (${exact})` });
      return { sec: 0, usec: 0 };
    }
    if (t.sec > U32_MAX) {
      this.warn({ code: "time-out-of-range", ino, message: `inode ${ino}: ${field} ${t.sec} is after 2106; stored as ${U32_MAX} for Linux restore (${exact})` });
      return { sec: U32_MAX, usec: 999_999 };
    }
    return { sec: Math.floor(t.sec), usec };
  }

  private slotHeader(type: number, ino: number, dinode: DumpDinode, count: number, addr: Uint8Array, into?: Buffer): Buffer {
    // Only the header is counted here; its data records are counted where they are produced.
    return this.header({ type, inumber: ino, dinode, count, addr }, into);
  }

  /** Whole 1 KiB records holding `data`, the last one zero-padded; counts them. */
  private dataRecords(data: Buffer): Buffer {
    const records = Math.ceil(data.length / TP_BSIZE);
    this.records += records;
    const out = Buffer.alloc(records * TP_BSIZE);
    data.copy(out);
    return out;
  }

  /** Encode a header at the current record index (into `into` if given) and count it. */
  private header(fields: Partial<Omit<DumpHeader, keyof FixedFields>> & { type: number; inumber: number }, into?: Buffer): Buffer {
    // Field by field, not a spread of `fields` over the defaults: this runs for every inode, and
    // the spread (a generic property copy) was the largest part of it. The fixed fields are in
    // this.base (every header of the dump has the same ones).
    const f = this.fixed;
    const h: DumpHeader = {
      date: f.date,
      ddate: f.ddate,
      volume: f.volume,
      label: f.label,
      level: f.level,
      filesys: f.filesys,
      dev: f.dev,
      host: f.host,
      firstrec: f.firstrec,
      ntrec: f.ntrec,
      type: fields.type,
      tapea: fields.tapea ?? this.records,
      inumber: fields.inumber,
      dinode: fields.dinode ?? this.noDinode,
      count: fields.count ?? 0,
      addr: fields.addr ?? NO_ADDR,
      flags: fields.flags ?? DR_NEWINODEFMT,
      extattributes: fields.extattributes ?? 0,
      ext: "ext" in fields ? fields.ext : fields.type === TS_INODE ? this.ext : undefined,
    };
    this.records++;
    return encodeHeaderInto(h, into ?? Buffer.allocUnsafe(TP_BSIZE), this.base);
  }

  private startInode(ino: number): void {
    this.expect(!this.busy, "the previous inode's steps were not consumed");
    this.checkIno(ino);
    this.expect(hasBit(this.bits, ino), () => `inode ${ino} is not in the dumped set (TS_BITS)`);
    this.expect(!hasBit(this.written, ino), () => `inode ${ino} written twice`);
    setBit(this.written, ino);
    this.ext = undefined;
  }

  private checkIno(n: number): void {
    if (!Number.isInteger(n) || n < ROOTINO || n >= this.maxino) throw new RangeError(`inode number ${n} outside 2..${this.maxino - 1}`);
  }

  /** `message` may be a function, so that the checks made for every inode build no string. */
  private expect(ok: boolean, message: string | (() => string)): void {
    if (!ok) throw new Error(`DumpWriter: ${typeof message === "string" ? message : message()}`);
  }

  private warn(w: DumpWarning): void {
    this.warnings.push(w);
  }
}

/**
 * Why a directory entry name cannot go on tape as is, if it cannot: "invalid" (empty, ".",
 * "..", contains NUL or "/"), "too-long" (> 255 bytes: d_namlen is a byte),
 * "restore-limit" (255 bytes: restore 0.4b47 mangles it). Pure, so the engine can apply
 * the same rule during its walk and keep such objects out of TS_BITS from the start.
 */
export function nameProblem(name: Buffer): "invalid" | "too-long" | "restore-limit" | undefined {
  const n = name.length;
  if (n === 0 || (n <= 2 && name[0] === 0x2e && name[n - 1] === 0x2e)) return "invalid";
  // One loop, not includes() twice: this runs for every name of every directory.
  for (let i = 0; i < n; i++) {
    const c = name[i]!;
    if (c === 0 || c === 0x2f) return "invalid";
  }
  if (n > 255) return "too-long";
  if (n > MAX_NAME) return "restore-limit";
  return undefined;
}

/**
 * The 255-byte names among a directory's `names` (by index) whose first 254 bytes, all that
 * restore sees of them, are also another name of the directory: those are left out. Pure, so
 * the engine can apply the rule before it decides which inodes go on tape.
 */
export function longNameClashes(names: Buffer[]): Set<number> {
  const out = new Set<number>();
  if (!names.some((n) => n.length > MAX_NAME)) return out;
  const shown = new Map<string, number>();
  for (const n of names) {
    const key = n.subarray(0, MAX_NAME).toString("latin1");
    shown.set(key, (shown.get(key) ?? 0) + 1);
  }
  names.forEach((n, i) => {
    if (n.length > MAX_NAME && n.length <= 255 && shown.get(n.subarray(0, MAX_NAME).toString("latin1"))! > 1) out.add(i);
  });
  return out;
}

function splitPrefix(index: number): string {
  return ["", "user.", "system.posix_acl_access", "system.posix_acl_default", "trusted.", "lustre.", "security."][index] ?? "";
}

function storedBytes(entry: Entry): number {
  if (!entry.sparse) return entry.size;
  return entry.sparse.reduce((n, r) => n + r.length, 0);
}

/** Collect an inode's steps into one Buffer (small inodes, tests), reading content via `read`. */
export function materialize(steps: Iterable<WriteStep>, read: (fileOffset: number, length: number) => Buffer): Buffer {
  const parts: Buffer[] = [];
  for (const step of steps) {
    if (step.kind === "bytes") {
      parts.push(step.bytes);
    } else {
      const data = read(step.fileOffset, step.length).subarray(0, step.length);
      parts.push(data, Buffer.alloc(step.length - data.length + step.pad));
    }
  }
  return Buffer.concat(parts);
}

function checkId(ino: number, what: "uid" | "gid", id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > U32_MAX) throw new RangeError(`inode ${ino}: ${what} ${id} out of range`);
}

/** A time as our header extension keeps it: whole seconds, nanoseconds clamped to 0..999,999,999. */
function exactTime(t: Timespec): Timespec {
  return { sec: Math.floor(t.sec), nsec: Math.min(999_999_999, Math.max(0, Math.floor(t.nsec))) };
}
