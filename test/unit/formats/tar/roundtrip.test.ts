/**
 * Writer -> reader round trips: everything the Entry model can say must come back unchanged,
 * whatever the chunking of the input, and entry offsets must point at the first header.
 */
import { describe, expect, it } from "vitest";
import type { Entry } from "../../../../formats/entry.ts";
import { TarFormatError, TarReader } from "../../../../formats/tar/reader.ts";
import { contentSize, encodeHeader, endOfArchive, padding } from "../../../../formats/tar/writer.ts";
import { buildArchive, collect, type Item, file, logicalContent, node, pattern, readInChunks } from "./helpers.ts";

const GiB = 1024 ** 3;
const bin = (...bytes: number[]): Buffer => Buffer.from(bytes);
const cat = (...parts: Array<string | Buffer>): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : p)));

/** One entry of every kind the brief lists. */
function zoo(): Item[] {
  const long150 = `${"d".repeat(60)}/${"e".repeat(60)}/${"f".repeat(28)}`; // splits into prefix + name
  const long150noSlash = "n".repeat(150);
  const long300 = `${"a".repeat(99)}/${"b".repeat(99)}/${"c".repeat(100)}`;
  const nonUtf8Long = cat("dir/", bin(0xff, 0xfe), "x".repeat(120), bin(0xc3)); // 0xc3 alone: not UTF-8
  const sparseRuns = [
    { offset: 4096, length: 10 },
    { offset: 5 * GiB, length: 3 },
    { offset: 9 * GiB - 7, length: 7 }, // ends in data
  ];
  return [
    node(".", "directory", { mode: 0o755 }),
    node("dir", "directory", { mode: 0o1777, uname: Buffer.from("root"), gname: Buffer.from("wheel") }),
    file("dir/small.txt", Buffer.from("hello\n")),
    file("dir/empty", Buffer.alloc(0)),
    file("dir/exact-block", pattern(512, 7)),
    file("dir/multi-block", pattern(3000, 8), { mode: 0o4755 }),
    file(long150, Buffer.from("prefix split")),
    file(long150noSlash, Buffer.from("pax path")),
    file(long300, Buffer.from("very long")),
    file(cat("dir/", bin(0xff, 0xfe)), Buffer.from("short binary name")),
    file(nonUtf8Long, Buffer.from("long binary name")),
    file("dir/ids", Buffer.from("x"), { uid: 3_000_000, gid: 2 ** 40 + 5 }),
    file("dir/old", Buffer.alloc(0), { mtime: { sec: -1_000_000_001, nsec: 500_000_000 } }),
    file("dir/future", Buffer.alloc(0), {
      mtime: { sec: 4_000_000_000, nsec: 123_456_789 },
      atime: { sec: 4_000_000_001, nsec: 1 },
      ctime: { sec: -1, nsec: 999_999_999 },
    }),
    file("dir/year3000", Buffer.alloc(0), { mtime: { sec: 32_503_680_000, nsec: 0 } }), // past octal's 2242
    file("dir/xattrs", Buffer.from("x"), {
      xattrs: [
        [Buffer.from("user.bin"), bin(0, 1, 0x0a, 0xff, 0x3d, 0x0a, 0)],
        [Buffer.from("user.empty"), Buffer.alloc(0)],
        [Buffer.from("user.a=b%3Dc"), Buffer.from("needs keyword escaping")],
        [Buffer.from("system.posix_acl_access"), bin(2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff)],
      ],
    }),
    {
      entry: {
        path: Buffer.from("dir/sparse9g"),
        type: "file",
        mode: 0o600,
        uid: 0,
        gid: 0,
        size: 9 * GiB,
        mtime: { sec: 1, nsec: 0 },
        sparse: sparseRuns,
      },
      data: pattern(20, 3),
    },
    {
      entry: {
        path: Buffer.from("dir/sparse-hole-at-end"),
        type: "file",
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 100_000,
        mtime: { sec: 1, nsec: 0 },
        sparse: [{ offset: 0, length: 700 }],
      },
      data: pattern(700, 4),
    },
    {
      entry: { path: Buffer.from("dir/all-hole"), type: "file", mode: 0o644, uid: 0, gid: 0, size: 5000, mtime: { sec: 1, nsec: 0 }, sparse: [] },
      data: Buffer.alloc(0),
    },
    node("dir/null", "chardev", { devMajor: 1, devMinor: 3 }),
    node("dir/bigdev", "blockdev", { devMajor: 4095, devMinor: 1_048_575 }),
    node("dir/fifo", "fifo", { mode: 0o600 }),
    node("dir/hard", "hardlink", { linkTarget: Buffer.from("dir/small.txt") }),
    node("dir/hard-to-long", "hardlink", { linkTarget: Buffer.from(long300) }),
    (() => {
      const target = cat("../", bin(0xff), "t".repeat(200), bin(0x80));
      return node("dir/symlink", "symlink", { linkTarget: target, size: target.length, mode: 0o777 });
    })(),
    node("dir/longowner", "directory", { uname: Buffer.from("u".repeat(40)), gname: cat("g", bin(0xe9)) }),
    node(`${"deep/".repeat(60)}end`, "directory"),
  ];
}

/** What the reader should report for an input entry. */
function expected(item: Item): Entry {
  const e: Entry = { ...item.entry };
  if (e.sparse) e.sparse = e.sparse.filter((r) => r.length > 0);
  return e;
}

describe("tar writer -> reader round trip", () => {
  const items = zoo();
  const { archive, offsets } = buildArchive(items);

  it("returns every entry, field and byte unchanged", () => {
    const { items: read, ended } = collect(readInChunks(archive, [archive.length]));
    expect(ended).toBe(true);
    expect(read.map((r) => r.entry.path.toString("latin1"))).toEqual(items.map((i) => i.entry.path.toString("latin1")));
    for (const [k, item] of items.entries()) {
      expect(read[k]!.entry, item.entry.path.toString("latin1")).toEqual(expected(item));
      expect(read[k]!.data.equals(item.data ?? Buffer.alloc(0))).toBe(true);
      expect(read[k]!.offset).toBe(offsets[k]);
    }
  });

  it("reports sparse data at its logical offsets", () => {
    const { items: read } = collect(readInChunks(archive, [archive.length]));
    const s9 = read.find((r) => r.entry.path.toString() === "dir/sparse9g")!;
    expect(s9.entry.size).toBe(9 * GiB);
    expect(s9.extents).toEqual([
      [4096, 10],
      [5 * GiB, 3],
      [9 * GiB - 7, 7],
    ]);
    const hole = read.find((r) => r.entry.path.toString() === "dir/sparse-hole-at-end")!;
    const full = logicalContent(hole);
    expect(full.subarray(0, 700).equals(pattern(700, 4))).toBe(true);
    expect(full.subarray(700).every((b) => b === 0)).toBe(true);
  });

  it("gives the same events whatever the chunk boundaries (1 byte at a time too)", () => {
    const whole = collect(readInChunks(archive, [archive.length]));
    for (const sizes of [[1], [511, 513, 7], [3, 1024, 1, 100_000]]) {
      const got = collect(readInChunks(archive, sizes));
      expect(got.ended).toBe(true);
      expect(got.items.map((r) => [r.entry, r.offset, r.data, r.extents])).toEqual(
        whole.items.map((r) => [r.entry, r.offset, r.data, r.extents]),
      );
    }
  });

  it("starts at any entry offset and keeps offsets absolute", () => {
    for (const k of [2, 10, 16, items.length - 1]) {
      const events = readInChunks(archive.subarray(offsets[k]!), [4096], offsets[k]);
      const { items: read } = collect(events);
      expect(read.length).toBe(items.length - k);
      expect(read[0]!.offset).toBe(offsets[k]);
      expect(read[0]!.entry).toEqual(expected(items[k]!));
      expect(read.map((r) => r.offset)).toEqual(offsets.slice(k));
    }
  });

  it("keeps small files with short names to one 512-byte header", () => {
    expect(encodeHeader(items[2]!.entry).length).toBe(512); // dir/small.txt
    expect(encodeHeader(items[6]!.entry).length).toBe(512); // 150-byte name split into prefix + name
    expect(encodeHeader(items[9]!.entry).length).toBe(512); // short non-UTF-8 name: raw in ustar
    expect(encodeHeader(items[7]!.entry).length).toBeGreaterThan(512); // no "/" to split at
  });

  it("marks non-UTF-8 pax names with hdrcharset=BINARY, and only those", () => {
    const binary = encodeHeader(items[10]!.entry);
    expect(binary.includes("hdrcharset=BINARY")).toBe(true);
    const utf8 = encodeHeader(file(`${"é".repeat(80)}`, Buffer.alloc(0)).entry);
    expect(utf8.includes("path=")).toBe(true);
    expect(utf8.includes("hdrcharset")).toBe(false);
  });

  it("puts an offset at the first header: a pax x header when there is one", () => {
    for (const [k, off] of offsets.entries()) {
      const flag = String.fromCharCode(archive[off + 156]!);
      const needsPax = encodeHeader(items[k]!.entry).length > 512 && !items[k]!.entry.sparse;
      if (needsPax || items[k]!.entry.sparse) expect(flag).toBe("x");
    }
  });
});

describe("sizes over 8 GiB", () => {
  const size = 9 * GiB;
  const entry: Entry = { path: Buffer.from("huge"), type: "file", mode: 0o644, uid: 0, gid: 0, size, mtime: { sec: 0, nsec: 0 } };

  it("encodes the size as a pax record and decodes it", () => {
    const header = encodeHeader(entry);
    expect(header.includes(`size=${size}\n`)).toBe(true);
    expect(contentSize(entry)).toBe(size);
    const reader = new TarReader();
    const events = reader.feed(header);
    expect(events).toEqual([{ kind: "entry", entry, offset: 0 }]);
    expect(reader.offset).toBe(header.length);
    // The reader now expects 9 GiB of data: some arrives, then the stream stops.
    const more = reader.feed(Buffer.alloc(4096, 1));
    expect(more).toEqual([{ kind: "data", chunk: Buffer.alloc(4096, 1), fileOffset: 0 }]);
    expect(() => reader.finish()).toThrow(TarFormatError);
  });
});

describe("writer API", () => {
  it("pads content to a block and ends with two zero blocks", () => {
    expect(padding(0).length).toBe(0);
    expect(padding(1).length).toBe(511);
    expect(padding(512).length).toBe(0);
    expect(padding(513).length).toBe(511);
    expect(endOfArchive().equals(Buffer.alloc(1024))).toBe(true);
  });

  it("counts only data runs as content of sparse files, and nothing for links", () => {
    expect(contentSize(zoo()[16]!.entry)).toBe(20);
    expect(contentSize(node("h", "hardlink", { linkTarget: Buffer.from("x"), size: 99 }).entry)).toBe(0);
  });

  it("rejects what tar cannot hold", () => {
    expect(() => encodeHeader(node("s", "socket").entry)).toThrow(RangeError);
    expect(() => encodeHeader(file(Buffer.from("a\0b"), Buffer.alloc(0)).entry)).toThrow(RangeError);
    expect(() => encodeHeader(node("l", "symlink").entry)).toThrow(RangeError);
    expect(() => encodeHeader(file("f", Buffer.alloc(0), { mtime: { sec: 0, nsec: 1e9 } }).entry)).toThrow(RangeError);
    const overlapping = file("f", Buffer.alloc(0), { size: 100, sparse: [{ offset: 10, length: 10 }, { offset: 15, length: 1 }] });
    expect(() => encodeHeader(overlapping.entry)).toThrow(RangeError);
    const outside = file("f", Buffer.alloc(0), { size: 100, sparse: [{ offset: 95, length: 10 }] });
    expect(() => encodeHeader(outside.entry)).toThrow(RangeError);
  });
});
