/** What a mover waits for before a pause in recovery: its reader starved, or the bytes written out. */
import { createServer, connect, type Socket } from "node:net";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { consumed, declareDoneOnNext, noteSent, onReaderDone, releasedByReader, sentOnConnection, trackTcpReader } from "../../../src/transport/consumers.ts";
import { createLocalPair } from "../../../src/transport/local.ts";

const tick = () => new Promise((r) => setImmediate(r));
const settledFlag = (p: Promise<void>) => {
  const s = { done: false };
  void p.then(() => (s.done = true));
  return s;
};

describe("consumed()", () => {
  it("LOCAL: waits until the reader has taken every byte and asks for more", async () => {
    const { mover, data } = createLocalPair();
    const it = data[Symbol.asyncIterator]();
    mover.write(Buffer.alloc(5000, 1));
    noteSent(mover, 5000);
    const s = settledFlag(consumed(mover));
    await tick();
    await tick();
    expect(s.done).toBe(false); // nothing read yet
    const first = await it.next();
    expect(first.value.length).toBe(5000);
    await tick();
    await tick();
    expect(s.done).toBe(false); // taken, but the reader is busy with it: it has not asked again
    const pending = it.next();
    await tick();
    await tick();
    expect(s.done).toBe(true);
    mover.end();
    expect((await pending).done).toBe(true);
  });

  it("LOCAL: a reader that stops reading and closes ends the wait", async () => {
    const { mover, data } = createLocalPair();
    const it = data[Symbol.asyncIterator]();
    mover.resume();
    mover.write(Buffer.alloc(20_000, 2));
    noteSent(mover, 20_000);
    await it.next();
    const s = settledFlag(consumed(mover));
    await tick();
    expect(s.done).toBe(false);
    data.destroy();
    await new Promise((r) => setTimeout(r, 20));
    expect(s.done).toBe(true);
  });

  it("TCP between two ends of this process: waits for the reader; to another process, for the socket", async () => {
    const server = createServer();
    const accepted = new Promise<Socket>((r) => server.once("connection", r));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const writer = connect((server.address() as { port: number }).port, "127.0.0.1");
    await new Promise((r) => writer.once("connect", r));
    const reader = await accepted;
    server.close();
    // Not tracked: the bytes leaving our buffers is all there is to wait for.
    writer.write(Buffer.alloc(1000));
    noteSent(writer, 1000);
    await consumed(writer);
    trackTcpReader(reader);
    const it = reader[Symbol.asyncIterator]();
    writer.write(Buffer.alloc(1000));
    noteSent(writer, 1000);
    const s = settledFlag(consumed(writer));
    await new Promise((r) => setTimeout(r, 50));
    expect(s.done).toBe(false); // the kernel has the bytes, our reader has not read them
    let got = 0;
    while (got < 2000) got += ((await it.next()).value as Buffer).length;
    const pending = it.next();
    await new Promise((r) => setTimeout(r, 50));
    expect(s.done).toBe(true);
    writer.destroy();
    await pending.catch(() => {});
    reader.destroy();
  });
});

describe("onReaderDone()", () => {
  it("LOCAL: the reader is done with a chunk when it asks for the next one", async () => {
    const { mover, data } = createLocalPair();
    const heard: number[] = [];
    expect(onReaderDone(data, (offset) => heard.push(offset))).toBe(true);
    const it = mover[Symbol.asyncIterator]();
    data.write(Buffer.alloc(3000, 1));
    const first = await it.next();
    expect(first.value.length).toBe(3000);
    await tick();
    expect(heard).toEqual([]); // taken, still in use
    data.write(Buffer.alloc(1000, 2));
    const second = await it.next();
    expect(heard).toEqual([3000]);
    expect(second.value.length).toBe(1000);
    const end = it.next();
    expect(heard).toEqual([3000, 4000]);
    data.end();
    expect((await end).done).toBe(true);
  });

  it("nothing for a connection whose reader is not ours", () => {
    expect(onReaderDone(new PassThrough(), () => {})).toBe(false);
  });
});

describe("declareDoneOnNext() and releasedByReader()", () => {
  it("LOCAL, recovery direction: nothing until the reader declares; then what it asked past", async () => {
    const { mover, data } = createLocalPair();
    const it = data[Symbol.asyncIterator]();
    mover.write(Buffer.alloc(3000, 1));
    noteSent(mover, 3000);
    expect(sentOnConnection(mover)).toBe(3000);
    expect(releasedByReader(mover)).toBeUndefined(); // a reader that said nothing may keep views
    declareDoneOnNext(data);
    expect(releasedByReader(mover)).toBe(0);
    expect((await it.next()).value.length).toBe(3000);
    expect(releasedByReader(mover)).toBe(0); // taken, still in use
    mover.write(Buffer.alloc(1000, 2));
    await it.next();
    expect(releasedByReader(mover)).toBe(3000);
    const end = it.next();
    expect(releasedByReader(mover)).toBe(4000);
    mover.end();
    expect((await end).done).toBe(true);
  });

  it("nothing for other connections", () => {
    const p = new PassThrough();
    declareDoneOnNext(p);
    expect(releasedByReader(p)).toBeUndefined();
  });
});
