// Run under Bun by restore-tree.test.ts: the restore writer with the native *at calls (its
// BeneathTree), on scratch directories the test made, printed as one JSON line.
//   restore-tree-probe many <dest>             60 directories x 5 files (more than the tree keeps open)
//   restore-tree-probe swap <dest> <outside>   directories swapped for symlinks to <outside> mid-restore
//   restore-tree-probe abort <dest>            a restore left in the middle of a file, then finish()
//   restore-tree-probe queue <dest>            what the creator threads must get right (queue.* below)
// With PROBE_CREATOR=1 the writers make small files on creator threads (file-creator.ts), as a
// recovery's do.
import fs from "node:fs";
import path from "node:path";
import type { Entry } from "../../../formats/entry.ts";
import { CreateQueue, FileCreator } from "../../../src/engine/file-creator.ts";
import { RestoreWriter, type RestoreWriterOptions } from "../../../src/engine/restore-writer.ts";
import { loadNative } from "../../../src/native/index.ts";

const [mode, dest, outside] = process.argv.slice(2);
const native = await loadNative();
if (!native.atCalls) throw new Error(`no native *at calls: ${native.reason}`);
const B = (s: string) => Buffer.from(s);
const fds = () => fs.readdirSync("/proc/self/fd").length;
const mtime = { sec: 1_600_000_000, nsec: 123_456_789 };
const file = (size: number, more: Partial<Entry> = {}): Entry => ({ path: B("x"), type: "file", mode: 0o640, uid: 0, gid: 0, size, mtime, ...more });
const dir = (more: Partial<Entry> = {}): Entry => ({ path: B("x"), type: "directory", mode: 0o750, uid: 0, gid: 0, size: 0, mtime, ...more });
const creator = process.env.PROBE_CREATOR === "1" ? await FileCreator.take() : undefined;
if (process.env.PROBE_CREATOR === "1" && !creator) throw new Error("no creator threads");
// One queue for every writer of the probe, as a recovery's writers share theirs.
const queue = creator ? Promise.resolve(new CreateQueue(creator)) : undefined;
const late: string[] = [];
const warnings: string[] = [];
const writer = (destination: string, more: Partial<RestoreWriterOptions> = {}) =>
  new RestoreWriter({
    destination: B(destination),
    native,
    queue,
    onLateFailure: (tag, error) => late.push(`${tag.path.toString()}: ${error.message}`),
    onWarning: (rel, reason) => warnings.push(`${rel.toString()}: ${reason}`),
    ...more,
  });
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
  const w = writer(dest);
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
  const w = writer(dest);
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
  console.log(JSON.stringify({ result, before, after: fds(), outside: fs.readdirSync(outside), outsideMode: fs.statSync(outside).mode & 0o7777, errors: errorsOf(w), warnings }));
} else if (mode === "abort" && dest) {
  const before = fds();
  const w = writer(dest);
  for (let d = 0; d < 10; d++) await put(w, `d${d}/f`, "x\n");
  await w.begin(file(1 << 20), B("d0/partial"));
  await w.write(Buffer.alloc(4096, 1), 0);
  const during = fds();
  // The job is stopped here: its recovery's close() comes to finish() with the file still open.
  await w.finish();
  console.log(JSON.stringify({ before, during, after: fds(), errors: errorsOf(w) }));
} else if (mode === "queue" && dest) {
  const before = fds();
  const w = writer(dest);
  // Failures said at once (without creator threads), beside those said late (with them).
  const early: string[] = [];
  const tagged = async (rel: string, content: Buffer, more: Partial<Entry> = {}) => {
    try {
      await w.begin(file(content.length, more), B(rel), { target: 0, path: B(rel) });
      if (content.length > 0) await w.write(content, 0);
      await w.end();
    } catch (error) {
      early.push(`${rel}: ${(error as Error).message}`);
    }
  };
  // The same name twice: the later one is what stays.
  await tagged("dup", B("first\n"));
  await tagged("dup", B("second\n"));
  // An empty file, and one of every byte value.
  await tagged("empty", B(""));
  await tagged("bytes", Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
  // A name the filesystem refuses (256 bytes): begin() and end() return, the failure comes late.
  await tagged("x".repeat(256), B("long\n"));
  // Holes: the second half written first, so it cannot gather in the batch.
  await w.begin(file(8192), B("sparse"));
  await w.write(Buffer.alloc(4096, 7), 4096);
  await w.end();
  // Xattrs that come after the header (as dump's do).
  const withX = file(3);
  await w.begin(withX, B("xattr"));
  await w.write(B("x\n!"), 0);
  withX.xattrs = [[B("user.ndmpd"), B("value")]];
  await w.end();
  // A hard link to a file still on its way, and a symlink of a name still queued.
  await tagged("target", B("linked\n"));
  await w.begin({ ...file(0), type: "hardlink", linkTarget: B("target") }, B("link"));
  await w.end();
  await tagged("was-file", B("file\n"));
  await w.begin({ ...file(0), type: "symlink", linkTarget: B("dup") }, B("was-file"));
  await w.end();
  // A file, then a directory of that name, then something in it.
  await tagged("was-file2", B("file\n"));
  await w.begin(dir(), B("was-file2")).catch(() => undefined);
  await w.end();
  const inDir = await put(w, "was-file2/inside", "inside\n");
  // Existing files: replaced (OVERWRITE=y), kept (OVERWRITE=n).
  fs.writeFileSync(path.join(dest, "old"), "old\n");
  await tagged("old", B("new\n"));
  await w.finish();
  const keepDest = `${dest}-keep`;
  fs.mkdirSync(keepDest);
  fs.writeFileSync(path.join(keepDest, "kept"), "old\n");
  const k = writer(keepDest, { overwrite: "never" });
  await k.begin(file(4), B("kept"), { target: 1, path: B("kept") });
  await k.write(B("new\n"), 0);
  await k.end();
  await k.finish();
  const read = (p: string) => fs.readFileSync(path.join(dest, p)).toString("latin1");
  const sparse = fs.statSync(path.join(dest, "sparse"));
  console.log(
    JSON.stringify({
      before,
      after: fds(),
      errors: errorsOf(w),
      late,
      early,
      files: w.stats.files,
      dup: read("dup"),
      empty: read("empty"),
      bytes: fs.readFileSync(path.join(dest, "bytes")).equals(Buffer.from(Array.from({ length: 256 }, (_, i) => i))),
      sparse: { size: sparse.size, blocks: sparse.blocks, tail: fs.readFileSync(path.join(dest, "sparse")).subarray(4096).every((b) => b === 7) },
      xattr: native.xattr?.get(B(path.join(dest, "xattr")), B("user.ndmpd"))?.toString() ?? null,
      linked: fs.statSync(path.join(dest, "link")).ino === fs.statSync(path.join(dest, "target")).ino,
      wasFile: fs.readlinkSync(path.join(dest, "was-file")),
      wasFile2: fs.lstatSync(path.join(dest, "was-file2")).isDirectory(),
      inDir,
      old: read("old"),
      kept: fs.readFileSync(path.join(keepDest, "kept"), "utf8"),
      keptList: k.stats.kept.map((p) => p.toString()),
      mode: fs.statSync(path.join(dest, "dup")).mode & 0o7777,
      mtime: fs.statSync(path.join(dest, "dup"), { bigint: true }).mtimeNs.toString(),
    }),
  );
} else {
  throw new Error("usage: restore-tree-probe many|swap|abort|queue <dest> [outside]");
}
// As a recovery does when it is over: the threads are kept idle (unref'd), so the probe can exit.
(await queue)?.release();
