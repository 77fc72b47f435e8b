import { describe, expect, it } from "vitest";
import { Message } from "../../../src/protocol/codes.ts";
import { decode, encode, XdrError } from "../../../src/protocol/xdr/codec.ts";
import { DESTINATION_PATH, FH_INFO, NAME, Nlist, NlistBuilder, NODE, ORIGINAL_PATH, OTHER_NAME } from "../../../src/protocol/xdr/nlist.ts";
import { v3ByCode, NLIST_V3 } from "../../../src/protocol/xdr/v3.ts";
import { NLIST_V4, v4ByCode } from "../../../src/protocol/xdr/v4.ts";
import { wireV3 } from "../../../src/protocol/wire-v3.ts";

const ALL1 = 0xffff_ffff_ffff_ffffn;
const recover4 = v4ByCode.get(Message.DATA_START_RECOVER)!.request;
const recover3 = v3ByCode.get(Message.DATA_START_RECOVER)!.request;
const e4 = (original_path: string, destination_path: string, name = "", node = ALL1, fh_info = ALL1) => ({ original_path, destination_path, name, other_name: "", node, fh_info });

describe("the flat nlist (DATA_START_RECOVER)", () => {
  const entries = [e4("/a", "/r/a"), e4("/sub/b.txt", "/r", "b2", 7n, 1024n), e4("", "/r/all", "", 0n, ALL1), { ...e4("/x\xff", "/r/x"), other_name: "o" }];
  const bytes = encode(recover4, { env: [], nlist: entries, butype_name: "tar" });

  it("decodes v4 to an Nlist whose fields are the entries sent, and encodes back to the same bytes", () => {
    const req = decode(recover4, bytes);
    const n = req.nlist as Nlist;
    expect(n).toBeInstanceOf(Nlist);
    expect(n.length).toBe(4);
    expect(req.butype_name.toString()).toBe("tar"); // what follows the list is read from the right place
    expect(n.bytes(1, ORIGINAL_PATH).toString()).toBe("/sub/b.txt");
    expect(n.bytes(1, DESTINATION_PATH).toString()).toBe("/r");
    expect(n.bytes(1, NAME).toString()).toBe("b2");
    expect([n.number(1, NODE), n.number(1, FH_INFO)]).toEqual([7n, 1024n]);
    expect([n.number(2, NODE), n.number(2, FH_INFO)]).toEqual([0n, ALL1]);
    expect(n.size(2, ORIGINAL_PATH)).toBe(0);
    expect(n.bytes(2, ORIGINAL_PATH).length).toBe(0);
    expect(n.bytes(3, ORIGINAL_PATH).equals(Buffer.from("/x\xff"))).toBe(true); // bytes, not text
    expect(n.bytes(3, OTHER_NAME).toString()).toBe("o");
    expect(n.entry(1)).toEqual({ original_path: Buffer.from("/sub/b.txt"), destination_path: Buffer.from("/r"), name: Buffer.from("b2"), other_name: Buffer.alloc(0), node: 7n, fh_info: 1024n });
    expect(encode(recover4, req)).toEqual(bytes);
    expect(n.toArray().map((x) => x.original_path!.toString())).toEqual(["/a", "/sub/b.txt", "", "/x\xff"]);
  });

  it("is a view of the record: no copy of the names, no object per entry", () => {
    const n = decode(recover4, bytes).nlist as Nlist;
    expect(n.bytesOnWire.buffer).toBe(bytes.buffer);
    expect(n.bytes(0, ORIGINAL_PATH).buffer).toBe(bytes.buffer);
  });

  it("finds NUL bytes in a field", () => {
    const n = Nlist.from(NLIST_V4, [e4("/a", "/r/x\0y"), e4("/b\0", "/r")]);
    expect([n.hasNul(0, ORIGINAL_PATH), n.hasNul(0, DESTINATION_PATH), n.hasNul(1, ORIGINAL_PATH), n.hasNul(1, NAME)]).toEqual([false, true, true, false]);
  });

  it("refuses lengths that lie, truncation and bad padding with XdrError", () => {
    // The env's count (0) at 0, the nlist's count at 4, the first original_path at 8 ("/a" at 12).
    const lying = Buffer.from(bytes);
    lying.writeUInt32BE(0x7fff_ffff, 4);
    expect(() => decode(recover4, lying)).toThrow(/array of 2147483647 elements runs past the end/);
    const longName = Buffer.from(bytes);
    longName.writeUInt32BE(1_000_000, 8);
    expect(() => decode(recover4, longName)).toThrow(/opaque of 1000000 bytes runs past the end/);
    for (const cut of [9, 20, 40, bytes.length - 12]) expect(() => decode(recover4, bytes.subarray(0, cut))).toThrow(XdrError);
    const badPad = Buffer.from(bytes);
    badPad[15] = 1; // "/a" is padded with two zeros
    expect(() => decode(recover4, badPad)).toThrow(/invalid padding/);
  });

  it("decodes v3 and maps it to v4 terms: destination_dir/new_name (or + original_path) as destination_path, name empty", () => {
    const v3 = [
      { original_path: "/a", destination_dir: "/r", new_name: "", other_name: "", node: ALL1, fh_info: 5n },
      { original_path: "/b", destination_dir: "/r/", new_name: "c", other_name: "z", node: 9n, fh_info: ALL1 },
    ];
    const internal = wireV3.decodeRequest(Message.DATA_START_RECOVER, encode(recover3, { env: [], nlist: v3, bu_type: "dump" }));
    const n = internal.nlist as Nlist;
    expect(n.layout).toBe(NLIST_V4);
    expect(internal.butype_name.toString()).toBe("dump");
    expect([0, 1].map((i) => n.bytes(i, DESTINATION_PATH).toString())).toEqual(["/r/a", "/r/c"]);
    expect([0, 1].map((i) => n.size(i, NAME))).toEqual([0, 0]);
    expect([n.bytes(1, OTHER_NAME).toString(), n.number(0, FH_INFO), n.number(1, NODE)]).toEqual(["z", 5n, 9n]);
    // The v3 decoding itself, before the mapping, keeps the v3 names.
    const raw = decode(recover3, encode(recover3, { env: [], nlist: v3, bu_type: "dump" })).nlist as Nlist;
    expect(raw.layout).toBe(NLIST_V3);
    expect(raw.entry(1)).toMatchObject({ destination_dir: Buffer.from("/r/"), new_name: Buffer.from("c") });
  });

  it("the builder writes the same XDR the codec reads, and refuses u64s out of range", () => {
    const built = Nlist.from(NLIST_V4, entries);
    expect(encode(recover4, { env: [], nlist: built, butype_name: "tar" })).toEqual(bytes);
    const b = new NlistBuilder(NLIST_V4, 1);
    expect(() => b.add(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), -1n, 0n)).toThrow(/u64 out of range/);
    expect(() => new NlistBuilder(NLIST_V4, 2).finish()).toThrow(XdrError); // fewer entries than announced
    expect(() => encode(recover4, { env: [], nlist: [{ ...e4("/a", "/b"), node: 1n << 64n }], butype_name: "tar" })).toThrow(XdrError);
  });
});
