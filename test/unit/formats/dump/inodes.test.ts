/** InodeMap: root 2, compact numbers, hard links share, stable across save/load, no reuse. */
import { describe, expect, it } from "vitest";
import { InodeMap, InoTable } from "../../../../formats/dump/inodes.ts";

describe("InodeMap", () => {
  it("numbers the root 2 and new objects 3, 4, ... in first-seen order", () => {
    const m = new InodeMap();
    expect(m.setRoot(64769, 131073n)).toBe(2);
    expect(m.assign(64769, 500)).toBe(3);
    expect(m.assign(64769, 2n ** 63n + 7n)).toBe(4); // 64-bit st_ino stays exact
    expect(m.assign(64769, 500)).toBe(3); // hard link: same identity, same number
    expect(m.assign(64770, 500)).toBe(5); // same st_ino on another device is another object
    expect(m.assign(64769, 131073)).toBe(2);
    expect(m.maxino).toBe(6);
    expect(m.lookup(1, 1)).toBeUndefined();
  });

  it("survives JSON round trips and keeps numbers stable for the next incremental", () => {
    const m = new InodeMap();
    m.setRoot(1, 2);
    const a = m.assign(1, 10);
    const b = m.assign(1, 11);
    const copy = InodeMap.fromJSON(JSON.parse(JSON.stringify(m)));
    expect(copy.lookup(1, 2)).toBe(2);
    expect(copy.assign(1, 10)).toBe(a);
    expect(copy.assign(1, 11)).toBe(b);
    expect(copy.assign(1, 12)).toBe(b + 1);
    expect(() => InodeMap.fromJSON({ version: 2 } as never)).toThrow(TypeError);
    expect(() => InodeMap.fromJSON({ version: 1, next: 3, root: null, entries: [["1:1", 7]] })).toThrow(TypeError);
    for (const key of ["x:1", "1:", ":1", "1:2:3", "1", "-1:2", "1:2 "]) {
      expect(() => InodeMap.fromJSON({ version: 1, next: 9, root: null, entries: [[key, 3]] }), key).toThrow(TypeError);
    }
    expect(InodeMap.fromJSON({ version: 1, next: 9, root: "7:8", entries: [["1:99999999999999999999", 3]] }).lookup(1, 99999999999999999999n)).toBe(3);
  });

  it("survives compact (version 2) round trips, 64-bit st_ino and devices included", () => {
    const m = new InodeMap();
    m.setRoot(64769, 131073n);
    const nums = [m.assign(64769, 500), m.assign(64769, 2n ** 63n + 7n), m.assign(64769, 2 ** 40 + 3), m.assign(99999999999999999999n, 12), m.assign(5, 0)];
    m.forget(5, 0); // gone, its number not handed out again
    const doc = JSON.parse(JSON.stringify(m.toCompact()));
    expect(doc.version).toBe(2);
    const copy = InodeMap.fromCompact(doc);
    expect(copy.toJSON()).toEqual(m.toJSON());
    expect([copy.lookup(64769, 131073), copy.lookup(64769, 500), copy.lookup(64769, 2n ** 63n + 7n), copy.lookup(64769, 2 ** 40 + 3), copy.lookup(99999999999999999999n, 12)]).toEqual([2, ...nums.slice(0, 4)]);
    expect(copy.lookup(5, 0)).toBeUndefined();
    expect(copy.assign(1, 1)).toBe(nums[4]! + 1);
    const good = m.toCompact();
    expect(() => InodeMap.fromCompact({ ...good, version: 1 } as never)).toThrow(TypeError);
    expect(() => InodeMap.fromCompact({ ...good, next: 4 })).toThrow(TypeError); // numbers beyond next
    expect(() => InodeMap.fromCompact({ ...good, devices: [{ dev: "x", inos: "", numbers: "" }] })).toThrow(TypeError);
    expect(() => InodeMap.fromCompact({ ...good, devices: [{ dev: "1", inos: "AAAA", numbers: "AwAAAA==" }] })).toThrow(TypeError); // lengths differ
  });

  it("never reuses a forgotten number until compacted", () => {
    const m = new InodeMap();
    m.setRoot(1, 2);
    m.assign(1, 10); // 3
    const gone = m.assign(1, 11); // 4
    m.assign(1, 12); // 5
    m.forget(1, 11);
    expect(m.assign(1, 13)).toBe(6);
    expect(m.assign(1, 11)).toBe(7); // a reappearing identity is a new object
    expect(gone).toBe(4);
    const c = m.compact([[1, 12], [1, 2], [1, 10]]);
    expect([c.lookup(1, 2), c.lookup(1, 12), c.lookup(1, 10), c.lookup(1, 13)]).toEqual([2, 3, 4, undefined]);
    expect(c.maxino).toBe(5);
  });

  it("keepOnly drops the identities whose numbers it refuses, and their numbers stay used", () => {
    const m = new InodeMap();
    m.setRoot(1, 2);
    m.assign(1, 10); // 3
    m.assign(1, 11); // 4
    m.assign(1, 12); // 5
    m.keepOnly((ino) => ino !== 4);
    expect([m.lookup(1, 2), m.lookup(1, 10), m.lookup(1, 11), m.lookup(1, 12)]).toEqual([2, 3, undefined, 5]);
    expect(m.assign(1, 11)).toBe(6);
    expect(m.toJSON().entries).toEqual([["1:10", 3], ["1:12", 5], ["1:11", 6]]);
  });

  it("keys big (bigint) and small identities as their decimal numbers", () => {
    const m = new InodeMap();
    m.assign(2049n, 2n ** 63n + 5n);
    m.assign(2049, 77);
    expect(m.lookup(2049, 77n)).toBe(4);
    // Entries come in no particular order.
    expect(new Map(m.toJSON().entries)).toEqual(new Map([[`2049:${2n ** 63n + 5n}`, 3], ["2049:77", 4]]));
  });

  it("a new root identity takes 2 and retires its old number", () => {
    const m = new InodeMap();
    m.setRoot(1, 2);
    expect(m.assign(1, 50)).toBe(3);
    m.setRoot(1, 50);
    expect(m.lookup(1, 50)).toBe(2);
    expect(m.lookup(1, 2)).toBeUndefined(); // the old root is now an unknown object
    expect(m.assign(1, 2)).toBe(4);
  });
});

describe("InoTable", () => {
  /** A small deterministic generator: the same operations on every run. */
  function lcg(seed: number): () => number {
    let x = seed >>> 0;
    return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
  }

  it("agrees with a Map through inserts, updates, deletes and growth, 64-bit and bigint keys included", () => {
    const rand = lcg(7);
    const t = new InoTable();
    const ref = new Map<number | bigint, number>();
    // Few distinct keys, so deletes hit runs of colliding entries (backward shift) often.
    const keys: Array<number | bigint> = [];
    for (let i = 0; i < 3000; i++) keys.push(i % 3 === 0 ? 2 ** 40 + i * 4096 : i % 101 === 0 ? 2n ** 60n + BigInt(i) : 1_000_000 + i);
    for (let step = 0; step < 60_000; step++) {
      const key = keys[rand() % keys.length]!;
      const op = rand() % 10;
      if (op < 6) {
        const n = 3 + (rand() % 1_000_000);
        t.set(key, n);
        ref.set(key, n);
      } else {
        expect(t.delete(key)).toBe(ref.delete(key));
      }
      if (step % 997 === 0) for (const k of keys) expect(t.get(k)).toBe(ref.get(k));
    }
    expect(t.size).toBe(ref.size);
    const seen = new Map<number | bigint, number>();
    t.forEach((k, n) => seen.set(k, n));
    expect(seen).toEqual(ref);
  });

  it("filter keeps exactly the entries it accepts", () => {
    const t = new InoTable(100);
    for (let i = 0; i < 100; i++) t.set(i * 7919, 3 + i);
    t.set(2n ** 62n, 500);
    t.filter((n) => n % 2 === 0 || n === 500);
    expect(t.size).toBe(51);
    for (let i = 0; i < 100; i++) expect(t.get(i * 7919)).toBe((3 + i) % 2 === 0 ? 3 + i : undefined);
    expect(t.get(2n ** 62n)).toBe(500);
  });
});
