/** Runs the catalog scenario under Bun (bun:sqlite); compiled by catalog.test.ts. Prints JSON. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openCatalog } from "../../../src/catalog/catalog.ts";
import { scenario } from "./scenario.ts";

const dir = mkdtempSync(join(tmpdir(), "ndmpd-catalog-probe-"));
try {
  const seen = await scenario(() => openCatalog(dir));
  process.stdout.write(JSON.stringify(seen) + "\n");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
