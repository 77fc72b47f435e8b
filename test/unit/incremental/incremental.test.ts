import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  BaseError,
  backupStartTime,
  changedSince,
  dirIsKnown,
  dumpDateEnv,
  readDumpdates,
  recordBackup,
  resolveBase,
} from "../../../src/incremental/index.ts";
import { escapePath, formatDumpdates, parseDumpdates, parseNs, formatNs, unescapePath } from "../../../src/incremental/records.ts";
import { decodeToken, encodeToken } from "../../../src/incremental/token.ts";
import { withStateLock } from "../../../src/incremental/lock.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-incr-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const dir = path.join(tmp, `s${n++}`);
  fs.mkdirSync(dir);
  return dir;
};
const env = (o: Record<string, string>) => new Map(Object.entries(o));
const ROOT = Buffer.from("/srv/export");
const target = (stateDir: string) => ({ stateDir, type: "tar", root: ROOT, fsid: "8:3" });
const S = 1_000_000_000n;

describe("tokens", () => {
  it("sequence = level + 1 in the upper 32 bits, start seconds in the lower 32", () => {
    const t = encodeToken(0, 1_700_000_000n * S + 5n);
    expect(BigInt(t)).toBe((1n << 32n) | 1_700_000_000n);
    expect(decodeToken(t)).toEqual({ seq: 1, sec: 1_700_000_000 });
    expect(decodeToken(encodeToken(31, 10n * S))).toEqual({ seq: 32, sec: 10 });
    expect(decodeToken("18446744073709551616")).toBeUndefined();
    expect(decodeToken("-5")).toBeUndefined();
    expect(decodeToken("12ab")).toBeUndefined();
  });
});

describe("dumpdates text", () => {
  it("round-trips paths with any byte, times with nanoseconds and before 1970", () => {
    const odd = Buffer.from([0x2f, 0x61, 0x20, 0x5c, 0xff, 0x0a, 0x62]);
    expect(unescapePath(escapePath(odd))).toEqual(odd);
    expect(escapePath(odd)).not.toMatch(/\s/);
    expect(parseNs(formatNs(-1n))).toBe(-1n);
    expect(formatNs(-1n)).toBe("-1.999999999");
    const recs = [
      { fsid: "8:3", type: "tar", path: odd, level: 2, date: 1_700_000_000n * S + 123n, token: "42" },
      { fsid: "8:3", type: "dump", path: ROOT, level: 0, date: -5n * S, token: "7" },
    ];
    const text = formatDumpdates(recs);
    expect(text).toMatch(/^# ndmpd dumpdates/);
    expect(text).toContain("1700000000.000000123");
    const back = parseDumpdates(text);
    expect(back).toHaveLength(2);
    expect(back.find((r) => r.level === 2)).toEqual(recs[0]);
    expect(back.find((r) => r.level === 0)).toEqual(recs[1]);
  });
});

describe("resolveBase", () => {
  it("level 0 by default; bad LEVEL values are refused", () => {
    const st = fresh();
    expect(resolveBase(env({}), target(st))).toMatchObject({ level: 0, mode: "dumpdates", update: true });
    for (const bad of ["32", "-1", "x", "1.5", "100"]) expect(() => resolveBase(env({ LEVEL: bad }), target(st))).toThrow(/must be a number from 0 to 31/);
  });

  it("a level N needs a recorded lower level, and says which one is missing; nothing is written", () => {
    const st = fresh();
    expect(() => resolveBase(env({ LEVEL: "1" }), target(st))).toThrow(BaseError);
    expect(() => resolveBase(env({ LEVEL: "1" }), target(st))).toThrow(/no tar backup of level 0 of \/srv\/export/);
    expect(() => resolveBase(env({ LEVEL: "3" }), target(st))).toThrow(/level 0-2/);
    expect(fs.readdirSync(st)).toEqual([]);
  });

  it("the most recent lower level is the base, at full precision; UPDATE=n records no dumpdates line", async () => {
    const st = fresh();
    const b0 = resolveBase(env({ LEVEL: "0" }), target(st));
    const t0 = 1_700_000_000n * S + 111n;
    const dirs = new Map([[".", "1:2"]]);
    await recordBackup(st, b0, t0, dirs);
    const b1 = resolveBase(env({ LEVEL: "1" }), target(st));
    expect(b1).toMatchObject({ level: 1, since: t0, baseDate: t0 });
    expect(b1.baseDirs).toEqual(dirs);
    const t1 = t0 + 10n * S;
    await recordBackup(st, b1, t1);
    expect(resolveBase(env({ LEVEL: "2" }), target(st)).since).toBe(t1);
    // A level 1 again is based on the level 0, not on the other level 1.
    expect(resolveBase(env({ LEVEL: "1" }), target(st)).since).toBe(t0);
    // UPDATE=n: no line for level 2.
    const b2 = resolveBase(env({ LEVEL: "2", UPDATE: "n" }), target(st));
    await recordBackup(st, b2, t1 + S);
    expect(readDumpdates(st).map((r) => r.level).sort()).toEqual([0, 1]);
    // Another path or filesystem has no base.
    expect(() => resolveBase(env({ LEVEL: "1" }), { ...target(st), fsid: "8:4" })).toThrow(/no tar backup of level 0/);
    expect(() => resolveBase(env({ LEVEL: "1" }), { ...target(st), root: Buffer.from("/srv") })).toThrow(/no tar backup of level 0/);
    // Nor does another backup type: a dump chain never builds on a tar backup.
    expect(() => resolveBase(env({ LEVEL: "1" }), { ...target(st), type: "dump" })).toThrow(/no dump backup of level 0/);
  });

  it("token mode: BASE_DATE=0 starts it, a token we issued keeps nanoseconds, BASE_DATE wins over LEVEL", async () => {
    const st = fresh();
    const b0 = resolveBase(env({ BASE_DATE: "0" }), target(st));
    expect(b0).toMatchObject({ level: 0, mode: "token", update: false });
    const t0 = 1_700_000_000n * S + 999_999_999n;
    await recordBackup(st, b0, t0, new Map([[".", "1:2"]]));
    expect(readDumpdates(st)).toEqual([]); // token mode leaves dumpdates alone
    const tok = dumpDateEnv(b0, t0).get("DUMP_DATE")!;
    expect(dumpDateEnv(b0, t0).get("LEVEL")).toBe("0");
    const b1 = resolveBase(env({ BASE_DATE: tok, LEVEL: "5" }), target(st));
    expect(b1).toMatchObject({ level: 1, since: t0, mode: "token" });
    expect(b1.notes.join("\n")).toMatch(/LEVEL=5 is not used/);
    expect(b1.baseDirs?.get(".")).toBe("1:2");
    // A token we did not issue: whole seconds, no inventory.
    const foreign = ((2n << 32n) | 1_600_000_000n).toString();
    const bf = resolveBase(env({ BASE_DATE: foreign }), target(st));
    expect(bf).toMatchObject({ level: 2, since: 1_600_000_000n * S, baseDirs: undefined });
    expect(bf.notes.join("\n")).toMatch(/not issued here/);
    // -1 and empty mean no token.
    expect(resolveBase(env({ BASE_DATE: "-1" }), target(st)).mode).toBe("dumpdates");
    expect(resolveBase(env({ BASE_DATE: "" }), target(st)).mode).toBe("dumpdates");
    for (const bad of ["abc", "-2", "5", ((33n << 32n) | 5n).toString()]) {
      expect(() => resolveBase(env({ BASE_DATE: bad }), target(st))).toThrow(/BASE_DATE=.*not a token/);
    }
  });
});

describe("change rules", () => {
  const base = { since: 100n * S + 500n, ignoreCtime: false } as Parameters<typeof changedSince>[1];
  const t = (sec: number, nsec: number) => ({ sec, nsec });
  it("mtime or ctime at or after the base, to the nanosecond; IGNORE_CTIME looks at mtime only", () => {
    expect(changedSince({ mtime: t(100, 500), ctime: t(0, 0) }, base)).toBe(true); // inclusive
    expect(changedSince({ mtime: t(100, 499), ctime: t(100, 499) }, base)).toBe(false);
    expect(changedSince({ mtime: t(50, 0), ctime: t(100, 501) }, base)).toBe(true);
    expect(changedSince({ mtime: t(50, 0), ctime: t(100, 501) }, { ...base, ignoreCtime: true })).toBe(false);
    expect(changedSince({ mtime: t(-50, 0) }, { ...base, since: undefined })).toBe(true);
  });
  it("a directory is known when the base saw the same dev:ino at that path", () => {
    const b = { ...base, baseDirs: new Map([["a", "1:10"]]) };
    expect(dirIsKnown(b, "a", 1, 10)).toBe(true);
    expect(dirIsKnown(b, "a", 1, 11)).toBe(false);
    expect(dirIsKnown(b, "b", 1, 10)).toBe(false);
    expect(dirIsKnown({ ...base }, "a", 1, 10, t(100, 600))).toBe(false); // no inventory: by ctime
    expect(dirIsKnown({ ...base }, "a", 1, 10, t(99, 0))).toBe(true);
  });
});

describe("the store", () => {
  it("two backups recording at once both land, and the file stays whole", async () => {
    const st = fresh();
    const roots = Array.from({ length: 8 }, (_, i) => Buffer.from(`/p${i}`));
    await Promise.all(
      roots.map((root, i) => recordBackup(st, resolveBase(env({}), { stateDir: st, type: "tar", root, fsid: "1:1" }), BigInt(i + 1) * S)),
    );
    expect(readDumpdates(st)).toHaveLength(8);
    expect(fs.readdirSync(st).filter((f) => f.endsWith(".tmp") || f.endsWith(".lock"))).toEqual([]);
  });

  it("a lock left by a dead process is taken over; a live one is waited for", async () => {
    const st = fresh();
    fs.writeFileSync(path.join(st, "dumpdates.lock"), "999999999\n");
    expect(await withStateLock(st, async () => "ran")).toBe("ran");
    const order: string[] = [];
    await Promise.all([
      withStateLock(st, async () => {
        order.push("a1");
        await new Promise((r) => setTimeout(r, 30));
        order.push("a2");
      }),
      withStateLock(st, async () => void order.push("b")),
    ]);
    expect(order).toEqual(["a1", "a2", "b"]);
  });

  it("the start time is the kernel's file clock: a file written after it is not older", () => {
    const st = fresh();
    const start = backupStartTime(st);
    const f = path.join(st, "later");
    fs.writeFileSync(f, "x");
    expect(fs.statSync(f, { bigint: true }).mtimeNs >= start).toBe(true);
  });
});

describe("record pruning", () => {
  it("keeps the newest two records per level and every one dumpdates points at", async () => {
    const st = fresh();
    const files = () => fs.readdirSync(path.join(st, "incremental")).filter((f) => f.endsWith(".json")).sort();
    const first = 1_700_000_000n * S;
    await recordBackup(st, resolveBase(env({}), target(st)), first); // dumpdates points here
    for (let i = 1; i <= 3; i++) await recordBackup(st, resolveBase(env({ UPDATE: "n" }), target(st)), first + BigInt(i) * 100n * S);
    const kept = files().map((f) => BigInt(f.replace(/^.*-(\d+)\.json$/, "$1")) & 0xffffffffn);
    expect(kept.sort()).toEqual([1_700_000_000n, 1_700_000_200n, 1_700_000_300n]);
    // The base of a level 1 is still the recorded one.
    expect(resolveBase(env({ LEVEL: "1" }), target(st)).since).toBe(first);
  });
});
