// A real tape drive through the Linux SCSI tape driver (st), on a no-rewind node (/dev/nst0).
// Bytes move with node:fs on the file descriptor (asynchronous, on libuv's thread pool, so a slow
// drive does not stall the server); positioning and status use ioctl(MTIOCTOP / MTIOCGET) through
// bun:ffi. Under Node there is no FFI, and opening fails with NOT_SUPPORTED.
//
// Where st differs from the NDMP v4 rules, this file bridges the gap:
//   * A read that meets a filemark returns 0 bytes with st positioned *after* the filemark; v4
//     wants the position before it, so we space back over it (MTBSF 1) and report EOF.
//   * st spacing by records (MTFSR / MTBSR) crosses a filemark it meets (SCSI SPACE semantics);
//     the virtual tape and NDMJOB stop at it, so we step back over the filemark st crossed.
//   * st refuses to read a record into a smaller buffer (ENOMEM); we always read with a buffer of
//     at least readBufferSize and return the first maxLen bytes.
// ioctls run on a thread of their own per open drive (src/native/ioctl-async.ts): a rewind that
// takes a minute blocks that thread, not the event loop, so the other sessions go on.
import fs from "node:fs";
import { TapeDriveBase, type SpaceOp } from "./base.ts";
import { TapeError, type TapeOpenMode, type TapeState } from "./device.ts";
import {
  MTGET_SIZE,
  MTIOCGET,
  MTIOCTOP,
  MTOp,
  MT_COUNT_MAX,
  blockSizeOf,
  decodeGstat,
  decodeMtget,
  encodeMtop,
  softErrorsOf,
  tapeErrorCodeForErrno,
  type MtGet,
  type StContext,
} from "./mtio.ts";
import { loadNative } from "../../native/index.ts";
import type { IoctlApi } from "../../native/types.ts";
import { openIoctl, type AsyncIoctl } from "../../native/ioctl-async.ts";

/** The byte side of the drive; node:fs by default, replaceable in tests. */
export interface StIo {
  open(path: string, flags: number): Promise<number>;
  close(fd: number): Promise<void>;
  /** One read(2): one record in variable-block mode; 0 at a filemark or end of data. */
  read(fd: number, buf: Uint8Array): Promise<number>;
  /** One write(2): one record. */
  write(fd: number, data: Uint8Array): Promise<number>;
}

export const nodeStIo: StIo = {
  open: (path, flags) =>
    new Promise((resolve, reject) => fs.open(path, flags, (error, fd) => (error ? reject(error) : resolve(fd)))),
  close: (fd) => new Promise((resolve, reject) => fs.close(fd, (error) => (error ? reject(error) : resolve()))),
  read: (fd, buf) =>
    new Promise((resolve, reject) =>
      fs.read(fd, buf, 0, buf.length, null, (error, n) => (error ? reject(error) : resolve(n))),
    ),
  write: (fd, data) =>
    new Promise((resolve, reject) =>
      fs.write(fd, data, 0, data.length, null, (error, n) => (error ? reject(error) : resolve(n))),
    ),
};

export interface LinuxStTapeOptions {
  /** The device node, normally a no-rewind one: /dev/nst0. */
  path: string;
  name?: string;
  /** Defaults to the libc binding from src/native (Bun only). */
  ioctl?: IoctlApi | null;
  io?: StIo;
  /** Reads use at least this many bytes of buffer, so longer records still read (default 1 MiB). */
  readBufferSize?: number;
}

const DEFAULT_READ_BUFFER = 1024 * 1024;

export const ST_NEEDS_FFI = "st drives need the compiled ndmpd binary (bun:ffi)";

export class LinuxStTape extends TapeDriveBase {
  readonly name: string;
  readonly path: string;
  private readonly io: StIo;
  private readonly readBufferSize: number;
  private ioctlApi: IoctlApi | null | undefined;
  private fd: number | null = null;
  /** The drive's ioctl thread while it is open. */
  private thread: AsyncIoctl | undefined;

  constructor(options: LinuxStTapeOptions) {
    super();
    this.path = options.path;
    this.name = options.name ?? options.path;
    this.io = options.io ?? nodeStIo;
    this.ioctlApi = options.ioctl;
    this.readBufferSize = options.readBufferSize ?? DEFAULT_READ_BUFFER;
  }

  protected async doOpen(mode: TapeOpenMode): Promise<void> {
    const api = await this.resolveIoctl();
    const fd = await this.openNode(mode);
    this.fd = fd;
    try {
      this.thread = await openIoctl(api);
      await this.prepare(mode);
    } catch (error) {
      this.fd = null;
      await this.closeThread();
      await this.io.close(fd).catch(() => undefined);
      throw error;
    }
  }

  private async closeThread(): Promise<void> {
    const t = this.thread;
    this.thread = undefined;
    await t?.close();
  }

  protected async doClose(): Promise<void> {
    const fd = this.fd;
    this.fd = null;
    if (fd === null) return;
    await this.closeThread();
    try {
      await this.io.close(fd);
    } catch (error) {
      throw this.fromErrno(error, "ioctl", "close");
    }
  }

  protected async doWrite(data: Uint8Array): Promise<number> {
    let count: number;
    try {
      count = await this.io.write(this.requireFd(), data);
    } catch (error) {
      throw this.fromErrno(error, "write", "write");
    }
    if (count !== data.length) {
      throw new TapeError("IO", `${this.name}: short write (${count} of ${data.length} bytes)`);
    }
    return count;
  }

  protected async doRead(maxLen: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(Math.max(maxLen, this.readBufferSize));
    let count: number;
    try {
      count = await this.io.read(this.requireFd(), buf);
    } catch (error) {
      // st answers EIO to reads past end of data; anything else at EOD is a real error.
      if (errnoCode(error) === "EIO" && decodeGstat((await this.status()).gstat).eod) {
        throw new TapeError("EOM", `${this.name}: end of recorded data`);
      }
      throw this.fromErrno(error, "read", "read");
    }
    if (count > 0) return buf.subarray(0, Math.min(count, maxLen));
    // 0 bytes: a filemark (GMT_EOF) or blank tape. Without the filemark bit, do not move.
    if (!decodeGstat((await this.status()).gstat).eof) {
      throw new TapeError("EOM", `${this.name}: end of recorded data`);
    }
    // st is now past the filemark; v4 wants the position before it.
    await this.mtop(MTOp.BSF, 1);
    throw new TapeError("EOF", `${this.name}: filemark`);
  }

  protected async doWriteFilemarks(count: number): Promise<void> {
    let left = count;
    while (left > 0) {
      const chunk = Math.min(left, MT_COUNT_MAX);
      try {
        await this.mtop(MTOp.WEOF, chunk);
      } catch (error) {
        const resid = left - chunk + (await this.residAfterError(chunk));
        if (error instanceof TapeError) throw new TapeError(error.code, error.message, { resid, cause: error });
        throw error;
      }
      left -= chunk;
    }
  }

  protected async doSpace(op: SpaceOp, count: number): Promise<number> {
    let left = count;
    while (left > 0) {
      const chunk = Math.min(left, MT_COUNT_MAX);
      const resid = await this.spaceChunk(op, chunk);
      left -= chunk - resid;
      if (resid > 0) break;
    }
    return left;
  }

  protected async doRewind(): Promise<void> {
    await this.mtop(MTOp.REW, 1);
  }

  protected async doUnload(): Promise<void> {
    await this.mtop(MTOp.OFFL, 1);
  }

  protected async doTestUnitReady(): Promise<void> {
    const status = decodeGstat((await this.status()).gstat);
    if (!status.online || status.doorOpen) {
      throw new TapeError("NO_TAPE_LOADED", `${this.name}: no tape loaded (drive not ready)`);
    }
  }

  protected async doGetState(): Promise<TapeState> {
    const raw = (await this.status());
    const status = decodeGstat(raw.gstat);
    return {
      fileNum: raw.fileNo >= 0 ? raw.fileNo : undefined,
      blockNo: raw.blkNo >= 0 ? raw.blkNo : undefined,
      blockSize: blockSizeOf(raw),
      softErrors: softErrorsOf(raw),
      // Capacity needs LOG SENSE through SG_IO: not done, reported as unsupported.
      totalSpace: undefined,
      spaceRemain: undefined,
      writeProtected: status.writeProtected,
      noRewind: true,
      loaded: status.online && !status.doorOpen,
      atBOT: status.bot,
      atEOD: status.eod,
      pastLEOM: status.eot,
    };
  }

  // ---- helpers ----

  private async resolveIoctl(): Promise<IoctlApi> {
    if (this.ioctlApi === undefined) {
      const native = await loadNative();
      this.ioctlApi = native.ioctl;
      if (this.ioctlApi === null) {
        throw new TapeError("NOT_SUPPORTED", `${this.name}: ${ST_NEEDS_FFI}; ${native.reason ?? ""}`.trim());
      }
    }
    if (this.ioctlApi === null) throw new TapeError("NOT_SUPPORTED", `${this.name}: ${ST_NEEDS_FFI}`);
    return this.ioctlApi;
  }

  /**
   * READ opens read-only; RDWR read-write; RAW read-write without waiting for media (O_NONBLOCK),
   * falling back to read-only for a write-protected tape.
   */
  private async openNode(mode: TapeOpenMode): Promise<number> {
    const { O_RDONLY, O_RDWR, O_NONBLOCK } = fs.constants;
    const flags = mode === "READ" ? O_RDONLY : mode === "RDWR" ? O_RDWR : O_RDWR | O_NONBLOCK;
    try {
      return await this.io.open(this.path, flags);
    } catch (error) {
      if (mode === "RAW" && errnoCode(error) === "EROFS") {
        try {
          return await this.io.open(this.path, O_RDONLY | O_NONBLOCK);
        } catch (again) {
          throw this.fromErrno(again, "open", "open");
        }
      }
      throw this.fromErrno(error, "open", "open");
    }
  }

  /** Variable-block mode, and for READ/RDWR a ready drive (and a writable tape for RDWR). */
  private async prepare(mode: TapeOpenMode): Promise<void> {
    try {
      await this.mtop(MTOp.SETBLK, 0);
    } catch (error) {
      // ENOTTY: the path is not a tape drive at all. In RAW mode an empty drive may refuse.
      if (mode !== "RAW" || (error instanceof TapeError && error.code === "NO_DEVICE")) throw error;
    }
    if (mode === "RAW") return;
    const status = decodeGstat((await this.status()).gstat);
    if (!status.online || status.doorOpen) {
      throw new TapeError("NO_TAPE_LOADED", `${this.name}: no tape loaded`);
    }
    if (mode === "RDWR" && status.writeProtected) {
      throw new TapeError("WRITE_PROTECT", `${this.name}: the tape is write-protected`);
    }
  }

  /** One spacing ioctl; returns the part of count not done (hitting BOT, EOD or a filemark). */
  private async spaceChunk(op: SpaceOp, count: number): Promise<number> {
    const before = op === "FSR" || op === "BSR" ? (await this.status()) : null;
    try {
      await this.mtop(MTOp[op], count);
      return 0;
    } catch (error) {
      if (!(error instanceof TapeError) || (error.code !== "IO" && error.code !== "EOM")) throw error;
      const after = (await this.status());
      const resid = clampResid(after.resid, count);
      if (resid === 0) throw error; // it failed without stopping early: a real error
      if (before !== null && crossedFilemark(op, before, after)) {
        // st went over the filemark that stopped it; step back to its near side.
        await this.mtop(op === "FSR" ? MTOp.BSF : MTOp.FSF, 1);
      }
      return resid;
    }
  }

  private async residAfterError(count: number): Promise<number> {
    try {
      return clampResid((await this.status()).resid, count);
    } catch {
      return count;
    }
  }

  private async mtop(op: number, count: number): Promise<void> {
    await this.callIoctl(MTIOCTOP, encodeMtop(op, count), `MTIOCTOP op ${op}`);
  }

  private async status(): Promise<MtGet> {
    const buf = Buffer.alloc(MTGET_SIZE);
    await this.callIoctl(MTIOCGET, buf, "MTIOCGET");
    return decodeMtget(buf);
  }

  private async callIoctl(request: number, arg: Uint8Array, what: string): Promise<void> {
    const api = this.thread;
    if (!api) throw new TapeError("NOT_SUPPORTED", `${this.name}: ${ST_NEEDS_FFI}`);
    try {
      await api.ioctl(this.requireFd(), request, arg);
    } catch (error) {
      throw this.fromErrno(error, "ioctl", what);
    }
  }

  private requireFd(): number {
    if (this.fd === null) throw new TapeError("NOT_OPEN", `${this.name} is not open`);
    return this.fd;
  }

  private fromErrno(error: unknown, context: StContext, what: string): TapeError {
    if (error instanceof TapeError) return error;
    const code = errnoCode(error);
    if (code === undefined) {
      return new TapeError("IO", `${this.name}: ${what} failed: ${String(error)}`, { cause: error });
    }
    return new TapeError(tapeErrorCodeForErrno(code, context), `${this.name}: ${what} failed: ${code}`, {
      cause: error,
    });
  }
}

/** Node errors carry code "EIO"; NativeError carries code and errno; accept both. */
function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("E") ? code : undefined;
}

function clampResid(resid: number, count: number): number {
  return Math.max(0, Math.min(count, Math.trunc(resid)));
}

function crossedFilemark(op: SpaceOp, before: MtGet, after: MtGet): boolean {
  if (before.fileNo >= 0 && after.fileNo >= 0) {
    return op === "FSR" ? after.fileNo > before.fileNo : after.fileNo < before.fileNo;
  }
  return op === "FSR" && decodeGstat(after.gstat).eof;
}
