import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import { DR_NEWINODEFMT, TP_BSIZE, TS_INODE, TS_TAPE, decodeHeader, encodeHeader, encodeHeaderInto, headerBase, isHeader, type DumpHeader } from "../../../../formats/dump/header.ts";

function sample(over: Partial<DumpHeader> = {}): DumpHeader {
  const addr = new Uint8Array(512).fill(1, 0, 5);
  return {
    type: TS_INODE,
    date: 1_764_000_000,
    ddate: 1_763_000_000,
    volume: 1,
    tapea: 4_294_967_296 + 17, // wraps on tape
    inumber: 12345,
    dinode: {
      mode: 0o100644,
      nlink: 2,
      size: 2 ** 40 + 3,
      atime: { sec: 1, usec: 2 },
      mtime: { sec: 3, usec: 4 },
      ctime: { sec: 5, usec: 6 },
      rdev: 0,
      flags: 0,
      blocks: 10,
      uid: 70000,
      gid: 80000,
    },
    count: 5,
    addr,
    label: Buffer.from("none"),
    level: 3,
    filesys: Buffer.from("/srv/data"),
    dev: Buffer.from("/dev/sda1"),
    host: Buffer.from("fileserver"),
    flags: DR_NEWINODEFMT,
    firstrec: 0,
    ntrec: 64,
    extattributes: 0,
    ext: { times: { atime: { sec: -5, nsec: 1 }, mtime: { sec: 2 ** 33, nsec: 999_999_999 }, ctime: { sec: 7, nsec: 8 } } },
    ...over,
  };
}

describe("dump header", () => {
  it("encodes and decodes every field, with a valid checksum", () => {
    const h = sample();
    const rec = encodeHeader(h);
    expect(rec.length).toBe(TP_BSIZE);
    expect(isHeader(rec)).toBe(true);
    const back = decodeHeader(rec, 0);
    expect(back.tapea).toBe(17);
    expect({ ...back, tapea: h.tapea }).toEqual({ ...h, addr: Uint8Array.from(h.addr) });
  });

  it("starting from headerBase gives the same bytes as from zeros, whatever the record held before", () => {
    const fixed = sample();
    const base = headerBase(fixed);
    for (const h of [sample(), sample({ type: TS_TAPE, inumber: 0, count: 1, ext: undefined, addr: new Uint8Array(512) }), sample({ ext: { longNamesInPad: true }, extattributes: 3 })]) {
      const garbage = Buffer.alloc(TP_BSIZE, 0xa5);
      expect(encodeHeaderInto(h, garbage, base).equals(encodeHeader(h))).toBe(true);
    }
  });

  it("a long name field is cut and stays NUL-terminated", () => {
    const rec = encodeHeader(sample({ host: Buffer.alloc(100, 0x68) }));
    expect(decodeHeader(rec, 0).host.length).toBe(63);
  });
});
