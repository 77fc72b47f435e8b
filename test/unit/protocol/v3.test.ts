/**
 * NDMP v3: every v3 message's codec round-trips, and the translation at the edge (v3 wire <->
 * the internal v4 model) keeps v3 bytes intact, maps what v3 names or numbers differently
 * (addresses, errors, butype bits, LOG_FILE, halts, MOVER/TAPE state), and gives the v3 nlist its
 * own meaning (protocol digest §6.1, §4.2).
 */
import { describe, expect, it } from "vitest";
import {
  ALL1,
  ALL1_32,
  ButypeAttr as B,
  DataHaltReason,
  ErrorCode,
  Message,
  MoverHaltReason,
  MoverMode,
  RecoveryStatus,
  TapeOpenMode,
} from "../../../src/protocol/codes.ts";
import { wireFor, wireV4 } from "../../../src/protocol/message.ts";
import {
  butypeAttrsFromV3,
  butypeAttrsToV3,
  errorToV3,
  nameFromV3,
  nameToV3,
  recoveryStatusFromV3,
  recoveryStatusToV3,
  TAPE_PARTITION_INVALID,
  wireV3,
} from "../../../src/protocol/wire-v3.ts";
import { decode, encode } from "../../../src/protocol/xdr/codec.ts";
import { v3ByCode, v3Messages } from "../../../src/protocol/xdr/v3.ts";
import { v4ByCode } from "../../../src/protocol/xdr/v4.ts";
import { Nlist } from "../../../src/protocol/xdr/nlist.ts";
import { plain, rng, sample } from "../../helpers/sample.ts";

const hex = (b: Buffer) => b.toString("hex");
const v3Reply = (code: number, body: Buffer) => decode(v3ByCode.get(code)!.reply!, body);
const v3Request = (code: number, body: Buffer) => decode(v3ByCode.get(code)!.request, body);

describe("v3 message schemas", () => {
  it("cover the v4 table without CONFIG_SET/GET_EXT_LIST, plus SCSI_SET_TARGET and SCSI_RESET_BUS", () => {
    const v4only = new Set<number>([Message.CONFIG_SET_EXT_LIST, Message.CONFIG_GET_EXT_LIST]);
    for (const code of Object.values(Message)) {
      expect(v3ByCode.has(code), `0x${code.toString(16)}`).toBe(!v4only.has(code));
    }
    expect(v3Messages.length).toBe(Object.keys(Message).length - 2);
    expect(v3ByCode.get(Message.NOTIFY_CONNECTION_STATUS)!.name).toBe("NOTIFY_CONNECTED");
    expect(wireFor(3)).toBe(wireV3);
    expect(wireV3.schema(Message.CONFIG_GET_EXT_LIST)).toBeUndefined();
    expect(wireV4.schema(Message.SCSI_SET_TARGET)).toBeUndefined();
  });

  for (const m of v3Messages) {
    it(`${m.name} round-trips (request${m.reply ? " and reply" : ""})`, () => {
      const rand = rng(m.code * 3 + 1);
      for (let i = 0; i < 25; i++) {
        for (const c of m.reply ? [m.request, m.reply] : [m.request]) {
          const v = sample(c, rand);
          const bytes = encode(c, v);
          expect(bytes.length % 4).toBe(0);
          expect(plain(decode(c, bytes))).toEqual(v);
          expect(encode(c, decode(c, bytes))).toEqual(bytes);
        }
      }
      if (m.reply) expect(decode(m.reply, encode(m.reply, m.reply.zero()))).toEqual(m.reply.zero());
    });
  }
});

/**
 * Random v3 values limited to what a v3 peer can put on the wire where the translation is
 * deliberately many-to-one: error codes 0-23, the butype/tape attr bits v3 defines, LOG_FILE
 * errors that name a recovery status. (nlists are checked by hand below.)
 */
function v3Domain(code: number, v: any): any {
  const walk = (x: any): any => {
    if (Array.isArray(x)) return x.map(walk);
    if (x && typeof x === "object" && !Buffer.isBuffer(x)) {
      const out: Record<string, unknown> = {};
      for (const [k, y] of Object.entries(x)) out[k] = k === "error" && typeof y === "number" ? y % 24 : walk(y);
      return out;
    }
    return x;
  };
  const out = walk(v);
  if (code === Message.CONFIG_GET_BUTYPE_INFO && out.butype_info) for (const b of out.butype_info) b.attrs &= 0x3ff;
  if (code === Message.CONFIG_GET_TAPE_INFO && out.tape_info) for (const d of out.tape_info) for (const c of d.caplist) c.attr &= 0x3;
  if (code === Message.LOG_FILE) out.error = [0, 5, 14, 15, 22, 7, 20][out.error % 7];
  return out;
}

describe("v3 wire <-> internal model", () => {
  const nlistCarriers = new Set<number>([Message.DATA_START_RECOVER, Message.DATA_START_RECOVER_FILEHIST]);
  for (const m of v3Messages) {
    if (nlistCarriers.has(m.code)) continue;
    it(`${m.name}: v3 bytes -> internal -> the same v3 bytes`, () => {
      const rand = rng(m.code * 7 + 5);
      for (let i = 0; i < 25; i++) {
        const req = encode(m.request, v3Domain(m.code, sample(m.request, rand)));
        expect(hex(wireV3.encodePost(m.code, wireV3.decodeRequest(m.code, req)))).toBe(hex(req));
        if (m.reply) {
          const rep = encode(m.reply, v3Domain(m.code, sample(m.reply, rand)));
          expect(hex(wireV3.encodeReply(m.code, wireV3.decodeReply(m.code, rep)))).toBe(hex(rep));
        }
      }
    });
  }

  it("the version-independent messages have the same bytes in v3 and v4", () => {
    for (const [code, body] of [
      [Message.CONNECT_OPEN, { protocol_version: 3 }],
      [Message.NOTIFY_CONNECTION_STATUS, { reason: 0, protocol_version: 4, text_reason: "" }],
    ] as const) {
      expect(hex(wireV3.encodePost(code, body))).toBe(hex(wireV4.encodePost(code, body)));
    }
  });

  it("TCP addresses: one {ip_addr, port} pair in v3, an array with env inside", () => {
    const v3 = wireV3.encodePost(Message.DATA_CONNECT, {
      addr: { addr_type: 1, tcp_addr: [{ ip_addr: 0xc0a8010a, port: 10000, addr_env: [{ name: "X", value: "y" }] }, { ip_addr: 1, port: 2, addr_env: [] }] },
    });
    expect(hex(v3)).toBe("00000001" + "c0a8010a" + "00002710"); // the first (preferred) pair, no env, no count
    expect(wireV3.decodeRequest(Message.DATA_CONNECT, v3)).toEqual({
      addr: { addr_type: 1, tcp_addr: [{ ip_addr: 0xc0a8010a, port: 10000, addr_env: [] }] },
    });
    // FC (addr_type 2) decodes with its arm; the services refuse it as an unsupported type.
    const fc = Buffer.from("00000002" + "0000002a", "hex");
    expect(wireV3.decodeRequest(Message.MOVER_CONNECT, Buffer.concat([Buffer.from("00000000", "hex"), fc]))).toEqual({
      mode: 0,
      addr: { addr_type: 2, fc_addr: { loop_id: 42 } },
    });
    const listen = wireV3.encodeReply(Message.MOVER_LISTEN, {
      error: 0,
      connect_addr: { addr_type: 1, tcp_addr: [{ ip_addr: 0x7f000001, port: 4321, addr_env: [] }] },
    });
    expect(v3Reply(Message.MOVER_LISTEN, listen)).toEqual({
      error: 0,
      data_connection_addr: { addr_type: 1, tcp_addr: { ip_addr: 0x7f000001, port: 4321 } },
    });
  });

  it("v4-only error codes are mapped down to 0-23", () => {
    for (let e = 0; e <= 23; e++) expect(errorToV3(e)).toBe(e);
    expect(errorToV3(ErrorCode.READ_IN_PROGRESS_ERR)).toBe(ErrorCode.ILLEGAL_STATE_ERR);
    expect(errorToV3(ErrorCode.PRECONDITION_ERR)).toBe(ErrorCode.ILLEGAL_STATE_ERR);
    for (const e of [24, 27, 28, 29, 30, 0x2050_0001]) expect(errorToV3(e)).toBe(ErrorCode.UNDEFINED_ERR);
    // Through the codec, on an error reply (what the session sends for a refused request).
    const reply = wireV3.encodeReply(Message.MOVER_READ, wireV3.errorReply(Message.MOVER_READ, ErrorCode.READ_IN_PROGRESS_ERR));
    expect(hex(reply)).toBe("00000013");
    const st = wireV3.encodeReply(Message.MOVER_CONTINUE, wireV3.errorReply(Message.MOVER_CONTINUE, ErrorCode.PRECONDITION_ERR));
    expect(v3Reply(Message.MOVER_CONTINUE, st).error).toBe(ErrorCode.ILLEGAL_STATE_ERR);
    // A v3-only message's error reply is well formed too.
    expect(hex(wireV3.encodeReply(Message.SCSI_SET_TARGET, wireV3.errorReply(Message.SCSI_SET_TARGET, 1)))).toBe("00000001");
  });

  it("MOVER_GET_STATE: no mode in v3, bytes_moved is data_written, HALTED(MEDIA_ERROR) has no v3 number", () => {
    const internal = {
      error: 0,
      mode: MoverMode.READ,
      state: 4,
      pause_reason: 0,
      halt_reason: MoverHaltReason.MEDIA_ERROR,
      record_size: 10240,
      record_num: 7,
      bytes_moved: 71680n,
      seek_position: 0n,
      bytes_left_to_read: 0n,
      window_offset: 0n,
      window_length: ALL1,
      data_connection_addr: { addr_type: 0 },
    };
    const bytes = wireV3.encodeReply(Message.MOVER_GET_STATE, internal);
    expect(bytes.length).toBe(wireV4.encodeReply(Message.MOVER_GET_STATE, internal).length - 4);
    const { mode: _m, bytes_moved: _b, ...same } = internal;
    expect(v3Reply(Message.MOVER_GET_STATE, bytes)).toEqual({ ...same, halt_reason: MoverHaltReason.INTERNAL_ERROR, data_written: 71680n });
    expect(wireV3.decodeReply(Message.MOVER_GET_STATE, bytes)).toMatchObject({ mode: MoverMode.NOACTION, bytes_moved: 71680n });
  });

  it("TAPE_GET_STATE: `invalid` is `unsupported`, and v3's trailing partition is sent invalid", () => {
    const zero = wireV4.errorReply(Message.TAPE_GET_STATE, 0);
    const bytes = wireV3.encodeReply(Message.TAPE_GET_STATE, { ...zero, unsupported: 0x21, file_num: 3 });
    expect(bytes.length).toBe(wireV4.encodeReply(Message.TAPE_GET_STATE, zero).length + 4);
    expect(v3Reply(Message.TAPE_GET_STATE, bytes)).toMatchObject({ invalid: 0x21 | TAPE_PARTITION_INVALID, file_num: 3, partition: ALL1_32 });
    // A partition that came from a v3 peer goes back unchanged (our client's direction).
    expect(wireV3.decodeReply(Message.TAPE_GET_STATE, bytes)).toMatchObject({ unsupported: 0x61, partition: ALL1_32 });
  });

  it("CONFIG replies: v3 butype bits, `invalid` in fs_info, no RAW tape attr", () => {
    // Our tar: FH both styles, DAR both ways, filelists, RECOVER_FILEHIST.
    const ours = B.RECOVER_FILELIST | B.BACKUP_DIRECT | B.RECOVER_DIRECT | B.BACKUP_INCREMENTAL | B.BACKUP_FH_FILE | B.BACKUP_FH_DIR | B.RECOVER_FILEHIST | B.RECOVER_FH_FILE;
    expect(butypeAttrsToV3(ours)).toBe(0x0004 | 0x0008 | 0x0010 | 0x0020 | 0x0001 | 0x0200);
    expect(butypeAttrsToV3(B.BACKUP_FH_DIR)).toBe(0x0001); // either FH style is v3's BACKUP_FILE_HISTORY
    expect(butypeAttrsToV3(B.RECOVER_FH_DIR | B.RECOVER_FH_FILE)).toBe(0); // no v3 bits for these
    expect(butypeAttrsFromV3(0x0001 | 0x0200 | 0x0002)).toBe(B.BACKUP_FH_FILE | B.BACKUP_FH_DIR | B.RECOVER_FILEHIST | B.BACKUP_FILELIST);
    const bi = wireV3.encodeReply(Message.CONFIG_GET_BUTYPE_INFO, { error: 0, butype_info: [{ butype_name: "tar", default_env: [], attrs: ours }] });
    expect(v3Reply(Message.CONFIG_GET_BUTYPE_INFO, bi).butype_info[0].attrs).toBe(butypeAttrsToV3(ours));

    const fs = v4ByCode.get(Message.CONFIG_GET_FS_INFO)!.reply!.zero();
    fs.fs_info = [{ ...v4ByCode.get(Message.CONFIG_GET_FS_INFO)!.reply!.zero(), ...sampleFsInfo() }];
    const fsBytes = wireV3.encodeReply(Message.CONFIG_GET_FS_INFO, fs);
    expect(hex(fsBytes)).toBe(hex(wireV4.encodeReply(Message.CONFIG_GET_FS_INFO, fs))); // same layout
    expect(v3Reply(Message.CONFIG_GET_FS_INFO, fsBytes).fs_info[0].invalid).toBe(0x1c);

    const tape = wireV3.encodeReply(Message.CONFIG_GET_TAPE_INFO, {
      error: 0,
      tape_info: [{ model: "virtual", caplist: [{ device: "vt0", attr: 0x1 | 0x4, capability: [] }] }],
    });
    expect(v3Reply(Message.CONFIG_GET_TAPE_INFO, tape).tape_info[0].caplist[0].attr).toBe(0x1);
  });

  it("TAPE_OPEN: v3 raw as 0x7FFFFFFF (illumos) is RAW; READ and RDWR are unchanged", () => {
    const open = (mode: number) => wireV3.decodeRequest(Message.TAPE_OPEN, encode(v3ByCode.get(Message.TAPE_OPEN)!.request, { device: "vt0", mode }));
    expect(open(0x7fffffff).mode).toBe(TapeOpenMode.RAW);
    expect(open(TapeOpenMode.READ).mode).toBe(TapeOpenMode.READ);
    expect(open(TapeOpenMode.RDWR).mode).toBe(TapeOpenMode.RDWR);
    expect(open(123).mode).toBe(123); // the handler answers ILLEGAL_ARGS_ERR
  });

  it("posts: halts carry a text_reason, LOG_MESSAGE has no associated fields, LOG_FILE carries an ndmp_error", () => {
    const dh = v3Request(Message.NOTIFY_DATA_HALTED, wireV3.encodePost(Message.NOTIFY_DATA_HALTED, { reason: DataHaltReason.SUCCESSFUL }));
    expect(dh).toEqual({ reason: DataHaltReason.SUCCESSFUL, text_reason: Buffer.from("SUCCESSFUL") });
    const mh = v3Request(Message.NOTIFY_MOVER_HALTED, wireV3.encodePost(Message.NOTIFY_MOVER_HALTED, { reason: MoverHaltReason.MEDIA_ERROR }));
    expect(mh).toEqual({ reason: MoverHaltReason.INTERNAL_ERROR, text_reason: Buffer.from("MEDIA_ERROR") });

    const lm = wireV3.encodePost(Message.LOG_MESSAGE, { log_type: 2, message_id: 9, entry: "oops", associated_message_valid: 1, associated_message_sequence: 77 });
    expect(v3Request(Message.LOG_MESSAGE, lm)).toEqual({ log_type: 2, message_id: 9, entry: Buffer.from("oops") });

    const pairs: Array<[number, number]> = [
      [RecoveryStatus.SUCCESSFUL, ErrorCode.NO_ERR],
      [RecoveryStatus.FAILED_PERMISSION, ErrorCode.PERMISSION_ERR],
      [RecoveryStatus.FAILED_NOT_FOUND, ErrorCode.FILE_NOT_FOUND_ERR],
      [RecoveryStatus.FAILED_NO_DIRECTORY, ErrorCode.BAD_FILE_ERR],
      [RecoveryStatus.FAILED_OUT_OF_MEMORY, ErrorCode.NO_MEM_ERR],
      [RecoveryStatus.FAILED_IO_ERROR, ErrorCode.IO_ERR],
      [RecoveryStatus.FAILED_UNDEFINED_ERROR, ErrorCode.UNDEFINED_ERR],
    ];
    for (const [status, error] of pairs) {
      expect(recoveryStatusToV3(status)).toBe(error);
      expect(recoveryStatusFromV3(error)).toBe(status);
      const bytes = wireV3.encodePost(Message.LOG_FILE, { name: "/a", recovery_status: status });
      expect(v3Request(Message.LOG_FILE, bytes)).toEqual({ name: Buffer.from("/a"), error });
    }
    expect(recoveryStatusToV3(RecoveryStatus.FAILED_FILE_PATH_EXISTS)).toBe(ErrorCode.UNDEFINED_ERR);
    expect(recoveryStatusFromV3(ErrorCode.DEVICE_BUSY_ERR)).toBe(RecoveryStatus.FAILED_UNDEFINED_ERROR);
  });

  it("file history: the same bytes as v4 (only `unsupported` is called `invalid`)", () => {
    const stat = { unsupported: 0x4, fs_type: 0, ftype: 4, mtime: 1, atime: 2, ctime: 3, owner: 4, group: 5, fattr: 0o644, size: 6n, links: 1 };
    const file = { files: [{ names: [{ fs_type: 0, unix_name: "a" }], stats: [stat], node: 7n, fh_info: 512n }] };
    const node = { nodes: [{ stats: [stat], node: 7n, fh_info: 512n }] };
    for (const [code, body] of [
      [Message.FH_ADD_FILE, file],
      [Message.FH_ADD_NODE, node],
    ] as const) {
      const bytes = wireV3.encodePost(code, body);
      expect(hex(bytes)).toBe(hex(wireV4.encodePost(code, body)));
      const v3 = v3Request(code, bytes);
      expect((v3.files ?? v3.nodes)[0].stats[0].invalid).toBe(0x4);
    }
  });

  it("DATA_START_BACKUP: v3's bu_type is butype_name", () => {
    const v3 = encode(v3ByCode.get(Message.DATA_START_BACKUP)!.request, { bu_type: "tar", env: [{ name: "HIST", value: "y" }] });
    expect(hex(v3)).toBe(hex(wireV4.encodePost(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "HIST", value: "y" }] })));
    expect(wireV3.decodeRequest(Message.DATA_START_BACKUP, v3)).toEqual({
      butype_name: Buffer.from("tar"),
      env: [{ name: Buffer.from("HIST"), value: Buffer.from("y") }],
    });
  });
});

function sampleFsInfo() {
  return {
    unsupported: 0x1c,
    fs_type: "ext4",
    fs_logical_device: "/srv",
    fs_physical_device: "/dev/sda1",
    total_size: 100n,
    used_size: 50n,
    avail_size: ALL1,
    total_inodes: ALL1,
    used_inodes: ALL1,
    fs_env: [{ name: "LOCAL", value: "y" }],
    fs_status: "online",
  };
}

describe("v3 nlist semantics (destination_dir / new_name, digest §4.2)", () => {
  const n3 = (original_path: string, destination_dir: string, new_name: string) => ({
    original_path: Buffer.from(original_path),
    destination_dir: Buffer.from(destination_dir),
    new_name: Buffer.from(new_name),
    other_name: Buffer.alloc(0),
    node: ALL1,
    fh_info: 1536n,
  });
  const target = (n: ReturnType<typeof n3>) => {
    const v4 = nameFromV3(n);
    expect(v4.name).toEqual(Buffer.alloc(0));
    expect(v4.original_path).toEqual(n.original_path); // never overwritten (unlike NDMJOB's converter)
    expect(v4.fh_info).toBe(1536n);
    return v4.destination_path.toString();
  };

  it("without new_name the target is destination_dir + original_path", () => {
    expect(target(n3("/home/a.txt", "/restore", ""))).toBe("/restore/home/a.txt");
    expect(target(n3("/home/a.txt", "/restore/", ""))).toBe("/restore/home/a.txt");
    expect(target(n3("home/a.txt", "/restore", ""))).toBe("/restore/home/a.txt");
    expect(target(n3("", "/restore", ""))).toBe("/restore"); // the whole image
    expect(target(n3("/home/a.txt", "", ""))).toBe("/home/a.txt"); // in place
  });

  it("with new_name the target is destination_dir/new_name; NDMJOB's whole path in new_name works too", () => {
    expect(target(n3("/home/a.txt", "/restore", "b.txt"))).toBe("/restore/b.txt");
    expect(target(n3("/home/a.txt", "", "/restore/ren/b.txt"))).toBe("/restore/ren/b.txt");
  });

  it("what NDMJOB sends at v3 for `-C /r /a.txt` and `-C /r /new.txt=/a.txt` lands where v4 would", () => {
    // ndmp_9to3_name: destination_path ending in original_path -> (dir = the rest, new_name = "");
    // anything else -> (dir = "", new_name = destination_path).
    expect(target(n3("/a.txt", "/r", ""))).toBe("/r/a.txt");
    expect(target(n3("/a.txt", "", "/r/new.txt"))).toBe("/r/new.txt");
  });

  it("our client's v4 entries survive v4 -> v3 -> v4 with the same target", () => {
    const v4 = (original_path: string, destination_path: string, name = "") => ({
      original_path: Buffer.from(original_path),
      destination_path: Buffer.from(destination_path),
      name: Buffer.from(name),
      other_name: Buffer.alloc(0),
      node: 5n,
      fh_info: ALL1,
    });
    for (const [o, d, nm, want] of [
      ["/a.txt", "/r/a.txt", "", "/r/a.txt"],
      ["a.txt", "/r/a.txt", "", "/r/a.txt"],
      ["/a.txt", "/r/other.txt", "", "/r/other.txt"],
      ["/a.txt", "/a.txt", "", "/a.txt"],
      ["/a.txt", "/x", "", "/x"],
      ["", "/r", "", "/r"],
      ["/dir", "/r", "renamed", "/r/renamed"],
    ] as const) {
      const back = nameFromV3(nameToV3(v4(o, d, nm)));
      expect(back.destination_path.toString(), `${o} -> ${d} ${nm}`).toBe(want);
      expect(back.original_path.toString()).toBe(o);
      expect(back.node).toBe(5n);
    }
  });

  it("DATA_START_RECOVER through the codec: bu_type, env and nlist", () => {
    const req = { env: [{ name: "PREFIX", value: "/r" }], nlist: [n3("/a", "/r", ""), n3("/b", "/r", "c")], bu_type: "tar" };
    const bytes = encode(v3ByCode.get(Message.DATA_START_RECOVER)!.request, req);
    const internal = wireV3.decodeRequest(Message.DATA_START_RECOVER, bytes);
    expect(internal.butype_name.toString()).toBe("tar");
    expect(internal.nlist).toBeInstanceOf(Nlist); // decoded flat, in v4 terms
    expect(plain(internal).nlist.map((n: any) => n.destination_path.toString())).toEqual(["/r/a", "/r/c"]);
    // And back to v3 bytes that mean the same.
    const again = wireV3.decodeRequest(Message.DATA_START_RECOVER_FILEHIST, wireV3.encodePost(Message.DATA_START_RECOVER_FILEHIST, internal));
    expect(plain(again)).toEqual(plain(internal));
  });
});
