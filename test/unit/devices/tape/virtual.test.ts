import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  MAX_RECORD_SIZE,
  VirtualTapeDrive,
  createCartridge,
  readCartridgeInfo,
  setCartridgeWriteProtect,
} from "../../../../src/devices/tape/virtual.ts";
import { DATA_START, ENTRY_OVERHEAD } from "../../../../src/devices/tape/virtual-format.ts";
import { expectTapeError, makeTempDir, pattern } from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

let dir: string;
let cleanup: () => void;
let cartridge: string;

beforeEach(async () => {
  ({ dir, cleanup } = makeTempDir("ndmpd-vtape-"));
  cartridge = path.join(dir, "tape0.vtape");
  await createCartridge(cartridge, { capacity: 256 * MiB });
});

afterEach(() => cleanup());

async function openDrive(mode: "READ" | "RDWR" | "RAW", file = cartridge): Promise<VirtualTapeDrive> {
  const drive = new VirtualTapeDrive({ cartridge: file });
  await drive.open(mode);
  return drive;
}

/** Reads records until a filemark; returns them. */
async function readFile(drive: VirtualTapeDrive, maxLen = MAX_RECORD_SIZE): Promise<Buffer[]> {
  const records: Buffer[] = [];
  for (;;) {
    try {
      records.push(await drive.read(maxLen));
    } catch (error) {
      if ((error as { code?: string }).code === "EOF") return records;
      throw error;
    }
  }
}

describe("records and filemarks", () => {
  it("keeps mixed record sizes (1 B .. 1 MiB) and filemarks exactly", async () => {
    const sizes = [1, 2, 511, 512, 4096, 65535, 65536, 65537, 262144, 1 * MiB, 3, 1 * MiB - 1];
    const files = [sizes, [7], [], sizes.slice().reverse()];
    const drive = await openDrive("RDWR");
    let seed = 0;
    for (const file of files) {
      for (const size of file) expect(await drive.write(pattern(size, ++seed))).toBe(size);
      await drive.writeFilemarks(1);
    }
    await drive.rewind();
    seed = 0;
    for (const [index, file] of files.entries()) {
      const records = await readFile(drive);
      expect(records.map((r) => r.length)).toEqual(file);
      for (const record of records) expect(record.equals(pattern(record.length, ++seed))).toBe(true);
      const state = await drive.getState();
      expect(state.fileNum).toBe(index); // still before the filemark
      expect(state.blockNo).toBe(file.length);
      expect(await drive.fsf(1)).toBe(0);
    }
    await expectTapeError(drive.read(100), "EOM");
    await drive.close();
  });

  it("a read at a filemark gives EOF, stays before it, and needs FSF to go on", async () => {
    const drive = await openDrive("RDWR");
    await drive.write(Buffer.from("a"));
    await drive.writeFilemarks(1);
    await drive.write(Buffer.from("b"));
    await drive.rewind();
    expect((await drive.read(10)).toString()).toBe("a");
    await expectTapeError(drive.read(10), "EOF");
    await expectTapeError(drive.read(10), "EOF"); // did not move
    expect(await drive.getState()).toMatchObject({ fileNum: 0, blockNo: 1 });
    expect(await drive.fsf(1)).toBe(0);
    expect(await drive.getState()).toMatchObject({ fileNum: 1, blockNo: 0 });
    expect((await drive.read(10)).toString()).toBe("b");
    await expectTapeError(drive.read(10), "EOF"); // the rewind after writing "b" added a filemark
    await drive.fsf(1);
    await expectTapeError(drive.read(10), "EOM");
    await drive.close();
  });

  it("a blank tape reads EOM", async () => {
    const drive = await openDrive("READ");
    await expectTapeError(drive.read(10), "EOM");
    expect(await drive.getState()).toMatchObject({ atBOT: true, atEOD: true, fileNum: 0, blockNo: 0 });
    await drive.close();
  });

  it("a short read returns the first bytes and skips the rest of the record", async () => {
    const drive = await openDrive("RDWR");
    await drive.write(pattern(1000, 1));
    await drive.write(pattern(10, 2));
    await drive.rewind();
    const head = await drive.read(100);
    expect(head.equals(pattern(1000, 1).subarray(0, 100))).toBe(true);
    expect((await drive.read(100)).equals(pattern(10, 2))).toBe(true);
    expect(await drive.getState()).toMatchObject({ blockNo: 2 });
    await drive.close();
  });

  it("length 0 reads and writes do nothing; records over the limit are refused", async () => {
    const drive = await openDrive("RDWR");
    expect(await drive.write(Buffer.alloc(0))).toBe(0);
    expect((await drive.read(0)).length).toBe(0);
    expect(await drive.getState()).toMatchObject({ atBOT: true, blockNo: 0 });
    await expectTapeError(drive.write(Buffer.alloc(MAX_RECORD_SIZE + 1)), "ILLEGAL_ARGS");
    expect(await drive.write(Buffer.alloc(MAX_RECORD_SIZE))).toBe(MAX_RECORD_SIZE);
    await expectTapeError(drive.fsf(-1), "ILLEGAL_ARGS");
    await drive.close();
  });
});

describe("spacing and resid", () => {
  /** file 0: 3 records, FM, file 1: 2 records, FM, file 2: 1 record, FM (added by the rewind). */
  async function layout(drive: VirtualTapeDrive): Promise<void> {
    for (let i = 0; i < 3; i++) await drive.write(pattern(100 + i, i));
    await drive.writeFilemarks(1);
    for (let i = 0; i < 2; i++) await drive.write(pattern(200 + i, 10 + i));
    await drive.writeFilemarks(1);
    await drive.write(pattern(300, 20));
    await drive.rewind();
  }

  it("BSR at BOT returns the whole count", async () => {
    const drive = await openDrive("RDWR");
    await layout(drive);
    expect(await drive.bsr(100)).toBe(100);
    expect(await drive.bsf(3)).toBe(3);
    expect(await drive.getState()).toMatchObject({ atBOT: true, fileNum: 0, blockNo: 0 });
    await drive.close();
  });

  it("FSR stops before a filemark, BSR stops after one", async () => {
    const drive = await openDrive("RDWR");
    await layout(drive);
    expect(await drive.fsr(2)).toBe(0);
    expect(await drive.getState()).toMatchObject({ fileNum: 0, blockNo: 2 });
    expect(await drive.fsr(5)).toBe(4); // one record left before the filemark
    await expectTapeError(drive.read(1000), "EOF");
    expect(await drive.fsf(1)).toBe(0);
    expect(await drive.bsr(5)).toBe(5); // the filemark is right behind us
    expect(await drive.fsr(1)).toBe(0);
    expect(await drive.bsr(5)).toBe(4);
    expect(await drive.getState()).toMatchObject({ fileNum: 1, blockNo: 0 });
    expect((await drive.read(1000)).equals(pattern(200, 10))).toBe(true);
    await drive.close();
  });

  it("BSF ends on the BOT side of the filemark; resid counts the filemarks not crossed", async () => {
    const drive = await openDrive("RDWR");
    await layout(drive);
    expect(await drive.fsf(1)).toBe(0);
    expect(await drive.bsf(100)).toBe(99); // crossed the one filemark, then hit BOT
    expect(await drive.getState()).toMatchObject({ atBOT: true });

    expect(await drive.fsf(2)).toBe(0);
    expect(await drive.getState()).toMatchObject({ fileNum: 2, blockNo: 0 });
    expect(await drive.bsf(1)).toBe(0);
    // Before the second filemark: at the end of file 1, which holds 2 records.
    expect(await drive.getState()).toMatchObject({ fileNum: 1, blockNo: 2 });
    await expectTapeError(drive.read(1000), "EOF");
    expect(await drive.bsr(1)).toBe(0);
    expect((await drive.read(1000)).equals(pattern(201, 11))).toBe(true);
    await drive.close();
  });

  it("FSF past the last filemark stops at end of data with a resid", async () => {
    const drive = await openDrive("RDWR");
    await layout(drive);
    expect(await drive.fsf(5)).toBe(2);
    expect(await drive.getState()).toMatchObject({ fileNum: 3, blockNo: 0, atEOD: true });
    await expectTapeError(drive.read(1000), "EOM");
    expect(await drive.fsr(1)).toBe(1);
    await drive.close();
  });
});

describe("end of medium", () => {
  const record = 1000;
  const entry = record + ENTRY_OVERHEAD;

  it("the write crossing LEOM succeeds, the next fails with EOM once; the physical end refuses with IO", async () => {
    const small = path.join(dir, "small.vtape");
    // LEOM after 5.5 entries, physical end after 8 entries and a bit.
    await createCartridge(small, { capacity: 8 * entry + 100, earlyWarning: 2.5 * entry + 100 });
    const drive = await openDrive("RDWR", small);
    for (let i = 0; i < 6; i++) expect(await drive.write(pattern(record, i))).toBe(record); // 6th crosses LEOM
    expect(await drive.getState()).toMatchObject({ pastLEOM: true });
    await expectTapeError(drive.write(pattern(record, 6)), "EOM");
    // After the one EOM, the DMA may go on (labels, or finish the record) up to the physical end.
    expect(await drive.write(pattern(record, 6))).toBe(record);
    expect(await drive.write(pattern(record, 7))).toBe(record);
    // 8 entries + 100 B left: no room. IO (not EOM, which is the early warning), every time.
    await expectTapeError(drive.write(pattern(record, 8)), "IO");
    await expectTapeError(drive.write(pattern(record, 8)), "IO");
    const state = await drive.getState();
    expect(state.spaceRemain).toBe(100);
    // A filemark (64 bytes) still fits; the second does not.
    const error = await expectTapeError(drive.writeFilemarks(2), "IO");
    expect(error.resid).toBe(1);
    await drive.rewind();
    for (let i = 0; i < 8; i++) expect((await drive.read(record)).equals(pattern(record, i))).toBe(true);
    await expectTapeError(drive.read(record), "EOF");
    await drive.close();
  });
});

describe("write protection and permissions", () => {
  it("a write-protected cartridge refuses RDWR, opens READ, and refuses writes after RAW", async () => {
    setCartridgeWriteProtect(cartridge, true);
    expect(readCartridgeInfo(cartridge).writeProtected).toBe(true);
    const drive = new VirtualTapeDrive({ cartridge });
    await expectTapeError(drive.open("RDWR"), "WRITE_PROTECT");
    expect(drive.openMode).toBeNull();
    await drive.open("READ");
    expect(await drive.getState()).toMatchObject({ writeProtected: true });
    await drive.close();
    await drive.open("RAW");
    await expectTapeError(drive.write(Buffer.from("x")), "WRITE_PROTECT");
    await drive.close();
    setCartridgeWriteProtect(cartridge, false);
    await drive.open("RDWR");
    await drive.close();
  });

  it("a file without write permission is write-protected", async () => {
    fs.chmodSync(cartridge, 0o444);
    const drive = new VirtualTapeDrive({ cartridge });
    await expectTapeError(drive.open("RDWR"), "WRITE_PROTECT");
    await drive.open("READ");
    expect(await drive.getState()).toMatchObject({ writeProtected: true });
    await drive.close();
  });

  it("writes and filemarks on a READ open fail with PERMISSION", async () => {
    const drive = await openDrive("READ");
    await expectTapeError(drive.write(Buffer.from("x")), "PERMISSION");
    await expectTapeError(drive.writeFilemarks(1), "PERMISSION");
    await drive.close();
  });

  it("operations need an open drive, and a second open is BUSY", async () => {
    const drive = new VirtualTapeDrive({ cartridge });
    await expectTapeError(drive.read(10), "NOT_OPEN");
    await expectTapeError(drive.close(), "NOT_OPEN");
    await drive.open("READ");
    await expectTapeError(drive.open("READ"), "BUSY");
    await drive.close();
  });
});

describe("filemark after writes, truncation, persistence", () => {
  it("close after a write adds a filemark; close after a filemark does not", async () => {
    let drive = await openDrive("RDWR");
    await drive.write(Buffer.from("one"));
    await drive.write(Buffer.from("two"));
    await drive.close();
    drive = await openDrive("RDWR");
    expect(await drive.fsf(1)).toBe(0);
    await drive.write(Buffer.from("three"));
    await drive.writeFilemarks(1);
    await drive.close();

    drive = await openDrive("READ");
    expect((await readFile(drive)).map(String)).toEqual(["one", "two"]);
    await drive.fsf(1);
    expect((await readFile(drive)).map(String)).toEqual(["three"]);
    await drive.fsf(1);
    await expectTapeError(drive.read(10), "EOM"); // exactly one filemark after "three"
    await drive.close();
  });

  it("motion after a write (rewind) adds a filemark too", async () => {
    const drive = await openDrive("RDWR");
    await drive.write(Buffer.from("x"));
    await drive.rewind();
    expect(await drive.fsf(1)).toBe(0);
    expect(await drive.getState()).toMatchObject({ fileNum: 1, atEOD: true });
    await drive.close();
  });

  it("writing in the middle erases everything after it", async () => {
    let drive = await openDrive("RDWR");
    for (const name of ["a1", "a2", "a3"]) await drive.write(Buffer.from(name));
    await drive.writeFilemarks(1);
    for (const name of ["b1", "b2"]) await drive.write(Buffer.from(name));
    await drive.close();
    const before = fs.statSync(cartridge).size;

    drive = await openDrive("RDWR");
    expect(await drive.fsr(1)).toBe(0);
    await drive.write(Buffer.from("X"));
    await drive.close();
    expect(fs.statSync(cartridge).size).toBeLessThan(before);
    expect(fs.statSync(cartridge).size).toBe(DATA_START + 2 * ENTRY_OVERHEAD + 3 + ENTRY_OVERHEAD);

    drive = await openDrive("READ");
    expect((await readFile(drive)).map(String)).toEqual(["a1", "X"]);
    expect(await drive.fsf(1)).toBe(0);
    await expectTapeError(drive.read(10), "EOM");
    await drive.close();
  });

  it("data survives close and open; the drive rewinds at open unless it is no-rewind", async () => {
    let drive = await openDrive("RDWR");
    await drive.write(Buffer.from("first"));
    await drive.writeFilemarks(1);
    await drive.write(Buffer.from("second"));
    await drive.close();

    await drive.open("READ");
    expect(await drive.getState()).toMatchObject({ atBOT: true, fileNum: 0 });
    await drive.fsf(1);
    await drive.close();
    await drive.open("READ");
    expect((await drive.read(10)).toString()).toBe("first");
    await drive.close();

    drive = new VirtualTapeDrive({ cartridge, noRewind: true });
    await drive.open("READ");
    await drive.fsf(1);
    await drive.close();
    await drive.open("READ");
    expect(await drive.getState()).toMatchObject({ fileNum: 1, blockNo: 0, noRewind: true });
    expect((await drive.read(10)).toString()).toBe("second");
    await drive.close();
  });
});

describe("crash safety", () => {
  /** A tape: "r1", "r2", FM, then `last` (written, never closed). Returns the two file sizes. */
  async function tapeWithLastRecord(last: Buffer): Promise<{ complete: number; full: number }> {
    const drive = await openDrive("RDWR");
    await drive.write(Buffer.from("r1"));
    await drive.write(Buffer.from("r2"));
    await drive.writeFilemarks(1);
    const complete = fs.statSync(cartridge).size;
    await drive.write(last);
    const full = fs.statSync(cartridge).size;
    await drive.writeFilemarks(1);
    await drive.close();
    fs.truncateSync(cartridge, full); // as if the crash came before the final filemark
    return { complete, full };
  }

  async function expectIntactBeforeLast(file: string): Promise<void> {
    const drive = await openDrive("READ", file);
    expect((await readFile(drive)).map(String)).toEqual(["r1", "r2"]);
    expect(await drive.fsf(1)).toBe(0);
    await expectTapeError(drive.read(MAX_RECORD_SIZE), "EOM");
    await drive.close();
  }

  it("a record torn at any byte leaves a tape that reads up to the last complete record", async () => {
    const last = pattern(300, 99);
    const { complete, full } = await tapeWithLastRecord(last);
    const torn = path.join(dir, "torn.vtape");
    for (let cut = complete; cut < full; cut++) {
      fs.copyFileSync(cartridge, torn);
      fs.truncateSync(torn, cut);
      await expectIntactBeforeLast(torn);
    }
    // And uncut, the last record is there.
    const drive = await openDrive("READ");
    await drive.fsf(1);
    expect((await drive.read(1000)).equals(last)).toBe(true);
    await drive.close();
  });

  it("a torn 1 MiB record (header, payload, trailer cuts) is ignored, and the next write replaces it", async () => {
    const { complete, full } = await tapeWithLastRecord(pattern(MiB, 5));
    const torn = path.join(dir, "torn.vtape");
    const cuts = [complete + 1, complete + 31, complete + 32, complete + 33, complete + MiB / 2, full - 33, full - 32, full - 1];
    for (const cut of cuts) {
      fs.copyFileSync(cartridge, torn);
      fs.truncateSync(torn, cut);
      await expectIntactBeforeLast(torn);
    }
    const drive = await openDrive("RDWR", torn);
    expect(await drive.fsf(1)).toBe(0);
    await drive.write(Buffer.from("after crash"));
    await drive.close();
    expect(fs.statSync(torn).size).toBe(complete + 2 * ENTRY_OVERHEAD + "after crash".length);
    const reader = await openDrive("READ", torn);
    await reader.fsf(1);
    expect((await reader.read(100)).toString()).toBe("after crash");
    await reader.close();
  });

  it("a torn first record leaves a blank tape", async () => {
    const drive = await openDrive("RDWR");
    await drive.write(pattern(5000, 1));
    await drive.close();
    fs.truncateSync(cartridge, DATA_START + 2000);
    expect(readCartridgeInfo(cartridge).used).toBe(0);
    const reader = await openDrive("READ");
    await expectTapeError(reader.read(10), "EOM");
    await reader.close();
  });

  it("a damaged header makes the cartridge unusable with IO, not a crash", async () => {
    const fd = fs.openSync(cartridge, "r+");
    fs.writeSync(fd, Buffer.from("X"), 0, 1, 20);
    fs.closeSync(fd);
    await expectTapeError(new VirtualTapeDrive({ cartridge }).open("READ"), "IO");
  });
});

describe("cartridge loading (for the changer)", () => {
  it("an empty drive: READ/RDWR give NO_TAPE_LOADED, RAW opens; load makes it ready", async () => {
    const drive = new VirtualTapeDrive({ name: "drive0" });
    await expectTapeError(drive.open("READ"), "NO_TAPE_LOADED");
    await expectTapeError(drive.open("RDWR"), "NO_TAPE_LOADED");
    await drive.open("RAW");
    await expectTapeError(drive.testUnitReady(), "NO_TAPE_LOADED");
    await expectTapeError(drive.read(10), "NO_TAPE_LOADED");
    expect(await drive.getState()).toMatchObject({ loaded: false });

    await drive.loadCartridge(cartridge);
    await drive.testUnitReady();
    await drive.write(Buffer.from("hello"));
    await drive.rewind();
    expect((await drive.read(10)).toString()).toBe("hello");

    await drive.unload(); // MTIO OFF: ejected, still in the drive
    await expectTapeError(drive.testUnitReady(), "NO_TAPE_LOADED");
    expect(drive.cartridgePath).toBe(cartridge);
    await expectTapeError(drive.loadCartridge(cartridge), "BUSY");
    expect(await drive.unloadCartridge()).toBe(cartridge);
    expect(drive.cartridgePath).toBeNull();
    await drive.close();
  });

  it("refuses to load a missing or foreign file", async () => {
    const drive = new VirtualTapeDrive();
    await expectTapeError(drive.loadCartridge(path.join(dir, "missing")), "NO_TAPE_LOADED");
    const foreign = path.join(dir, "foreign");
    fs.writeFileSync(foreign, Buffer.alloc(100, 1));
    await expectTapeError(drive.loadCartridge(foreign), "IO");
  });
});

// How fast is test/bench's business (timing floors fail on a busy machine): this checks the bytes.
describe("large transfers", () => {
  it("streams 64 MiB in 256 KiB records and reads the same records back", async () => {
    const recordSize = 256 * KiB;
    const records = 256;
    const data = pattern(recordSize, 1);
    const drive = await openDrive("RDWR");
    for (let i = 0; i < records; i++) await drive.write(data);
    await drive.writeFilemarks(1); // includes the fdatasync
    await drive.rewind();
    let bytes = 0;
    let same = 0;
    for (let i = 0; i < records; i++) {
      const r = await drive.read(recordSize);
      bytes += r.length;
      if (r.equals(data)) same++;
    }
    await drive.close();
    expect(bytes).toBe(records * recordSize);
    expect(same).toBe(records);
  });

  it("a read buffer given back (recycle) is read into again; small reads and others' buffers are not taken", async () => {
    const drive = await openDrive("RDWR");
    for (let i = 0; i < 3; i++) await drive.write(pattern(256 * KiB, i + 1));
    await drive.write(pattern(100, 9));
    await drive.writeFilemarks(1);
    await drive.rewind();
    const first = await drive.read(256 * KiB);
    expect(first.equals(pattern(256 * KiB, 1))).toBe(true);
    drive.recycle(first);
    drive.recycle(Buffer.alloc(512 * KiB)); // not the drive's: ignored
    const second = await drive.read(256 * KiB);
    expect(second.buffer).toBe(first.buffer); // the same memory, now the next record
    expect(second.equals(pattern(256 * KiB, 2))).toBe(true);
    const third = await drive.read(256 * KiB);
    expect(third.buffer).not.toBe(second.buffer);
    expect(third.equals(pattern(256 * KiB, 3))).toBe(true);
    drive.recycle(third);
    const small = await drive.read(100); // a short read of a short record: the spare stays
    expect(small.equals(pattern(100, 9))).toBe(true);
    await drive.close();
  });

  it("an early write-back (every 16 MiB) still in flight at close: the file is closed after it, every record reads back", async () => {
    const recordSize = 1 * MiB;
    const records = 17; // the 16th record starts a write-back; close comes right after the 17th
    const drive = await openDrive("RDWR");
    for (let i = 0; i < records; i++) await drive.write(pattern(recordSize, i + 1));
    await drive.close(); // adds the filemark, waits for the write-back, syncs, closes
    const again = await openDrive("READ");
    const back = await readFile(again);
    await again.close();
    expect(back.length).toBe(records);
    expect(back.every((r, i) => r.equals(pattern(recordSize, i + 1)))).toBe(true);
  });
});

describe("a cartridge is mounted by one drive at a time (lock)", () => {
  it("asks the lock for the open cartridge file; refused, the open fails BUSY and leaves the drive closed", async () => {
    // The real lock is flock(2) from the native layer (checked in the compiled binary by the
    // native and CLI-job tests); here one that says who holds the file.
    let holder: number | undefined;
    const calls: number[] = [];
    const lock = (fd: number) => {
      calls.push(fd);
      if (holder !== undefined && holder !== fd && fs.existsSync(`/proc/self/fd/${holder}`)) return false; // a reused number means it was closed
      holder = fd;
      return true;
    };
    const first = new VirtualTapeDrive({ name: "a", cartridge, lock });
    const second = new VirtualTapeDrive({ name: "b", cartridge, lock });
    await first.open("RDWR");
    expect(fs.realpathSync(`/proc/self/fd/${calls[0]}`)).toBe(fs.realpathSync(cartridge));
    const fdsBefore = fs.readdirSync("/proc/self/fd").length;
    await expectTapeError(second.open("READ"), "BUSY");
    expect(second.openMode).toBeNull();
    expect(fs.readdirSync("/proc/self/fd").length).toBe(fdsBefore); // the refused open closed its file
    await first.close();
    await second.open("READ"); // the first close let it go
    await second.close();
  });
});
