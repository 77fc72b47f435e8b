import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Entry } from "../../../formats/entry.ts";
import { RestoreRefused, RestoreWriter, timeArg } from "../../../src/engine/restore-writer.ts";
import { compareTrees, makeEdgeTree, show, type TreeSpec } from "../../helpers/tree.ts";
import { copyTree } from "./copy-tree.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const bun = path.join(repo, "node_modules/.bin/bun");
const isRoot = process.getuid?.() === 0;
const B = (s: string | Buffer) => (typeof s === "string" ? Buffer.from(s) : s);

let tmp: string;
let spec: TreeSpec;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-restore-"));
  spec = await makeEdgeTree(path.join(tmp, "src"));
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const now = { sec: 1_700_000_000, nsec: 0 };
function entry(type: Entry["type"], more: Partial<Entry> = {}): Entry {
  return { path: B("x"), type, mode: 0o644, uid: 0, gid: 0, size: 0, mtime: now, ...more };
}

async function refused(promise: Promise<unknown>): Promise<RestoreRefused> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(RestoreRefused);
    return error as RestoreRefused;
  }
  throw new Error("expected RestoreRefused, but it was accepted");
}

describe("restoring the edge tree", () => {
  it("recreates it exactly (Node: times to the microsecond, xattrs reported as skipped)", async () => {
    const dest = path.join(tmp, "dest-node");
    const { writer, walkErrors, items } = await copyTree(B(spec.root), B(dest));
    expect(walkErrors).toEqual([]);
    const diffs = await compareTrees(spec.root, dest, { timePrecisionNs: 1000, xattrs: false });
    expect(diffs).toEqual([]);
    expect(writer.stats.files).toBe(items.length);
    const withXattrs = items.filter((i) => i.entry.xattrs?.length).length;
    expect(writer.stats.errors.length).toBe(withXattrs); // under Node the walker reads none either
    const content = items.reduce((n, i) => n + (i.entry.type === "file" ? (i.entry.sparse ?? [{ length: i.entry.size }]).reduce((a, r) => a + r.length, 0) : 0), 0);
    expect(writer.stats.bytes).toBe(content);
    // The 1 GiB sparse file did not become 1 GiB of disk.
    expect(fs.statSync(path.join(dest, "sparse/gig")).blocks * 512).toBeLessThan(1024 * 1024);
  });

  it("recreates it exactly under Bun, xattrs and ACLs included (sub-microsecond times)", async () => {
    const dest = path.join(tmp, "dest-bun");
    const r = await run(bun, [path.join(here, "probe.ts"), "copy", spec.root, dest]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    expect(out.runtime).toBe("bun-ffi");
    expect(out.errors).toEqual([]);
    expect(out.walkErrors).toEqual([]);
    expect(await compareTrees(spec.root, dest, { timePrecisionNs: 1000 })).toEqual([]);
  });

  it("passes times that neither runtime turns into 'now' and that survive libuv's truncation", () => {
    // Node: the middle of the time's microsecond (floored), on the side of it that libuv's
    // truncation toward zero brings back to that microsecond.
    expect(timeArg({ sec: 1_700_000_000, nsec: 123_456_789 })).toBe("1700000000.123456500");
    expect(timeArg({ sec: -123_456_790, nsec: 12_345_679 })).toBe("-123456789.987655500");
    expect(timeArg({ sec: -1, nsec: 999_999_999 })).toBe("-0.000001500");
    expect(timeArg({ sec: 0, nsec: 999 })).toBe("0.000000500");
    expect(timeArg({ sec: -1, nsec: 0 })).toBe("-1.000000500");
  });

  it("sets times to the microsecond before 1970 and after 2038", async () => {
    const dest = path.join(tmp, "dest-times");
    const w = new RestoreWriter({ destination: B(dest) });
    const times = [
      { sec: -123_456_790, nsec: 12_345_679 },
      { sec: 4_102_444_800, nsec: 123_456_789 },
      { sec: 0, nsec: 1_000 },
      { sec: -1, nsec: 999_999_000 },
      { sec: -1, nsec: 999_999_999 },
    ];
    for (const [i, mtime] of times.entries()) {
      await w.begin(entry("file", { mtime, atime: mtime }), B(`t${i}`));
      await w.end();
      await w.begin(entry("symlink", { mtime, linkTarget: B("t0"), size: 2 }), B(`l${i}`));
      await w.end();
    }
    await w.finish();
    expect(w.stats.errors).toEqual([]);
    for (const [i, t] of times.entries()) {
      const floorUs = (v: bigint) => (v >= 0n ? v / 1000n : (v - 999n) / 1000n);
      const want = floorUs(BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec));
      for (const name of [`t${i}`, `l${i}`]) {
        const st = fs.lstatSync(path.join(dest, name), { bigint: true });
        expect(floorUs(st.mtimeNs), name).toBe(want);
      }
    }
  });
});

describe("never writes outside the destination", () => {
  let base: string;
  let dest: string;
  let outside: string;
  let w: RestoreWriter;

  beforeAll(() => {
    base = path.join(tmp, "escape");
    dest = path.join(base, "dest");
    outside = path.join(base, "outside");
    fs.mkdirSync(dest, { recursive: true });
    fs.mkdirSync(outside);
    w = new RestoreWriter({ destination: B(dest) });
  });

  const outsideIsEmpty = () => expect(fs.readdirSync(outside)).toEqual([]);

  it.each([
    ["../x", "file"],
    ["../outside/x", "file"],
    ["/abs", "file"],
    ["//double", "file"],
    ["a/../../b", "file"],
    ["a/..", "directory"],
    ["..", "directory"],
    ["a//b", "file"],
    ["a/", "file"],
    ["", "file"],
    [".", "file"],
    ["ok\0../../outside/n", "file"],
    ["../outside/d", "directory"],
    ["../outside/s", "symlink"],
    ["../outside/f", "fifo"],
  ] as const)("refuses %j (%s)", async (rel, type) => {
    const before = w.stats.errors.length;
    const e = await refused(w.begin(entry(type, { linkTarget: type === "symlink" ? B("t") : undefined }), B(rel)));
    expect(e.path.equals(B(rel))).toBe(true);
    expect(w.stats.errors.length).toBe(before + 1);
    // The object is skipped: its content and end() are no-ops.
    await w.write(B("data"), 0);
    await w.end();
    outsideIsEmpty();
  });

  it("refuses to go through a symlinked directory inside the destination", async () => {
    fs.symlinkSync(outside, path.join(dest, "sneaky"));
    await refused(w.begin(entry("file"), B("sneaky/x")));
    await refused(w.begin(entry("directory"), B("sneaky/sub")));
    await refused(w.begin(entry("file"), B("sneaky/sub/deeper/x")));
    await refused(w.begin(entry("symlink", { linkTarget: B("/etc/passwd") }), B("sneaky/l")));
    outsideIsEmpty();
    // A symlink the archive itself planted a moment ago is no different.
    await w.begin(entry("symlink", { linkTarget: B(outside), size: outside.length }), B("planted"));
    await w.end();
    await refused(w.begin(entry("file"), B("planted/x")));
    await refused(w.begin(entry("directory"), B("planted/./y")));
    outsideIsEmpty();
    // ...and a regular file in the middle of a path is not a directory either.
    await w.begin(entry("file"), B("plain"));
    await w.end();
    await refused(w.begin(entry("file"), B("plain/x")));
  });

  it("refuses hard links whose target escapes (or goes through a symlink)", async () => {
    fs.writeFileSync(path.join(outside, "..", "secret"), "secret");
    try {
      for (const target of ["../secret", "../../secret", "/etc/passwd", "sneaky/../x", "planted/x", "a/\0b", "."]) {
        await refused(w.begin(entry("hardlink", { linkTarget: B(target) }), B(`hl-${target.length}`)));
      }
      expect(fs.statSync(path.join(outside, "..", "secret")).nlink).toBe(1);
      outsideIsEmpty();
    } finally {
      fs.rmSync(path.join(outside, "..", "secret"));
    }
    // A hard link to a missing first name is an error, not a crash; and the next object works.
    await expect(w.begin(entry("hardlink", { linkTarget: B("no/such") }), B("hl-missing"))).rejects.toThrow(/missing|does not exist/);
    await w.begin(entry("file", { size: 2 }), B("after"));
    await w.write(B("ok"), 0);
    await w.end();
    expect(fs.readFileSync(path.join(dest, "after"), "utf8")).toBe("ok");
  });

  it("replaces an existing symlink at the final name without following it", async () => {
    fs.writeFileSync(path.join(outside, "victim"), "original");
    try {
      fs.symlinkSync(path.join(outside, "victim"), path.join(dest, "trap-file"));
      fs.symlinkSync(outside, path.join(dest, "trap-dir"));
      fs.symlinkSync(path.join(outside, "victim"), path.join(dest, "trap-link"));
      fs.symlinkSync(path.join(outside, "victim"), path.join(dest, "trap-fifo"));

      await w.begin(entry("file", { size: 3, mode: 0o600 }), B("trap-file"));
      await w.write(B("new"), 0);
      await w.end();
      await w.begin(entry("directory", { mode: 0o755 }), B("trap-dir"));
      await w.end();
      await w.begin(entry("file", { size: 1 }), B("trap-dir/inside"));
      await w.write(B("i"), 0);
      await w.end();
      await w.begin(entry("hardlink", { linkTarget: B("trap-file") }), B("trap-link"));
      await w.end();
      await w.begin(entry("fifo", { mode: 0o600 }), B("trap-fifo"));
      await w.end();
      await w.finish();

      expect(fs.readFileSync(path.join(outside, "victim"), "utf8")).toBe("original");
      expect(fs.statSync(path.join(outside, "victim")).mode & 0o777).toBe(0o644);
      expect(fs.readdirSync(outside)).toEqual(["victim"]);
      expect(fs.lstatSync(path.join(dest, "trap-file")).isFile()).toBe(true);
      expect(fs.readFileSync(path.join(dest, "trap-file"), "utf8")).toBe("new");
      expect(fs.lstatSync(path.join(dest, "trap-dir")).isDirectory()).toBe(true);
      expect(fs.readFileSync(path.join(dest, "trap-dir/inside"), "utf8")).toBe("i");
      expect(fs.lstatSync(path.join(dest, "trap-link")).ino).toBe(fs.lstatSync(path.join(dest, "trap-file")).ino);
      expect(fs.lstatSync(path.join(dest, "trap-fifo")).isFIFO()).toBe(true);
    } finally {
      fs.rmSync(path.join(outside, "victim"));
    }
  });
});

describe("writer behaviour", () => {
  it("leaves holes where nothing was written, trailing ones included", async () => {
    const dest = path.join(tmp, "dest-sparse");
    const w = new RestoreWriter({ destination: B(dest) });
    const size = 64 * 1024 * 1024 + 7;
    await w.begin(entry("file", { size, sparse: [{ offset: 8 * 1024 * 1024, length: 4 }] }), B("s"));
    await w.write(B("data"), 8 * 1024 * 1024);
    await w.end();
    await w.finish();
    const st = fs.statSync(path.join(dest, "s"));
    expect(st.size).toBe(size);
    expect(st.blocks * 512).toBeLessThanOrEqual(64 * 1024);
    const fd = fs.openSync(path.join(dest, "s"), "r");
    const b = Buffer.alloc(6);
    fs.readSync(fd, b, 0, 6, 8 * 1024 * 1024 - 1);
    fs.closeSync(fd);
    expect([...b]).toEqual([0, 0x64, 0x61, 0x74, 0x61, 0]);
  });

  it("keeps existing objects when overwrite is off, and says so", async () => {
    const dest = path.join(tmp, "dest-keep");
    fs.mkdirSync(dest);
    fs.writeFileSync(path.join(dest, "f"), "old");
    fs.symlinkSync("somewhere", path.join(dest, "l"));
    const w = new RestoreWriter({ destination: B(dest), overwrite: "never" });
    await w.begin(entry("file", { size: 3 }), B("f"));
    await w.write(B("new"), 0);
    await w.end();
    await w.begin(entry("symlink", { linkTarget: B("elsewhere") }), B("l"));
    await w.end();
    await w.begin(entry("file", { size: 5 }), B("fresh"));
    await w.write(B("fresh"), 0);
    await w.end();
    await w.finish();
    expect(fs.readFileSync(path.join(dest, "f"), "utf8")).toBe("old");
    expect(fs.readlinkSync(path.join(dest, "l"))).toBe("somewhere");
    expect(fs.readFileSync(path.join(dest, "fresh"), "utf8")).toBe("fresh");
    // Kept on purpose: not errors, but counted (the recovery reports them).
    expect(w.stats.errors).toEqual([]);
    expect(w.stats.kept.map(String)).toEqual([path.join(dest, "f"), path.join(dest, "l")]);
    expect(w.stats.files).toBe(1);
  });

  it("overwrite \"newer\": replaces what is older than the archive's copy, keeps what is as new or newer", async () => {
    const dest = path.join(tmp, "dest-newer");
    fs.mkdirSync(dest);
    for (const [name, sec] of [["old", 1_000_000], ["same", 2_000_000], ["young", 3_000_000]] as const) {
      fs.writeFileSync(path.join(dest, name), "disk");
      fs.utimesSync(path.join(dest, name), sec, sec);
    }
    const w = new RestoreWriter({ destination: B(dest), overwrite: "newer" });
    for (const name of ["old", "same", "young"]) {
      await w.begin(entry("file", { size: 4, mtime: { sec: 2_000_000, nsec: 0 } }), B(name));
      await w.write(B("tape"), 0);
      await w.end();
    }
    await w.finish();
    expect(["old", "same", "young"].map((n) => fs.readFileSync(path.join(dest, n), "utf8"))).toEqual(["tape", "disk", "disk"]);
    expect(w.stats.kept.map(String)).toEqual([path.join(dest, "same"), path.join(dest, "young")]);
  });

  it("gives parents it had to invent mode 0755, and archive directories their own mode after their children", async () => {
    const dest = path.join(tmp, "dest-dirs");
    const w = new RestoreWriter({ destination: B(dest) });
    await w.begin(entry("file", { size: 1, mode: 0o640 }), B("made/up/f"));
    await w.write(B("f"), 0);
    await w.end();
    await w.begin(entry("directory", { mode: 0o500, mtime: { sec: 1_000_000_000, nsec: 0 } }), B("ro"));
    await w.end();
    await w.begin(entry("file", { size: 1 }), B("ro/inside"));
    await w.write(B("x"), 0);
    await w.end();
    await w.finish();
    expect(fs.statSync(path.join(dest, "made")).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(dest, "made/up")).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(dest, "made/up/f")).mode & 0o7777).toBe(0o640);
    expect(fs.statSync(path.join(dest, "ro")).mode & 0o7777).toBe(0o500);
    expect(fs.statSync(path.join(dest, "ro")).mtimeMs).toBe(1_000_000_000_000);
    await expect(w.begin(entry("file"), B("late"))).rejects.toThrow(/after finish/);
  });

  it("skips sockets with a reason", async () => {
    const w = new RestoreWriter({ destination: B(path.join(tmp, "dest-sock")) });
    await w.begin(entry("socket"), B("sock"));
    await w.end();
    await w.finish();
    expect(w.stats.errors.map((e) => e.reason)).toEqual([expect.stringMatching(/sockets are not restored/)]);
    expect(w.stats.files).toBe(0);
  });

  // How fast is test/bench's business (timing floors fail on a busy machine): this checks the result.
  it("writes 10,000 small files", async () => {
    const dest = path.join(tmp, "dest-many");
    const w = new RestoreWriter({ destination: B(dest) });
    const content = B("small file content\n");
    for (let d = 0; d < 50; d++) {
      await w.begin(entry("directory", { mode: 0o755 }), B(`d${d}`));
      await w.end();
      for (let f = 0; f < 200; f++) {
        await w.begin(entry("file", { size: content.length, mode: 0o644, uid: 1000, gid: 1000 }), B(`d${d}/f${f}`));
        await w.write(content, 0);
        await w.end();
      }
    }
    await w.finish();
    expect(w.stats.errors).toEqual([]);
    expect(w.stats.files).toBe(10_050);
    expect(fs.readFileSync(path.join(dest, "d49/f199"), "utf8")).toBe(content.toString());
    expect(fs.readdirSync(path.join(dest, "d17"))).toHaveLength(200);
  });

  it("refuses a relative destination", () => {
    expect(() => new RestoreWriter({ destination: B("relative/dir") })).toThrow(/absolute/);
  });
});

if (isRoot) {
  describe("as root", () => {
    it("creates devices with their numbers and owners, and keeps set-id bits after chown", async () => {
      const dest = path.join(tmp, "dest-root");
      const w = new RestoreWriter({ destination: B(dest) });
      expect(spec.has.devices).toBe(true);
      await w.begin(entry("blockdev", { devMajor: 259, devMinor: 70000, uid: 70000, gid: 70001, mode: 0o660 }), Buffer.from([0xff, 0x62]));
      await w.end();
      await w.begin(entry("file", { uid: 70000, gid: 70000, mode: 0o6755, size: 0 }), B("suid"));
      await w.end();
      await w.finish();
      expect(w.stats.errors).toEqual([]);
      const st = fs.lstatSync(Buffer.concat([B(dest + "/"), Buffer.from([0xff, 0x62])]));
      expect(st.isBlockDevice()).toBe(true);
      expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([70000, 70001, 0o660]);
      const s = fs.statSync(path.join(dest, "suid"));
      expect([s.uid, s.mode & 0o7777]).toEqual([70000, 0o6755]);
      expect(fs.readdirSync(dest).filter((n) => n.includes("ndmpd"))).toEqual([]); // no temp names left
      expect(show(B("ok"))).toBe("ok");
    });
  });
}

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: repo, encoding: "utf8", timeout: 90_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
