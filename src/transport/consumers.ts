/**
 * How far the data service has got with what a mover sent it over a data connection.
 *
 * A mover in recovery that pauses (EOF, EOM, SEEK...) while bytes it already read are still on
 * their way to the data service shows the DMA "mover PAUSED, data ACTIVE": a DMA that polls the
 * two services takes that for an image that goes on on the next cartridge, loads it, finds it
 * blank and cancels a restore that was about to end well. So the mover pauses only once the
 * data service has taken everything sent before the pause and asks for more, or the connection
 * is closed. The data service is ours in the local configuration (a LOCAL pipe) and in a
 * three-way job between two sessions of this process (a TCP connection whose two ends are both
 * here); for any other peer, "sent" is as far as we can see: written out to the socket.
 */
import type { Duplex } from "node:stream";
import type { Socket } from "node:net";
import { ipv4Of } from "./tcp.ts";

/** The reading end of a data connection: what its reader has taken and whether it asks for more. */
export class Consumption {
  /** Bytes the reader took. */
  taken = 0;
  /**
   * Bytes the reader is done with: every reader of ours is done with a chunk when it asks its
   * iterator for the next one (the mover copies each chunk into its record before it asks).
   */
  released = 0;
  /** Hears each advance of `released`. */
  onReleased?: (offset: number) => void;
  /**
   * Set by a reader that keeps no view of a chunk once it asks for the next one (a recovery
   * that writes each chunk out before reading on): its writer may then reuse what it sent.
   */
  doneOnNext = false;
  /** Reads of the reader waiting for bytes. */
  private asking = 0;
  private readonly listeners = new Set<() => void>();

  /** Counts the reads of the reader's iterator (every reader of ours iterates its connection). */
  track<T extends AsyncIterator<Buffer>>(it: T): T {
    const next = it.next.bind(it);
    it.next = async () => {
      if (this.taken > this.released) {
        this.released = this.taken;
        this.onReleased?.(this.released);
      }
      this.asking++;
      this.changed();
      try {
        const r = await next();
        if (!r.done) this.taken += r.value.length;
        return r;
      } finally {
        this.asking--;
        this.changed();
      }
    };
    return it;
  }

  /**
   * Resolves once the reader has taken `sent()` bytes and waits for more. Checked after each
   * change has run its course: a read that is answered at once is not a reader waiting.
   */
  whenStarved(sent: () => number): Promise<void> {
    return new Promise((resolve) => {
      let scheduled = false;
      const check = () => {
        scheduled = false;
        if (this.asking > 0 && this.taken >= sent()) {
          this.listeners.delete(onChange);
          resolve();
        }
      };
      const onChange = () => {
        if (scheduled) return;
        scheduled = true;
        setImmediate(check);
      };
      this.listeners.add(onChange);
      onChange();
    });
  }

  private changed(): void {
    for (const l of [...this.listeners]) l();
  }
}

/** A connection's writing end -> the reading end's consumption, when the reader is in this process. */
const localReaders = new WeakMap<Duplex, Consumption>();
/** Readers of TCP data connections in this process, by "writer ip:port>reader ip:port". */
const tcpReaders = new Map<string, Consumption>();
/** Bytes written to each connection by its writer (noteSent). */
const sentOn = new WeakMap<Duplex, number>();
/** LOCAL pipes: a reading end -> its consumption (what its reader declares, declareDoneOnNext). */
const readerSides = new WeakMap<Duplex, Consumption>();

/** LOCAL pipes (local.ts): `writer`'s bytes are read by `reader`'s iterator. */
export function pairReader(writer: Duplex, reader: Duplex): void {
  const c = new Consumption();
  localReaders.set(writer, c);
  readerSides.set(reader, c);
  trackIterator(reader, c);
}

/**
 * Called by the reader of a LOCAL pipe's `reader` end that is done with each chunk (keeps no
 * view of it) once it asks its iterator for the next one. Nothing for any other connection.
 */
export function declareDoneOnNext(reader: Duplex): void {
  const c = readerSides.get(reader);
  if (c) c.doneOnNext = true;
}

/**
 * For a LOCAL pipe's writing end whose reader made that declaration: the stream offset up to
 * which the reader is done with the bytes written (they were handed over by reference, so the
 * writer may reuse the buffers that held them). Undefined for any other connection or reader.
 */
export function releasedByReader(writer: Duplex): number | undefined {
  const c = localReaders.get(writer);
  return c?.doneOnNext ? c.released : undefined;
}

/** The writer's count of bytes it sent on `conn` so far (noteSent). */
export function sentOnConnection(conn: Duplex): number {
  return sentOn.get(conn) ?? 0;
}

/**
 * For a LOCAL pipe's writing end: calls `listener` with the stream offset up to which the
 * reader is done with the bytes written (they were handed over by reference, see local.ts), so
 * that the writer may reuse the buffers that held them. False (nothing set) for any other
 * connection.
 */
export function onReaderDone(writer: Duplex, listener: (offset: number) => void): boolean {
  const c = localReaders.get(writer);
  if (!c) return false;
  c.onReleased = listener;
  return true;
}

/** The data service's TCP connection: its reads become known to a mover of this process. */
export function trackTcpReader(sock: Socket): void {
  const key = flowKey(sock.remoteAddress, sock.remotePort, sock.localAddress, sock.localPort);
  if (!key) return;
  const c = new Consumption();
  trackIterator(sock, c);
  tcpReaders.set(key, c);
  sock.once("close", () => {
    if (tcpReaders.get(key) === c) tcpReaders.delete(key);
  });
}

/** The writer's count of bytes it sent on `conn` (what the reader has to take). */
export function noteSent(conn: Duplex, n: number): void {
  sentOn.set(conn, (sentOn.get(conn) ?? 0) + n);
}

/**
 * Resolves once what was sent on `conn` has been consumed as far as we can tell: taken by a
 * reader of ours that now asks for more, or (another process's reader) written out to the
 * socket; or once `conn` closes.
 */
export function consumed(conn: Duplex): Promise<void> {
  if (conn.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      conn.off("close", done);
      resolve();
    };
    conn.once("close", done);
    const s = conn as Partial<Socket>;
    const reader = localReaders.get(conn) ?? tcpReaders.get(flowKey(s.localAddress, s.localPort, s.remoteAddress, s.remotePort) ?? "");
    if (reader) void reader.whenStarved(() => sentOn.get(conn) ?? 0).then(done);
    else if (conn.writableLength === 0) done();
    // An empty write completes once every write before it has left our buffers.
    else conn.write(Buffer.alloc(0), () => done());
  });
}

function trackIterator(reader: Duplex, c: Consumption): void {
  const iterate = reader[Symbol.asyncIterator].bind(reader);
  Object.defineProperty(reader, Symbol.asyncIterator, { value: () => c.track(iterate()), configurable: true });
}

function flowKey(fromAddr?: string, fromPort?: number, toAddr?: string, toPort?: number): string | undefined {
  const a = ipv4Of(fromAddr);
  const b = ipv4Of(toAddr);
  return a && b && fromPort && toPort ? `${a}:${fromPort}>${b}:${toPort}` : undefined;
}
