/**
 * MoverService (src/mover/mover.ts) driven directly: LOCAL data connections and a virtual drive
 * on a temp cartridge, no server. Backup through listen(READ, LOCAL) + acceptLocal(), recovery
 * by MOVER_READ ranges, the state table, pauses and halts.
 */
import type { Duplex } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defaultConfig } from "../../../src/config.ts";
import { createCartridge, VirtualTapeDrive } from "../../../src/devices/tape/virtual.ts";
import { Logger } from "../../../src/log.ts";
import { MAX_RECORD_SIZE, MoverService, V3_DEFAULT_RECORD_SIZE } from "../../../src/mover/mover.ts";
import {
  AddrType,
  ALL1,
  ErrorCode,
  Message,
  MoverHaltReason as Halt,
  MoverMode as Mode,
  MoverPauseReason as Pause,
  MoverState as State,
  NdmpError,
} from "../../../src/protocol/codes.ts";
import { makeTempDir, pattern } from "../devices/tape/helpers.ts";

const KiB = 1024;

interface Posted {
  code: number;
  body: any;
}

class Harness {
  posts: Posted[] = [];
  private waiters: Array<() => void> = [];
  current: { device: VirtualTapeDrive; writable: boolean } | undefined;
  readonly mover: MoverService;

  constructor(version = 4) {
    this.mover = new MoverService({
      config: defaultConfig({ NDMPD_PASSWORD: "x" }),
      log: new Logger("error"),
      localAddress: "127.0.0.1",
      version,
      post: (code, body) => {
        this.posts.push({ code, body });
        for (const w of this.waiters.splice(0)) w();
      },
      tape: () => this.current,
    });
  }

  /** The next post of `code` at or after index `since`. */
  async post(code: number, since = 0, timeoutMs = 5000): Promise<Posted> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = this.posts.slice(since).find((x) => x.code === code);
      if (p) return p;
      if (Date.now() > deadline) throw new Error(`no post ${code}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}

function ndmpError(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NdmpError);
    return (e as NdmpError).code;
  }
  throw new Error("expected an NdmpError");
}

async function ndmpErrorAsync(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(NdmpError);
    return (e as NdmpError).code;
  }
  throw new Error("expected an NdmpError");
}

function write(d: Duplex, data: Buffer, chunk = 10_000): Promise<void> {
  return (async () => {
    for (let off = 0; off < data.length; off += chunk) {
      if (!d.write(data.subarray(off, off + chunk))) await new Promise((r) => d.once("drain", r));
    }
    await new Promise<void>((r) => d.end(r));
  })();
}

/** Resolves when the data end has read to its end and closed (what a data service would see). */
function closedWhenRead(d: Duplex): Promise<void> {
  d.on("data", () => {});
  return new Promise((r) => (d.destroyed ? r() : d.once("close", () => r())));
}

class Sink {
  chunks: Buffer[] = [];
  length = 0;
  /** Reads through the iterator, as the data service does: a mover pauses once it asks for more. */
  constructor(d: Duplex) {
    d.on("error", () => {});
    void (async () => {
      for await (const c of d as AsyncIterable<Buffer>) {
        this.chunks.push(c);
        this.length += c.length;
      }
    })().catch(() => {});
  }
  async waitFor(n: number): Promise<Buffer> {
    const deadline = Date.now() + 5000;
    while (this.length < n) {
      if (Date.now() > deadline) throw new Error(`got ${this.length} of ${n}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return Buffer.concat(this.chunks);
  }
}

describe("MoverService with a LOCAL data connection and a virtual drive", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  let h: Harness;
  const drives: VirtualTapeDrive[] = [];

  async function drive(name: string, capacity?: number): Promise<VirtualTapeDrive> {
    const file = `${tmp.dir}/${name}.tape`;
    await createCartridge(file, capacity ? { capacity } : {});
    const d = new VirtualTapeDrive({ name, cartridge: file });
    await d.open("RDWR");
    drives.push(d);
    return d;
  }

  /** The mover listening for a backup (READ) over LOCAL at `rs`-byte records, window wide open, and its data end, connected. */
  async function backupEnd(rs: number) {
    const m = h.mover;
    m.setRecordSize(rs);
    m.setWindow(0n, ALL1);
    await m.listen(Mode.READ, AddrType.LOCAL);
    const end = m.acceptLocal();
    end.on("error", () => {});
    return { m, end };
  }

  beforeEach(() => {
    tmp = makeTempDir("ndmpd-mover-");
    h = new Harness();
  });
  afterEach(async () => {
    await h.mover.teardown();
    for (const d of drives.splice(0)) if (d.openMode) await d.close();
    tmp.cleanup();
  });

  it("backup through listen(READ, LOCAL) + acceptLocal(), then recovery of exact byte ranges", async () => {
    const rs = 32 * KiB;
    const N = 20 * rs + 1234;
    const data = pattern(N, 1);
    const d = await drive("t0");
    h.current = { device: d, writable: true };
    const m = h.mover;
    m.setRecordSize(rs);
    m.setWindow(0n, ALL1);
    expect(await m.listen(Mode.READ, AddrType.LOCAL)).toEqual({ addr_type: AddrType.LOCAL });
    expect(m.getState()).toMatchObject({ state: State.LISTEN, mode: Mode.READ });
    const end = m.acceptLocal();
    expect(m.getState()).toMatchObject({ state: State.ACTIVE, data_connection_addr: { addr_type: AddrType.LOCAL } });
    expect(ndmpError(() => m.acceptLocal())).toBe(ErrorCode.ILLEGAL_STATE_ERR);
    await write(end, data);
    expect((await h.post(Message.NOTIFY_MOVER_HALTED)).body).toEqual({ reason: Halt.CONNECT_CLOSED });
    expect(m.getState()).toMatchObject({ state: State.HALTED, halt_reason: Halt.CONNECT_CLOSED, record_num: 21, bytes_moved: BigInt(N) });
    m.stop();
    expect(m.getState()).toMatchObject({ state: State.IDLE, record_size: rs, bytes_moved: 0n, window_length: 0n });

    // What is on tape: 21 records, the last one padded.
    await d.rewind();
    const recs: Buffer[] = [];
    for (let i = 0; i < 21; i++) recs.push(await d.read(rs));
    expect(recs.every((r) => r.length === rs)).toBe(true);
    expect(Buffer.concat(recs).subarray(0, N).equals(data)).toBe(true);
    expect(Buffer.concat(recs).subarray(N).every((b) => b === 0)).toBe(true);

    // Recovery.
    await d.rewind();
    m.setRecordSize(rs);
    m.setWindow(0n, BigInt(N));
    await m.listen(Mode.WRITE, AddrType.LOCAL);
    const back = m.acceptLocal();
    const sink = new Sink(back);
    let got = 0;
    for (const [off, len] of [
      [0, 10],
      [10, rs - 20],
      [rs - 10, 2 * rs + 20], // across two record boundaries
      [5 * rs + 7, 3],
      [rs + 1, 1], // back to a record already passed
      [19 * rs + 5, N - (19 * rs + 5)], // to the stream's end, no padding
    ] as Array<[number, number]>) {
      m.read(BigInt(off), BigInt(len));
      const all = await sink.waitFor(got + len);
      expect(all.length).toBe(got + len);
      expect(all.subarray(got).equals(data.subarray(off, off + len)), `(${off}, ${len})`).toBe(true);
      got += len;
      await new Promise((r) => setTimeout(r, 5));
      expect(m.getState().bytes_left_to_read).toBe(0n);
    }
    expect(m.getState().bytes_moved).toBe(BigInt(got));
    // A second read while one is outstanding.
    back.pause();
    m.read(0n, BigInt(N));
    expect(ndmpError(() => m.read(0n, 1n))).toBe(ErrorCode.READ_IN_PROGRESS_ERR);
    expect(ndmpError(() => m.read(0n, 0n))).toBe(ErrorCode.READ_IN_PROGRESS_ERR);
    back.destroy(); // the data service went away
    expect((await h.post(Message.NOTIFY_MOVER_HALTED, 1)).body).toEqual({ reason: Halt.CONNECT_CLOSED });
  });

  it("paused at the end of a tape file, the mover outlives the data service's close until MOVER_CLOSE (or CONTINUE)", async () => {
    const rs = 16 * KiB;
    const d = await drive("t3");
    h.current = { device: d, writable: true };
    for (let i = 0; i < 3; i++) await d.write(pattern(rs, i));
    await d.writeFilemarks(1);
    await d.rewind();
    const m = h.mover;
    m.setRecordSize(rs);
    for (const finish of ["close", "continue"] as const) {
      const since = h.posts.length;
      m.setWindow(0n, ALL1);
      await m.listen(Mode.WRITE, AddrType.LOCAL);
      const end = m.acceptLocal();
      const sink = new Sink(end);
      m.read(0n, ALL1);
      expect((await h.post(Message.NOTIFY_MOVER_PAUSED, since)).body.reason).toBe(Pause.EOF);
      await sink.waitFor(3 * rs);
      end.destroy(); // the data service has what it needs and halts
      await new Promise((r) => setTimeout(r, 50));
      // Still paused: halting now could be seen as "mover halted, data active" by a DMA.
      expect(m.getState()).toMatchObject({ state: State.PAUSED, pause_reason: Pause.EOF });
      if (finish === "close") m.close();
      else {
        m.setWindow(0n, ALL1);
        m.continue();
      }
      expect(m.getState()).toMatchObject({ state: State.HALTED, halt_reason: Halt.CONNECT_CLOSED });
      expect((await h.post(Message.NOTIFY_MOVER_HALTED, since)).body).toEqual({ reason: Halt.CONNECT_CLOSED });
      m.stop();
      await d.rewind();
    }
  });

  it("answers every request per the state table (ILLEGAL_STATE_ERR elsewhere)", async () => {
    const rs = 16 * KiB;
    const d = await drive("t1");
    h.current = { device: d, writable: true };
    const m = h.mover;
    const IS = ErrorCode.ILLEGAL_STATE_ERR;
    const check = async (state: number, allowed: string[]) => {
      expect(m.state).toBe(state);
      const attempts: Record<string, () => unknown> = {
        SET_RECORD_SIZE: () => m.setRecordSize(rs),
        SET_WINDOW: () => m.setWindow(0n, 0n),
        LISTEN: () => m.listen(Mode.READ, AddrType.LOCAL),
        CONNECT: () => m.connect(Mode.READ, { addr_type: AddrType.LOCAL }),
        READ: () => m.read(0n, 1n),
        CONTINUE: () => m.continue(),
        STOP: () => m.stop(),
        CLOSE: () => m.close(),
      };
      for (const [name, f] of Object.entries(attempts)) {
        if (allowed.includes(name)) continue;
        const code = await ndmpErrorAsync((async () => f())());
        expect({ state, name, code }).toEqual({ state, name, code: IS });
      }
      expect(m.getState().state).toBe(state); // GET_STATE always works
    };
    await check(State.IDLE, ["SET_RECORD_SIZE", "SET_WINDOW", "LISTEN", "CONNECT"]);
    expect(ndmpError(() => m.abort())).toBe(IS);
    m.setRecordSize(rs);
    await m.listen(Mode.READ, AddrType.LOCAL);
    await check(State.LISTEN, []);
    const end = m.acceptLocal();
    // The window is (0, 0) after SET_RECORD_SIZE: the first record pauses EOW at once.
    end.write(Buffer.alloc(rs));
    const p = await h.post(Message.NOTIFY_MOVER_PAUSED);
    expect(p.body).toEqual({ reason: Pause.EOW, seek_position: 0n });
    await check(State.PAUSED, ["SET_WINDOW", "CONTINUE", "CLOSE"]);
    m.setWindow(0n, ALL1);
    m.continue();
    await check(State.ACTIVE, ["READ"]); // READ is refused too: this mover is in READ mode
    expect(ndmpError(() => m.read(0n, 1n))).toBe(IS);
    await m.abort();
    await check(State.HALTED, ["STOP"]);
    m.abort(); // HALTED: no error, no second notification
    expect(h.posts.filter((x) => x.code === Message.NOTIFY_MOVER_HALTED)).toEqual([{ code: Message.NOTIFY_MOVER_HALTED, body: { reason: Halt.ABORTED } }]);
    m.stop();
    expect(m.state).toBe(State.IDLE);
  });

  it("argument checks: record size, window, mode, address type, tape", async () => {
    const m = h.mover;
    expect(ndmpError(() => m.setRecordSize(0))).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(ndmpError(() => m.setRecordSize(MAX_RECORD_SIZE + 1))).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    m.setWindow(0n, 0n); // the "no window" needs no record size (ndmjob M-IDLE #6)
    expect(ndmpError(() => m.setWindow(0n, 100n))).toBe(ErrorCode.PRECONDITION_ERR);
    expect(await ndmpErrorAsync(m.listen(Mode.READ, AddrType.LOCAL))).toBe(ErrorCode.PRECONDITION_ERR);
    m.setRecordSize(1024);
    expect(ndmpError(() => m.setWindow(512n, 1024n))).toBe(ErrorCode.ILLEGAL_ARGS_ERR); // not on a record boundary
    expect(ndmpError(() => m.setWindow(1024n, 0n))).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(ndmpError(() => m.setWindow(ALL1 - 1023n, 2048n))).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    m.setWindow(2048n, ALL1);
    expect(m.getState()).toMatchObject({ window_offset: 2048n, window_length: ALL1, record_num: 2 });
    expect(await ndmpErrorAsync(m.listen(123, AddrType.LOCAL))).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(await ndmpErrorAsync(m.listen(Mode.READ, 123))).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(await ndmpErrorAsync(m.listen(Mode.READ, AddrType.LOCAL))).toBe(ErrorCode.DEV_NOT_OPEN_ERR);
    const d = await drive("t2");
    h.current = { device: d, writable: false };
    expect(await ndmpErrorAsync(m.listen(Mode.READ, AddrType.TCP))).toBe(ErrorCode.PERMISSION_ERR);
    expect(await ndmpErrorAsync(m.connect(Mode.WRITE, { addr_type: AddrType.LOCAL }))).toBe(ErrorCode.ILLEGAL_STATE_ERR); // no data service listening
    expect(await ndmpErrorAsync(m.connect(Mode.WRITE, { addr_type: AddrType.TCP, tcp_addr: [] }))).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(m.state).toBe(State.IDLE);
  });

  it("EOM: the record that did not fit is written first on the next cartridge after CONTINUE", async () => {
    const rs = 32 * KiB;
    const t0 = await drive("small0", 1024 * 1024);
    const t1 = await drive("small1", 1024 * 1024);
    h.current = { device: t0, writable: true };
    const m = h.mover;
    m.setRecordSize(rs);
    m.setWindow(0n, ALL1);
    await m.listen(Mode.READ, AddrType.LOCAL);
    const end = m.acceptLocal();
    const N = 40 * rs;
    const data = pattern(N, 7);
    const sending = write(end, data);
    const p = await h.post(Message.NOTIFY_MOVER_PAUSED);
    expect(p.body.reason).toBe(Pause.EOM);
    const onFirst = Number(p.body.seek_position) / rs;
    expect(onFirst).toBe(m.getState().record_num);
    expect(onFirst).toBeGreaterThan(20);
    expect(ndmpError(() => m.continue())).toBe(ErrorCode.PRECONDITION_ERR);
    h.current = undefined;
    m.setWindow(p.body.seek_position, ALL1);
    expect(ndmpError(() => m.continue())).toBe(ErrorCode.DEV_NOT_OPEN_ERR);
    h.current = { device: t1, writable: true };
    m.continue();
    await sending;
    expect((await h.post(Message.NOTIFY_MOVER_HALTED)).body.reason).toBe(Halt.CONNECT_CLOSED);
    expect(m.getState().bytes_moved).toBe(BigInt(N));
    const read = async (t: VirtualTapeDrive) => {
      await t.rewind();
      const out: Buffer[] = [];
      for (;;) {
        try {
          out.push(await t.read(rs));
        } catch {
          return out;
        }
      }
    };
    const first = await read(t0);
    const second = await read(t1);
    expect(first.length).toBe(onFirst);
    expect(Buffer.concat([...first, ...second]).equals(data)).toBe(true);
  });

  it("a tape that refuses the write halts MEDIA_ERROR; teardown aborts an active mover and releases the connection", async () => {
    const rs = 4 * KiB;
    const file = `${tmp.dir}/ro.tape`;
    await createCartridge(file);
    const ro = new VirtualTapeDrive({ name: "ro", cartridge: file });
    await ro.open("READ");
    drives.push(ro);
    h.current = { device: ro, writable: true }; // the host claims it is writable; the drive says no
    const { m, end } = await backupEnd(rs);
    const closed = closedWhenRead(end);
    end.write(Buffer.alloc(rs));
    expect((await h.post(Message.NOTIFY_MOVER_HALTED)).body.reason).toBe(Halt.MEDIA_ERROR);
    await closed; // the data service sees its connection end
    m.stop();

    const d = await drive("t3");
    h.current = { device: d, writable: true };
    await m.listen(Mode.READ, AddrType.LOCAL);
    const end2 = m.acceptLocal();
    end2.on("error", () => {});
    const closed2 = closedWhenRead(end2);
    end2.write(Buffer.alloc(rs / 2)); // half a record: the pump waits for more
    const since = h.posts.length;
    await m.teardown();
    expect(h.posts.slice(since)).toEqual([{ code: Message.NOTIFY_MOVER_HALTED, body: { reason: Halt.ABORTED } }]);
    await closed2;
    expect(m.getState().bytes_moved).toBe(0n); // an abort writes no partial record
  });

  it("ABORT during a tape write halts after that record lands: bytes_moved is what the tape holds, nothing written after", async () => {
    const rs = 4 * KiB;
    const d = await drive("t4");
    h.current = { device: d, writable: true };
    // Hold the drive's third write until released, as a slow drive would (the drive itself is real).
    const realWrite = d.write.bind(d);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const writing = new Promise<void>((r) => (started = r));
    let writes = 0;
    d.write = async (b: Buffer) => {
      if (++writes === 3) {
        started();
        await held;
      }
      return realWrite(b);
    };
    const { m, end } = await backupEnd(rs);
    end.write(Buffer.alloc(10 * rs)); // more than the held write: the pump would go on after it
    await writing;
    const since = h.posts.length;
    const aborted = m.abort();
    await new Promise((r) => setTimeout(r, 20));
    expect(m.getState().state).toBe(State.ACTIVE); // not halted while the record is on its way
    release();
    await aborted;
    expect(h.posts.slice(since)).toEqual([{ code: Message.NOTIFY_MOVER_HALTED, body: { reason: Halt.ABORTED } }]);
    const st = m.getState();
    expect(st).toMatchObject({ state: State.HALTED, record_num: 3, bytes_moved: BigInt(3 * rs) });
    await new Promise((r) => setTimeout(r, 20));
    expect(writes).toBe(3); // no record after the abort
    m.stop();
    d.write = realWrite;
    await d.rewind();
    let onTape = 0;
    for (;;) {
      try {
        await d.read(rs);
        onTape++;
      } catch {
        break; // the filemark or blank tape after the last record
      }
    }
    expect(onTape).toBe(3);
  });
});

describe("MoverService at version 3 (digest §6.1)", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  let h: Harness;
  const drives: VirtualTapeDrive[] = [];

  async function drive(name: string, mode: "READ" | "RDWR" = "RDWR"): Promise<VirtualTapeDrive> {
    const file = `${tmp.dir}/${name}.tape`;
    await createCartridge(file);
    const d = new VirtualTapeDrive({ name, cartridge: file });
    await d.open(mode);
    drives.push(d);
    return d;
  }

  beforeEach(() => {
    tmp = makeTempDir("ndmpd-mover3-");
    h = new Harness(3);
  });
  afterEach(async () => {
    await h.mover.teardown();
    for (const d of drives.splice(0)) if (d.openMode) await d.close();
    tmp.cleanup();
  });

  it("has a default record size and an infinite default window; SET_RECORD_SIZE keeps the window; STOP restores the default", async () => {
    const m = h.mover;
    expect(m.getState()).toMatchObject({ state: State.IDLE, record_size: V3_DEFAULT_RECORD_SIZE, window_offset: 0n, window_length: ALL1 });
    m.setWindow(0n, 40960n);
    m.setRecordSize(4096); // v4 would reset the window to (0, 0) here
    expect(m.getState()).toMatchObject({ record_size: 4096, window_offset: 0n, window_length: 40960n });
    const d = await drive("v3a");
    h.current = { device: d, writable: true };
    await m.listen(Mode.READ, AddrType.LOCAL);
    m.abort();
    m.stop();
    expect(m.getState()).toMatchObject({ state: State.IDLE, record_size: 4096, window_offset: 0n, window_length: ALL1 });
  });

  it("the v3 DMA order works: SET_RECORD_SIZE, MOVER_LISTEN, then SET_WINDOW in LISTEN; no window at all also works", async () => {
    const d = await drive("v3b");
    h.current = { device: d, writable: true };
    const m = h.mover;
    m.setRecordSize(8 * KiB);
    await m.listen(Mode.READ, AddrType.LOCAL);
    m.setWindow(0n, ALL1); // ILLEGAL_STATE_ERR at v4
    expect(m.getState()).toMatchObject({ state: State.LISTEN, window_length: ALL1 });
    m.setWindow(0n, 0n); // ndmjob's v3 test-mover listen series
    m.setWindow(0n, ALL1);
    const end = m.acceptLocal();
    expect(ndmpError(() => m.setWindow(0n, ALL1))).toBe(ErrorCode.ILLEGAL_STATE_ERR); // ACTIVE: still refused
    const data = pattern(5 * 8 * KiB + 100, 3);
    await write(end, data);
    expect((await h.post(Message.NOTIFY_MOVER_HALTED)).body).toEqual({ reason: Halt.CONNECT_CLOSED });
    m.stop();

    // No SET_RECORD_SIZE and no SET_WINDOW: the defaults carry a whole backup.
    const h2 = new Harness(3);
    const d2 = await drive("v3c");
    h2.current = { device: d2, writable: true };
    await h2.mover.listen(Mode.READ, AddrType.LOCAL);
    await write(h2.mover.acceptLocal(), data);
    expect((await h2.post(Message.NOTIFY_MOVER_HALTED)).body).toEqual({ reason: Halt.CONNECT_CLOSED });
    expect(h2.mover.getState()).toMatchObject({ record_num: 5, bytes_moved: BigInt(data.length) });
    await d2.rewind();
    expect((await d2.read(V3_DEFAULT_RECORD_SIZE)).equals(data.subarray(0, V3_DEFAULT_RECORD_SIZE))).toBe(true);
  });

  it("a tape error pauses MEDIA_ERROR (v4 halts); after a new window and CONTINUE on another drive the record is written", async () => {
    const rs = 4 * KiB;
    const ro = await drive("v3ro", "READ");
    const rw = await drive("v3rw");
    h.current = { device: ro, writable: true }; // the host claims it is writable; the drive says no
    const m = h.mover;
    m.setRecordSize(rs);
    await m.listen(Mode.READ, AddrType.LOCAL);
    const end = m.acceptLocal();
    const data = pattern(3 * rs, 9);
    const sending = write(end, data);
    const p = await h.post(Message.NOTIFY_MOVER_PAUSED);
    expect(p.body).toEqual({ reason: Pause.MEDIA_ERROR, seek_position: 0n });
    expect(m.getState()).toMatchObject({ state: State.PAUSED, pause_reason: Pause.MEDIA_ERROR, halt_reason: Halt.NA });
    expect(h.posts.some((x) => x.code === Message.NOTIFY_MOVER_HALTED)).toBe(false);
    h.current = { device: rw, writable: true };
    m.setWindow(0n, ALL1);
    m.continue();
    await sending;
    expect((await h.post(Message.NOTIFY_MOVER_HALTED)).body).toEqual({ reason: Halt.CONNECT_CLOSED });
    await rw.rewind();
    const back = Buffer.concat([await rw.read(rs), await rw.read(rs), await rw.read(rs)]);
    expect(back.equals(data)).toBe(true);
  });
});
