/**
 * A short soak in CI (test/helpers/soak.ts): 8 sessions backing up and recovering at once for
 * 30 s against the compiled binary. Every job completes and restores every file; descriptors
 * come back to the warm baseline and RSS stays bounded. `npm run soak` runs it for longer and
 * prints the figures (throughput per worker, fairness, RSS, fds).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { havePeers } from "../helpers/peers.ts";
import { startServer } from "../helpers/server.ts";
import { soak } from "../helpers/soak.ts";

const ready = havePeers("binary");

describe.runIf(ready)("soak", () => {
  it("8 concurrent backups and recoveries for 30 s: all complete, descriptors flat, RSS bounded", async () => {
    const work = mkdtempSync(join(tmpdir(), "ndmpd-soak-"));
    const srv = await startServer();
    try {
      const r = await soak(srv, work, { workers: 8, seconds: Number(process.env.SOAK_SECONDS ?? 30), files: 40, mib: 8 });
      console.log(`soak: ${JSON.stringify(r)}`);
      expect(r.failures).toEqual([]);
      expect(r.jobs).toBeGreaterThanOrEqual(16);
      expect(r.fds[1]).toBeLessThanOrEqual(r.fds[0] + 2);
      expect(r.rssKiB[1] - r.rssKiB[0], `RSS ${r.rssKiB.join(" -> ")} KiB`).toBeLessThan(256 * 1024);
      expect(r.rates.every((x) => x > 0)).toBe(true); // every worker got through jobs
    } finally {
      expect(await srv.stop()).toBe(0);
      rmSync(work, { recursive: true, force: true });
    }
  }, 600_000);
});
