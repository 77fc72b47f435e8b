/**
 * A dump incremental chain (levels 0, 1, 2 of the chain helper's tree) made by the dump engine
 * in memory, checked by dumpinspect --strict and replayed by Linux `restore -r`, level by level:
 * after each level the restore equals the tree as it was at that level.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyChainStep, compareTrees, makeChainTree, snapshotTree, type ChainSpec } from "../../helpers/chain.ts";
import { DUMPINSPECT } from "../../helpers/dumpinspect.ts";
import { run } from "../../helpers/run.ts";
import { backup, type BackupRun } from "./dump-fixture.ts";

const W = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-dchain-"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const US = { timePrecisionNs: 1000 };

describe("dump chain", () => {
  let spec: ChainSpec;
  const runs: BackupRun[] = [];
  beforeAll(async () => {
    spec = await makeChainTree(path.join(W, "src"));
    for (const level of [0, 1, 2]) {
      if (level > 0) {
        await sleep(20);
        applyChainStep(spec, level as 1 | 2);
      }
      snapshotTree(spec.root, path.join(W, `at${level}`));
      const r = await backup(spec.root, path.join(W, "state"), { level });
      runs.push(r);
      fs.writeFileSync(path.join(W, `l${level}.dump`), r.stream);
      await sleep(20);
    }
  });
  afterAll(() => fs.rmSync(W, { recursive: true, force: true }));

  it("every level passes dumpinspect --strict", async () => {
    for (const level of [0, 1, 2]) {
      const r = await run("python3", [DUMPINSPECT, "--strict", "--quiet", path.join(W, `l${level}.dump`)]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
  });

  it("restore -r level by level equals the tree at each level", async () => {
    const dest = path.join(W, "rr");
    fs.mkdirSync(dest);
    for (const level of [0, 1, 2]) {
      const r = await run("restore", ["-r", "-f", path.join(W, `l${level}.dump`)], { cwd: dest });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const diffs = await compareTrees(path.join(W, `at${level}`), dest, { ...US, ignore: (rel) => rel.equals(Buffer.from("restoresymtable")) });
      console.log(level, diffs.filter((d) => !/xattr/.test(d)), r.stdout.slice(-3000), r.stderr.slice(-3000));
    }
  });
});
