// The Linux magnetic-tape ioctl ABI (<sys/mtio.h>, x86_64 and other LP64 targets), as pure
// functions: request numbers, struct mtop encoding, struct mtget decoding, status bits, and the
// errno -> TapeError mapping used by linux-st.ts.
import { errnoName } from "../../native/errno.ts";
import type { TapeErrorCode } from "./device.ts";

// ---- ioctl request numbers: _IOC(dir, type, nr, size) from <asm-generic/ioctl.h> ----
export const IOC_NONE = 0;
export const IOC_WRITE = 1;
export const IOC_READ = 2;

export function ioc(dir: number, type: number, nr: number, size: number): number {
  // dir:2 bits at 30, size:14 bits at 16, type:8 at 8, nr:8 at 0; kept unsigned.
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}

/** struct mtop { short mt_op; int mt_count; }: 2 + 2 padding + 4. */
export const MTOP_SIZE = 8;
/** struct mtget: five longs (8 bytes each on LP64), then two __daddr_t (int). */
export const MTGET_SIZE = 48;

/** _IOW('m', 1, struct mtop) */
export const MTIOCTOP = 0x40086d01;
/** _IOR('m', 2, struct mtget) */
export const MTIOCGET = 0x80306d02;

// ---- mt_op values ----
export const MTOp = {
  FSF: 1,
  BSF: 2,
  FSR: 3,
  BSR: 4,
  WEOF: 5,
  REW: 6,
  OFFL: 7,
  NOP: 8,
  EOM: 12,
  SETBLK: 20,
  LOAD: 30,
} as const;

export type MTOpName = keyof typeof MTOp;

/** mt_count is a C int; larger NDMP counts are sent in pieces of this size. */
export const MT_COUNT_MAX = 0x7fff_ffff;

export function encodeMtop(op: number, count: number): Buffer {
  if (!Number.isInteger(count) || count < 0 || count > MT_COUNT_MAX) {
    throw new RangeError(`mt_count out of range: ${count}`);
  }
  const buf = Buffer.alloc(MTOP_SIZE);
  buf.writeInt16LE(op, 0);
  buf.writeInt32LE(count, 4);
  return buf;
}

// ---- struct mtget ----
export interface MtGet {
  type: number;
  /** Residual count of the last operation (records or files not done, bytes not read). */
  resid: number;
  /** SCSI tapes: block size (0 = variable) in the low 24 bits, density code in the top 8. */
  dsreg: number;
  gstat: number;
  /** SCSI tapes: the soft (recovered) error count in the low 16 bits. */
  erreg: number;
  /** -1 when the driver has lost track. */
  fileNo: number;
  blkNo: number;
}

export function decodeMtget(buf: Uint8Array): MtGet {
  if (buf.length < MTGET_SIZE) throw new RangeError(`struct mtget needs ${MTGET_SIZE} bytes`);
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const long = (at: number): number => Number(view.readBigInt64LE(at));
  return {
    type: long(0),
    resid: long(8),
    dsreg: long(16),
    gstat: long(24),
    erreg: long(32),
    fileNo: view.readInt32LE(40),
    blkNo: view.readInt32LE(44),
  };
}

export const MT_ST_BLKSIZE_MASK = 0xffffff;
export const MT_ST_SOFTERR_MASK = 0xffff;

// ---- mt_gstat generic status bits (GMT_* macros) ----
export const GMT = {
  EOF: 0x80000000,
  BOT: 0x40000000,
  EOT: 0x20000000,
  SM: 0x10000000,
  EOD: 0x08000000,
  WR_PROT: 0x04000000,
  ONLINE: 0x01000000,
  DR_OPEN: 0x00040000,
  IM_REP_EN: 0x00010000,
} as const;

export interface TapeStatus {
  /** Just after a filemark (a read returned 0 because of it). */
  eof: boolean;
  bot: boolean;
  /** Early warning / end of tape. */
  eot: boolean;
  eod: boolean;
  writeProtected: boolean;
  online: boolean;
  doorOpen: boolean;
}

function bit(gstat: number, mask: number): boolean {
  // gstat arrives as a (positive) long; the top bit does not fit a signed 32-bit value.
  return Math.floor(gstat / mask) % 2 === 1;
}

export function decodeGstat(gstat: number): TapeStatus {
  return {
    eof: bit(gstat, GMT.EOF),
    bot: bit(gstat, GMT.BOT),
    eot: bit(gstat, GMT.EOT),
    eod: bit(gstat, GMT.EOD),
    writeProtected: bit(gstat, GMT.WR_PROT),
    online: bit(gstat, GMT.ONLINE),
    doorOpen: bit(gstat, GMT.DR_OPEN),
  };
}

export function blockSizeOf(status: MtGet): number {
  return status.dsreg & MT_ST_BLKSIZE_MASK;
}

export function softErrorsOf(status: MtGet): number {
  return status.erreg & MT_ST_SOFTERR_MASK;
}

// ---- errno -> TapeErrorCode ----

/** Where the error came from: open and write differ for EACCES, read for ENOMEM. */
export type StContext = "open" | "read" | "write" | "ioctl";

/** Accepts Node's error codes ("ENOSPC") and raw numbers from FFI. */
export function tapeErrorCodeForErrno(errno: string | number, context: StContext): TapeErrorCode {
  const name = typeof errno === "number" ? errnoName(errno) : errno;
  switch (name) {
    case "ENOSPC":
      return "EOM";
    case "EROFS":
      return "WRITE_PROTECT";
    case "EACCES":
    case "EPERM":
      // st refuses writes to a protected tape with EACCES; at open, EACCES is the device node's
      // permissions (a write-protected tape opened for writing gives EROFS there).
      return context === "open" ? "PERMISSION" : "WRITE_PROTECT";
    case "ENOMEDIUM":
    case "ENXIO":
      return "NO_TAPE_LOADED";
    case "ENOENT":
    case "ENODEV":
    case "ENOTDIR":
      return "NO_DEVICE";
    case "EBUSY":
      return "BUSY";
    case "EINVAL":
    case "EOVERFLOW":
    case "EFBIG":
      return "ILLEGAL_ARGS";
    case "ENOTTY":
      // an ioctl st does not know: not a tape device at all
      return "NO_DEVICE";
    default:
      // EIO, ENOMEM (a record larger than the read buffer), and anything unexpected
      return "IO";
  }
}

