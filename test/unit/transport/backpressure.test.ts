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
