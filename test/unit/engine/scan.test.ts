import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scan, type ScanItem, type ScanOptions } from "../../../src/engine/scan.ts";
import { makeEdgeTree, show, type TreeSpec } from "../../helpers/tree.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const bun = path.join(repo, "node_modules/.bin/bun");

let tmp: string;
let spec: TreeSpec;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-scan-"));
  spec = await makeEdgeTree(path.join(tmp, "tree"));
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function collect(opts: Partial<ScanOptions> & { root: Buffer }): Promise<{ items: ScanItem[]; reports: string[] }> {
  const items: ScanItem[] = [];
  const reports: string[] = [];
  for await (const item of scan({ readAhead: 256 * 1024, mode: "inline", onError: (p, e) => reports.push(`${show(p)}: ${e.message}`), ...opts })) {
    items.push(item);
  }
  return { items, reports };
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("scan in this thread (Node)", () => {
  it("gives the contents of small regular files, and none for large, sparse or other entries", async () => {
    const { items, reports } = await collect({ root: Buffer.from(spec.root) });
    expect(reports).toEqual([]);
    let small = 0;
    for (const { entry, absPath, content } of items) {
      const isSmall = entry.type === "file" && !entry.sparse && entry.size > 0 && entry.size <= 256 * 1024;
      if (!isSmall) {
        expect(content, show(entry.path)).toBeUndefined();
        continue;
      }
      small++;
      expect(Buffer.isBuffer(content), show(entry.path)).toBe(true);
      expect(sha(content as Buffer), show(entry.path)).toBe(sha(fs.readFileSync(absPath)));
    }
    expect(small).toBeGreaterThan(5);
  });

  it("applies EXCLUDE and FILES, and leaves out names dump cannot carry, saying so", async () => {
    const { items } = await collect({ root: Buffer.from(spec.root), selection: { exclude: ["deep", "*.txt"], files: [] } });
    const names = items.map((i) => show(i.entry.path));
    expect(names.some((n) => n === "deep" || n.startsWith("deep/") || n.endsWith(".txt"))).toBe(false);

    const only = await collect({ root: Buffer.from(spec.root), selection: { exclude: [], files: [spec.paths.xattrFile] } });
    expect(only.items.map((i) => show(i.entry.path))).toEqual([".", ...parents(spec.paths.xattrFile), show(spec.paths.xattrFile)]);

    // 255 bytes: Linux takes it, and so does dump (the writer carries it for our recovery).
    const dir = path.join(tmp, "names");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "n".repeat(255)), "x");
    fs.writeFileSync(path.join(dir, "n".repeat(254)), "x");
    const dump = await collect({ root: Buffer.from(dir), dumpNames: true });
    expect(dump.items.map((i) => show(i.entry.path))).toEqual([".", "n".repeat(254), "n".repeat(255)]);
    expect(dump.reports).toEqual([]);
  });
});

function parents(rel: Buffer): string[] {
  const parts = rel.toString("latin1").split("/");
  return parts.slice(1).map((_, i) => Buffer.from(parts.slice(0, i + 1).join("/"), "latin1")).map(show);
}

describe("scan in the worker pair, inside a `bun build --compile` binary", () => {
  let probe: string;
  beforeAll(async () => {
    probe = path.join(tmp, "scan-probe");
    // The worker is a second entry point, as in the server's build.
    const r = await run(bun, ["build", "--compile", path.join(here, "probe.ts"), path.join(repo, "src/engine/scan-worker.ts"), "--outfile", probe]);
    if (r.code !== 0) throw new Error(`bun build --compile failed: ${r.stderr}`);
  });

  it("yields exactly what the in-thread scan yields: entries, contents, reports, order", async () => {
    for (const exclude of ["", "sparse"]) {
      const [worker, inline] = await Promise.all([run(probe, ["scan", spec.root, "auto", exclude]), run(probe, ["scan", spec.root, "inline", exclude])]);
      expect(worker.code, worker.stderr).toBe(0);
      expect(inline.code, inline.stderr).toBe(0);
      const w = JSON.parse(worker.stdout) as { worker: boolean; entries: Array<{ path: string; content?: string }>; reports: string[] };
      const i = JSON.parse(inline.stdout) as typeof w;
      expect(w.worker).toBe(true);
      expect(i.worker).toBe(false);
      expect(w.entries.length).toBeGreaterThan(30);
      expect(w.entries).toEqual(i.entries);
      expect(w.reports).toEqual(i.reports);
      const withContent = w.entries.filter((e) => e.content !== undefined);
      expect(withContent.length).toBeGreaterThan(5);
      for (const e of withContent) {
        expect(e.content).toBe(sha(fs.readFileSync(Buffer.concat([Buffer.from(spec.root + "/"), Buffer.from(e.path, "hex")]))));
      }
    }
  });

  it("with xattrs: directories, reads only directories' extended attributes, in the workers as in this thread", async () => {
    if (!spec.has.xattrs) return;
    const env = { ...process.env, PROBE_XATTRS: "directories" };
    const [worker, inline] = await Promise.all([run(probe, ["scan", spec.root, "auto", ""], { env }), run(probe, ["scan", spec.root, "inline", ""], { env })]);
    expect(worker.code, worker.stderr).toBe(0);
    const w = JSON.parse(worker.stdout) as { worker: boolean; entries: Array<{ path: string; type: string; xattrs?: unknown[] }> };
    expect(w.worker).toBe(true);
    expect(w.entries).toEqual(JSON.parse(inline.stdout).entries);
    const withXattrs = w.entries.filter((e) => e.xattrs !== undefined);
    expect(withXattrs.map((e) => Buffer.from(e.path, "hex").toString())).toContain("xattr");
    expect(withXattrs.every((e) => e.type === "directory")).toBe(true);
  });

  it("with statFiles false, hands each directory's non-directories over from its listing alone, right after the directory: same names, types and identities; directories as before", async () => {
    const env = { ...process.env, PROBE_STAT_FILES: "n" };
    const [worker, inline] = await Promise.all([run(probe, ["scan", spec.root, "auto", ""], { env }), run(probe, ["scan", spec.root, "inline", ""], { env })]);
    expect(worker.code, worker.stderr).toBe(0);
    type E = { path: string; type: string; dev?: number; ino?: number; nlink?: number; size: number; listed?: true };
    const w = JSON.parse(worker.stdout) as { worker: boolean; entries: E[] };
    const i = JSON.parse(inline.stdout) as { entries: E[] }; // in this thread statFiles is not used
    expect(w.worker).toBe(true);
    const byPath = (xs: E[]) => [...xs].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const full = new Map(i.entries.map((e) => [e.path, e]));
    expect(byPath(w.entries).map((e) => e.path)).toEqual(byPath(i.entries).map((e) => e.path));
    // What is not listed keeps the walk's order, and every listed name comes right after its
    // directory's item (or after the names listed with it), in byte order.
    expect(w.entries.filter((e) => !e.listed).map((e) => e.path)).toEqual(i.entries.filter((e) => w.entries.find((x) => x.path === e.path)!.listed !== true).map((e) => e.path));
    const parentOf = (hexPath: string) => {
      const p = Buffer.from(hexPath, "hex");
      const slash = p.lastIndexOf(0x2f);
      return slash < 0 ? "" : p.subarray(0, slash).toString("hex");
    };
    let listed = 0;
    w.entries.forEach((e, k) => {
      const want = full.get(e.path)!;
      if (!e.listed) return expect(e).toEqual(want);
      listed++;
      const before = w.entries[k - 1]!;
      const dir = parentOf(e.path);
      if (before.listed) {
        expect(parentOf(before.path)).toBe(dir);
        expect(Buffer.compare(Buffer.from(before.path, "hex"), Buffer.from(e.path, "hex"))).toBe(-1);
      } else expect(before.type === "directory" && (before.path === dir || (dir === "" && before.path === "2e"))).toBe(true);
      // A later name of a hard link is the file's own type here (no link bookkeeping).
      if (want.type !== "hardlink") expect(e.type, e.path).toBe(want.type);
      expect([e.dev, e.ino]).toEqual([want.dev, want.ino]);
    });
    expect(listed).toBeGreaterThan(3);
  });

  it("keeps its workers between scans: a scan left early, then full ones, give the same entries, and the process exits", async () => {
    const r = await run(probe, ["rescan", spec.root]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { worker: boolean; count: number; partial: number; same: boolean };
    expect(out).toEqual({ worker: true, count: out.count, partial: 3, same: true });
    expect(out.count).toBeGreaterThan(30);
  });

  it("scan workers started ahead (prewarmScanWorkers) are the ones the next scans take, a walk without read-ahead too, and they give the same entries", async () => {
    const r = await run(probe, ["prewarm", spec.root]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { worker: boolean; before: number; started: number; after: number; pair: number; afterWalk: number; afterAgain: number; walked: number; count: number; same: boolean };
    expect(out.worker).toBe(true);
    // A walker and a reader: a thread each at least.
    expect(out.started).toBeGreaterThanOrEqual(out.before + 2);
    expect(out.pair).toBe(2);
    // The scan started no pair of its own (that would add two threads; the runtime may add one).
    expect(out.after).toBeLessThan(out.started + 2);
    // A walk without read-ahead borrowed the pair's walker (no lone walker started), and the
    // next scan took the pair back whole.
    expect([out.afterWalk, out.afterAgain]).toEqual([2, 2]);
    expect(out.walked).toBe(out.count);
    expect(out.count).toBeGreaterThan(30);
    expect(out.same).toBe(true);
  });

  it("with header room, lays each item out as the stream will be: the room, the content, zeros to the next multiple of frameAlign", async () => {
    for (const [room, align] of [[1536, 512], [1024, 1024]]) {
      const r = await run(probe, ["frames", spec.root, String(room), String(align)]);
      expect(r.code, r.stderr).toBe(0);
      const { items } = JSON.parse(r.stdout) as { items: Array<{ path: string; size: number; content: boolean; frame?: number; at?: number; zeros?: boolean }> };
      const read = items.filter((i) => i.content);
      expect(read.length).toBeGreaterThan(5);
      for (const i of read) expect(i).toEqual({ ...i, frame: room + Math.ceil(i.size / align) * align, at: room, zeros: true });
      for (const i of items.filter((i) => !i.content)) expect(i.frame).toBe(room);
    }
  });

  it("a recycled scan fills a fixed pool of frame buffers: a consumer that gives none back stops the reader at FRAME_POOL, and the scan still ends", async () => {
    const dir = path.join(tmp, "pool-tree");
    for (let d = 0; d < 10; d++) {
      fs.mkdirSync(path.join(dir, `d${d}`), { recursive: true });
      for (let f = 0; f < 300; f++) fs.writeFileSync(path.join(dir, `d${d}`, `f${f}`), "x".repeat(100));
    }
    const r = await run(probe, ["pool", dir]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { items: number; content: number; most: number; waits: number; pool: number };
    expect(out.items).toBe(1 + 10 + 3000);
    expect(out.content).toBe(3000 * 100);
    // Without the pool the reader took a new buffer for every batch, whoever held the old ones.
    expect(out.most).toBe(out.pool);
    expect(out.waits).toBeGreaterThan(0);
  });

  it("a scan stopped early (its workers terminated mid-walk) leaves no descriptor of theirs open in the process", async () => {
    // Deep enough that the walker holds a directory open per level when it is stopped.
    const dir = path.join(tmp, "abort-tree");
    for (let d = 0; d < 4; d++) {
      const deep = path.join(dir, `a${d}`, "b", "c", "d", "e");
      fs.mkdirSync(deep, { recursive: true });
      for (let f = 0; f < 2000; f++) fs.writeFileSync(path.join(deep, `f${f}`), "y");
    }
    const r = await run(probe, ["abort", dir]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { worker: boolean; at: boolean; before: number; after: number };
    expect(out.worker && out.at).toBe(true);
    // Kept workers may add their own descriptors (none after a terminate); the walker's open directories would add 5 per scan.
    expect(out.after).toBeLessThanOrEqual(out.before + 2);
  });

  it("a list scan describes the given paths again, in order, as the walk did (every field), and reports a missing one in its place", async () => {
    const r = await run(probe, ["list", spec.root]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { walked: unknown[]; listed: unknown[]; half: number };
    expect(out.walked.length).toBeGreaterThan(20);
    const want = [...out.walked.slice(0, out.half), { report: Buffer.from("no-such-file").toString("hex"), code: "ENOENT" }, ...out.walked.slice(out.half), ...out.walked.slice(0, 3)];
    expect(out.listed).toEqual(want);
  });

  it("reports an unreadable directory and goes on, as the in-thread scan does", async () => {
    const dir = path.join(tmp, "locked-tree");
    fs.mkdirSync(path.join(dir, "locked"), { recursive: true });
    fs.writeFileSync(path.join(dir, "locked/x"), "x");
    fs.writeFileSync(path.join(dir, "z"), "z");
    fs.chmodSync(path.join(dir, "locked"), 0o000);
    try {
      // As root nothing is unreadable: run the probe as nobody where we can.
      const asNobody = process.getuid?.() === 0;
      const opts = asNobody ? { uid: 65534, gid: 65534 } : {};
      if (asNobody) fs.chmodSync(tmp, 0o755);
      const w = JSON.parse((await run(probe, ["scan", dir, "auto"], opts)).stdout) as { entries: Array<{ path: string; content?: string }>; reports: string[] };
      expect(w.reports).toHaveLength(1);
      expect(w.reports[0]).toMatch(/^6c6f636b6564: EACCES /);
      expect(w.entries.map((e) => Buffer.from(e.path, "hex").toString())).toEqual([".", "locked", "z"]);
    } finally {
      fs.chmodSync(path.join(dir, "locked"), 0o755);
    }
  });
});

function run(file: string, args: string[], extra: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: repo, encoding: "utf8", timeout: 90_000, maxBuffer: 64 * 1024 * 1024, ...extra }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
