/**
 * DATA interface (digest §2.8, §3.1, §4): handlers only; the state machine, the data
 * connection and the jobs are in src/data/service.ts.
 */
import { DataService } from "../data/service.ts";
import { ErrorCode, Message } from "../protocol/codes.ts";
import type { Bytes } from "../protocol/xdr/codec.ts";
import type { Nlist } from "../protocol/xdr/nlist.ts";
import type { Addr, Pval } from "../protocol/xdr/v4.ts";
import type { Session } from "../server/session.ts";
import { dataTlsOf } from "../transport/tls.ts";
import { moverOf } from "./mover.ts";
import type { HandlerTable } from "./handler.ts";

const OK = { error: ErrorCode.NO_ERR };

/** The session's data service, made on first use; its job stops when the session ends. */
export function dataOf(s: Session): DataService {
  if (s.data instanceof DataService) return s.data;
  const data = new DataService({
    config: s.config,
    log: s.log.child({ service: "data" }),
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
    devices: () => [...(s.tape ? [s.tape.drive.config.name] : []), ...(s.scsi ? [s.scsi.target.config.name] : [])],
    post: (code, body) => s.post(code, body),
    drained: () => s.drained(),
    pace: () => s.pace(),
    takesRecords: () => s.takesRecords(),
    postRecord: (record) => s.postRecord(record),
    mover: () => moverOf(s),
  });
  s.data = data;
  s.onClose(() => data.teardown());
  return data;
}

interface RecoverRequest {
  env: Pval[];
  /** Decoded flat (src/protocol/xdr/nlist.ts), in v4 terms whatever the session's version. */
  nlist: Nlist;
  butype_name: Bytes;
}

export const dataHandlers: HandlerTable = {
  [Message.DATA_GET_STATE]: { handle: (s) => dataOf(s).getState() },
  [Message.DATA_LISTEN]: {
    handle: async (s, r: { addr_type: number }) => ({ error: ErrorCode.NO_ERR, connect_addr: await dataOf(s).listen(r.addr_type) }),
  },
  [Message.DATA_CONNECT]: { handle: async (s, r: { addr: Addr }) => (await dataOf(s).connect(r.addr), OK) },
  [Message.DATA_START_BACKUP]: {
    handle: (s, r: { butype_name: Bytes; env: Pval[] }) => (dataOf(s).startBackup(r.butype_name, r.env), OK),
  },
  [Message.DATA_START_RECOVER]: {
    handle: (s, r: RecoverRequest) => (dataOf(s).startRecover(r.butype_name, r.env, r.nlist, false), OK),
  },
  [Message.DATA_START_RECOVER_FILEHIST]: {
    handle: (s, r: RecoverRequest) => (dataOf(s).startRecover(r.butype_name, r.env, r.nlist, true), OK),
  },
  [Message.DATA_ABORT]: { handle: (s) => (dataOf(s).abort(), OK) },
  [Message.DATA_STOP]: { handle: (s) => (dataOf(s).stop(), OK) },
  [Message.DATA_GET_ENV]: { handle: (s) => dataOf(s).getEnv() },
};
