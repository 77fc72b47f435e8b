/**
 * The dump backup engine on real directories, its stream parsed back by our DumpReader and
 * (when python3 is here) checked by the digest's inspector: order, numbering, history,
 * persisted inode numbers, incrementals.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { DUMPINSPECT } from "../../helpers/dumpinspect.ts";
import { DumpReader, InodeMap, inMap } from "../../../formats/dump/index.ts";
import { ChildList, InodeBits } from "../../../src/engine/dump-backup.ts";
import { backup, historyOf, makeSmallTree, parse } from "./dump-fixture.ts";

const INSPECT = DUMPINSPECT;
const here = path.dirname(fileURLToPath(import.meta.url));
const bun = path.resolve(here, "../../../node_modules/.bin/bun");
const haveInspect = fs.existsSync(INSPECT) && spawnSync("python3", ["--version"]).status === 0;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-dumpb-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function inspect(stream: Buffer): { code: number | null; out: string } {
  const file = path.join(tmp, `inspect-${process.hrtime.bigint()}.dump`);
  fs.writeFileSync(file, stream);
  const r = spawnSync("python3", [INSPECT, "--strict", "--quiet", file], { encoding: "utf8" });
  fs.rmSync(file);
  return { code: r.status, out: r.stdout + r.stderr };
}

describe("dump backup engine", () => {
  it("writes every object once, in dump order, with fh_info = each inode's TS_INODE offset", async () => {
    const src = path.join(tmp, "t1");
    makeSmallTree(src);
    const state = path.join(tmp, "state1");
    const r = await backup(src, state);
    expect(r.warnings).toEqual([]);
    const p = parse(r.stream);
    expect(p.ended).toBe(true);
    expect(p.tape.level).toBe(0);
    expect(p.tape.ddate).toBe(0);
    expect(p.tape.filesys.toString()).toBe(src);
    expect(r.stream.length % 10240).toBe(0); // padded to whole 10-record blocks
    expect([...p.inoOf.keys()].sort()).toEqual(
      [".", "a.txt", "big.bin", "empty", "mode600", "sparse", "sub", "sub/a-link", "sub/b.bin", "sub/deeper", "sub/deeper/c.txt", "sym"].sort(),
    );
    expect(p.inoOf.get(".")).toBe(2);
    expect(p.inoOf.get("sub/a-link")).toBe(p.inoOf.get("a.txt")); // one inode, two names
    // Numbers are compact (3.. in walk order) and the maps say all of them exist and are here.
    const numbers = [...p.offsets.keys()].sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: numbers.length }, (_, i) => i + 2));
    for (const n of numbers) expect(inMap(p.maps.clri!, n) && inMap(p.maps.bits!, n)).toBe(true);

    // History: every ADD_DIR before any ADD_NODE; the root's "." then ".." first.
    const h = historyOf(r.posts);
    expect(h.order.indexOf("node")).toBeGreaterThan(h.order.lastIndexOf("dir"));
    expect(h.dirs[0]).toMatchObject({ node: 2n, parent: 2n });
    expect(h.dirs[0].names[0].unix_name.toString()).toBe(".");
    expect(h.dirs[1]).toMatchObject({ node: 2n, parent: 2n });
    expect(h.dirs[1].names[0].unix_name.toString()).toBe("..");
    // Each directory's entries are contiguous, opened by its "." and "..".
    const parents = h.dirs.map((d) => d.parent);
    const runs = parents.filter((x, i) => i === 0 || parents[i - 1] !== x);
    expect(new Set(runs).size).toBe(runs.length);
    for (const d of h.dirs) {
      const name = d.names[0].unix_name.toString();
      if (name === "." || name === "..") continue;
      const ino = p.inoOf.get(pathOf(h.dirs, d))!;
      expect(BigInt(ino), name).toBe(d.node);
    }
    // One ADD_NODE per inode, fh_info = offset of its TS_INODE.
    expect(h.nodes.length).toBe(p.offsets.size);
    for (const n of h.nodes) expect(n.fh_info).toBe(BigInt(p.offsets.get(Number(n.node))!));
    if (haveInspect) {
      const ins = inspect(r.stream);
      expect(ins.code, ins.out).toBe(0);
    }
  });

  it("HIST=f style: one FH_ADD_FILE per path, the root as '/', hard links under both names", async () => {
    const src = path.join(tmp, "t2");
    makeSmallTree(src);
    const r = await backup(src, path.join(tmp, "state2"), { style: "file" });
    const p = parse(r.stream);
    const h = historyOf(r.posts);
    expect(h.dirs).toEqual([]);
    expect(h.nodes).toEqual([]);
    const byName = new Map(h.files.map((f) => [f.names[0].unix_name.toString(), f]));
    expect(byName.size).toBe(p.inoOf.size);
    for (const [rel, ino] of p.inoOf) {
      const f = byName.get(rel === "." ? "/" : "/" + rel)!;
      expect(f.fh_info, rel).toBe(BigInt(p.offsets.get(ino)!));
      expect(f.node).toBe(BigInt(ino));
    }
  });

  it("keeps inode numbers across level-0 dumps (persisted per filesystem), new objects at the end", async () => {
    const src = path.join(tmp, "t3");
    makeSmallTree(src);
    const state = path.join(tmp, "state3");
    const first = parse((await backup(src, state, { history: false })).stream);
    const files = fs.readdirSync(path.join(state, "dump"));
    expect(files.length).toBe(1);
    expect(files[0]).toMatch(/^[0-9a-f]{32}\.json$/);
    fs.writeFileSync(path.join(src, "0-new-first-in-walk-order"), "new\n");
    fs.rmSync(path.join(src, "mode600"));
    const second = parse((await backup(src, state, { history: false })).stream);
    for (const [rel, ino] of first.inoOf) if (rel !== "mode600") expect(second.inoOf.get(rel), rel).toBe(ino);
    const fresh = second.inoOf.get("0-new-first-in-walk-order")!;
    expect(fresh).toBeGreaterThan(Math.max(...first.inoOf.values()));
    // The deleted file's number is not in use any more, and not handed out again.
    const gone = first.inoOf.get("mode600")!;
    expect(inMap(second.maps.clri!, gone)).toBe(false);
    expect([...second.inoOf.values()]).not.toContain(gone);
    // Another root is another filesystem key: numbering starts over.
    const other = path.join(tmp, "t3b");
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, "x"), "x");
    expect(parse((await backup(other, state, { history: false })).stream).inoOf.get("x")).toBe(3);
    expect(fs.readdirSync(path.join(state, "dump")).length).toBe(2);
  });

  it("reads a version 1 state file (dev:ino pairs) and keeps its numbers; saves version 2", async () => {
    const src = path.join(tmp, "t3v1");
    makeSmallTree(src);
    const state = path.join(tmp, "state3v1");
    const first = parse((await backup(src, state, { history: false })).stream);
    const file = path.join(state, "dump", fs.readdirSync(path.join(state, "dump"))[0]!);
    const v2 = JSON.parse(fs.readFileSync(file, "utf8"));
    expect(v2.version).toBe(2);
    fs.writeFileSync(file, JSON.stringify({ ...v2, version: 1, inodes: InodeMap.fromCompact(v2.inodes).toJSON() }));
    const second = parse((await backup(src, state, { level: 1, history: false })).stream);
    for (const [rel, ino] of second.inoOf) expect(ino, rel).toBe(first.inoOf.get(rel));
    expect(JSON.parse(fs.readFileSync(file, "utf8")).version).toBe(2);
  });

  it("level 1: c_ddate = the level 0's date; changed files and every directory on tape; CLRI lists all", async () => {
    const src = path.join(tmp, "t4");
    makeSmallTree(src);
    const state = path.join(tmp, "state4");
    // The comparison is inclusive: what changed in the clock tick the backup started in is
    // taken again. Let a tick pass so the level 1 holds only the changes below.
    await new Promise((r) => setTimeout(r, 30));
    const l0 = await backup(src, state, { history: false });
    const t0 = parse(l0.stream).tape.date;
    await new Promise((r) => setTimeout(r, 30));
    fs.appendFileSync(path.join(src, "sub/deeper/c.txt"), "more\n");
    fs.writeFileSync(path.join(src, "sub/new.txt"), "new\n");
    const l1 = await backup(src, state, { level: 1 });
    const p = parse(l1.stream);
    expect(p.tape.level).toBe(1);
    expect(p.tape.ddate).toBe(t0);
    const onTape = [...p.offsets.keys()];
    const dirs = onTape.filter((n) => p.types.get(n) === "directory");
    const files = onTape.filter((n) => p.types.get(n) !== "directory");
    expect(dirs.length).toBe(4); // ".", sub, sub/deeper, empty: every directory, changed or not
    const names = files.map((n) => p.index.paths(n)[0]!.toString()).sort();
    expect(names).toEqual(["sub/deeper/c.txt", "sub/new.txt"]);
    // Unchanged files exist (CLRI) but are not on this tape (BITS).
    const a = parse(l0.stream).inoOf.get("a.txt")!;
    expect(inMap(p.maps.clri!, a)).toBe(true);
    expect(inMap(p.maps.bits!, a)).toBe(false);
    // The level 1's history names only what it holds: ADD_NODE for what it wrote, ADD_DIR for
    // the directories and the files on its tape.
    const h = historyOf(l1.posts);
    expect(h.nodes.length).toBe(onTape.length);
    expect(h.dirs.some((d) => d.names[0].unix_name.toString() === "a.txt")).toBe(false);
    const named = h.dirs.map((d) => d.names[0].unix_name.toString()).filter((n) => n !== "." && n !== "..").sort();
    expect(named).toEqual(["c.txt", "deeper", "empty", "new.txt", "sub"]);
    // A level 2 is relative to the level 1; a new level 1 again to the level 0.
    expect(parse((await backup(src, state, { level: 2, history: false })).stream).tape.ddate).toBe(p.tape.date);
    expect(parse((await backup(src, state, { level: 1, history: false })).stream).tape.ddate).toBe(t0);
    if (haveInspect) {
      const ins = inspect(l1.stream);
      expect(ins.code, ins.out).toBe(0);
    }
  });

  it("UPDATE=n does not record the date; LEVEL>0 without a lower level is refused", async () => {
    const src = path.join(tmp, "t5");
    makeSmallTree(src);
    const state = path.join(tmp, "state5");
    await expect(backup(src, state, { level: 3, history: false })).rejects.toThrow(/LEVEL=3: no dump backup of level 0-2/);
    const r = await backup(src, state, { history: false, env: { UPDATE: "n" } });
    expect(parse(r.stream).tape.ddate).toBe(0);
    expect(parse(r.stream).inoOf.size).toBe(12);
    await expect(backup(src, state, { level: 1, history: false })).rejects.toThrow(/LEVEL=1: no dump backup of level 0/); // not recorded
  });

  it("an incremental without the filesystem's inode table is refused (new numbers would not match its base)", async () => {
    const src = path.join(tmp, "t9");
    makeSmallTree(src);
    const state = path.join(tmp, "state9");
    await backup(src, state, { history: false });
    fs.rmSync(path.join(state, "dump"), { recursive: true });
    await expect(backup(src, state, { level: 1, history: false })).rejects.toThrow(/inode numbers\) is missing; run a level 0/);
    expect(parse((await backup(src, state, { history: false })).stream).ended).toBe(true);
  });

  it("refuses a second dump of the same filesystem while one runs (the inode table has one writer)", async () => {
    const src = path.join(tmp, "t7");
    makeSmallTree(src);
    const state = path.join(tmp, "state7");
    const first = backup(src, state, { history: false });
    await expect(backup(src, state, { history: false })).rejects.toThrow(/another dump of .* is running/);
    expect(parse((await first).stream).ended).toBe(true);
    expect(parse((await backup(src, state, { history: false })).stream).ended).toBe(true);
  });

  it("leaves out a 255-byte name whose first 254 bytes are another name there, and what only it leads to", async () => {
    const src = path.join(tmp, "t8");
    fs.mkdirSync(path.join(src, "d".repeat(254) + "1"), { recursive: true });
    fs.writeFileSync(path.join(src, "d".repeat(254) + "1", "inside"), "only reached through the clashing name");
    fs.writeFileSync(path.join(src, "d".repeat(254)), "the 254-byte name");
    fs.writeFileSync(path.join(src, "fine"), "x");
    const r = await backup(src, path.join(tmp, "state8"));
    expect([...parse(r.stream).inoOf.keys()].sort()).toEqual([".", "d".repeat(254), "fine"].sort());
    expect(parse(r.stream).offsets.size).toBe(3); // not the directory, nor what is inside it
    expect(r.warnings.filter((w) => /255-byte name left out: its first 254 bytes/.test(w))).toHaveLength(1);
    if (haveInspect) {
      const ins = inspect(r.stream); // nothing unnamed in TS_BITS or TS_CLRI
      expect(ins.code, ins.out).toBe(0);
    }
  });

  it("carries 255-byte names and times before 1970 for our recovery, saying what Linux restore makes of them", async () => {
    const src = path.join(tmp, "t6");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "n".repeat(254)), "ok");
    fs.writeFileSync(path.join(src, "m".repeat(255)), "too long");
    fs.mkdirSync(path.join(src, "d".repeat(255)));
    fs.writeFileSync(path.join(src, "d".repeat(255), "inside"), "in a directory with a 255-byte name");
    fs.writeFileSync(path.join(src, "old"), "old");
    spawnSync("touch", ["-h", "-d", "@-100", path.join(src, "old")]); // node:fs takes no negative times
    const r = await backup(src, path.join(tmp, "state6"));
    const p = parse(r.stream);
    expect([...p.inoOf.keys()].sort()).toEqual([".", "n".repeat(254), "m".repeat(255), "d".repeat(255), `${"d".repeat(255)}/inside`, "old"].sort());
    expect(r.warnings.filter((w) => /255-byte name kept: Linux restore restores it as its first 254 bytes/.test(w)).length).toBe(2);
    expect(r.warnings.some((w) => w.startsWith("/old: ") && /before 1970; stored as 0 for Linux restore/.test(w))).toBe(true);
    const old = p.inoOf.get("old")!;
    const reader = new DumpReader();
    const ev = [...reader.feed(r.stream), ...reader.finish()].find((e) => e.kind === "inode" && e.ino === old);
    expect(ev?.kind === "inode" && ev.entry.mtime).toEqual({ sec: -100, nsec: 0 });
    expect(r.result.warnings).toBe(r.warnings.length);
    if (haveInspect) {
      const ins = inspect(r.stream);
      expect(ins.code, ins.out).toBe(0);
    }
  });

  it("a file gone or turned into a directory between the passes: reported once each, left off the tape, the rest whole (the scan workers' pass 2, under bun)", () => {
    const src = path.join(tmp, "vanish");
    for (let d = 0; d < 3; d++) {
      fs.mkdirSync(path.join(src, `d${d}`), { recursive: true });
      for (let f = 0; f < 40; f++) fs.writeFileSync(path.join(src, `d${d}`, `f${f}`), `d${d}/f${f} `.repeat(f + 1));
    }
    const original = new Map<string, Buffer>();
    for (const d of fs.readdirSync(src)) for (const f of fs.readdirSync(path.join(src, d))) original.set(`${d}/${f}`, fs.readFileSync(path.join(src, d, f)));
    const streamFile = path.join(tmp, "vanish.dump");
    const r = spawnSync(bun, [path.join(here, "dump-vanish-probe.ts"), src, path.join(tmp, "state-vanish"), streamFile], { encoding: "utf8", timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { listScan: boolean; changed: boolean; removed: string[]; warnings: string[] };
    expect(out.listScan && out.changed).toBe(true);
    expect(out.removed).toHaveLength(12);
    // One warning each, and no "in TS_BITS but not written" on top of it.
    const expected = [...out.removed.map((p) => `/${p}: vanished before it could be backed up; not backed up`), "/d1/f5: became a directory while being backed up; not backed up"];
    expect([...out.warnings].sort()).toEqual(expected.sort());
    const stream = fs.readFileSync(streamFile);
    const p = parse(stream);
    expect(p.ended).toBe(true);
    for (const [name, bytes] of original) {
      const gone = out.removed.includes(name) || name === "d1/f5";
      expect(p.inoOf.has(name), name).toBe(!gone);
      if (!gone) expect(Buffer.concat(p.content.get(p.inoOf.get(name)!) ?? []).subarray(0, bytes.length).equals(bytes), name).toBe(true);
    }
    expect(p.offsets.size).toBe(1 + 3 + original.size - 13); // the root, the three directories, the files still there
  });
});

describe("InodeBits (pass 1's sets of inode numbers)", () => {
  it("adds, finds, deletes and lists ascending, growing past its first size", () => {
    const bits = new InodeBits();
    for (const n of [70_001, 2, 9, 3, 9, 8191, 8192]) bits.add(n);
    expect(bits.size).toBe(6);
    expect(bits.has(9) && bits.has(70_001) && !bits.has(4) && !bits.has(1_000_000)).toBe(true);
    bits.delete(9);
    bits.delete(4); // not there: no change
    expect(bits.size).toBe(5);
    expect(bits.toArray()).toEqual([2, 3, 8191, 8192, 70_001]);
  });
});

/** The path of a dir entry, from the ADD_DIR list itself. */
function pathOf(dirs: any[], d: any): string {
  const parts = [d.names[0].unix_name.toString()];
  let parent = d.parent;
  while (parent !== 2n) {
    const up = dirs.find((x) => x.node === parent && ![".", ".."].includes(x.names[0].unix_name.toString()));
    parts.unshift(up.names[0].unix_name.toString());
    parent = up.parent;
  }
  return parts.join("/");
}

describe("ChildList (a directory's entries between the passes)", () => {
  it("keeps names as bytes, in order, past its first buffer; drops by index", () => {
    const l = new ChildList();
    const names = [Buffer.from([0x00, 0xff, 0x2e]), Buffer.alloc(255, 0x61), Buffer.from("b"), Buffer.alloc(100, 0x80)];
    const packed = Buffer.concat([Buffer.from("xx"), ...names]);
    let at = 2;
    names.forEach((n, i) => {
      l.add(packed, at, n.length, 10 + i, i % 2 ? "directory" : "symlink");
      at += n.length;
    });
    expect(l.length).toBe(4);
    expect(l.list()).toEqual(names.map((name, i) => ({ name, ino: 10 + i, type: i % 2 ? "directory" : "symlink" })));
    expect(l.ino(3)).toBe(13);
    expect(l.name(1).equals(names[1]!)).toBe(true);
    const kept = l.without(new Set([0, 2]));
    expect(kept.list()).toEqual([{ name: names[1], ino: 11, type: "directory" }, { name: names[3], ino: 13, type: "directory" }]);
  });
});
