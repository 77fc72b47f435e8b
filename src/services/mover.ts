/**
 * MOVER interface (digest §2.9, §3.2): handlers only; the state machine and the data pump
 * are in src/mover/mover.ts, where each request checks the states the digest's table allows.
 */
import { ErrorCode, Message } from "../protocol/codes.ts";
import { MoverService } from "../mover/mover.ts";
import type { Addr } from "../protocol/xdr/v4.ts";
import type { Session } from "../server/session.ts";
import { dataTlsOf } from "../transport/tls.ts";
import type { HandlerTable } from "./handler.ts";

const OK = { error: ErrorCode.NO_ERR };

/** The session's mover, made on first use; it is aborted when the session ends. */
export function moverOf(s: Session): MoverService {
  if (s.mover) return s.mover;
  const mover = new MoverService({
    config: s.config,
    log: s.log.child({ service: "mover" }),
    get localAddress() {
      return s.localAddress;
    },
    get user() {
      return s.authUser;
    },
    dataTls: () => (s.dataTls ? dataTlsOf(s.config.tls) : undefined),
    get peer() {
      return s.peer;
    },
    deviceName: () => s.tape?.drive.config.name,
    // Fixed before any MOVER request runs: the first request after CONNECT_OPEN fixes it.
    version: s.version ?? s.config.versions[0]!,
    post: (code, body) => s.post(code, body),
    tape: () => (s.tape ? { device: s.tape.drive.device, writable: s.tape.mode !== "READ" } : undefined),
    connectLocalData: (mode) => s.data?.acceptLocalFromMover(mode),
  });
  s.mover = mover;
  s.onClose(() => mover.teardown());
  return mover;
}

export const moverHandlers: HandlerTable = {
  [Message.MOVER_GET_STATE]: { handle: (s) => moverOf(s).getState() },
  [Message.MOVER_SET_RECORD_SIZE]: { handle: (s, r: { len: number }) => (moverOf(s).setRecordSize(r.len), OK) },
  [Message.MOVER_SET_WINDOW]: {
    handle: (s, r: { offset: bigint; length: bigint }) => (moverOf(s).setWindow(r.offset, r.length), OK),
  },
  [Message.MOVER_LISTEN]: {
    handle: async (s, r: { mode: number; addr_type: number }) => ({
      error: ErrorCode.NO_ERR,
      connect_addr: await moverOf(s).listen(r.mode, r.addr_type),
    }),
  },
  [Message.MOVER_CONNECT]: {
    handle: async (s, r: { mode: number; addr: Addr }) => (await moverOf(s).connect(r.mode, r.addr), OK),
  },
  [Message.MOVER_READ]: { handle: (s, r: { offset: bigint; length: bigint }) => (moverOf(s).read(r.offset, r.length), OK) },
  [Message.MOVER_CONTINUE]: { handle: (s) => (moverOf(s).continue(), OK) },
  [Message.MOVER_ABORT]: { handle: async (s) => (await moverOf(s).abort(), OK) },
  [Message.MOVER_STOP]: { handle: (s) => (moverOf(s).stop(), OK) },
  [Message.MOVER_CLOSE]: { handle: (s) => (moverOf(s).close(), OK) },
};
