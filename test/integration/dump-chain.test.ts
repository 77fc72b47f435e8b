/**
 * A three-level dump chain through the compiled server, against real peers: the chain helper's
 * tree (every change kind between the levels), backed up with `ndmjob -c -E LEVEL=N` three-way
 * (ndmjob's daemon holds the tapes) and locally (our own virtual drive), then
 *  - restored level by level with `ndmjob -x` through our server into one destination: equal
 *    to the tree at each level (names as bytes, types, modes, owners, ns times, xattrs, links);
 *  - restored level by level by Linux `restore -r`: equal, but for what restore cannot take;
 *  - every image valid for dumpinspect --strict; level 2 a small fraction of level 0, and its
 *    file history names only what it holds;
 *  - an nlist recovery of level 2 restores what that level holds, and reports a name whose
 *    newest copy is in another image as not found, carrying on with the rest;
 *  - token mode (BASE_DATE = the previous image's DUMP_DATE, as ndmjob's index has it) gives
 *    the same images; `ndmpd backup --level N` and `ndmpd recover` of the chain give the tree.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyChainStep, compareTrees, listTree, makeChainTree, nameKey, snapshotTree, withoutRestoreLimits, type ChainSpec, type ChainStep } from "../helpers/chain.ts";
import { DUMPINSPECT } from "../helpers/dumpinspect.ts";
import { D, startLab, stopLab, T } from "../helpers/lab.ts";
import { chmodSync } from "node:fs";
import { DirectoryIndex, DumpReader } from "../../formats/dump/index.ts";
import { decodeName, jobSucceeded, ndmjob, parseIndex, simtapeFile, type NdmjobDaemon } from "../helpers/ndmjob.ts";
import type { Netns } from "../helpers/netns.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import type { RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary", "ndmjob", "restore", "unshare");
const LEVELS = [0, 1, 2] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const IGNORE_SYMTAB = (rel: Buffer) => rel.equals(Buffer.from("restoresymtable"));

/** The DHd/DHn/DHr lines of an index: the names (paths from the root) and the nodes. */
function dirIndex(text: string): { paths: Map<string, number>; nodes: Set<number>; dirs: Set<number> } {
  const children = new Map<number, Array<[string, number]>>();
  const nodes = new Set<number>();
  const dirs = new Set<number>();
  let root = 2;
  for (const line of text.split("\n")) {
    let m;
    if ((m = /^DHd (\d+) (\S+) UNIX (\d+)$/.exec(line))) {
      const name = decodeName(m[2]!);
      if (name === "." || name === "..") continue;
      const list = children.get(Number(m[1])) ?? [];
      list.push([name, Number(m[3])]);
      children.set(Number(m[1]), list);
    } else if ((m = /^DHn (\d+) UNIX f(\S)/.exec(line))) {
      // "f" and ls's type letter ("fd": a directory, "f-": a regular file).
      nodes.add(Number(m[1]));
      if (m[2] === "d") dirs.add(Number(m[1]));
    } else if ((m = /^DHr (\d+)$/.exec(line))) root = Number(m[1]);
  }
  const paths = new Map<string, number>();
  const visit = (dir: number, prefix: string, depth: number) => {
    if (depth > 100) return;
    for (const [name, node] of children.get(dir) ?? []) {
      const p = prefix ? `${prefix}/${name}` : name;
      paths.set(p, node);
      if (children.has(node)) visit(node, p, depth + 1);
    }
  };
  visit(root, "", 0);
  return { paths, nodes, dirs };
}

describe.runIf(ready)("dump incremental chain through the server: ndmjob -x and restore -r", () => {
  let ns: Netns;
  let srv: RunningServer;
  let daemon: NdmjobDaemon;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-dump-chain-"));
  /** Two identical trees, each with its own chain: three-way (A) and local (B). */
  let A: ChainSpec;
  let B: ChainSpec;
  const steps: ChainStep[] = [];
  const tape = (level: number) => join(W, `tape${level}`);
  const image = (level: number) => join(W, `l${level}.dump`);
  const figures: string[] = [];
  const localRestores: string[][] = [];
  const tokenImages: Buffer[] = [];
  const CFG = join(W, "cli.toml");
  const cli = (...args: string[]) => run(BINARY, [...args, "--config", CFG], { timeoutMs: 120_000 });

  beforeAll(async () => {
    A = await makeChainTree(join(W, "a"));
    B = await makeChainTree(join(W, "b"));
    ({ ns, srv, daemon } = await startLab({ capacity: "1GiB" }));
    // The CLI's jobs run their own server, with their own state (and so their own chain of A).
    writeFileSync(CFG, `[server]\nstate_dir = "${W}/cli-state"\n\n[[tape]]\nname = "vtc"\npath = "${W}/vtc.tape"\ncapacity = "1GiB"\n`);
    chmodSync(CFG, 0o600);
    for (const level of LEVELS) {
      // Changes are compared inclusively at the clock's tick: keep them out of the backup's.
      await sleep(30);
      if (level > 0) {
        steps[level] = applyChainStep(A, level as 1 | 2);
        applyChainStep(B, level as 1 | 2);
      }
      snapshotTree(A.root, join(W, `at${level}`));
      snapshotTree(B.root, join(W, `atB${level}`));
      await sleep(30);

      writeFileSync(tape(level), "");
      const t0 = Date.now();
      const r = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", tape(level), "-B", "dump", "-E", `LEVEL=${level}`, "-C", A.root, "-I", join(W, `l${level}.idx`)]);
      const ms = Date.now() - t0;
      if (!jobSucceeded(r.stdout)) throw new Error(`level ${level} three-way backup failed:\n${r.stdout}\n${srv.stderr().slice(-4000)}`);
      writeFileSync(image(level), simtapeFile(readFileSync(tape(level)), 0));

      // Token mode, as a DMA that keeps dates does it: BASE_DATE = the last image's DUMP_DATE.
      const tokenTape = join(W, `token${level}`);
      writeFileSync(tokenTape, "");
      const base = level === 0 ? "0" : parseIndex(readFileSync(join(W, `token${level - 1}.idx`), "latin1")).env.get("DUMP_DATE")!;
      const tk = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", tokenTape, "-B", "dump", "-E", `BASE_DATE=${base}`, "-C", A.root, "-I", join(W, `token${level}.idx`)]);
      if (!jobSucceeded(tk.stdout)) throw new Error(`level ${level} token backup failed:\n${tk.stdout}`);
      tokenImages.push(simtapeFile(readFileSync(tokenTape), 0));

      const c = await cli("backup", A.root, "--tape", "vtc", "--format", "dump", "--level", String(level), "--label", `D${level}`);
      if (c.code !== 0) throw new Error(`level ${level} ndmpd backup failed:\n${c.stderr}${c.stdout}`);

      // The local chain: backed up to our virtual drive, and restored from it at once (the
      // next level's backup overwrites the cartridge), level by level into one destination.
      const t1 = Date.now();
      const b = await ndmjob(ns, ["-c", "-v", "-D", D, "-f", "vt0", "-B", "dump", "-E", `LEVEL=${level}`, "-C", B.root]);
      const localMs = Date.now() - t1;
      if (!jobSucceeded(b.stdout)) throw new Error(`level ${level} local backup failed:\n${b.stdout}\n${srv.stderr().slice(-4000)}`);
      const t2 = Date.now();
      const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-f", "vt0", "-B", "dump", "-C", join(W, "x-local")]);
      const restoreMs = Date.now() - t2;
      localRestores.push(jobSucceeded(x.stdout) ? await compareTrees(join(W, `atB${level}`), join(W, "x-local")) : [`ndmjob -x failed:\n${x.stdout}`]);
      const size = readFileSync(image(level)).length;
      figures.push(`level ${level}: image ${size} bytes; backup three-way ${ms} ms, local ${localMs} ms; local restore ${restoreMs} ms`);
    }
    console.log(`dump chain figures:\n  ${figures.join("\n  ")}`);
  }, 600_000);

  afterAll(async () => {
    await stopLab({ ns, srv, daemon });
    rmSync(W, { recursive: true, force: true });
  });

  it("every image passes dumpinspect --strict; level 2 is a small fraction of level 0", async () => {
    for (const level of LEVELS) {
      const r = await run("python3", [DUMPINSPECT, "--strict", "--quiet", image(level)]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
    const sizes = LEVELS.map((l) => readFileSync(image(l)).length);
    expect(sizes[0]).toBeGreaterThan(A.bulkBytes);
    expect(sizes[2]! / sizes[0]!).toBeLessThan(0.1);
  });

  it("the file history of an incremental names only what it holds (and the directories)", () => {
    const l0 = dirIndex(readFileSync(join(W, "l0.idx"), "latin1"));
    expect(l0.paths.size).toBe(listTree(join(W, "at0")).length - 1);
    for (const level of [1, 2] as const) {
      const idx = dirIndex(readFileSync(join(W, `l${level}.idx`), "latin1"));
      // Every name leads to a node of this image; every node is named.
      for (const [p, node] of idx.paths) expect(idx.nodes.has(node), p).toBe(true);
      const files = [...idx.paths].filter(([, node]) => !idx.dirs.has(node)).map(([p]) => p).sort();
      expect(files).toEqual(steps[level]!.mustHold.map(nameKey).sort());
      const dirsNow = listTree(join(W, `at${level}`)).filter((o) => o.st.isDirectory() && !o.rel.equals(Buffer.from("."))).map((o) => nameKey(o.rel));
      expect([...idx.paths].filter(([, node]) => idx.dirs.has(node)).map(([p]) => p).sort()).toEqual(dirsNow.sort());
    }
  });

  it("ndmjob -t of level 2 (DATA_START_RECOVER_FILEHIST) lists the same names and nodes as its backup did", async () => {
    const toc = join(W, "toc2.idx");
    const r = await ndmjob(ns, ["-t", "-v", "-D", D, "-T", T, "-f", tape(2), "-I", toc, "-B", "dump"]);
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    const listed = dirIndex(readFileSync(toc, "latin1"));
    const backedUp = dirIndex(readFileSync(join(W, "l2.idx"), "latin1"));
    expect([...listed.paths].sort()).toEqual([...backedUp.paths].sort());
    expect([...listed.nodes].sort()).toEqual([...backedUp.nodes].sort());
  });

  it("ndmjob -x, level by level into one destination (three-way): the tree at each level", async () => {
    const dest = join(W, "x-three-way");
    for (const level of LEVELS) {
      const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", tape(level), "-B", "dump", "-C", dest]);
      expect(jobSucceeded(x.stdout), x.stdout + srv.stderr().slice(-3000)).toBe(true);
      expect(await compareTrees(join(W, `at${level}`), dest), `after level ${level}`).toEqual([]);
    }
  });

  it("ndmjob -x, level by level into one destination (local): the tree at each level", () => {
    for (const level of LEVELS) expect(localRestores[level], `after level ${level}`).toEqual([]);
  });

  it("Linux restore -r, level by level: the tree at each level, but for what restore cannot take", async () => {
    const dest = join(W, "restore-r");
    mkdirSync(dest);
    for (const level of LEVELS) {
      const r = await run("restore", ["-r", "-f", image(level)], { cwd: dest });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      // restore -r keeps microseconds and leaves "." alone.
      const diffs = await compareTrees(join(W, `at${level}`), dest, { timePrecisionNs: 1000, rootTimes: false, ignore: IGNORE_SYMTAB });
      const { rest, truncated } = withoutRestoreLimits(diffs);
      expect(rest, `after level ${level}: ${r.stderr}`).toEqual([]);
      expect(truncated.length).toBe(level === 0 ? 1 : 2); // the 255-byte names, under 254 bytes
    }
  });

  it("token mode (BASE_DATE from the previous DUMP_DATE) gives the same images as LEVEL=N", () => {
    const inodes = (stream: Buffer) => {
      const reader = new DumpReader();
      const index = new DirectoryIndex();
      const out = new Map<string, number>();
      const events = [...reader.feed(stream), ...reader.finish()];
      for (const ev of events) if (ev.kind === "directory") index.add(ev.ino, ev.entries);
      for (const ev of events) if (ev.kind === "inode") for (const p of index.paths(ev.ino)) out.set(nameKey(p), ev.ino);
      const tape = events.find((e) => e.kind === "tape");
      return { out, level: tape?.kind === "tape" ? tape.tape.level : -1 };
    };
    for (const level of LEVELS) {
      const t = inodes(tokenImages[level]!);
      const l = inodes(readFileSync(image(level)));
      expect(t.level).toBe(level);
      expect([...t.out].sort()).toEqual([...l.out].sort());
      expect(tokenImages[level]!.length).toBe(readFileSync(image(level)).length);
    }
  });

  it("ndmpd recover of the chain (given its last backup): level 0, 1, 2 in order, equal to the final tree", async () => {
    const l = await cli("list", "--tape", "vtc");
    expect(l.code, l.stderr).toBe(0);
    expect(l.stdout).toMatch(/^ 3 .* dump +2 +2 /m);
    expect(l.stdout).toMatch(/^ 1 .* dump +0 +- /m);
    const dest = join(W, "x-cli");
    const r = await cli("recover", "--tape", "vtc", "--to", dest, "--file", "3");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(await compareTrees(join(W, "at2"), dest)).toEqual([]);
  });

  it("an nlist recovery of level 2 restores what it holds; a name only in an older image is not found, the rest goes on", async () => {
    const dest = join(W, "x-nlist");
    const picks = ["/edit/e2", "/new2", "/big/blob", "/names"];
    const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", tape(2), "-B", "dump", "-C", dest, ...picks]);
    // big/blob is only in level 0: that one name fails, the others are restored.
    expect(x.stdout).toContain(`LOG_FILE messages: ${picks.length - 1} OK, 1 ERROR, total ${picks.length} of ${picks.length}`);
    expect(x.stdout).toMatch(/DLF.*big\/blob/);
    expect(x.stdout).toContain('SESS "Operation ended OKAY"');
    expect(readFileSync(join(dest, "edit/e2"), "utf8")).toBe("ORIGINAL content two\n");
    expect(await compareTrees(join(W, "at2", "new2"), join(dest, "new2"))).toEqual([]);
    // names/ holds only what level 2 has of it: its new directory and file (the rest is older).
    const names = listTree(join(dest, "names")).map((o) => nameKey(o.rel)).sort();
    expect(names).toEqual([".", "\x80dir", "\x80dir/\xfffile"]);
  });
});
