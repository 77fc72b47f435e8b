// Compiled with `bun build --compile` by native.test.ts (and also run with plain `bun`): exercises
// the native layer on real files and prints what it saw as one JSON line.
//   probe <sparse-file> <file-with-user.test-xattr> <file-to-set-user.ndmpd-on>
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { LinuxStTape } from "../../../src/devices/tape/linux-st.ts";
import { MTGET_SIZE, MTIOCGET } from "../../../src/devices/tape/mtio.ts";
import { listDataRuns, listingName, loadNative } from "../../../src/native/index.ts";

const [sparsePath, xattrPath, setPath] = process.argv.slice(2);
if (!sparsePath || !xattrPath || !setPath) throw new Error("usage: probe <sparse> <xattr-file> <set-file>");

const native = await loadNative();
const result: Record<string, unknown> = { runtime: native.runtime, reason: native.reason ?? null };

if (native.seek) {
  const fd = fs.openSync(sparsePath, "r");
  try {
    result.runs = listDataRuns(native.seek, fd, fs.fstatSync(fd).size);
  } finally {
    fs.closeSync(fd);
  }
}

if (native.xattr) {
  const xattr = native.xattr;
  result.names = xattr.list(Buffer.from(xattrPath)).map((name) => name.toString("latin1"));
  result.value = xattr.get(Buffer.from(xattrPath), "user.test")?.toString("latin1") ?? null;
  result.missing = xattr.get(Buffer.from(xattrPath), "user.absent");
  xattr.set(Buffer.from(setPath), Buffer.from("user.ndmpd"), Buffer.from([0, 255, 1, 2]));
  result.setBack = [...(xattr.get(Buffer.from(setPath), "user.ndmpd") ?? [])];
  // Removed, then removed again (already gone: not an error).
  xattr.set(Buffer.from(setPath), "user.gone", Buffer.from("x"));
  xattr.remove!(Buffer.from(setPath), "user.gone");
  xattr.remove!(Buffer.from(setPath), "user.gone");
  result.removed = xattr.get(Buffer.from(setPath), "user.gone");
  // listxattrat relative to the directory: the same names as by path; a missing name gives null.
  const at = native.at;
  if (at?.listXattrsAt) {
    const dirFd = at.openDir(Buffer.from(path.dirname(xattrPath)), true);
    const atNames = at.listXattrsAt(dirFd, Buffer.from(path.basename(xattrPath)));
    result.listAt = {
      same: JSON.stringify(atNames?.map((n) => n.toString("latin1"))) === JSON.stringify(result.names),
      set: at.listXattrsAt(dirFd, Buffer.from(path.basename(setPath)))?.map((n) => n.toString("latin1")) ?? null,
      missing: at.listXattrsAt(dirFd, Buffer.from("no-such-name")),
    };
    at.close(dirFd);
  }
}

if (native.ioctl) {
  // A regular file is not a tape: the kernel answers ENOTTY, which must come back as an errno.
  const fd = fs.openSync(sparsePath, "r");
  try {
    native.ioctl.ioctl(fd, MTIOCGET, new Uint8Array(MTGET_SIZE));
    result.ioctl = "no error";
  } catch (error) {
    result.ioctl = (error as { code?: string }).code ?? String(error);
  } finally {
    fs.closeSync(fd);
  }
}

if (native.dir) {
  // The directory of the files above: getdents64's names, d_ino and d_type against lstat's.
  const dir = path.dirname(setPath);
  const listing = native.dir.list(Buffer.from(dir));
  result.dir = Array.from({ length: listing.count }, (_, i) => listingName(listing, i).toString("latin1"))
    .map((name, i) => {
      const st = fs.lstatSync(path.join(dir, name), { bigint: true });
      return { name, sameIno: BigInt(listing.inos[i]!) === st.ino, type: listing.types[i] };
    })
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  try {
    native.dir.list(Buffer.from(setPath));
    result.dirOfFile = "no error";
  } catch (error) {
    result.dirOfFile = (error as { code?: string }).code ?? String(error);
  }
}

if (native.fs) {
  // Exact nanoseconds (node:fs would round through a float), on the file and on a symlink itself.
  native.fs.utimens(Buffer.from(setPath), { sec: 1_000_000_000, nsec: 123_456_789 }, { sec: 4_102_444_800, nsec: 987_654_321 }, false);
  const st = fs.statSync(setPath, { bigint: true });
  result.mtimeNs = st.mtimeNs.toString();
  result.atimeNs = st.atimeNs.toString();
  const fifo = setPath + ".fifo";
  native.fs.mknod(Buffer.from(fifo), 0o010640, 0, 0);
  const f = fs.lstatSync(fifo);
  result.fifo = { isFifo: f.isFIFO(), mode: f.mode & 0o7777 };
  fs.unlinkSync(fifo);
  // flock: a second open of the file is refused while the first holds the lock, and gets it
  // once the first is closed.
  const a = fs.openSync(setPath, "r");
  const b = fs.openSync(setPath, "r");
  const first = native.fs.tryLockExclusive(a);
  const whileHeld = native.fs.tryLockExclusive(b);
  fs.closeSync(a);
  result.flock = [first, whileHeld, native.fs.tryLockExclusive(b)];
  fs.closeSync(b);
  if (process.getuid?.() === 0) {
    const dev = setPath + ".dev";
    native.fs.mknod(Buffer.from(dev), 0o020600, 300, 70000);
    // coreutils' stat decodes the device number independently of our makedev.
    const numbers = spawnSync("stat", ["-c", "%t:%T", dev]).stdout.toString().trim();
    result.chardev = { isChar: fs.lstatSync(dev).isCharacterDevice(), numbers };
    fs.unlinkSync(dev);
  }
}

try {
  await new LinuxStTape({ path: "/dev/nst-ndmpd-probe-missing" }).open("READ");
  result.stOpen = "opened?!";
} catch (error) {
  result.stOpen = (error as { code?: string }).code ?? String(error);
}

console.log(JSON.stringify(result));
