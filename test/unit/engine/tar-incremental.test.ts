/**
 * The tar backup's incremental selection (engine level, in memory): what a level N holds given
 * a base, IGNORE_CTIME, moved directories, and that its recovery applies deletions.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { parseDumpdir } from "../../../formats/tar/dumpdir.ts";
import { readAll } from "../../../formats/tar/reader.ts";
import type { Entry } from "../../../formats/entry.ts";
import { runTarBackup } from "../../../src/engine/backup.ts";
import { runTarRecover } from "../../../src/engine/recover.ts";
import { backupStartTime, resolveBase, recordBackup, type BackupBase } from "../../../src/incremental/index.ts";
import { Targets } from "../../../src/engine/targets.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-tar-incr-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/**
 * File times come from a clock that ticks every few ms, and a change in the same tick as a
 * backup's start belongs to it and to the next one (inclusive): let the clock tick past changes.
 */
const tick = () => new Promise((r) => setTimeout(r, 50));

async function backup(root: string, stateDir: string, env: Record<string, string>) {
  const base = resolveBase(new Map(Object.entries(env)), { stateDir, type: "tar", root: Buffer.from(root) });
  const startTime = backupStartTime(stateDir);
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on("data", (c: Buffer) => chunks.push(c));
  const result = await runTarBackup({
    root: Buffer.from(root), out, historyStyle: "file", level: base.level, base, startTime, stateDir,
    env: new Map(), signal: new AbortController().signal, warn: () => {},
  });
  await recordBackup(stateDir, base, startTime, result.dirs);
  const stream = Buffer.concat(chunks);
  const entries = new Map<string, Entry>();
  for (const ev of readAll(stream)) if (ev.kind === "entry") entries.set(ev.entry.path.toString("latin1"), ev.entry);
  return { base, stream, entries, files: [...entries.values()].filter((e) => e.type !== "directory").map((e) => e.path.toString("latin1")).sort() };
}

async function restore(stream: Buffer, dest: string) {
  const input = new PassThrough();
  input.end(stream);
  return runTarRecover({
    input, recursive: true, extract: true, signal: new AbortController().signal, warn: () => {},
    targets: Targets.whole(Buffer.from(dest)),
  });
}

describe("tar incrementals in the engine", () => {
  it("holds what changed (mtime or ctime) and all of a moved directory; IGNORE_CTIME looks at mtimes only", async () => {
    const src = path.join(tmp, "t1");
    const st = path.join(tmp, "s1");
    fs.mkdirSync(path.join(src, "d/inner"), { recursive: true });
    for (const f of ["a", "b", "d/c", "d/inner/e"]) fs.writeFileSync(path.join(src, f), f);
    await tick();
    const l0 = await backup(src, st, { LEVEL: "0" });
    expect(l0.files).toEqual(["a", "b", "d/c", "d/inner/e"]);
    expect([...l0.entries.values()].some((e) => e.dumpdir)).toBe(false);

    fs.chmodSync(path.join(src, "a"), 0o600); // ctime only
    fs.renameSync(path.join(src, "d"), path.join(src, "moved")); // its files keep their times
    fs.rmSync(path.join(src, "b"));
    await tick();
    const noCtime = await backup(src, st, { LEVEL: "1", IGNORE_CTIME: "y", UPDATE: "n" });
    expect(noCtime.files).toEqual(["moved/c", "moved/inner/e"]);
    const l1 = await backup(src, st, { LEVEL: "1" });
    expect(l1.files).toEqual(["a", "moved/c", "moved/inner/e"]);
    expect(Object.fromEntries(parseDumpdir(l1.entries.get(".")!.dumpdir!).names)).toEqual({ a: "Y", moved: "D" });

    // Nothing changed since: a level 2 holds only the directories.
    const l2 = await backup(src, st, { LEVEL: "2" });
    expect(l2.files).toEqual([]);
    expect([...l2.entries.keys()].sort()).toEqual([".", "moved", "moved/inner"]);

    // Restoring 0 then 1 into one place gives the tree: b deleted, d renamed.
    const dest = path.join(tmp, "r1");
    await restore(l0.stream, dest);
    await restore(l1.stream, dest);
    expect(fs.readdirSync(dest).sort()).toEqual(["a", "moved"]);
    expect(fs.readFileSync(path.join(dest, "moved/inner/e"), "utf8")).toBe("d/inner/e");
    expect(fs.statSync(path.join(dest, "a")).mode & 0o777).toBe(0o600);
  });

  it("a base without a directory inventory (a foreign token) takes directories changed since it whole", async () => {
    const src = path.join(tmp, "t2");
    fs.mkdirSync(path.join(src, "quiet"), { recursive: true });
    fs.mkdirSync(path.join(src, "busy"));
    fs.writeFileSync(path.join(src, "quiet/q"), "q");
    fs.writeFileSync(path.join(src, "busy/old"), "o");
    await tick();
    const since = backupStartTime(path.join(tmp, "s2"));
    fs.writeFileSync(path.join(src, "busy/new"), "n");
    const base: BackupBase = { level: 1, since, baseDate: since, ignoreCtime: false, mode: "token", update: false, fsid: "0:0", type: "tar", root: Buffer.from(src), notes: [] };
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on("data", (c: Buffer) => chunks.push(c));
    await runTarBackup({ root: Buffer.from(src), out, historyStyle: "file", level: 1, base, stateDir: tmp, env: new Map(), signal: new AbortController().signal, warn: () => {} });
    const files = readAll(Buffer.concat(chunks)).flatMap((e) => (e.kind === "entry" && e.entry.type === "file" ? [e.entry.path.toString()] : []));
    expect(files.sort()).toEqual(["busy/new", "busy/old"]);
  });
});
