import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Entry } from "../../../../formats/entry.ts";
import { encodeDumpdir, parseDumpdir } from "../../../../formats/tar/dumpdir.ts";
import { readAll } from "../../../../formats/tar/reader.ts";
import { encodeHeader, endOfArchive } from "../../../../formats/tar/writer.ts";
import { havePeers } from "../../../helpers/peers.ts";

const b = (s: string) => Buffer.from(s, "latin1");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-dumpdir-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("GNU.dumpdir", () => {
  it("letter + name + NUL per child, sorted bytewise, one more NUL at the end; parsed back", () => {
    const buf = encodeDumpdir([
      { name: b("zeta"), letter: "N" },
      { name: Buffer.from([0xff, 0x41]), letter: "Y" },
      { name: b("alpha"), letter: "D" },
    ]);
    expect(buf).toEqual(Buffer.concat([b("Dalpha\0Nzeta\0Y"), Buffer.from([0xff, 0x41, 0]), Buffer.alloc(1)]));
    const { names, renames } = parseDumpdir(buf);
    expect(renames).toBe(0);
    expect([...names]).toEqual([["alpha", "D"], ["zeta", "N"], ["\xffA", "Y"]]);
    expect(encodeDumpdir([])).toEqual(Buffer.alloc(1));
    expect(() => encodeDumpdir([{ name: b("a/b"), letter: "Y" }])).toThrow(RangeError);
    expect(() => parseDumpdir(b("Yunterminated"))).toThrow(/terminating NUL/);
    expect(() => parseDumpdir(b("Qx\0\0"))).toThrow(/unknown letter/);
  });

  it("travels as a pax record of a directory and comes back byte for byte", () => {
    const dumpdir = encodeDumpdir([{ name: b("a"), letter: "Y" }, { name: b("d"), letter: "D" }]);
    const dir: Entry = { path: b("sub"), type: "directory", mode: 0o755, uid: 0, gid: 0, size: 0, mtime: { sec: 1, nsec: 0 }, dumpdir };
    const archive = Buffer.concat([encodeHeader(dir), endOfArchive()]);
    const [ev] = readAll(archive);
    expect(ev!.kind).toBe("entry");
    expect((ev as { entry: Entry }).entry.dumpdir).toEqual(dumpdir);
  });

  it.runIf(havePeers("tar"))("is what GNU tar --listed-incremental writes for the same directory, and we read GNU tar's", () => {
    const src = path.join(tmp, "src");
    fs.mkdirSync(path.join(src, "d"), { recursive: true });
    fs.writeFileSync(path.join(src, "old"), "old");
    const snap = path.join(tmp, "snap");
    const tar = (out: string) => spawnSync("tar", ["--format=posix", "-g", snap, "-cf", out, "-C", src, "."], { encoding: "utf8" });
    expect(tar(path.join(tmp, "l0.tar")).status).toBe(0);
    fs.writeFileSync(path.join(src, "new"), "new");
    // GNU tar compares with 1-second slack; make sure "new" is newer than the snapshot.
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(path.join(src, "new"), later, later);
    expect(tar(path.join(tmp, "l1.tar")).status).toBe(0);
    const root = readAll(fs.readFileSync(path.join(tmp, "l1.tar"))).find((e) => e.kind === "entry" && e.entry.path.toString() === ".");
    const theirs = (root as { entry: Entry }).entry.dumpdir!;
    const ours = encodeDumpdir([{ name: b("d"), letter: "D" }, { name: b("new"), letter: "Y" }, { name: b("old"), letter: "N" }]);
    expect(theirs.toString("latin1")).toBe(ours.toString("latin1"));
  });
});
