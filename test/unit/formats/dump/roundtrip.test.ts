/**
 * Writer -> our reader, in memory: every object kind comes back with the same metadata,
 * names, content and holes, whatever the chunking; offsets are the fh_info values.
 */
import { describe, expect, it } from "vitest";
import type { Entry } from "../../../../formats/entry.ts";
import { DumpReader, type DumpEvent } from "../../../../formats/dump/reader.ts";
import { DumpWriter, materialize } from "../../../../formats/dump/writer.ts";
import { TP_BSIZE } from "../../../../formats/dump/header.ts";
import { decodeDirectory, encodeDirectory } from "../../../../formats/dump/directory.ts";
import { buildStream, dataRuns, prng, readAll, testTree, type BuiltStream, type ReadResult, type TestObject } from "./fixture.ts";

/** Compare everything the reader returned with the objects the stream was built from. */
function checkAgainstTree(built: BuiltStream, got: ReadResult): void {
  expect(got.ended).toBe(true);
  expect(got.warnings).toEqual([]);
  expect(got.tape?.label.toString()).toBe("test");
  expect(got.tape?.filesys.toString()).toBe("/srv/data");
  const onTape = [...built.offsets.keys()].sort((a, b) => a - b);
  expect([...got.inodes.keys()].sort((a, b) => a - b)).toEqual(onTape);
  for (const o of built.objects) {
    const ino = built.inoOf.get(o.id)!;
    const r = got.inodes.get(ino)!;
    checkObject(o, ino, r.entry);
    expect(r.ended).toBe(true);
    expect(r.offset).toBe(built.offsets.get(ino));
    // Names: every path of the object, and nothing else, resolves to this inode.
    const paths = got.index.paths(ino).map((p) => p.toString("latin1")).sort();
    expect(paths).toEqual(o.paths.map((p) => p.toString("latin1")).sort());
    if (o.type === "file") {
      // Data events lie inside [0, size) and carry the right bytes; every data run is covered.
      for (const [off, bytes] of r.data) expect(bytes.equals(o.read!(off, bytes.length))).toBe(true);
      const covered = dataRuns(r.data);
      const want = o.sparse ?? (o.size > 0 ? [{ offset: 0, length: o.size }] : []);
      for (const run of want) {
        expect(covered.some((c) => c.offset <= run.offset && c.offset + c.length >= run.offset + run.length)).toBe(true);
      }
      // Holes stay holes: at most one 1 KiB slot of slack around each run.
      const got = covered.reduce((n, c) => n + c.length, 0);
      expect(got).toBeLessThanOrEqual(want.reduce((n, w) => n + w.length + 2 * TP_BSIZE, 0));
    }
  }
}

function checkObject(o: TestObject, ino: number, e: Entry): void {
  expect(e.type).toBe(o.type);
  expect(e.ino).toBe(ino);
  expect(e.mode).toBe(o.mode);
  expect([e.uid, e.gid]).toEqual([o.uid, o.gid]);
  expect(e.mtime).toEqual({ sec: o.mtime.sec, nsec: o.mtime.nsec }); // exact, from our header extension
  if (o.type === "file") expect(e.size).toBe(o.size);
  if (o.type === "symlink") expect(e.linkTarget?.equals(o.linkTarget!)).toBe(true);
  if (o.type === "chardev" || o.type === "blockdev") expect([e.devMajor, e.devMinor]).toEqual([o.devMajor, o.devMinor]);
  const xattrs = (x?: Array<[Buffer, Buffer]>) => (x ?? []).map(([n, v]) => `${n.toString("latin1")}=${v.toString("hex")}`).sort();
  expect(xattrs(e.xattrs)).toEqual(xattrs(o.xattrs));
}

describe("dump writer -> reader round trip", () => {
  const big = buildStream(testTree(true));
  const small = buildStream(testTree(false));

  it("reads the big stream (600 MiB sparse file, TS_ADDR chains) in random chunks", () => {
    const rnd = prng(42);
    checkAgainstTree(big, readAll(big.stream, () => 1 + Math.floor(rnd() * 5000)));
  });

  it("reads the big stream in one piece", () => {
    checkAgainstTree(big, readAll(big.stream, () => big.stream.length));
  });

  it("reads the small stream one byte at a time", () => {
    checkAgainstTree(small, readAll(small.stream, () => 1));
  });

  it("offsets point at TS_INODE headers with the right inode number", () => {
    for (const [ino, off] of big.offsets) {
      expect(big.stream.readInt32LE(off)).toBe(2); // TS_INODE
      expect(big.stream.readUInt32LE(off + 20)).toBe(ino);
      expect(big.stream.readUInt32LE(off + 16)).toBe(off / TP_BSIZE); // c_tapea
    }
    expect(big.stream.length % (10 * TP_BSIZE)).toBe(0); // padded to c_ntrec
  });

  it("direct access: reading from an inode's fh_info yields exactly that inode first", () => {
    for (const o of big.objects.filter((x) => x.type !== "directory")) {
      const ino = big.inoOf.get(o.id)!;
      const off = big.offsets.get(ino)!;
      const reader = new DumpReader({ startOffset: off });
      const rnd = prng(ino);
      const events: DumpEvent[] = [];
      let pos = off;
      // Feed until the inode is complete, as a DAR restore would.
      while (!events.some((e) => e.kind === "end-of-inode") && pos < big.stream.length) {
        const n = 1 + Math.floor(rnd() * 3000);
        events.push(...reader.feed(big.stream.subarray(pos, pos + n)));
        pos += n;
      }
      const first = events[0];
      expect(first.kind === "inode" && first.ino === ino && first.offset === off).toBe(true);
      if (first.kind === "inode") checkObject(o, ino, { ...first.entry, xattrs: events.flatMap((e) => (e.kind === "xattrs" ? e.xattrs : [])) });
    }
  });

  it("a region that stops between inodes finishes cleanly; one cut inside data does not", () => {
    const hello = big.offsets.get(big.inoOf.get(200)!)!;
    const next = big.offsets.get(big.inoOf.get(201)!)!;
    const ok = new DumpReader({ startOffset: hello });
    const evs = [...ok.feed(big.stream.subarray(hello, next)), ...ok.finish()];
    expect(evs.map((e) => e.kind)).toEqual(["inode", "data", "xattrs", "end-of-inode"]);
    const cut = new DumpReader({ startOffset: hello });
    cut.feed(big.stream.subarray(hello, hello + 1500));
    expect(() => cut.finish()).toThrow(/truncated/);
  });

  it("1-byte and whole-stream feeding give identical event sequences", () => {
    const summarize = (chunk: number) => {
      const r = new DumpReader();
      const out: string[] = [];
      const push = (evs: ReturnType<DumpReader["feed"]>) => {
        for (const e of evs) out.push(e.kind === "data" ? `data ${e.ino}` : `${e.kind} ${"ino" in e ? e.ino : ""}`);
      };
      for (let p = 0; p < small.stream.length; p += chunk) push(r.feed(small.stream.subarray(p, p + chunk)));
      push(r.finish());
      // Data events split differently with chunking; compare the sequence without repeats.
      return out.filter((s, i) => !(s.startsWith("data") && out[i - 1] === s));
    };
    expect(summarize(1)).toEqual(summarize(small.stream.length));
  });
});

describe("dump writer warnings", () => {
  const dirEntry = (extra: Partial<Entry> = {}): Entry => ({ path: Buffer.from("."), type: "directory", mode: 0o755, uid: 0, gid: 0, size: 0, mtime: { sec: 1, nsec: 0 }, ...extra });

  it("reports a 255-byte name (kept by default as 254 bytes + the pad byte, or left out) instead of dropping it silently", () => {
    const name255 = Buffer.from("N".repeat(254) + "Z");
    for (const policy of ["skip", "pad"] as const) {
      const w = new DumpWriter({ date: 1, inodes: [2, 3], longNames: policy });
      const begin = w.begin();
      const d = w.directory(2, dirEntry(), [{ name: name255, ino: 3, type: "file" }], 2);
      expect(w.warnings.map((x) => x.code)).toEqual(["name-too-long"]);
      expect(w.warnings[0].name?.equals(name255)).toBe(true);
      expect(w.isNamed(3)).toBe(policy === "pad");
      // restore reads a 254-byte name, NUL-terminated; the pad byte after it is the 255th.
      const shown = Buffer.concat([Buffer.from([254]), name255.subarray(0, 254), Buffer.from([0]), Buffer.from("Z")]);
      expect(d.bytes.includes(shown)).toBe(policy === "pad");
      if (policy === "pad") {
        const reader = new DumpReader();
        const dir = [...reader.feed(Buffer.concat([begin, d.bytes, w.end()]))].find((e) => e.kind === "directory");
        expect(dir?.kind === "directory" && dir.entries.map((e) => e.name.toString())).toEqual([".", "..", name255.toString()]);
      }
    }
    // A "/" as the hidden 255th byte (hostile input) is not taken: the name stays at 254 bytes.
    const evil = encodeDirectory([{ name: Buffer.from("."), ino: 2, type: "directory" }, { name: Buffer.from(".."), ino: 2, type: "directory" }, { name: Buffer.from("e".repeat(254) + "/"), ino: 3, type: "file" }]);
    const decoded = decodeDirectory(evil, { longNamesInPad: true });
    expect(decoded.entries.map((e) => e.name.length)).toEqual([1, 2, 254]);
    expect(decoded.problems).toEqual([expect.stringMatching(/"\/" as the 255th byte/)]);
    // Without the directory's flag (a Linux dump stream), a pad byte is only padding.
    expect(decodeDirectory(encodeDirectory([{ name: name255, ino: 3, type: "file" }])).entries[0]!.name.length).toBe(254);
    // Two 255-byte names with the same first 254 bytes (restore would see one name twice): left out.
    const clash = new DumpWriter({ date: 1, inodes: [2, 3, 4] });
    clash.begin();
    clash.directory(2, dirEntry(), [{ name: name255, ino: 3, type: "file" }, { name: Buffer.from("N".repeat(254)), ino: 4, type: "file" }], 2);
    expect(clash.warnings.map((x) => x.message)).toEqual([expect.stringMatching(/255-byte name left out: its first 254 bytes are another name here/)]);
    expect(clash.isNamed(3)).toBe(false);
    const w = new DumpWriter({ date: 1, inodes: [2, 3] });
    w.begin();
    w.directory(2, dirEntry(), [{ name: Buffer.alloc(256, 0x61), ino: 3, type: "file" }, { name: Buffer.from("a/b"), ino: 3, type: "file" }], 2);
    expect(w.warnings.map((x) => x.code)).toEqual(["name-too-long", "bad-name"]);
  });

  it("lays directory entries out as the kernel does: 512-byte chunks, no entry across one, the last of each stretched to its end", () => {
    // dirsize(n) = (8 + n + 1 + 3) & ~3: names of 7 bytes take 16, of 3 take 12, of 254/255 take 264.
    const kid = (name: Buffer, ino: number) => ({ name, ino, type: "file" as const });
    const exact = Array.from({ length: 32 }, (_, i) => kid(Buffer.from(`n${String(i).padStart(6, "0")}`), 3 + i)); // 32 x 16 = one full chunk
    const after = [kid(Buffer.from("abc"), 40), kid(Buffer.alloc(255, 0x7a), 41), kid(Buffer.alloc(254, 0x79), 42)];
    const data = encodeDirectory([...exact, ...after]);
    expect(data.length).toBe(3 * 512); // 512 | 12 + 264 | 264
    const reclens: number[] = [];
    for (let p = 0; p < data.length; p += data.readUInt16LE(p + 4)) reclens.push(data.readUInt16LE(p + 4));
    expect(reclens).toEqual([...Array(32).fill(16), 12, 500, 512]);
    expect(data[512 + 12 + 7]).toBe(254); // a 255-byte name shows 254 bytes, its last one in the pad
    expect(data[512 + 12 + 8 + 254 + 1]).toBe(0x7a);
    const back = decodeDirectory(data, { longNamesInPad: true });
    expect(back.problems).toEqual([]);
    expect(back.entries.map((e) => [e.name, e.ino])).toEqual([...exact, ...after].map((k) => [k.name, k.ino]));
    expect(encodeDirectory([])).toEqual(Buffer.alloc(512));
    expect(() => encodeDirectory([kid(Buffer.alloc(256, 0x61), 3)])).toThrow(RangeError);
  });

  it("reports times before 1970 and after 2106 and clamps them", () => {
    const w = new DumpWriter({ date: 1, inodes: [2, 3, 4] });
    w.begin();
    const kids = [{ name: Buffer.from("f"), ino: 3, type: "fifo" as const }, { name: Buffer.from("g"), ino: 4, type: "file" as const }];
    w.directory(2, dirEntry({ mtime: { sec: -86400, nsec: 0 } }), kids, 2);
    const file: Entry = { path: Buffer.from("f"), type: "fifo", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 2 ** 32 + 5, nsec: 0 } };
    const bytes = materialize(w.inode(3, file).steps, () => Buffer.alloc(0));
    expect(w.warnings.filter((x) => x.code === "time-out-of-range").map((x) => x.ino)).toEqual([2, 2, 2, 3, 3, 3]); // atime/ctime default to mtime
    expect(bytes.readUInt32LE(56)).toBe(0xffffffff); // di_mtime.sec
    // Our reader gets them exactly, from the header extension restore does not read.
    const ev = [...new DumpReader({ startOffset: TP_BSIZE }).feed(bytes)].find((e) => e.kind === "inode");
    expect(ev?.kind === "inode" && ev.entry.mtime).toEqual({ sec: 2 ** 32 + 5, nsec: 0 });
    w.end();
    expect(w.warnings.map((x) => x.code)).toContain("not-written"); // inode 4 was promised in TS_BITS
  });

  it("keeps ACLs and drops (and reports) attributes beyond the 4096-byte EA record", () => {
    const w = new DumpWriter({ date: 1, inodes: [2, 3] });
    w.begin();
    w.directory(2, dirEntry(), [{ name: Buffer.from("f"), ino: 3, type: "file" }], 2);
    const acl = Buffer.from("02000000010006000000000004000400000000002000040000000000", "hex");
    const file: Entry = {
      path: Buffer.from("f"), type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 1, nsec: 0 },
      xattrs: [
        [Buffer.from("user.big1"), Buffer.alloc(3000, 1)],
        [Buffer.from("user.big2"), Buffer.alloc(3000, 2)],
        [Buffer.from("system.posix_acl_access"), acl],
        [Buffer.from("system.richacl"), Buffer.alloc(8)],
      ],
    };
    const bytes = materialize(w.inode(3, file).steps, () => Buffer.alloc(0));
    const dropped = w.warnings.filter((x) => x.code === "xattr-dropped").map((x) => x.name?.toString());
    expect(dropped.sort()).toEqual(["system.richacl", "user.big2"]);
    const r = new DumpReader({ startOffset: 4096 });
    const evs = [...r.feed(bytes), ...r.finish()];
    const xattrs = evs.flatMap((e) => (e.kind === "xattrs" ? e.xattrs : []));
    expect(xattrs.map(([n]) => n.toString()).sort()).toEqual(["system.posix_acl_access", "user.big1"]);
    // The ACL comes back in getxattr form, ids of the *_OBJ/OTHER entries as ACL_UNDEFINED_ID.
    const back = xattrs.find(([n]) => n.toString() === "system.posix_acl_access")![1];
    expect(back.toString("hex")).toBe("0200000001000600ffffffff04000400ffffffff20000400ffffffff");
  });

  it("encodes an inode's TS_INODE header into the room it is given, byte for byte as it would have made it", () => {
    const objects: Entry[] = [
      dirEntry({ type: "file", size: 3000, xattrs: [[Buffer.from("user.a"), Buffer.from("b")]] }),
      dirEntry({ type: "symlink", size: 3, linkTarget: Buffer.from("abc") }),
      dirEntry({ type: "fifo" }),
    ];
    const streams = [false, true].map((withRoom) => {
      const w = new DumpWriter({ date: 1, inodes: [2, 3, 4, 5] });
      const parts = [w.begin(), w.directory(2, dirEntry(), [3, 4, 5].map((ino) => ({ name: Buffer.from(`n${ino}`), ino, type: "file" as const })), 2).bytes];
      objects.forEach((e, i) => {
        const room = withRoom ? Buffer.alloc(TP_BSIZE, 0xff) : undefined; // not zero: the header must overwrite all of it
        const steps = [...w.inode(3 + i, e, room).steps];
        if (room) expect(steps[0]!.kind === "bytes" && steps[0]!.bytes).toBe(room);
        parts.push(materialize(steps, (off, n) => Buffer.alloc(n, 0x61 + off)));
      });
      return Buffer.concat([...parts, w.end()]);
    });
    expect(streams[1]!.equals(streams[0]!)).toBe(true);
  });

  it("refuses out-of-order or inconsistent calls", () => {
    const w = new DumpWriter({ date: 1, inodes: [2, 3, 4] });
    expect(() => w.inode(3, dirEntry({ type: "fifo" }))).toThrow(/begin/);
    w.begin();
    expect(() => w.inode(3, dirEntry({ type: "fifo" }))).toThrow(/root/);
    w.directory(2, dirEntry(), [], 2);
    materialize(w.inode(4, dirEntry({ type: "fifo" })).steps, () => Buffer.alloc(0));
    expect(() => w.inode(3, dirEntry({ type: "fifo" }))).toThrow(/ascending/);
    expect(() => w.directory(3, dirEntry(), [], 2)).toThrow(/precede/);
    expect(() => new DumpWriter({ date: 1, inodes: [3] })).toThrow(/root/);
    expect(() => new DumpWriter({ date: 1, inodes: [1, 2] })).toThrow(/outside/);
  });
});
