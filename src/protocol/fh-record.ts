/**
 * File history posts (FH_ADD_FILE, FH_ADD_DIR, FH_ADD_NODE) encoded straight into the bytes of
 * one whole NDMP record: record mark, header, body. A backup posts one entry per object, and
 * building a JS object per entry and walking it through the generic XDR codec (codec.ts) cost
 * the server ~15% of a small-file backup's CPU; this writes the same bytes with a few buffer
 * stores per field. The layout is the v4 one, which v3 shares byte for byte (only field names
 * differ: `invalid` for `unsupported`); test/unit/protocol/fh-record.test.ts holds both
 * encoders to the same bytes.
 *
 * Records are written into pooled buffers: the session gives a buffer back (releaseRecord) once
 * the socket's write callback says the kernel has the bytes, and never on TLS, whose buffering
 * it does not know (the same rule as engine/backup.ts's FrameRecycler).
 */
import { FsType, Message, MessageType } from "./codes.ts";
import { HEADER_SIZE } from "./message.ts";
import { XdrError } from "./xdr/codec.ts";
import type { FileStat } from "./xdr/v4.ts";

/** A file_stat whose size may be a number (exact below 2^53): no bigint per entry. */
export type FhStat = Omit<FileStat, "size"> & { size: number | bigint };

/** Record mark (4) + message header (24): where the body starts. */
export const FH_BODY_OFFSET = 4 + HEADER_SIZE;

/**
 * Buffers of this size are pooled. A batch (engine/history.ts) is at most 1000 entries or about
 * 512 KiB, typically ~100 KiB; one that outgrows it gets a bigger buffer, which is not pooled.
 */
const POOL_BUFFER = 576 * 1024;
/** Free buffers kept: a few records in flight per session; more than that is left to the GC. */
const POOL_MAX = 8;
const pool: ArrayBuffer[] = [];

function acquire(min: number): Buffer {
  if (min <= POOL_BUFFER) {
    const ab = pool.pop();
    // allocUnsafeSlow: a buffer of its own, not a slice of Node's shared pool, so it can be reused whole.
    return ab ? Buffer.from(ab) : Buffer.allocUnsafeSlow(POOL_BUFFER);
  }
  return Buffer.allocUnsafeSlow(min);
}

/**
 * Gives a record's buffer back once nothing refers to its bytes any more (the socket wrote them
 * out). Only whole pooled buffers go back; anything else is left to the collector.
 */
export function releaseRecord(record: Buffer): void {
  const ab = record.buffer;
  if (record.byteOffset !== 0 || ab.byteLength !== POOL_BUFFER || !(ab instanceof ArrayBuffer)) return;
  if (pool.length < POOL_MAX && !pool.includes(ab)) pool.push(ab);
}

/** Free buffers in the pool right now (for tests). */
export function pooledRecords(): number {
  return pool.length;
}

const TWO32 = 0x1_0000_0000;
const MAX_U64 = 0xffff_ffff_ffff_ffffn;

/** Bytes of an XDR opaque of `n` bytes: length word, data, padding to 4. */
const opaqueSize = (n: number) => 4 + ((n + 3) & ~3);
/** One file_stat: nine u32, a u64 and a u32. */
const STAT_SIZE = 9 * 4 + 8 + 4;

/**
 * Builds one FH post: entries are appended as they come; take() closes the record and hands it
 * over, and the next entry starts a new one. One writer per message code.
 */
export class FhRecordWriter {
  private buf: Buffer | undefined;
  private off = FH_BODY_OFFSET + 4;
  /** Entries in the record being built. */
  count = 0;

  constructor(readonly code: number) {
    if (code !== Message.FH_ADD_FILE && code !== Message.FH_ADD_DIR && code !== Message.FH_ADD_NODE) throw new XdrError(`not an FH post: 0x${code.toString(16)}`);
  }

  /** Bytes of the record so far (mark and header included). */
  get length(): number {
    return this.off;
  }

  /**
   * ndmp_fh_add_file entry: one UNIX name, one stat. `slash` puts a "/" before `path` (the
   * history names files "/" + path relative to the root, and the root "/").
   */
  file(path: Uint8Array, slash: boolean, stat: FhStat, node: number | bigint, fhInfo: number | bigint): void {
    const nameLen = path.length + (slash ? 1 : 0);
    const start = this.reserve(4 + 4 + opaqueSize(nameLen) + 4 + STAT_SIZE + 16);
    try {
      this.name(path, slash, nameLen);
      this.u32(1);
      this.stat(stat);
      this.u64(node);
      this.u64(fhInfo);
    } catch (e) {
      this.off = start;
      throw e;
    }
    this.count++;
  }

  /** ndmp_fh_add_dir entry: one UNIX name (a base name), its node and its directory's. */
  dir(name: Uint8Array, node: number | bigint, parent: number | bigint): void {
    const start = this.reserve(4 + 4 + opaqueSize(name.length) + 16);
    try {
      this.name(name, false, name.length);
      this.u64(node);
      this.u64(parent);
    } catch (e) {
      this.off = start;
      throw e;
    }
    this.count++;
  }

  /** ndmp_fh_add_node entry: one stat, the node and where its data is. */
  node(stat: FhStat, node: number | bigint, fhInfo: number | bigint): void {
    const start = this.reserve(4 + STAT_SIZE + 16);
    try {
      this.u32(1);
      this.stat(stat);
      this.u64(node);
      this.u64(fhInfo);
    } catch (e) {
      this.off = start;
      throw e;
    }
    this.count++;
  }

  /**
   * The finished record, or undefined when it has no entries. Its header carries the message
   * code and type; the sender fills in sequence, time stamp, reply sequence and error
   * (stampRecord). The writer starts a new record afterwards and never touches this one again.
   */
  take(): Buffer | undefined {
    const b = this.buf;
    if (!b || this.count === 0) return undefined;
    const len = this.off;
    // Record mark: one last fragment. Senders split records of 8 MiB or more (framing.ts).
    b.writeUInt32BE((0x8000_0000 | (len - 4)) >>> 0, 0);
    b.writeUInt32BE(0, 4);
    b.writeUInt32BE(0, 8);
    b.writeUInt32BE(MessageType.REQUEST, 12);
    b.writeUInt32BE(this.code, 16);
    b.writeUInt32BE(0, 20);
    b.writeUInt32BE(0, 24);
    b.writeUInt32BE(this.count, FH_BODY_OFFSET);
    this.buf = undefined;
    this.off = FH_BODY_OFFSET + 4;
    this.count = 0;
    return b.subarray(0, len);
  }

  /** Makes room for `n` more bytes; returns where the entry starts. */
  private reserve(n: number): number {
    const need = this.off + n;
    if (!this.buf) this.buf = acquire(need);
    else if (need > this.buf.length) {
      const bigger = acquire(Math.max(need, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.off);
      releaseRecord(this.buf); // never sent: free at once
      this.buf = bigger;
    }
    return this.off;
  }

  /** ndmp_file_name<>: one element, the UNIX arm, the name's bytes. */
  private name(bytes: Uint8Array, slash: boolean, len: number): void {
    const b = this.buf!;
    let o = this.off;
    b.writeUInt32BE(1, o);
    b.writeUInt32BE(FsType.UNIX, o + 4);
    b.writeUInt32BE(len, o + 8);
    o += 12;
    if (slash) b[o++] = 0x2f;
    b.set(bytes, o);
    o += bytes.length;
    // XDR pads with zeros; a pooled buffer holds old bytes.
    while (len & 3) {
      b[o++] = 0;
      len++;
    }
    this.off = o;
  }

  private stat(s: FhStat): void {
    const o = this.off;
    const b = this.buf!;
    b.writeUInt32BE(s.unsupported, o);
    b.writeUInt32BE(s.fs_type, o + 4);
    b.writeUInt32BE(s.ftype, o + 8);
    b.writeUInt32BE(s.mtime, o + 12);
    b.writeUInt32BE(s.atime, o + 16);
    b.writeUInt32BE(s.ctime, o + 20);
    b.writeUInt32BE(s.owner, o + 24);
    b.writeUInt32BE(s.group, o + 28);
    b.writeUInt32BE(s.fattr, o + 32);
    this.off = o + 36;
    this.u64(s.size);
    this.u32(s.links);
  }

  private u32(v: number): void {
    // writeUInt32BE refuses values outside 0..2^32-1 (RangeError), as the codec's u32 does.
    if (!Number.isInteger(v)) throw new XdrError(`u32 out of range: ${v}`);
    this.buf!.writeUInt32BE(v, this.off);
    this.off += 4;
  }

  private u64(v: number | bigint): void {
    const b = this.buf!;
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v) || v < 0) throw new XdrError(`u64 out of range: ${v}`);
      b.writeUInt32BE(Math.floor(v / TWO32), this.off);
      b.writeUInt32BE(v >>> 0, this.off + 4);
    } else {
      if (typeof v !== "bigint" || v < 0n || v > MAX_U64) throw new XdrError(`u64 out of range: ${v}`);
      b.writeBigUInt64BE(v, this.off);
    }
    this.off += 8;
  }
}

/** Fills in the header fields the sender owns, in a record from FhRecordWriter.take(). */
export function stampRecord(record: Buffer, sequence: number, timeStamp: number): void {
  record.writeUInt32BE(sequence >>> 0, 4);
  record.writeUInt32BE(timeStamp >>> 0, 8);
}
