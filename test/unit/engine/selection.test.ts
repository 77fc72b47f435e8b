import { describe, expect, it } from "vitest";
import { excludeMatcher, includeMatcher, normalizeRel, placeFor, splitFiles, splitPatterns } from "../../../src/engine/selection.ts";
import { targetsOf, type TargetSpec } from "../../helpers/targets.ts";

const b = (s: string) => Buffer.from(s, "latin1");
const target = (original: string, destination: string): TargetSpec => ({ original: b(original), destination: b(destination), node: 0n, fhInfo: 0n });

describe("selection", () => {
  it("normalizes user paths", () => {
    expect(normalizeRel(b("//a/./b/")).toString()).toBe("a/b");
    expect(normalizeRel(b("/")).length).toBe(0);
  });

  it("splits EXCLUDE lists with escaped commas", () => {
    expect(splitPatterns("*.o, core ,a\\,b")).toEqual(["*.o", "core", "a,b"]);
    const files = (v: string) => splitFiles(Buffer.from(v, "latin1")).map((b) => b.toString("latin1"));
    expect(files(" a  b/c ")).toEqual(["a", "b/c"]);
    expect(files("My\\ Documents/a\\ b c")).toEqual(["My Documents/a b", "c"]);
    expect(files('"My Documents/x y" z "q"')).toEqual(["My Documents/x y", "z", "q"]);
    expect(files('say\\"hi\\" back\\\\slash keep\\n')).toEqual(['say"hi"', "back\\slash", "keep\\n"]);
    expect(splitFiles(Buffer.from([0x22, 0xff, 0x20, 0x80, 0x22])).map((b) => [...b])).toEqual([[0xff, 0x20, 0x80]]);
  });

  it("excludes by base name anywhere, or by anchored path; bytes match themselves", () => {
    const ex = excludeMatcher(["*.bin", "core", "/sub/skip", "x/*.tmp"]);
    expect(ex(b("a/b/big.bin"))).toBe(true);
    expect(ex(b("deep/core"))).toBe(true);
    expect(ex(b("core.c"))).toBe(false);
    expect(ex(b("sub/skip"))).toBe(true);
    expect(ex(b("other/sub/skip"))).toBe(false);
    expect(ex(b("x/a.tmp"))).toBe(true);
    expect(ex(b("caf\xe9.bin"))).toBe(true);
    expect(excludeMatcher([])(b("anything"))).toBe(false);
  });

  it("FILES includes the paths, their subtrees and the directories leading to them", () => {
    const inc = includeMatcher([b("/sub/deep"), b("a.txt")])!;
    expect(inc(b("."), true)).toBe(true);
    expect(inc(b("sub"), true)).toBe(true);
    expect(inc(b("sub"), false)).toBe(false);
    expect(inc(b("sub/deep/c.txt"), false)).toBe(true);
    expect(inc(b("sub/other"), false)).toBe(false);
    expect(inc(b("a.txt"), false)).toBe(true);
    expect(inc(b("b.txt"), false)).toBe(false);
    expect(includeMatcher([])).toBeUndefined();
    expect(includeMatcher([b("/")])).toBeUndefined();
  });

  it("places archived objects under the most specific target, rooted at its parent", () => {
    const ts = targetsOf([target("", "/restore/all"), target("sub", "/elsewhere/renamed")]);
    expect(placeFor(b("."), ts, true)).toMatchObject({ root: b("/restore"), rel: b("all") });
    expect(placeFor(b("a.txt"), ts, true)).toMatchObject({ root: b("/restore"), rel: b("all/a.txt") });
    const sub = placeFor(b("sub/x/y"), ts, true)!;
    expect(sub.target).toBe(1);
    expect(sub).toMatchObject({ root: b("/elsewhere"), rel: b("renamed/x/y") });
    expect(placeFor(b("sub/x"), targetsOf([target("sub", "/d/s")]), false)).toBeUndefined();
    expect(placeFor(b("subway"), targetsOf([target("sub", "/d/s")]), true)).toBeUndefined();
    expect(placeFor(b("x"), targetsOf([target("", "/")]), true)).toMatchObject({ root: b("/"), rel: b("x") });
  });
});
