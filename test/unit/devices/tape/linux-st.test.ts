import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { LinuxStTape, nodeStIo, type StIo } from "../../../../src/devices/tape/linux-st.ts";
import { GMT, MTGET_SIZE, MTIOCGET, MTIOCTOP, MTOp } from "../../../../src/devices/tape/mtio.ts";
import { ERRNO, NativeError } from "../../../../src/native/errno.ts";
import type { IoctlApi } from "../../../../src/native/types.ts";
import { expectTapeError, makeTempDir } from "./helpers.ts";

const FILEMARK = Symbol("filemark");
type Item = Buffer | typeof FILEMARK;

/**
 * A small model of the Linux st driver in variable-block mode, with the habits LinuxStTape must
 * correct: reads and record spacing go *past* a filemark, errors come back as EIO with mt_resid.
 */
class FakeSt {
  items: Item[] = [];
  pos = 0;
  online = true;
  writeProtected = false;
  ops: string[] = [];
  private resid = 0;
  private eofHit = false;
  private readsAtEod = 0;

  readonly ioctl: IoctlApi = {
    ioctl: (_fd, request, arg) => {
      const view = Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength);
      if (request === MTIOCGET) {
        this.fillStatus(view);
        return 0;
      }
      if (request !== MTIOCTOP) throw new NativeError("ioctl", ERRNO.ENOTTY);
      const op = view.readInt16LE(0);
      const count = view.readInt32LE(4);
      this.ops.push(`${opName(op)} ${count}`);
      this.mtop(op, count);
      return 0;
    },
  };

  readonly io: StIo = {
    open: async () => 3,
    close: async () => undefined,
    read: async (_fd, buf) => {
      this.eofHit = false;
      if (this.pos >= this.items.length) {
        if (this.readsAtEod++ > 0) throw Object.assign(new Error("EIO"), { code: "EIO" });
        return 0;
      }
      const item = this.items[this.pos++]!;
      if (item === FILEMARK) {
        this.eofHit = true;
        return 0;
      }
      if (item.length > buf.length) throw Object.assign(new Error("ENOMEM"), { code: "ENOMEM" });
      item.copy(buf);
      return item.length;
    },
    write: async (_fd, data) => {
      if (this.writeProtected) throw Object.assign(new Error("EACCES"), { code: "EACCES" });
      this.items.length = this.pos;
      this.items.push(Buffer.from(data));
      this.pos++;
      return data.length;
    },
  };

  fileNo(): number {
    return this.items.slice(0, this.pos).filter((item) => item === FILEMARK).length;
  }

  private mtop(op: number, count: number): void {
    this.resid = 0;
    this.readsAtEod = 0;
    this.eofHit = false;
    switch (op) {
      case MTOp.SETBLK:
      case MTOp.NOP:
        return;
      case MTOp.REW:
        this.pos = 0;
        return;
      case MTOp.OFFL:
        this.pos = 0;
        this.online = false;
        return;
      case MTOp.WEOF:
        this.items.length = this.pos;
        for (let i = 0; i < count; i++) this.items.push(FILEMARK);
        this.pos += count;
        return;
      case MTOp.FSF:
        for (let left = count; left > 0; left--) {
          while (this.pos < this.items.length && this.items[this.pos] !== FILEMARK) this.pos++;
          if (this.pos >= this.items.length) return this.fail(left);
          this.pos++;
        }
        return;
      case MTOp.BSF:
        for (let left = count; left > 0; left--) {
          while (this.pos > 0 && this.items[this.pos - 1] !== FILEMARK) this.pos--;
          if (this.pos === 0) return this.fail(left);
          this.pos--;
        }
        return;
      case MTOp.FSR:
        for (let left = count; left > 0; left--) {
          if (this.pos >= this.items.length) return this.fail(left);
          if (this.items[this.pos++] === FILEMARK) return this.fail(left); // crossed it, like st
        }
        return;
      case MTOp.BSR:
        for (let left = count; left > 0; left--) {
          if (this.pos === 0) return this.fail(left);
          if (this.items[--this.pos] === FILEMARK) return this.fail(left);
        }
        return;
      default:
        throw new NativeError("ioctl", ERRNO.EINVAL);
    }
  }

  private fail(resid: number): never {
    this.resid = resid;
    throw new NativeError("ioctl", ERRNO.EIO);
  }

  private fillStatus(view: Buffer): void {
    let gstat = 0;
    if (this.pos === 0) gstat += GMT.BOT;
    if (this.pos >= this.items.length) gstat += GMT.EOD;
    if (this.eofHit) gstat += GMT.EOF;
    if (this.online) gstat += GMT.ONLINE;
    if (this.writeProtected) gstat += GMT.WR_PROT;
    view.fill(0);
    view.writeBigInt64LE(0x72n, 0);
    view.writeBigInt64LE(BigInt(this.resid), 8);
    view.writeBigInt64LE(BigInt(gstat), 24);
    view.writeInt32LE(this.fileNo(), 40);
    view.writeInt32LE(-1, 44);
  }
}

function opName(op: number): string {
  return Object.entries(MTOp).find(([, value]) => value === op)?.[0] ?? String(op);
}

function fakeDrive(): { st: FakeSt; drive: LinuxStTape } {
  const st = new FakeSt();
  return { st, drive: new LinuxStTape({ path: "/dev/nst-fake", ioctl: st.ioctl, io: st.io, readBufferSize: 64 }) };
}

describe("LinuxStTape without a drive", () => {
  it("under Node (no bun:ffi) opening fails with a clear NOT_SUPPORTED error", async () => {
    const drive = new LinuxStTape({ path: "/dev/nst0" });
    const error = await expectTapeError(drive.open("READ"), "NOT_SUPPORTED");
    expect(error.message).toContain("st drives need the compiled ndmpd binary (bun:ffi)");
    expect(drive.openMode).toBeNull();
  });

  it("a missing device node gives NO_DEVICE", async () => {
    const noIoctl: IoctlApi = { ioctl: () => { throw new NativeError("ioctl", ERRNO.ENOTTY); } };
    const drive = new LinuxStTape({ path: "/dev/nst-does-not-exist", ioctl: noIoctl });
    await expectTapeError(drive.open("RDWR"), "NO_DEVICE");
  });

  it("a path that is not a tape (ioctl ENOTTY) gives NO_DEVICE and is closed again", async () => {
    const { dir, cleanup } = makeTempDir("ndmpd-st-");
    try {
      const file = path.join(dir, "not-a-tape");
      fs.writeFileSync(file, "x");
      let closed = 0;
      const io: StIo = { ...nodeStIo, close: async (fd) => { closed++; await nodeStIo.close(fd); } };
      const noIoctl: IoctlApi = { ioctl: () => { throw new NativeError("ioctl", ERRNO.ENOTTY); } };
      const drive = new LinuxStTape({ path: file, ioctl: noIoctl, io });
      await expectTapeError(drive.open("RAW"), "NO_DEVICE");
      expect(closed).toBe(1);
    } finally {
      cleanup();
    }
  });
});

describe("LinuxStTape over a model st driver", () => {
  it("sets variable-block mode at open and maps a write-protected tape", async () => {
    const { st, drive } = fakeDrive();
    st.writeProtected = true;
    await expectTapeError(drive.open("RDWR"), "WRITE_PROTECT");
    expect(st.ops).toEqual(["SETBLK 0"]);
    await drive.open("RAW");
    await expectTapeError(drive.write(Buffer.from("x")), "WRITE_PROTECT");
    await drive.close();
    st.online = false;
    await expectTapeError(drive.open("READ"), "NO_TAPE_LOADED");
  });

  it("reads stop before a filemark (EOF), then EOM at end of data", async () => {
    const { st, drive } = fakeDrive();
    await drive.open("RDWR");
    await drive.write(Buffer.from("a"));
    await drive.write(Buffer.alloc(100, 7)); // longer than the 64-byte read buffer
    await drive.writeFilemarks(1);
    await drive.write(Buffer.from("b"));
    await drive.rewind(); // adds the filemark after "b"
    expect(st.ops).toContain("WEOF 1");
    expect((await drive.read(10)).toString()).toBe("a");
    const long = await drive.read(100);
    expect(long.length).toBe(100);
    await expectTapeError(drive.read(10), "EOF");
    expect(st.pos).toBe(2); // stepped back: before the filemark
    await expectTapeError(drive.read(10), "EOF");
    expect(await drive.fsf(1)).toBe(0);
    expect((await drive.read(10)).toString()).toBe("b");
    await expectTapeError(drive.read(10), "EOF");
    await drive.fsf(1);
    await expectTapeError(drive.read(10), "EOM");
    await expectTapeError(drive.read(10), "EOM"); // st's EIO past EOD is still EOM
    await drive.close();
  });

  it("spacing returns resid and FSR/BSR do not cross filemarks", async () => {
    const { st, drive } = fakeDrive();
    await drive.open("RDWR");
    for (const name of ["a1", "a2", "a3"]) await drive.write(Buffer.from(name));
    await drive.writeFilemarks(1);
    await drive.write(Buffer.from("b1"));
    await drive.writeFilemarks(1);
    await drive.rewind();
    expect(await drive.bsr(100)).toBe(100);
    expect(await drive.fsr(10)).toBe(7);
    expect(st.pos).toBe(3); // before the filemark
    expect(await drive.fsf(1)).toBe(0);
    expect(await drive.bsr(10)).toBe(10);
    expect(st.pos).toBe(4); // after the filemark
    expect(await drive.bsf(100)).toBe(99);
    expect(st.pos).toBe(0);
    expect(await drive.fsf(5)).toBe(3);
    const state = await drive.getState();
    expect(state).toMatchObject({ fileNum: 2, blockNo: undefined, blockSize: 0, atEOD: true, loaded: true, noRewind: true });
    await drive.close();
  });

  it("close after a write writes one filemark; unload takes the drive offline", async () => {
    const { st, drive } = fakeDrive();
    await drive.open("RDWR");
    await drive.write(Buffer.from("x"));
    await drive.close();
    expect(st.items.at(-1)).toBe(FILEMARK);
    expect(st.ops.filter((op) => op.startsWith("WEOF"))).toEqual(["WEOF 1"]);
    await drive.open("READ");
    await drive.unload();
    await expectTapeError(drive.testUnitReady(), "NO_TAPE_LOADED");
    await drive.close();
  });

  it("is consistent with MTIOCGET's size", () => {
    expect(MTGET_SIZE).toBe(48);
  });
});
