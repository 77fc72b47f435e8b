/**
 * Incremental push parser for dump streams (ours and Linux `dump`'s; spec section 9).
 *
 *   const r = new DumpReader();
 *   for await (const chunk of input) for (const ev of r.feed(chunk)) handle(ev);
 *   for (const ev of r.finish()) handle(ev);
 *
 * Chunk boundaries are arbitrary (1 byte at a time works). Memory stays bounded: file data
 * is passed through as views of the input chunks (`data` events reference the caller's
 * buffer: consume them before reusing it); only headers, maps, directories, symlink
 * targets and EA records are buffered, each under a configurable cap.
 *
 * Per inode: `inode` (for symlinks after the target is read, so `entry.linkTarget` is set),
 * then `data` events (files; holes are skipped, so the consumer extends the file to
 * `entry.size`) or one `directory` event, then `xattrs` if the inode had EA records, then
 * `end-of-inode`. The end of an inode is only known when the next header arrives.
 *
 * Direct access: with `startOffset` > 0 the reader expects to start at an inode's TS_INODE
 * header (fh_info), keeps offsets absolute, and `finish()` accepts a stream that stops
 * between inodes.
 */
import { Buffer } from "node:buffer";
import type { Entry, EntryType } from "../entry.ts";
import {
  DR_COMPRESSED,
  DR_EXTATTRIBUTES,
  DR_METAONLY,
  DR_NEWINODEFMT,
  DumpFormatError,
  MAX_DIR_SIZE,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
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
  decodeHeader,
  decodeRdev,
  type DumpHeader,
  type DumpTime,
} from "./header.ts";
import { decodeDirectory, type DecodedDirEntry } from "./directory.ts";
import { decodeEaBlock, type Xattr } from "./xattr.ts";

export { DumpFormatError } from "./header.ts";
export type { DecodedDirEntry } from "./directory.ts";

export interface DumpReaderOptions {
  /** Absolute offset of the first byte fed; > 0 means "starts at an inode's TS_INODE". */
  startOffset?: number;
  /** Largest TS_CLRI/TS_BITS map accepted, in 1 KiB records (default 65536: 512 Mi inodes). */
  maxMapRecords?: number;
  /** Largest directory accepted, in bytes (default 64 MiB). */
  maxDirectorySize?: number;
  /** Largest symlink target accepted (default 64 KiB). */
  maxSymlinkSize?: number;
}

export interface TapeInfo {
  date: number;
  ddate: number;
  level: number;
  label: Buffer;
  filesys: Buffer;
  dev: Buffer;
  host: Buffer;
  ntrec: number;
  flags: number;
}

export type DumpEvent =
  | { kind: "tape"; offset: number; tape: TapeInfo }
  /** `map` bit (n-1) is inode n (see `inMap`). clri = inodes existing, bits = inodes on this tape. */
  | { kind: "map"; which: "clri" | "bits"; offset: number; map: Buffer; maxino: number }
  /** `entry.path` is empty: dump is inode-based; resolve names with DirectoryIndex. */
  /**
   * `ddate`: the header's c_ddate (every header repeats TS_TAPE's): not 0 in an incremental.
   * `ndmpd`: the header carries our extension (HeaderExt): the stream is ours.
   */
  | { kind: "inode"; offset: number; ino: number; entry: Entry; metaOnly: boolean; ddate: number; ndmpd: boolean }
  | { kind: "directory"; ino: number; entries: DecodedDirEntry[] }
  | { kind: "data"; ino: number; fileOffset: number; chunk: Buffer }
  | { kind: "xattrs"; ino: number; xattrs: Xattr[] }
  | { kind: "end-of-inode"; ino: number }
  /** Something odd but survivable (mangled directory entry, unknown EA namespace...). */
  | { kind: "warning"; offset: number; message: string }
  | { kind: "end"; offset: number };

/** Is inode `ino` set in a TS_CLRI/TS_BITS map? */
export function inMap(map: Buffer, ino: number): boolean {
  const byte = (ino - 1) >>> 3;
  return ino >= 1 && byte < map.length && (map[byte] & (1 << ((ino - 1) & 7))) !== 0;
}

/** Largest EA record we buffer, in records (restore itself stops at 4096 bytes). */
const MAX_EA_RECORDS = 64;

const TYPE_BY_MODE = new Map<number, EntryType>([
  [S_IFREG, "file"],
  [S_IFDIR, "directory"],
  [S_IFLNK, "symlink"],
  [S_IFIFO, "fifo"],
  [S_IFCHR, "chardev"],
  [S_IFBLK, "blockdev"],
  [S_IFSOCK, "socket"],
]);

/** The inode being read. */
interface Current {
  ino: number;
  offset: number;
  entry: Entry;
  metaOnly: boolean;
  /** Directories and symlinks are gathered (size bytes); files are passed through. */
  collect: Buffer | undefined;
  /** Slot index (1 KiB units of the file) where the next header's c_addr[0] starts. */
  nextSlot: number;
  xattrs: Xattr[];
  sawEa: boolean;
  /** The directory header flags 255-byte names kept in pad bytes (HeaderExt). */
  longNamesInPad?: boolean;
  ddate: number;
  ndmpd: boolean;
}

type Mode =
  | { m: "header" }
  | { m: "slots"; addr: Uint8Array; count: number; index: number; base: number; fill: number }
  | { m: "buffer"; target: Buffer; fill: number; done: (data: Buffer, offset: number) => void; offset: number }
  | { m: "trailer" };

type Phase = "tape" | "clri" | "bits" | "inodes" | "done";

function toTimespec(t: DumpTime): { sec: number; nsec: number } {
  return { sec: t.sec, nsec: Math.min(t.usec, 999_999) * 1000 };
}

export class DumpReader {
  private readonly maxMapRecords: number;
  private readonly maxDirectorySize: number;
  private readonly maxSymlinkSize: number;
  private readonly region: boolean;
  private pos: number;
  private phase: Phase;
  private mode: Mode = { m: "header" };
  private readonly hbuf = Buffer.alloc(TP_BSIZE);
  private hfill = 0;
  private cur: Current | undefined;
  private out: DumpEvent[] = [];
  private failed: DumpFormatError | undefined;

  constructor(opts: DumpReaderOptions = {}) {
    this.pos = opts.startOffset ?? 0;
    this.region = this.pos > 0;
    this.phase = this.region ? "inodes" : "tape";
    this.maxMapRecords = opts.maxMapRecords ?? 65536;
    this.maxDirectorySize = Math.min(opts.maxDirectorySize ?? 64 * 1024 * 1024, MAX_DIR_SIZE);
    this.maxSymlinkSize = opts.maxSymlinkSize ?? 64 * 1024;
  }

  /** Absolute offset of the next byte expected. */
  get offset(): number {
    return this.pos;
  }

  /** Parse more bytes; returns the events they completed. Throws DumpFormatError on bad input. */
  feed(chunk: Uint8Array): DumpEvent[] {
    if (this.failed) throw this.failed;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    try {
      let i = 0;
      while (i < buf.length) i += this.step(buf, i);
    } catch (err) {
      if (err instanceof DumpFormatError) this.failed = err;
      throw err;
    }
    return this.drain();
  }

  /** No more input. Throws if the stream stopped where it cannot (inside a record, no TS_END). */
  finish(): DumpEvent[] {
    if (this.failed) throw this.failed;
    if (this.phase === "done") return this.drain();
    const betweenRecords = this.mode.m === "header" && this.hfill === 0;
    if (this.region && betweenRecords) {
      this.finishInode();
      this.phase = "done";
      return this.drain();
    }
    this.failed = new DumpFormatError(
      betweenRecords ? "stream ends without TS_END" : "stream truncated inside a record",
      this.pos,
    );
    throw this.failed;
  }

  private drain(): DumpEvent[] {
    const events = this.out;
    this.out = [];
    return events;
  }

  /** Consume bytes from buf[i..] according to the current mode; returns how many. */
  private step(buf: Buffer, i: number): number {
    const mode = this.mode;
    const avail = buf.length - i;
    switch (mode.m) {
      case "trailer":
        this.pos += avail;
        return avail;
      case "header": {
        const n = Math.min(TP_BSIZE - this.hfill, avail);
        buf.copy(this.hbuf, this.hfill, i, i + n);
        this.hfill += n;
        this.pos += n;
        if (this.hfill === TP_BSIZE) {
          this.hfill = 0;
          this.onHeader(decodeHeader(this.hbuf, this.pos - TP_BSIZE), this.pos - TP_BSIZE);
        }
        return n;
      }
      case "buffer": {
        const n = Math.min(mode.target.length - mode.fill, avail);
        buf.copy(mode.target, mode.fill, i, i + n);
        mode.fill += n;
        this.pos += n;
        if (mode.fill === mode.target.length) {
          this.mode = { m: "header" };
          mode.done(mode.target, mode.offset);
        }
        return n;
      }
      case "slots": {
        const n = Math.min(TP_BSIZE - mode.fill, avail);
        const fileOffset = (mode.base + mode.index) * TP_BSIZE + mode.fill;
        this.onSlotBytes(buf.subarray(i, i + n), fileOffset);
        mode.fill += n;
        this.pos += n;
        if (mode.fill === TP_BSIZE) {
          mode.fill = 0;
          mode.index++;
          this.skipHoles(mode);
        }
        return n;
      }
    }
  }

  /** Advance over hole slots; when the header's slots are used up, expect the next header. */
  private skipHoles(mode: Extract<Mode, { m: "slots" }>): void {
    while (mode.index < mode.count && mode.addr[mode.index] === 0) mode.index++;
    if (mode.index >= mode.count) this.mode = { m: "header" };
  }

  private onHeader(h: DumpHeader, offset: number): void {
    const cur = this.cur;
    if (cur) {
      if (h.type === TS_ADDR && h.inumber === cur.ino) {
        if (cur.sawEa) throw new DumpFormatError(`TS_ADDR for inode ${cur.ino} after its EA record`, offset);
        this.startSlots(h, offset);
        return;
      }
      if (h.type === TS_INODE && h.flags & DR_EXTATTRIBUTES && h.inumber === cur.ino) {
        this.startEa(h, offset);
        return;
      }
      this.finishInode();
    }
    switch (h.type) {
      case TS_TAPE:
        return this.onTape(h, offset);
      case TS_CLRI:
      case TS_BITS:
        return this.onMap(h, offset);
      case TS_INODE:
        return this.onInode(h, offset);
      case TS_END:
        if (this.phase !== "inodes" && this.phase !== "bits") throw new DumpFormatError("TS_END before the inode maps", offset);
        this.phase = "done";
        this.mode = { m: "trailer" };
        this.out.push({ kind: "end", offset });
        return;
      case TS_ADDR:
        throw new DumpFormatError(`TS_ADDR for inode ${h.inumber} without its TS_INODE`, offset);
    }
  }

  private onTape(h: DumpHeader, offset: number): void {
    if (this.phase !== "tape") throw new DumpFormatError("TS_TAPE in mid-stream (multi-volume dumps are not supported)", offset);
    if (h.volume !== 1) throw new DumpFormatError(`volume ${h.volume}: only single-volume dumps are supported`, offset);
    if (!(h.flags & DR_NEWINODEFMT)) throw new DumpFormatError("old inode format (no DR_NEWINODEFMT) is not supported", offset);
    if (h.flags & DR_COMPRESSED) throw new DumpFormatError("compressed dumps are not supported", offset);
    this.phase = "clri";
    const { date, ddate, level, label, filesys, dev, host, ntrec, flags } = h;
    this.out.push({ kind: "tape", offset, tape: { date, ddate, level, label, filesys, dev, host, ntrec, flags } });
  }

  private onMap(h: DumpHeader, offset: number): void {
    const which = h.type === TS_CLRI ? "clri" : "bits";
    if (this.phase !== which) throw new DumpFormatError(`${which === "clri" ? "TS_CLRI" : "TS_BITS"} out of order`, offset);
    if (h.count < 0 || h.count > this.maxMapRecords) {
      throw new DumpFormatError(`inode map of ${h.count} records (limit ${this.maxMapRecords})`, offset);
    }
    this.phase = which === "clri" ? "bits" : "inodes";
    const maxino = h.count * TP_BSIZE * 8 + 1;
    this.collect(h.count * TP_BSIZE, offset, (map) => this.out.push({ kind: "map", which, offset, map, maxino }));
  }

  private onInode(h: DumpHeader, offset: number): void {
    if (this.phase !== "inodes") throw new DumpFormatError("TS_INODE before the inode maps", offset);
    if (h.flags & DR_EXTATTRIBUTES) {
      // An EA record whose inode we did not see (e.g. a region starting mid-inode): skip it.
      this.out.push({ kind: "warning", offset, message: `EA record of inode ${h.inumber} without its inode; skipped` });
      this.collect(this.eaRecords(h, offset) * TP_BSIZE, offset, () => {});
      return;
    }
    if (h.inumber < 1) throw new DumpFormatError(`bad inode number ${h.inumber}`, offset);
    const d = h.dinode;
    const type = TYPE_BY_MODE.get(d.mode & S_IFMT);
    if (!type) throw new DumpFormatError(`inode ${h.inumber}: unknown file type in mode 0${d.mode.toString(8)}`, offset);
    const entry: Entry = {
      path: Buffer.alloc(0),
      type,
      mode: d.mode & 0o7777,
      uid: d.uid,
      gid: d.gid,
      size: type === "file" || type === "symlink" || type === "directory" ? d.size : 0,
      // Our writer's exact times, where its header extension has them (before 1970, ns).
      mtime: h.ext?.times?.mtime ?? toTimespec(d.mtime),
      atime: h.ext?.times?.atime ?? toTimespec(d.atime),
      ctime: h.ext?.times?.ctime ?? toTimespec(d.ctime),
      nlink: d.nlink,
      ino: h.inumber,
    };
    if (type === "chardev" || type === "blockdev") {
      const { major, minor } = decodeRdev(d.rdev);
      entry.devMajor = major;
      entry.devMinor = minor;
    }
    let collect: Buffer | undefined;
    if (type === "directory") {
      if (d.size > this.maxDirectorySize) throw new DumpFormatError(`directory ${h.inumber} of ${d.size} bytes (limit ${this.maxDirectorySize})`, offset);
      collect = Buffer.alloc(d.size);
    } else if (type === "symlink") {
      if (d.size > this.maxSymlinkSize) throw new DumpFormatError(`symlink ${h.inumber} target of ${d.size} bytes (limit ${this.maxSymlinkSize})`, offset);
      collect = Buffer.alloc(d.size);
    }
    const metaOnly = (h.flags & DR_METAONLY) !== 0;
    this.cur = { ino: h.inumber, offset, entry, metaOnly, collect, nextSlot: 0, xattrs: [], sawEa: false, longNamesInPad: h.ext?.longNamesInPad === true, ddate: h.ddate, ndmpd: h.ext !== undefined };
    // Symlinks are announced once their target is known (finishInode).
    if (type !== "symlink") this.out.push({ kind: "inode", offset, ino: h.inumber, entry, metaOnly, ddate: h.ddate, ndmpd: h.ext !== undefined });
    this.startSlots(h, offset);
  }

  private startSlots(h: DumpHeader, offset: number): void {
    const cur = this.cur!;
    if (h.count < 0 || h.count > TP_NINDIR) throw new DumpFormatError(`c_count ${h.count} out of range 0..${TP_NINDIR}`, offset);
    const mode: Extract<Mode, { m: "slots" }> = { m: "slots", addr: h.addr, count: h.count, index: 0, base: cur.nextSlot, fill: 0 };
    cur.nextSlot += h.count;
    this.mode = mode;
    this.skipHoles(mode);
  }

  private eaRecords(h: DumpHeader, offset: number): number {
    if (h.count < 0 || h.count > MAX_EA_RECORDS) throw new DumpFormatError(`EA record of ${h.count} records (limit ${MAX_EA_RECORDS})`, offset);
    return h.count;
  }

  private startEa(h: DumpHeader, offset: number): void {
    const cur = this.cur!;
    const records = this.eaRecords(h, offset);
    cur.sawEa = true;
    this.collect(records * TP_BSIZE, offset, (data) => {
      if (h.extattributes !== 3) {
        // Mac OS Finder info / resource fork records (1, 2): restore skips them too.
        this.out.push({ kind: "warning", offset, message: `inode ${cur.ino}: EA record kind ${h.extattributes} ignored` });
        return;
      }
      const { xattrs, problems } = decodeEaBlock(data.subarray(0, Math.min(h.dinode.size, data.length)));
      cur.xattrs.push(...xattrs);
      for (const p of problems) this.out.push({ kind: "warning", offset, message: `inode ${cur.ino}: ${p}` });
    });
  }

  /** Gather `length` bytes, then call `done`. */
  private collect(length: number, offset: number, done: (data: Buffer, offset: number) => void): void {
    const target = Buffer.alloc(length);
    if (length === 0) done(target, offset);
    else this.mode = { m: "buffer", target, fill: 0, done, offset };
  }

  /** Bytes of a present slot at logical file offset `fileOffset`; anything past di_size is padding. */
  private onSlotBytes(bytes: Buffer, fileOffset: number): void {
    const cur = this.cur!;
    const size = cur.entry.size;
    if (fileOffset >= size) return;
    const useful = bytes.subarray(0, Math.min(bytes.length, size - fileOffset));
    if (cur.collect) {
      useful.copy(cur.collect, fileOffset);
      return;
    }
    if (cur.entry.type !== "file") return; // devices etc. carry no data; ignore any
    const last = this.out[this.out.length - 1];
    // Merge with the previous event when it is the same piece of input memory, continued.
    if (
      last?.kind === "data" &&
      last.ino === cur.ino &&
      last.fileOffset + last.chunk.length === fileOffset &&
      last.chunk.buffer === useful.buffer &&
      last.chunk.byteOffset + last.chunk.length === useful.byteOffset
    ) {
      last.chunk = Buffer.from(useful.buffer, last.chunk.byteOffset, last.chunk.length + useful.length);
      return;
    }
    this.out.push({ kind: "data", ino: cur.ino, fileOffset, chunk: useful });
  }

  /** The current inode is complete: emit what was gathered. */
  private finishInode(): void {
    const cur = this.cur;
    if (!cur) return;
    this.cur = undefined;
    if (cur.entry.type === "symlink") {
      cur.entry.linkTarget = cur.collect;
      this.out.push({ kind: "inode", offset: cur.offset, ino: cur.ino, entry: cur.entry, metaOnly: cur.metaOnly, ddate: cur.ddate, ndmpd: cur.ndmpd });
    } else if (cur.entry.type === "directory" && cur.collect) {
      const { entries, problems } = decodeDirectory(cur.collect, { longNamesInPad: cur.longNamesInPad });
      for (const p of problems) this.out.push({ kind: "warning", offset: cur.offset, message: `directory ${cur.ino}: ${p}` });
      this.out.push({ kind: "directory", ino: cur.ino, entries });
    }
    if (cur.xattrs.length > 0) {
      cur.entry.xattrs = cur.xattrs;
      this.out.push({ kind: "xattrs", ino: cur.ino, xattrs: cur.xattrs });
    }
    this.out.push({ kind: "end-of-inode", ino: cur.ino });
  }
}

/**
 * Names from `directory` events, resolved to paths from the root (inode 2). Hard links
 * give one inode several paths. Memory grows with the number of names.
 */
export class DirectoryIndex {
  /** child ino -> [(parent dir ino, name)] */
  private readonly parents = new Map<number, Array<[parent: number, name: Buffer]>>();

  add(dir: number, entries: DecodedDirEntry[]): void {
    for (const e of entries) {
      if (e.name.equals(DOT) || e.name.equals(DOTDOT)) continue;
      let list = this.parents.get(e.ino);
      if (!list) this.parents.set(e.ino, (list = []));
      list.push([dir, e.name]);
    }
  }

  /** Every path of `ino` ("." for the root), "/"-separated, relative to the root. */
  paths(ino: number): Buffer[] {
    if (ino === 2) return [DOT];
    const out: Buffer[] = [];
    for (const [parent, name] of this.parents.get(ino) ?? []) {
      const up = this.dirPath(parent, 0);
      if (up) out.push(up.length === 0 ? name : Buffer.concat([up, SLASH, name]));
    }
    return out;
  }

  /** Path of a directory (empty for the root), or undefined if unreachable. */
  private dirPath(dir: number, depth: number): Buffer | undefined {
    if (dir === 2) return Buffer.alloc(0);
    if (depth > 4096) return undefined; // a loop in hostile input
    const first = this.parents.get(dir)?.[0];
    if (!first) return undefined;
    const up = this.dirPath(first[0], depth + 1);
    if (!up) return undefined;
    return up.length === 0 ? first[1] : Buffer.concat([up, SLASH, first[1]]);
  }
}

const DOT = Buffer.from(".");
const DOTDOT = Buffer.from("..");
const SLASH = Buffer.from("/");
