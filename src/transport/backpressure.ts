/**
 * Writing to a data connection (socket or LOCAL pipe) at the pace the peer reads.
 */
import type { Duplex } from "node:stream";

export class ConnectionGone extends Error {
  override name = "ConnectionGone";
}

/** Writes, then waits until the peer has taken the bytes if its buffers are full. */
export function writeAll(conn: Duplex, chunk: Buffer, written?: () => void): Promise<void> {
  if (conn.destroyed || conn.writableEnded) return Promise.reject(new ConnectionGone("the data connection is closed"));
  if (conn.write(chunk, written && ((e) => e || written()))) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      cleanup();
      resolve();
    };
    const gone = () => {
      cleanup();
      reject(new ConnectionGone("the data connection closed"));
    };
    const cleanup = () => {
      conn.off("drain", done);
      conn.off("close", gone);
    };
    conn.on("drain", done);
    conn.once("close", gone);
  });
}

/**
 * Ends the write side and waits until everything written has been handed to the peer; rejects
 * (ConnectionGone) if the connection closes first, since then the end of the stream was lost.
 */
export function endAll(conn: Duplex): Promise<void> {
  if (conn.writableFinished) return Promise.resolve();
  if (conn.destroyed) return Promise.reject(new ConnectionGone("the data connection closed before the end of the stream"));
  return new Promise((resolve, reject) => {
    const finished = () => {
      conn.off("close", closed);
      resolve();
    };
    const closed = () => {
      conn.off("finish", finished);
      if (conn.writableFinished) resolve();
      else reject(new ConnectionGone("the data connection closed before the end of the stream"));
    };
    conn.once("finish", finished);
    conn.once("close", closed);
    conn.end();
  });
}

/**
 * Collects small pieces into large chunks before writing (one syscall per chunk, not per tar
 * header), and counts every byte produced so that offsets in the stream are known exactly.
 *
 * Bytes come two ways: push()/tryPush() copy them into the current chunk (the caller may reuse
 * its buffer); pushOwned()/tryPushOwned() keep a reference instead, for bytes that are never
 * changed again (the scan's read-ahead buffers, laid out as the stream): adjacent slices of one
 * buffer join into one, and a chunk's pieces go out together in one corked write (writev).
 */
export class ChunkedWriter {
  /** Bytes produced so far: the stream offset of the next byte. */
  offset = 0;
  private buf: Buffer;
  private fill = 0;
  /** Where the part of `buf` not yet in `parts` starts. */
  private open = 0;
  /** What goes out at the next flush, in order: owned slices and finished stretches of `buf`. */
  private parts: Buffer[] = [];
  private pending = 0;
  /**
   * The stream offset up to which the connection has reported writes done (their callbacks):
   * bytes before it are no longer referenced by the connection, and owned buffers that held
   * them can be reused. `onWritten` hears each advance.
   */
  written = 0;
  onWritten?: (offset: number) => void;

  constructor(
    private readonly conn: Duplex,
    private readonly chunkSize = 256 * 1024,
  ) {
    this.buf = Buffer.allocUnsafe(chunkSize);
  }

  async push(data: Buffer): Promise<void> {
    if (data.length >= this.chunkSize) {
      await this.flush(); // what came before, whose written offset must not count `data`
      this.offset += data.length;
      await writeAll(this.conn, data, this.doneAt(this.offset));
      return;
    }
    if (this.fill + data.length > this.chunkSize || this.pending + data.length > this.chunkSize) await this.flush();
    this.copyIn(data);
  }

  /**
   * push() without a promise when the bytes fit in the current chunk: true if taken. A tree of
   * small files makes three pushes per file, and most of them never need to wait.
   */
  tryPush(data: Buffer): boolean {
    if (this.fill + data.length >= this.chunkSize || this.pending + data.length >= this.chunkSize) return false;
    this.copyIn(data);
    return true;
  }

  /** Takes data[from, to) by reference: the caller never changes those bytes again. */
  async pushOwned(data: Buffer, from = 0, to = data.length): Promise<void> {
    if (!this.tryPushOwned(data, from, to)) {
      await this.flush();
      this.addOwned(data, from, to);
      if (this.pending >= this.chunkSize) await this.flush();
    }
  }

  /** pushOwned() without a promise while the chunk has room: true if taken. */
  tryPushOwned(data: Buffer, from = 0, to = data.length): boolean {
    if (this.pending + to - from >= this.chunkSize) return false;
    this.addOwned(data, from, to);
    return true;
  }

  async flush(): Promise<void> {
    this.closeOpen();
    this.closeSpan();
    if (this.parts.length === 0) return;
    const parts = this.parts;
    this.parts = [];
    this.pending = 0;
    if (this.fill > 0) {
      // Parts of the chunk now belong to the connection: start a new buffer rather than overwrite them.
      this.buf = Buffer.allocUnsafe(this.chunkSize);
      this.fill = 0;
      this.open = 0;
    }
    // Writes complete in order: the last part's callback covers every byte produced so far.
    const done = this.doneAt(this.offset);
    if (parts.length === 1) return writeAll(this.conn, parts[0]!, done);
    this.conn.cork();
    for (let i = 0; i < parts.length - 1; i++) this.conn.write(parts[i]!);
    const last = writeAll(this.conn, parts[parts.length - 1]!, done);
    this.conn.uncork();
    await last;
  }

  private doneAt(offset: number): (() => void) | undefined {
    if (!this.onWritten) return undefined;
    return () => {
      if (offset <= this.written) return;
      this.written = offset;
      this.onWritten?.(offset);
    };
  }

  private copyIn(data: Buffer): void {
    this.offset += data.length;
    this.pending += data.length;
    data.copy(this.buf, this.fill);
    this.fill += data.length;
  }

  /**
   * Owned bytes that follow each other in memory (the frames of one scan batch) grow one span,
   * made a part only when something else comes or the chunk goes out: no Buffer per piece.
   */
  private span: { buffer: ArrayBufferLike; start: number; end: number } | undefined;

  private addOwned(data: Buffer, from: number, to: number): void {
    this.closeOpen();
    const n = to - from;
    this.offset += n;
    this.pending += n;
    const start = data.byteOffset + from;
    const span = this.span;
    if (span && span.buffer === data.buffer && span.end === start) {
      span.end += n;
      return;
    }
    this.closeSpan();
    this.span = { buffer: data.buffer, start, end: start + n };
  }

  private closeSpan(): void {
    const span = this.span;
    if (!span) return;
    this.span = undefined;
    this.parts.push(Buffer.from(span.buffer, span.start, span.end - span.start));
  }

  /** The copied bytes since the last part become a part of their own (order is kept). */
  private closeOpen(): void {
    if (this.fill === this.open) return;
    this.closeSpan();
    this.parts.push(this.buf.subarray(this.open, this.fill));
    this.open = this.fill;
  }
}
