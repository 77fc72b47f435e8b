/**
 * The catalog's record of a backup that spans cartridges (spans): the parts in order, found from
 * the job and from each continuation cartridge; gone with the job; kept by a compaction. The SQL
 * backend is exercised by the CLI's span test against the compiled binary (bun:sqlite).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { JsonlCatalog, openCatalog, type NewJob, type SpanPart } from "../../../src/catalog/catalog.ts";

const dir = mkdtempSync(join(tmpdir(), "ndmpd-catalog-span-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const job = (mediaId: string, seq: number): NewJob => ({
  mediaId,
  seq,
  labelFile: 2 * (seq - 1),
  imageFile: 2 * (seq - 1) + 1,
  label: "big",
  date: "2026-01-02T03:04:05.000Z",
  format: "tar",
  host: "h",
  root: "/srv",
  level: 0,
  recordSize: 65536,
  env: [],
  bytes: 9_000_000,
  entries: 1,
});

const parts: SpanPart[] = [
  { part: 1, mediaId: "m-1", seq: 1, barcode: "NDMP001L8", slot: 1, start: 0, bytes: 3_932_160 },
  { part: 2, mediaId: "m-2", seq: 2, barcode: "NDMP002L8", slot: 2, start: 3_932_160, bytes: 3_932_160 },
  { part: 3, mediaId: "m-3", seq: 1, barcode: "NDMP003L8", slot: 3, start: 7_864_320, bytes: 1_135_680 },
];

describe("catalog spans (JSON-lines backend)", () => {
  it("records the parts in order, finds them from each cartridge, drops them with the job, survives a compaction", async () => {
    let c = await openCatalog(dir, { backend: "jsonl" });
    const one = c.addJob(job("m-1", 1), []);
    const other = c.addJob(job("m-1", 2), []);
    c.addSpan(one, [...parts].reverse());
    expect(c.span(other)).toEqual([]);
    c.close();

    const j = new JsonlCatalog(join(dir, "catalog.jsonl"));
    expect(j.span(one)).toEqual(parts);
    expect(j.spansOn("m-2")).toEqual([{ jobId: one, part: parts[1] }]);
    expect(j.spansOn("m-1")).toEqual([]); // part 1 is the job itself
    j.compact();
    c = await openCatalog(dir, { backend: "jsonl" });
    expect(c.span(one)).toEqual(parts);
    // Rewriting the cartridge from backup 1 on forgets the backup and its span.
    c.dropJobsFrom("m-1", 1);
    expect(c.span(one)).toEqual([]);
    expect(c.spansOn("m-3")).toEqual([]);
    c.close();
  });
});
