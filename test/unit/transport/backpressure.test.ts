import { Duplex, PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { ChunkedWriter, ConnectionGone, endAll, writeAll } from "../../../src/transport/backpressure.ts";

/** A sink that records every write it is given. */
function sink(): { conn: Duplex; writes: Buffer[] } {
  const writes: Buffer[] = [];
  const conn = new Duplex({
    write(chunk: Buffer, _e, cb) {
      writes.push(Buffer.from(chunk));
      cb();
    },
    read() {},
  });
  return { conn, writes };
}

describe("ChunkedWriter", () => {
  it("collects small pieces into chunks, counts every byte, and keeps their order", async () => {
    const { conn, writes } = sink();
    const w = new ChunkedWriter(conn, 1024);
    const pieces = Array.from({ length: 50 }, (_, i) => Buffer.alloc(100, i));
    for (const p of pieces) await w.push(p);
    expect(w.offset).toBe(5000);
    await w.flush();
    expect(writes.every((c) => c.length <= 1024)).toBe(true);
    expect(writes.length).toBeLessThanOrEqual(6);
    expect(Buffer.concat(writes)).toEqual(Buffer.concat(pieces));
  });

  it("tryPush takes what fits the current chunk and refuses the rest without losing a byte", async () => {
    const { conn, writes } = sink();
    const w = new ChunkedWriter(conn, 1024);
    expect(w.tryPush(Buffer.alloc(1000, 1))).toBe(true);
    expect(w.offset).toBe(1000);
    expect(writes).toHaveLength(0);
    const next = Buffer.alloc(100, 2);
    expect(w.tryPush(next)).toBe(false);
    expect(w.offset).toBe(1000); // refused: not counted
    await w.push(next);
    await w.push(Buffer.alloc(4096, 3)); // larger than a chunk: written as it is, after the rest
    await w.flush();
    expect(w.offset).toBe(5196);
    expect(Buffer.concat(writes)).toEqual(Buffer.concat([Buffer.alloc(1000, 1), next, Buffer.alloc(4096, 3)]));
  });

  it("a chunk handed to the connection is never written over", async () => {
    const { conn, writes } = sink();
    const w = new ChunkedWriter(conn, 16);
    await w.push(Buffer.alloc(10, 1));
    await w.flush();
    await w.push(Buffer.alloc(10, 2));
    await w.flush();
    expect(writes).toEqual([Buffer.alloc(10, 1), Buffer.alloc(10, 2)]);
  });
});

describe("ChunkedWriter, owned bytes", () => {
  it("sends owned slices by reference in order with copied pieces, one part per run of adjacent slices", async () => {
    const parts: Buffer[] = [];
    const conn = new Duplex({
      writev(chunks, cb) {
        for (const c of chunks) parts.push(c.chunk as Buffer);
        cb();
      },
      write(chunk: Buffer, _e, cb) {
        parts.push(chunk);
        cb();
      },
      read() {},
    });
    const w = new ChunkedWriter(conn, 4096);
    const big = Buffer.alloc(3000);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    const want: Buffer[] = [];
    // Three adjacent slices of `big`, a copied piece, two more adjacent slices, then a slice of another buffer.
    for (const [from, to] of [[0, 100], [100, 600], [600, 700]]) {
      expect(w.tryPushOwned(big, from, to)).toBe(true);
      want.push(big.subarray(from, to));
    }
    const copied = Buffer.alloc(10, 0xee);
    expect(w.tryPush(copied)).toBe(true);
    want.push(Buffer.from(copied));
    copied.fill(0); // the caller may reuse what it pushed by copy
    for (const [from, to] of [[700, 1500], [1500, 2000]]) {
      await w.pushOwned(big, from, to);
      want.push(big.subarray(from, to));
    }
    const other = Buffer.alloc(50, 0x11);
    await w.pushOwned(other);
    want.push(other);
    expect(w.offset).toBe(2060);
    await w.flush();
    expect(Buffer.concat(parts)).toEqual(Buffer.concat(want));
    // [0, 700) by reference, the copy, [700, 2000) by reference, `other`.
    expect(parts.map((p) => p.length)).toEqual([700, 10, 1300, 50]);
    expect(parts[0]!.buffer).toBe(big.buffer);
    expect(parts[3]!.buffer).toBe(other.buffer);
  });

  it("goes out at the chunk size, and says how far the connection has written", async () => {
    const callbacks: Array<() => void> = [];
    let bytes = 0;
    const conn = new Duplex({
      write(chunk: Buffer, _e, cb) {
        bytes += chunk.length;
        callbacks.push(cb); // the connection holds the bytes until it calls back
      },
      highWaterMark: 1 << 20,
      read() {},
    });
    const w = new ChunkedWriter(conn, 1000);
    const seen: number[] = [];
    w.onWritten = (offset) => seen.push(offset);
    const data = Buffer.alloc(5000, 7);
    for (let at = 0; at < data.length; at += 250) if (!w.tryPushOwned(data, at, at + 250)) await w.pushOwned(data, at, at + 250);
    await w.flush();
    expect(bytes).toBeLessThan(5000); // the first chunks are still with the connection
    expect(w.written).toBe(0);
    while (callbacks.length > 0) {
      callbacks.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    expect(bytes).toBe(5000);
    expect(w.written).toBe(5000);
    expect(seen.length).toBeGreaterThanOrEqual(4);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  });
});

describe("writeAll and endAll", () => {
  it("wait for the peer when its buffers are full, and reject once the connection is gone", async () => {
    const conn = new PassThrough({ highWaterMark: 16 });
    let done = false;
    const p = writeAll(conn, Buffer.alloc(64)).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    conn.read(); // the peer takes the bytes: drain
    await p;
    expect(done).toBe(true);
    conn.destroy();
    await expect(writeAll(conn, Buffer.alloc(1))).rejects.toBeInstanceOf(ConnectionGone);
    await expect(endAll(conn)).rejects.toBeInstanceOf(ConnectionGone);
  });

  it("endAll resolves when everything written has been handed on", async () => {
    const { conn, writes } = sink();
    await writeAll(conn, Buffer.from("abc"));
    await endAll(conn);
    expect(conn.writableFinished).toBe(true);
    expect(writes).toEqual([Buffer.from("abc")]);
  });
});
