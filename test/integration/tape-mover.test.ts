/**
 * The TAPE and MOVER services of the compiled binary, driven by our client as the DMA and by a
 * plain TCP peer on the data connection (what a remote data server does): a 64 MiB backup and
 * its recovery by windows and reads that start and end inside records, three cartridges with two
 * EOM pauses, a window smaller than the stream, aborts and dropped connections, and two sessions
 * competing for one drive.
 */
import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NdmpClient } from "../../src/client/client.ts";
import {
  AddrType,
  ALL1,
  ErrorCode,
  Message,
  MoverHaltReason as Halt,
  MoverMode,
  MoverPauseReason as Pause,
  MoverState,
  TapeMtioOp as Op,
  TapeOpenMode as Mode,
} from "../../src/protocol/codes.ts";
import {
  connectTo,
  dma,
  KiB,
  MiB,
  moverState,
  mtio,
  postAfter,
  Receiver,
  seededBytes,
  sendAll,
  tapeServerConfig,
  tapeState,
  until,
} from "../helpers/dma.ts";
import { havePeers } from "../helpers/peers.ts";
import { startServer, type RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary");
const err = (name: keyof typeof ErrorCode) => ({ error: ErrorCode[name] });

async function session(port: number, fn: (c: NdmpClient) => Promise<void>): Promise<void> {
  const c = await dma(port);
  try {
    await fn(c);
  } finally {
    await c.close();
  }
}

/** TAPE_OPEN + SET_RECORD_SIZE + SET_WINDOW + MOVER_LISTEN(TCP); returns the connected data peer. */
async function listen(c: NdmpClient, mode: number, rs: number, window: [bigint, bigint]): Promise<Socket> {
  await c.request(Message.MOVER_SET_RECORD_SIZE, { len: rs });
  await c.request(Message.MOVER_SET_WINDOW, { offset: window[0], length: window[1] });
  const r = await c.request(Message.MOVER_LISTEN, { mode, addr_type: AddrType.TCP });
  expect(r.body.connect_addr.addr_type).toBe(AddrType.TCP);
  expect((await moverState(c)).state).toBe(MoverState.LISTEN);
  const sock = await connectTo(r.body.connect_addr);
  sock.on("error", () => {});
  // The server accepts on its own time: a DMA sees the mover ACTIVE before it sends MOVER_READ.
  await until(async () => (await moverState(c)).state !== MoverState.LISTEN, 5000, "the mover to accept");
  return sock;
}

/** Reads the open tape from where it is to the next filemark (or end of data) with TAPE_READ. */
async function readTapeFile(c: NdmpClient, rs: number): Promise<Buffer[]> {
  const records: Buffer[] = [];
  for (;;) {
    try {
      records.push((await c.request(Message.TAPE_READ, { count: rs })).body.data_in as Buffer);
    } catch (e) {
      const code = (e as { error?: number }).error;
      if (code === ErrorCode.EOF_ERR || code === ErrorCode.EOM_ERR) return records;
      throw e;
    }
  }
}

/** Writes `total` bytes of endless seeded data until the socket closes (abort tests). */
function flood(sock: Socket, chunk = seededBytes(256 * KiB, 99)): Promise<void> {
  return new Promise((resolve) => {
    const more = () => {
      while (!sock.destroyed && sock.write(chunk));
    };
    sock.on("drain", more);
    sock.once("close", () => resolve());
    more();
  });
}

describe.runIf(ready)("ndmpd binary: TAPE and MOVER services", () => {
  let srv: RunningServer;
  let fdBaseline = 0;
  beforeAll(async () => {
    srv = await startServer({
      config: tapeServerConfig([
        { name: "vt0" },
        { name: "vt1" },
        { name: "m0", capacity: "1MiB" },
        { name: "m1", capacity: "1MiB" },
        { name: "m2", capacity: "1MiB" },
        { name: "vw" },
        { name: "va" },
        { name: "vs" },
        { name: "vr" },
        { name: "pe", capacity: "1MiB" },
      ]),
    });
    fdBaseline = srv.fdCount();
  });
  afterAll(async () => {
    expect(await srv.stop()).toBe(0);
  });

  it("remote data stream: 64 MiB backup through MOVER_LISTEN(READ, TCP), then recovery by reads that start and end inside records", async () => {
    const rs = 256 * KiB;
    const N = 64 * MiB;
    const data = seededBytes(N, 1);
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.RDWR });
      const peer = await listen(c, MoverMode.READ, rs, [0n, ALL1]);
      const since = c.posts.length;
      await sendAll(peer, data, { chunk: MiB });
      const halted = await postAfter(c, Message.NOTIFY_MOVER_HALTED, since);
      expect(halted.body.reason).toBe(Halt.CONNECT_CLOSED);
      const st = await moverState(c);
      expect(st).toMatchObject({ state: MoverState.HALTED, halt_reason: Halt.CONNECT_CLOSED, mode: MoverMode.READ, record_size: rs, record_num: N / rs });
      expect(st.bytes_moved).toBe(BigInt(N));
      expect(c.posts.slice(since).filter((p) => p.code === Message.NOTIFY_MOVER_PAUSED)).toEqual([]);
      await c.request(Message.MOVER_STOP);
      const idle = await moverState(c);
      expect(idle).toMatchObject({ state: MoverState.IDLE, mode: MoverMode.NOACTION, record_size: rs, record_num: 0 });
      expect(idle.bytes_moved).toBe(0n);
      expect(await tapeState(c)).toMatchObject({ file_num: 0, blockno: N / rs });

      // ---- recovery ----
      await mtio(c, Op.REW, 1); // writes the filemark that ends the backup first
      const firstWindow = 32n * BigInt(rs);
      const back = await listen(c, MoverMode.WRITE, rs, [0n, firstWindow]);
      const rx = new Receiver(back);
      let got = 0;
      const readExpect = async (offset: number, length: number) => {
        await c.request(Message.MOVER_READ, { offset: BigInt(offset), length: BigInt(length) });
        const all = await rx.waitFor(got + length);
        expect(all.length, `read (${offset}, ${length}) sent too much`).toBe(got + length);
        expect(all.subarray(got, got + length).equals(data.subarray(offset, offset + length)), `read (${offset}, ${length})`).toBe(true);
        got += length;
      };
      await readExpect(0, 100);
      await readExpect(100, rs * 3 + 7); // from inside record 0 to inside record 3
      await readExpect(rs * 3 + 107, rs - 200); // inside record 3, starting where the last read ended
      await readExpect(rs * 5 + 1, 10); // a skip forward (the mover spaces the tape itself)
      await readExpect(rs * 2 - 50, 100); // backwards, across the boundary of records 1 and 2
      await readExpect(rs * 6 + 123, rs * 9 + 456); // spanning ten records
      expect((await moverState(c)).state).toBe(MoverState.ACTIVE);

      // A read that runs past the window: served up to the window's end, then PAUSED(SEEK) there.
      let since2 = c.posts.length;
      const start = rs * 31 + 5;
      await c.request(Message.MOVER_READ, { offset: BigInt(start), length: BigInt(2 * rs) });
      const seek = await postAfter(c, Message.NOTIFY_MOVER_PAUSED, since2);
      expect(seek.body).toEqual({ reason: Pause.SEEK, seek_position: firstWindow });
      expect(await moverState(c)).toMatchObject({ state: MoverState.PAUSED, pause_reason: Pause.SEEK, bytes_left_to_read: BigInt(start + 2 * rs) - firstWindow });
      await expect(c.request(Message.MOVER_CONTINUE)).rejects.toMatchObject(err("PRECONDITION_ERR")); // no new window yet
      // While paused the DMA positions the tape at the new window's first record.
      await mtio(c, Op.REW, 1);
      expect(await mtio(c, Op.FSR, 32)).toBe(0);
      await c.request(Message.MOVER_SET_WINDOW, { offset: firstWindow, length: BigInt(N) - firstWindow });
      await c.request(Message.MOVER_CONTINUE);
      await rx.waitFor(got + 2 * rs);
      expect(rx.bytes().subarray(got).equals(data.subarray(start, start + 2 * rs))).toBe(true);
      got += 2 * rs;

      // A read before the window: PAUSED(SEEK) at its offset; the DMA rewinds and widens the window.
      since2 = c.posts.length;
      await c.request(Message.MOVER_READ, { offset: 10n, length: 20n });
      const seekBack = await postAfter(c, Message.NOTIFY_MOVER_PAUSED, since2);
      expect(seekBack.body).toEqual({ reason: Pause.SEEK, seek_position: 10n });
      await mtio(c, Op.REW, 1);
      await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: BigInt(N) });
      await c.request(Message.MOVER_CONTINUE);
      await rx.waitFor(got + 20);
      expect(rx.bytes().subarray(got).equals(data.subarray(10, 30))).toBe(true);
      got += 20;

      // One read outstanding at a time: hold the peer so the big read cannot finish.
      back.pause();
      const tailStart = rs * 40 + 3;
      await c.request(Message.MOVER_READ, { offset: BigInt(tailStart), length: BigInt(N - tailStart) });
      await expect(c.request(Message.MOVER_READ, { offset: 0n, length: 1n })).rejects.toMatchObject(err("READ_IN_PROGRESS_ERR"));
      expect((await moverState(c)).bytes_left_to_read > 0n).toBe(true);
      back.resume();
      await rx.waitFor(got + N - tailStart, 60_000);
      expect(rx.bytes().length).toBe(got + N - tailStart);
      expect(rx.bytes().subarray(got).equals(data.subarray(tailStart))).toBe(true);
      const done = await moverState(c);
      expect(done).toMatchObject({ state: MoverState.ACTIVE, record_num: N / rs });
      expect(done.bytes_left_to_read).toBe(0n);
      expect(done.bytes_moved).toBe(BigInt(rx.bytes().length));

      // The data peer closes: the mover halts CONNECT_CLOSED.
      since2 = c.posts.length;
      back.end();
      expect((await postAfter(c, Message.NOTIFY_MOVER_HALTED, since2)).body.reason).toBe(Halt.CONNECT_CLOSED);
      await c.request(Message.MOVER_STOP);
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("a stream that is not a whole number of records: the last record is zero-padded on tape and bytes_moved excludes the padding", async () => {
    const rs = 64 * KiB;
    const N = 3 * MiB + 12345;
    const data = seededBytes(N, 2);
    const records = Math.ceil(N / rs);
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vt1", mode: Mode.RDWR });
      const peer = await listen(c, MoverMode.READ, rs, [0n, ALL1]);
      const since = c.posts.length;
      await sendAll(peer, data, { chunk: 100_000 });
      expect((await postAfter(c, Message.NOTIFY_MOVER_HALTED, since)).body.reason).toBe(Halt.CONNECT_CLOSED);
      const st = await moverState(c);
      expect(st.bytes_moved).toBe(BigInt(N));
      expect(st.record_num).toBe(records);
      await c.request(Message.MOVER_STOP);
      await c.request(Message.TAPE_CLOSE); // writes the filemark

      await c.request(Message.TAPE_OPEN, { device: "vt1", mode: Mode.READ });
      const onTape = await readTapeFile(c, rs);
      expect(onTape.length).toBe(records);
      expect(onTape.every((r) => r.length === rs)).toBe(true);
      const image = Buffer.concat(onTape);
      expect(image.subarray(0, N).equals(data)).toBe(true);
      expect(image.subarray(N).equals(Buffer.alloc(records * rs - N))).toBe(true);

      // Recovery with a window that ends at the stream's end, not the record's.
      await mtio(c, Op.REW, 1);
      const back = await listen(c, MoverMode.WRITE, rs, [0n, BigInt(N)]);
      const rx = new Receiver(back);
      await c.request(Message.MOVER_READ, { offset: 0n, length: BigInt(N) });
      expect((await rx.waitFor(N)).equals(data)).toBe(true);
      const since2 = c.posts.length;
      await c.request(Message.MOVER_READ, { offset: BigInt(N - 5), length: 10n });
      const p = await postAfter(c, Message.NOTIFY_MOVER_PAUSED, since2);
      expect(p.body).toEqual({ reason: Pause.SEEK, seek_position: BigInt(N) });
      await c.request(Message.MOVER_CLOSE);
      expect(await moverState(c)).toMatchObject({ state: MoverState.HALTED, halt_reason: Halt.CONNECT_CLOSED });
      // The pause and the data travel on different connections: count the bytes once the mover
      // has closed the data connection (after handing over what it sent).
      await new Promise<void>((r) => (rx.closed ? r() : back.once("close", () => r())));
      expect(rx.bytes().length).toBe(N + 5); // the 5 bytes in the window, never a pad byte
      expect(rx.bytes().subarray(N).equals(data.subarray(N - 5))).toBe(true);
      await c.request(Message.MOVER_STOP);
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("non-DAR recovery: MOVER_READ(0, ALL1) under the maximum window streams every record, then pauses EOF before the filemark", async () => {
    const rs = 16 * KiB;
    const N = 7 * rs + 3000;
    const data = seededBytes(N, 6);
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vw", mode: Mode.RDWR });
      const peer = await listen(c, MoverMode.READ, rs, [0n, ALL1]);
      let since = c.posts.length;
      await sendAll(peer, data);
      expect((await postAfter(c, Message.NOTIFY_MOVER_HALTED, since)).body.reason).toBe(Halt.CONNECT_CLOSED);
      await c.request(Message.MOVER_STOP);
      await mtio(c, Op.EOF, 1);
      await c.request(Message.TAPE_WRITE, { data_out: Buffer.alloc(512, 9) }); // a trailer in the next tape file
      await mtio(c, Op.REW, 1);

      const back = await listen(c, MoverMode.WRITE, rs, [0n, ALL1]);
      const rx = new Receiver(back);
      since = c.posts.length;
      await c.request(Message.MOVER_READ, { offset: 0n, length: ALL1 });
      const p = await postAfter(c, Message.NOTIFY_MOVER_PAUSED, since);
      expect(p.body).toEqual({ reason: Pause.EOF, seek_position: BigInt(8 * rs) });
      const all = await rx.waitFor(8 * rs);
      expect(all.length).toBe(8 * rs); // whole records: the DMA did not say where the stream ends
      expect(all.subarray(0, N).equals(data)).toBe(true);
      expect(await tapeState(c)).toMatchObject({ file_num: 0, blockno: 8 }); // BOT side of the mark
      await c.request(Message.MOVER_CLOSE);
      expect(await moverState(c)).toMatchObject({ state: MoverState.HALTED, halt_reason: Halt.CONNECT_CLOSED });
      await new Promise<void>((r) => (rx.closed ? r() : back.once("close", () => r())));
      await c.request(Message.MOVER_STOP);
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("multi-tape: EOM twice over three 1 MiB cartridges; the DMA changes drives and continues; the cartridges hold the stream", async () => {
    const rs = 32 * KiB;
    const N = 2.5 * MiB + 777;
    const data = seededBytes(N, 3);
    const drives = ["m0", "m1", "m2"];
    const pauses: Array<{ reason: number; seek: bigint; recordNum: number }> = [];
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: drives[0], mode: Mode.RDWR });
      const peer = await listen(c, MoverMode.READ, rs, [0n, ALL1]);
      const sending = sendAll(peer, data, { chunk: 64 * KiB });
      let since = c.posts.length;
      for (let tape = 1; ; tape++) {
        const p = await Promise.race([postAfter(c, Message.NOTIFY_MOVER_PAUSED, since), postAfter(c, Message.NOTIFY_MOVER_HALTED, since)]);
        since = c.posts.indexOf(p) + 1;
        if (p.code === Message.NOTIFY_MOVER_HALTED) {
          expect(p.body.reason).toBe(Halt.CONNECT_CLOSED);
          break;
        }
        const st = await moverState(c);
        pauses.push({ reason: p.body.reason, seek: p.body.seek_position, recordNum: st.record_num });
        expect(st).toMatchObject({ state: MoverState.PAUSED, pause_reason: Pause.EOM });
        // The tape may be used freely while paused: end the tape file, change cartridges.
        expect((await tapeState(c)).blockno).toBe(st.record_num - Number(pauses.length > 1 ? pauses[pauses.length - 2]!.seek / BigInt(rs) : 0n));
        await mtio(c, Op.EOF, 1);
        await c.request(Message.TAPE_CLOSE);
        await expect(c.request(Message.MOVER_CONTINUE)).rejects.toMatchObject(err("PRECONDITION_ERR"));
        await c.request(Message.TAPE_OPEN, { device: drives[tape], mode: Mode.RDWR });
        await c.request(Message.MOVER_SET_WINDOW, { offset: p.body.seek_position, length: ALL1 });
        await c.request(Message.MOVER_CONTINUE);
      }
      await sending;
      expect(pauses.map((p) => p.reason)).toEqual([Pause.EOM, Pause.EOM]);
      for (const p of pauses) expect(p.seek).toBe(BigInt(p.recordNum) * BigInt(rs));
      const st = await moverState(c);
      expect(st.bytes_moved).toBe(BigInt(N));
      expect(st.record_num).toBe(Math.ceil(N / rs));
      await c.request(Message.MOVER_STOP);
      await c.request(Message.TAPE_CLOSE);

      const parts: Buffer[] = [];
      for (const d of drives) {
        await c.request(Message.TAPE_OPEN, { device: d, mode: Mode.READ });
        const recs = await readTapeFile(c, rs);
        expect(recs.length).toBeGreaterThan(0);
        parts.push(...recs);
        await c.request(Message.TAPE_CLOSE);
      }
      // Each cartridge holds exactly the records up to its pause; together, the stream.
      expect(pauses[0]!.seek).toBe(BigInt(Buffer.concat(parts.slice(0, Number(pauses[0]!.seek) / rs)).length));
      const image = Buffer.concat(parts);
      expect(image.length).toBe(Math.ceil(N / rs) * rs);
      expect(image.subarray(0, N).equals(data)).toBe(true);
    });
  });

  it("window end: SET_WINDOW(0, 5 records) pauses EOW at exactly 5 records; SET_WINDOW(5 rs, ALL1) + CONTINUE writes the rest", async () => {
    const rs = 64 * KiB;
    const N = 12 * rs + 100;
    const data = seededBytes(N, 4);
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vw", mode: Mode.RDWR });
      const peer = await listen(c, MoverMode.READ, rs, [0n, BigInt(5 * rs)]);
      const since = c.posts.length;
      const sending = sendAll(peer, data, { chunk: 64 * KiB });
      const p = await postAfter(c, Message.NOTIFY_MOVER_PAUSED, since);
      expect(p.body).toEqual({ reason: Pause.EOW, seek_position: BigInt(5 * rs) });
      const st = await moverState(c);
      expect(st).toMatchObject({ state: MoverState.PAUSED, pause_reason: Pause.EOW, record_num: 5 });
      expect(st.bytes_moved).toBe(BigInt(5 * rs));
      expect(await tapeState(c)).toMatchObject({ blockno: 5 });
      // A backup window must be whole records; CONTINUE needs a new window.
      await expect(c.request(Message.MOVER_SET_WINDOW, { offset: BigInt(5 * rs), length: BigInt(rs + 1) })).rejects.toMatchObject(err("ILLEGAL_ARGS_ERR"));
      await expect(c.request(Message.MOVER_CONTINUE)).rejects.toMatchObject(err("PRECONDITION_ERR"));
      await c.request(Message.MOVER_SET_WINDOW, { offset: BigInt(5 * rs), length: ALL1 });
      await c.request(Message.MOVER_CONTINUE);
      expect((await postAfter(c, Message.NOTIFY_MOVER_HALTED, since)).body.reason).toBe(Halt.CONNECT_CLOSED);
      await sending;
      expect(c.posts.slice(since).filter((x) => x.code === Message.NOTIFY_MOVER_PAUSED).length).toBe(1);
      expect((await moverState(c)).bytes_moved).toBe(BigInt(N));
      await c.request(Message.MOVER_STOP);
      await mtio(c, Op.REW, 1);
      const image = Buffer.concat(await readTapeFile(c, rs));
      expect(image.length).toBe(13 * rs);
      expect(image.subarray(0, N).equals(data)).toBe(true);
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("MOVER_ABORT in LISTEN, ACTIVE (mid-stream) and PAUSED halts ABORTED and closes the data connection; STOP returns to IDLE", async () => {
    const rs = 64 * KiB;
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "va", mode: Mode.RDWR });
      await c.request(Message.MOVER_SET_RECORD_SIZE, { len: rs });
      await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
      const r = await c.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.TCP });
      let since = c.posts.length;
      await c.request(Message.MOVER_ABORT);
      expect((await postAfter(c, Message.NOTIFY_MOVER_HALTED, since)).body.reason).toBe(Halt.ABORTED);
      expect(await moverState(c)).toMatchObject({ state: MoverState.HALTED, halt_reason: Halt.ABORTED });
      await expect(connectTo(r.body.connect_addr)).rejects.toMatchObject({ code: "ECONNREFUSED" }); // listener closed
      await c.request(Message.MOVER_ABORT); // in HALTED: no error, no second notification
      await c.request(Message.MOVER_STOP);
      expect(c.posts.slice(since).filter((p) => p.code === Message.NOTIFY_MOVER_HALTED).length).toBe(1);
      expect(await moverState(c)).toMatchObject({ state: MoverState.IDLE, halt_reason: Halt.NA });

      // ACTIVE, with the peer streaming as fast as it can.
      const peer = await listen(c, MoverMode.READ, rs, [0n, ALL1]);
      const flowing = flood(peer);
      await until(async () => (await moverState(c)).bytes_moved >= BigInt(4 * MiB), 10_000, "4 MiB on tape");
      since = c.posts.length;
      await c.request(Message.MOVER_ABORT);
      expect((await postAfter(c, Message.NOTIFY_MOVER_HALTED, since)).body.reason).toBe(Halt.ABORTED);
      await flowing; // the server closed the data connection
      const st = await moverState(c);
      expect(st).toMatchObject({ state: MoverState.HALTED, halt_reason: Halt.ABORTED });
      expect(st.bytes_moved % BigInt(rs)).toBe(0n); // whole records only, nothing half-written
      await c.request(Message.MOVER_STOP);
      expect(await mtio(c, Op.REW, 1)).toBe(0); // the tape is the DMA's again
      expect((await readTapeFile(c, rs)).length).toBe(Number(st.bytes_moved) / rs);
      await mtio(c, Op.REW, 1);

      // PAUSED (window end).
      const peer2 = await listen(c, MoverMode.READ, rs, [0n, BigInt(2 * rs)]);
      since = c.posts.length;
      const flowing2 = flood(peer2);
      expect((await postAfter(c, Message.NOTIFY_MOVER_PAUSED, since)).body.reason).toBe(Pause.EOW);
      await c.request(Message.MOVER_ABORT);
      expect((await postAfter(c, Message.NOTIFY_MOVER_HALTED, since)).body.reason).toBe(Halt.ABORTED);
      await flowing2;
      expect(await moverState(c)).toMatchObject({ state: MoverState.HALTED, halt_reason: Halt.ABORTED, pause_reason: Pause.NA });
      await c.request(Message.MOVER_STOP);

      // Recovery with a read outstanding and the peer not reading.
      await mtio(c, Op.REW, 1);
      const back = await listen(c, MoverMode.WRITE, rs, [0n, ALL1]);
      back.pause();
      await c.request(Message.MOVER_READ, { offset: 0n, length: ALL1 });
      since = c.posts.length;
      await c.request(Message.MOVER_ABORT);
      expect((await postAfter(c, Message.NOTIFY_MOVER_HALTED, since)).body.reason).toBe(Halt.ABORTED);
      back.resume(); // a paused socket sees no end (nor close) until it reads what is queued
      await new Promise<void>((res) => (back.destroyed ? res() : back.once("close", () => res())));
      await c.request(Message.MOVER_STOP);
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("the data connection dropped mid-stream halts CONNECT_CLOSED with what was received on tape", async () => {
    const rs = 64 * KiB;
    const sent = 5 * rs + 1000;
    const data = seededBytes(sent, 5);
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "va", mode: Mode.RDWR });
      const peer = await listen(c, MoverMode.READ, rs, [0n, ALL1]);
      await sendAll(peer, data, { end: false });
      await until(async () => (await moverState(c)).record_num === 5, 10_000, "five records on tape");
      await new Promise((r) => setTimeout(r, 500)); // let the server take the last 1000 bytes too
      const since = c.posts.length;
      peer.resetAndDestroy(); // TCP RST: a crashed data server, not an end of stream
      expect((await postAfter(c, Message.NOTIFY_MOVER_HALTED, since)).body.reason).toBe(Halt.CONNECT_CLOSED);
      const st = await moverState(c);
      expect(st.bytes_moved).toBe(BigInt(sent));
      await c.request(Message.MOVER_STOP);
      await mtio(c, Op.REW, 1);
      const image = Buffer.concat(await readTapeFile(c, rs));
      expect(image.subarray(0, sent).equals(data)).toBe(true);
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("the control connection dropped mid-stream: the mover is aborted, the drive released, no descriptor leaked", async () => {
    const rs = 64 * KiB;
    const c = await dma(srv.port);
    await c.request(Message.TAPE_OPEN, { device: "va", mode: Mode.RDWR });
    const peer = await listen(c, MoverMode.READ, rs, [0n, ALL1]);
    const flowing = flood(peer);
    await until(async () => (await moverState(c)).bytes_moved >= BigInt(2 * MiB), 10_000, "2 MiB on tape");
    (c as unknown as { socket: Socket }).socket.destroy(); // no CONNECT_CLOSE: the DMA vanished
    await flowing; // the server closed the data connection
    await session(srv.port, async (c2) => {
      await until(
        async () => {
          try {
            await c2.request(Message.TAPE_OPEN, { device: "va", mode: Mode.RDWR });
            return true;
          } catch (e) {
            if ((e as { error?: number }).error !== ErrorCode.DEVICE_BUSY_ERR) throw e;
            return false;
          }
        },
        5000,
        "the drive to be released",
      );
      // The killed session's close wrote the filemark after its records.
      const recs = await readTapeFile(c2, rs);
      expect(recs.length).toBeGreaterThanOrEqual(32);
      await expect(c2.request(Message.TAPE_READ, { count: rs })).rejects.toMatchObject(err("EOF_ERR"));
      await c2.request(Message.TAPE_CLOSE);
    });
    await until(() => srv.fdCount() <= fdBaseline, 5000, `descriptors back to ${fdBaseline} (now ${srv.fdCount()})`);
  });

  it("TAPE_WRITE past the early warning: EOM_ERR once, then IO_ERR at the physical end (every time); all written reads back", async () => {
    const rs = 32 * KiB;
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "pe", mode: Mode.RDWR });
      const written: Buffer[] = [];
      const answers: string[] = [];
      // A DMA that takes EOM_ERR for the early warning and writes on (its trailer, the rest).
      for (let i = 0; i < 200; i++) {
        const rec = seededBytes(rs, 100 + written.length);
        const r = await c.request(Message.TAPE_WRITE, { data_out: rec }, { allowBodyError: true });
        const name = Object.entries(ErrorCode).find(([, v]) => v === r.body.error)![0];
        if (answers.at(-1) !== name) answers.push(name);
        if (r.body.error === ErrorCode.NO_ERR) written.push(rec);
        if (r.body.error === ErrorCode.IO_ERR) break;
      }
      expect(answers).toEqual(["NO_ERR", "EOM_ERR", "NO_ERR", "IO_ERR"]);
      expect(written.length).toBeGreaterThan(28); // LEOM is at 960 KiB
      // Past the end it stays IO_ERR: no EOM_ERR that a DMA would retry for ever.
      expect(await c.request(Message.TAPE_WRITE, { data_out: seededBytes(rs, 0) }, { allowBodyError: true }).then((r) => r.body.error)).toBe(ErrorCode.IO_ERR);
      expect((await tapeState(c)).space_remain).toBeLessThan(BigInt(rs + 64));
      await mtio(c, Op.REW, 1);
      const back = await readTapeFile(c, rs);
      expect(back.length).toBe(written.length);
      expect(back.every((b, i) => Buffer.from(b).equals(written[i]!))).toBe(true);
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("MOVER_READ and DATA_START_BACKUP sent the moment the data connection is made see it made (many attempts)", async () => {
    const rs = 4 * KiB;
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vr", mode: Mode.RDWR });
      await c.request(Message.TAPE_WRITE, { data_out: seededBytes(rs, 7) });
      await mtio(c, Op.EOF, 1);
      const refused: string[] = [];
      for (let i = 0; i < 150; i++) {
        await mtio(c, Op.REW, 1);
        await c.request(Message.MOVER_SET_RECORD_SIZE, { len: rs });
        await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
        const l = await c.request(Message.MOVER_LISTEN, { mode: MoverMode.WRITE, addr_type: AddrType.TCP });
        const sock = await connectTo(l.body.connect_addr);
        // At once, as a DMA that has just connected its data side does: no look at the state first.
        const r = await c.request(Message.MOVER_READ, { offset: 0n, length: BigInt(rs) }, { allowBodyError: true });
        if (r.body.error !== ErrorCode.NO_ERR) refused.push(`attempt ${i}: ${r.body.error}`);
        sock.destroy();
        await c.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
        await until(async () => (await moverState(c)).state === MoverState.HALTED, 5000, "the mover to halt");
        await c.request(Message.MOVER_STOP);
      }
      expect(refused).toEqual([]);
      await c.request(Message.TAPE_CLOSE);
      // The data service's listen side: a DATA_START_* right after the connection is in CONNECTED.
      for (let i = 0; i < 50; i++) {
        const l = await c.request(Message.DATA_LISTEN, { addr_type: AddrType.TCP });
        const sock = await connectTo(l.body.connect_addr);
        sock.resume();
        const r = await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: srv.dir }] }, { allowBodyError: true });
        if (r.body.error !== ErrorCode.NO_ERR) refused.push(`data attempt ${i}: ${r.body.error}`);
        await c.request(Message.DATA_ABORT, {}, { allowBodyError: true });
        await c.request(Message.DATA_STOP, {}, { allowBodyError: true });
        sock.destroy();
      }
      expect(refused).toEqual([]);
    });
  });

  it("two sessions: the second TAPE_OPEN is DEVICE_BUSY_ERR until the first closes; the mover owns the tape in LISTEN and ACTIVE", async () => {
    const rs = 64 * KiB;
    const a = await dma(srv.port);
    const b = await dma(srv.port);
    try {
      await a.request(Message.TAPE_OPEN, { device: "vs", mode: Mode.RDWR });
      await expect(b.request(Message.TAPE_OPEN, { device: "vs", mode: Mode.READ })).rejects.toMatchObject(err("DEVICE_BUSY_ERR"));
      await expect(b.request(Message.TAPE_OPEN, { device: "vs", mode: Mode.RDWR })).rejects.toMatchObject(err("DEVICE_BUSY_ERR"));

      const busy = async (what: string) => {
        await expect(a.request(Message.TAPE_WRITE, { data_out: Buffer.alloc(10) }), what).rejects.toMatchObject(err("DEVICE_BUSY_ERR"));
        await expect(a.request(Message.TAPE_READ, { count: 10 }), what).rejects.toMatchObject(err("DEVICE_BUSY_ERR"));
        await expect(a.request(Message.TAPE_MTIO, { tape_op: Op.REW, count: 1 }), what).rejects.toMatchObject(err("DEVICE_BUSY_ERR"));
        await expect(a.request(Message.TAPE_CLOSE), what).rejects.toMatchObject(err("DEVICE_BUSY_ERR"));
        expect((await tapeState(a)).file_num, what).toBe(0); // GET_STATE still answers
      };
      await a.request(Message.MOVER_SET_RECORD_SIZE, { len: rs });
      await a.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
      const r = await a.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.TCP });
      await busy("LISTEN");
      const peer = await connectTo(r.body.connect_addr);
      peer.write(Buffer.alloc(1000, 1)); // less than a record: the mover stays ACTIVE, waiting for more
      await until(async () => (await moverState(a)).state === MoverState.ACTIVE, 5000, "ACTIVE");
      await busy("ACTIVE");
      // The other session's mover cannot reach this tape either: it has none open.
      await b.request(Message.MOVER_SET_RECORD_SIZE, { len: rs });
      await expect(b.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.TCP })).rejects.toMatchObject(err("DEV_NOT_OPEN_ERR"));
      const since = a.posts.length;
      peer.end();
      expect((await postAfter(a, Message.NOTIFY_MOVER_HALTED, since)).body.reason).toBe(Halt.CONNECT_CLOSED);
      expect((await moverState(a)).bytes_moved).toBe(1000n);
      // HALTED: the tape is the DMA's again.
      expect(await mtio(a, Op.REW, 1)).toBe(0);
      await a.request(Message.MOVER_STOP);
      await a.request(Message.TAPE_CLOSE);
      await b.request(Message.TAPE_OPEN, { device: "vs", mode: Mode.READ });
      const rec = (await b.request(Message.TAPE_READ, { count: rs })).body.data_in as Buffer;
      expect(rec.length).toBe(rs);
      expect(rec.subarray(0, 1000).equals(Buffer.alloc(1000, 1))).toBe(true);
      await expect(a.request(Message.TAPE_OPEN, { device: "vs", mode: Mode.READ })).rejects.toMatchObject(err("DEVICE_BUSY_ERR"));
      await b.request(Message.TAPE_CLOSE);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
