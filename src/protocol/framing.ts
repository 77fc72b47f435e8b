/**
 * ONC RPC record marking (RFC 1831 §10), which frames every NDMP message on the control
 * connection: fragments of [4-byte word: last-flag | 31-bit length][payload], joined until a
 * fragment has the last-flag set.
 */

export class FramingError extends Error {
  override name = "FramingError";
}

const LAST_FRAGMENT = 0x8000_0000;
/**
 * NDMJOB masks fragment lengths to 24 bits (digest §1.2 [IMPL]), so we never send a fragment
 * of 16 MiB or more; bigger records go out as several fragments.
 */
export const MAX_SEND_FRAGMENT = 8 * 1024 * 1024;

/**
 * Reassembles records from arbitrary TCP chunks. A record whose announced size would pass
 * `maxRecord` is refused as soon as its fragment header arrives, before any of it is stored.
 */
export class RecordReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Payload bytes still expected for the current fragment, or -1 when a header is due. */
  private fragmentLeft = -1;
  private lastFragment = false;
  private recordParts: Buffer[] = [];
  private recordSize = 0;

  /** May change between records (it grows once the peer authenticates). */
  constructor(public maxRecord: number) {}

  /** Feeds bytes in; returns every record completed by them (possibly none). */
  push(chunk: Buffer): Buffer[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const records: Buffer[] = [];
    for (;;) {
      if (this.fragmentLeft < 0) {
        if (this.buffered < 4) break;
        const word = this.take(4).readUInt32BE(0);
        const len = word & 0x7fff_ffff;
        this.lastFragment = (word & LAST_FRAGMENT) !== 0;
        if (this.recordSize + len > this.maxRecord) {
          throw new FramingError(
            `record of at least ${this.recordSize + len} bytes exceeds the limit of ${this.maxRecord}`,
          );
        }
        this.fragmentLeft = len;
      }
      if (this.fragmentLeft > 0) {
        if (this.buffered === 0) break;
        const part = this.take(Math.min(this.fragmentLeft, this.buffered));
        this.recordParts.push(part);
        this.recordSize += part.length;
        this.fragmentLeft -= part.length;
        if (this.fragmentLeft > 0) break;
      }
      this.fragmentLeft = -1;
      if (this.lastFragment) {
        const parts = this.recordParts;
        records.push(parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.recordSize));
        this.recordParts = [];
        this.recordSize = 0;
      }
    }
    return records;
  }

  /** Bytes of an unfinished record or header held right now (for tests and limits). */
  get pending(): number {
    return this.buffered + this.recordSize;
  }

  /** Removes exactly n buffered bytes (n <= buffered), copying only when they span chunks. */
  private take(n: number): Buffer {
    this.buffered -= n;
    const head = this.chunks[0]!;
    if (head.length === n) {
      this.chunks.shift();
      return head;
    }
    if (head.length > n) {
      this.chunks[0] = head.subarray(n);
      return head.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/** Frames one record for sending: one fragment, or several when it is very large. */
export function frameRecord(payload: Buffer, maxFragment = MAX_SEND_FRAGMENT): Buffer[] {
  if (payload.length <= maxFragment) {
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32BE((LAST_FRAGMENT | payload.length) >>> 0, 0);
    return [head, payload];
  }
  const out: Buffer[] = [];
  for (let off = 0; off < payload.length; off += maxFragment) {
    const part = payload.subarray(off, Math.min(off + maxFragment, payload.length));
    const last = off + part.length === payload.length;
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32BE(((last ? LAST_FRAGMENT : 0) | part.length) >>> 0, 0);
    out.push(head, part);
  }
  return out;
}
