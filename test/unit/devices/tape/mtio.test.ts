import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  GMT,
  IOC_READ,
  IOC_WRITE,
  MTGET_SIZE,
  MTIOCGET,
  MTIOCTOP,
  MTOP_SIZE,
  MTOp,
  blockSizeOf,
  decodeGstat,
  decodeMtget,
  encodeMtop,
  ioc,
  softErrorsOf,
  tapeErrorCodeForErrno,
} from "../../../../src/devices/tape/mtio.ts";
import { ERRNO } from "../../../../src/native/errno.ts";
import { makeTempDir } from "./helpers.ts";

const M = "m".charCodeAt(0);

describe("ioctl request numbers", () => {
  it("MTIOCTOP and MTIOCGET are _IOW/_IOR('m', n, struct)", () => {
    expect(ioc(IOC_WRITE, M, 1, MTOP_SIZE)).toBe(MTIOCTOP);
    expect(ioc(IOC_READ, M, 2, MTGET_SIZE)).toBe(MTIOCGET);
    expect(MTIOCTOP).toBe(0x40086d01);
    expect(MTIOCGET).toBe(0x80306d02);
  });

  // The C compiler is the authority on the ABI: compare every constant and layout we hard-code.
  // .ci/run installs gcc: in CI a missing compiler fails this test instead of skipping it.
  const cc = spawnSync("cc", ["--version"]).status === 0;
  it.skipIf(!cc && !process.env.CI)("matches <sys/mtio.h> and <errno.h> as compiled by cc", () => {
    const { dir, cleanup } = makeTempDir("ndmpd-mtio-");
    try {
      const source = path.join(dir, "abi.c");
      fs.writeFileSync(
        source,
        `#include <stdio.h>
#include <stddef.h>
#include <errno.h>
#include <sys/mtio.h>
int main(void) {
  printf("{\\"mtop\\":%zu,\\"mtget\\":%zu,\\"op_count\\":%zu,", sizeof(struct mtop), sizeof(struct mtget), offsetof(struct mtop, mt_count));
  printf("\\"fileno\\":%zu,\\"blkno\\":%zu,\\"gstat\\":%zu,\\"resid\\":%zu,", offsetof(struct mtget, mt_fileno), offsetof(struct mtget, mt_blkno), offsetof(struct mtget, mt_gstat), offsetof(struct mtget, mt_resid));
  printf("\\"MTIOCTOP\\":%lu,\\"MTIOCGET\\":%lu,", (unsigned long)MTIOCTOP, (unsigned long)MTIOCGET);
  printf("\\"ops\\":[%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d],", MTFSF, MTBSF, MTFSR, MTBSR, MTWEOF, MTREW, MTOFFL, MTNOP, MTEOM, MTSETBLK, MTLOAD);
  printf("\\"gmt\\":[%lu,%lu,%lu,%lu,%lu,%lu,%lu,%lu],", (unsigned long)GMT_EOF(~0UL), (unsigned long)GMT_BOT(~0UL), (unsigned long)GMT_EOT(~0UL), (unsigned long)GMT_SM(~0UL), (unsigned long)GMT_EOD(~0UL), (unsigned long)GMT_WR_PROT(~0UL), (unsigned long)GMT_ONLINE(~0UL), (unsigned long)GMT_DR_OPEN(~0UL));
  printf("\\"errno\\":{\\"ENOSPC\\":%d,\\"EIO\\":%d,\\"EROFS\\":%d,\\"EACCES\\":%d,\\"ENOMEDIUM\\":%d,\\"ENXIO\\":%d,\\"ENOENT\\":%d,\\"EBUSY\\":%d,\\"ENODATA\\":%d,\\"ERANGE\\":%d,\\"ENOTTY\\":%d,\\"EINVAL\\":%d}}\\n",
    ENOSPC, EIO, EROFS, EACCES, ENOMEDIUM, ENXIO, ENOENT, EBUSY, ENODATA, ERANGE, ENOTTY, EINVAL);
  return 0;
}
`,
      );
      const exe = path.join(dir, "abi");
      const build = spawnSync("cc", ["-o", exe, source], { encoding: "utf8" });
      expect(build.status, build.stderr).toBe(0);
      const run = spawnSync(exe, { encoding: "utf8" });
      const abi = JSON.parse(run.stdout);
      expect(abi).toMatchObject({
        mtop: MTOP_SIZE,
        mtget: MTGET_SIZE,
        op_count: 4,
        resid: 8,
        gstat: 24,
        fileno: 40,
        blkno: 44,
        MTIOCTOP,
        MTIOCGET,
      });
      const m = MTOp;
      expect(abi.ops).toEqual([m.FSF, m.BSF, m.FSR, m.BSR, m.WEOF, m.REW, m.OFFL, m.NOP, m.EOM, m.SETBLK, m.LOAD]);
      expect(abi.gmt).toEqual([GMT.EOF, GMT.BOT, GMT.EOT, GMT.SM, GMT.EOD, GMT.WR_PROT, GMT.ONLINE, GMT.DR_OPEN]);
      for (const [name, value] of Object.entries(abi.errno)) {
        expect(ERRNO[name as keyof typeof ERRNO], name).toBe(value);
      }
    } finally {
      cleanup();
    }
  });
});

describe("struct mtop and struct mtget", () => {
  it("encodes mtop little-endian with padding after the short", () => {
    expect([...encodeMtop(MTOp.SETBLK, 0)]).toEqual([20, 0, 0, 0, 0, 0, 0, 0]);
    expect([...encodeMtop(MTOp.FSF, 0x01020304)]).toEqual([1, 0, 0, 0, 4, 3, 2, 1]);
    expect(() => encodeMtop(MTOp.FSF, 0x8000_0000)).toThrow(RangeError);
    expect(() => encodeMtop(MTOp.FSF, -1)).toThrow(RangeError);
  });

  it("decodes mtget fields, including negative file numbers and the top gstat bit", () => {
    const buf = Buffer.alloc(MTGET_SIZE);
    buf.writeBigInt64LE(0x72n, 0); // MT_ISSCSI2
    buf.writeBigInt64LE(3n, 8);
    buf.writeBigInt64LE(BigInt((0x5a << 24) | 65536), 16); // density, block size 64 KiB
    buf.writeBigInt64LE(BigInt(GMT.EOF + GMT.ONLINE + GMT.WR_PROT), 24);
    buf.writeBigInt64LE(7n, 32);
    buf.writeInt32LE(-1, 40);
    buf.writeInt32LE(12, 44);
    const status = decodeMtget(buf);
    expect(status).toEqual({ type: 0x72, resid: 3, dsreg: (0x5a << 24) | 65536, gstat: GMT.EOF + GMT.ONLINE + GMT.WR_PROT, erreg: 7, fileNo: -1, blkNo: 12 });
    expect(blockSizeOf(status)).toBe(65536);
    expect(softErrorsOf(status)).toBe(7);
    expect(decodeGstat(status.gstat)).toEqual({
      eof: true,
      bot: false,
      eot: false,
      eod: false,
      writeProtected: true,
      online: true,
      doorOpen: false,
    });
    expect(decodeGstat(GMT.BOT + GMT.EOD + GMT.DR_OPEN + GMT.EOT)).toMatchObject({ bot: true, eod: true, doorOpen: true, eot: true, eof: false, online: false });
  });
});

describe("errno -> TapeError code", () => {
  it.each([
    ["ENOSPC", "write", "EOM"],
    ["EIO", "read", "IO"],
    ["EROFS", "open", "WRITE_PROTECT"],
    ["EACCES", "write", "WRITE_PROTECT"],
    ["EACCES", "open", "PERMISSION"],
    ["ENOMEDIUM", "open", "NO_TAPE_LOADED"],
    ["ENXIO", "open", "NO_TAPE_LOADED"],
    ["ENOENT", "open", "NO_DEVICE"],
    ["ENODEV", "open", "NO_DEVICE"],
    ["ENOTTY", "ioctl", "NO_DEVICE"],
    ["EBUSY", "open", "BUSY"],
    ["EINVAL", "ioctl", "ILLEGAL_ARGS"],
    ["ENOMEM", "read", "IO"],
    ["EWHATEVER", "read", "IO"],
  ] as const)("%s during %s -> %s", (errno, context, code) => {
    expect(tapeErrorCodeForErrno(errno, context)).toBe(code);
  });

  it("accepts raw errno numbers from FFI", () => {
    expect(tapeErrorCodeForErrno(ERRNO.ENOSPC, "write")).toBe("EOM");
    expect(tapeErrorCodeForErrno(ERRNO.ENOMEDIUM, "open")).toBe("NO_TAPE_LOADED");
    expect(tapeErrorCodeForErrno(9999, "read")).toBe("IO");
  });
});
