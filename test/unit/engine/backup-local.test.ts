/**
 * A tar backup through the LOCAL pipe reuses the scan's read-ahead frames once the mover asked
 * past them (onReaderDone): the stream must still hold every byte of every file. Under bun,
 * where the scan has its workers and frames (backup-local-probe.ts).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const bun = path.resolve(here, "../../../node_modules/.bin/bun");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-backup-local-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

it("3,000 small files through a LOCAL pipe and a reader that waits on every record: every byte in the stream", () => {
  let seed = 1;
  for (let d = 0; d < 20; d++) {
    fs.mkdirSync(path.join(tmp, `d${d}`));
    for (let f = 0; f < 150; f++) {
      const data = Buffer.alloc(f % 7 ? 4096 : 300);
      for (let i = 0; i < data.length; i++) data[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
      fs.writeFileSync(path.join(tmp, `d${d}`, `f${f}`), data);
    }
  }
  const r = spawnSync(bun, [path.join(here, "backup-local-probe.ts"), tmp], { encoding: "utf8", timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  expect(out).toEqual({ entries: 3021, files: 3000, withData: 3000, mismatches: [] });
});
