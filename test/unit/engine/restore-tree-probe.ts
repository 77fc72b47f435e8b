// Run under Bun by restore-tree.test.ts: the restore writer with the native *at calls (its
// BeneathTree), on scratch directories the test made, printed as one JSON line.
//   restore-tree-probe many <dest>             60 directories x 5 files (more than the tree keeps open)
//   restore-tree-probe swap <dest> <outside>   directories swapped for symlinks to <outside> mid-restore
//   restore-tree-probe abort <dest>            a restore left in the middle of a file, then finish()
import fs from "node:fs";
import path from "node:path";
import type { Entry } from "../../../formats/entry.ts";
import { RestoreWriter } from "../../../src/engine/restore-writer.ts";
import { loadNative } from "../../../src/native/index.ts";

const [mode, dest, outside] = process.argv.slice(2);
const native = await loadNative();
if (!native.atCalls) throw new Error(`no native *at calls: ${native.reason}`);
const B = (s: string) => Buffer.from(s);
const fds = () => fs.readdirSync("/proc/self/fd").length;
const mtime = { sec: 1_600_000_000, nsec: 123_456_789 };
const file = (size: number, more: Partial<Entry> = {}): Entry => ({ path: B("x"), type: "file", mode: 0o640, uid: 0, gid: 0, size, mtime, ...more });
const dir = (more: Partial<Entry> = {}): Entry => ({ path: B("x"), type: "directory", mode: 0o750, uid: 0, gid: 0, size: 0, mtime, ...more });
const errorsOf = (w: RestoreWriter) => w.stats.errors.map((e) => `${e.path.toString()}: ${e.reason}`);

async function put(w: RestoreWriter, rel: string, content: string): Promise<string> {
  try {
    await w.begin(file(content.length), B(rel));
    await w.write(B(content), 0);
    await w.end();
    return "ok";
  } catch (error) {
    return (error as Error).name === "RestoreRefused" ? "refused" : ((error as { code?: string }).code ?? String(error));
  }
}

if (mode === "many" && dest) {
  const before = fds();
  const w = new RestoreWriter({ destination: B(dest), native });
  for (let d = 0; d < 60; d++) {
    await w.begin(dir(), B(`d${d}`));
    await w.end();
    for (let f = 0; f < 5; f++) await put(w, `d${d}/f${f}`, `content ${d}/${f}\n`);
  }
  // Back to the first directories (their descriptors were closed meanwhile), and one made only as a parent.
  for (let d = 0; d < 3; d++) await put(w, `d${d}/late`, "late\n");
  await put(w, "implicit/deeper/f", "deep\n");
  const during = fds();
  await w.finish();
  console.log(JSON.stringify({ before, during, after: fds(), errors: errorsOf(w), files: w.stats.files }));
} else if (mode === "swap" && dest && outside) {
  const before = fds();
  const w = new RestoreWriter({ destination: B(dest), native });
  const result: Record<string, string> = {};
  await w.begin(dir(), B("a"));
  await w.end();
  result["a/1"] = await put(w, "a/1", "one\n");
  // Someone swaps a/ (already open in the tree) for a symlink to outside.
  fs.renameSync(path.join(dest, "a"), path.join(dest, "a.moved"));
  fs.symlinkSync(outside, path.join(dest, "a"));
  result["a/2"] = await put(w, "a/2", "two\n");
  result["a/sub/3"] = await put(w, "a/sub/3", "three\n");
  // Enough other directories that the tree closes a/'s descriptor: then a/ is looked up again.
  for (let d = 0; d < 20; d++) await put(w, `other${d}/f`, "x\n");
  result["a/4"] = await put(w, "a/4", "four\n");
  result["a/new/5"] = await put(w, "a/new/5", "five\n");
  // A directory entry over the symlink, and one already a symlink before the restore.
  await w.begin(dir(), B("b")).catch(() => undefined);
  await w.end();
  fs.symlinkSync(outside, path.join(dest, "pre"));
  result["pre/6"] = await put(w, "pre/6", "six\n");
  result["pre/deep/7"] = await put(w, "pre/deep/7", "seven\n");
  fs.renameSync(path.join(dest, "b"), path.join(dest, "b.moved"));
  fs.symlinkSync(outside, path.join(dest, "b"));
  await w.finish(); // b's mode and times must not land on outside
  console.log(JSON.stringify({ result, before, after: fds(), outside: fs.readdirSync(outside), outsideMode: fs.statSync(outside).mode & 0o7777, errors: errorsOf(w) }));
} else if (mode === "abort" && dest) {
  const before = fds();
  const w = new RestoreWriter({ destination: B(dest), native });
  for (let d = 0; d < 10; d++) await put(w, `d${d}/f`, "x\n");
  await w.begin(file(1 << 20), B("d0/partial"));
  await w.write(Buffer.alloc(4096, 1), 0);
  const during = fds();
  // The job is stopped here: its recovery's close() comes to finish() with the file still open.
  await w.finish();
  console.log(JSON.stringify({ before, during, after: fds(), errors: errorsOf(w) }));
} else {
  throw new Error("usage: restore-tree-probe many|swap|abort <dest> [outside]");
}
