/**
 * Direct access recovery: ndmjob restores a few files out of a large backup using the file
 * history offsets, and our data server reads only those entries (plus record alignment) —
 * in the local configuration (our virtual drive) and three-way (ndmjob's tape agent).
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { D, startLab, stopLab, T } from "../helpers/lab.ts";
import { TarReader } from "../../formats/tar/reader.ts";
import type { Netns } from "../helpers/netns.ts";
import { jobSucceeded, ndmjob, parseDirIndex, parseIndex, simtapeFile, type NdmjobDaemon } from "../helpers/ndmjob.ts";
import { havePeers } from "../helpers/peers.ts";
import type { RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary", "ndmjob", "unshare");
const GiB = 1024 * 1024 * 1024;
const R = 10240; // ndmjob's default record size (-b 20)
const SMALL_FILES = 10_000;

/** A tree with one 1 GiB file (real bytes, not a hole) and 10,000 small files in 100 directories. */
function makeDarTree(root: string): void {
  mkdirSync(root);
  const big = openSync(join(root, "big.bin"), "w");
  const block = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let off = 0; off < GiB; off += block.length) {
    block.writeUInt32LE(off / block.length, 0);
    writeSync(big, block, 0, block.length, off);
  }
  closeSync(big);
  for (let d = 0; d < 100; d++) {
    const dir = join(root, `d${String(d).padStart(3, "0")}`);
    mkdirSync(dir);
    for (let f = 0; f < SMALL_FILES / 100; f++) {
      writeFileSync(join(dir, `f${f}.txt`), `file ${d}/${f}\n`.repeat(1 + ((d * 31 + f) % 300)));
    }
  }
}

/** Bytes of an entry in the stream: from its first header to the next entry's first header. */
function entrySpans(stream: Buffer): Map<string, { offset: number; length: number }> {
  const offsets: Array<[string, number]> = [];
  for (const ev of new TarReader().feed(stream)) if (ev.kind === "entry") offsets.push([ev.entry.path.toString("latin1"), ev.offset]);
  const spans = new Map<string, { offset: number; length: number }>();
  offsets.forEach(([p, off], i) => spans.set(p, { offset: off, length: (offsets[i + 1]?.[1] ?? stream.length) - off }));
  return spans;
}

/** "recovery done: ... N bytes, M direct reads" from ndmjob's LOG_MESSAGE lines. */
function bytesRead(stdout: string): { bytes: number; reads: number } {
  const m = /recovery done: \d+ entries read, \d+ restored, (\d+) bytes, (\d+) direct reads/.exec(stdout);
  if (!m) throw new Error(`no direct-access summary in:\n${stdout}`);
  return { bytes: Number(m[1]), reads: Number(m[2]) };
}

describe.runIf(ready)("direct access recovery (DAR)", () => {
  let ns: Netns;
  let srv: RunningServer;
  let daemon: NdmjobDaemon;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-dar-"));
  const SRC = join(W, "src");
  const picks = ["d007/f3.txt", "d042/f77.txt", "d099/f99.txt"];

  beforeAll(async () => {
    makeDarTree(SRC);
    ({ ns, srv, daemon } = await startLab({ capacity: "4GiB" }));
  }, 300_000);

  afterAll(async () => {
    await stopLab({ ns, srv, daemon });
    rmSync(W, { recursive: true, force: true });
  });

  /** Restores `files` with the index; returns what the server read and checks the files. */
  async function darRestore(agents: string[], idx: string, files: string[], dest: string, format = "tar") {
    const r = await ndmjob(ns, ["-x", "-v", "-D", D, ...agents, "-B", format, "-C", dest, "-J", idx, ...files.map((f) => "/" + f)], 600_000);
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    expect(r.stdout).toContain(`LOG_FILE messages: ${files.length} OK, 0 ERROR, total ${files.length} of ${files.length}`);
    expect(r.stdout).toContain("(direct access)");
    return r.stdout;
  }

  function checkRestored(dest: string, files: string[]): void {
    for (const f of files) expect(readFileSync(join(dest, f)).equals(readFileSync(join(SRC, f))), f).toBe(true);
  }

  it("three-way: three small files out of a 1 GiB + 10,000-file backup, reading only their entries", async () => {
    const tape = join(W, "tape");
    writeFileSync(tape, "");
    const idx = join(W, "3way.idx");
    const b = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", tape, "-B", "tar", "-C", SRC, "-I", idx], 600_000);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    expect(parseIndex(readFileSync(idx, "latin1")).env.get("DIRECT")).toBe("y");
    const spans = entrySpans(simtapeFile(readFileSync(tape), 0));

    const dest = join(W, "dar-3way");
    const out = await darRestore(["-T", T, "-f", tape], idx, picks, dest);
    checkRestored(dest, picks);
    const { bytes } = bytesRead(out);
    const bound = picks.reduce((sum, p) => sum + spans.get(p)!.length + 2 * R, 0);
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThanOrEqual(bound);

    // A directory in the nlist: its whole subtree, read as one contiguous region.
    const dirDest = join(W, "dar-dir");
    const out2 = await darRestore(["-T", T, "-f", tape], idx, ["d050"], dirDest);
    const names = execFileSync("sh", ["-c", `cd ${join(dirDest, "d050")} && ls | wc -l`]).toString().trim();
    expect(Number(names)).toBe(SMALL_FILES / 100);
    checkRestored(dirDest, ["d050/f0.txt", "d050/f99.txt"]);
    const dirSpan = [...spans].filter(([p]) => p === "d050" || p.startsWith("d050/")).reduce((s, [, v]) => s + v.length, 0);
    expect(bytesRead(out2).bytes).toBeLessThanOrEqual(dirSpan + 2 * R + 1024 * 1024);

    // One entry without an offset (its DHf line removed from the index): found by a scan, the
    // others by direct access, and the job succeeds.
    const partial = join(W, "partial.idx");
    const lines = readFileSync(idx, "latin1").split("\n").filter((l) => !l.startsWith(`DHf /${picks[0]} `));
    writeFileSync(partial, lines.join("\n"), "latin1");
    const mixed = join(W, "dar-mixed");
    await darRestore(["-T", T, "-f", tape], partial, picks, mixed);
    checkRestored(mixed, picks);
  }, 600_000);

  it("local configuration: the same restore through our own mover and virtual drive", async () => {
    const idx = join(W, "local.idx");
    const b = await ndmjob(ns, ["-c", "-v", "-D", D, "-f", "vt0", "-B", "tar", "-C", SRC, "-I", idx], 600_000);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    const index = parseIndex(readFileSync(idx, "latin1"));
    const dest = join(W, "dar-local");
    const out = await darRestore(["-f", "vt0"], idx, picks, dest);
    checkRestored(dest, picks);
    // Offsets in the index are the entries' headers; the spans follow from consecutive offsets.
    const offsets = [...index.files.values()].map((v) => v.fhInfo).sort((a, b) => a - b);
    const bound = picks.reduce((sum, p) => {
      const off = index.files.get("/" + p)!.fhInfo;
      // The last entry has no successor: its headers (at most three blocks here) and data.
      const size = readFileSync(join(SRC, p)).length;
      const next = offsets[offsets.indexOf(off) + 1] ?? off + 3 * 512 + Math.ceil(size / 512) * 512;
      return sum + (next - off) + 2 * 10240;
    }, 0);
    expect(bytesRead(out).bytes).toBeLessThanOrEqual(bound);
  }, 600_000);

  /**
   * dump: a backup with the index, then three files (jumps to their inodes), the same with one
   * DHn line removed (a scan from 0 finds that one), and a directory's subtree.
   */
  async function dumpDar(name: string, agents: string[]): Promise<void> {
    const idx = join(W, `${name}.idx`);
    const b = await ndmjob(ns, ["-c", "-v", "-D", D, ...agents, "-B", "dump", "-C", SRC, "-I", idx], 600_000);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    const text = readFileSync(idx, "latin1");
    const index = parseDirIndex(text);
    // DHn offsets are the inodes' TS_INODE headers: an inode's span runs to the next one's.
    const offsets = [...index.nodes.values()].sort((a, b) => a - b);
    const bound = picks.reduce((sum, p) => {
      const off = index.nodes.get(index.resolve(p)!)!;
      // The last inode has no successor: its header, its data and the TS_END after it.
      const size = readFileSync(join(SRC, p)).length;
      const next = offsets[offsets.indexOf(off) + 1] ?? off + (2 + Math.ceil(size / 1024)) * 1024;
      return sum + (next - off) + 2 * R;
    }, 0);

    const dest = join(W, `${name}-dar`);
    const out = await darRestore(agents, idx, picks, dest, "dump");
    checkRestored(dest, picks);
    const { bytes, reads } = bytesRead(out);
    expect(bytes).toBeGreaterThan(0);
    expect(bytes, `${bytes} bytes in ${reads} reads, bound ${bound}`).toBeLessThanOrEqual(bound);

    // One file whose DHn line is gone (fh_info = ALL1): a scan from the start finds it. The
    // scan steps over big.bin (numbered before the small files) by its headers.
    const ino = index.resolve(picks[0]!)!;
    const partial = join(W, `${name}-partial.idx`);
    writeFileSync(partial, text.split("\n").filter((l) => !l.startsWith(`DHn ${ino} `)).join("\n"), "latin1");
    const mixed = join(W, `${name}-dar-mixed`);
    const out2 = await darRestore(agents, partial, picks, mixed, "dump");
    checkRestored(mixed, picks);
    expect(bytesRead(out2).bytes).toBeLessThan(GiB / 16);

    // A directory: its whole subtree (the directory phase from it on, then its files).
    const dirDest = join(W, `${name}-dar-dir`);
    const out3 = await darRestore(agents, idx, ["d050"], dirDest, "dump");
    const names = execFileSync("sh", ["-c", `cd ${join(dirDest, "d050")} && ls | wc -l`]).toString().trim();
    expect(Number(names)).toBe(SMALL_FILES / 100);
    checkRestored(dirDest, ["d050/f0.txt", "d050/f50.txt", "d050/f99.txt"]);
    expect(bytesRead(out3).bytes).toBeLessThan(GiB / 16);
  }

  it("dump, local configuration: files by jumping to their inodes, one without an offset, a directory", async () => {
    await dumpDar("dump-local", ["-f", "vt0"]);
  }, 900_000);

  it("dump, three-way: the same through ndmjob's tape agent", async () => {
    const tape = join(W, "dump-tape");
    writeFileSync(tape, "");
    await dumpDar("dump-3way", ["-T", T, "-f", tape]);
  }, 900_000);
});
