/** Runs the catalog scenario under Bun (bun:sqlite); compiled by catalog.test.ts. Prints JSON. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openCatalog } from "../../../src/catalog/catalog.ts";
import { scenario } from "./scenario.ts";

const dir = mkdtempSync(join(tmpdir(), "ndmpd-catalog-probe-"));
try {
  const seen = await scenario(() => openCatalog(dir));
  // The durability the catalog documents: WAL, synchronous=NORMAL (1) between backups, also
  // after a backup's own commit (which runs FULL).
  const c = await openCatalog(dir);
  const db = (c as any).db;
  const sync = () => (db.prepare("PRAGMA synchronous").get() as { synchronous: number }).synchronous;
  const durability = { journal: (db.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode, opened: sync(), afterJob: -1 };
  c.upsertMedia({ mediaId: "m-d", drive: "vt0", barcode: "", created: "2026-01-01" });
  c.addJob({ ...c.jobs("m-1")[0]!, mediaId: "m-d" }, []);
  durability.afterJob = sync();
  c.close();
  process.stdout.write(JSON.stringify({ ...seen, durability }) + "\n");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
