/**
 * NDMP numbers: message codes, error codes and enums, with the spec's names
 * (protocol digest §2; v4 values unless a name says otherwise).
 */

export const MessageType = { REQUEST: 0, REPLY: 1 } as const;

export const Message = {
  CONNECT_OPEN: 0x900,
  CONNECT_CLIENT_AUTH: 0x901,
  CONNECT_CLOSE: 0x902,
  CONNECT_SERVER_AUTH: 0x903,

  CONFIG_GET_HOST_INFO: 0x100,
  CONFIG_GET_CONNECTION_TYPE: 0x102,
  CONFIG_GET_AUTH_ATTR: 0x103,
  CONFIG_GET_BUTYPE_INFO: 0x104,
  CONFIG_GET_FS_INFO: 0x105,
  CONFIG_GET_TAPE_INFO: 0x106,
  CONFIG_GET_SCSI_INFO: 0x107,
  CONFIG_GET_SERVER_INFO: 0x108,
  CONFIG_SET_EXT_LIST: 0x109,
  CONFIG_GET_EXT_LIST: 0x10a,

  SCSI_OPEN: 0x200,
  SCSI_CLOSE: 0x201,
  SCSI_GET_STATE: 0x202,
  SCSI_SET_TARGET: 0x203, // v2/v3 only
  SCSI_RESET_DEVICE: 0x204,
  SCSI_RESET_BUS: 0x205, // v2/v3 only
  SCSI_EXECUTE_CDB: 0x206,

  TAPE_OPEN: 0x300,
  TAPE_CLOSE: 0x301,
  TAPE_GET_STATE: 0x302,
  TAPE_MTIO: 0x303,
  TAPE_WRITE: 0x304,
  TAPE_READ: 0x305,
  TAPE_EXECUTE_CDB: 0x307,

  DATA_GET_STATE: 0x400,
  DATA_START_BACKUP: 0x401,
  DATA_START_RECOVER: 0x402,
  DATA_ABORT: 0x403,
  DATA_GET_ENV: 0x404,
  DATA_STOP: 0x407,
  DATA_LISTEN: 0x409,
  DATA_CONNECT: 0x40a,
  DATA_START_RECOVER_FILEHIST: 0x40b,

  NOTIFY_DATA_HALTED: 0x501,
  NOTIFY_CONNECTION_STATUS: 0x502,
  NOTIFY_MOVER_HALTED: 0x503,
  NOTIFY_MOVER_PAUSED: 0x504,
  NOTIFY_DATA_READ: 0x505,

  LOG_FILE: 0x602,
  LOG_MESSAGE: 0x603,

  FH_ADD_FILE: 0x703,
  FH_ADD_DIR: 0x704,
  FH_ADD_NODE: 0x705,

  MOVER_GET_STATE: 0xa00,
  MOVER_LISTEN: 0xa01,
  MOVER_CONTINUE: 0xa02,
  MOVER_ABORT: 0xa03,
  MOVER_STOP: 0xa04,
  MOVER_SET_WINDOW: 0xa05,
  MOVER_READ: 0xa06,
  MOVER_CLOSE: 0xa07,
  MOVER_SET_RECORD_SIZE: 0xa08,
  MOVER_CONNECT: 0xa09,
} as const;
export type MessageName = keyof typeof Message;

const messageNames = new Map<number, string>(Object.entries(Message).map(([k, v]) => [v, k]));
export function messageName(code: number): string {
  return messageNames.get(code) ?? `0x${code.toString(16)}`;
}

export const ErrorCode = {
  NO_ERR: 0,
  NOT_SUPPORTED_ERR: 1,
  DEVICE_BUSY_ERR: 2,
  DEVICE_OPENED_ERR: 3,
  NOT_AUTHORIZED_ERR: 4,
  PERMISSION_ERR: 5,
  DEV_NOT_OPEN_ERR: 6,
  IO_ERR: 7,
  TIMEOUT_ERR: 8,
  ILLEGAL_ARGS_ERR: 9,
  NO_TAPE_LOADED_ERR: 10,
  WRITE_PROTECT_ERR: 11,
  EOF_ERR: 12,
  EOM_ERR: 13,
  FILE_NOT_FOUND_ERR: 14,
  BAD_FILE_ERR: 15,
  NO_DEVICE_ERR: 16,
  NO_BUS_ERR: 17,
  XDR_DECODE_ERR: 18,
  ILLEGAL_STATE_ERR: 19,
  UNDEFINED_ERR: 20,
  XDR_ENCODE_ERR: 21,
  NO_MEM_ERR: 22,
  CONNECT_ERR: 23,
  SEQUENCE_NUM_ERR: 24,
  READ_IN_PROGRESS_ERR: 25,
  PRECONDITION_ERR: 26,
  CLASS_NOT_SUPPORTED_ERR: 27,
  VERSION_NOT_SUPPORTED_ERR: 28,
  EXT_DUPL_CLASSES_ERR: 29,
  EXT_DANDN_ILLEGAL_ERR: 30,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const errorNames = new Map<number, string>(Object.entries(ErrorCode).map(([k, v]) => [v, k]));
export function errorName(code: number): string {
  return errorNames.get(code) ?? `error ${code}`;
}

/** What a handler throws to answer with an error in the reply body. */
export class NdmpError extends Error {
  override name = "NdmpError";
  constructor(
    readonly code: ErrorCode,
    message?: string,
  ) {
    super(message ? `${errorName(code)}: ${message}` : errorName(code));
  }
}

export const AuthType = { NONE: 0, TEXT: 1, MD5: 2 } as const;
export const AddrType = { LOCAL: 0, TCP: 1, RESERVED: 2, IPC: 3 } as const;
export const FsType = { UNIX: 0, NT: 1, OTHER: 2 } as const;
export const ConnectionStatusReason = { CONNECTED: 0, SHUTDOWN: 1, REFUSED: 2 } as const;

/** CONFIG_GET_BUTYPE_INFO attrs (v4). */
export const ButypeAttr = {
  BACKUP_FILELIST: 0x0002,
  RECOVER_FILELIST: 0x0004,
  BACKUP_DIRECT: 0x0008,
  RECOVER_DIRECT: 0x0010,
  BACKUP_INCREMENTAL: 0x0020,
  RECOVER_INCREMENTAL: 0x0040,
  BACKUP_UTF8: 0x0080,
  RECOVER_UTF8: 0x0100,
  BACKUP_FH_FILE: 0x0200,
  BACKUP_FH_DIR: 0x0400,
  RECOVER_FILEHIST: 0x0800,
  RECOVER_FH_FILE: 0x1000,
  RECOVER_FH_DIR: 0x2000,
} as const;

export const FsInfoUnsupported = {
  TOTAL_SIZE: 0x1,
  USED_SIZE: 0x2,
  AVAIL_SIZE: 0x4,
  TOTAL_INODES: 0x8,
  USED_INODES: 0x10,
} as const;

export const TapeOpenMode = { READ: 0, RDWR: 1, RAW: 2 } as const;
export const TapeAttr = { REWIND: 0x1, UNLOAD: 0x2, RAW: 0x4 } as const;
export const TapeStateFlag = { NOREWIND: 0x8, WR_PROT: 0x10, ERROR: 0x20, UNLOAD: 0x40 } as const;
export const TapeStateUnsupported = {
  FILE_NUM: 0x1,
  SOFT_ERRORS: 0x2,
  BLOCK_SIZE: 0x4,
  BLOCKNO: 0x8,
  TOTAL_SPACE: 0x10,
  SPACE_REMAIN: 0x20,
} as const;
export const TapeMtioOp = { FSF: 0, BSF: 1, FSR: 2, BSR: 3, REW: 4, EOF: 5, OFF: 6, TUR: 7 } as const;

export const ScsiFlag = { DATA_IN: 0x1, DATA_OUT: 0x2 } as const;

export const DataOperation = { NOACTION: 0, BACKUP: 1, RECOVER: 2, RECOVER_FILEHIST: 3 } as const;
export const DataState = { IDLE: 0, ACTIVE: 1, HALTED: 2, LISTEN: 3, CONNECTED: 4 } as const;
export const DataHaltReason = { NA: 0, SUCCESSFUL: 1, ABORTED: 2, INTERNAL_ERROR: 3, CONNECT_ERROR: 4 } as const;
export const DataStateUnsupported = { EST_BYTES_REMAIN: 0x1, EST_TIME_REMAIN: 0x2 } as const;

export const MoverMode = { READ: 0, WRITE: 1, NOACTION: 2 } as const;
export const MoverState = { IDLE: 0, LISTEN: 1, ACTIVE: 2, PAUSED: 3, HALTED: 4 } as const;
export const MoverPauseReason = { NA: 0, EOM: 1, EOF: 2, SEEK: 3, MEDIA_ERROR: 4, EOW: 5 } as const;
export const MoverHaltReason = {
  NA: 0,
  CONNECT_CLOSED: 1,
  ABORTED: 2,
  INTERNAL_ERROR: 3,
  CONNECT_ERROR: 4,
  MEDIA_ERROR: 5,
} as const;

export const LogType = { NORMAL: 0, DEBUG: 1, ERROR: 2, WARNING: 3 } as const;
export const RecoveryStatus = {
  SUCCESSFUL: 0,
  FAILED_PERMISSION: 1,
  FAILED_NOT_FOUND: 2,
  FAILED_NO_DIRECTORY: 3,
  FAILED_OUT_OF_MEMORY: 4,
  FAILED_IO_ERROR: 5,
  FAILED_UNDEFINED_ERROR: 6,
  FAILED_FILE_PATH_EXISTS: 7,
} as const;

export const FileType = { DIR: 0, FIFO: 1, CSPEC: 2, BSPEC: 3, REG: 4, SLINK: 5, SOCK: 6, REGISTRY: 7, OTHER: 8 } as const;
export const FileStatUnsupported = { ATIME: 0x1, CTIME: 0x2, GROUP: 0x4 } as const;

/** "Unknown / invalid / unlimited" in u64 fields. */
export const ALL1 = 0xffff_ffff_ffff_ffffn;
export const ALL1_32 = 0xffff_ffff;
