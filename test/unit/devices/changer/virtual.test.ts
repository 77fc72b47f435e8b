/**
 * The virtual library at the SCSI level: reply bytes of every CDB, CHECK CONDITION sense (key, ASC,
 * ASCQ) for every failure, bad CDBs, cartridges in the bound drives, persistence across restarts.
 */
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseSense, ScsiStatus, type ScsiResult } from "../../../../src/devices/changer/device.ts";
import { parseElementStatus } from "../../../../src/devices/changer/smc.ts";
import { emulatedInquiry, VirtualLibrary, type VirtualLibraryOptions } from "../../../../src/devices/changer/virtual.ts";
import { VirtualTapeDrive } from "../../../../src/devices/tape/virtual.ts";
import { makeTempDir } from "../tape/helpers.ts";

const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
const MOVE = (from: number, to: number, mte = 0) => [0xa5, 0, ...u16(mte), ...u16(from), ...u16(to), 0, 0, 0, 0];
const RES = (opts: { type?: number; voltag?: boolean; start?: number; count?: number; dvcid?: boolean; alloc?: number } = {}) => {
  const a = opts.alloc ?? 0xffff;
  return [0xb8, (opts.voltag ? 0x10 : 0) | (opts.type ?? 0), ...u16(opts.start ?? 0), ...u16(opts.count ?? 0xffff), opts.dvcid ? 1 : 0, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff, 0, 0];
};

describe("VirtualLibrary", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  let lib: VirtualLibrary;
  let drives: VirtualTapeDrive[];

  async function openLib(extra: Partial<VirtualLibraryOptions> = {}): Promise<VirtualLibrary> {
    drives = [new VirtualTapeDrive({ name: "vt0" }), new VirtualTapeDrive({ name: "vt1" })];
    return VirtualLibrary.open({
      name: "lib0",
      directory: path.join(tmp.dir, "lib"),
      slots: 4,
      importExport: 1,
      serial: "LIBSER01",
      capacity: 1024 * 1024,
      drives: [
        { name: "vt0", serial: "DRV0SER", device: drives[0]! },
        { name: "vt1", serial: "DRIVE1SERIAL", device: drives[1]! },
      ],
      ...extra,
    });
  }
  const exec = (cdb: number[], dataInLen = 65536, dataOut: Buffer = Buffer.alloc(0)) => lib.execute(Buffer.from(cdb), dataOut, dataInLen, 300_000);
  function expectCheck(r: ScsiResult, key: number, asc: number, ascq: number): void {
    expect(r.status).toBe(ScsiStatus.CHECK_CONDITION);
    expect(r.sense[0]).toBe(0x70); // fixed format
    expect(r.sense.length).toBe(18);
    expect(parseSense(r.sense)).toEqual({ key, asc, ascq });
    expect(r.dataIn.length).toBe(0);
  }
  async function inventory() {
    const r = await exec(RES({ voltag: true }));
    expect(r.status).toBe(0);
    return parseElementStatus(r.dataIn);
  }
  const at = async (address: number) => (await inventory()).find((e) => e.address === address)!;

  beforeEach(async () => {
    tmp = makeTempDir("ndmpd-lib-");
    lib = await openLib();
  });
  afterEach(() => {
    lib.shutdown();
    tmp.cleanup();
  });

  it("creates one cartridge file per slot, named by volume tag, and a state file", () => {
    const files = fs.readdirSync(path.join(tmp.dir, "lib")).sort();
    expect(files).toEqual(["NDMP001L8.tape", "NDMP002L8.tape", "NDMP003L8.tape", "NDMP004L8.tape", "library.json", "library.lock"]);
  });

  it("INQUIRY: standard data, VPD 00h, 80h, 83h, allocation length truncation", async () => {
    const std = await exec([0x12, 0, 0, 0, 0xff, 0]);
    expect(std.status).toBe(0);
    expect(std.dataIn.length).toBe(36);
    expect(std.dataIn[0]).toBe(0x08);
    expect(std.dataIn[2]).toBe(0x05);
    expect(std.dataIn[3]).toBe(0x02);
    expect(std.dataIn[4]).toBe(31);
    expect(std.dataIn.subarray(8, 36).toString("latin1")).toBe("NDMPD   VIRTUAL LIBRARY 0001");
    expect((await exec([0x12, 0, 0, 0, 5, 0])).dataIn.length).toBe(5);
    expect((await exec([0x12, 0, 0, 0, 0xff, 0], 10)).dataIn.length).toBe(10); // NDMP datain_len
    expect([...(await exec([0x12, 1, 0x00, 0, 0xff, 0])).dataIn]).toEqual([0x08, 0x00, 0, 3, 0x00, 0x80, 0x83]);
    const sn = (await exec([0x12, 1, 0x80, 0, 0xff, 0])).dataIn;
    expect([...sn.subarray(0, 4)]).toEqual([0x08, 0x80, 0, 8]);
    expect(sn.subarray(4).toString()).toBe("LIBSER01");
    const id = (await exec([0x12, 1, 0x83, 0, 0xff, 0])).dataIn;
    expect([...id.subarray(0, 8)]).toEqual([0x08, 0x83, 0, 20, 0x02, 0x01, 0x00, 16]);
    expect(id.subarray(8).toString()).toBe("NDMPD   LIBSER01");
    expectCheck(await exec([0x12, 1, 0x81, 0, 0xff, 0]), 5, 0x24, 0); // unknown page
    expectCheck(await exec([0x12, 0, 0x80, 0, 0xff, 0]), 5, 0x24, 0); // page without EVPD
    expectCheck(await exec([0x12, 2, 0, 0, 0xff, 0]), 5, 0x24, 0); // CMDDT
    // The sense points at the bad field: byte 2 of the CDB.
    const r = await exec([0x12, 1, 0x81, 0, 0xff, 0]);
    expect([...r.sense.subarray(15, 18)]).toEqual([0xc0, 0, 2]);
  });

  it("TEST UNIT READY and REQUEST SENSE", async () => {
    const tur = await exec([0, 0, 0, 0, 0, 0]);
    expect(tur).toMatchObject({ status: 0, dataOutLen: 0 });
    expect(tur.dataIn.length).toBe(0);
    const rs = await exec([0x03, 0, 0, 0, 252, 0]);
    expect(rs.status).toBe(0);
    expect([...rs.dataIn]).toEqual([0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expectCheck(await exec([0x03, 1, 0, 0, 252, 0]), 5, 0x24, 0); // descriptor format asked
  });

  it("MODE SENSE(6) page 1Dh: the layout ndmjob reads from offset 4", async () => {
    const r = await exec([0x1a, 0x08, 0x1d, 0, 0xff, 0]);
    expect(r.status).toBe(0);
    expect([...r.dataIn]).toEqual([
      23, 0, 0, 0, // header: mode data length, medium type, device specific, no block descriptors
      0x1d, 0x12, ...u16(0), ...u16(1), ...u16(1000), ...u16(4), ...u16(10), ...u16(1), ...u16(500), ...u16(2), 0, 0,
    ]);
    // DBD clear gives the same (a changer has no block descriptors).
    expect((await exec([0x1a, 0x00, 0x1d, 0, 0xff, 0])).dataIn).toEqual(r.dataIn);
    expect((await exec([0x1a, 0x08, 0x1d, 0, 6, 0])).dataIn.length).toBe(6);
  });

  it("MODE SENSE pages 1Eh, 1Fh, 3Fh, changeable values, MODE SENSE(10)", async () => {
    expect([...(await exec([0x1a, 0x08, 0x1e, 0, 0xff, 0])).dataIn]).toEqual([7, 0, 0, 0, 0x1e, 0x02, 0, 0]);
    const caps = (await exec([0x1a, 0x08, 0x1f, 0, 0xff, 0])).dataIn;
    expect([...caps]).toEqual([23, 0, 0, 0, 0x1f, 0x12, 0x0e, 0, 0, 0x0e, 0x0e, 0x0e, 0, 0, 0, 0, 0, 0x0e, 0x0e, 0x0e, 0, 0, 0, 0]);
    const all = (await exec([0x1a, 0x08, 0x3f, 0, 0xff, 0])).dataIn;
    expect(all[0]).toBe(3 + 20 + 4 + 20);
    expect([all[4], all[24], all[28]]).toEqual([0x1d, 0x1e, 0x1f]);
    expect((await exec([0x1a, 0x08, 0x3f, 0xff, 0xff, 0])).status).toBe(0); // all subpages
    const changeable = (await exec([0x1a, 0x08, 0x40 | 0x1d, 0, 0xff, 0])).dataIn;
    expect([...changeable.subarray(4, 6)]).toEqual([0x1d, 0x12]);
    expect(changeable.subarray(6).every((b) => b === 0)).toBe(true);
    const ten = (await exec([0x5a, 0x08, 0x1d, 0, 0, 0, 0, 0, 0xff, 0])).dataIn;
    expect([...ten.subarray(0, 8)]).toEqual([0, 26, 0, 0, 0, 0, 0, 0]);
    expect(ten.subarray(8)).toEqual((await exec([0x1a, 0x08, 0x1d, 0, 0xff, 0])).dataIn.subarray(4));
    expectCheck(await exec([0x1a, 0x08, 0x08, 0, 0xff, 0]), 5, 0x24, 0); // unsupported page
    expectCheck(await exec([0x1a, 0x08, 0xc0 | 0x1d, 0, 0xff, 0]), 5, 0x39, 0); // saved values
    expectCheck(await exec([0x1a, 0x08, 0x1d, 1, 0xff, 0]), 5, 0x24, 0); // subpage
  });

  it("MODE SELECT takes back the current values only; bad parameter lists are refused", async () => {
    const page = (await exec([0x1a, 0x08, 0x1d, 0, 0xff, 0])).dataIn.subarray(4);
    const list = Buffer.concat([Buffer.alloc(4), page]);
    const ok = await exec([0x15, 0x10, 0, 0, list.length, 0], 0, list);
    expect(ok).toMatchObject({ status: 0, dataOutLen: list.length });
    expectCheck(await exec([0x15, 0x10, 0, 0, list.length + 4, 0], 0, list), 5, 0x1a, 0); // longer than sent
    expectCheck(await exec([0x15, 0x10, 0, 0, 2, 0], 0, list), 5, 0x1a, 0); // shorter than a header
    const changed = Buffer.from(list);
    changed[4 + 3] = 7; // another transport address
    expectCheck(await exec([0x15, 0x10, 0, 0, changed.length, 0], 0, changed), 5, 0x26, 0);
    expectCheck(await exec([0x15, 0x00, 0, 0, list.length, 0], 0, list), 5, 0x24, 0); // PF clear
  });

  it("READ ELEMENT STATUS: every type, volume tags, DVCID, start and count, full byte count when truncated", async () => {
    const all = await exec(RES({ voltag: true, dvcid: true }));
    const d = all.dataIn;
    expect([d.readUInt16BE(0), d.readUInt16BE(2), d[4], d.readUIntBE(5, 3)]).toEqual([0, 8, 0, d.length - 8]);
    const els = parseElementStatus(d);
    expect(els.map((e) => [e.type, e.address, e.full, e.tag])).toEqual([
      ["MTE", 0, false, null],
      ["IE", 10, false, null],
      ["DTE", 500, false, null],
      ["DTE", 501, false, null],
      ["SE", 1000, true, "NDMP001L8"],
      ["SE", 1001, true, "NDMP002L8"],
      ["SE", 1002, true, "NDMP003L8"],
      ["SE", 1003, true, "NDMP004L8"],
    ]);
    expect(els.filter((e) => e.type === "DTE").map((e) => e.identifier)).toEqual(["DRV0SER", "DRIVE1SERIAL"]);
    // The DTE page: header, then descriptors of 12 + 36 (volume tag) + 4 + 12 (identifier, padded).
    const dtePage = d.indexOf(Buffer.from([4, 0x80]), 8);
    expect(d.readUInt16BE(dtePage + 2)).toBe(64);
    expect(d.readUIntBE(dtePage + 5, 3)).toBe(128);
    const drv0 = d.subarray(dtePage + 8, dtePage + 8 + 64);
    expect([...drv0.subarray(0, 12)]).toEqual([...u16(500), 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...drv0.subarray(48, 52)]).toEqual([0x02, 0x00, 0, 7]);
    expect(drv0.subarray(52, 59).toString()).toBe("DRV0SER");
    // A slot descriptor without DVCID or volume tags: 12 bytes, ACCESS|FULL.
    const slots = (await exec(RES({ type: 2 }))).dataIn;
    expect([...slots.subarray(0, 8)]).toEqual([...u16(1000), ...u16(4), 0, 0, 0, 8 + 48]);
    expect([...slots.subarray(8, 16)]).toEqual([2, 0, 0, 12, 0, 0, 0, 48]);
    expect([...slots.subarray(16, 28)]).toEqual([...u16(1000), 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Volume tag: 32 bytes space-padded, 2 reserved, 2 sequence.
    const tagged = (await exec(RES({ type: 2, voltag: true, start: 1001, count: 1 }))).dataIn;
    expect(tagged.readUInt16BE(0)).toBe(1001);
    expect(tagged.readUInt16BE(2)).toBe(1);
    expect(tagged.subarray(8 + 8 + 12, 8 + 8 + 12 + 36).toString("latin1")).toBe("NDMP002L8".padEnd(32, " ") + "\0\0\0\0");
    // Import/export: INENAB, EXENAB, ACCESS.
    const ie = (await exec(RES({ type: 3 }))).dataIn;
    expect(ie[8 + 8 + 2]).toBe(0x38);
    // MTE page alone; DTE from 501 only.
    expect(parseElementStatus((await exec(RES({ type: 1 }))).dataIn).map((e) => e.address)).toEqual([0]);
    expect(parseElementStatus((await exec(RES({ type: 4, start: 501 }))).dataIn).map((e) => e.address)).toEqual([501]);
    // Any start: from 11 the next element is drive 500; count 3 spans two pages.
    expect(parseElementStatus((await exec(RES({ start: 11, count: 3 }))).dataIn).map((e) => e.address)).toEqual([500, 501, 1000]);
    // Truncated by the allocation length: the header still tells the full size.
    const full = (await exec(RES({ voltag: true }))).dataIn;
    const cut = (await exec(RES({ voltag: true, alloc: 20 }))).dataIn;
    expect(cut).toEqual(full.subarray(0, 20));
    expect(cut.readUIntBE(5, 3)).toBe(full.length - 8);
    // Huge allocation lengths are fine: only what exists comes back.
    expect((await exec(RES({ alloc: 0xffffff }), 0xffffff)).dataIn.length).toBe(full.length - 8 * 36); // no volume tags
    expect((await exec(RES({ alloc: 0 }))).dataIn.length).toBe(0);
    // Errors.
    expectCheck(await exec(RES({ type: 5 })), 5, 0x24, 0);
    expectCheck(await exec(RES({ start: 2000 })), 5, 0x21, 0x01);
    expectCheck(await exec(RES({ type: 1, start: 1 })), 5, 0x21, 0x01);
  });

  it("MOVE MEDIUM slot -> drive loads the cartridge into the bound drive; drive -> slot unloads it", async () => {
    expect((await exec(MOVE(1001, 501))).status).toBe(0);
    expect(drives[1]!.cartridgePath).toBe(path.join(tmp.dir, "lib", "NDMP002L8.tape"));
    expect(await at(501)).toMatchObject({ full: true, tag: "NDMP002L8", source: 1001 });
    expect(await at(1001)).toMatchObject({ full: false, tag: null });
    // The drive works with it.
    await drives[1]!.open("RDWR");
    await drives[1]!.write(Buffer.from("hello"));
    // Open: the drive refuses to give the cartridge up.
    expectCheck(await exec(MOVE(501, 1001)), 5, 0x53, 0x02);
    expect((await at(501)).full).toBe(true);
    // ACCESS is clear while the drive is in use.
    const dte = (await exec(RES({ type: 4, start: 501, count: 1 }))).dataIn;
    expect(dte[8 + 8 + 2]! & 0x08).toBe(0);
    await drives[1]!.close();
    expect((await exec(MOVE(501, 1001))).status).toBe(0);
    expect(drives[1]!.cartridgePath).toBeNull();
    expect(await at(1001)).toMatchObject({ full: true, tag: "NDMP002L8", source: 1001 });
    // The data went onto the cartridge file.
    expect((await exec(MOVE(1001, 500))).status).toBe(0);
    await drives[0]!.open("READ");
    expect((await drives[0]!.read(100)).toString()).toBe("hello");
    await drives[0]!.close();
    // Drive to drive keeps the home slot as the source.
    expect((await exec(MOVE(500, 501))).status).toBe(0);
    expect(await at(501)).toMatchObject({ tag: "NDMP002L8", source: 1001 });
    expect(drives[0]!.cartridgePath).toBeNull();
    expect(drives[1]!.cartridgePath).toContain("NDMP002L8");
  });

  it("MOVE MEDIUM errors: source empty, destination full, bad addresses, transport, INVERT", async () => {
    expectCheck(await exec(MOVE(500, 1000)), 5, 0x3b, 0x0e);
    expectCheck(await exec(MOVE(1000, 1001)), 5, 0x3b, 0x0d);
    expectCheck(await exec(MOVE(1000, 1004)), 5, 0x21, 0x01);
    expectCheck(await exec(MOVE(999, 500)), 5, 0x21, 0x01);
    expectCheck(await exec(MOVE(1000, 0)), 5, 0x21, 0x01); // the transport holds nothing
    expectCheck(await exec(MOVE(1000, 500, 1000)), 5, 0x21, 0x01); // not a transport
    const inv = MOVE(1000, 500);
    inv[10] = 1;
    expectCheck(await exec(inv), 5, 0x24, 0);
    // Nothing moved.
    expect((await inventory()).filter((e) => e.full).map((e) => e.address)).toEqual([1000, 1001, 1002, 1003]);
  });

  it("EXCHANGE MEDIUM, and PREVENT ALLOW MEDIUM REMOVAL guarding the import/export element", async () => {
    expect((await exec(MOVE(1000, 500))).status).toBe(0);
    // drive(NDMP001) -> slot 1001, slot 1001's NDMP002 -> slot 1000
    expect((await exec([0xa6, 0, ...u16(0), ...u16(500), ...u16(1001), ...u16(1000), 0, 0]))).toMatchObject({ status: 0 });
    expect(await at(1001)).toMatchObject({ tag: "NDMP001L8" });
    expect(await at(1000)).toMatchObject({ tag: "NDMP002L8", source: 1001 });
    expect((await at(500)).full).toBe(false);
    expect(drives[0]!.cartridgePath).toBeNull();
    // Swap two slots (second destination = source).
    expect((await exec([0xa6, 0, ...u16(0), ...u16(1002), ...u16(1003), ...u16(1002), 0, 0])).status).toBe(0);
    expect([(await at(1002)).tag, (await at(1003)).tag]).toEqual(["NDMP004L8", "NDMP003L8"]);
    expectCheck(await exec([0xa6, 0, ...u16(0), ...u16(500), ...u16(1003), ...u16(1002), 0, 0]), 5, 0x3b, 0x0e);
    expectCheck(await exec([0xa6, 0, ...u16(0), ...u16(1002), ...u16(1003), ...u16(1000), 0, 0]), 5, 0x3b, 0x0d);

    expect((await exec([0x1e, 0, 0, 0, 1, 0])).status).toBe(0);
    expectCheck(await exec(MOVE(1000, 10)), 5, 0x53, 0x02);
    expect((await exec(MOVE(1000, 501))).status).toBe(0); // inside the library is fine
    expectCheck(await exec([0x1e, 0, 0, 0, 2, 0]), 5, 0x24, 0);
    expect((await exec([0x1e, 0, 0, 0, 0, 0])).status).toBe(0);
    expect((await exec(MOVE(501, 10))).status).toBe(0);
    expect(await at(10)).toMatchObject({ tag: "NDMP002L8", source: 1000 });
    // A reset forgets the prevention too.
    await exec([0x1e, 0, 0, 0, 1, 0]);
    await lib.reset();
    expect((await exec(MOVE(1001, 501))).status).toBe(0);
    expect((await exec(MOVE(501, 1001))).status).toBe(0);
  });

  it("INITIALIZE ELEMENT STATUS (with range) and POSITION TO ELEMENT", async () => {
    expect((await exec([0x07, 0, 0, 0, 0, 0])).status).toBe(0);
    expect((await exec([0x37, 1, ...u16(1000), 0, 0, ...u16(4), 0, 0])).status).toBe(0);
    expect((await exec([0x37, 0, 0, 0, 0, 0, 0, 0, 0, 0])).status).toBe(0);
    expectCheck(await exec([0x37, 1, ...u16(1500), 0, 0, ...u16(4), 0, 0]), 5, 0x21, 0x01);
    expect((await exec([0x2b, 0, ...u16(0), ...u16(1002), 0, 0, 0, 0])).status).toBe(0);
    expectCheck(await exec([0x2b, 0, ...u16(0), ...u16(1600), 0, 0, 0, 0]), 5, 0x21, 0x01);
    expectCheck(await exec([0x2b, 0, ...u16(0), ...u16(1002), 0, 0, 1, 0]), 5, 0x24, 0);
  });

  it("bad CDBs: empty, short, long, unknown opcodes, NACA — CHECK CONDITION, never an exception", async () => {
    expectCheck(await exec([]), 5, 0x20, 0);
    expectCheck(await exec([0xb8, 0x10, 0, 0]), 5, 0x24, 0); // short
    expectCheck(await exec([0x12, 0, 0, 0, 0xff, 0, 0]), 5, 0x24, 0); // 7 bytes
    expectCheck(await exec([0xa5, 0, 0, 0]), 5, 0x24, 0);
    expectCheck(await exec([...MOVE(1000, 500), 0, 0, 0, 0]), 5, 0x24, 0); // 16 bytes
    for (const op of [0x01, 0x08, 0x0a, 0x25, 0x28, 0x2a, 0x4d, 0xa0, 0xb6, 0xff]) {
      expectCheck(await exec([op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 5, 0x20, 0);
    }
    expectCheck(await exec([0x00, 0, 0, 0, 0, 0x04]), 5, 0x24, 0); // NACA
    // Random CDBs of every length: always a status, nothing thrown.
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 2000; i++) {
      const len = rnd() % 20;
      const cdb = Array.from({ length: len }, rnd);
      if (len > 0 && i % 3 === 0) cdb[0] = [0x12, 0x1a, 0x5a, 0xb8, 0x03, 0x37, 0x2b, 0x1e][i % 8]!;
      if (cdb[0] === 0xa5 || cdb[0] === 0xa6) continue; // would shuffle cartridges; covered above
      const r = await exec(cdb, rnd() * 256);
      expect([0, 2]).toContain(r.status);
    }
  });

  it("state survives a restart; a second opener is refused while the first holds the library", async () => {
    await exec(MOVE(1002, 500));
    await exec(MOVE(1000, 10));
    await expect(openLib()).rejects.toThrow(/in use by process/);
    lib.shutdown();
    lib = await openLib();
    expect(drives[0]!.cartridgePath).toContain("NDMP003L8"); // the new drive object got its cartridge back
    expect(await at(500)).toMatchObject({ tag: "NDMP003L8", source: 1002 });
    expect(await at(10)).toMatchObject({ tag: "NDMP001L8", source: 1000 });
    expect((await at(1000)).full).toBe(false);
    // No temp file left behind; the state is plain JSON naming elements by type and index.
    const state = JSON.parse(fs.readFileSync(path.join(tmp.dir, "lib", "library.json"), "utf8"));
    expect(state.drives[0]).toEqual({ tag: "NDMP003L8", source: "slot/2" });
    expect(fs.existsSync(path.join(tmp.dir, "lib", "library.json.tmp"))).toBe(false);
    // Other element addresses after a restart: the cartridges stay in their elements.
    lib.shutdown();
    lib = await openLib({ addresses: { mte: 100, se: 2000, ie: 200, dte: 300 } });
    expect(await at(300)).toMatchObject({ tag: "NDMP003L8", source: 2002 });
    // Shrinking below a full slot is refused; a stale lock (dead process) is taken over.
    lib.shutdown();
    await expect(openLib({ slots: 1 })).rejects.toThrow(/holds NDMP002L8/);
    fs.writeFileSync(path.join(tmp.dir, "lib", "library.lock"), "999999999\n");
    lib = await openLib();
    expect((await at(500)).tag).toBe("NDMP003L8");
  });

  it("the virtual drive's INQUIRY for TAPE_EXECUTE_CDB: type 01h and its serial", () => {
    const id = { deviceType: 0x01, vendor: "NDMPD", product: "VIRTUAL TAPE", revision: "0001", serial: "DRV0SER", removable: true };
    const std = emulatedInquiry(Buffer.from([0x12, 0, 0, 0, 96, 0]), id);
    expect(std.status).toBe(0);
    expect([std.data[0], std.data[1]]).toEqual([0x01, 0x80]);
    expect(std.data.subarray(8, 36).toString()).toBe("NDMPD   VIRTUAL TAPE    0001");
    const sn = emulatedInquiry(Buffer.from([0x12, 1, 0x80, 0, 96, 0]), id);
    expect([...sn.data.subarray(0, 4)]).toEqual([0x01, 0x80, 0, 7]);
    expect(sn.data.subarray(4).toString()).toBe("DRV0SER");
    const bad = emulatedInquiry(Buffer.from([0x12, 1, 0x99, 0, 96, 0]), id);
    expect(parseSense(bad.sense)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
    expect(parseSense(emulatedInquiry(Buffer.from([0x00, 0, 0, 0, 0, 0]), id).sense)).toEqual({ key: 5, asc: 0x20, ascq: 0 });
  });
});
