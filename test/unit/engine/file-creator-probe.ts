// Run under Bun by file-creator.test.ts: a CreateQueue on real creator threads, printed as one JSON line.
//   file-creator-probe <dir>   2,000 files through more batches than may be out at once, a descriptor
//                              retired while batches name it, files whose parent descriptor is bad
import fs from "node:fs";
import path from "node:path";
import { CreateQueue, FileCreator, type QueuedFile } from "../../../src/engine/file-creator.ts";

const [dir] = process.argv.slice(2);
if (!dir) throw new Error("usage: file-creator-probe <dir>");
const creator = await FileCreator.take();
if (!creator) throw new Error("no creator threads");
const failures: string[] = [];
const queue = new CreateQueue(creator);
const onFailure = async (file: QueuedFile, failure: { step: string; code: string; fatal: boolean }) => {
  failures.push(`${file.rel.toString()}: ${failure.step} ${failure.code} ${failure.fatal ? "fatal" : ""}`.trim());
};
fs.mkdirSync(path.join(dir, "a"), { recursive: true });
const dirFd = fs.openSync(path.join(dir, "a"), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
const mtime = { sec: 1_700_000_000, nsec: 42 };
const add = async (fd: number, name: string, content: Buffer) => {
  await queue.room(Buffer.byteLength(name), content.length);
  const at = queue.reserve(content.length);
  queue.data.set(content, at);
  const file: QueuedFile = { entry: { path: Buffer.from(name), type: "file", mode: 0o604, uid: 0, gid: 0, size: content.length, mtime }, rel: Buffer.from(name), key: name, tag: undefined, onFailure };
  queue.commit(file, fd, Buffer.from(name), at, -1);
};
let maxOut = 0;
for (let i = 0; i < 2000; i++) {
  await add(dirFd, `f${i}`, Buffer.from(`content ${i}\n`.repeat(1 + (i % 50))));
  maxOut = Math.max(maxOut, (queue as unknown as { out: Map<number, unknown> }).out.size);
}
const pendingBeforeRetire = queue.has("f1999");
// The writer lets the directory's descriptor go while batches naming it may be out.
queue.retire(dirFd);
const openAfterRetire = isOpen(dirFd);
await queue.drain();
const closedAfterDrain = !isOpen(dirFd);
// A descriptor that is not a directory's: every file fails, each reported once, nothing made.
const notDir = fs.openSync(path.join(dir, "a", "f0"), fs.constants.O_RDONLY);
for (let i = 0; i < 3; i++) await add(notDir, `bad${i}`, Buffer.from("x"));
await queue.drain();
fs.closeSync(notDir);
let wrong = 0;
for (let i = 0; i < 2000; i++) {
  const p = path.join(dir, "a", `f${i}`);
  const st = fs.statSync(p, { bigint: true });
  if (fs.readFileSync(p, "utf8") !== `content ${i}\n`.repeat(1 + (i % 50)) || Number(st.mode & 0o7777n) !== 0o604 || st.mtimeNs !== 1_700_000_000_000_000_042n) wrong++;
}
queue.release();
console.log(JSON.stringify({ files: fs.readdirSync(path.join(dir, "a")).length, wrong, failures, maxOut, threads: creator.threads, pendingBeforeRetire, openAfterRetire, closedAfterDrain }));

function isOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}
