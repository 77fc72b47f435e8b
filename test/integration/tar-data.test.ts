/**
 * The tar data service against real peers: ndmjob as DMA, ndmjob's daemon as tape agent
 * (three-way), our own virtual drive (local configuration), GNU tar as an independent reader
 * of our stream, all inside a private network namespace.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { D, startLab, stopLab, T } from "../helpers/lab.ts";
import { TarReader } from "../../formats/tar/reader.ts";
import { encodeHeader, endOfArchive, padding } from "../../formats/tar/writer.ts";
import type { Entry } from "../../formats/entry.ts";
import type { Netns } from "../helpers/netns.ts";
import { jobSucceeded, ndmjob, parseIndex, serveFileOnce, simtapeFile, type NdmjobDaemon } from "../helpers/ndmjob.ts";
import { havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import type { RunningServer } from "../helpers/server.ts";
import { compareTrees, makeEdgeTree } from "../helpers/tree.ts";

const ready = havePeers("binary", "ndmjob", "tar", "unshare");

describe.runIf(ready)("tar data service with ndmjob", () => {
  let ns: Netns;
  let srv: RunningServer;
  let daemon: NdmjobDaemon;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-tar-"));
  const SRC = join(W, "src");
  const TAPE = join(W, "tape");

  beforeAll(async () => {
    mkdirSync(SRC);
    await makeEdgeTree(SRC);
    ({ ns, srv, daemon } = await startLab({ capacity: "8GiB" }));
  }, 120_000);

  afterAll(async () => {
    await stopLab({ ns, srv, daemon });
    rmSync(W, { recursive: true, force: true });
  });

  it("three-way backup: GNU tar extracts the tape's stream into a tree equal to the source; the index has every entry", async () => {
    writeFileSync(TAPE, "");
    const idx = join(W, "backup.idx");
    const r = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", TAPE, "-B", "tar", "-C", SRC, "-I", idx]);
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    const stream = simtapeFile(readFileSync(TAPE), 0);
    const image = join(W, "image.tar");
    writeFileSync(image, stream);
    const out = join(W, "gnutar");
    mkdirSync(out);
    const x = await run("tar", ["-x", "-p", "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--numeric-owner", "-f", image, "-C", out]);
    // GNU tar 1.34 only remarks on times before 1970 and after now (which it extracts exactly) and
    // on hdrcharset=BINARY, the pax keyword that marks non-UTF-8 names (which it keeps as bytes).
    const known = /implausibly old time stamp|is [\d.]+ s in the future|Ignoring unknown extended header keyword 'hdrcharset'/;
    expect(x.stderr.split("\n").filter((l) => l && !known.test(l))).toEqual([]);
    expect(await compareTrees(SRC, out)).toEqual([]);

    // Every object has a DHf line whose fh_info is the offset of its first header.
    const index = parseIndex(readFileSync(idx, "latin1"));
    const offsets = new Map<string, number>();
    const reader = new TarReader();
    for (const ev of reader.feed(stream)) if (ev.kind === "entry") offsets.set(ev.entry.path.toString("latin1"), ev.offset);
    expect(index.files.size).toBe(offsets.size);
    for (const [path, off] of offsets) {
      const key = path === "." ? "/" : "/" + path;
      expect(index.files.get(key)?.fhInfo, key).toBe(off);
    }
    expect(index.env.get("DIRECT")).toBe("y");
    expect(index.env.get("TYPE")).toBe("tar");
  });

  it("ndmjob -x restores the whole tree, and selected files and directories elsewhere", async () => {
    const all = join(W, "restore-all");
    const r = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", TAPE, "-B", "tar", "-C", all]);
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    expect(await compareTrees(SRC, all)).toEqual([]);

    const sel = join(W, "restore-sel");
    const picks = pickSelection(SRC);
    const r2 = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", TAPE, "-B", "tar", "-C", sel, ...picks.map((p) => "/" + p)]);
    expect(jobSucceeded(r2.stdout), r2.stdout).toBe(true);
    expect(r2.stdout).toContain(`LOG_FILE messages: ${picks.length} OK, 0 ERROR, total ${picks.length} of ${picks.length}`);
    for (const p of picks) expect(existsSync(join(sel, p)), p).toBe(true);
    // Nothing else: the top level of the selection holds only the picked paths' first components.
    const tops = new Set(picks.map((p) => p.split("/")[0]));
    expect(new Set(readdirSync(sel))).toEqual(tops);
  });

  it("a crafted archive with ../, an absolute path and a symlinked parent writes nothing outside the destination", async () => {
    const evil = join(W, "evil.tar");
    writeFileSync(evil, craftedArchive());
    const dest = join(W, "evil-dest", "inner");
    mkdirSync(dest, { recursive: true });
    const outside = join(W, "evil-dest");
    mkdirSync(join(W, "evil-target")); // where the symlinked parent points: must stay empty
    const port = 10300;
    const { sent } = await serveFileOnce(ns, port, evil);
    const r = await ndmjob(ns, ["-x", "-v", "-D", D, "-o", `tape-tcp=127.0.0.1:${port}`, "-f", "unused", "-B", "tar", "-C", dest]);
    await sent;
    expect(r.stdout).toMatch(/DLM[we] .*refused/);
    expect(readdirSync(outside).sort()).toEqual(["inner"]);
    expect(existsSync("/tmp/ndmpd-evil-absolute")).toBe(false);
    expect(readdirSync(join(W, "evil-target"))).toEqual([]);
    expect(readFileSync(join(dest, "ok.txt"), "utf8")).toBe("fine\n");
  });

  it("ndmjob -o test-data passes every series", async () => {
    const r = await ndmjob(ns, ["-o", "test-data", "-D", D, "-v"], 120_000);
    expect(r.stdout).toMatch(/TEST "FINAL test-data Passed -- pass=\d+ warn=0 fail=0/);
    expect(r.code).toBe(0);
  });

  it("local configuration: our server is data and tape agent, with a virtual drive", async () => {
    const idx = join(W, "local.idx");
    const b = await ndmjob(ns, ["-c", "-v", "-D", D, "-f", "vt0", "-B", "tar", "-C", SRC, "-I", idx]);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    const dst = join(W, "restore-local");
    const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-f", "vt0", "-B", "tar", "-C", dst]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(SRC, dst)).toEqual([]);
  });
});

/** A few files and a directory of the edge tree, relative paths. */
function pickSelection(src: string): string[] {
  const dirs = readdirSync(src, { withFileTypes: true });
  const dir = dirs.find((d) => d.isDirectory())!.name;
  const files = dirs.filter((d) => d.isFile()).slice(0, 2).map((d) => d.name);
  return [...files, dir];
}

/** An archive that tries to escape: ../, an absolute path, a symlink then a file through it. */
function craftedArchive(): Buffer {
  const t = { sec: 1_700_000_000, nsec: 0 };
  const e = (path: string, type: Entry["type"], extra: Partial<Entry> = {}): Entry => ({
    path: Buffer.from(path),
    type,
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: t,
    ...extra,
  });
  const file = (path: string, body: string) => {
    const b = Buffer.from(body);
    return Buffer.concat([encodeHeader(e(path, "file", { size: b.length })), b, padding(b.length)]);
  };
  return Buffer.concat([
    file("ok.txt", "fine\n"),
    file("../escape.txt", "escaped\n"),
    file("/tmp/ndmpd-evil-absolute", "absolute\n"),
    encodeHeader(e("link", "symlink", { linkTarget: Buffer.from("../../evil-target") })),
    file("link/x", "through a symlink\n"),
    endOfArchive(),
  ]);
}

