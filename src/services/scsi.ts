/**
 * SCSI interface (digest §2.6): open a configured changer and pass CDBs to it. One device, tape or
 * SCSI, per session; a changer open in another session is busy.
 */
import type { ScsiTarget } from "../devices/registry.ts";
import { SCSI_NDMP_ERROR_NAME, ScsiError, type ScsiDevice, type ScsiResult } from "../devices/changer/device.ts";
import { ErrorCode, Message, NdmpError, ScsiFlag } from "../protocol/codes.ts";
import { toBuffer, type Bytes } from "../protocol/xdr/codec.ts";
import { requireDevice } from "../security/scope.ts";
import type { Session } from "../server/session.ts";
import type { HandlerTable } from "./handler.ts";

const OK = ErrorCode.NO_ERR;
/** Far above any changer reply (READ ELEMENT STATUS of a big library is a few hundred KiB). */
export const MAX_SCSI_DATA_IN = 16 * 1024 * 1024;

export interface OpenScsi {
  target: ScsiTarget;
  device: ScsiDevice;
}

/** A ScsiError becomes the NDMP error it stands for; anything else propagates. */
export function scsiFailure(e: unknown): never {
  if (e instanceof ScsiError) throw new NdmpError(ErrorCode[SCSI_NDMP_ERROR_NAME[e.code] as keyof typeof ErrorCode], e.message);
  throw e;
}

function openScsi(s: Session): OpenScsi {
  if (!s.scsi) throw new NdmpError(ErrorCode.DEV_NOT_OPEN_ERR, "no SCSI device is open");
  return s.scsi;
}

const cleanupRegistered = new WeakSet<Session>();

async function open(s: Session, req: { device: Bytes }) {
  if (s.scsi) throw new NdmpError(ErrorCode.DEVICE_OPENED_ERR, `${s.scsi.target.config.name} is already open`);
  if (s.tape) throw new NdmpError(ErrorCode.DEVICE_OPENED_ERR, `tape ${s.tape.drive.config.name} is open in this session`);
  const name = toBuffer(req.device).toString("utf8");
  requireDevice(s.scope, s.authUser ?? "", name);
  const target = s.devices.changers.get(name);
  if (!target) throw new NdmpError(ErrorCode.NO_DEVICE_ERR, `no SCSI device named ${JSON.stringify(name)}`);
  if (target.owner && target.owner !== s) throw new NdmpError(ErrorCode.DEVICE_BUSY_ERR, `${name} is open in another session`);
  target.owner = s; // claimed before the await, so two sessions cannot race for it
  let device: ScsiDevice;
  try {
    device = await s.devices.openScsi(target);
  } catch (e) {
    target.owner = null;
    scsiFailure(e);
  }
  s.scsi = { target, device };
  if (!cleanupRegistered.has(s)) {
    cleanupRegistered.add(s);
    s.onClose(() => closeScsi(s));
  }
  s.log.info("SCSI device opened", { device: name });
  return { error: OK };
}

/** Closes the session's SCSI device; used by SCSI_CLOSE and session teardown. */
export async function closeScsi(s: Session): Promise<void> {
  const o = s.scsi;
  if (!o) return;
  s.scsi = undefined;
  try {
    await o.device.close();
  } finally {
    o.target.owner = null;
    s.log.info("SCSI device closed", { device: o.target.config.name });
  }
}

async function close(s: Session) {
  openScsi(s);
  try {
    await closeScsi(s);
  } catch (e) {
    scsiFailure(e);
  }
  return { error: OK };
}

function getState(s: Session) {
  openScsi(s);
  // v4 has no SCSI_SET_TARGET: the target is whatever the configured device is. A virtual library
  // has no bus address at all, so every field is -1 ("not applicable").
  return { error: OK, target_controller: -1, target_id: -1, target_lun: -1 };
}

async function reset(s: Session) {
  const o = openScsi(s);
  try {
    await o.device.reset();
  } catch (e) {
    scsiFailure(e);
  }
  return { error: OK };
}

export interface ExecuteCdbRequest {
  flags: number;
  timeout: number;
  datain_len: number;
  cdb: Buffer;
  dataout: Buffer;
}

/** The flags/data checks shared by SCSI_EXECUTE_CDB and TAPE_EXECUTE_CDB. */
export function checkExecuteCdb(req: ExecuteCdbRequest): { dataOut: Buffer; dataInLen: number } {
  if (req.flags & ~(ScsiFlag.DATA_IN | ScsiFlag.DATA_OUT)) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `unknown flags 0x${req.flags.toString(16)}`);
  const dataIn = (req.flags & ScsiFlag.DATA_IN) !== 0;
  const dataOutFlag = (req.flags & ScsiFlag.DATA_OUT) !== 0;
  if (dataIn && dataOutFlag) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "DATA_IN and DATA_OUT together");
  if (req.cdb.length === 0 || req.cdb.length > 260) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `a CDB of ${req.cdb.length} bytes`);
  if (dataIn && req.datain_len > MAX_SCSI_DATA_IN) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `datain_len ${req.datain_len} is over ${MAX_SCSI_DATA_IN}`);
  return { dataOut: dataOutFlag ? toBuffer(req.dataout) : Buffer.alloc(0), dataInLen: dataIn ? req.datain_len : 0 };
}

export function executeCdbReply(r: ScsiResult) {
  return { error: OK, status: r.status, dataout_len: r.dataOutLen, datain: r.dataIn, ext_sense: r.sense };
}

async function executeCdb(s: Session, req: ExecuteCdbRequest) {
  const o = openScsi(s);
  const { dataOut, dataInLen } = checkExecuteCdb(req);
  let result: ScsiResult;
  try {
    result = await o.device.execute(toBuffer(req.cdb), dataOut, dataInLen, req.timeout);
  } catch (e) {
    scsiFailure(e);
  }
  return executeCdbReply(result);
}

export const scsiHandlers: HandlerTable = {
  [Message.SCSI_OPEN]: { handle: open },
  [Message.SCSI_CLOSE]: { handle: close },
  [Message.SCSI_GET_STATE]: { handle: getState },
  [Message.SCSI_RESET_DEVICE]: { handle: reset },
  [Message.SCSI_EXECUTE_CDB]: { handle: executeCdb },
};
