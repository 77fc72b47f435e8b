// A virtual tape drive backed by cartridge files. It keeps record boundaries and filemarks
// exactly, so the mover, DMA labels and DAR positioning behave as on a real variable-block drive.
//
// Cartridge file format, version 1 (all integers little-endian)
// -------------------------------------------------------------
// File header, 64 bytes, at offset 0:
//     0  8  magic "NDMPVTAP"
//     8  4  format version (1)
//    12  4  header size (64): the first entry starts here, which is beginning of tape (BOT)
//    16  4  flags: bit 0 = write-protected (the cartridge's write-protect tab)
//    20  4  reserved, 0
//    24  8  capacity: bytes of tape, counting every entry whole (payload and overhead)
//    32  8  early warning: logical end of medium (LEOM) is at capacity - early warning
//    40  8  creation time, milliseconds since the epoch (informational)
//    48 12  reserved, 0
//    60  4  CRC-32 (IEEE) of bytes 0..59
// Then entries, back to back. An entry is a 32-byte header, the payload, and a 32-byte trailer
// that repeats the header byte for byte (so the tape can be read and spaced backwards):
//     0  4  kind: "RECD" (data record) or "FMRK" (filemark)
//     4  4  payload length: 1 .. 4 MiB for a record, 0 for a filemark
//     8  8  file offset of this entry's header (a header copied anywhere else never validates,
//           e.g. inside a backup of another cartridge file)
//    16  4  file number of the entry: filemarks between BOT and it
//    20  4  block number of the entry: records between the previous filemark (or BOT) and it
//    24  4  reserved, 0
//    28  4  CRC-32 of bytes 0..27
// The end of the file is the end of recorded data (EOD). Nothing else is stored: no index.
//
// Behaviour
// * Writing anywhere but at EOD first cuts the file there: the rest of the tape is erased, as on
//   a real drive. A write is one pwritev of header + payload + trailer; nothing is fsync'ed per
//   record. Filemarks, close and unload fsync (fdatasync) the file: data before a filemark is
//   durable once the filemark is written.
// * Crash safety: a write cut short leaves a torn last entry. Opening finds EOD as the end of the
//   last complete entry (the trailer of a clean tape is checked in O(1); after a torn write the
//   last 4 MiB are scanned), ignores the torn bytes and the next write overwrites them.
// * Space: an entry of n payload bytes uses n + 64 bytes of capacity, a filemark 64. The record
//   write that crosses LEOM succeeds; the next record write fails with EOM (count 0) once, and later
//   writes succeed again (the DMA can still write its trailer labels) until the physical end, where
//   any write or filemark that does not fit fails with IO, as Linux st (EIO) and NDMJOB's simulator
//   (IO_ERR) answer there. Filemarks are never refused at LEOM, only at the physical end.
// * Write protection: the header flag, or a file without write permission bits (or one that cannot
//   be opened for writing). Either way the drive reports WR_PROT and refuses RDWR opens.
// * Positions (file number, block number) live in memory while the cartridge is mounted. The drive
//   rewinds at open, unless created with noRewind (then the position survives close and open, and
//   is lost only by rewind, unload or a cartridge change).
import fs from "node:fs";
import path from "node:path";
import { TapeDriveBase, type SpaceOp } from "./base.ts";
import { TapeError, type TapeOpenMode, type TapeState } from "./device.ts";
import {
  DATA_START,
  ENTRY_HEADER_SIZE,
  ENTRY_OVERHEAD,
  FILE_HEADER_SIZE,
  FLAG_WRITE_PROTECT,
  FORMAT_VERSION,
  MAX_RECORD_SIZE,
  decodeCartridgeHeader,
  decodeEntry,
  encodeCartridgeHeader,
  encodeEntry,
  entryEnd,
  findEndOfData,
  preadFully,
  type CartridgeHeader,
  type Entry,
} from "./virtual-format.ts";

export { MAX_RECORD_SIZE } from "./virtual-format.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
export const DEFAULT_CAPACITY = 64 * GiB;

export interface CartridgeOptions {
  /** Bytes of tape (default 64 GiB). The file grows only as data is written. */
  capacity?: number;
  /** Bytes between LEOM and the physical end (default capacity / 16, at most 64 MiB). */
  earlyWarning?: number;
  writeProtected?: boolean;
  /** Replace an existing file (default: fail if it exists). */
  overwrite?: boolean;
}

export interface CartridgeInfo {
  path: string;
  version: number;
  capacity: number;
  earlyWarning: number;
  /** The header flag only; a read-only file also protects the cartridge when mounted. */
  writeProtected: boolean;
  created: Date;
  /** Bytes of tape in use: up to the end of recorded data. */
  used: number;
}

/** Creates a blank cartridge file (a header and no data). */
export async function createCartridge(file: string, options: CartridgeOptions = {}): Promise<void> {
  const capacity = options.capacity ?? DEFAULT_CAPACITY;
  const earlyWarning = options.earlyWarning ?? Math.min(Math.floor(capacity / 16), 64 * MiB);
  if (!Number.isSafeInteger(capacity) || capacity < ENTRY_OVERHEAD) {
    throw new TapeError("ILLEGAL_ARGS", `capacity must be at least ${ENTRY_OVERHEAD} bytes`);
  }
  if (!Number.isSafeInteger(earlyWarning) || earlyWarning < 0 || earlyWarning > capacity) {
    throw new TapeError("ILLEGAL_ARGS", "early warning must be between 0 and the capacity");
  }
  const header = encodeCartridgeHeader({
    version: FORMAT_VERSION,
    flags: options.writeProtected ? FLAG_WRITE_PROTECT : 0,
    capacity,
    earlyWarning,
    created: Date.now(),
  });
  const fd = fs.openSync(file, options.overwrite ? "w" : "wx", 0o644);
  try {
    fs.writeSync(fd, header, 0, header.length, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  syncDirectory(path.dirname(file));
}

export function readCartridgeInfo(file: string): CartridgeInfo {
  const fd = openCartridgeFile(file, "r");
  try {
    const header = readHeader(fd, file);
    const eod = findEndOfData(fd, fs.fstatSync(fd).size);
    return {
      path: file,
      version: header.version,
      capacity: header.capacity,
      earlyWarning: header.earlyWarning,
      writeProtected: (header.flags & FLAG_WRITE_PROTECT) !== 0,
      created: new Date(header.created),
      used: eod - DATA_START,
    };
  } finally {
    fs.closeSync(fd);
  }
}

/** Sets or clears the write-protect tab (the header flag). Not while the cartridge is mounted. */
export function setCartridgeWriteProtect(file: string, writeProtected: boolean): void {
  const fd = openCartridgeFile(file, "r+");
  try {
    const header = readHeader(fd, file);
    const flags = writeProtected
      ? header.flags | FLAG_WRITE_PROTECT
      : header.flags & ~FLAG_WRITE_PROTECT;
    const bytes = encodeCartridgeHeader({ ...header, flags });
    fs.writeSync(fd, bytes, 0, bytes.length, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export interface VirtualTapeDriveOptions {
  /** The device name (TAPE_OPEN's `device`); defaults to the first cartridge's path. */
  name?: string;
  /** A cartridge to load now; omit for an empty drive. */
  cartridge?: string;
  /** Keep the position across close and open (a /dev/nst-like device); default rewinds at open. */
  noRewind?: boolean;
  /**
   * Takes an exclusive lock on a cartridge file while it is mounted (flock, from the native
   * layer): false when someone else holds it. Without it (Node, Deno) nothing stops another
   * process from mounting the same cartridge at the same time.
   */
  lock?: (fd: number) => boolean;
}

/** A cartridge file while it is mounted in the drive. */
interface Medium {
  fd: number;
  header: CartridgeHeader;
  writeProtected: boolean;
  /** End of recorded data (file offset). */
  eod: number;
  /** The file's size: past eod when a crash left a torn entry there. */
  fileSize: number;
  /** Written since the last fdatasync. */
  dirty: boolean;
  /** Record bytes written since the last early write-back was started (see WRITEBACK_EVERY). */
  unsynced: number;
  /** An early write-back in flight: awaited before the next sync and before the file is closed. */
  writeback?: Promise<void>;
  /** What an early write-back failed with: the next sync reports it (Linux reports it only once). */
  writebackError?: Error;
}

/**
 * Record bytes after which an early fdatasync starts in the background (not awaited): without it
 * the page cache holds a whole backup and the filemark's sync waits for all of it at the end
 * (about 0.1 s per 100 MB here); with it the disk writes while the backup runs, and the filemark
 * waits for the last few MiB only. Durability is unchanged: still only the filemark promises it.
 */
const WRITEBACK_EVERY = 16 * MiB;
/** Reads of at least this many bytes get memory of their own, which recycle() can take back. */
const RECYCLE_MIN = 64 * 1024;
/** Buffers kept for reuse: a mover has a record or two out at a time, plus what the pipe holds. */
const MAX_SPARE = 8;

export class VirtualTapeDrive extends TapeDriveBase {
  readonly name: string;
  readonly noRewind: boolean;
  private readonly lock?: (fd: number) => boolean;
  private cartridge: string | null = null;
  /** False after MTIO OFF: the cartridge is ejected but still in the drive, for the changer. */
  private ready = false;
  private medium: Medium | null = null;
  private position = DATA_START;
  private fileNum = 0;
  private blockNo = 0;
  /** The one EOM past logical end of medium has been reported. */
  private leomReported = false;
  /** Read buffers given back by the mover (recycle), and every buffer that may come back. */
  private readonly spare: Buffer[] = [];
  private readonly ours = new WeakMap<ArrayBufferLike, Buffer>();

  constructor(options: VirtualTapeDriveOptions = {}) {
    super();
    this.name = options.name ?? options.cartridge ?? "virtual-tape";
    this.noRewind = options.noRewind ?? false;
    this.lock = options.lock;
    if (options.cartridge !== undefined) {
      this.cartridge = options.cartridge;
      this.ready = true;
    }
  }

  /** The cartridge in the drive (ready or ejected), or null if the drive is empty. */
  get cartridgePath(): string | null {
    return this.cartridge;
  }

  /** Changer side: puts a cartridge into the empty drive. */
  loadCartridge(file: string): Promise<void> {
    return this.exclusive(async () => {
      if (this.cartridge !== null) {
        throw new TapeError("BUSY", `${this.name} already holds ${this.cartridge}`);
      }
      readCartridgeInfo(file); // refuse a missing or foreign file now, not at the next open
      this.cartridge = file;
      this.ready = true;
      this.moveTo(DATA_START, 0, 0);
    });
  }

  /** Changer side: takes the cartridge out (syncing it if mounted). Returns its path, if any. */
  unloadCartridge(): Promise<string | null> {
    return this.exclusive(async () => {
      const file = this.cartridge;
      await this.unmount();
      this.cartridge = null;
      this.ready = false;
      this.moveTo(DATA_START, 0, 0);
      return file;
    });
  }

  protected async doOpen(mode: TapeOpenMode): Promise<void> {
    if (!this.noRewind) this.moveTo(DATA_START, 0, 0);
    if (mode === "RAW") return; // no media checks: the cartridge is mounted at first use
    const medium = this.mount();
    if (mode === "RDWR" && medium.writeProtected) {
      await this.unmount();
      throw new TapeError("WRITE_PROTECT", `${this.cartridge} is write-protected`);
    }
  }

  protected async doClose(): Promise<void> {
    await this.unmount();
  }

  protected async doWrite(data: Uint8Array): Promise<number> {
    const medium = this.writableMedium();
    if (data.length > MAX_RECORD_SIZE) {
      throw new TapeError(
        "ILLEGAL_ARGS",
        `record of ${data.length} bytes is larger than the virtual tape limit (${MAX_RECORD_SIZE})`,
      );
    }
    this.checkRoom(medium, ENTRY_OVERHEAD + data.length, "record");
    const header = this.entryHere("record", data.length);
    await this.writeEntry(medium, header, data);
    this.blockNo++;
    return data.length;
  }

  protected async doRead(maxLen: number): Promise<Buffer> {
    const medium = this.requireMedium();
    if (this.position >= medium.eod) {
      throw new TapeError("EOM", `${this.name}: end of recorded data`);
    }
    // One read for header, payload and trailer: a record is usually read whole.
    const want = Math.min(maxLen, MAX_RECORD_SIZE);
    const span = Math.min(ENTRY_OVERHEAD + want, medium.eod - this.position);
    const buf = this.readBuffer(span);
    const got = this.pread(medium, buf, this.position);
    const entry = decodeEntry(buf.subarray(0, got));
    if (entry === null || entry.offset !== this.position || entryEnd(entry) > medium.eod) {
      throw this.corrupt(`no valid entry at offset ${this.position}`);
    }
    if (entry.kind === "filemark") {
      throw new TapeError("EOF", `${this.name}: filemark`);
    }
    const returned = Math.min(entry.length, want);
    if (entry.length <= want) {
      const trailer = buf.subarray(ENTRY_HEADER_SIZE + entry.length, ENTRY_OVERHEAD + entry.length);
      if (!trailer.equals(buf.subarray(0, ENTRY_HEADER_SIZE))) {
        throw this.corrupt(`record at offset ${this.position} has a damaged trailer`);
      }
    }
    this.moveTo(entryEnd(entry), this.fileNum, this.blockNo + 1);
    return buf.subarray(ENTRY_HEADER_SIZE, ENTRY_HEADER_SIZE + returned);
  }

  /**
   * Memory for one read: a buffer given back (recycle) when one is big enough, else a new one.
   * A recovery reads a record of 256 KiB after another, and fresh memory for each is fresh pages
   * for the kernel to fault in (about 0.3 s of a 20,000-file recovery, in pread).
   */
  private readBuffer(span: number): Buffer {
    const i = this.spare.findIndex((b) => b.length >= span);
    if (i >= 0) return this.spare.splice(i, 1)[0]!.subarray(0, span);
    if (span < RECYCLE_MIN) return Buffer.allocUnsafe(span);
    const b = Buffer.from(new ArrayBuffer(span)); // its own memory: recycle() knows it by it
    this.ours.set(b.buffer, b);
    return b;
  }

  recycle(data: Buffer): void {
    const whole = this.ours.get(data.buffer);
    if (whole && this.spare.length < MAX_SPARE && !this.spare.includes(whole)) this.spare.push(whole);
  }

  protected async doWriteFilemarks(count: number): Promise<void> {
    const medium = this.writableMedium();
    try {
      for (let written = 0; written < count; written++) {
        try {
          this.checkRoom(medium, ENTRY_OVERHEAD, "filemark");
        } catch (error) {
          throw new TapeError((error as TapeError).code, (error as Error).message, { resid: count - written });
        }
        await this.writeEntry(medium, this.entryHere("filemark", 0), null);
        this.fileNum++;
        this.blockNo = 0;
      }
    } finally {
      await this.sync(medium);
    }
  }

  protected async doSpace(op: SpaceOp, count: number): Promise<number> {
    const medium = this.requireMedium();
    this.leomReported = false;
    // Spacing over many records (a direct-access recovery positioning the tape) jumps when the
    // records are the same size, instead of reading every header on the way.
    if (count > 1 && op === "FSR" && this.jumpForward(medium, count)) return 0;
    if (count > 1 && op === "BSR" && this.jumpBack(medium, count)) return 0;
    let resid = count;
    while (resid > 0) {
      const moved = op === "FSF" || op === "FSR" ? this.stepForward(medium, op) : this.stepBack(medium, op);
      if (moved === "stop") break;
      if (moved === "counted") resid--;
    }
    return resid;
  }

  protected async doRewind(): Promise<void> {
    this.requireMedium();
    this.moveTo(DATA_START, 0, 0);
  }

  protected async doUnload(): Promise<void> {
    this.requireMedium();
    await this.unmount();
    this.ready = false;
    this.moveTo(DATA_START, 0, 0);
  }

  protected async doTestUnitReady(): Promise<void> {
    this.requireMedium();
  }

  protected async doGetState(): Promise<TapeState> {
    if (!this.hasCartridge()) {
      return { writeProtected: false, noRewind: this.noRewind, loaded: false, atBOT: false, atEOD: false, pastLEOM: false };
    }
    const medium = this.requireMedium();
    const used = this.position - DATA_START;
    const { capacity, earlyWarning } = medium.header;
    return {
      fileNum: this.fileNum,
      blockNo: this.blockNo,
      blockSize: 0,
      softErrors: 0,
      totalSpace: capacity,
      spaceRemain: Math.max(0, capacity - used),
      writeProtected: medium.writeProtected,
      noRewind: this.noRewind,
      loaded: true,
      atBOT: this.position === DATA_START,
      atEOD: this.position === medium.eod,
      pastLEOM: used >= capacity - earlyWarning,
    };
  }

  // ---- positioning ----

  /** FSF/FSR by one entry. "counted": one unit of count done; "moved": passed a record (FSF). */
  private stepForward(medium: Medium, op: "FSF" | "FSR"): "counted" | "moved" | "stop" {
    const entry = this.entryAtPosition(medium);
    if (entry === null) return "stop"; // end of data
    if (entry.kind === "filemark") {
      if (op === "FSR") return "stop"; // records do not cross a filemark
      this.moveTo(entryEnd(entry), this.fileNum + 1, 0);
      return "counted";
    }
    this.moveTo(entryEnd(entry), this.fileNum, this.blockNo + 1);
    return op === "FSR" ? "counted" : "moved";
  }

  /** BSF/BSR by one entry. BSF ends before (on the BOT side of) the filemark it counts. */
  private stepBack(medium: Medium, op: "BSF" | "BSR"): "counted" | "moved" | "stop" {
    const entry = this.entryBeforePosition(medium);
    if (entry === null) return "stop"; // BOT
    if (entry.kind === "filemark") {
      if (op === "BSR") return "stop";
      this.moveTo(entry.offset, entry.fileNum, entry.blockNo);
      return "counted";
    }
    this.moveTo(entry.offset, entry.fileNum, entry.blockNo);
    return op === "BSR" ? "counted" : "moved";
  }

  /**
   * FSR count in one step, if the entry `count` records ahead ends where records of the
   * current size would put it. Its trailer proves the landing: the CRC covers its own offset,
   * and the same file number with the block number `count - 1` further on means exactly
   * `count` records and no filemark lie in between. Otherwise the caller steps one by one.
   */
  private jumpForward(medium: Medium, count: number): boolean {
    const first = this.entryAtPosition(medium);
    if (first === null || first.kind !== "record") return false;
    const end = this.position + count * (ENTRY_OVERHEAD + first.length);
    if (end > medium.eod) return false;
    const tail = Buffer.allocUnsafe(ENTRY_HEADER_SIZE);
    this.pread(medium, tail, end - ENTRY_HEADER_SIZE);
    const last = decodeEntry(tail);
    if (last === null || last.kind !== "record" || entryEnd(last) !== end) return false;
    if (last.fileNum !== this.fileNum || last.blockNo !== this.blockNo + count - 1) return false;
    this.moveTo(end, this.fileNum, this.blockNo + count);
    return true;
  }

  /** BSR count in one step, proven the same way from the header it lands on. */
  private jumpBack(medium: Medium, count: number): boolean {
    const prev = this.entryBeforePosition(medium);
    if (prev === null || prev.kind !== "record") return false;
    const start = this.position - count * (ENTRY_OVERHEAD + prev.length);
    if (start < DATA_START) return false;
    const head = Buffer.allocUnsafe(ENTRY_HEADER_SIZE);
    this.pread(medium, head, start);
    const entry = decodeEntry(head);
    if (entry === null || entry.kind !== "record" || entry.offset !== start) return false;
    if (entry.fileNum !== this.fileNum || entry.blockNo !== this.blockNo - count) return false;
    this.moveTo(start, entry.fileNum, entry.blockNo);
    return true;
  }

  private entryAtPosition(medium: Medium): Entry | null {
    if (this.position >= medium.eod) return null;
    const head = Buffer.allocUnsafe(ENTRY_HEADER_SIZE);
    this.pread(medium, head, this.position);
    const entry = decodeEntry(head);
    if (entry === null || entry.offset !== this.position || entryEnd(entry) > medium.eod) {
      throw this.corrupt(`no valid entry at offset ${this.position}`);
    }
    return entry;
  }

  private entryBeforePosition(medium: Medium): Entry | null {
    if (this.position <= DATA_START) return null;
    const tail = Buffer.allocUnsafe(ENTRY_HEADER_SIZE);
    this.pread(medium, tail, this.position - ENTRY_HEADER_SIZE);
    const entry = decodeEntry(tail);
    if (entry === null || entryEnd(entry) !== this.position || entry.offset < DATA_START) {
      throw this.corrupt(`no valid entry ends at offset ${this.position}`);
    }
    return entry;
  }

  private moveTo(position: number, fileNum: number, blockNo: number): void {
    if (position < this.position) this.leomReported = false;
    this.position = position;
    this.fileNum = fileNum;
    this.blockNo = blockNo;
  }

  // ---- writing ----

  private entryHere(kind: Entry["kind"], length: number): Buffer {
    return encodeEntry({ kind, length, offset: this.position, fileNum: this.fileNum, blockNo: this.blockNo });
  }

  /** Physical end refuses anything that does not fit; LEOM refuses one record write. */
  private checkRoom(medium: Medium, size: number, kind: Entry["kind"]): void {
    const used = this.position - DATA_START;
    const { capacity, earlyWarning } = medium.header;
    if (used + size > capacity) {
      // As Linux st answers past the end (EIO) and NDMJOB's simulator (IO_ERR): EOM means the
      // early warning only, so a DMA that writes on after it cannot take this for it.
      throw new TapeError("IO", `${this.name}: physical end of medium`);
    }
    if (kind === "record" && used >= capacity - earlyWarning && !this.leomReported) {
      this.leomReported = true;
      throw new TapeError("EOM", `${this.name}: logical end of medium (early warning)`);
    }
  }

  /** Cuts the tape at the position (erasing what follows), then appends one entry. */
  /**
   * The write itself runs on the thread pool (fs.writev), not on the thread that serves every
   * session: a record is 256 KiB and the page cache may make a writer wait. Device operations
   * are serialized (exclusive()), so nothing else touches the cartridge meanwhile.
   */
  private async writeEntry(medium: Medium, header: Buffer, payload: Uint8Array | null): Promise<void> {
    const start = this.position;
    const parts = payload === null ? [header, header] : [header, payload, header];
    const size = ENTRY_OVERHEAD + (payload?.length ?? 0);
    try {
      if (start < medium.fileSize) {
        fs.ftruncateSync(medium.fd, start); // erases the rest of the tape, or a torn entry
        medium.eod = start;
        medium.fileSize = start;
      }
      medium.dirty = true;
      let done = await writevAt(medium.fd, parts, start);
      // A short write on a regular file means the host disk is full; finish or fail cleanly.
      while (done < size) {
        const rest = Buffer.concat(parts).subarray(done);
        const more = await writeAt(medium.fd, rest, start + done);
        if (more === 0) throw new Error("short write");
        done += more;
      }
    } catch (error) {
      try {
        fs.ftruncateSync(medium.fd, start); // leave no torn entry behind
      } catch {
        // the reopen scan copes with a torn entry anyway
      }
      medium.eod = start;
      medium.fileSize = start;
      throw new TapeError("IO", `${this.name}: writing the cartridge failed: ${String(error)}`, { cause: error });
    }
    medium.eod = start + size;
    medium.fileSize = medium.eod;
    this.position = medium.eod;
    medium.unsynced += size;
    if (medium.unsynced >= WRITEBACK_EVERY && medium.writeback === undefined) this.startWriteback(medium);
  }

  /** Starts an fdatasync on the thread pool and returns at once (see WRITEBACK_EVERY). */
  private startWriteback(medium: Medium): void {
    medium.unsynced = 0;
    medium.writeback = new Promise((resolve) => {
      fs.fdatasync(medium.fd, (error) => {
        if (error) medium.writebackError ??= error;
        medium.writeback = undefined;
        resolve();
      });
    });
  }

  private async sync(medium: Medium): Promise<void> {
    await medium.writeback;
    const early = medium.writebackError;
    if (early) {
      medium.writebackError = undefined;
      throw new TapeError("IO", `${this.name}: fdatasync failed: ${early.message}`, { cause: early });
    }
    if (!medium.dirty) return;
    return new Promise((resolve, reject) => {
      fs.fdatasync(medium.fd, (error) => {
        if (error) {
          reject(new TapeError("IO", `${this.name}: fdatasync failed: ${error.message}`, { cause: error }));
        } else {
          medium.dirty = false;
          resolve();
        }
      });
    });
  }

  // ---- the cartridge file ----

  private hasCartridge(): boolean {
    return this.cartridge !== null && this.ready;
  }

  private requireMedium(): Medium {
    return this.medium ?? this.mount();
  }

  private writableMedium(): Medium {
    const medium = this.requireMedium();
    if (medium.writeProtected) {
      throw new TapeError("WRITE_PROTECT", `${this.cartridge} is write-protected`);
    }
    return medium;
  }

  /** Opens the loaded cartridge file (once per open of the drive, or lazily after a RAW open). */
  private mount(): Medium {
    if (this.medium !== null) return this.medium;
    const file = this.cartridge;
    if (file === null || !this.ready) {
      throw new TapeError("NO_TAPE_LOADED", `${this.name}: no tape loaded`);
    }
    const { fd, writable } = openForMount(file);
    try {
      // One writer per cartridge across processes: a `ndmpd backup` from the command line must
      // not write into a tape the server has open for a DMA (or the reverse).
      if (this.lock && !this.lock(fd)) {
        throw new TapeError("BUSY", `${this.name}: cartridge ${file} is in use by another drive or process (an ndmpd server or job)`);
      }
      const header = readHeader(fd, file);
      const writeProtected = !writable || (header.flags & FLAG_WRITE_PROTECT) !== 0;
      const fileSize = fs.fstatSync(fd).size;
      const eod = findEndOfData(fd, fileSize);
      this.medium = { fd, header, writeProtected, eod, fileSize, dirty: false, unsynced: 0 };
      if (this.position > eod) this.moveTo(DATA_START, 0, 0); // a no-rewind position now gone
      return this.medium;
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  private async unmount(): Promise<void> {
    const medium = this.medium;
    if (medium === null) return;
    this.medium = null;
    try {
      await this.sync(medium);
    } finally {
      fs.closeSync(medium.fd);
    }
  }

  private pread(medium: Medium, buf: Buffer, position: number): number {
    try {
      return preadFully(medium.fd, buf, position);
    } catch (error) {
      throw new TapeError("IO", `${this.name}: reading the cartridge failed: ${String(error)}`, { cause: error });
    }
  }

  private corrupt(what: string): TapeError {
    return new TapeError("IO", `${this.name}: cartridge ${this.cartridge} is damaged: ${what}`);
  }
}

// ---- helpers on cartridge files ----

function openCartridgeFile(file: string, flags: "r" | "r+"): number {
  try {
    return fs.openSync(file, flags);
  } catch (error) {
    throw fsOpenError(file, error);
  }
}

/** Opens for writing when the file allows it: a file without write bits is write-protected. */
function openForMount(file: string): { fd: number; writable: boolean } {
  let modeAllowsWrite = true;
  try {
    modeAllowsWrite = (fs.statSync(file).mode & 0o222) !== 0; // root ignores modes: check them
  } catch (error) {
    throw fsOpenError(file, error);
  }
  if (modeAllowsWrite) {
    try {
      return { fd: fs.openSync(file, "r+"), writable: true };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EACCES" && code !== "EROFS" && code !== "EPERM") throw fsOpenError(file, error);
    }
  }
  return { fd: openCartridgeFile(file, "r"), writable: false };
}

function fsOpenError(file: string, error: unknown): TapeError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") {
    return new TapeError("NO_TAPE_LOADED", `cartridge file ${file} does not exist`, { cause: error });
  }
  return new TapeError("IO", `cannot open cartridge ${file}: ${String(error)}`, { cause: error });
}

function readHeader(fd: number, file: string): CartridgeHeader {
  const buf = Buffer.alloc(FILE_HEADER_SIZE);
  preadFully(fd, buf, 0);
  const header = decodeCartridgeHeader(buf);
  if (typeof header === "string") throw new TapeError("IO", `${file}: ${header}`);
  return header;
}

/** Makes a new file's directory entry durable too (best effort: not every filesystem allows it). */
function syncDirectory(directory: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(directory, "r");
    fs.fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on directories; the file itself is synced
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function writevAt(fd: number, parts: Uint8Array[], position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.writev(fd, parts, position, (e, n) => (e ? reject(e) : resolve(n))));
}

function writeAt(fd: number, buf: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, 0, buf.length, position, (e, n) => (e ? reject(e) : resolve(n))));
}
