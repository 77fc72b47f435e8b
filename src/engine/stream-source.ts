/**
 * Where a recovery gets the backup stream from: the data connection, fed by the mover in
 * answer to NOTIFY_DATA_READ(offset, length) (digest §3.4).
 *
 * Two ways to read it:
 * - sequential(): one read of everything, (0, ALL1);
 * - fetch(from, to): direct access (DAR). Every request covers whole records of the tape's
 *   record size and never asks again for a byte already received: the last records received
 *   are kept, so the next entry can start inside them. (ndmjob's mover serves only whole
 *   records and hangs on a read that starts in the record it read last — ndmjob.md §5.4 —
 *   and a real mover is spared tape motion.) Only one read is outstanding at a time.
 */
import type { Duplex } from "node:stream";
import { ALL1 } from "../protocol/codes.ts";

export type ReadRequest = (offset: bigint, length: bigint) => void;

export class StreamEnded extends Error {
  override name = "StreamEnded";
}

export class StreamSource {
  private readonly it: AsyncIterator<Buffer>;
  /** Bytes that arrived past what the consumer has taken. */
  private leftover: Buffer | undefined;
  /** The last bytes received by fetch(): [cacheStart, cacheStart + cache.length). */
  private cache: Buffer = Buffer.alloc(0);
  private cacheStart = 0;
  private started = false;
  /** Bytes received from the data connection so far. */
  received = 0;
  /** How many reads were asked for (NOTIFY_DATA_READ or local MOVER_READ). */
  requests = 0;

  constructor(
    conn: Duplex,
    private readonly request: ReadRequest,
    readonly recordSize: number,
  ) {
    this.it = (conn as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** The whole stream from offset 0, as it arrives. */
  async *sequential(): AsyncIterable<Buffer> {
    if (this.started) throw new Error("the stream was already read from");
    this.started = true;
    this.ask(0, ALL1);
    for (;;) {
      const next = await this.it.next();
      if (next.done) return;
      this.received += next.value.length;
      yield next.value;
    }
  }

  /**
   * Stream bytes [from, to). `from` must not be before the start of the last records
   * received (the stream is read forward). Returns fewer bytes only at the end of the stream.
   */
  async fetch(from: number, to: number): Promise<Buffer> {
    this.started = true;
    if (from < this.cacheStart) throw new Error(`direct access went backwards (${from} < ${this.cacheStart})`);
    const cacheEnd = this.cacheStart + this.cache.length;
    if (to <= cacheEnd) return this.cache.subarray(from - this.cacheStart, to - this.cacheStart);
    const R = this.recordSize;
    // Whole records from the first byte we don't have (the cache always ends on a record
    // boundary, or at the end of the stream).
    const start = from >= cacheEnd ? Math.floor(from / R) * R : cacheEnd;
    const end = Math.ceil(to / R) * R;
    this.ask(start, BigInt(end - start));
    const got = await this.take(end - start);
    // Keep what is still ahead of `from`, and the new records.
    const keepFrom = Math.max(this.cacheStart, Math.min(from, start));
    const kept = start === cacheEnd ? this.cache.subarray(keepFrom - this.cacheStart) : Buffer.alloc(0);
    this.cacheStart = start === cacheEnd ? keepFrom : start;
    this.cache = kept.length > 0 ? Buffer.concat([kept, got]) : got;
    const have = this.cacheStart + this.cache.length;
    return this.cache.subarray(from - this.cacheStart, Math.min(to, have) - this.cacheStart);
  }

  private ask(offset: number | bigint, length: bigint): void {
    this.requests++;
    this.request(BigInt(offset), length);
  }

  /** Exactly n bytes from the connection (fewer at its end). */
  private async take(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < n) {
      let chunk = this.leftover;
      this.leftover = undefined;
      if (!chunk) {
        const next = await this.it.next();
        if (next.done) break;
        chunk = next.value;
        this.received += chunk.length;
      }
      const want = n - have;
      if (chunk.length > want) {
        this.leftover = chunk.subarray(want);
        chunk = chunk.subarray(0, want);
      }
      parts.push(chunk);
      have += chunk.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
  }
}
