/**
 * The LOCAL data connection (digest §7.1): data service and mover in one session talk
 * through an in-process pipe instead of a socket. Each end is a Duplex with the back-pressure
 * and the end/reset behaviour of a socket, so the mover and the data service use one code
 * path for both kinds of connection.
 */
import { Duplex } from "node:stream";
import { pairReader } from "./consumers.ts";

/** Bytes buffered per direction before the writer is asked to wait (like socket buffers). */
const HIGH_WATER = 1024 * 1024;

class LocalEnd extends Duplex {
  peer!: LocalEnd;
  /** The callback of a write the peer could not take yet: called when the peer reads again. */
  private blockedWrite: ((err?: Error | null) => void) | undefined;

  constructor() {
    // Like a socket without half-open support: once the peer has finished sending and we have
    // read it all, our side ends too, and the pair closes.
    super({ readableHighWaterMark: HIGH_WATER, writableHighWaterMark: HIGH_WATER, allowHalfOpen: false });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.peer.destroyed) return cb(new Error("local data connection reset by peer"));
    if (this.peer.push(chunk)) cb();
    else this.peer.blockedWrite = cb;
  }

  override _read(): void {
    const cb = this.blockedWrite;
    this.blockedWrite = undefined;
    cb?.();
  }

  /** end() here is the peer's end of stream, as a FIN is on a socket. */
  override _final(cb: (err?: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.push(null);
    cb();
  }

  /**
   * destroy() here is close() on a socket: the peer still reads what we sent before, then
   * sees the end of the stream; its further writes fail (a reset).
   */
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const blocked = this.blockedWrite;
    this.blockedWrite = undefined;
    blocked?.(new Error("local data connection closed"));
    if (!this.peer.destroyed && !this.peer.readableEnded) this.peer.push(null);
    cb(err);
  }
}

export interface LocalPair {
  /** The end the mover uses. */
  mover: Duplex;
  /** The end the data service uses. */
  data: Duplex;
}

export function createLocalPair(): LocalPair {
  const a = new LocalEnd();
  const b = new LocalEnd();
  a.peer = b;
  b.peer = a;
  // Each end's writer learns how far the other end's reader has got (a mover pausing in recovery).
  pairReader(a, b);
  pairReader(b, a);
  return { mover: a, data: b };
}
