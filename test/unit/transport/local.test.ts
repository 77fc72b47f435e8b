/** The in-process LOCAL data connection: a socket-like pair with back-pressure, EOF and reset. */
import type { Duplex } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLocalPair } from "../../../src/transport/local.ts";

const tick = () => new Promise((r) => setImmediate(r));

function collect(d: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  d.on("data", (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    d.once("end", () => resolve(Buffer.concat(chunks)));
    d.once("error", reject);
  });
}

describe("LOCAL data connection pair", () => {
  it("carries bytes both ways, in order; end() is EOF for the peer, and the pair then closes like a socket", async () => {
    const { mover, data } = createLocalPair();
    const atData = collect(data);
    mover.write(Buffer.from("hello from the mover"));
    const atMover = collect(mover);
    const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    for (let off = 0; off < payload.length; off += 7000) data.write(payload.subarray(off, off + 7000));
    data.end();
    expect((await atMover).equals(payload)).toBe(true);
    // As a net.Socket without allowHalfOpen: the end that saw EOF ends its side too.
    expect((await atData).toString()).toBe("hello from the mover");
    await tick();
    expect(mover.destroyed && data.destroyed).toBe(true);
  });

  it("back-pressure: a writer whose reader does not read is stopped, and resumes when it reads", async () => {
    const { mover, data } = createLocalPair();
    const chunk = Buffer.alloc(64 * 1024, 1);
    let accepted = 0;
    while (data.write(chunk)) accepted += chunk.length;
    accepted += chunk.length;
    // Bounded by the writer's and the reader's buffers (1 MiB each), not by what is offered.
    expect(accepted).toBeGreaterThanOrEqual(1024 * 1024);
    expect(accepted).toBeLessThanOrEqual(2 * 1024 * 1024 + chunk.length);
    await tick();
    let drained = false;
    data.once("drain", () => (drained = true));
    await tick();
    expect(drained).toBe(false); // nothing was read: the writer stays blocked
    expect(data.writableLength).toBeGreaterThan(0);
    let read = 0;
    mover.on("data", (c: Buffer) => (read += c.length));
    await new Promise<void>((r) => data.once("drain", () => r()));
    expect(read).toBeGreaterThan(0);
    data.end();
    await new Promise((r) => mover.once("end", r));
    expect(read).toBe(accepted);
  });

  it("a write callback waits for the reader (a socket's buffers are full) and then completes", async () => {
    const { mover, data } = createLocalPair();
    const big = Buffer.alloc(3 * 1024 * 1024, 2); // more than the peer's readable buffer
    let done = false;
    data.write(big, () => (done = true));
    for (let i = 0; i < 5; i++) await tick();
    expect(done).toBe(false);
    mover.resume();
    await new Promise<void>((r) => data.write(Buffer.alloc(0), () => r()));
    expect(done).toBe(true);
  });

  it("destroy() is a socket's close(): the peer reads what was sent, then EOF; its blocked and later writes fail", async () => {
    const { mover, data } = createLocalPair();
    // Block a write on the data side first (the mover never reads).
    const blocked = new Promise<Error | null | undefined>((r) => data.write(Buffer.alloc(3 * 1024 * 1024), (e) => r(e)));
    data.on("error", () => {});
    mover.write(Buffer.from("last words"));
    await tick();
    mover.destroy();
    expect(await blocked).toBeInstanceOf(Error);
    const after = new Promise<Error | null | undefined>((r) => data.write(Buffer.alloc(1), (e) => r(e)));
    expect(await after).toBeInstanceOf(Error);
    await new Promise((r) => (data.destroyed ? r(null) : data.once("close", r)));
    expect(data.destroyed).toBe(true);

    const p2 = createLocalPair();
    p2.mover.write(Buffer.from("queued before close"));
    p2.mover.destroy();
    expect((await collect(p2.data)).toString()).toBe("queued before close");
  });

  it("destroy() on the data end while the mover is reading ends the mover's stream (no hang)", async () => {
    const { mover, data } = createLocalPair();
    data.write(Buffer.from("partial"));
    const seen: Buffer[] = [];
    const done = (async () => {
      try {
        for await (const c of mover as AsyncIterable<Buffer>) seen.push(c);
        return "end";
      } catch {
        return "error";
      }
    })();
    await tick();
    data.destroy();
    expect(["end", "error"]).toContain(await done);
    expect(Buffer.concat(seen).toString()).toBe("partial");
    expect(mover.destroyed).toBe(true);
  });
});
