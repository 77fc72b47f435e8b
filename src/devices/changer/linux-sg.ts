// A real SCSI device (a tape library's changer, usually) through the Linux SCSI generic driver:
// /dev/sgN and the SG_IO ioctl with a struct sg_io_hdr (include/scsi/sg.h, version 3 interface).
// The struct carries pointers to the CDB, data and sense buffers, so this needs the native layer
// (bun:ffi, i.e. the compiled ndmpd binary); under Node opening a device fails with NOT_SUPPORTED.
//
// Note: SG_IO is synchronous: the server's event loop waits while the device works (a robot move
// can take tens of seconds). That is acceptable for the occasional changer command; the sg
// driver's write()/read() interface would be the way to make it asynchronous.
import fs from "node:fs";
import { ERRNO, loadNative, NativeError, type IoctlApi } from "../../native/index.ts";
import { openIoctl, type AsyncIoctl } from "../../native/ioctl-async.ts";
import { ScsiError, ScsiStatus, type ScsiDevice, type ScsiResult } from "./device.ts";

export const SG_IO = 0x2285;
export const SG_GET_VERSION_NUM = 0x2282;
export const SG_INTERFACE_ID = 0x53; // 'S'
export const SG_DXFER_NONE = -1;
export const SG_DXFER_TO_DEV = -2;
export const SG_DXFER_FROM_DEV = -3;
/** sizeof(struct sg_io_hdr) on x86_64 and aarch64 (LP64). */
export const SG_IO_HDR_SIZE = 88;
const SENSE_MAX = 252; // the most sense data SPC allows (8 + 244 additional bytes)
/** host_status values (DID_*) and driver_status bits we interpret. */
const DID_OK = 0x00;
const DID_NO_CONNECT = 0x01;
const DID_TIME_OUT = 0x03;
const DRIVER_TIMEOUT = 0x06;
const DRIVER_MASK = 0x0f;
/** Largest CDB the sg driver takes. */
const MAX_CDB = 16;
const MAX_DATA = 16 * 1024 * 1024;

export interface SgIoRequest {
  direction: number;
  cmdLen: number;
  mxSbLen: number;
  dxferLen: number;
  dxferp: bigint;
  cmdp: bigint;
  sbp: bigint;
  timeout: number;
  flags?: number;
  packId?: number;
}

export interface SgIoResult {
  status: number;
  maskedStatus: number;
  msgStatus: number;
  sbLenWr: number;
  hostStatus: number;
  driverStatus: number;
  resid: number;
  duration: number;
  info: number;
}

/** struct sg_io_hdr, LP64 layout (offsets in the comments), native (little-endian) byte order. */
export function encodeSgIoHdr(r: SgIoRequest): Buffer {
  const b = Buffer.alloc(SG_IO_HDR_SIZE);
  b.writeInt32LE(SG_INTERFACE_ID, 0); // interface_id
  b.writeInt32LE(r.direction, 4); // dxfer_direction
  b.writeUInt8(r.cmdLen, 8); // cmd_len
  b.writeUInt8(r.mxSbLen, 9); // mx_sb_len
  b.writeUInt16LE(0, 10); // iovec_count: one flat buffer
  b.writeUInt32LE(r.dxferLen, 12); // dxfer_len
  b.writeBigUInt64LE(r.dxferp, 16); // dxferp
  b.writeBigUInt64LE(r.cmdp, 24); // cmdp
  b.writeBigUInt64LE(r.sbp, 32); // sbp
  b.writeUInt32LE(r.timeout >>> 0, 40); // timeout, ms
  b.writeUInt32LE(r.flags ?? 0, 44); // flags
  b.writeInt32LE(r.packId ?? 0, 48); // pack_id; 4 bytes padding, then usr_ptr at 56 (0)
  return b;
}

export function decodeSgIoHdr(b: Buffer): SgIoResult {
  return {
    status: b.readUInt8(64),
    maskedStatus: b.readUInt8(65),
    msgStatus: b.readUInt8(66),
    sbLenWr: b.readUInt8(67),
    hostStatus: b.readUInt16LE(68),
    driverStatus: b.readUInt16LE(70),
    resid: b.readInt32LE(72),
    duration: b.readUInt32LE(76),
    info: b.readUInt32LE(80),
  };
}

/** NDMP timeout (ms, 0 = no limit) -> sg timeout (ms; UINT_MAX is "no timeout"). */
export function sgTimeout(ms: number): number {
  return ms === 0 ? 0xffffffff : Math.min(ms, 0xfffffffe);
}

/**
 * What the device did -> an NDMP reply, or a ScsiError when the command never reached the device
 * or did not finish (transport failure, timeout). CHECK CONDITION is a normal reply: its sense
 * goes back to the DMA.
 */
export function sgResult(r: SgIoResult, dataIn: Buffer, sense: Buffer, dataOutLen: number, direction: number): ScsiResult {
  if (r.hostStatus === DID_TIME_OUT || (r.driverStatus & DRIVER_MASK) === DRIVER_TIMEOUT) {
    throw new ScsiError("TIMEOUT", "the SCSI command timed out");
  }
  if (r.hostStatus === DID_NO_CONNECT) throw new ScsiError("NO_DEVICE", "the SCSI target does not answer");
  if (r.hostStatus !== DID_OK) throw new ScsiError("IO", `SCSI transport error (host status 0x${r.hostStatus.toString(16)})`);
  const resid = Math.max(0, r.resid);
  const inLen = direction === SG_DXFER_FROM_DEV ? Math.max(0, dataIn.length - resid) : 0;
  const outLen = direction === SG_DXFER_TO_DEV ? Math.max(0, dataOutLen - resid) : 0;
  return {
    status: r.status,
    dataIn: dataIn.subarray(0, inLen),
    sense: r.status === ScsiStatus.CHECK_CONDITION || r.sbLenWr > 0 ? sense.subarray(0, r.sbLenWr) : Buffer.alloc(0),
    dataOutLen: outLen,
  };
}

/** Opens /dev/sgN. Errors: NO_DEVICE (missing, not sg), BUSY, PERMISSION, NOT_SUPPORTED (no FFI). */
export async function openLinuxSg(path: string, name: string, ioctlApi?: IoctlApi | null): Promise<LinuxSgDevice> {
  const api = ioctlApi === undefined ? (await loadNative()).ioctl : ioctlApi;
  if (!api || !api.address) {
    throw new ScsiError("NOT_SUPPORTED", `${name}: SCSI pass-through needs the compiled ndmpd binary (bun:ffi); this runtime has no native calls`);
  }
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENXIO" || code === "ENODEV") throw new ScsiError("NO_DEVICE", `${name}: ${path} does not exist`, { cause: error });
    if (code === "EBUSY") throw new ScsiError("BUSY", `${name}: ${path} is in use`, { cause: error });
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") throw new ScsiError("PERMISSION", `${name}: no permission to open ${path}`, { cause: error });
    throw new ScsiError("IO", `${name}: cannot open ${path}: ${String(error)}`, { cause: error });
  }
  try {
    api.ioctl(fd, SG_GET_VERSION_NUM, Buffer.alloc(4));
  } catch (error) {
    fs.closeSync(fd);
    if (error instanceof NativeError && (error.errno === ERRNO.ENOTTY || error.errno === ERRNO.EINVAL)) {
      throw new ScsiError("NO_DEVICE", `${name}: ${path} is not a SCSI generic (sg) device`, { cause: error });
    }
    throw new ScsiError("IO", `${name}: ${path}: ${String(error)}`, { cause: error });
  }
  // SG_IO waits for the device, up to the DMA's timeout: on the device's own thread.
  return new LinuxSgDevice(name, path, fd, await openIoctl(api));
}

export class LinuxSgDevice implements ScsiDevice {
  private fd: number | null;

  constructor(
    readonly name: string,
    readonly path: string,
    fd: number,
    private readonly api: AsyncIoctl,
  ) {
    this.fd = fd;
  }

  async execute(cdb: Buffer, dataOut: Buffer, dataInLen: number, timeoutMs: number): Promise<ScsiResult> {
    if (this.fd === null) throw new ScsiError("IO", `${this.name} is closed`);
    if (cdb.length === 0 || cdb.length > MAX_CDB) throw new ScsiError("ILLEGAL_ARGS", `a CDB of ${cdb.length} bytes (1..${MAX_CDB})`);
    if (dataOut.length > 0 && dataInLen > 0) throw new ScsiError("ILLEGAL_ARGS", "data in and data out in one command");
    if (dataOut.length > MAX_DATA || dataInLen > MAX_DATA) throw new ScsiError("ILLEGAL_ARGS", `more than ${MAX_DATA} bytes of data`);
    const direction = dataOut.length > 0 ? SG_DXFER_TO_DEV : dataInLen > 0 ? SG_DXFER_FROM_DEV : SG_DXFER_NONE;
    // Private copies in shared memory: the kernel reads and writes through these addresses while
    // the call runs on the device's thread, and shared memory neither moves nor is copied.
    const cmd = this.api.shared(cdb.length);
    cmd.set(cdb);
    const data = this.api.shared(direction === SG_DXFER_TO_DEV ? dataOut.length : direction === SG_DXFER_FROM_DEV ? dataInLen : 0);
    if (direction === SG_DXFER_TO_DEV) data.set(dataOut);
    const sense = this.api.shared(SENSE_MAX);
    const hdr = encodeSgIoHdr({
      direction,
      cmdLen: cmd.length,
      mxSbLen: sense.length,
      dxferLen: data.length,
      dxferp: data.length > 0 ? this.api.address(data) : 0n,
      cmdp: this.api.address(cmd),
      sbp: this.api.address(sense),
      timeout: sgTimeout(timeoutMs),
    });
    try {
      await this.api.ioctl(this.fd, SG_IO, hdr);
    } catch (error) {
      throw new ScsiError("IO", `${this.name}: SG_IO failed: ${String(error)}`, { cause: error });
    }
    return sgResult(decodeSgIoHdr(hdr), data, sense, dataOut.length, direction);
  }

  /** SG_SCSI_RESET with SG_SCSI_RESET_DEVICE: a LUN reset of this device only. */
  async reset(): Promise<void> {
    if (this.fd === null) throw new ScsiError("IO", `${this.name} is closed`);
    const arg = Buffer.alloc(4);
    arg.writeInt32LE(1, 0); // SG_SCSI_RESET_DEVICE
    try {
      await this.api.ioctl(this.fd, 0x2284, arg); // SG_SCSI_RESET
    } catch (error) {
      throw new ScsiError("IO", `${this.name}: reset failed: ${String(error)}`, { cause: error });
    }
  }

  async close(): Promise<void> {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    await this.api.close();
    fs.closeSync(fd);
  }
}
