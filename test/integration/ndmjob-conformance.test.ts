/**
 * ndmjob's own conformance tests (-o test-tape, -o test-mover) against the compiled binary with
 * a virtual drive, and, with our client, every tape step ndmjob cannot send (ndmjob.md §8.2: its
 * client cannot encode a zero-length TAPE_WRITE, so test-tape always stops at T-BW #6).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NdmpClient } from "../../src/client/client.ts";
import { setCartridgeWriteProtect } from "../../src/devices/tape/virtual.ts";
import { ALL1, ErrorCode, Message, TapeMtioOp as Op, TapeOpenMode as Mode, TapeStateFlag, TapeStateUnsupported as U } from "../../src/protocol/codes.ts";
import { dma, KiB, mtio, tapeServerConfig, tapeState, until } from "../helpers/dma.ts";
import { havePeers, NDMJOB } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary", "ndmjob");

/** The record of tape file `f`, record `r` (distinct everywhere, so a misplaced record fails). */
function fill(size: number, r: number, f: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = (f * 100_003 + r * 7919 + 1) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** test-tape's T-WRITE series (ndma_ctst_tape.c tt_series): records per file and their size. */
const SERIES: Array<[number, number]> = [
  [1, 512],
  [100, 1024],
  [1, 512],
  [100, 139],
  [1, 512],
  [99, 10240],
  [1, 512],
  [3, 32768],
  [1, 512],
];

const err = (name: keyof typeof ErrorCode) => ({ error: ErrorCode[name] });

function ndmjobTest(port: number, which: "test-tape" | "test-mover", device: string) {
  return run(NDMJOB, ["-o", which, "-T", `127.0.0.1:${port}/4,${USER},${PASSWORD}`, "-f", device, "-v"], { timeoutMs: 50_000 });
}

/** TAPE_OPEN, retried while the drive is still held by a session the server is tearing down. */
async function openWhenFree(c: NdmpClient, device: string, mode: number): Promise<void> {
  let last: unknown;
  await until(
    async () => {
      try {
        await c.request(Message.TAPE_OPEN, { device, mode });
        return true;
      } catch (e) {
        last = e;
        if ((e as { error?: number }).error !== ErrorCode.DEVICE_BUSY_ERR) throw e;
        return false;
      }
    },
    5000,
    `TAPE_OPEN ${device} (last: ${String(last)})`,
  );
}

async function expectPos(c: NdmpClient, fileNum: number, blockNo: number, what: string): Promise<void> {
  const st = await tapeState(c);
  expect({ what, file_num: st.file_num, blockno: st.blockno }).toEqual({ what, file_num: fileNum, blockno: blockNo });
}

/** Runs `fn` on a fresh authenticated session, closed whatever happens (so a failure frees the drive). */
async function session(port: number, fn: (c: NdmpClient) => Promise<void>): Promise<void> {
  const c = await dma(port);
  try {
    await fn(c);
  } finally {
    await c.close();
  }
}

const read = (c: NdmpClient, count: number) => c.request(Message.TAPE_READ, { count }).then((r) => r.body.data_in as Buffer);
const write = (c: NdmpClient, data: Buffer) => c.request(Message.TAPE_WRITE, { data_out: data }).then((r) => r.body.count as number);

describe.runIf(ready)("ndmjob conformance: test-tape, test-mover, and the tape steps ndmjob cannot send", () => {
  let srv: RunningServer;
  beforeAll(async () => {
    srv = await startServer({
      config: tapeServerConfig([
        { name: "vt0", capacity: "64MiB" },
        { name: "vt1", capacity: "64MiB" },
        { name: "vtro", capacity: "4MiB" },
        { name: "vtoff", capacity: "4MiB" },
      ]),
    });
  });
  afterAll(async () => {
    expect(await srv.stop()).toBe(0);
  });

  it("ndmjob -o test-mover passes every step (pass=100)", async () => {
    const r = await ndmjobTest(srv.port, "test-mover", "vt1");
    expect(r.stdout).toContain('TEST "FINAL test-mover Passed -- pass=100 warn=0 fail=0 (total 100)"');
    expect(r.stdout).not.toMatch(/Failed|Almost/);
    expect(r.code).toBe(0);
  });

  it("ndmjob -o test-tape passes T-OC and T-BGS; its only failure is T-BW #6 (its own zero-length write bug)", async () => {
    const r = await ndmjobTest(srv.port, "test-tape", "vt0");
    expect(r.stdout).toContain('TEST "Test T-OC Passed -- pass=8 warn=0 fail=0 (total 8)"');
    expect(r.stdout).toContain('TEST "Test T-BGS Passed -- pass=4 warn=0 fail=0 (total 4)"');
    const failures = r.stdout.split("\n").filter((l) => /-- (Failed|Almost)/.test(l));
    expect(failures).toEqual(['Test "T-BW #6 -- Failed NDMP4_TAPE_OPEN/NDMP9_NO_ERR got NDMP9_NO_ERR (error expected)"']);
    // Steps #1-#5 passed: the run reached #6 and nothing before it failed or warned.
    expect(r.stdout).not.toMatch(/T-BW #[1-5] --/);
    expect(r.code).toBe(1); // ndmjob exits 1 at its first failed step
  });

  it("T-BW remainder: a zero-length TAPE_WRITE is NO_ERR with count 0; write 1024, EOF, REW, CLOSE", async () => {
    await session(srv.port, async (c) => {
      // ndmjob died with vt0 open (RDWR): the server must have released the drive.
      await openWhenFree(c, "vt0", Mode.RDWR);
      expect(await write(c, Buffer.alloc(0))).toBe(0);
      await expectPos(c, 0, 0, "zero-length write moves nothing");
      expect(await write(c, fill(1024, 0, 0))).toBe(1024);
      expect(await mtio(c, Op.EOF, 1)).toBe(0);
      expect(await mtio(c, Op.REW, 1)).toBe(0);
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("T-BR: read length 0, count 0x80000000, read/EOF, oversize and undersize reads", async () => {
    await session(srv.port, async (c) => {
      await expect(c.request(Message.TAPE_READ, { count: 1024 })).rejects.toMatchObject(err("DEV_NOT_OPEN_ERR"));
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.READ });
      expect((await read(c, 0)).length).toBe(0);
      await expect(c.request(Message.TAPE_READ, { count: 0x80000000 })).rejects.toMatchObject(err("ILLEGAL_ARGS_ERR"));
      await expectPos(c, 0, 0, "refused reads move nothing");
      await c.request(Message.TAPE_CLOSE);

      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.RDWR });
      expect(await read(c, 1024)).toEqual(fill(1024, 0, 0));
      await expect(c.request(Message.TAPE_READ, { count: 1024 })).rejects.toMatchObject(err("EOF_ERR"));
      await mtio(c, Op.REW, 1);
      await c.request(Message.TAPE_CLOSE);

      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.READ });
      const big = await read(c, 2048);
      expect(big.length).toBe(1024);
      expect(big).toEqual(fill(1024, 0, 0));
      await expect(c.request(Message.TAPE_READ, { count: 2048 })).rejects.toMatchObject(err("EOF_ERR"));
      await c.request(Message.TAPE_CLOSE);

      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.READ });
      const small = await read(c, 512);
      expect(small).toEqual(fill(1024, 0, 0).subarray(0, 512));
      // The rest of the record is lost (variable-block semantics): the next read meets the filemark.
      await expect(c.request(Message.TAPE_READ, { count: 512 })).rejects.toMatchObject(err("EOF_ERR"));
      await expectPos(c, 0, 1, "after the record, before the filemark");
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("T-BWR: resid of BSR/BSF/FSR/FSF at BOT, filemarks and end of data; EOM on read at EOD; label write and compare", async () => {
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.RDWR });
      await mtio(c, Op.REW, 1);
      expect(await mtio(c, Op.BSR, 100)).toBe(100);
      expect(await mtio(c, Op.BSF, 100)).toBe(100);
      expect(await mtio(c, Op.EOF, 1)).toBe(0); // erases the old tape: it now holds one filemark
      expect(await mtio(c, Op.BSF, 100)).toBe(99);
      expect(await mtio(c, Op.FSF, 100)).toBe(99);
      await expect(c.request(Message.TAPE_READ, { count: 64 * KiB })).rejects.toMatchObject(err("EOM_ERR"));
      await expect(c.request(Message.TAPE_READ, { count: 1024 })).rejects.toMatchObject(err("EOM_ERR"));

      await c.request(Message.TAPE_CLOSE);

      const label = Buffer.alloc(1024);
      for (let i = 0; i < 1024; i++) label[i] = (i - 4) & 0xff;
      for (const pass of [0, 1]) {
        await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.RDWR });
        await mtio(c, Op.REW, 1);
        expect(await write(c, label)).toBe(1024);
        await mtio(c, Op.EOF, 1);
        await c.request(Message.TAPE_CLOSE);
        await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.RDWR });
        await mtio(c, Op.REW, 1);
        expect(await read(c, pass === 1 ? 64 * KiB : 1024)).toEqual(label);
        await expect(c.request(Message.TAPE_READ, { count: 1024 })).rejects.toMatchObject(err("EOF_ERR"));
        await mtio(c, Op.FSF, 1);
        await expect(c.request(Message.TAPE_READ, { count: 1024 })).rejects.toMatchObject(err("EOM_ERR"));
        await c.request(Message.TAPE_CLOSE);
      }
    });
  });

  // KNOWN DISCREPANCY (src/devices/tape/base.ts, not the services): ndmjob's T-BWR writes one
  // 512-byte record at BOT and expects BSR 100 -> resid 99 (back over the record to BOT), FSR 100
  // -> 99, FSR 100 -> 100, FSF 100 -> 100, as ndmjob's simulator and Linux st (which writes a
  // filemark after writing only before REW/OFFL/SEEK/BSF, and then counts BSF one further) do.
  // Our drive writes a filemark before *every* motion after a write (spec digest §2.7 wording),
  // so BSR stops at that mark at once: resid 100. it.fails records that; when the tape layer is
  // changed to ndmjob's rule this test starts "failing" and must become a plain it().
  it.fails("T-BWR: BSR/FSR/FSF right after a 512-byte write at BOT give ndmjob's resids 99, 99, 100, 100", async () => {
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vt1", mode: Mode.RDWR });
      await mtio(c, Op.REW, 1);
      expect(await write(c, Buffer.alloc(512, 7))).toBe(512);
      const resids = [await mtio(c, Op.BSR, 100), await mtio(c, Op.FSR, 100), await mtio(c, Op.FSR, 100), await mtio(c, Op.FSF, 100)];
      await c.request(Message.TAPE_CLOSE);
      expect(resids).toEqual([99, 99, 100, 100]);
    });
  });

  it("T-WRITE / T-READ: nine tape files, position after every record, EOF before the mark, FSF over it", async () => {
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.RDWR });
      for (const [f, [n, size]] of SERIES.entries()) {
        for (let r = 0; r < n; r++) {
          expect(await write(c, fill(size, r, f))).toBe(size);
          await expectPos(c, f, r + 1, `write f${f} r${r}`);
        }
        await mtio(c, Op.EOF, 1);
        await expectPos(c, f + 1, 0, `filemark after f${f}`);
      }
      await mtio(c, Op.REW, 1);
      await c.request(Message.TAPE_CLOSE);

      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.READ });
      for (const [f, [n, size]] of SERIES.entries()) {
        for (let r = 0; r < n; r++) {
          expect(await read(c, size)).toEqual(fill(size, r, f));
          await expectPos(c, f, r + 1, `read f${f} r${r}`);
        }
        await expect(c.request(Message.TAPE_READ, { count: size })).rejects.toMatchObject(err("EOF_ERR"));
        await expectPos(c, f, n, `EOF leaves f${f} before its mark`); // v4: not past the filemark
        expect(await mtio(c, Op.FSF, 1)).toBe(0);
        await expectPos(c, f + 1, 0, `FSF over mark ${f}`);
      }
      await expect(c.request(Message.TAPE_READ, { count: 512 })).rejects.toMatchObject(err("EOM_ERR"));
      await mtio(c, Op.REW, 1);
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("T-MTIO: REW, FSF n, FSR 1000000 (resid = count - records), BSR 1000000, FSR 0, FSR n/2 + read, BSR 2 + read", async () => {
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: Mode.READ });
      for (const [f, [n, size]] of SERIES.entries()) {
        expect(await mtio(c, Op.REW, 1)).toBe(0);
        await expectPos(c, 0, 0, "rew");
        expect(await mtio(c, Op.FSF, f)).toBe(0);
        await expectPos(c, f, 0, `fsf ${f}`);
        expect(await mtio(c, Op.FSR, 1_000_000)).toBe(1_000_000 - n);
        await expectPos(c, f, n, "fsr(1m) stops on the BOT side of the mark");
        expect(await mtio(c, Op.BSR, 1_000_000)).toBe(1_000_000 - n);
        await expectPos(c, f, 0, "bsr(1m) stops on the EOT side of the previous mark");
        expect(await mtio(c, Op.FSR, 0)).toBe(0);
        await expectPos(c, f, 0, "fsr(0)");
        const half = Math.floor(n / 2);
        expect(await mtio(c, Op.FSR, half)).toBe(0);
        await expectPos(c, f, half, "fsr(n/2)");
        expect(await read(c, size)).toEqual(fill(size, half, f));
        if (half + 1 > 1) {
          expect(await mtio(c, Op.BSR, 2)).toBe(0);
          await expectPos(c, f, half - 1, "bsr(2)");
          expect(await read(c, size)).toEqual(fill(size, half - 1, f));
        }
      }
      await c.request(Message.TAPE_CLOSE);
    });
  });

  it("TAPE_OPEN errors: unknown device, bad mode, write-protected RDWR, WRITE/EOF on a READ open, double open", async () => {
    await session(srv.port, async (c) => {
      await expect(c.request(Message.TAPE_CLOSE)).rejects.toMatchObject(err("DEV_NOT_OPEN_ERR"));
      await expect(c.request(Message.TAPE_GET_STATE)).rejects.toMatchObject(err("DEV_NOT_OPEN_ERR"));
      await expect(c.request(Message.TAPE_MTIO, { tape_op: Op.REW, count: 1 })).rejects.toMatchObject(err("DEV_NOT_OPEN_ERR"));
      await expect(c.request(Message.TAPE_OPEN, { device: "bogus", mode: Mode.READ })).rejects.toMatchObject(err("NO_DEVICE_ERR"));
      await expect(c.request(Message.TAPE_OPEN, { device: "vt0", mode: 123 })).rejects.toMatchObject(err("ILLEGAL_ARGS_ERR"));
      // A drive can also be named by its path (what some DMAs send).
      await c.request(Message.TAPE_OPEN, { device: `${srv.dir}/vt0.tape`, mode: Mode.READ });
      await expect(c.request(Message.TAPE_OPEN, { device: "vt1", mode: Mode.READ })).rejects.toMatchObject(err("DEVICE_OPENED_ERR"));
      await expect(c.request(Message.TAPE_WRITE, { data_out: Buffer.alloc(1024) })).rejects.toMatchObject(err("PERMISSION_ERR"));
      await expect(c.request(Message.TAPE_MTIO, { tape_op: Op.EOF, count: 1 })).rejects.toMatchObject(err("PERMISSION_ERR"));
      await expect(c.request(Message.TAPE_MTIO, { tape_op: 99, count: 1 })).rejects.toMatchObject(err("ILLEGAL_ARGS_ERR"));
      await c.request(Message.TAPE_CLOSE);

      setCartridgeWriteProtect(`${srv.dir}/vtro.tape`, true); // not mounted: the drive is closed
      await expect(c.request(Message.TAPE_OPEN, { device: "vtro", mode: Mode.RDWR })).rejects.toMatchObject(err("WRITE_PROTECT_ERR"));
      await c.request(Message.TAPE_OPEN, { device: "vtro", mode: Mode.READ });
      const st = await tapeState(c);
      expect(st.flags & TapeStateFlag.WR_PROT).toBe(TapeStateFlag.WR_PROT);
      await c.request(Message.TAPE_CLOSE);
      // A refused open leaves the drive free (also for another session).
      const other = await dma(srv.port);
      await other.request(Message.TAPE_OPEN, { device: "vtro", mode: Mode.RAW });
      await other.request(Message.TAPE_CLOSE);
      await other.close();
    });
  });

  it("TAPE_GET_STATE: every field of a loaded virtual tape, and the unsupported bits once it is unloaded", async () => {
    await session(srv.port, async (c) => {
      await c.request(Message.TAPE_OPEN, { device: "vtoff", mode: Mode.RDWR });
      const blank = await tapeState(c);
      expect(blank).toMatchObject({ unsupported: 0, flags: 0, file_num: 0, soft_errors: 0, block_size: 0, blockno: 0 });
      expect(blank.total_space).toBe(4n * 1024n * 1024n);
      expect(blank.space_remain).toBe(blank.total_space);
      await write(c, Buffer.alloc(1000));
      await write(c, Buffer.alloc(1000));
      const two = await tapeState(c);
      expect(two).toMatchObject({ unsupported: 0, file_num: 0, blockno: 2 });
      expect(two.space_remain).toBe(two.total_space - 2n * (1000n + 64n)); // 64 bytes of overhead per record
      await mtio(c, Op.EOF, 1);
      expect(await tapeState(c)).toMatchObject({ file_num: 1, blockno: 0 });
      expect(await mtio(c, Op.OFF, 1)).toBe(0);
      const off = await tapeState(c);
      const all = U.FILE_NUM | U.SOFT_ERRORS | U.BLOCK_SIZE | U.BLOCKNO | U.TOTAL_SPACE | U.SPACE_REMAIN;
      expect(off.unsupported).toBe(all);
      expect(off).toMatchObject({ file_num: 0xffffffff, soft_errors: 0xffffffff, block_size: 0xffffffff, blockno: 0xffffffff });
      expect(off.total_space).toBe(ALL1);
      expect(off.space_remain).toBe(ALL1);
      await expect(c.request(Message.TAPE_MTIO, { tape_op: Op.TUR, count: 0 })).rejects.toMatchObject(err("NO_TAPE_LOADED_ERR"));
      await c.request(Message.TAPE_CLOSE);
      await expect(c.request(Message.TAPE_OPEN, { device: "vtoff", mode: Mode.READ })).rejects.toMatchObject(err("NO_TAPE_LOADED_ERR"));
      await c.request(Message.TAPE_OPEN, { device: "vtoff", mode: Mode.RAW }); // RAW opens an empty drive
      await c.request(Message.TAPE_CLOSE);
    });
  });
});
