/**
 * Incremental (push) tar reader: feed it bytes in chunks of any size, get events back.
 *
 * Reads POSIX ustar and pax (x and g headers), old GNU (L/K long names, base-256 numbers,
 * type S sparse files) and GNU's pax sparse formats 0.0, 0.1 and 1.0; v7 headers too.
 *
 * Memory stays bounded: member data is passed through as views of the fed chunks (never
 * accumulated), and the only buffered things are one header block, pax headers (at most
 * maxPaxHeaderSize), long names (at most maxNameLength) and sparse maps (at most
 * maxSparseRuns runs).
 *
 * Names come back as the archive holds them (bytes, no charset conversion), except that a
 * directory's trailing "/" is removed. The reader does not make names safe (no stripping of
 * "/" or ".."): that is the restore engine's job.
 */
import type { DataRun, Entry, EntryType, Timespec } from "../entry.ts";
import { TarFormatError } from "./errors.ts";
import {
  BLOCK,
  F,
  GNU_SPARSE,
  flavorOf,
  headerChecksum,
  headerChecksumSigned,
  isZeroBlock,
  paddingSize,
  readBytes,
  readNumeric,
} from "./header.ts";
import { PaxSyntaxError, type PaxRecord, parseRecords } from "./pax.ts";
import { type PaxLimits, PaxValueError, type PaxValues, applyRecords, emptyPaxValues } from "./paxvalues.ts";

export { TarFormatError } from "./errors.ts";
import type { AclNameResolver } from "./acl.ts";

export type TarEvent =
  /** `offset`: stream offset of the entry's first header block (its first x/L/K header if any). */
  | { kind: "entry"; entry: Entry; offset: number }
  /**
   * Content bytes at logical position `fileOffset` (sparse files: gaps between chunks are
   * holes). `chunk` is a view of the buffer passed to feed(): copy it if you keep it after
   * reusing that buffer.
   */
  | { kind: "data"; chunk: Buffer; fileOffset: number }
  | { kind: "end-of-entry" }
  /** The end-of-archive marker (two zero blocks). Bytes after it are ignored. */
  | { kind: "end" };

export interface TarReaderOptions {
  /** Absolute stream offset of the first byte fed (a header block), for partial reads. */
  startOffset?: number;
  /** Largest accepted pax x/g header body. Default 16 MiB. */
  maxPaxHeaderSize?: number;
  /** Longest accepted path or link target. Default 64 KiB. */
  maxNameLength?: number;
  /** Most runs accepted in one sparse map. Default 1,000,000. */
  maxSparseRuns?: number;
  /** Turns the user/group names of text ACLs (SCHILY.acl.*) into ids; without it only numeric entries are kept. */
  resolveAclName?: AclNameResolver;
}

type Phase =
  | "header" // collecting a 512-byte header block
  | "meta" // collecting the body of an x, g, L or K header
  | "gnu-sparse-ext" // collecting old GNU sparse extension blocks
  | "sparse-map" // parsing the GNU sparse 1.0 map at the start of the member data
  | "data" // passing member data through
  | "skip" // discarding padding and bodies we do not use
  | "done"; // after the end-of-archive marker

/** An entry whose header is read and whose member data is being consumed. */
interface Current {
  entry: Entry;
  offset: number;
  /** Whole member data size on the tape (sparse 1.0: map included). */
  stored: number;
  /** Bytes of member data still to come. */
  remaining: number;
  /** Whether data is reported (files, hard links with data) or silently skipped. */
  emit: boolean;
  runs?: DataRun[];
  runIndex: number;
  runPos: number;
  /** Logical position for non-sparse data. */
  filePos: number;
}

interface MapParse {
  numbers: number[];
  expected: number; // count of numbers wanted after the first, -1 until it is read
  value: number;
  digits: number;
  consumed: number; // bytes of map text read so far
  skip: number; // padding after the map still to discard
}

const TYPE_BY_FLAG: Record<string, EntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file", // contiguous file: a plain file everywhere but a few 1980s systems
  "1": "hardlink",
  "2": "symlink",
  "3": "chardev",
  "4": "blockdev",
  "5": "directory",
  "6": "fifo",
  D: "directory", // GNU incremental dump directory; its data (a name list) is skipped
  S: "file", // old GNU sparse file
};

export class TarReader {
  private pos: number;
  private phase: Phase = "header";
  private failed: TarFormatError | undefined;
  private readonly limits: PaxLimits & { maxPaxHeaderSize: number };

  private readonly block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  private zeroBlocks = 0;
  private skipRemaining = 0;

  // Headers that belong to the next entry.
  private entryStart = -1;
  private localRecords: PaxRecord[] = [];
  private longName: Buffer | undefined;
  private longLink: Buffer | undefined;
  private globalRecords: PaxRecord[] = [];

  // The x/g/L/K body being collected.
  private meta: { type: string; body: Buffer; fill: number; start: number } | undefined;
  // Old GNU sparse: the header's entry waiting for its extension blocks.
  private pendingGnuSparse: { current: Current; runs: DataRun[] } | undefined;
  private mapParse: MapParse | undefined;
  private current: Current | undefined;

  constructor(options: TarReaderOptions = {}) {
    this.pos = options.startOffset ?? 0;
    this.limits = {
      maxPaxHeaderSize: options.maxPaxHeaderSize ?? 16 * 1024 * 1024,
      maxNameLength: options.maxNameLength ?? 64 * 1024,
      maxSparseRuns: options.maxSparseRuns ?? 1_000_000,
      resolveAclName: options.resolveAclName,
    };
  }

  /** Absolute stream offset of the next byte to be fed. */
  get offset(): number {
    return this.pos;
  }

  /**
   * A lower bound on the bytes the reader needs before its state can change (the rest of a
   * header block, of an extended header, of member data or padding): a reader of a seekable
   * stream (direct-access recovery) asks for this much next rather than guessing.
   */
  get needed(): number {
    switch (this.phase) {
      case "header":
      case "gnu-sparse-ext":
        return BLOCK - this.blockFill;
      case "meta":
        return this.meta!.body.length - this.meta!.fill;
      case "data":
        return this.current!.remaining;
      case "skip":
        return this.skipRemaining;
      case "sparse-map":
        return 1;
      case "done":
        return 0;
    }
  }

  /** Whether the end-of-archive marker has been seen. */
  get done(): boolean {
    return this.phase === "done";
  }

  /** Decode a chunk. Throws TarFormatError (sticky: later calls throw it again) on bad input. */
  feed(chunk: Buffer): TarEvent[] {
    if (this.failed) throw this.failed;
    const events: TarEvent[] = [];
    try {
      let i = 0;
      while (i < chunk.length) i += this.step(chunk, i, events);
    } catch (e) {
      if (!(e instanceof TarFormatError)) throw e;
      e.events = events;
      this.failed = e;
      throw e;
    }
    return events;
  }

  /** Call when the input has ended: throws unless the end-of-archive marker was read. */
  finish(): TarEvent[] {
    if (this.failed) throw this.failed;
    if (this.phase === "done") return [];
    const where =
      this.phase === "header" && this.blockFill === 0 && this.entryStart < 0
        ? "archive ends without the end-of-archive marker"
        : `archive is truncated (inside ${this.phase === "data" ? "member data" : `a ${this.phase} area`})`;
    this.failed = new TarFormatError(where, this.pos);
    throw this.failed;
  }

  // -------------------------------------------------------------------------------------

  /** Consume some bytes of `chunk` from `i` (at least one), returning how many. */
  private step(chunk: Buffer, i: number, events: TarEvent[]): number {
    const avail = chunk.length - i;
    switch (this.phase) {
      case "header":
      case "gnu-sparse-ext": {
        const n = Math.min(BLOCK - this.blockFill, avail);
        chunk.copy(this.block, this.blockFill, i, i + n);
        this.blockFill += n;
        this.pos += n;
        if (this.blockFill === BLOCK) {
          this.blockFill = 0;
          if (this.phase === "header") this.onHeaderBlock(this.pos - BLOCK, events);
          else this.onGnuSparseExtension(this.pos - BLOCK, events);
        }
        return n;
      }
      case "meta": {
        const meta = this.meta!;
        const n = Math.min(meta.body.length - meta.fill, avail);
        chunk.copy(meta.body, meta.fill, i, i + n);
        meta.fill += n;
        this.pos += n;
        if (meta.fill === meta.body.length) this.onMetaBody();
        return n;
      }
      case "sparse-map":
        return this.stepSparseMap(chunk, i, events);
      case "data": {
        const cur = this.current!;
        const n = Math.min(cur.remaining, avail);
        if (cur.emit) this.emitData(cur, chunk.subarray(i, i + n), events);
        cur.remaining -= n;
        this.pos += n;
        if (cur.remaining === 0) this.endEntry(events);
        return n;
      }
      case "skip": {
        const n = Math.min(this.skipRemaining, avail);
        this.skipRemaining -= n;
        this.pos += n;
        if (this.skipRemaining === 0) this.phase = "header";
        return n;
      }
      case "done":
        this.pos += avail;
        return avail;
    }
  }

  private fail(message: string, offset: number): never {
    throw new TarFormatError(message, offset);
  }

  private skip(n: number): void {
    this.skipRemaining = n;
    this.phase = n > 0 ? "skip" : "header";
  }

  private onHeaderBlock(at: number, events: TarEvent[]): void {
    const block = this.block;
    if (isZeroBlock(block)) {
      if (this.entryStart >= 0) this.fail("extended header not followed by a file header", at);
      if (++this.zeroBlocks === 2) {
        events.push({ kind: "end" });
        this.phase = "done";
      }
      return;
    }
    if (this.zeroBlocks > 0) this.fail("zero block in the middle of the archive", at - BLOCK);

    const stored = readNumeric(block, F.chksum[0], F.chksum[1]);
    if (stored === undefined || (stored !== headerChecksum(block) && stored !== headerChecksumSigned(block))) {
      this.fail("bad header checksum (not a tar archive, or damaged)", at);
    }
    if (this.entryStart < 0) this.entryStart = at;

    const flag = String.fromCharCode(block[F.typeflag[0]]!);
    switch (flag) {
      case "x":
      case "g":
      case "L":
      case "K":
        return this.beginMeta(flag, at);
      case "V": // volume label: not a file
        this.entryStart = -1;
        return this.skip(this.roundUp(this.headerSize(at), at));
      case "M":
        return this.fail("multi-volume continuation entries are not supported", at);
      default:
        return this.beginEntry(flag, at, events);
    }
  }

  private headerSize(at: number): number {
    const size = readNumeric(this.block, F.size[0], F.size[1]);
    if (size === undefined || size < 0) this.fail("bad size field", at);
    return size;
  }

  private roundUp(n: number, at: number): number {
    const total = n + paddingSize(n);
    if (!Number.isSafeInteger(total)) this.fail("size too large", at);
    return total;
  }

  private beginMeta(type: string, at: number): void {
    const size = this.headerSize(at);
    const limit = type === "x" || type === "g" ? this.limits.maxPaxHeaderSize : this.limits.maxNameLength + 1;
    if (size > limit) this.fail(`${type} header of ${size} bytes exceeds the ${limit}-byte limit`, at);
    // Filled whole before it is read (onMetaBody): no need to zero it first.
    this.meta = { type, body: Buffer.allocUnsafe(size), fill: 0, start: at };
    this.phase = "meta";
    if (size === 0) this.onMetaBody();
  }

  private onMetaBody(): void {
    const { type, body, start } = this.meta!;
    this.meta = undefined;
    const bodyAt = start + BLOCK;
    if (type === "L" || type === "K") {
      const nul = body.indexOf(0);
      const name = nul < 0 ? body : body.subarray(0, nul);
      if (type === "L") this.longName = name;
      else this.longLink = name;
    } else {
      let records: PaxRecord[];
      try {
        records = parseRecords(body);
      } catch (e) {
        if (e instanceof PaxSyntaxError) this.fail(e.message, bodyAt + e.at);
        throw e;
      }
      if (type === "x") this.localRecords.push(...records);
      else {
        this.globalRecords.push(...records);
        // A global header stands alone; it is not the start of the next entry.
        if (this.localRecords.length === 0 && !this.longName && !this.longLink) this.entryStart = -1;
      }
    }
    this.skip(paddingSize(body.length));
  }

  private beginEntry(flag: string, at: number, events: TarEvent[]): void {
    const block = this.block;
    const pax = emptyPaxValues();
    try {
      applyRecords(pax, this.globalRecords, this.limits);
      applyRecords(pax, this.localRecords, this.limits);
    } catch (e) {
      if (e instanceof PaxValueError) this.fail(e.message, this.entryStart);
      throw e;
    }
    const flavor = flavorOf(block);
    const num = (field: readonly [number, number], what: string): number => {
      const v = readNumeric(block, field[0], field[1]);
      if (v === undefined) this.fail(`bad ${what} field`, at);
      return v;
    };

    let path = pax.sparse?.name ?? pax.path ?? this.longName ?? this.ustarName(flavor);
    let type: EntryType = TYPE_BY_FLAG[flag] ?? "file"; // POSIX: unknown types read as files
    if (path.length > this.limits.maxNameLength) this.fail("name too long", at);
    if ((flag === "0" || flag === "\0") && path.length > 1 && path[path.length - 1] === 0x2f) {
      type = "directory"; // pre-POSIX tars marked directories only by the trailing slash
    }
    if (type === "directory") path = stripTrailingSlashes(path);

    const dataSize = pax.size ?? this.headerSize(at);
    const entry: Entry = {
      path,
      type,
      mode: num(F.mode, "mode") & 0o7777,
      uid: pax.uid ?? num(F.uid, "uid"),
      gid: pax.gid ?? num(F.gid, "gid"),
      size: 0,
      mtime: pax.mtime ?? { sec: num(F.mtime, "mtime"), nsec: 0 },
    };
    if (flavor !== "v7") {
      const uname = pax.uname ?? readBytes(block, F.uname[0], F.uname[1]);
      const gname = pax.gname ?? readBytes(block, F.gname[0], F.gname[1]);
      if (uname.length > 0) entry.uname = uname;
      if (gname.length > 0) entry.gname = gname;
    }
    if (pax.atime) entry.atime = pax.atime;
    if (pax.ctime) entry.ctime = pax.ctime;
    if (type === "symlink" || type === "hardlink") {
      entry.linkTarget = pax.linkpath ?? this.longLink ?? readBytes(block, F.linkname[0], F.linkname[1]);
      if (entry.linkTarget.length === 0) this.fail(`${type} without a target`, at);
    }
    if (type === "symlink") entry.size = entry.linkTarget!.length;
    if (type === "file" || type === "hardlink") entry.size = dataSize;
    if (type === "chardev" || type === "blockdev") {
      entry.devMajor = pax.devmajor ?? num(F.devmajor, "devmajor");
      entry.devMinor = pax.devminor ?? num(F.devminor, "devminor");
    }
    if (type === "directory" && pax.dumpdir) entry.dumpdir = pax.dumpdir;
    if (pax.xattrs || pax.libarchiveXattrs) {
      const xattrs = collectXattrs(pax);
      if (xattrs.length > 0) entry.xattrs = xattrs;
    }

    const current: Current = {
      entry,
      offset: this.entryStart,
      stored: dataSize,
      remaining: dataSize,
      emit: type === "file" || type === "hardlink",
      runIndex: 0,
      runPos: 0,
      filePos: 0,
    };
    this.entryStart = -1;
    this.localRecords = [];
    this.longName = undefined;
    this.longLink = undefined;

    if (flag === "S") return this.beginGnuSparse(current, at, events);
    const sparse = pax.sparse;
    if (type === "file" && sparse && (sparse.major !== undefined || sparse.runs !== undefined)) {
      const realsize = sparse.realsize;
      if (realsize === undefined) this.fail("GNU sparse file without a real size", at);
      entry.size = realsize;
      if (sparse.major === 1) {
        if (sparse.minor !== 0) this.fail(`unknown GNU sparse version 1.${sparse.minor}`, at);
        this.current = current;
        this.mapParse = { numbers: [], expected: -1, value: 0, digits: 0, consumed: 0, skip: 0 };
        this.phase = "sparse-map";
        if (current.remaining === 0) this.fail("GNU sparse 1.0 file without a map", at);
        return;
      }
      this.setRuns(current, sparse.runs ?? [], dataSize, at);
    }
    this.startData(current, events);
  }

  /** ustar name = prefix "/" name; v7 and old GNU headers have no prefix field. */
  private ustarName(flavor: string): Buffer {
    const name = readBytes(this.block, F.name[0], F.name[1]);
    if (flavor !== "ustar") return name;
    const prefix = readBytes(this.block, F.prefix[0], F.prefix[1]);
    return prefix.length === 0 ? name : Buffer.concat([prefix, Buffer.from("/"), name]);
  }

  /** Check a sparse map against the file and the stored data, and attach it. */
  private setRuns(current: Current, allRuns: DataRun[], dataBytes: number, at: number): void {
    const runs = allRuns.filter((r) => r.length > 0);
    let end = 0;
    let total = 0;
    for (const r of allRuns) {
      if (r.offset < end || r.offset + r.length > current.entry.size) {
        this.fail("sparse map runs are unsorted, overlapping or past the end of the file", at);
      }
      end = r.offset + r.length;
      total += r.length;
    }
    if (total !== dataBytes) {
      this.fail(`sparse map describes ${total} data bytes but ${dataBytes} are stored`, at);
    }
    current.runs = runs;
    current.entry.sparse = runs.map((r) => ({ offset: r.offset, length: r.length }));
  }

  private startData(current: Current, events: TarEvent[]): void {
    events.push({ kind: "entry", entry: current.entry, offset: current.offset });
    this.current = current;
    if (current.remaining === 0) this.endEntry(events);
    else this.phase = "data";
  }

  private endEntry(events: TarEvent[]): void {
    events.push({ kind: "end-of-entry" });
    this.skip(paddingSize(this.current!.stored));
    this.current = undefined;
  }

  private emitData(cur: Current, chunk: Buffer, events: TarEvent[]): void {
    if (!cur.runs) {
      events.push({ kind: "data", chunk, fileOffset: cur.filePos });
      cur.filePos += chunk.length;
      return;
    }
    // Spread the chunk over the data runs; setRuns has dropped zero-length runs.
    let p = 0;
    while (p < chunk.length) {
      const run = cur.runs[cur.runIndex]!;
      const n = Math.min(run.length - cur.runPos, chunk.length - p);
      events.push({ kind: "data", chunk: chunk.subarray(p, p + n), fileOffset: run.offset + cur.runPos });
      p += n;
      cur.runPos += n;
      if (cur.runPos === run.length) {
        cur.runIndex++;
        cur.runPos = 0;
      }
    }
  }

  // ---- GNU sparse 1.0: "count\n" then "offset\nlength\n" pairs, padded to a block ---------

  private stepSparseMap(chunk: Buffer, i: number, events: TarEvent[]): number {
    const cur = this.current!;
    const mp = this.mapParse!;
    const at = this.pos;
    const avail = Math.min(chunk.length - i, cur.remaining);
    if (avail === 0) this.fail("sparse map runs past the member data", at);
    let n = 0;
    if (mp.expected < 0 || mp.numbers.length < mp.expected + 1) {
      // Text part: one character at a time (maps are small next to the data).
      for (; n < avail && (mp.expected < 0 || mp.numbers.length < mp.expected + 1); n++) {
        const c = chunk[i + n]!;
        if (c === 0x0a) {
          if (mp.digits === 0) this.fail("empty number in sparse map", at + n);
          mp.numbers.push(mp.value);
          if (mp.expected < 0) {
            if (mp.value > this.limits.maxSparseRuns) this.fail(`sparse map of ${mp.value} runs is too large`, at + n);
            mp.expected = mp.value * 2;
          }
          mp.value = 0;
          mp.digits = 0;
        } else if (c >= 0x30 && c <= 0x39 && mp.digits < 16) {
          mp.value = mp.value * 10 + (c - 0x30);
          mp.digits++;
        } else {
          this.fail("malformed sparse map", at + n);
        }
      }
      mp.consumed += n;
      if (mp.numbers.length === mp.expected + 1) mp.skip = paddingSize(mp.consumed);
    } else {
      n = Math.min(avail, mp.skip);
      mp.skip -= n;
      mp.consumed += n;
    }
    cur.remaining -= n;
    this.pos += n;
    if (mp.expected >= 0 && mp.numbers.length === mp.expected + 1 && mp.skip === 0) {
      this.mapParse = undefined;
      const runs: DataRun[] = [];
      for (let k = 1; k < mp.numbers.length; k += 2) runs.push({ offset: mp.numbers[k]!, length: mp.numbers[k + 1]! });
      this.setRuns(cur, runs, cur.remaining, cur.offset);
      this.startData(cur, events);
    } else if (cur.remaining === 0) {
      this.fail("sparse map runs past the member data", this.pos);
    }
    return n;
  }

  // ---- old GNU sparse (type S) ------------------------------------------------------------

  private beginGnuSparse(current: Current, at: number, events: TarEvent[]): void {
    const block = this.block;
    const realsize = readNumeric(block, GNU_SPARSE.realSize[0], GNU_SPARSE.realSize[1]);
    if (realsize === undefined) this.fail("bad GNU sparse real size", at);
    current.entry.size = realsize;
    const runs: DataRun[] = [];
    this.readGnuSparseRuns(GNU_SPARSE.entries, GNU_SPARSE.entryCount, runs, at);
    if (block[GNU_SPARSE.isExtended] === 0) {
      this.setRuns(current, runs, current.stored, at);
      return this.startData(current, events);
    }
    this.pendingGnuSparse = { current, runs };
    this.phase = "gnu-sparse-ext";
  }

  private onGnuSparseExtension(at: number, events: TarEvent[]): void {
    const { current, runs } = this.pendingGnuSparse!;
    this.readGnuSparseRuns(0, GNU_SPARSE.extEntryCount, runs, at);
    if (this.block[GNU_SPARSE.extIsExtended] !== 0) return; // another extension block follows
    this.pendingGnuSparse = undefined;
    this.setRuns(current, runs, current.stored, current.offset);
    this.startData(current, events);
  }

  private readGnuSparseRuns(base: number, count: number, runs: DataRun[], at: number): void {
    for (let k = 0; k < count; k++) {
      const p = base + k * 24;
      if (this.block[p] === 0) break; // unused slot: the list ends here
      const offset = readNumeric(this.block, p, 12);
      const length = readNumeric(this.block, p + 12, 12);
      if (offset === undefined || length === undefined || offset < 0 || length < 0) {
        this.fail("bad GNU sparse map entry", at);
      }
      if (runs.length >= this.limits.maxSparseRuns) this.fail("too many sparse runs", at);
      runs.push({ offset, length });
    }
  }
}

function stripTrailingSlashes(path: Buffer): Buffer {
  let end = path.length;
  while (end > 1 && path[end - 1] === 0x2f) end--;
  return end === path.length ? path : path.subarray(0, end);
}

function collectXattrs(pax: PaxValues): Array<[Buffer, Buffer]> {
  const out: Array<[Buffer, Buffer]> = [];
  for (const [name, value] of pax.xattrs ?? []) out.push([Buffer.from(name, "latin1"), value]);
  for (const [name, value] of pax.libarchiveXattrs ?? []) {
    if (!pax.xattrs?.has(name)) out.push([Buffer.from(name, "latin1"), value]);
  }
  return out;
}

/** Decode a whole archive held in memory (tests and small tools). */
export function readAll(archive: Buffer, options?: TarReaderOptions): TarEvent[] {
  const reader = new TarReader(options);
  const events = reader.feed(archive);
  events.push(...reader.finish());
  return events;
}

export type { Timespec };
