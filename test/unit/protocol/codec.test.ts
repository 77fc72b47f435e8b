import { describe, expect, it } from "vitest";
import {
  array,
  decode,
  encode,
  fixed,
  i16,
  opaque,
  str,
  struct,
  u16,
  u32,
  u64,
  union,
  XdrError,
} from "../../../src/protocol/xdr/codec.ts";

const hex = (b: Buffer) => b.toString("hex");

describe("XDR codecs", () => {
  it("encodes integers big-endian in 4 bytes, u16 included", () => {
    expect(hex(encode(u32, 0x01020304))).toBe("01020304");
    expect(hex(encode(u16, 10000))).toBe("00002710");
    expect(hex(encode(i16, -2))).toBe("fffffffe");
    expect(decode(i16, Buffer.from("fffffffe", "hex"))).toBe(-2);
    expect(hex(encode(u64, 0x0102030405060708n))).toBe("0102030405060708");
  });

  it("pads strings to 4 bytes with zeros and keeps arbitrary bytes", () => {
    const name = Buffer.from([0x66, 0xff, 0xfe, 0x00, 0x80]);
    const bytes = encode(str, name);
    expect(hex(bytes)).toBe("0000000566fffe008000000000".slice(0, 24));
    expect(decode(str, bytes)).toEqual(name);
    expect(hex(encode(str, "abcd"))).toBe("0000000461626364");
  });

  it("rejects strings that run past the record, or nonzero padding", () => {
    expect(() => decode(str, Buffer.from("00000010616263", "hex"))).toThrow(XdrError);
    expect(() => decode(str, Buffer.from("0000000161ff0000", "hex"))).toThrow(XdrError);
    expect(() => decode(opaque(2), Buffer.from("0000000361626300", "hex"))).toThrow(/exceeds/);
  });

  it("refuses arrays whose count cannot fit in what is left", () => {
    expect(() => decode(array(u32), Buffer.from("7fffffff00000000", "hex"))).toThrow(/past the end/);
  });

  it("structs and unions are plain objects; out-of-range values refuse to encode", () => {
    const s = struct({ a: u32, b: str });
    expect(decode(s, encode(s, { a: 7, b: Buffer.from("x") }))).toEqual({ a: 7, b: Buffer.from("x") });
    expect(() => encode(s, { a: -1, b: "x" })).toThrow(XdrError);
    expect(() => encode(s, { a: 1 } as never)).toThrow(/missing field b/);
    const un = union("t", { 0: null, 1: ["v", u32] }, ["other", str]);
    expect(decode(un, encode(un, { t: 1, v: 5 }))).toEqual({ t: 1, v: 5 });
    expect(decode(un, encode(un, { t: 0 }))).toEqual({ t: 0 });
    expect(decode(un, encode(un, { t: 9, other: Buffer.from("z") }))).toEqual({ t: 9, other: Buffer.from("z") });
    const strict = union("t", { 0: null });
    expect(() => decode(strict, Buffer.from("00000005", "hex"))).toThrow(/no union arm/);
  });

  it("ignores bytes left after the body (some peers pad records)", () => {
    expect(decode(u32, Buffer.from("00000001deadbeef", "hex"))).toBe(1);
  });

  it("fixed opaque has no length word", () => {
    const f = fixed(4);
    expect(hex(encode(f, Buffer.from("01020304", "hex")))).toBe("01020304");
    expect(() => encode(f, Buffer.alloc(3))).toThrow(XdrError);
  });
});

describe("XDR decoding of a big nlist shares what repeats", () => {
  const entry = struct({ name: str, other_name: str, node: u64, fh_info: u64 });
  const ALL1 = 0xffff_ffff_ffff_ffffn;

  it("decodes every empty opaque to one zero-length Buffer and the values 0 and 2^64-1 to one bigint each, equal to what was sent", () => {
    const list = decode(array(entry), encode(array(entry), [
      { name: "", other_name: "", node: ALL1, fh_info: 0n },
      { name: "a", other_name: "", node: ALL1, fh_info: 7n },
    ]));
    expect(list[0]!.name).toBe(list[1]!.other_name); // one shared Buffer
    expect((list[0]!.name as Buffer).length).toBe(0);
    expect(Buffer.from(list[1]!.name as Buffer).toString()).toBe("a");
    expect(list.map((e) => [e.node, e.fh_info])).toEqual([[ALL1, 0n], [ALL1, 7n]]);
  });
});
