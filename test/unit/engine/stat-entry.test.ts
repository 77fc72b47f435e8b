/**
 * entryFromStat keeps the kernel's 64-bit dev and ino exact: numbers below 2^53, bigints above,
 * so two files never share an identity (inodeKey) and the dump inode map numbers them apart.
 */
import { lstatSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { inodeKey } from "../../../formats/entry.ts";
import { InodeMap } from "../../../formats/dump/inodes.ts";
import { entryFromStat } from "../../../src/engine/stat-entry.ts";

/** A real lstat with its dev and ino replaced (a synthetic source: the filesystem side is test/integration/inode64.test.ts). */
function statWith(dev: bigint, ino: bigint) {
  const st = lstatSync("/", { bigint: true });
  return Object.assign(Object.create(Object.getPrototypeOf(st)), st, { dev, ino });
}

describe("entryFromStat: 64-bit identities", () => {
  it("numbers below 2^53, exact bigints above; the keys and the dump inode map tell them apart", () => {
    const big = 2n ** 63n + 2n;
    const a = entryFromStat(Buffer.from("a"), statWith(2n ** 60n, big), "file");
    const b = entryFromStat(Buffer.from("b"), statWith(2n ** 60n, big + 1n), "file");
    const small = entryFromStat(Buffer.from("c"), statWith(2049n, 12n), "file");
    expect([a.dev, a.ino, b.ino]).toEqual([2n ** 60n, big, big + 1n]);
    expect([small.dev, small.ino]).toEqual([2049, 12]);
    // BigIntStats are signed 64-bit: 2^63 + 2 arrives as a negative bigint, and is made unsigned.
    expect(entryFromStat(Buffer.from("n"), statWith(2049n, big - 2n ** 64n), "file").ino).toBe(big);
    expect(inodeKey(a.dev, a.ino)).not.toBe(inodeKey(b.dev, b.ino));
    expect(inodeKey(a.dev, a.ino)).toBe(`${2n ** 60n}:${big}`);
    const map = new InodeMap();
    map.setRoot(small.dev!, small.ino!);
    expect(map.assign(a.dev!, a.ino!)).not.toBe(map.assign(b.dev!, b.ino!));
  });
});
