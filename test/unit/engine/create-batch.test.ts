// The batch a restore hands to its creator threads (create-batch.ts): what goes in comes out,
// byte for byte and number for number, and a full batch says so. createFiles itself needs the
// native calls: file-creator.test.ts and restore-tree.test.ts run it under Bun.
import { describe, expect, it } from "vitest";
import { CreateBatch, fileAt } from "../../../src/engine/create-batch.ts";

describe("CreateBatch", () => {
  it("gives back each file's descriptor, name bytes, content and metadata", () => {
    const b = CreateBatch.allocate(4, 64, 64);
    const names = [Buffer.from([0xff, 0x00, 0x41]), Buffer.from("caf\u00e9", "utf8"), Buffer.alloc(0)];
    const contents = [Buffer.from("one"), Buffer.alloc(0), Buffer.from([1, 2, 3, 4, 5])];
    names.forEach((name, i) => {
      const at = b.reserve(contents[i]!.length);
      b.buffers.data.set(contents[i]!, at);
      b.commit(10 + i, name, at, contents[i]!.length, 0o4755, i === 1 ? -1 : 1000 + i, 2000 + i, { sec: -5, nsec: 999_999_999 }, { sec: 2 ** 40, nsec: i });
    });
    expect(b.count).toBe(3);
    for (let i = 0; i < 3; i++) {
      const f = fileAt(b.buffers, i);
      expect(f.dirFd).toBe(10 + i);
      expect(Buffer.from(f.name).equals(names[i]!)).toBe(true);
      expect(Buffer.from(f.data).equals(contents[i]!)).toBe(true);
      expect(f.mode).toBe(0o4755);
      expect(f.uid).toBe(i === 1 ? -1 : 1000 + i);
      expect(f.gid).toBe(2000 + i);
      expect(f.atime).toEqual({ sec: -5, nsec: 999_999_999 });
      expect(f.mtime).toEqual({ sec: 2 ** 40, nsec: i });
    }
  });

  it("is full at its file count, its name bytes or its content bytes", () => {
    const b = CreateBatch.allocate(2, 8, 16);
    expect(b.fits(8, 16)).toBe(true);
    expect(b.fits(9, 0)).toBe(false);
    expect(b.fits(0, 17)).toBe(false);
    const at = b.reserve(10);
    b.commit(3, Buffer.from("abcde"), at, 10, 0o644, 0, 0, { sec: 0, nsec: 0 }, { sec: 0, nsec: 0 });
    expect(b.fits(3, 6)).toBe(true);
    expect(b.fits(4, 6)).toBe(false);
    expect(b.fits(3, 7)).toBe(false);
    b.commit(3, Buffer.from("xyz"), b.reserve(6), 6, 0o644, 0, 0, { sec: 0, nsec: 0 }, { sec: 0, nsec: 0 });
    expect(b.fits(0, 0)).toBe(false); // two files: as many as it holds
  });

  it("gives a reservation back (a file that went another way)", () => {
    const b = CreateBatch.allocate(2, 8, 16);
    const first = b.reserve(12);
    b.release(first);
    expect(b.dataBytes).toBe(0);
    expect(b.fits(0, 16)).toBe(true);
  });
});
