/**
 * NDMP version 3 on the wire, translated to and from the one internal (v4) model at the edge
 * (protocol digest §6.1). Handlers see v4 shapes whatever the session's version; this file is
 * where the v3 names, enums, addresses, error codes and nlist semantics are mapped.
 *
 * Each translated message has a pair of functions: `in` (v3 body -> internal) and `out`
 * (internal -> v3 body). Requests we receive and posts our client receives go `in`; replies
 * and posts we send go `out`. Messages not listed have the same fields in both versions and
 * pass through, except that every reply's `error` is mapped down to the v3 codes (0-23).
 *
 * Fields only v3 has (TAPE_GET_STATE `partition`, the halts' `text_reason`) ride along in the
 * internal object as extra properties when they came from the wire, so v3 bytes -> internal ->
 * v3 bytes is exact; when a handler did not set them they get the values noted below.
 */
import {
  AddrType,
  ALL1_32,
  ButypeAttr,
  DataHaltReason,
  ErrorCode,
  Message,
  MoverHaltReason,
  MoverMode,
  RecoveryStatus,
  TapeOpenMode,
} from "./codes.ts";
import { decode, encode, toBuffer, XdrError, type Bytes, type Codec } from "./xdr/codec.ts";
import { v3ByCode, type Addr3, type NlistName3 } from "./xdr/v3.ts";
import { DESTINATION_PATH, FH_INFO, NAME, Nlist, NlistBuilder, NODE, ORIGINAL_PATH, OTHER_NAME } from "./xdr/nlist.ts";
import { NLIST_V4, v4ByCode, type Addr, type NlistName } from "./xdr/v4.ts";
import type { WireVersion } from "./message.ts";

/** CONFIG_GET_BUTYPE_INFO attrs as v3 numbers them. */
export const ButypeAttrV3 = {
  BACKUP_FILE_HISTORY: 0x0001,
  /** 0x0002-0x0100: same bits and meanings as v4 (BACKUP_FILELIST ... RECOVER_UTF8). */
  SHARED_WITH_V4: 0x01fe,
  /** Only in NDMJOB's ndmp3.x (digest §8 item 10); collides with v4 BACKUP_FH_FILE. */
  RECOVER_FILE_HISTORY: 0x0200,
} as const;

/** TAPE_GET_STATE `invalid` bit that only v3 has. */
export const TAPE_PARTITION_INVALID = 0x40;
/** CONFIG_GET_TAPE_INFO attr bits v3 defines (REWIND, UNLOAD; RAW 0x4 is v4 only). */
const TAPE_ATTR_V3 = 0x3;
/** The largest ndmp_error v3 has (CONNECT_ERR). */
const LAST_V3_ERROR = ErrorCode.CONNECT_ERR;

/**
 * A v4 error as v3 can say it. READ_IN_PROGRESS is "the mover is busy reading": ILLEGAL_STATE.
 * Every PRECONDITION we raise means "a request that must come first has not" (record size,
 * a new window before CONTINUE), which is a state of the session: ILLEGAL_STATE. The sequence
 * and extension errors cannot occur at v3 (no checks, no EXT_LIST messages): UNDEFINED.
 */
export function errorToV3(e: number): number {
  if (e <= LAST_V3_ERROR) return e;
  if (e === ErrorCode.READ_IN_PROGRESS_ERR || e === ErrorCode.PRECONDITION_ERR) return ErrorCode.ILLEGAL_STATE_ERR;
  return ErrorCode.UNDEFINED_ERR;
}

/** LOG_FILE: v4 recovery_status <-> v3 ndmp_error, the pairs NDMJOB uses (digest §6.1). */
const STATUS_ERROR: Array<[number, number]> = [
  [RecoveryStatus.SUCCESSFUL, ErrorCode.NO_ERR],
  [RecoveryStatus.FAILED_PERMISSION, ErrorCode.PERMISSION_ERR],
  [RecoveryStatus.FAILED_NOT_FOUND, ErrorCode.FILE_NOT_FOUND_ERR],
  [RecoveryStatus.FAILED_NO_DIRECTORY, ErrorCode.BAD_FILE_ERR],
  [RecoveryStatus.FAILED_OUT_OF_MEMORY, ErrorCode.NO_MEM_ERR],
  [RecoveryStatus.FAILED_IO_ERROR, ErrorCode.IO_ERR],
];

export function recoveryStatusToV3(status: number): number {
  return STATUS_ERROR.find(([s]) => s === status)?.[1] ?? ErrorCode.UNDEFINED_ERR;
}

export function recoveryStatusFromV3(error: number): number {
  return STATUS_ERROR.find(([, e]) => e === error)?.[0] ?? RecoveryStatus.FAILED_UNDEFINED_ERROR;
}

/**
 * Our v4 attrs as v3 bits. 0x2-0x100 mean the same. v3's BACKUP_FILE_HISTORY is "the backup
 * posts file history", which v4 split into FH_FILE and FH_DIR. 0x200 is set only when we do
 * serve DATA_START_RECOVER_FILEHIST: NDMJOB-derived DMAs read it as RECOVER_FILE_HISTORY, and
 * the v3 standard leaves the bit undefined, so it is true under either reading.
 */
export function butypeAttrsToV3(attrs: number): number {
  let v3 = attrs & ButypeAttrV3.SHARED_WITH_V4;
  if (attrs & (ButypeAttr.BACKUP_FH_FILE | ButypeAttr.BACKUP_FH_DIR)) v3 |= ButypeAttrV3.BACKUP_FILE_HISTORY;
  if (attrs & ButypeAttr.RECOVER_FILEHIST) v3 |= ButypeAttrV3.RECOVER_FILE_HISTORY;
  return v3;
}

/** v3 attrs as v4 bits (our client reading a v3 server); bits v3 does not define are dropped. */
export function butypeAttrsFromV3(attrs: number): number {
  let v4 = attrs & ButypeAttrV3.SHARED_WITH_V4;
  if (attrs & ButypeAttrV3.BACKUP_FILE_HISTORY) v4 |= ButypeAttr.BACKUP_FH_FILE | ButypeAttr.BACKUP_FH_DIR;
  if (attrs & ButypeAttrV3.RECOVER_FILE_HISTORY) v4 |= ButypeAttr.RECOVER_FILEHIST;
  return v4;
}

// ---- addresses: v3 has one TCP pair and no env; addr_type 2 is FC ----

export function addrFromV3(a: Addr3): Addr {
  if (a.addr_type === AddrType.TCP) return { addr_type: AddrType.TCP, tcp_addr: [{ ...a.tcp_addr, addr_env: [] }] };
  // LOCAL, IPC and FC keep their arm. The internal model has no FC: the services refuse it
  // as an unsupported address type, as v4 does for RESERVED.
  return a;
}

export function addrToV3(a: Addr): Addr3 {
  if (a.addr_type === AddrType.TCP) {
    // v3 carries one pair: the first is the preferred one (digest §2.3). An empty list (a
    // connection whose peer address is unknown) becomes 0.0.0.0:0.
    const first = a.tcp_addr?.[0];
    return { addr_type: AddrType.TCP, tcp_addr: { ip_addr: first?.ip_addr ?? 0, port: first?.port ?? 0 } };
  }
  return a;
}

// ---- nlist: v3 destination_dir/new_name <-> v4 destination_path/name (digest §4.2) ----

const SLASH = 0x2f;

/** `a/b` with exactly one slash between them; an empty side contributes nothing. */
function joinPath(a: Buffer, b: Buffer): Buffer {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  let end = a.length;
  while (end > 0 && a[end - 1] === SLASH) end--;
  let start = 0;
  while (start < b.length && b[start] === SLASH) start++;
  return Buffer.concat([a.subarray(0, end), Buffer.from("/"), b.subarray(start)]);
}

/**
 * A v3 nlist entry in v4 terms. v3 (v3.1 clarification, which NDMJOB follows): with `new_name`
 * the target is destination_dir/new_name, otherwise destination_dir + original_path. The
 * internal entry always carries that whole target as destination_path with `name` empty (the
 * v4 form Bareos uses), because NDMJOB puts whole paths in new_name, which a v4 `name` must not
 * hold (it may not contain a slash).
 */
export function nameFromV3(n: NlistName3): NlistName {
  const dir = toBuffer(n.destination_dir);
  const newName = toBuffer(n.new_name);
  const target = joinPath(dir, newName.length > 0 ? newName : toBuffer(n.original_path));
  return { original_path: n.original_path, destination_path: target, name: Buffer.alloc(0), other_name: n.other_name, node: n.node, fh_info: n.fh_info };
}

/**
 * A v4 nlist entry in v3 terms (our client speaking v3). A destination that ends with the
 * original path is sent as its directory part (the v3 default placement); any other as
 * destination_dir/new_name with new_name its last component.
 */
export function nameToV3(n: NlistName): NlistName3 {
  const dest = toBuffer(n.destination_path);
  const name = toBuffer(n.name);
  const original = toBuffer(n.original_path);
  const common = { original_path: n.original_path, other_name: n.other_name, node: n.node, fh_info: n.fh_info };
  const empty = Buffer.alloc(0);
  if (name.length > 0) return { ...common, destination_dir: dest, new_name: name };
  if (original.length === 0) return { ...common, destination_dir: dest, new_name: empty };
  const tail = dest.length - original.length;
  if (tail > 0 && dest.subarray(tail).equals(original) && (original[0] === SLASH || dest[tail - 1] === SLASH)) {
    return { ...common, destination_dir: dest.subarray(0, original[0] === SLASH ? tail : tail - 1), new_name: empty };
  }
  // Elsewhere: its directory and last component ("/" for a target at the root).
  const cut = dest.lastIndexOf(SLASH);
  const dir = cut < 0 ? empty : cut === 0 ? dest.subarray(0, 1) : dest.subarray(0, cut);
  return { ...common, destination_dir: dir, new_name: dest.subarray(cut + 1) };
}

// ---- the per-message translations ----

interface Translation {
  in(v3: any): any;
  out(internal: any): any;
}

/** A struct whose only difference is one field's name (`invalid` <-> `unsupported`, ...). */
function renamed(v3Name: string, v4Name: string): Translation {
  return {
    in: ({ [v3Name]: x, ...rest }: any) => ({ ...rest, [v4Name]: x }),
    out: ({ [v4Name]: x, ...rest }: any) => ({ ...rest, [v3Name]: x }),
  };
}

const invalid = renamed("invalid", "unsupported");
const statsIn = (stats: any[]) => stats.map(invalid.in);
const statsOut = (stats: any[]) => stats.map(invalid.out);

/**
 * A decoded v3 nlist (flat, nlist.ts) in v4 terms, entry by entry as nameFromV3 does it: the
 * destination_path column is built, the other columns are copied.
 */
export function nlistFromV3(n3: Nlist): Nlist {
  let bytes = 0;
  for (let i = 0; i < n3.length; i++) {
    const target = n3.size(i, NEW_NAME) > 0 ? n3.size(i, NEW_NAME) : n3.size(i, ORIGINAL_PATH);
    bytes += n3.size(i, ORIGINAL_PATH) + n3.size(i, DESTINATION_DIR) + 1 + target + n3.size(i, OTHER_NAME);
  }
  const b = new NlistBuilder(NLIST_V4, n3.length, bytes);
  for (let i = 0; i < n3.length; i++) {
    const original = n3.bytes(i, ORIGINAL_PATH);
    const newName = n3.bytes(i, NEW_NAME);
    const target = joinPath(n3.bytes(i, DESTINATION_DIR), newName.length > 0 ? newName : original);
    b.add(original, target, EMPTY, n3.bytes(i, OTHER_NAME), n3.number(i, NODE), n3.number(i, FH_INFO));
  }
  return b.finish();
}

/** The v3 columns that sit where v4 has destination_path and name. */
const DESTINATION_DIR = DESTINATION_PATH;
const NEW_NAME = NAME;
const EMPTY = Buffer.alloc(0);

/** An internal nlist (flat, or the plain entries our client sends) as v3 entries. */
function nlistToV3(nlist: Nlist | NlistName[]): NlistName3[] {
  const entries = nlist instanceof Nlist ? (nlist.toArray() as unknown as NlistName[]) : nlist;
  return entries.map(nameToV3);
}

const recoverRequest: Translation = {
  in: ({ bu_type, nlist, ...rest }: any) => ({ ...rest, nlist: nlist instanceof Nlist ? nlistFromV3(nlist) : nlist.map(nameFromV3), butype_name: bu_type }),
  out: ({ butype_name, nlist, ...rest }: any) => ({ ...rest, nlist: nlistToV3(nlist), bu_type: butype_name }),
};

const listenReply: Translation = {
  in: ({ data_connection_addr, ...rest }: any) => ({ ...rest, connect_addr: addrFromV3(data_connection_addr) }),
  out: ({ connect_addr, ...rest }: any) => ({ ...rest, data_connection_addr: addrToV3(connect_addr) }),
};

const nameOf = (table: Record<string, number>, v: number) => Object.entries(table).find(([, x]) => x === v)?.[0] ?? String(v);

/** Request and post bodies. */
const requestTranslations: Record<number, Translation> = {
  [Message.TAPE_OPEN]: {
    // illumos accepts 0x7FFFFFFF as v3's "raw" as well as 2 (digest §6.1); NDMJOB has no raw.
    in: (r: { device: Bytes; mode: number }) => ({ device: r.device, mode: r.mode === 0x7fffffff ? TapeOpenMode.RAW : r.mode }),
    out: (r: any) => r,
  },
  [Message.DATA_CONNECT]: {
    in: (r: { addr: Addr3 }) => ({ addr: addrFromV3(r.addr) }),
    out: (r: { addr: Addr }) => ({ addr: addrToV3(r.addr) }),
  },
  [Message.MOVER_CONNECT]: {
    in: (r: { mode: number; addr: Addr3 }) => ({ mode: r.mode, addr: addrFromV3(r.addr) }),
    out: (r: { mode: number; addr: Addr }) => ({ mode: r.mode, addr: addrToV3(r.addr) }),
  },
  [Message.DATA_START_BACKUP]: renamed("bu_type", "butype_name"),
  [Message.DATA_START_RECOVER]: recoverRequest,
  [Message.DATA_START_RECOVER_FILEHIST]: recoverRequest,
  [Message.NOTIFY_DATA_HALTED]: {
    in: (p: any) => p,
    // v3 wants a text; the reason's name says what happened.
    out: (p: { reason: number; text_reason?: Bytes }) => ({ reason: p.reason, text_reason: p.text_reason ?? nameOf(DataHaltReason, p.reason) }),
  },
  [Message.NOTIFY_MOVER_HALTED]: {
    in: (p: any) => p,
    out: (p: { reason: number; text_reason?: Bytes }) => {
      // HALTED(MEDIA_ERROR) is v4 only: a v3 mover pauses MEDIA_ERROR instead, so this is
      // only a safety net for a halt v3 has no number for.
      const reason = p.reason === MoverHaltReason.MEDIA_ERROR ? MoverHaltReason.INTERNAL_ERROR : p.reason;
      return { reason, text_reason: p.text_reason ?? nameOf(MoverHaltReason, p.reason) };
    },
  },
  [Message.LOG_MESSAGE]: {
    in: (p: any) => ({ ...p, associated_message_valid: 0, associated_message_sequence: 0 }),
    out: (p: any) => ({ log_type: p.log_type, message_id: p.message_id, entry: p.entry }),
  },
  [Message.LOG_FILE]: {
    in: (p: { name: Bytes; error: number }) => ({ name: p.name, recovery_status: recoveryStatusFromV3(p.error) }),
    out: (p: { name: Bytes; recovery_status: number }) => ({ name: p.name, error: recoveryStatusToV3(p.recovery_status) }),
  },
  [Message.FH_ADD_FILE]: {
    in: (p: any) => ({ files: p.files.map((f: any) => ({ ...f, stats: statsIn(f.stats) })) }),
    out: (p: any) => ({ files: p.files.map((f: any) => ({ ...f, stats: statsOut(f.stats) })) }),
  },
  [Message.FH_ADD_NODE]: {
    in: (p: any) => ({ nodes: p.nodes.map((n: any) => ({ ...n, stats: statsIn(n.stats) })) }),
    out: (p: any) => ({ nodes: p.nodes.map((n: any) => ({ ...n, stats: statsOut(n.stats) })) }),
  },
};

/** Reply bodies (their `error` is mapped separately, for every reply). */
const replyTranslations: Record<number, Translation> = {
  [Message.CONFIG_GET_BUTYPE_INFO]: {
    in: (r: any) => ({ ...r, butype_info: r.butype_info.map((b: any) => ({ ...b, attrs: butypeAttrsFromV3(b.attrs) })) }),
    out: (r: any) => ({ ...r, butype_info: r.butype_info.map((b: any) => ({ ...b, attrs: butypeAttrsToV3(b.attrs) })) }),
  },
  [Message.CONFIG_GET_FS_INFO]: {
    in: (r: any) => ({ ...r, fs_info: r.fs_info.map(invalid.in) }),
    out: (r: any) => ({ ...r, fs_info: r.fs_info.map(invalid.out) }),
  },
  [Message.CONFIG_GET_TAPE_INFO]: {
    in: (r: any) => r,
    // v3 has no RAW open mode, so it has no attr bit claiming one either.
    out: (r: any) => ({
      ...r,
      tape_info: r.tape_info.map((d: any) => ({ ...d, caplist: d.caplist.map((c: any) => ({ ...c, attr: c.attr & TAPE_ATTR_V3 })) })),
    }),
  },
  [Message.TAPE_GET_STATE]: {
    in: ({ invalid: bits, ...rest }: any) => ({ ...rest, unsupported: bits }),
    out: ({ unsupported, partition, ...rest }: any) =>
      // No drive of ours reports a partition: v3's field is sent invalid unless one is known.
      partition === undefined
        ? { ...rest, invalid: unsupported | TAPE_PARTITION_INVALID, partition: ALL1_32 }
        : { ...rest, invalid: unsupported, partition },
  },
  [Message.DATA_GET_STATE]: {
    in: ({ invalid: bits, data_connection_addr, ...rest }: any) => ({ ...rest, unsupported: bits, data_connection_addr: addrFromV3(data_connection_addr) }),
    out: ({ unsupported, data_connection_addr, ...rest }: any) => ({ ...rest, invalid: unsupported, data_connection_addr: addrToV3(data_connection_addr) }),
  },
  [Message.DATA_LISTEN]: listenReply,
  [Message.MOVER_LISTEN]: listenReply,
  [Message.MOVER_GET_STATE]: {
    // v3 does not report the mode; our client sees NOACTION.
    in: ({ data_written, data_connection_addr, ...rest }: any) => ({
      ...rest,
      mode: MoverMode.NOACTION,
      bytes_moved: data_written,
      data_connection_addr: addrFromV3(data_connection_addr),
    }),
    out: ({ mode: _mode, bytes_moved, data_connection_addr, halt_reason, ...rest }: any) => ({
      ...rest,
      halt_reason: halt_reason === MoverHaltReason.MEDIA_ERROR ? MoverHaltReason.INTERNAL_ERROR : halt_reason,
      data_written: bytes_moved,
      data_connection_addr: addrToV3(data_connection_addr),
    }),
  },
};

function codecOf(code: number, which: "request" | "reply"): Codec<any> {
  const c = v3ByCode.get(code)?.[which];
  if (!c) throw new XdrError(`no v3 ${which} body for message 0x${code.toString(16)}`);
  return c;
}

export function requestFromV3(code: number, v3: any): any {
  const t = requestTranslations[code];
  return t ? t.in(v3) : v3;
}

export function requestToV3(code: number, internal: any): any {
  const t = requestTranslations[code];
  return t ? t.out(internal) : internal;
}

export function replyFromV3(code: number, v3: any): any {
  const t = replyTranslations[code];
  return t ? t.in(v3) : v3;
}

export function replyToV3(code: number, internal: any): any {
  const t = replyTranslations[code];
  const out = t ? t.out(internal) : { ...internal };
  if (typeof out.error === "number") out.error = errorToV3(out.error);
  return out;
}

/** Version 3: v3 codecs, translated to and from the internal model. */
export const wireV3: WireVersion = {
  version: 3,
  schema: (code) => v3ByCode.get(code),
  decodeRequest: (code, body) => requestFromV3(code, decode(codecOf(code, "request"), body)),
  encodeReply: (code, body) => encode(codecOf(code, "reply"), replyToV3(code, body)),
  encodePost: (code, body) => encode(codecOf(code, "request"), requestToV3(code, body)),
  decodeReply: (code, body) => replyFromV3(code, decode(codecOf(code, "reply"), body)),
  errorReply: (code, error) => {
    // The internal model's zero reply (v4 shape), or the v3 one for the v3-only messages.
    const reply = v4ByCode.get(code)?.reply ?? v3ByCode.get(code)?.reply;
    return reply ? { ...reply.zero(), error } : { error };
  },
};
