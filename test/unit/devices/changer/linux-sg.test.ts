/** Linux sg pass-through: sg_io_hdr bytes, result -> NDMP mapping, and the errors without a device. */
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ScsiError } from "../../../../src/devices/changer/device.ts";
import {
  decodeSgIoHdr,
  encodeSgIoHdr,
  openLinuxSg,
  SG_DXFER_FROM_DEV,
  SG_DXFER_NONE,
  SG_DXFER_TO_DEV,
  SG_IO_HDR_SIZE,
  sgResult,
  sgTimeout,
  type SgIoResult,
} from "../../../../src/devices/changer/linux-sg.ts";
import { havePeers } from "../../../helpers/peers.ts";
import { makeTempDir } from "../tape/helpers.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../../..");

describe("sg_io_hdr", () => {
  it("encodes the x86_64 layout: interface id, direction, lengths, pointers, timeout", () => {
    const b = encodeSgIoHdr({
      direction: SG_DXFER_FROM_DEV,
      cmdLen: 12,
      mxSbLen: 252,
      dxferLen: 8192,
      dxferp: 0x1122334455667788n,
      cmdp: 0x0000_7fff_0000_1000n,
      sbp: 0x0000_7fff_0000_2000n,
      timeout: 300000,
      flags: 0,
      packId: 7,
    });
    expect(b.length).toBe(88);
    expect(SG_IO_HDR_SIZE).toBe(88);
    const hex = b.toString("hex");
    expect(hex.slice(0, 8)).toBe("53000000"); // 'S'
    expect(b.readInt32LE(4)).toBe(-3);
    expect([b[8], b[9], b.readUInt16LE(10)]).toEqual([12, 252, 0]);
    expect(b.readUInt32LE(12)).toBe(8192);
    expect(b.readBigUInt64LE(16)).toBe(0x1122334455667788n);
    expect(b.readBigUInt64LE(24)).toBe(0x7fff00001000n);
    expect(b.readBigUInt64LE(32)).toBe(0x7fff00002000n);
    expect(b.readUInt32LE(40)).toBe(300000);
    expect(b.readUInt32LE(44)).toBe(0);
    expect(b.readInt32LE(48)).toBe(7);
    expect(b.subarray(52, 88).every((x) => x === 0)).toBe(true); // padding, usr_ptr, outputs
  });

  it("decodes the output fields", () => {
    const b = Buffer.alloc(88);
    b[64] = 0x02; // status
    b[65] = 0x01; // masked_status
    b[66] = 0;
    b[67] = 18; // sb_len_wr
    b.writeUInt16LE(0x07, 68);
    b.writeUInt16LE(0x08, 70);
    b.writeInt32LE(100, 72);
    b.writeUInt32LE(25, 76);
    b.writeUInt32LE(1, 80);
    expect(decodeSgIoHdr(b)).toEqual({ status: 2, maskedStatus: 1, msgStatus: 0, sbLenWr: 18, hostStatus: 7, driverStatus: 8, resid: 100, duration: 25, info: 1 });
  });

  it("maps timeouts: NDMP 0 (no limit) is UINT_MAX for sg", () => {
    expect(sgTimeout(0)).toBe(0xffffffff);
    expect(sgTimeout(300000)).toBe(300000);
    expect(sgTimeout(2 ** 40)).toBe(0xfffffffe);
  });
});

describe("sg result -> NDMP reply", () => {
  const ok: SgIoResult = { status: 0, maskedStatus: 0, msgStatus: 0, sbLenWr: 0, hostStatus: 0, driverStatus: 0, resid: 0, duration: 1, info: 0 };
  const data = Buffer.from("0123456789");
  const sense = Buffer.alloc(252, 0xee);

  it("GOOD with a residual: only the bytes transferred come back", () => {
    const r = sgResult({ ...ok, resid: 4 }, data, sense, 0, SG_DXFER_FROM_DEV);
    expect(r).toEqual({ status: 0, dataIn: Buffer.from("012345"), sense: Buffer.alloc(0), dataOutLen: 0 });
    expect(sgResult({ ...ok, resid: 3 }, Buffer.alloc(0), sense, 10, SG_DXFER_TO_DEV).dataOutLen).toBe(7);
    expect(sgResult(ok, Buffer.alloc(0), sense, 0, SG_DXFER_NONE).dataIn.length).toBe(0);
  });

  it("CHECK CONDITION passes the sense the device wrote", () => {
    const r = sgResult({ ...ok, status: 2, maskedStatus: 1, sbLenWr: 18, driverStatus: 0x08, resid: 10 }, data, sense, 0, SG_DXFER_FROM_DEV);
    expect(r.status).toBe(2);
    expect(r.sense.length).toBe(18);
    expect(r.dataIn.length).toBe(0);
  });

  it("timeouts and transport failures become NDMP errors", () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(ScsiError);
        return (e as ScsiError).code;
      }
      return "no error";
    };
    expect(code(() => sgResult({ ...ok, hostStatus: 0x03 }, data, sense, 0, SG_DXFER_FROM_DEV))).toBe("TIMEOUT");
    expect(code(() => sgResult({ ...ok, driverStatus: 0x06 }, data, sense, 0, SG_DXFER_FROM_DEV))).toBe("TIMEOUT");
    expect(code(() => sgResult({ ...ok, hostStatus: 0x01 }, data, sense, 0, SG_DXFER_FROM_DEV))).toBe("NO_DEVICE");
    expect(code(() => sgResult({ ...ok, hostStatus: 0x07 }, data, sense, 0, SG_DXFER_FROM_DEV))).toBe("IO");
  });

  it("under Node: a clear 'needs the compiled binary' error", async () => {
    await expect(openLinuxSg("/dev/sg-ndmpd-missing", "lib9")).rejects.toMatchObject({ code: "NOT_SUPPORTED", message: expect.stringMatching(/compiled ndmpd binary/) });
  });
});

const bunReady = havePeers("bun");
describe.runIf(bunReady)("sg under Bun (compiled probe)", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  let probe: string;
  const run = (file: string, args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(file, args, { cwd: root, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }));
    });

  beforeAll(async () => {
    tmp = makeTempDir("ndmpd-sg-");
    probe = path.join(tmp.dir, "sg-probe");
    const b = await run(path.join(root, "node_modules/.bin/bun"), ["build", "--compile", path.join(here, "sg-probe.ts"), "--outfile", probe]);
    if (b.code !== 0) throw new Error(`bun build --compile failed: ${b.stderr}`);
  }, 60_000);
  afterAll(() => tmp?.cleanup());

  it("a missing /dev/sgN is NO_DEVICE; a file that is not sg is NO_DEVICE too", async () => {
    const regular = path.join(tmp.dir, "not-sg");
    fs.writeFileSync(regular, "x");
    const r = await run(probe, ["/dev/sg-ndmpd-missing", regular]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    expect(out.runtime).toBe("bun-ffi");
    expect(out.missing).toMatchObject({ code: "NO_DEVICE", message: expect.stringMatching(/does not exist/) });
    expect(out.regular).toMatchObject({ code: "NO_DEVICE", message: expect.stringMatching(/not a SCSI generic/) });
    expect(out.address).toBe(true);
  }, 60_000);
});
