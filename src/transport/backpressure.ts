/**
 * Writing to a data connection (socket or LOCAL pipe) at the pace the peer reads.
 */
import type { Duplex } from "node:stream";

export class ConnectionGone extends Error {
  override name = "ConnectionGone";
}

/** Writes, then waits until the peer has taken the bytes if its buffers are full. */
export function writeAll(conn: Duplex, chunk: Buffer): Promise<void> {
  if (conn.destroyed || conn.writableEnded) return Promise.reject(new ConnectionGone("the data connection is closed"));
  if (conn.write(chunk)) return Promise.resolve();
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
 */
export class ChunkedWriter {
  /** Bytes produced so far: the stream offset of the next byte. */
  offset = 0;
  private buf: Buffer;
  private fill = 0;

  constructor(
    private readonly conn: Duplex,
    private readonly chunkSize = 256 * 1024,
  ) {
    this.buf = Buffer.allocUnsafe(chunkSize);
  }

  async push(data: Buffer): Promise<void> {
    this.offset += data.length;
    if (data.length >= this.chunkSize) {
      await this.flush();
      await writeAll(this.conn, data);
      return;
    }
    if (this.fill + data.length > this.chunkSize) await this.flush();
    data.copy(this.buf, this.fill);
    this.fill += data.length;
  }

  /**
   * push() without a promise when the bytes fit in the current chunk: true if taken. A tree of
   * small files makes three pushes per file, and most of them never need to wait.
   */
  tryPush(data: Buffer): boolean {
    if (this.fill + data.length >= this.chunkSize) return false;
    this.offset += data.length;
    data.copy(this.buf, this.fill);
    this.fill += data.length;
    return true;
  }

  async flush(): Promise<void> {
    if (this.fill === 0) return;
    const out = this.buf.subarray(0, this.fill);
    // The chunk now belongs to the connection: start a new buffer rather than overwrite it.
    this.buf = Buffer.allocUnsafe(this.chunkSize);
    this.fill = 0;
    await writeAll(this.conn, out);
  }
}
