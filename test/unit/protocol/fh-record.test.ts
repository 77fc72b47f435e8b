import { describe, expect, it } from "vitest";
import { FileType, FsType, Message, MessageType } from "../../../src/protocol/codes.ts";
import { FH_BODY_OFFSET, FhRecordWriter, pooledRecords, releaseRecord, type FhStat } from "../../../src/protocol/fh-record.ts";
import { decodeHeader, wireV4 } from "../../../src/protocol/message.ts";
import { wireV3 } from "../../../src/protocol/wire-v3.ts";
import { XdrError } from "../../../src/protocol/xdr/codec.ts";

const stat = (over: Partial<FhStat> = {}): FhStat => ({
  unsupported: 0,
  fs_type: FsType.UNIX,
  ftype: FileType.REG,
  mtime: 1_700_000_000,
  atime: 0xffff_ffff,
  ctime: 0,
  owner: 70000,
  group: 0xffff_fffe,
  fattr: 0o4755,
  size: 12,
  links: 2,
  ...over,
});
const big = (s: FhStat) => ({ ...s, size: BigInt(s.size) });

/** Names of every length modulo 4 (padding), non-UTF-8 bytes, an empty name. */
const names = [Buffer.from("a"), Buffer.from("ab"), Buffer.from("abc"), Buffer.from("abcd"), Buffer.from([0xff, 0xfe, 0x80, 0x00, 0x2f]), Buffer.alloc(0), Buffer.from("é/ü".repeat(50))];
/** Sizes and numbers at the edges: 2^32, 2^53 - 1, bigints past 2^53 up to 2^64 - 1. */
const numbers: Array<number | bigint> = [0, 1, 0xffff_ffff, 0x1_0000_0000, Number.MAX_SAFE_INTEGER, 2n ** 53n + 1n, 0xffff_ffff_ffff_ffffn];
const bigOf = (v: number | bigint) => BigInt(v);

/** The body (after mark and header) of a record, checked for a well-formed mark and header. */
function body(record: Buffer, code: number): Buffer {
  expect(record.readUInt32BE(0)).toBe((0x8000_0000 | (record.length - 4)) >>> 0);
  const h = decodeHeader(record.subarray(4));
  expect(h).toMatchObject({ message_type: MessageType.REQUEST, message_code: code, reply_sequence: 0, error_code: 0 });
  return record.subarray(FH_BODY_OFFSET);
}

describe("pre-encoded file history records", () => {
  it("FH_ADD_FILE: the same bytes as the generic v4 and v3 encoders", () => {
    const w = new FhRecordWriter(Message.FH_ADD_FILE);
    const files = [];
    let i = 0;
    for (const n of names) {
      for (const v of numbers) {
        const s = stat({ size: v, ftype: i % 2 ? FileType.DIR : FileType.SLINK, fs_type: i % 3 ? FsType.UNIX : FsType.OTHER, unsupported: i % 4 });
        const slash = i % 2 === 0;
        w.file(n, slash, s, v, numbers[(i + 3) % numbers.length]!);
        const name = slash ? Buffer.concat([Buffer.from("/"), n]) : n;
        files.push({ names: [{ fs_type: FsType.UNIX, unix_name: name }], stats: [big(s)], node: bigOf(v), fh_info: bigOf(numbers[(i + 3) % numbers.length]!) });
        i++;
      }
    }
    expect(w.count).toBe(files.length);
    const record = w.take()!;
    expect(w.count).toBe(0);
    const b = body(record, Message.FH_ADD_FILE);
    expect(b.equals(wireV4.encodePost(Message.FH_ADD_FILE, { files }))).toBe(true);
    expect(b.equals(wireV3.encodePost(Message.FH_ADD_FILE, { files }))).toBe(true);
    // And it reads back as the entries that went in.
    const back = wireV4.decodeRequest(Message.FH_ADD_FILE, b);
    expect(back.files[4].names[0].unix_name).toEqual(Buffer.from("/a"));
    expect(back.files.at(-1).stats[0].size).toBe(0xffff_ffff_ffff_ffffn);
  });

  it("FH_ADD_DIR and FH_ADD_NODE: the same bytes as the generic encoders", () => {
    const d = new FhRecordWriter(Message.FH_ADD_DIR);
    const n = new FhRecordWriter(Message.FH_ADD_NODE);
    const dirs = [];
    const nodes = [];
    for (const [i, name] of names.entries()) {
      for (const v of numbers) {
        d.dir(name, v, numbers[i % numbers.length]!);
        dirs.push({ names: [{ fs_type: FsType.UNIX, unix_name: name }], node: bigOf(v), parent: bigOf(numbers[i % numbers.length]!) });
        const s = stat({ size: BigInt(v), links: i, mtime: i });
        n.node(s, v, 7);
        nodes.push({ stats: [big(s)], node: bigOf(v), fh_info: 7n });
      }
    }
    for (const wire of [wireV4, wireV3]) {
      expect(body(d.take()!, Message.FH_ADD_DIR).equals(wire.encodePost(Message.FH_ADD_DIR, { dirs }))).toBe(true);
      expect(body(n.take()!, Message.FH_ADD_NODE).equals(wire.encodePost(Message.FH_ADD_NODE, { nodes }))).toBe(true);
      // Once more, now into reused buffers that hold the first round's bytes (padding must be zeroed).
      for (const [i, name] of names.entries()) {
        for (const v of numbers) {
          d.dir(name, v, numbers[i % numbers.length]!);
          n.node(stat({ size: BigInt(v), links: i, mtime: i }), v, 7);
        }
      }
    }
  });

  it("reuses a released buffer, and only whole pooled ones", () => {
    const w = new FhRecordWriter(Message.FH_ADD_DIR);
    w.dir(Buffer.from("x"), 1, 2);
    const first = w.take()!;
    const before = pooledRecords();
    releaseRecord(first);
    releaseRecord(first); // twice is still once
    expect(pooledRecords()).toBe(before + 1);
    releaseRecord(Buffer.alloc(10));
    expect(pooledRecords()).toBe(before + 1);
    w.dir(Buffer.from("y"), 3, 4);
    const second = w.take()!;
    expect(second.buffer).toBe(first.buffer);
    expect(pooledRecords()).toBe(before);
  });

  it("grows past its buffer for a batch of long names", () => {
    const w = new FhRecordWriter(Message.FH_ADD_DIR);
    const long = Buffer.alloc(300_000, 0x61);
    const dirs = [];
    for (let i = 0; i < 3; i++) {
      w.dir(long, i, 0);
      dirs.push({ names: [{ fs_type: FsType.UNIX, unix_name: long }], node: BigInt(i), parent: 0n });
    }
    expect(body(w.take()!, Message.FH_ADD_DIR).equals(wireV4.encodePost(Message.FH_ADD_DIR, { dirs }))).toBe(true);
  });

  it("refuses numbers XDR cannot carry, and drops the half-written entry", () => {
    const w = new FhRecordWriter(Message.FH_ADD_NODE);
    w.node(stat(), 1, 2);
    expect(() => w.node(stat(), -1, 2)).toThrow(XdrError);
    expect(() => w.node(stat({ size: 2 ** 64 }), 1, 2)).toThrow(XdrError);
    expect(() => w.node(stat({ size: 2n ** 64n }), 1, 2)).toThrow(XdrError);
    expect(() => w.node(stat({ owner: 2 ** 32 }), 1, 2)).toThrow();
    expect(() => w.node(stat({ links: 1.5 }), 1, 2)).toThrow(XdrError);
    expect(w.count).toBe(1);
    const b = body(w.take()!, Message.FH_ADD_NODE);
    expect(b.equals(wireV4.encodePost(Message.FH_ADD_NODE, { nodes: [{ stats: [big(stat())], node: 1n, fh_info: 2n }] }))).toBe(true);
    expect(() => new FhRecordWriter(Message.LOG_MESSAGE)).toThrow(XdrError);
    expect(new FhRecordWriter(Message.FH_ADD_FILE).take()).toBeUndefined();
  });
});
