/**
 * NDMP version 4 message bodies (protocol digest §2). These shapes are also the server's
 * internal model: handlers see and return exactly these objects, and the v3 codec translates
 * to and from them at the edge.
 */
import { Message } from "../codes.ts";
import {
  array,
  empty,
  enumT,
  fixed,
  i16,
  str,
  struct,
  u16,
  u32,
  u64,
  union,
  opaque,
  type Codec,
  type Infer,
} from "./codec.ts";
import { nlistCodec, type NlistLayout } from "./nlist.ts";

// ---- shared types (§2.3) ----
export const pval = struct({ name: str, value: str });
export type Pval = Infer<typeof pval>;

export const tcpAddr = struct({ ip_addr: u32, port: u16, addr_env: array(pval) });
export type TcpAddr = Infer<typeof tcpAddr>;
export const ipcAddr = struct({ comm_data: opaque() });

export const addr = union("addr_type", {
  0: null, // LOCAL
  1: ["tcp_addr", array(tcpAddr)],
  3: ["ipc_addr", ipcAddr],
});
export type Addr = Infer<typeof addr>;

export const fileName = union(
  "fs_type",
  { 0: ["unix_name", str], 1: ["nt_name", struct({ nt_path: str, dos_path: str })] },
  ["other_name", str],
);
export type FileName = Infer<typeof fileName>;

// ---- authentication (§1.7) ----
export const authAttr = union("auth_type", { 0: null, 1: null, 2: ["challenge", fixed(64)] });
export const authData = union("auth_type", {
  0: null,
  1: ["auth_text", struct({ auth_id: str, auth_password: str })],
  2: ["auth_md5", struct({ auth_id: str, auth_digest: fixed(16) })],
});
export type AuthData = Infer<typeof authData>;

const errorOnly = struct({ error: enumT });

// ---- CONFIG (§2.5) ----
export const butypeInfo = struct({ butype_name: str, default_env: array(pval), attrs: u32 });
export type ButypeInfo = Infer<typeof butypeInfo>;
export const fsInfo = struct({
  unsupported: u32,
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
export type FsInfo = Infer<typeof fsInfo>;
export const deviceCapability = struct({ device: str, attr: u32, capability: array(pval) });
export const deviceInfo = struct({ model: str, caplist: array(deviceCapability) });
export type DeviceInfo = Infer<typeof deviceInfo>;
export const classList = struct({ class_id: u16, class_version: array(u16) });
export const classVersion = struct({ class_id: u16, class_version: u16 });

// ---- DATA (§2.8) ----
export const name = struct({
  original_path: str,
  destination_path: str,
  name: str,
  other_name: str,
  node: u64,
  fh_info: u64,
});
export type NlistName = Infer<typeof name>;
export const NLIST_V4: NlistLayout = { bytes: ["original_path", "destination_path", "name", "other_name"], numbers: ["node", "fh_info"] };
/** The nlist decodes flat (nlist.ts): a million entries are not a million objects. */
const recoverRequest = struct({ env: array(pval), nlist: nlistCodec(name, NLIST_V4), butype_name: str });

// ---- FH (§2.12) ----
export const fileStat = struct({
  unsupported: u32,
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
export type FileStat = Infer<typeof fileStat>;
export const fhFile = struct({ names: array(fileName), stats: array(fileStat), node: u64, fh_info: u64 });
export const fhDir = struct({ names: array(fileName), node: u64, parent: u64 });
export const fhNode = struct({ stats: array(fileStat), node: u64, fh_info: u64 });
export type FhFile = Infer<typeof fhFile>;
export type FhDir = Infer<typeof fhDir>;
export type FhNode = Infer<typeof fhNode>;

// ---- SCSI / TAPE execute_cdb ----
const executeCdbRequest = struct({ flags: u32, timeout: u32, datain_len: u32, cdb: opaque(), dataout: opaque() });
const executeCdbReply = struct({
  error: enumT,
  status: u32, // u_char, four bytes on the wire
  dataout_len: u32,
  datain: opaque(),
  ext_sense: opaque(),
});

export interface MessageSchema {
  code: number;
  name: string;
  /** Request (or post) body; `empty` when there is none. */
  request: Codec<any>;
  /** Reply body; null for posts and for CONNECT_CLOSE, which get no reply. */
  reply: Codec<any> | null;
}

function m(code: number, request: Codec<any>, reply: Codec<any> | null): MessageSchema {
  const entry = Object.entries(Message).find(([, v]) => v === code);
  if (!entry) throw new Error(`unknown message code ${code}`);
  return { code, name: entry[0], request, reply };
}

/** Every v4 message in the digest's table. */
export const v4Messages: MessageSchema[] = [
  // CONNECT
  m(Message.CONNECT_OPEN, struct({ protocol_version: u16 }), errorOnly),
  m(Message.CONNECT_CLIENT_AUTH, struct({ auth_data: authData }), errorOnly),
  m(Message.CONNECT_CLOSE, empty, null),
  m(Message.CONNECT_SERVER_AUTH, struct({ client_attr: authAttr }), struct({ error: enumT, server_result: authData })),
  // CONFIG
  m(
    Message.CONFIG_GET_HOST_INFO,
    empty,
    struct({ error: enumT, hostname: str, os_type: str, os_vers: str, hostid: str }),
  ),
  m(Message.CONFIG_GET_CONNECTION_TYPE, empty, struct({ error: enumT, addr_types: array(enumT) })),
  m(Message.CONFIG_GET_AUTH_ATTR, struct({ auth_type: enumT }), struct({ error: enumT, server_attr: authAttr })),
  m(Message.CONFIG_GET_BUTYPE_INFO, empty, struct({ error: enumT, butype_info: array(butypeInfo) })),
  m(Message.CONFIG_GET_FS_INFO, empty, struct({ error: enumT, fs_info: array(fsInfo) })),
  m(Message.CONFIG_GET_TAPE_INFO, empty, struct({ error: enumT, tape_info: array(deviceInfo) })),
  m(Message.CONFIG_GET_SCSI_INFO, empty, struct({ error: enumT, scsi_info: array(deviceInfo) })),
  m(
    Message.CONFIG_GET_SERVER_INFO,
    empty,
    struct({ error: enumT, vendor_name: str, product_name: str, revision_number: str, auth_type: array(enumT) }),
  ),
  m(Message.CONFIG_SET_EXT_LIST, struct({ ndmp_selected_ext: array(classVersion) }), errorOnly),
  m(Message.CONFIG_GET_EXT_LIST, empty, struct({ error: enumT, class_list: array(classList) })),
  // SCSI
  m(Message.SCSI_OPEN, struct({ device: str }), errorOnly),
  m(Message.SCSI_CLOSE, empty, errorOnly),
  m(
    Message.SCSI_GET_STATE,
    empty,
    struct({ error: enumT, target_controller: i16, target_id: i16, target_lun: i16 }),
  ),
  m(Message.SCSI_RESET_DEVICE, empty, errorOnly),
  m(Message.SCSI_EXECUTE_CDB, executeCdbRequest, executeCdbReply),
  // TAPE
  m(Message.TAPE_OPEN, struct({ device: str, mode: enumT }), errorOnly),
  m(Message.TAPE_CLOSE, empty, errorOnly),
  m(
    Message.TAPE_GET_STATE,
    empty,
    struct({
      unsupported: u32,
      error: enumT,
      flags: u32,
      file_num: u32,
      soft_errors: u32,
      block_size: u32,
      blockno: u32,
      total_space: u64,
      space_remain: u64,
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
      unsupported: u32,
      error: enumT,
      operation: enumT,
      state: enumT,
      halt_reason: enumT,
      bytes_processed: u64,
      est_bytes_remain: u64,
      est_time_remain: u32,
      data_connection_addr: addr,
      read_offset: u64,
      read_length: u64,
    }),
  ),
  m(Message.DATA_START_BACKUP, struct({ butype_name: str, env: array(pval) }), errorOnly),
  m(Message.DATA_START_RECOVER, recoverRequest, errorOnly),
  m(Message.DATA_ABORT, empty, errorOnly),
  m(Message.DATA_GET_ENV, empty, struct({ error: enumT, env: array(pval) })),
  m(Message.DATA_STOP, empty, errorOnly),
  m(Message.DATA_LISTEN, struct({ addr_type: enumT }), struct({ error: enumT, connect_addr: addr })),
  m(Message.DATA_CONNECT, struct({ addr }), errorOnly),
  m(Message.DATA_START_RECOVER_FILEHIST, recoverRequest, errorOnly),
  // NOTIFY (posts)
  m(Message.NOTIFY_DATA_HALTED, struct({ reason: enumT }), null),
  m(
    Message.NOTIFY_CONNECTION_STATUS,
    struct({ reason: enumT, protocol_version: u16, text_reason: str }),
    null,
  ),
  m(Message.NOTIFY_MOVER_HALTED, struct({ reason: enumT }), null),
  m(Message.NOTIFY_MOVER_PAUSED, struct({ reason: enumT, seek_position: u64 }), null),
  m(Message.NOTIFY_DATA_READ, struct({ offset: u64, length: u64 }), null),
  // LOG (posts)
  m(Message.LOG_FILE, struct({ name: str, recovery_status: enumT }), null),
  m(
    Message.LOG_MESSAGE,
    struct({
      log_type: enumT,
      message_id: u32,
      entry: str,
      associated_message_valid: enumT,
      associated_message_sequence: u32,
    }),
    null,
  ),
  // FH (posts)
  m(Message.FH_ADD_FILE, struct({ files: array(fhFile) }), null),
  m(Message.FH_ADD_DIR, struct({ dirs: array(fhDir) }), null),
  m(Message.FH_ADD_NODE, struct({ nodes: array(fhNode) }), null),
  // MOVER
  m(
    Message.MOVER_GET_STATE,
    empty,
    struct({
      error: enumT,
      mode: enumT,
      state: enumT,
      pause_reason: enumT,
      halt_reason: enumT,
      record_size: u32,
      record_num: u32,
      bytes_moved: u64,
      seek_position: u64,
      bytes_left_to_read: u64,
      window_offset: u64,
      window_length: u64,
      data_connection_addr: addr,
    }),
  ),
  m(Message.MOVER_LISTEN, struct({ mode: enumT, addr_type: enumT }), struct({ error: enumT, connect_addr: addr })),
  m(Message.MOVER_CONTINUE, empty, errorOnly),
  m(Message.MOVER_ABORT, empty, errorOnly),
  m(Message.MOVER_STOP, empty, errorOnly),
  m(Message.MOVER_SET_WINDOW, struct({ offset: u64, length: u64 }), errorOnly),
  m(Message.MOVER_READ, struct({ offset: u64, length: u64 }), errorOnly),
  m(Message.MOVER_CLOSE, empty, errorOnly),
  m(Message.MOVER_SET_RECORD_SIZE, struct({ len: u32 }), errorOnly),
  m(Message.MOVER_CONNECT, struct({ mode: enumT, addr }), errorOnly),
];

export const v4ByCode = new Map(v4Messages.map((s) => [s.code, s]));
