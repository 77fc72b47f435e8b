import { describe, expect, it } from "vitest";
import type { Entry } from "../../../formats/entry.ts";
import { BatchWriter, decodeBatch, planBatch } from "../../../src/engine/scan-wire.ts";
import type { ListedNames } from "../../../src/engine/walker.ts";

const b = (s: string | number[]) => (typeof s === "string" ? Buffer.from(s) : Buffer.from(s));

const entries: Array<[Entry, Buffer]> = [
  [{ path: b("."), type: "directory", mode: 0o755, uid: 0, gid: 0, size: 0, mtime: { sec: 1, nsec: 2 }, atime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 }, dev: 2049, ino: 2, nlink: 3 }, b("/srv")],
  // Non-UTF-8 bytes, a time before 1970 and one past 2038, ids past 2^21, a size past 8 GiB.
  [{ path: b([0x66, 0xff, 0xfe, 0x2f, 0x80]), type: "file", mode: 0o4755, uid: 4_000_000_000, gid: 2 ** 31, size: 9 * 2 ** 30, mtime: { sec: -86_401, nsec: 999_999_999 }, atime: { sec: 2 ** 33, nsec: 0 }, dev: 2049, ino: 2 ** 40, nlink: 1, sparse: [{ offset: 0, length: 4096 }, { offset: 8 * 2 ** 30, length: 1 }], xattrs: [[b("user.bin"), b([0, 255, 1])], [b("system.posix_acl_access"), Buffer.alloc(0)]] }, b([0x2f, 0x66, 0xff, 0xfe, 0x2f, 0x80])],
  [{ path: b("l"), type: "symlink", mode: 0o777, uid: 1, gid: 1, size: 3, mtime: { sec: 0, nsec: 0 }, linkTarget: b("../x") }, b("/srv/l")],
  [{ path: b("h"), type: "hardlink", mode: 0o644, uid: 1, gid: 1, size: 10, mtime: { sec: 0, nsec: 0 }, linkTarget: b("f") }, b("/srv/h")],
  [{ path: b("dev/null"), type: "chardev", mode: 0o666, uid: 0, gid: 0, size: 0, mtime: { sec: 0, nsec: 0 }, devMajor: 1, devMinor: 3, uname: b("root"), gname: b("wheel") }, b("/srv/dev/null")],
  [{ path: b("p"), type: "fifo", mode: 0o600, uid: 0, gid: 0, size: 0, mtime: { sec: 0, nsec: 0 } }, b("/srv/p")],
];

describe("scan batches (worker -> backup)", () => {
  it("carry dev and ino exactly past 2^53 (overlayfs xino): bigints stay bigints, small ones numbers", () => {
    const big = 2n ** 63n + 2n;
    const mk = (ino: bigint | number, dev: bigint | number): Entry => ({ path: b("f"), type: "file", mode: 0o644, uid: 0, gid: 0, size: 1, mtime: { sec: 0, nsec: 0 }, dev, ino, nlink: 1 });
    const w = new BatchWriter();
    const sent = [mk(big, 2n ** 60n), mk(big + 1n, 2n ** 60n), mk(12, 2049)];
    for (const e of sent) w.addItem(e, b("/f"));
    const got = decodeBatch(w.take()).map((r) => ("entry" in r ? r.entry : undefined)!);
    expect(got.map((e) => [e.dev, e.ino])).toEqual([[2n ** 60n, big], [2n ** 60n, big + 1n], [2049, 12]]);
    expect(got[0]!.ino).not.toBe(got[1]!.ino); // as doubles these two were one number
    expect(Number(big) === Number(big + 1n)).toBe(true);
  });


  it("carry every Entry field and the absolute path exactly, names as bytes", () => {
    const w = new BatchWriter();
    for (const [e, abs] of entries) w.addItem(e, abs);
    expect(w.count).toBe(entries.length);
    const got = decodeBatch(w.take());
    expect(got).toEqual(entries.map(([entry, absPath]) => ({ entry, absPath })));
    expect(w.count).toBe(0);
    expect(w.size).toBe(0);
  });

  it("keep reports in their place among the items", () => {
    const w = new BatchWriter();
    w.addItem(entries[0]![0], entries[0]![1]);
    w.addReport(b([0x61, 0xff]), { message: "permission denied — x", code: "EACCES" });
    w.addReport(b("z"), { message: "invalid name; not backed up" });
    w.addItem(entries[2]![0], entries[2]![1]);
    const got = decodeBatch(w.take());
    expect(got.map((r) => ("report" in r ? r.report : "entry" in r ? r.entry.path.toString() : r.listed))).toEqual([
      ".",
      { rel: b([0x61, 0xff]), error: { message: "permission denied — x", code: "EACCES" } },
      { rel: b("z"), error: { message: "invalid name; not backed up" } },
      "l",
    ]);
  });

  it("grow past their first buffer (long names, many items)", () => {
    const w = new BatchWriter();
    const long = Buffer.alloc(200_000, 0x61);
    const e: Entry = { ...entries[5]![0], path: long, xattrs: [[b("user.big"), Buffer.alloc(70_000, 7)]] };
    for (let i = 0; i < 300; i++) w.addItem(entries[i % 2]![0], entries[i % 2]![1]);
    w.addItem(e, long);
    const got = decodeBatch(w.take());
    expect(got).toHaveLength(301);
    expect(got[300]).toEqual({ entry: e, absPath: long });
  });

  it("carry unknown ids as unknown, and ids at 2^53 - 1, 2^53 and 2^64 - 2 exactly", () => {
    const mk = (dev: bigint | number | undefined, ino: bigint | number | undefined): Entry => ({ path: b("f"), type: "file", mode: 0o644, uid: 0, gid: 0, size: 1, mtime: { sec: 0, nsec: 0 }, dev, ino });
    const w = new BatchWriter();
    const sent = [mk(undefined, undefined), mk(2 ** 53 - 1, 2 ** 32), mk(2n ** 53n, 2n ** 64n - 2n), mk(0, 4294967295)];
    for (const e of sent) w.addItem(e, b("/f"));
    const got = decodeBatch(w.take()).map((r) => ("entry" in r ? [r.entry.dev, r.entry.ino] : undefined));
    expect(got).toEqual([[undefined, undefined], [2 ** 53 - 1, 2 ** 32], [2n ** 53n, 2n ** 64n - 2n], [0, 4294967295]]);
  });

  it("carry a directory's listed names (ListedNames) in their place: bytes, types and identities exactly, as one record of many", () => {
    const names = [b("a"), b([0xff, 0x00, 0x2e]), Buffer.alloc(255, 0x7a), b("p")];
    // The sender's names sit anywhere in a buffer of its own (a listing, out of byte order).
    const bytes = Buffer.concat([b("xx"), ...names.slice().reverse()]);
    const starts = [2 + 3 + 255 + 1, 2 + 1 + 255, 2 + 1, 2];
    const listed: ListedNames = { dir: b([0x64, 0xfe]), dev: 2n ** 60n, count: 4, bytes, starts, lengths: names.map((n) => n.length), types: ["file", "symlink", "socket", "fifo"], inos: [3, 2 ** 53 - 1, 2n ** 64n - 2n, 0] };
    const w = new BatchWriter();
    w.addItem(entries[0]![0], entries[0]![1]);
    w.addListed(listed);
    w.addReport(b("z"), { message: "m" });
    w.addItem(entries[2]![0], entries[2]![1]);
    expect(w.count).toBe(1 + 4 + 1 + 1);
    const data = w.take();
    const got = decodeBatch(data);
    expect(got).toHaveLength(4);
    const l = (got[1] as { listed: ListedNames }).listed;
    expect({ dir: l.dir, dev: l.dev, count: l.count, types: l.types, inos: l.inos }).toEqual({ dir: listed.dir, dev: listed.dev, count: 4, types: listed.types, inos: listed.inos });
    expect(Array.from({ length: l.count }, (_, i) => l.bytes.subarray(l.starts[i]!, l.starts[i]! + l.lengths[i]!))).toEqual(names);
    expect(got[3]).toEqual({ entry: entries[2]![0], absPath: entries[2]![1] });
    // The reader's plan counts it as one record, not an item.
    const plan = planBatch(data);
    expect(plan.count).toBe(4);
    expect([...plan.isItem]).toEqual([1, 0, 0, 1]);
  });

  it("plan what the reader needs (items, sizes of plain files, absolute paths) as decodeBatch reads it", () => {
    const w = new BatchWriter();
    const long = Buffer.alloc(70_000, 0x62);
    const withLong: Entry = { ...entries[1]![0], path: long, sparse: undefined, xattrs: [[b("user.big"), Buffer.alloc(70_000, 7)]], uname: b("u"), gname: b("g") };
    w.addReport(b("r"), { message: "m", code: "EACCES" });
    for (const [e, abs] of entries) w.addItem(e, abs);
    w.addItem(withLong, long);
    w.addReport(b("z"), { message: "n" });
    const data = w.take();
    const decoded = decodeBatch(data);
    const plan = planBatch(data);
    expect(plan.count).toBe(decoded.length);
    const bytes = Buffer.from(data);
    decoded.forEach((r, i) => {
      expect(plan.isItem[i]).toBe("entry" in r ? 1 : 0);
      if (!("entry" in r)) return expect(plan.fileSize[i]).toBe(-1);
      expect(plan.fileSize[i]).toBe(r.entry.type === "file" && !r.entry.sparse ? r.entry.size : -1);
      expect(bytes.subarray(plan.absStart[i]!, plan.absStart[i]! + plan.absLength[i]!)).toEqual(r.absPath);
    });
    expect(plan.fileSize[decoded.length - 2]).toBe(9 * 2 ** 30);
    expect(() => planBatch(new Uint8Array([9, 0, 0]).buffer)).toThrow(/bad record kind 9/);
  });

  it("refuse a corrupt batch with an error, not a wrong entry", () => {
    const data = new Uint8Array([9, 0, 0]);
    expect(() => decodeBatch(data.buffer)).toThrow(/bad record kind 9/);
  });
});
