/**
 * A dump incremental chain (levels 0, 1, 2 of the chain helper's tree, every change kind in
 * between) made by the dump engine in memory: each image passes dumpinspect --strict, holds
 * only what changed (or moved) plus the directories, and replays exactly — through our own
 * recovery into one destination, and through Linux `restore -r` — to the tree as it was at
 * each level. (Under Node there is no native layer: xattrs are checked by the integration test
 * through the compiled binary.)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyChainStep, compareTrees, listTree, makeChainTree, nameKey, snapshotTree, withoutRestoreLimits, type ChainSpec, type ChainStep } from "../../helpers/chain.ts";
import { CHECKSUM, TP_BSIZE, isHeader, wordSum } from "../../../formats/dump/header.ts";
import { DUMPINSPECT } from "../../helpers/dumpinspect.ts";
import { havePeers } from "../../helpers/peers.ts";
import { run } from "../../helpers/run.ts";
import { backup, historyOf, parse, recover, target, type BackupRun } from "./dump-fixture.ts";

const W = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-dchain-"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Dump keeps microseconds. */
const CMP = { timePrecisionNs: 1000, xattrs: false };
const LEVELS = [0, 1, 2] as const;

/** The stream as Linux dump would write it: c_spare zero in every header (checksums fixed). */
function withoutExtension(stream: Buffer): Buffer {
  const out = Buffer.from(stream);
  for (let off = 0; off + TP_BSIZE <= out.length; off += TP_BSIZE) {
    const rec = out.subarray(off, off + TP_BSIZE);
    if (!isHeader(rec) || rec.readUInt32LE(904) !== 0x3158444e) continue;
    rec.fill(0, 904);
    rec.writeInt32LE(0, 28);
    rec.writeInt32LE((CHECKSUM - wordSum(rec)) | 0, 28);
  }
  return out;
}

function countBits(map: Buffer): number {
  let n = 0;
  for (const byte of map) for (let b = byte; b; b &= b - 1) n++;
  return n;
}

describe("dump incremental chain, engine in memory", () => {
  let spec: ChainSpec;
  const runs: BackupRun[] = [];
  const tokens: BackupRun[] = [];
  const timing: string[] = [];
  const steps: ChainStep[] = [];
  beforeAll(async () => {
    spec = await makeChainTree(path.join(W, "src"));
    for (const level of LEVELS) {
      // The comparison is inclusive at the clock's tick: keep changes out of the backup's tick.
      await sleep(30);
      if (level > 0) steps[level] = applyChainStep(spec, level as 1 | 2);
      snapshotTree(spec.root, path.join(W, `at${level}`));
      // Token mode first (it leaves dumpdates alone), then LEVEL=N, of the same tree.
      tokens.push(await backup(spec.root, path.join(W, "state"), { env: { BASE_DATE: level === 0 ? "0" : tokens[level - 1]!.dumpDate } }));
      const t0 = Date.now();
      runs.push(await backup(spec.root, path.join(W, "state"), { level }));
      timing.push(`level ${level}: ${runs[level]!.stream.length} bytes in ${Date.now() - t0} ms`);
      fs.writeFileSync(path.join(W, `l${level}.dump`), runs[level]!.stream);
    }
    console.log(`dump engine in memory (Node):\n  ${timing.join("\n  ")}`);
  });
  afterAll(() => fs.rmSync(W, { recursive: true, force: true }));

  it("every level passes dumpinspect --strict; c_ddate is the base's c_date", async () => {
    for (const level of LEVELS) {
      const r = await run("python3", [DUMPINSPECT, "--strict", "--quiet", path.join(W, `l${level}.dump`)]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
    const tapes = runs.map((r) => parse(r.stream).tape);
    expect(tapes.map((t) => t.level)).toEqual([0, 1, 2]);
    expect(tapes[0].ddate).toBe(0);
    expect(tapes[1].ddate).toBe(tapes[0].date);
    expect(tapes[2].ddate).toBe(tapes[1].date);
  });

  it("an incremental holds the directories and exactly the files changed or moved since its base", () => {
    for (const level of [1, 2] as const) {
      const p = parse(runs[level]!.stream);
      const held = new Set<string>();
      for (const [ino, type] of p.types) if (type !== "directory") for (const name of p.index.paths(ino)) held.add(nameKey(name));
      expect([...held].sort()).toEqual(steps[level]!.mustHold.map(nameKey).sort());
      // Every directory is on the tape; CLRI has every inode in use, BITS only what is here.
      const dirsNow = listTree(path.join(W, `at${level}`)).filter((o) => o.st.isDirectory()).length;
      expect([...p.types.values()].filter((t) => t === "directory").length).toBe(dirsNow);
      const inUse = new Set(listTree(path.join(W, `at${level}`)).map((o) => `${o.st.ino}`)).size;
      expect(countBits(p.maps.clri!)).toBe(inUse);
      expect(countBits(p.maps.bits!)).toBe(p.types.size);
    }
    expect(runs[2]!.stream.length).toBeLessThan(runs[0]!.stream.length / 10);
  });

  it("token mode (BASE_DATE = the previous DUMP_DATE, no dumpdates): the same images", () => {
    for (const level of LEVELS) {
      const t = parse(tokens[level]!.stream);
      const l = parse(runs[level]!.stream);
      expect(t.tape.level).toBe(level);
      expect(t.tape.ddate).toBe(level === 0 ? 0 : parse(tokens[level - 1]!.stream).tape.date);
      // The same inodes under the same numbers, the same bytes but for the dates.
      expect([...t.offsets]).toEqual([...l.offsets]);
      expect(tokens[level]!.stream.length).toBe(runs[level]!.stream.length);
    }
  });

  it("path-style history (HIST=f) of an incremental names only what it holds: here, with nothing changed, the directories", async () => {
    await sleep(30);
    const r = await backup(spec.root, path.join(W, "state"), { level: 3, style: "file" });
    const files = historyOf(r.posts).files.map((f) => f.names[0].unix_name.toString("latin1"));
    const dirs = listTree(spec.root).filter((o) => o.st.isDirectory()).map((o) => (o.rel.equals(Buffer.from(".")) ? "/" : "/" + nameKey(o.rel)));
    expect(files.sort()).toEqual(dirs.sort());
  });

  it("recovered level by level into one destination by our engine: the tree at each level", async () => {
    const dest = path.join(W, "ours");
    for (const level of LEVELS) {
      const r = await recover(runs[level]!.stream, [target("", dest)]);
      expect(r.result.complete).toBe(true);
      expect(await compareTrees(path.join(W, `at${level}`), dest, CMP), `level ${level}`).toEqual([]);
    }
  });

  it("an incremental without our header extension (a moved directory may lack its files): nothing deleted, and said so", async () => {
    const dest = path.join(W, "foreign");
    await recover(runs[0]!.stream, [target("", dest)]);
    const r = await recover(withoutExtension(runs[1]!.stream), [target("", dest)]);
    expect(r.result.complete).toBe(true);
    expect(r.warnings).toContain("an incremental dump not written by ndmpd: deletions and renames since its base are not applied (Linux restore -r applies them)");
    // What level 1 deleted or moved away is still there; what it changed or added is in.
    for (const gone of steps[1]!.removed) expect(fs.existsSync(Buffer.concat([Buffer.from(dest + "/"), gone])), nameKey(gone)).toBe(true);
    expect(fs.readFileSync(path.join(dest, "edit/e1"), "utf8")).toBe("ORIGINAL content one\n");
  });

  describe.runIf(havePeers("restore"))("Linux restore -r", () => {
    it("restored level by level: the tree at each level", async () => {
      const dest = path.join(W, "rr");
      fs.mkdirSync(dest);
      for (const level of LEVELS) {
        const r = await run("restore", ["-r", "-f", path.join(W, `l${level}.dump`)], { cwd: dest });
        expect(r.code, r.stdout + r.stderr).toBe(0);
        const diffs = await compareTrees(path.join(W, `at${level}`), dest, { ...CMP, ignore: (rel) => rel.equals(Buffer.from("restoresymtable")) });
        // What restore cannot do (255-byte names, times before 1970), and nothing else.
        const { rest, truncated } = withoutRestoreLimits(diffs);
        expect(rest, `level ${level}: ${r.stderr}`).toEqual([]);
        expect(truncated.length).toBe(level === 0 ? 1 : 2);
        for (const [full, shown] of truncated) {
          expect(fs.readFileSync(Buffer.concat([Buffer.from(`${W}/at${level}/`), full])).equals(fs.readFileSync(Buffer.concat([Buffer.from(dest + "/"), shown])))).toBe(true);
        }
      }
    });
  });
});
