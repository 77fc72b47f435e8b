import { describe, expect, it } from "vitest";
import { placeFor } from "../../../src/engine/selection.ts";
import { relativeOf, Targets } from "../../../src/engine/targets.ts";
import { RecoveryStatus } from "../../../src/protocol/codes.ts";
import { Nlist } from "../../../src/protocol/xdr/nlist.ts";
import { NLIST_V4 } from "../../../src/protocol/xdr/v4.ts";

const ALL1 = 0xffff_ffff_ffff_ffffn;
const b = (s: string) => Buffer.from(s, "latin1");
const e = (original_path: string, destination_path: string, name = "", fh_info = ALL1) => ({ original_path, destination_path, name, other_name: "", node: ALL1, fh_info });
const targets = (entries: ReturnType<typeof e>[], opts = {}) => new Targets(Nlist.from(NLIST_V4, entries), opts);

describe("recovery targets over a flat nlist", () => {
  it("takes nlist paths to the relative form: a view when already clean, normalized otherwise", () => {
    expect(relativeOf(b("/a/b")).toString()).toBe("a/b");
    for (const [p, want] of [["/", ""], ["", ""], ["//a//b/", "a/b"], ["/a/./b", "a/b"], ["a/b", "a/b"], ["/.", ""], ["/a/.hidden", "a/.hidden"]]) {
      expect(relativeOf(b(p!)).toString(), p).toBe(want);
    }
  });

  it("looks up entries by path in O(log n): the first of equal paths, every one of them, or none", () => {
    const ts = targets([e("/z", "/r/z"), e("/a/b", "/r/1"), e("/", "/r/all"), e("//a/b/", "/r/2"), e("/a", "/r/a")]);
    expect(ts.first(b("a/b"))).toBe(1);
    expect(ts.same(b("a/b"))).toEqual([1, 3]);
    expect(ts.first(b(""))).toBe(2);
    expect(ts.first(b("a"))).toBe(4);
    expect(ts.first(b("a/"))).toBe(-1);
    expect(ts.first(b("zz"))).toBe(-1);
    expect(ts.same(b("b"))).toEqual([]);
    expect(ts.original(3).toString()).toBe("a/b");
    expect(ts.reportName(3).toString()).toBe("//a/b/"); // LOG_FILE names what the DMA sent
  });

  it("a million entries: lookups by path and by offset", () => {
    const n = 1_000_000;
    const entries = Array.from({ length: n }, (_, i) => e(`/d${i % 1000}/f${i}`, `/r/${i}`, "", BigInt((n - i) * 512)));
    const ts = targets(entries);
    for (const i of [0, 1, 4711, 999_999]) {
      expect(ts.first(b(`d${i % 1000}/f${i}`))).toBe(i);
      expect(ts.atOffset(BigInt((n - i) * 512))).toEqual([i]);
    }
    expect(ts.first(b("d1/f2"))).toBe(-1);
    const order = ts.byFhInfo();
    expect([order[0], order[n - 1]]).toEqual([n - 1, 0]);
  });

  it("makes each destination as the nlist says: destination_path/name, destination_path, or PREFIX/original", () => {
    const ts = targets([e("/a", "/r", "n"), e("/b", "/r/b2"), e("/c/d", "")], { base: b("/p") });
    expect([0, 1, 2].map((i) => ts.destination(i)!.toString())).toEqual(["/r/n", "/r/b2", "/p/c/d"]);
    expect(ts.baseOf(0)).toBeUndefined();
    expect(targets([e("/a", "")]).destination(0)).toBeUndefined();
  });

  it("says what is wrong with an entry's destination, as DataService refuses it", () => {
    const plain = targets([e("/a", "/r", "n/m"), e("/a", "r"), e("/a", "", "n"), e("/a", "r", "n"), e("/a", ""), e("/a", "/r")]);
    expect([0, 1, 2, 3, 4, 5].map((i) => plain.problemWith(i))).toEqual([
      "nlist name must not contain /",
      "destinations must be absolute paths",
      undefined, // "/n"
      "destinations must be absolute paths",
      "nlist entry without a destination",
      undefined,
    ]);
    expect(targets([e("/a", "")], { base: b("rel") }).problemWith(0)).toBe("destinations must be absolute paths");
    expect(targets([e("/a", "")], { base: b("/p") }).problemWith(0)).toBeUndefined();
    const full = targets([e("/a", "r/"), e("/a", ""), e("/a", "///")], { fullPaths: true });
    expect([0, 1, 2].map((i) => full.problemWith(i))).toEqual([
      "RECOVER_FULL_PATHS needs an absolute destination_path (or PREFIX)",
      "RECOVER_FULL_PATHS needs an absolute destination_path (or PREFIX)",
      undefined,
    ]);
    expect(targets([e("/a", "")], { fullPaths: true, base: b("/p") }).problemWith(0)).toBeUndefined();
  });

  it("RECOVER_FULL_PATHS: the original path under destination_path (or PREFIX), confined there", () => {
    const ts = targets([e("/a/b", "/r/"), e("/c", ""), e("/", "/r")], { base: b("/p"), fullPaths: true });
    expect([0, 1, 2].map((i) => ts.destination(i)!.toString())).toEqual(["/r/a/b", "/p/c", "/r"]);
    expect(ts.baseOf(0)!.toString()).toBe("/r");
    expect(placeFor(b("a/b/x"), ts, true)).toMatchObject({ target: 0, root: b("/r"), rel: b("a/b/x") });
  });

  it("keeps the first problem of an entry and whether it was found, per index", () => {
    const ts = targets([e("/a", "/r/a"), e("/b", "/r/b")]);
    ts.markFound(1);
    ts.fail(1, RecoveryStatus.FAILED_IO_ERROR, "first");
    ts.fail(1, RecoveryStatus.FAILED_PERMISSION, "second");
    expect([ts.isFound(0), ts.isFound(1), ts.error(0), ts.error(1), ts.status(1)]).toEqual([false, true, undefined, "first", RecoveryStatus.FAILED_IO_ERROR]);
  });

  it("the whole image and no targets at all", () => {
    const whole = Targets.whole(b("/restore"));
    expect([whole.length, whole.original(0).length, whole.destination(0)!.toString(), whole.reportName(0).toString()]).toEqual([1, 0, "/restore", "/"]);
    expect(placeFor(b("x/y"), whole, true)).toMatchObject({ target: 0, root: b("/"), rel: b("restore/x/y") });
    expect(Targets.none().length).toBe(0);
    expect(placeFor(b("x"), Targets.none(), true)).toBeUndefined();
  });
});
