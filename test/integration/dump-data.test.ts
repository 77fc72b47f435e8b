/**
 * The dump data service against real peers: ndmjob as DMA, ndmjob's daemon as tape agent
 * (three-way) or our own virtual drive (local configuration), Linux `restore` 0.4b47 and the
 * digest's inspector as independent readers of our stream, and a stream written by the real
 * Linux `dump -0` as input to our recovery. All inside a private network namespace.
 */
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DUMPINSPECT } from "../helpers/dumpinspect.ts";
import { D, startLab, stopLab, T } from "../helpers/lab.ts";
import { DirectoryIndex, DumpReader } from "../../formats/dump/index.ts";
import type { Netns } from "../helpers/netns.ts";
import { jobSucceeded, ndmjob, parseDirIndex, parseIndex, serveFileOnce, simtapeFile, type NdmjobDaemon } from "../helpers/ndmjob.ts";
import { havePeers, IN_CI } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import type { RunningServer } from "../helpers/server.ts";
import { compareTrees, listTree, makeEdgeTree, show } from "../helpers/tree.ts";

const ready = havePeers("binary", "ndmjob", "restore", "unshare");
const INSPECT = DUMPINSPECT;
/** Linux restore gets microseconds, and 0 for times before 1970 (reported by the backup). */
const US = { timePrecisionNs: 1000 };
const PRE_1970 = /^(times\/pre-1970|empty): mtime /;
/** Our recovery gets them exactly, from our header extension. */
const EXACT = {};

describe.runIf(ready)("dump data service with ndmjob and restore", () => {
  let ns: Netns;
  let srv: RunningServer;
  let daemon: NdmjobDaemon;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-dump-"));
  const SRC = join(W, "src");
  const SMALL = join(W, "small");
  const TAPE = join(W, "tape");
  let stream: Buffer;

  beforeAll(async () => {
    mkdirSync(SRC);
    await makeEdgeTree(SRC);
    mkdirSync(join(SMALL, "d/e"), { recursive: true });
    writeFileSync(join(SMALL, "a"), "a\n");
    writeFileSync(join(SMALL, "d/e/f"), "f\n");
    ({ ns, srv, daemon } = await startLab({ capacity: "8GiB" }));
  }, 120_000);

  afterAll(async () => {
    await stopLab({ ns, srv, daemon });
    rmSync(W, { recursive: true, force: true });
  });

  it("three-way backup: the stream passes the inspector, restore lists, restores and extracts it; the index matches", async () => {
    writeFileSync(TAPE, "");
    const idx = join(W, "backup.idx");
    const r = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", TAPE, "-B", "dump", "-C", SRC, "-I", idx]);
    expect(jobSucceeded(r.stdout), r.stdout + srv.stderr().slice(-4000)).toBe(true);
    // The two times before 1970 are reported, not silently changed.
    expect(r.stdout.match(/DLMw? .*before 1970/g)?.length ?? 0, r.stdout).toBeGreaterThanOrEqual(2);
    stream = simtapeFile(readFileSync(TAPE), 0);
    const image = join(W, "image.dump");
    writeFileSync(image, stream);

    if (existsSync(INSPECT) || IN_CI) {
      const ins = await run("python3", [INSPECT, "--strict", "--quiet", image]);
      expect(ins.code, ins.stdout + ins.stderr).toBe(0);
    }

    // restore -t: every object of the source, by name.
    const t = await run("restore", ["-t", "-f", image]);
    expect(t.code, t.stderr).toBe(0);
    const listed = new Set(t.stdout.split("\n").map((l) => /^\s*\d+\s+(.*)$/.exec(l)?.[1]).filter((x): x is string => !!x));
    for (const o of listTree(SRC)) {
      const name = o.rel.equals(Buffer.from(".")) ? "." : "./" + o.rel.toString("latin1");
      expect(listed.has(Buffer.from(name, "latin1").toString("utf8")) || listed.has(name), name).toBe(true);
    }

    // restore -r into an empty directory reproduces the source.
    const out = join(W, "restore-r");
    mkdirSync(out);
    const rr = await run("restore", ["-r", "-f", image], { cwd: out });
    expect(rr.code, rr.stderr).toBe(0);
    rmSync(join(out, "restoresymtable"));
    // restore -r does not set the times of "." (and removing restoresymtable changed them anyway).
    const diffs = await compareTrees(SRC, out, { ...US, rootTimes: false });
    expect(diffs.filter((d) => !PRE_1970.test(d))).toEqual([]);

    // restore -x -a of one file, and of one directory, extracts just those.
    for (const [pick, expected] of [
      ["hard/b/second", ["hard", "hard/b", "hard/b/second"]],
      ["links", ["links", "links/dangling", "links/long-target", "links/to-one"]],
    ] as const) {
      const dir = join(W, `restore-x-${pick.replace(/\//g, "_")}`);
      mkdirSync(dir);
      const x = await run("restore", ["-x", "-a", "-o", "-f", image, `./${pick}`], { cwd: dir });
      expect(x.code, x.stderr).toBe(0);
      const got = listTree(dir).map((o) => o.rel.toString()).filter((p) => p !== ".").sort();
      expect(got).toEqual([...expected].sort());
      expect(await samePick(join(SRC, pick), join(dir, pick))).toEqual([]);
    }

    // The index: DHr 2, a DHd for every name, and DHn @fh_info = the offset of that inode's TS_INODE.
    const index = parseDirIndex(readFileSync(idx, "latin1"));
    const parsed = parseStream(stream);
    expect(index.root).toBe(2);
    expect(index.nodes.size).toBe(parsed.offsets.size);
    for (const [ino, off] of parsed.offsets) expect(index.nodes.get(ino), `inode ${ino}`).toBe(off);
    for (const o of listTree(SRC)) {
      if (o.rel.equals(Buffer.from("."))) continue;
      const ino = index.resolve(o.rel.toString("latin1"));
      expect(ino, show(o.rel)).toBe(parsed.inoOf.get(o.rel.toString("latin1")));
    }
    expect(parseIndex(readFileSync(idx, "latin1")).env.get("TYPE")).toBe("dump");
  });

  it("ndmjob -t lists the tape through DATA_START_RECOVER_FILEHIST: the same names, nodes and offsets", async () => {
    const toc = join(W, "toc.idx");
    const r = await ndmjob(ns, ["-t", "-v", "-D", D, "-T", T, "-f", TAPE, "-I", toc, "-B", "dump"]);
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    const listed = parseDirIndex(readFileSync(toc, "latin1"));
    const backedUp = parseDirIndex(readFileSync(join(W, "backup.idx"), "latin1"));
    expect(listed.root).toBe(2);
    expect(listed.nodes).toEqual(backedUp.nodes);
    for (const o of listTree(SRC)) {
      const rel = o.rel.toString("latin1");
      if (rel !== ".") expect(listed.resolve(rel), show(o.rel)).toBe(backedUp.resolve(rel));
    }
  });

  it("ndmjob -x restores the whole tree, and selected files and directories elsewhere", async () => {
    const all = join(W, "x-all");
    const r = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", TAPE, "-B", "dump", "-C", all]);
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    expect(await compareTrees(SRC, all, EXACT)).toEqual([]);

    const sel = join(W, "x-sel");
    const picks = ["files/b513", "hard/c/third", "links", "sparse"];
    const r2 = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", TAPE, "-B", "dump", "-C", sel, ...picks.map((p) => "/" + p)]);
    expect(jobSucceeded(r2.stdout), r2.stdout).toBe(true);
    expect(r2.stdout).toContain(`LOG_FILE messages: ${picks.length} OK, 0 ERROR, total ${picks.length} of ${picks.length}`);
    for (const p of picks) expect(await samePick(join(SRC, p), join(sel, p)), p).toEqual([]);
    expect(new Set(readdirSync(sel))).toEqual(new Set(["files", "hard", "links", "sparse"]));
    expect(readdirSync(join(sel, "files"))).toEqual(["b513"]);
  });

  it("HIST=f gives path history (DHf with fh_info = inode offsets) instead of dir/node", async () => {
    const tape = join(W, "tape-f");
    writeFileSync(tape, "");
    const idx = join(W, "f.idx");
    const r = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", tape, "-B", "dump", "-E", "HIST=f", "-C", SMALL, "-I", idx]);
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    const text = readFileSync(idx, "latin1");
    expect(text).not.toMatch(/^DH[dnr] /m);
    const files = parseIndex(text).files;
    const parsed = parseStream(simtapeFile(readFileSync(tape), 0));
    expect([...files.keys()].sort()).toEqual(["/", "/a", "/d", "/d/e", "/d/e/f"]);
    for (const [rel, ino] of parsed.inoOf) expect(files.get(rel === "." ? "/" : "/" + rel)?.fhInfo, rel).toBe(parsed.offsets.get(ino));
  });

  it("a second level-0 dump after adding a file keeps every inode number (DHd/DHn)", async () => {
    const nodes: Array<Map<string, number>> = [];
    for (const round of [1, 2]) {
      if (round === 2) writeFileSync(join(SMALL, "0-added"), "new\n");
      const tape = join(W, `tape-l0-${round}`);
      writeFileSync(tape, "");
      const idx = join(W, `l0-${round}.idx`);
      const r = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", tape, "-B", "dump", "-C", SMALL, "-I", idx]);
      expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
      const index = parseDirIndex(readFileSync(idx, "latin1"));
      nodes.push(new Map(["a", "d", "d/e", "d/e/f", "0-added"].map((p) => [p, index.resolve(p)!] as [string, number]).filter(([, n]) => n !== undefined)));
      for (const n of nodes[nodes.length - 1]!.values()) expect(index.nodes.has(n)).toBe(true);
    }
    const [before, after] = nodes as [Map<string, number>, Map<string, number>];
    expect(before.has("0-added")).toBe(false);
    for (const [p, n] of before) expect(after.get(p), p).toBe(n);
    expect(after.get("0-added")).toBeGreaterThan(Math.max(...before.values()));
  });

  it("LEVEL=1 after a level 0: restore -r applies both and reproduces the changed tree", async () => {
    const images: string[] = [];
    // Changes are compared inclusively at the clock's tick: let earlier ones fall before the level 0's.
    await new Promise((r) => setTimeout(r, 30));
    for (const level of [0, 1]) {
      if (level === 1) {
        await new Promise((r) => setTimeout(r, 30));
        writeFileSync(join(SMALL, "d/e/f"), "changed\n");
        writeFileSync(join(SMALL, "d/new"), "new\n");
        rmSync(join(SMALL, "a"));
        mkdirSync(join(SMALL, "newdir"));
      }
      const tape = join(W, `tape-inc-${level}`);
      writeFileSync(tape, "");
      const r = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", tape, "-B", "dump", "-E", `LEVEL=${level}`, "-C", SMALL]);
      expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
      const image = join(W, `inc-${level}.dump`);
      writeFileSync(image, simtapeFile(readFileSync(tape), 0));
      images.push(image);
    }
    // The second image really is incremental: level 1, against the first one's date, and
    // carrying only what changed (plus every directory).
    const tapes = images.map((i) => new DumpReader().feed(readFileSync(i)).find((e) => e.kind === "tape")!);
    expect(tapes[1]).toMatchObject({ tape: { level: 1, ddate: (tapes[0] as any).tape.date } });
    expect([...parseStream(readFileSync(images[1]!)).inoOf.keys()].sort()).toEqual([".", "d", "d/e", "d/e/f", "d/new", "newdir"]);
    const out = join(W, "restore-inc");
    mkdirSync(out);
    for (const image of images) {
      const rr = await run("restore", ["-r", "-f", image], { cwd: out });
      expect(rr.code, rr.stderr).toBe(0);
    }
    rmSync(join(out, "restoresymtable"));
    expect(await compareTrees(SMALL, out, { ...US, rootTimes: false })).toEqual([]);
  });

  it("local configuration: our server is data and tape agent, with a virtual drive", async () => {
    const b = await ndmjob(ns, ["-c", "-v", "-D", D, "-f", "vt0", "-B", "dump", "-C", SRC, "-I", join(W, "local.idx")]);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    const dst = join(W, "x-local");
    const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-f", "vt0", "-B", "dump", "-C", dst]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(SRC, dst, EXACT)).toEqual([]);
    const sel = join(W, "x-local-sel");
    const x2 = await ndmjob(ns, ["-x", "-v", "-D", D, "-f", "vt0", "-B", "dump", "-C", sel, "/dirs/setgid"]);
    expect(x2.stdout).toContain("LOG_FILE messages: 1 OK, 0 ERROR, total 1 of 1");
    expect(await compareTrees(join(SRC, "dirs/setgid"), join(sel, "dirs/setgid"), US)).toEqual([]);
  });

  it("recovers a stream written by the real Linux dump -0, delivered over tape-tcp", async (ctx) => {
    const lx = await linuxDump(W);
    if (typeof lx === "string") {
      if (IN_CI) throw new Error(lx);
      console.warn(`skipping: ${lx}`);
      ctx.skip();
      return;
    }
    const dest = join(W, "x-linux");
    const port = 10301;
    const { sent } = await serveFileOnce(ns, port, lx.image);
    const r = await ndmjob(ns, ["-x", "-v", "-D", D, "-o", `tape-tcp=127.0.0.1:${port}`, "-f", "unused", "-B", "dump", "-C", dest]);
    await sent;
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    // Linux dump stores whole seconds; ext4 adds lost+found; mkfs -d does not copy the root's times.
    const diffs = await compareTrees(lx.src, dest, {
      timePrecisionNs: 1_000_000_000,
      rootTimes: false,
      ignore: (rel) => rel.toString().startsWith("lost+found"),
    });
    expect(diffs).toEqual([]);
  });

  // Last on purpose: it changes SRC, which the tests above back up.
  it("ndmjob -x restores selected entries to their original place", async () => {
    const picks = ["files/b513", "hard"];
    for (const p of picks) rmSync(join(SRC, p), { recursive: true, force: true });
    const r = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", TAPE, "-B", "dump", "-C", SRC, ...picks.map((p) => "/" + p)]);
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    expect(r.stdout).toContain(`LOG_FILE messages: ${picks.length} OK, 0 ERROR, total ${picks.length} of ${picks.length}`);
    // What came back in place equals what the whole-tree restore made of the same tape.
    for (const p of picks) expect(await samePick(join(W, "x-all", p), join(SRC, p)), p).toEqual([]);
  });
});

/** A restored file or directory equals the original (a file: type, mode, owner, mtime to the µs, content). */
async function samePick(a: string, b: string): Promise<string[]> {
  const sa = lstatSync(a, { bigint: true });
  if (sa.isDirectory()) return compareTrees(a, b, US);
  const sb = lstatSync(b, { bigint: true });
  const diffs: string[] = [];
  if (sa.mode !== sb.mode || sa.uid !== sb.uid || sa.gid !== sb.gid) diffs.push(`${b}: mode/owner`);
  if (sa.mtimeNs / 1000n !== sb.mtimeNs / 1000n) diffs.push(`${b}: mtime ${sa.mtimeNs} != ${sb.mtimeNs}`);
  if (sa.isFile() && !readFileSync(a).equals(readFileSync(b))) diffs.push(`${b}: content`);
  return diffs;
}

/** Inode offsets and paths of a dump stream, read by our own reader. */
function parseStream(stream: Buffer) {
  const reader = new DumpReader();
  const index = new DirectoryIndex();
  const offsets = new Map<number, number>();
  for (const ev of [...reader.feed(stream), ...reader.finish()]) {
    if (ev.kind === "inode") offsets.set(ev.ino, ev.offset);
    else if (ev.kind === "directory") index.add(ev.ino, ev.entries);
  }
  const inoOf = new Map<string, number>();
  for (const ino of offsets.keys()) for (const p of index.paths(ino)) inoOf.set(p.toString("latin1"), ino);
  return { offsets, inoOf };
}

/** A small tree on ext4 (mkfs.ext4 -d), dumped by the real `dump -0` from a read-only loop device. */
async function linuxDump(W: string): Promise<{ src: string; image: string } | string> {
  for (const tool of ["mkfs.ext4", "losetup", "dump"]) {
    if ((await run("sh", ["-c", `command -v ${tool}`])).code !== 0) return `${tool} is not installed`;
  }
  const src = join(W, "lx-src");
  mkdirSync(join(src, "dir/sub"), { recursive: true });
  writeFileSync(join(src, "hello.txt"), "hello\n");
  writeFileSync(join(src, "dir/sub/data.bin"), Buffer.alloc(700_000, 0x5a));
  writeFileSync(join(src, "dir/empty"), "");
  await run("ln", [join(src, "hello.txt"), join(src, "dir/hard")]);
  await run("ln", ["-s", "../hello.txt", join(src, "dir/sym")]);
  await run("mkfifo", [join(src, "dir/fifo")]);
  await run("truncate", ["-s", "3M", join(src, "dir/holey")]);
  const fs = join(W, "lx.ext4");
  const mk = await run("mkfs.ext4", ["-q", "-F", "-b", "4096", "-d", src, fs, "16M"]);
  if (mk.code !== 0) return `mkfs.ext4 failed: ${mk.stderr}`;
  const lo = await run("losetup", ["-r", "--show", "-f", fs]);
  if (lo.code !== 0) return `losetup failed: ${lo.stderr.trim()}`;
  const dev = lo.stdout.trim();
  const image = join(W, "lx.dump");
  try {
    const d = await run("dump", ["-0", "-q", "-f", image, dev]);
    if (d.code !== 0) return `dump failed: ${d.stderr}`;
  } finally {
    await run("losetup", ["-d", dev]);
  }
  return { src, image };
}

