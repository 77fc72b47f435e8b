import { describe, expect, it } from "vitest";
import { FileHistory, fileStat } from "../../../src/engine/history.ts";
import { FileType, Message } from "../../../src/protocol/codes.ts";
import { FH_BODY_OFFSET } from "../../../src/protocol/fh-record.ts";
import { wireV4 } from "../../../src/protocol/message.ts";
import type { Entry } from "../../../formats/entry.ts";

const entry = (over: Partial<Entry> = {}): Entry => ({
  path: Buffer.from("a"),
  type: "file",
  mode: 0o104755,
  uid: 70000,
  gid: 5,
  size: 12,
  mtime: { sec: 1_700_000_000, nsec: 5 },
  nlink: 2,
  ...over,
});

describe("file history", () => {
  it("makes NDMP stats: permission bits only, type in ftype, clamped times", () => {
    const st = fileStat(entry({ mtime: { sec: -5, nsec: 0 } }));
    expect(st).toMatchObject({ ftype: FileType.REG, fattr: 0o4755, owner: 70000, size: 12n, links: 2, mtime: 0 });
    expect(fileStat(entry({ type: "directory" })).ftype).toBe(FileType.DIR);
    expect(fileStat(entry({ mtime: { sec: 2 ** 33, nsec: 0 } })).mtime).toBe(0xffffffff);
  });

  it("batches entries, names the root '/', and waits for the connection to drain", async () => {
    const posts: Array<[number, any]> = [];
    let drains = 0;
    const h = new FileHistory({ post: (c, b) => posts.push([c, b]), drained: async () => void drains++ });
    await h.addFile(Buffer.from("."), fileStat(entry()), 2n, 0n);
    for (let i = 0; i < 2500; i++) await h.addFile(Buffer.from(`f${i}`), fileStat(entry()), BigInt(i), BigInt(i * 512));
    expect(posts.length).toBe(2); // two full batches of 1000 so far
    expect(drains).toBe(2);
    h.flush();
    expect(posts.length).toBe(3);
    const all = posts.flatMap(([code, body]) => (expect(code).toBe(Message.FH_ADD_FILE), body.files));
    expect(all.length).toBe(2501);
    expect(all[0].names[0].unix_name.toString()).toBe("/");
    expect(all[1].names[0].unix_name.toString()).toBe("/f0");
    expect(all[2500].fh_info).toBe(2499n * 512n);
  });

  it("sends dirs before nodes so a node is always named first", async () => {
    const codes: number[] = [];
    const h = new FileHistory({ post: (c) => codes.push(c), drained: async () => {} });
    await h.addNode(fileStat(entry()), 3n, 0n);
    await h.addDir(Buffer.from("a"), 3n, 2n);
    h.flush();
    expect(codes).toEqual([Message.FH_ADD_DIR, Message.FH_ADD_NODE]);
  });

  it("posts pre-encoded records to a peer that takes them: the bytes the object posts encode to", async () => {
    const objects: Array<[number, any]> = [];
    const records: Buffer[] = [];
    const a = new FileHistory({ post: (c, b) => objects.push([c, b]), drained: async () => {} });
    const b = new FileHistory({ post: () => expect.unreachable(), drained: async () => {}, takesRecords: () => true, postRecord: (r) => records.push(r) });
    for (const h of [a, b]) {
      await h.addFile(Buffer.from("."), fileStat(entry({ type: "directory" })), 2, 0);
      for (let i = 0; i < 1500; i++) await h.addFile(Buffer.from([0x64, 0x2f, 0xff, i & 0xff]), fileStat(entry({ size: 2 ** 40 + i })), 2n ** 60n + BigInt(i), i * 512);
      await h.addDir(Buffer.from("x"), 5, 2);
      await h.addNode(fileStat(entry()), 5, 99);
      h.close();
      expect(h.posted).toBe(1503);
    }
    expect(records.length).toBe(objects.length);
    expect(records.length).toBe(4); // 1000 files, then 501 files, 1 dir, 1 node
    for (const [i, [code, body]] of objects.entries()) {
      expect(records[i]!.readUInt32BE(4 + 12)).toBe(code);
      expect(records[i]!.subarray(FH_BODY_OFFSET).equals(wireV4.encodePost(code, body))).toBe(true);
    }
  });
});
