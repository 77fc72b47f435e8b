// Codec of the virtual tape cartridge file: bytes in and out, no drive logic. The format itself is
// described at the top of virtual.ts.
import fs from "node:fs";

export const CARTRIDGE_MAGIC = Buffer.from("NDMPVTAP", "latin1");
export const FORMAT_VERSION = 1;
export const FILE_HEADER_SIZE = 64;
/** Byte offset of the first entry: beginning of tape. */
export const DATA_START = FILE_HEADER_SIZE;
export const ENTRY_HEADER_SIZE = 32;
/** Every entry is header + payload + trailer (a copy of the header). */
export const ENTRY_OVERHEAD = 2 * ENTRY_HEADER_SIZE;
/** The largest record a write may carry. Larger writes fail with ILLEGAL_ARGS. */
export const MAX_RECORD_SIZE = 4 * 1024 * 1024;

export const FLAG_WRITE_PROTECT = 0x1;

const KIND_RECORD = 0x44434552; // "RECD" read as a little-endian u32
const KIND_FILEMARK = 0x4b524d46; // "FMRK"

export type EntryKind = "record" | "filemark";

export interface CartridgeHeader {
  version: number;
  flags: number;
  /** Bytes of tape: entries (payload and overhead) may fill [DATA_START, DATA_START + capacity). */
  capacity: number;
  /** Logical end of medium is signalled this many bytes before the physical end. */
  earlyWarning: number;
  /** Milliseconds since the epoch; informational. */
  created: number;
}

export interface Entry {
  kind: EntryKind;
  /** Payload bytes; 0 for a filemark. */
  length: number;
  /** File offset of the entry's header: a copied or misplaced header never validates. */
  offset: number;
  /** Position of the entry when written: filemarks before it, records before it in its file. */
  fileNum: number;
  blockNo: number;
}

export function entryEnd(entry: Entry): number {
  return entry.offset + ENTRY_OVERHEAD + entry.length;
}

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) over the small headers only: payloads
// are not checksummed, so streaming costs nothing extra.
const CRC_TABLE = buildCrcTable();

function buildCrcTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeBigUInt64LE(BigInt(value), at);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function readU64(buf: Uint8Array, at: number): number {
  const value = asBuffer(buf).readBigUInt64LE(at);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}

export function encodeCartridgeHeader(header: CartridgeHeader): Buffer {
  const buf = Buffer.alloc(FILE_HEADER_SIZE);
  CARTRIDGE_MAGIC.copy(buf, 0);
  buf.writeUInt32LE(header.version, 8);
  buf.writeUInt32LE(FILE_HEADER_SIZE, 12);
  buf.writeUInt32LE(header.flags, 16);
  writeU64(buf, header.capacity, 24);
  writeU64(buf, header.earlyWarning, 32);
  writeU64(buf, header.created, 40);
  buf.writeUInt32LE(crc32(buf, 0, 60), 60);
  return buf;
}

/** Returns the header, or a reason why these bytes are not a cartridge we can use. */
export function decodeCartridgeHeader(buf: Uint8Array): CartridgeHeader | string {
  if (buf.length < FILE_HEADER_SIZE) return "file too short for a cartridge header";
  const view = asBuffer(buf);
  if (!view.subarray(0, 8).equals(CARTRIDGE_MAGIC)) return "not a virtual tape (bad magic)";
  if (view.readUInt32LE(60) !== crc32(view, 0, 60)) return "cartridge header checksum mismatch";
  const version = view.readUInt32LE(8);
  if (version !== FORMAT_VERSION) return `unsupported cartridge format version ${version}`;
  if (view.readUInt32LE(12) !== FILE_HEADER_SIZE) return "unexpected cartridge header size";
  const capacity = readU64(view, 24);
  const earlyWarning = readU64(view, 32);
  if (earlyWarning > capacity) return "early warning larger than capacity";
  return { version, flags: view.readUInt32LE(16), capacity, earlyWarning, created: readU64(view, 40) };
}

export function encodeEntry(entry: Entry): Buffer {
  const buf = Buffer.allocUnsafe(ENTRY_HEADER_SIZE);
  buf.writeUInt32LE(entry.kind === "record" ? KIND_RECORD : KIND_FILEMARK, 0);
  buf.writeUInt32LE(entry.length, 4);
  writeU64(buf, entry.offset, 8);
  buf.writeUInt32LE(entry.fileNum >>> 0, 16);
  buf.writeUInt32LE(entry.blockNo >>> 0, 20);
  buf.writeUInt32LE(0, 24);
  buf.writeUInt32LE(crc32(buf, 0, 28), 28);
  return buf;
}

/** Decodes a header or trailer at `at`; null if it is not a valid one. */
export function decodeEntry(buf: Uint8Array, at = 0): Entry | null {
  if (at < 0 || at + ENTRY_HEADER_SIZE > buf.length) return null;
  // Cheap reject first: the torn-tail scan calls this at every byte of up to 4 MiB.
  const tag = (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)) >>> 0;
  if (tag !== KIND_RECORD && tag !== KIND_FILEMARK) return null;
  const view = asBuffer(buf);
  if (view.readUInt32LE(at + 28) !== crc32(view, at, at + 28)) return null;
  if (view.readUInt32LE(at + 24) !== 0) return null;
  const kind: EntryKind = tag === KIND_RECORD ? "record" : "filemark";
  const length = view.readUInt32LE(at + 4);
  if (kind === "filemark" ? length !== 0 : length === 0 || length > MAX_RECORD_SIZE) return null;
  return {
    kind,
    length,
    offset: readU64(view, at + 8),
    fileNum: view.readUInt32LE(at + 16),
    blockNo: view.readUInt32LE(at + 20),
  };
}

export function sameEntry(a: Entry, b: Entry): boolean {
  return (
    a.kind === b.kind &&
    a.length === b.length &&
    a.offset === b.offset &&
    a.fileNum === b.fileNum &&
    a.blockNo === b.blockNo
  );
}

/** Reads exactly buf.length bytes at `position`, or fewer only at end of file. */
export function preadFully(fd: number, buf: Uint8Array, position: number): number {
  let done = 0;
  while (done < buf.length) {
    const got = fs.readSync(fd, buf, done, buf.length - done, position + done);
    if (got === 0) break;
    done += got;
  }
  return done;
}

/** The complete entry whose header is at `offset`, checking its trailer too; null if not valid. */
export function readEntryAt(fd: number, offset: number, fileSize: number): Entry | null {
  const head = Buffer.allocUnsafe(ENTRY_HEADER_SIZE);
  if (preadFully(fd, head, offset) < ENTRY_HEADER_SIZE) return null;
  const entry = decodeEntry(head);
  if (entry === null || entry.offset !== offset || entryEnd(entry) > fileSize) return null;
  const tail = Buffer.allocUnsafe(ENTRY_HEADER_SIZE);
  if (preadFully(fd, tail, entryEnd(entry) - ENTRY_HEADER_SIZE) < ENTRY_HEADER_SIZE) return null;
  return tail.equals(head) ? entry : null;
}

/**
 * Where the recorded data ends: the end of the last complete entry. A crash can leave a torn
 * entry at the end of the file (the file cut at any byte); it is ignored, not repaired, here (the
 * next write truncates it). Cost: one or two small reads for a clean tape; a scan of the last
 * MAX_RECORD_SIZE bytes after a torn write; a walk of the whole tape only if more than the last
 * entry is damaged.
 */
export function findEndOfData(fd: number, fileSize: number): number {
  if (fileSize <= DATA_START) return DATA_START;
  const last = entryEndingAt(fd, fileSize, fileSize);
  if (last !== null) return fileSize;
  const viaScan = scanBackForEntryEnd(fd, fileSize);
  return viaScan ?? walkForwardToLastEntry(fd, fileSize);
}

/** The complete entry whose trailer ends exactly at `end`, or null. */
function entryEndingAt(fd: number, end: number, fileSize: number): Entry | null {
  if (end - DATA_START < ENTRY_OVERHEAD) return null;
  const tail = Buffer.allocUnsafe(ENTRY_HEADER_SIZE);
  if (preadFully(fd, tail, end - ENTRY_HEADER_SIZE) < ENTRY_HEADER_SIZE) return null;
  const entry = decodeEntry(tail);
  if (entry === null || entryEnd(entry) !== end || entry.offset < DATA_START) return null;
  return readEntryAt(fd, entry.offset, fileSize);
}

/**
 * A torn entry starts less than one maximal entry before the end of the file, and the last
 * complete entry ends where it starts: look for that end in the file's tail, latest first.
 * Returns null if none is found in the window (and the window does not reach BOT).
 */
function scanBackForEntryEnd(fd: number, fileSize: number): number | null {
  // The torn entry is shorter than a maximal one, so the last good end is after lowestEnd.
  const lowestEnd = fileSize - (ENTRY_OVERHEAD + MAX_RECORD_SIZE);
  const windowStart = Math.max(DATA_START, lowestEnd - ENTRY_HEADER_SIZE);
  const window = Buffer.allocUnsafe(fileSize - windowStart);
  const got = preadFully(fd, window, windowStart);
  for (let end = windowStart + got; end >= windowStart + ENTRY_HEADER_SIZE; end--) {
    if (decodeEntry(window, end - ENTRY_HEADER_SIZE - windowStart) === null) continue;
    if (entryEndingAt(fd, end, fileSize) !== null) return end;
  }
  return lowestEnd <= DATA_START ? DATA_START : null;
}

function walkForwardToLastEntry(fd: number, fileSize: number): number {
  let position = DATA_START;
  for (;;) {
    const entry = readEntryAt(fd, position, fileSize);
    if (entry === null) return position;
    position = entryEnd(entry);
  }
}
