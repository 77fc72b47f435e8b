/**
 * The dump recovery engine on streams from our backup engine: whole trees, selections
 * (found / not found per target, hard links inside and across a selection), file history
 * without extraction, and damaged streams; direct access over a StreamSource fed by a fake mover.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDumpRecover } from "../../../src/engine/dump-recover.ts";
import { RecoverFailed } from "../../../src/engine/recover.ts";
import { reportBack, targetsOf, type TargetSpec } from "../../helpers/targets.ts";
import { StreamSource } from "../../../src/engine/stream-source.ts";
import { ALL1 } from "../../../src/protocol/codes.ts";
import { ConnectionGone } from "../../../src/transport/backpressure.ts";
import { compareTrees } from "../../helpers/tree.ts";
import { backup, historyOf, makeSmallTree, parse, recover, target } from "./dump-fixture.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-dumpr-"));
const SRC = path.join(tmp, "src");
let stream: Buffer;
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  makeSmallTree(SRC);
  stream = (await backup(SRC, path.join(tmp, "state"), { history: false })).stream;
});

describe("dump recovery engine", () => {
  it("restores the whole tree: content, holes, hard links, symlinks, modes, times to the microsecond", async () => {
    const out = path.join(tmp, "all");
    for (const chunk of [1000, 64 * 1024]) {
      fs.rmSync(out, { recursive: true, force: true });
      const t = target("", out);
      const r = await recover(stream, [t], { chunk });
      expect(r.warnings).toEqual([]);
      expect(r.result.complete).toBe(true);
      expect(t.found).toBe(true);
      expect(t.error).toBeUndefined();
      expect(await compareTrees(SRC, out, { timePrecisionNs: 1000, xattrs: false })).toEqual([]);
    }
    // The 5 MiB file with 4 bytes at its end is sparse again.
    expect(fs.statSync(path.join(out, "sparse")).blocks * 512).toBeLessThan(64 * 1024);
  });

  it("restores selected paths elsewhere: a file, a directory; reports a missing one; links within a target", async () => {
    const out = path.join(tmp, "sel");
    const file = target("sub/deeper/c.txt", path.join(out, "c-renamed.txt"));
    const dir = target("sub", path.join(out, "subdir"));
    const missing = target("no/such", path.join(out, "nothing"));
    const r = await recover(stream, [file, dir, missing]);
    expect([file.found, dir.found, missing.found]).toEqual([true, true, false]);
    expect(file.error ?? dir.error).toBeUndefined();
    expect(fs.readFileSync(path.join(out, "c-renamed.txt"), "utf8")).toBe("deep\n");
    expect(fs.readdirSync(path.join(out, "subdir")).sort()).toEqual(["a-link", "b.bin", "deeper"]);
    expect(fs.readdirSync(out).sort()).toEqual(["c-renamed.txt", "subdir"]);
    // sub/a-link's partner a.txt is outside the selection: the content comes with the name.
    expect(fs.readFileSync(path.join(out, "subdir/a-link"), "utf8")).toBe("alpha\n");
    expect(r.warnings).toEqual([]);

    // Both names in one destination: one inode, two links.
    const both = path.join(tmp, "both");
    await recover(stream, [target("", both)]);
    const a = fs.statSync(path.join(both, "a.txt"));
    expect(fs.statSync(path.join(both, "sub/a-link")).ino).toBe(a.ino);
    expect(a.nlink).toBe(2);
  });

  it("without extraction posts dir/node history: names first, fh_info = the inode offsets", async () => {
    const r = await recover(stream, [], { extract: false });
    const h = historyOf(r.posts);
    const p = parse(stream);
    expect(h.order.indexOf("node")).toBeGreaterThan(h.order.lastIndexOf("dir"));
    expect(h.dirs[0]).toMatchObject({ node: 2n, parent: 2n });
    expect(h.dirs[0].names[0].unix_name.toString()).toBe(".");
    expect(h.nodes.length).toBe(p.offsets.size);
    for (const n of h.nodes) expect(n.fh_info).toBe(BigInt(p.offsets.get(Number(n.node))!));
    expect(fs.existsSync(path.join(tmp, "nothing-written"))).toBe(false);
  });

  it("a cut stream is a data connection failure; a damaged one fails the recovery", async () => {
    const out = path.join(tmp, "cut");
    await expect(recover(stream.subarray(0, stream.length - 40 * 1024 - 100), [target("", out)])).rejects.toBeInstanceOf(ConnectionGone);
    // Cut exactly before TS_END: every record whole, but no end.
    const p = parse(stream);
    const last = Math.max(...p.offsets.values());
    await expect(recover(stream.subarray(0, last), [target("", path.join(tmp, "cut2"))])).rejects.toThrow(/closed after \d+ bytes, before the end of the dump/);
    const bad = Buffer.from(stream);
    const firstDir = Math.min(...p.offsets.values());
    bad[firstDir + 8] ^= 0xff;
    await expect(recover(bad, [target("", path.join(tmp, "bad"))])).rejects.toBeInstanceOf(RecoverFailed);
  });
});

/** A fake mover: serves each read request from `stream` onto a connection, as over a socket. */
function fakeMover(stream: Buffer, R: number) {
  const conn = new PassThrough();
  const asked: Array<[number, number]> = [];
  const source = new StreamSource(
    conn,
    (off, len) => {
      const o = Number(off);
      const end = len === ALL1 ? stream.length : Math.min(stream.length, o + Number(len));
      asked.push([o, end - o]);
      for (let p = o; p < end; p += 3000) conn.write(stream.subarray(p, Math.min(end, p + 3000)));
      if (end === stream.length) conn.end();
    },
    R,
  );
  return { source, asked, conn };
}

async function darRecover(stream: Buffer, targets: TargetSpec[], R = 10240) {
  const { source, asked } = fakeMover(stream, R);
  const warnings: string[] = [];
  const ts = targetsOf(targets);
  const result = await runDumpRecover({
    input: new PassThrough(),
    source,
    targets: ts,
    recursive: true,
    extract: true,
    signal: new AbortController().signal,
    warn: (m) => warnings.push(m),
  });
  reportBack(ts, targets);
  return { result, asked, warnings, received: source.received };
}

describe("dump recovery engine, direct access", () => {
  const R = 10240;
  /** A target as ndmjob sends it from the index: fh_info = its TS_INODE offset, node = its inode. */
  const dar = (rel: string, dest: string, withOffset = true): TargetSpec => {
    const p = parse(stream);
    const ino = p.inoOf.get(rel)!;
    return { ...target(rel, dest), node: BigInt(ino), fhInfo: withOffset ? BigInt(p.offsets.get(ino)!) : ALL1 };
  };
  /** Stream bytes from each inode's TS_INODE to the next inode's (or to TS_END). */
  const span = (rel: string): number => {
    const p = parse(stream);
    const offs = [...p.offsets.values()].sort((a, b) => a - b);
    const off = p.offsets.get(p.inoOf.get(rel)!)!;
    const next = offs[offs.indexOf(off) + 1] ?? stream.length;
    return next - off;
  };

  it("jumps to each file's inode and reads only its records; checks the inode number", async () => {
    const out = path.join(tmp, "dar-files");
    const picks = ["sub/b.bin", "sub/deeper/c.txt", "sym", "a.txt"];
    const targets = picks.map((p) => dar(p, path.join(out, p.replaceAll("/", "_"))));
    const r = await darRecover(stream, targets, R);
    expect(r.warnings).toEqual([]);
    for (const t of targets) expect([t.original.toString(), t.found, t.error]).toEqual([t.original.toString(), true, undefined]);
    expect(fs.readFileSync(path.join(out, "sub_b.bin")).equals(fs.readFileSync(path.join(SRC, "sub/b.bin")))).toBe(true);
    expect(fs.readFileSync(path.join(out, "sub_deeper_c.txt"), "utf8")).toBe("deep\n");
    expect(fs.readlinkSync(path.join(out, "sym"))).toBe("a.txt");
    expect(fs.statSync(path.join(out, "a.txt")).mtimeMs).toBe(fs.statSync(path.join(SRC, "a.txt")).mtimeMs);
    // Nothing but the targets' records (and record alignment): never the whole stream.
    const bound = picks.reduce((s, p) => s + span(p) + 2 * R, 0);
    expect(r.received).toBeLessThanOrEqual(bound);
    expect(r.received).toBeLessThan(stream.length - span("big.bin"));
    for (let i = 1; i < r.asked.length; i++) expect(r.asked[i]![0]).toBeGreaterThanOrEqual(r.asked[i - 1]![0] + r.asked[i - 1]![1]);

    // The wrong inode at an offset is reported, not restored.
    const wrong = dar("sub/deeper/c.txt", path.join(tmp, "dar-wrong"));
    wrong.node = BigInt(parse(stream).inoOf.get("a.txt")!);
    const w = await darRecover(stream, [wrong], R);
    expect(wrong.error).toMatch(/the backup holds inode \d+ at offset \d+, not inode \d+/);
    expect(wrong.found).toBe(false);
    expect(fs.existsSync(path.join(tmp, "dar-wrong"))).toBe(false);
    expect(w.received).toBeLessThanOrEqual(2 * R);
  });

  it("a directory, and a file without an offset: a scan from the start that stops past their inodes", async () => {
    const out = path.join(tmp, "dar-dir");
    const dir = dar("sub", path.join(out, "subdir"));
    const noOffset = dar("sub/deeper/c.txt", path.join(out, "c.txt"), false);
    const r = await darRecover(stream, [dir, noOffset], R);
    expect(r.warnings).toEqual([]);
    expect([dir.found, dir.error, noOffset.found, noOffset.error]).toEqual([true, undefined, true, undefined]);
    expect(fs.readdirSync(path.join(out, "subdir")).sort()).toEqual(["a-link", "b.bin", "deeper"]);
    expect(fs.readFileSync(path.join(out, "subdir/b.bin")).equals(fs.readFileSync(path.join(SRC, "sub/b.bin")))).toBe(true);
    // c.txt goes where its own (more specific) target says, as in a sequential recovery.
    expect(fs.readdirSync(path.join(out, "subdir/deeper"))).toEqual([]);
    expect(fs.readFileSync(path.join(out, "c.txt"), "utf8")).toBe("deep\n");

    // The directory alone (with its offset): read from its TS_INODE on, not from 0.
    const alone = path.join(tmp, "dar-dir-alone");
    const d2 = dar("sub", path.join(alone, "sub"));
    const r2 = await darRecover(stream, [d2], 1024); // 1 KiB records: the first read is its own
    expect(r2.warnings).toEqual([]);
    expect([d2.found, d2.error]).toEqual([true, undefined]);
    expect(await compareTrees(path.join(SRC, "sub"), path.join(alone, "sub"), { timePrecisionNs: 1000, xattrs: false })).toEqual([]);
    expect(r2.asked[0]![0]).toBe(Number(d2.fhInfo));
  });

  it("a scan steps over a big file nobody asked for by its headers, without reading its data", async () => {
    const src = path.join(tmp, "skip-src");
    fs.mkdirSync(path.join(src, "z"), { recursive: true });
    const big = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
    fs.writeFileSync(path.join(src, "a-big"), big); // walked (and numbered) before z/
    fs.writeFileSync(path.join(src, "z/small.txt"), "small\n");
    const s2 = (await backup(src, path.join(tmp, "skip-state"), { history: false })).stream;
    const p = parse(s2);
    expect(p.inoOf.get("a-big")!).toBeLessThan(p.inoOf.get("z/small.txt")!);
    const out = path.join(tmp, "skip-out");
    const t = target("z/small.txt", path.join(out, "small.txt")); // no offset: a scan from 0
    const r = await darRecover(s2, [t], R);
    expect(r.warnings).toEqual([]);
    expect([t.found, t.error]).toEqual([true, undefined]);
    expect(fs.readFileSync(path.join(out, "small.txt"), "utf8")).toBe("small\n");
    // The scan's first 1 MiB piece, then one record per further header of a-big (3 MiB = 6
    // headers), not the rest of its 3 MiB.
    expect(r.received).toBeLessThanOrEqual(1024 * 1024 + 6 * R);
    // And the big file itself, jumped to, comes whole across its TS_ADDR headers.
    const whole = { ...target("a-big", path.join(out, "a-big")), node: BigInt(p.inoOf.get("a-big")!), fhInfo: BigInt(p.offsets.get(p.inoOf.get("a-big")!)!) };
    const r2 = await darRecover(s2, [whole], R);
    expect(r2.warnings).toEqual([]);
    expect(fs.readFileSync(path.join(out, "a-big")).equals(big)).toBe(true);
    expect(r2.received).toBeLessThanOrEqual(big.length + 8 * 1024 + 2 * R);
  });
});
