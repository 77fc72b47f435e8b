/**
 * The fuzz target (test/fuzz/run.ts) for a bounded time against the compiled binary, in a network
 * namespace of its own: 0 crashes, 0 hangs (liveness probes), 0 descriptor or memory growth.
 * `npm run fuzz` runs the same for ten minutes; a finding lands in test/fuzz/findings/.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BINARY, havePeers, ROOT } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";

const ready = havePeers("binary", "bun", "unshare");
const BUN = `${ROOT}node_modules/.bin/bun`;

describe.runIf(ready)("fuzz target", () => {
  const findings = mkdtempSync(join(tmpdir(), "ndmpd-fuzz-findings-"));
  afterAll(() => rmSync(findings, { recursive: true, force: true }));

  it("20 s of structure-aware input from every schema: no crash, no hang, no leak", async () => {
    const cmd = `ip link set lo up && exec '${BUN}' test/fuzz/run.ts --binary '${BINARY}' --seconds 20 --findings '${findings}'`;
    const r = await run("unshare", ["-n", "sh", "-c", cmd], { timeoutMs: 120_000, cwd: ROOT });
    const summary = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}");
    console.log(`fuzz: ${summary.cases} cases, ${summary.records} records, seed ${summary.seed}, fds ${summary.fds}, RSS ${summary.rssKiB} KiB`);
    expect(summary.findings, r.stderr).toEqual([]);
    expect({ crashes: summary.crashes, hangs: summary.hangs, leaks: summary.leaks, code: r.code }).toEqual({ crashes: 0, hangs: 0, leaks: 0, code: 0 });
    expect(summary.cases).toBeGreaterThan(50);
  }, 150_000);
});
