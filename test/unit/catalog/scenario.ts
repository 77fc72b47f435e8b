/**
 * One sequence of catalog operations and what it observed, run on every backend: under Node by
 * vitest (JSON lines; node:sqlite where Node has it) and under Bun by probe.ts (bun:sqlite).
 */
import type { Catalog, FileRow, NewJob } from "../../../src/catalog/catalog.ts";

const file = (path: Buffer | string, fhInfo: number | null, extra: Partial<FileRow> = {}): FileRow => ({
  path: typeof path === "string" ? Buffer.from(path) : path,
  node: 7,
  fhInfo,
  ftype: 4,
  mode: 0o644,
  uid: 70000,
  gid: 0,
  size: 5,
  mtime: 1_700_000_000,
  ...extra,
});

const job = (seq: number, label: string): NewJob => ({
  mediaId: "m-1",
  seq,
  labelFile: 2 * (seq - 1),
  imageFile: 2 * (seq - 1) + 1,
  label,
  date: "2026-01-02T03:04:05.000Z",
  format: "tar",
  host: "h",
  root: "/srv",
  level: 0,
  recordSize: 262144,
  env: [["FILESYSTEM", "/srv"], ["EXCLUDE", "*.o"], ["EXCLUDE", "*.tmp"]],
  bytes: 123456,
  entries: 3,
});

/** Runs the scenario on a fresh catalog; `reopen` gives the same store opened anew. */
export async function scenario(open: () => Promise<Catalog>): Promise<Record<string, unknown>> {
  const seen: Record<string, unknown> = {};
  let c = await open();
  c.upsertMedia({ mediaId: "m-1", drive: "vt0", barcode: "S1", created: "2026-01-01" });
  c.upsertMedia({ mediaId: "m-1", drive: "vt1", barcode: "S1", created: "2027-01-01" }); // keeps created
  const nonUtf8 = Buffer.from([0x2f, 0xff, 0xfe, 0x80]);
  const j1 = c.addJob(job(1, "one"), [file("/", 0, { ftype: 0 }), file("/a.txt", 1536), file(nonUtf8, null, { size: 2 ** 40 })]);
  c.addJob(job(2, "two"), [file("/b", 512)]);
  c.addJob(job(3, "three"), []);
  // Rewriting backup 2 replaces it (and its files).
  const j2 = c.addJob(job(2, "two-again"), [file("/c", 1024)]);
  c.close();

  c = await open();
  seen.media = c.media("m-1");
  seen.jobs = c.jobs("m-1").map((j) => [j.seq, j.label, j.env]);
  seen.job1 = { ...c.job("m-1", 1), jobId: undefined };
  seen.files1 = c.files(j1).map((f) => [f.path.toString("hex"), f.fhInfo, f.size]);
  seen.lookup = c.lookup(j1, Buffer.from("/a.txt"))?.fhInfo;
  seen.lookupNonUtf8 = c.lookup(j1, nonUtf8)?.size;
  seen.lookupMissing = c.lookup(j1, Buffer.from("/nope")) ?? null;
  seen.files2 = c.files(j2).map((f) => f.path.toString());
  c.dropJobsFrom("m-1", 2);
  seen.afterDrop = c.jobs("m-1").map((j) => j.seq);
  seen.otherMedia = c.jobs("m-2");
  c.close();
  c = await open();
  seen.afterReopen = c.jobs("m-1").map((j) => j.seq);
  seen.backend = c.backend;
  c.close();
  return seen;
}

export const EXPECTED = {
  media: { mediaId: "m-1", drive: "vt1", barcode: "S1", created: "2026-01-01" },
  jobs: [
    [1, "one", [["FILESYSTEM", "/srv"], ["EXCLUDE", "*.o"], ["EXCLUDE", "*.tmp"]]],
    [2, "two-again", [["FILESYSTEM", "/srv"], ["EXCLUDE", "*.o"], ["EXCLUDE", "*.tmp"]]],
    [3, "three", [["FILESYSTEM", "/srv"], ["EXCLUDE", "*.o"], ["EXCLUDE", "*.tmp"]]],
  ],
  job1: { ...job(1, "one"), jobId: undefined },
  files1: [
    ["2f", 0, 5],
    ["2f612e747874", 1536, 5],
    ["2ffffe80", null, 2 ** 40],
  ],
  lookup: 1536,
  lookupNonUtf8: 2 ** 40,
  lookupMissing: null,
  files2: ["/c"],
  afterDrop: [1],
  otherMedia: [],
  afterReopen: [1],
};
