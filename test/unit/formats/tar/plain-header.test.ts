/**
 * The in-place writer of common headers (writePlainHeader, behind encodeHeaderInto) must write
 * exactly the bytes encodeHeader writes, or decline: every case here is checked both ways.
 */
import { describe, expect, it } from "vitest";
import type { Entry, EntryType } from "../../../../formats/entry.ts";
import { encodeHeader, encodeHeaderInto, writePlainHeader } from "../../../../formats/tar/writer.ts";

const ROOM = 1536;

function base(over: Partial<Entry> = {}): Entry {
  return { path: Buffer.from("d000/f000001"), type: "file", mode: 0o644, uid: 1000, gid: 100, size: 4096, mtime: { sec: 1_796_303_989, nsec: 566_179_961 }, ...over };
}

/** Deterministic pseudo-random numbers (xorshift), so a failure names its case. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** encodeHeaderInto into a frame of garbage: the bytes it wrote, right-aligned at ROOM. */
function into(entry: Entry, fast: boolean): Buffer | undefined {
  const frame = Buffer.alloc(ROOM + 100, 0xa5);
  const n = fast ? writePlainHeader(entry, frame, ROOM) : encodeHeaderInto(entry, frame, ROOM);
  if (n < 0) {
    expect(frame.equals(Buffer.alloc(ROOM + 100, 0xa5)), "nothing written when declined").toBe(true);
    return undefined;
  }
  expect(frame.subarray(ROOM).equals(Buffer.alloc(100, 0xa5)), "nothing written past the end").toBe(true);
  expect(frame.subarray(0, ROOM - n).every((b) => b === 0xa5), "nothing written before the header").toBe(true);
  return frame.subarray(ROOM - n, ROOM);
}

describe("writePlainHeader", () => {
  it("writes encodeHeader's bytes for files, directories, links, devices and fifos with any times", () => {
    const r = rng(7);
    const types: EntryType[] = ["file", "directory", "symlink", "hardlink", "fifo", "chardev", "blockdev"];
    const pick = (max: number) => Math.floor(r() * max);
    let plain = 0;
    for (let i = 0; i < 3000; i++) {
      const type = types[i % types.length]!;
      const nameLen = 1 + pick(110);
      const name = Buffer.alloc(nameLen, 0x61 + (i % 26));
      if (nameLen > 5) name[pick(nameLen - 2) + 1] = 0x2f; // a "/" somewhere inside
      if (i % 11 === 0) name[0] = 0xff; // not UTF-8
      const time = () => ({ sec: [0, 1, 9, 10, 999_999_999, 2 ** 33 - 1, 2 ** 33, 1_796_303_989][pick(8)]!, nsec: [0, 1, 10, 500_000_000, 999_999_999, 566_179_961, 100][pick(7)]! });
      const e: Entry = {
        path: name,
        type,
        mode: [0o644, 0o7777, 0o4755, 0][pick(4)]!,
        uid: [0, 1000, 0o7777777, 0o7777777 + 1][pick(4)]!,
        gid: [0, 100, 0o7777777][pick(3)]!,
        size: type === "file" ? [0, 1, 511, 512, 4096, 0o77777777777, 0o77777777777 + 1][pick(7)]! : type === "symlink" ? 3 : 0,
        mtime: time(),
      };
      if (pick(4) > 0) e.atime = time();
      if (pick(4) > 0) e.ctime = time();
      if (type === "symlink" || type === "hardlink") e.linkTarget = Buffer.alloc(1 + pick(105), 0x74);
      if (type === "chardev" || type === "blockdev") (e.devMajor = pick(300)), (e.devMinor = pick(2 ** 20));
      if (pick(5) === 0) e.uname = Buffer.alloc(pick(40) + 1, 0x75);
      if (pick(5) === 0) e.gname = Buffer.alloc(pick(40) + 1, 0x67);
      if (pick(20) === 0) e.xattrs = [[Buffer.from("user.a"), Buffer.from("b")]];
      const want = encodeHeader(e);
      const fast = into(e, true);
      if (fast) {
        plain++;
        expect(fast.toString("hex"), `case ${i}`).toBe(want.toString("hex"));
      }
      const any = into(e, false);
      if (want.length <= ROOM) expect(any?.toString("hex"), `case ${i}`).toBe(want.toString("hex"));
      else expect(any, `case ${i}`).toBeUndefined();
    }
    expect(plain).toBeGreaterThan(500);
  });

  it("takes the common case: a small file with ns times, a directory, a symlink", () => {
    for (const e of [base({ atime: { sec: 5, nsec: 0 }, ctime: { sec: 6, nsec: 1 } }), base({ type: "directory", size: 0, path: Buffer.from("d000") }), base({ type: "symlink", size: 3, linkTarget: Buffer.from("abc") })]) {
      const got = into(e, true);
      expect(got?.toString("hex")).toBe(encodeHeader(e).toString("hex"));
    }
  });

  it("declines what needs more than times in pax, and encodeHeaderInto still writes it when it fits", () => {
    const declined: Entry[] = [
      base({ path: Buffer.from("n".repeat(101)) }),
      base({ type: "directory", size: 0, path: Buffer.from("n".repeat(100)) }),
      base({ uid: 2 ** 21 }),
      base({ mtime: { sec: -1, nsec: 0 } }),
      base({ atime: { sec: -5, nsec: 3 } }),
      base({ xattrs: [[Buffer.from("user.x"), Buffer.from("y")]] }),
      base({ type: "directory", size: 0, dumpdir: Buffer.from("Yf\0\0") }),
      base({ sparse: [{ offset: 0, length: 10 }], size: 1 << 20 }),
      base({ uname: Buffer.alloc(32, 0x75) }),
      base({ path: Buffer.from("a\0b") }),
    ];
    for (const e of declined) {
      expect(into(e, true), e.path.toString("latin1")).toBeUndefined();
      let want: Buffer | undefined;
      try {
        want = encodeHeader(e);
      } catch {
        expect(() => into(e, false)).toThrow(RangeError);
        continue;
      }
      const got = into(e, false);
      if (want.length <= ROOM) expect(got?.toString("hex")).toBe(want.toString("hex"));
      else expect(got).toBeUndefined();
    }
  });
});
