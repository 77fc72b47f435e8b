/**
 * The chain helper itself: each step changes exactly the objects it says it changed (by their
 * mtime or ctime, the rule an incremental follows), and compareTrees sees every change kind,
 * so a chain test built on them can fail.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { applyChainStep, compareTrees, listTree, makeChainTree, nameKey, show, snapshotTree, type ChainSpec } from "../helpers/chain.ts";

const W = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-chain-"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Non-directories whose mtime or ctime is at or after `sinceNs`. */
function changedSince(root: string, sinceNs: bigint): Set<string> {
  const out = new Set<string>();
  for (const o of listTree(root)) {
    if (o.st.isDirectory()) continue;
    if (o.st.mtimeNs >= sinceNs || o.st.ctimeNs >= sinceNs) out.add(nameKey(o.rel));
  }
  return out;
}

describe("chain helper", () => {
  let spec: ChainSpec;
  afterAll(() => fs.rmSync(W, { recursive: true, force: true }));

  it("builds the tree with its 255-byte, non-UTF-8 and pre-1970 names", async () => {
    spec = await makeChainTree(path.join(W, "src"));
    const names = listTree(spec.root).map((o) => nameKey(o.rel));
    expect(names).toContain(nameKey(spec.paths.longName));
    expect(spec.paths.longName.length - "long/".length).toBe(255);
    expect(names).toContain(nameKey(spec.paths.nonUtf8));
    expect(fs.lstatSync(Buffer.concat([Buffer.from(spec.root + "/"), spec.paths.preEpoch]), { bigint: true }).mtimeNs).toBe(-123456789987654321n);
    snapshotTree(spec.root, path.join(W, "l0"));
    expect(await compareTrees(path.join(W, "l0"), spec.root)).toEqual([]);
  });

  for (const step of [1, 2] as const) {
    it(`step ${step}: changes exactly what it reports, and compareTrees sees every kind`, async () => {
      // Filesystem timestamps come from a coarse clock: let it pass the start before changing.
      await sleep(30);
      const since = BigInt(Date.now() - 5) * 1000000n;
      await sleep(30);
      const before = listTree(spec.root).map((o) => nameKey(o.rel));
      const r = applyChainStep(spec, step);
      const after = new Set(listTree(spec.root).map((o) => nameKey(o.rel)));
      expect([...changedSince(spec.root, since)].sort()).toEqual(r.changed.map(nameKey).sort());
      for (const g of r.removed) {
        expect(before, show(g)).toContain(nameKey(g));
        expect(after.has(nameKey(g)), show(g)).toBe(false);
      }
      const prev = path.join(W, `l${step - 1}`);
      const diffs = (await compareTrees(prev, spec.root)).join("\n");
      // compareTrees(before, after): new names are "only in" after, removed ones "missing from" it.
      const expected = step === 1
        ? [/^new1\/sub\/f: only in/m, /^edit\/e1: content differs/m, /^del\/t1\/sub\/y: missing/m, /^del\/f1: missing/m,
           /^ren\/r1: missing/m, /^ren\/r1.renamed: only in/m, /^moved\/d1\/sub\/b: only in/m, /^ren\/d1\/sub\/b: missing/m,
           /^mode\/m1: mode 644 != 600/m, /^mode\/dir: mode 755 != 700/m, /^type\/f2d: type file != directory/m,
           /^type\/d2f: type directory != file/m, /^sym\/s1: only in/m, /^trunc\/t1: size 65536 != 1000/m,
           /^hard\/old: hard-link group \[hard\/old\] != \[hard\/link1, hard\/old\]/m, /^long\/\\xe9M{254}: only in/m,
           /^names\/\\xff\\xfe-base: missing/m, /^names\/\\xff-renamed\\x80: only in/m, /^times\/pre1970-new: only in/m]
        : [/^new2\/deep\/er\/f: only in/m, /^edit\/e2: content differs/m, /^del\/t2\/sub\/y: missing/m, /^ren\/d2\/a: missing/m,
           /^ren\/d2.renamed\/sub\/b: only in/m, /^new2\/d1\/sub\/b: only in/m, /^moved\/d1: missing/m, /^mode\/m2: mode 644 != 640/m,
           /^type\/f2d: type directory != file/m, /^type\/d2f: type file != directory/m, /^sym\/s0: symlink target/m,
           /^sym\/s2: only in/m, /^trunc\/t2: size 10240 != 0/m, /^keep\/link2: only in/m, /^long\/L{255}: content differs/m,
           /^times\/pre1970: content differs/m, /^names\/\\xe9t\\xe9-new1: missing/m];
      if (spec.has.xattrs) expected.push(step === 1 ? /^xattr\/x1: xattrs/m : /^xattr\/x2: xattrs/m);
      if (spec.has.owners && step === 1) expected.push(/^owner\/o1: owner 0:0 != 70000:70001/m);
      for (const re of expected) expect(diffs).toMatch(re);
      snapshotTree(spec.root, path.join(W, `l${step}`));
      expect(await compareTrees(path.join(W, `l${step}`), spec.root)).toEqual([]);
    });
  }
});
