/**
 * TAPE interface (digest §2.7): open a configured drive, move it, read and write records.
 * While the session's mover owns the tape (LISTEN or ACTIVE) only TAPE_GET_STATE is allowed.
 */
import type { TapeDrive } from "../devices/registry.ts";
import { isTapeError, NDMP_ERROR_NAME, type TapeOpenMode } from "../devices/tape/device.ts";
import {
  ALL1,
  ALL1_32,
  ErrorCode,
  Message,
  MoverState,
  NdmpError,
  TapeMtioOp as Op,
  TapeOpenMode as Mode,
  TapeStateFlag,
  TapeStateUnsupported as U,
} from "../protocol/codes.ts";
import { toBuffer, type Bytes } from "../protocol/xdr/codec.ts";
import { requireDevice } from "../security/scope.ts";
import type { Session } from "../server/session.ts";
import { emulatedInquiry } from "../devices/changer/virtual.ts";
import type { HandlerTable } from "./handler.ts";
import { checkExecuteCdb, executeCdbReply, type ExecuteCdbRequest } from "./scsi.ts";

const OK = ErrorCode.NO_ERR;
/** The largest TAPE_READ we serve in one reply: far above any sane record, far below the message limit. */
export const MAX_TAPE_READ = 16 * 1024 * 1024;

export interface OpenTape {
  drive: TapeDrive;
  mode: TapeOpenMode;
}

/** A TapeError becomes the NDMP error it stands for; anything else propagates. */
export function tapeFailure(e: unknown): never {
  if (isTapeError(e)) throw new NdmpError(ErrorCode[NDMP_ERROR_NAME[e.code] as keyof typeof ErrorCode], e.message);
  throw e;
}

/** The open tape, or DEV_NOT_OPEN_ERR. */
export function openTape(s: Session): OpenTape {
  if (!s.tape) throw new NdmpError(ErrorCode.DEV_NOT_OPEN_ERR, "no tape is open");
  return s.tape;
}

/** Everything but GET_STATE waits while the mover owns the tape (LISTEN/ACTIVE). */
function tapeForUse(s: Session): OpenTape {
  const t = openTape(s);
  const state = s.mover?.state;
  if (state === MoverState.ACTIVE || state === MoverState.LISTEN) {
    throw new NdmpError(ErrorCode.DEVICE_BUSY_ERR, "the mover is using the tape");
  }
  return t;
}

const cleanupRegistered = new WeakSet<Session>();

const modeNames: Record<number, TapeOpenMode> = { [Mode.READ]: "READ", [Mode.RDWR]: "RDWR", [Mode.RAW]: "RAW" };

async function open(s: Session, req: { device: Bytes; mode: number }) {
  const mode = modeNames[req.mode];
  if (!mode) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `unknown open mode ${req.mode}`);
  if (s.tape) throw new NdmpError(ErrorCode.DEVICE_OPENED_ERR, `${s.tape.drive.config.name} is already open`);
  if (s.scsi) throw new NdmpError(ErrorCode.DEVICE_OPENED_ERR, `SCSI device ${s.scsi.target.config.name} is open in this session`);
  const name = toBuffer(req.device).toString("utf8");
  const drive = s.devices.findTape(name);
  // By its configured name, whatever the DMA called it (a drive may be opened by its path too).
  requireDevice(s.scope, s.authUser ?? "", drive?.config.name ?? name);
  if (!drive) throw new NdmpError(ErrorCode.NO_DEVICE_ERR, `no tape drive named ${JSON.stringify(name)}`);
  if (drive.owner && drive.owner !== s) throw new NdmpError(ErrorCode.DEVICE_BUSY_ERR, `${name} is open in another session`);
  drive.owner = s; // claimed before the await, so two sessions cannot race for the drive
  try {
    await drive.device.open(mode);
  } catch (e) {
    drive.owner = null;
    tapeFailure(e);
  }
  s.tape = { drive, mode };
  if (!cleanupRegistered.has(s)) {
    cleanupRegistered.add(s);
    // A session that ends with the tape open releases the drive (after its mover let go).
    s.onClose(async () => {
      await s.mover?.teardown();
      await closeTape(s);
    });
  }
  s.log.info("tape opened", { device: name, mode });
  return { error: OK };
}

/** Closes the session's tape and releases the drive; used by TAPE_CLOSE and session teardown. */
export async function closeTape(s: Session): Promise<void> {
  const t = s.tape;
  if (!t) return;
  s.tape = undefined;
  try {
    await t.drive.device.close();
  } finally {
    t.drive.owner = null;
    s.log.info("tape closed", { device: t.drive.config.name });
  }
}

async function close(s: Session) {
  tapeForUse(s);
  try {
    await closeTape(s);
  } catch (e) {
    tapeFailure(e);
  }
  return { error: OK };
}

async function getState(s: Session) {
  const t = openTape(s);
  let st;
  try {
    st = await t.drive.device.getState();
  } catch (e) {
    tapeFailure(e);
  }
  let unsupported = 0;
  const u32 = (v: number | undefined, bit: number) => {
    if (v === undefined) unsupported |= bit;
    return v === undefined ? ALL1_32 : Math.min(v, ALL1_32);
  };
  const u64 = (v: number | undefined, bit: number) => {
    if (v === undefined) unsupported |= bit;
    return v === undefined ? ALL1 : BigInt(v);
  };
  const reply = {
    unsupported: 0,
    error: OK,
    flags: (st.writeProtected ? TapeStateFlag.WR_PROT : 0) | (st.noRewind ? TapeStateFlag.NOREWIND : 0),
    file_num: u32(st.fileNum, U.FILE_NUM),
    soft_errors: u32(st.softErrors, U.SOFT_ERRORS),
    block_size: u32(st.blockSize, U.BLOCK_SIZE),
    blockno: u32(st.blockNo, U.BLOCKNO),
    total_space: u64(st.totalSpace, U.TOTAL_SPACE),
    space_remain: u64(st.spaceRemain, U.SPACE_REMAIN),
  };
  reply.unsupported = unsupported;
  return reply;
}

async function mtio(s: Session, req: { tape_op: number; count: number }) {
  const dev = tapeForUse(s).drive.device;
  const n = req.count;
  try {
    switch (req.tape_op) {
      case Op.FSF:
        return { error: OK, resid_count: await dev.fsf(n) };
      case Op.BSF:
        return { error: OK, resid_count: await dev.bsf(n) };
      case Op.FSR:
        return { error: OK, resid_count: await dev.fsr(n) };
      case Op.BSR:
        return { error: OK, resid_count: await dev.bsr(n) };
      case Op.REW:
        await dev.rewind();
        return { error: OK, resid_count: 0 };
      case Op.EOF:
        await dev.writeFilemarks(n);
        return { error: OK, resid_count: 0 };
      case Op.OFF:
        await dev.unload();
        return { error: OK, resid_count: 0 };
      case Op.TUR:
        await dev.testUnitReady();
        return { error: OK, resid_count: 0 };
      default:
        throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `unknown MTIO op ${req.tape_op}`);
    }
  } catch (e) {
    // A filemark write that stopped early still tells how many were not written.
    if (isTapeError(e) && req.tape_op === Op.EOF && e.resid > 0) {
      const code = ErrorCode[NDMP_ERROR_NAME[e.code] as keyof typeof ErrorCode];
      return { error: code, resid_count: e.resid };
    }
    tapeFailure(e);
  }
}

async function write(s: Session, req: { data_out: Buffer }) {
  const dev = tapeForUse(s).drive.device;
  try {
    return { error: OK, count: await dev.write(req.data_out) };
  } catch (e) {
    tapeFailure(e);
  }
}

async function read(s: Session, req: { count: number }) {
  const dev = tapeForUse(s).drive.device;
  if (req.count > MAX_TAPE_READ) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `count ${req.count} is over ${MAX_TAPE_READ}`);
  try {
    return { error: OK, data_in: await dev.read(req.count) };
  } catch (e) {
    tapeFailure(e);
  }
}

/**
 * The virtual drive answers INQUIRY (standard data, type 01h; VPD 00h, 80h serial, 83h) so a DMA
 * can match it to a library's drive element by serial; it has no other SCSI commands.
 */
function executeCdb(s: Session, req: ExecuteCdbRequest) {
  const t = tapeForUse(s);
  const { dataInLen } = checkExecuteCdb(req);
  if (t.drive.config.type !== "virtual" || req.cdb[0] !== 0x12) {
    throw new NdmpError(ErrorCode.NOT_SUPPORTED_ERR, `${t.drive.config.name}: SCSI pass-through is not available for this drive`);
  }
  const c = t.drive.config;
  const r = emulatedInquiry(req.cdb, { deviceType: 0x01, vendor: "NDMPD", product: "VIRTUAL TAPE", revision: "0001", serial: c.serial, removable: true });
  return executeCdbReply({ status: r.status, dataIn: r.data.subarray(0, dataInLen), sense: r.sense, dataOutLen: 0 });
}

export const tapeHandlers: HandlerTable = {
  [Message.TAPE_OPEN]: { handle: open },
  [Message.TAPE_CLOSE]: { handle: close },
  [Message.TAPE_GET_STATE]: { handle: getState },
  [Message.TAPE_MTIO]: { handle: mtio },
  [Message.TAPE_WRITE]: { handle: write },
  [Message.TAPE_READ]: { handle: read },
  [Message.TAPE_EXECUTE_CDB]: { handle: executeCdb },
};
