/**
 * NDMP version 3 message bodies, with the v3 names (protocol digest §6.1). These are wire
 * shapes only: src/protocol/wire-v3.ts translates them to and from the internal (v4) model,
 * so no handler ever sees one of these objects.
 *
 * What differs from v4 on the wire: a TCP address is one `{ip_addr, port}` pair with no env,
 * addr_type 2 is FC; TAPE_GET_STATE has a trailing `partition`; MOVER_GET_STATE has no `mode`;
 * the halts carry `text_reason`; LOG_MESSAGE has no associated-message fields; LOG_FILE carries
 * an `ndmp_error`; SCSI_SET_TARGET and SCSI_RESET_BUS exist, the EXT_LIST messages do not.
 * Everything else is the v4 layout under v3 names (`invalid` for `unsupported`, `bu_type`,
 * `destination_dir`/`new_name`, `data_written`, `data_connection_addr` in LISTEN replies).
 */
import { Message } from "../codes.ts";
import { array, empty, enumT, i16, opaque, str, struct, u16, u32, u64, union, type Codec, type Infer } from "./codec.ts";
import { nlistCodec, type NlistLayout } from "./nlist.ts";
import { authAttr, authData, fileName, pval, type MessageSchema } from "./v4.ts";

// ---- shared types ----
export const tcpAddr3 = struct({ ip_addr: u32, port: u16 });
export const fcAddr3 = struct({ loop_id: u32 });
export const ipcAddr3 = struct({ comm_data: opaque() });
export const addr3 = union("addr_type", {
  0: null, // LOCAL
  1: ["tcp_addr", tcpAddr3], // one pair, not an array as in v4
  2: ["fc_addr", fcAddr3], // FC (RESERVED in v4)
  3: ["ipc_addr", ipcAddr3],
});
export type Addr3 = Infer<typeof addr3>;

const errorOnly = struct({ error: enumT });

// ---- CONFIG ----
export const butypeInfo3 = struct({ butype_name: str, default_env: array(pval), attrs: u32 });
export const fsInfo3 = struct({
  invalid: u32,
  fs_type: str,
  fs_logical_device: str,
  fs_physical_device: str,
  total_size: u64,
  used_size: u64,
  avail_size: u64,
  total_inodes: u64,
  used_inodes: u64,
  fs_env: array(pval),
  fs_status: str,
});
export const deviceCapability3 = struct({ device: str, attr: u32, capability: array(pval) });
export const deviceInfo3 = struct({ model: str, caplist: array(deviceCapability3) });

// ---- DATA ----
/** v3 `name`: same layout as v4, different meaning (digest §4.2; translated in wire-v3.ts). */
export const name3 = struct({
  original_path: str,
  destination_dir: str,
  new_name: str,
  other_name: str,
  node: u64,
  fh_info: u64,
});
export type NlistName3 = Infer<typeof name3>;
export const NLIST_V3: NlistLayout = { bytes: ["original_path", "destination_dir", "new_name", "other_name"], numbers: ["node", "fh_info"] };
const recoverRequest3 = struct({ env: array(pval), nlist: nlistCodec(name3, NLIST_V3), bu_type: str });

// ---- FH ----
export const fileStat3 = struct({
  invalid: u32,
  fs_type: enumT,
  ftype: enumT,
  mtime: u32,
  atime: u32,
  ctime: u32,
  owner: u32,
  group: u32,
  fattr: u32,
  size: u64,
  links: u32,
});
export const fhFile3 = struct({ names: array(fileName), stats: array(fileStat3), node: u64, fh_info: u64 });
export const fhDir3 = struct({ names: array(fileName), node: u64, parent: u64 });
export const fhNode3 = struct({ stats: array(fileStat3), node: u64, fh_info: u64 });

// ---- SCSI / TAPE execute_cdb (identical to v4) ----
const executeCdbRequest = struct({ flags: u32, timeout: u32, datain_len: u32, cdb: opaque(), dataout: opaque() });
const executeCdbReply = struct({ error: enumT, status: u32, dataout_len: u32, datain: opaque(), ext_sense: opaque() });

function m(code: number, request: Codec<any>, reply: Codec<any> | null, v3Name?: string): MessageSchema {
  const entry = Object.entries(Message).find(([, v]) => v === code);
  if (!entry) throw new Error(`unknown message code ${code}`);
  return { code, name: v3Name ?? entry[0], request, reply };
}

/** Every v3 message: the v4 table without 0x109/0x10A, plus SCSI_SET_TARGET and SCSI_RESET_BUS. */
export const v3Messages: MessageSchema[] = [
  // CONNECT
  m(Message.CONNECT_OPEN, struct({ protocol_version: u16 }), errorOnly),
  m(Message.CONNECT_CLIENT_AUTH, struct({ auth_data: authData }), errorOnly),
  m(Message.CONNECT_CLOSE, empty, null),
  m(Message.CONNECT_SERVER_AUTH, struct({ client_attr: authAttr }), struct({ error: enumT, server_result: authData })),
  // CONFIG
  m(Message.CONFIG_GET_HOST_INFO, empty, struct({ error: enumT, hostname: str, os_type: str, os_vers: str, hostid: str })),
  m(Message.CONFIG_GET_CONNECTION_TYPE, empty, struct({ error: enumT, addr_types: array(enumT) })),
  m(Message.CONFIG_GET_AUTH_ATTR, struct({ auth_type: enumT }), struct({ error: enumT, server_attr: authAttr })),
  m(Message.CONFIG_GET_BUTYPE_INFO, empty, struct({ error: enumT, butype_info: array(butypeInfo3) })),
  m(Message.CONFIG_GET_FS_INFO, empty, struct({ error: enumT, fs_info: array(fsInfo3) })),
  m(Message.CONFIG_GET_TAPE_INFO, empty, struct({ error: enumT, tape_info: array(deviceInfo3) })),
  m(Message.CONFIG_GET_SCSI_INFO, empty, struct({ error: enumT, scsi_info: array(deviceInfo3) })),
  m(
    Message.CONFIG_GET_SERVER_INFO,
    empty,
    struct({ error: enumT, vendor_name: str, product_name: str, revision_number: str, auth_type: array(enumT) }),
  ),
  // SCSI
  m(Message.SCSI_OPEN, struct({ device: str }), errorOnly),
  m(Message.SCSI_CLOSE, empty, errorOnly),
  m(Message.SCSI_GET_STATE, empty, struct({ error: enumT, target_controller: i16, target_id: i16, target_lun: i16 })),
  m(Message.SCSI_SET_TARGET, struct({ device: str, target_controller: u16, target_id: u16, target_lun: u16 }), errorOnly),
  m(Message.SCSI_RESET_DEVICE, empty, errorOnly),
  m(Message.SCSI_RESET_BUS, empty, errorOnly),
  m(Message.SCSI_EXECUTE_CDB, executeCdbRequest, executeCdbReply),
  // TAPE
  m(Message.TAPE_OPEN, struct({ device: str, mode: enumT }), errorOnly),
  m(Message.TAPE_CLOSE, empty, errorOnly),
  m(
    Message.TAPE_GET_STATE,
    empty,
    struct({
      invalid: u32,
      error: enumT,
      flags: u32,
      file_num: u32,
      soft_errors: u32,
      block_size: u32,
      blockno: u32,
      total_space: u64,
      space_remain: u64,
      partition: u32,
    }),
  ),
  m(Message.TAPE_MTIO, struct({ tape_op: enumT, count: u32 }), struct({ error: enumT, resid_count: u32 })),
  m(Message.TAPE_WRITE, struct({ data_out: opaque() }), struct({ error: enumT, count: u32 })),
  m(Message.TAPE_READ, struct({ count: u32 }), struct({ error: enumT, data_in: opaque() })),
  m(Message.TAPE_EXECUTE_CDB, executeCdbRequest, executeCdbReply),
  // DATA
  m(
    Message.DATA_GET_STATE,
    empty,
    struct({
      invalid: u32,
      error: enumT,
      operation: enumT,
      state: enumT,
      halt_reason: enumT,
      bytes_processed: u64,
      est_bytes_remain: u64,
      est_time_remain: u32,
      data_connection_addr: addr3,
      read_offset: u64,
      read_length: u64,
    }),
  ),
  m(Message.DATA_START_BACKUP, struct({ bu_type: str, env: array(pval) }), errorOnly),
  m(Message.DATA_START_RECOVER, recoverRequest3, errorOnly),
  m(Message.DATA_ABORT, empty, errorOnly),
  m(Message.DATA_GET_ENV, empty, struct({ error: enumT, env: array(pval) })),
  m(Message.DATA_STOP, empty, errorOnly),
  m(Message.DATA_LISTEN, struct({ addr_type: enumT }), struct({ error: enumT, data_connection_addr: addr3 })),
  m(Message.DATA_CONNECT, struct({ addr: addr3 }), errorOnly),
  // Not in the original v3 XDR; NDMJOB defines it for v3 ("same as V3.1") and sends it for -t.
  m(Message.DATA_START_RECOVER_FILEHIST, recoverRequest3, errorOnly),
  // NOTIFY (posts)
  m(Message.NOTIFY_DATA_HALTED, struct({ reason: enumT, text_reason: str }), null),
  m(Message.NOTIFY_CONNECTION_STATUS, struct({ reason: enumT, protocol_version: u16, text_reason: str }), null, "NOTIFY_CONNECTED"),
  m(Message.NOTIFY_MOVER_HALTED, struct({ reason: enumT, text_reason: str }), null),
  m(Message.NOTIFY_MOVER_PAUSED, struct({ reason: enumT, seek_position: u64 }), null),
  m(Message.NOTIFY_DATA_READ, struct({ offset: u64, length: u64 }), null),
  // LOG (posts)
  m(Message.LOG_FILE, struct({ name: str, error: enumT }), null),
  m(Message.LOG_MESSAGE, struct({ log_type: enumT, message_id: u32, entry: str }), null),
  // FH (posts)
  m(Message.FH_ADD_FILE, struct({ files: array(fhFile3) }), null),
  m(Message.FH_ADD_DIR, struct({ dirs: array(fhDir3) }), null),
  m(Message.FH_ADD_NODE, struct({ nodes: array(fhNode3) }), null),
  // MOVER
  m(
    Message.MOVER_GET_STATE,
    empty,
    struct({
      error: enumT,
      state: enumT,
      pause_reason: enumT,
      halt_reason: enumT,
      record_size: u32,
      record_num: u32,
      data_written: u64,
      seek_position: u64,
      bytes_left_to_read: u64,
      window_offset: u64,
      window_length: u64,
      data_connection_addr: addr3,
    }),
  ),
  m(Message.MOVER_LISTEN, struct({ mode: enumT, addr_type: enumT }), struct({ error: enumT, data_connection_addr: addr3 })),
  m(Message.MOVER_CONTINUE, empty, errorOnly),
  m(Message.MOVER_ABORT, empty, errorOnly),
  m(Message.MOVER_STOP, empty, errorOnly),
  m(Message.MOVER_SET_WINDOW, struct({ offset: u64, length: u64 }), errorOnly),
  m(Message.MOVER_READ, struct({ offset: u64, length: u64 }), errorOnly),
  m(Message.MOVER_CLOSE, empty, errorOnly),
  m(Message.MOVER_SET_RECORD_SIZE, struct({ len: u32 }), errorOnly),
  m(Message.MOVER_CONNECT, struct({ mode: enumT, addr: addr3 }), errorOnly),
];

export const v3ByCode = new Map(v3Messages.map((s) => [s.code, s]));
