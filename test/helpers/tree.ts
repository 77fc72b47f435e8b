/**
 * A directory with every edge case a backup must preserve, and a byte-exact comparison of two
 * trees. Used to check the walker, the restore writer, and tar/dump round trips.
 *
 * makeEdgeTree needs root for owners and devices (skipped otherwise, listed in `skipped`), and
 * `setfattr`/`setfacl` (packages attr, acl) for xattrs and ACLs (skipped when absent).
 * compareTrees reads both trees with its own plain lstat walk (not the code under test).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export interface DataRun {
  offset: number;
  length: number;
}

export interface TreeSpec {
  root: string;
  /** Features that could not be made here, with the reason, e.g. "devices: not root". */
  skipped: string[];
  has: { devices: boolean; owners: boolean; xattrs: boolean; acls: boolean };
  /** Notable objects, by role, as paths relative to root (bytes). */
  paths: {
    nonUtf8: Buffer;
    longName: Buffer;
    longPath: Buffer;
    symlink: Buffer;
    longTargetSymlink: Buffer;
    dangling: Buffer;
    /** Three names of one inode, in bytewise walk order (the first is the one a walk reports as a file). */
    hardlinks: Buffer[];
    fifo: Buffer;
    chardev?: Buffer;
    blockdev?: Buffer;
    xattrFile: Buffer;
    aclDir: Buffer;
    owned70000: Buffer;
    emptyDir: Buffer;
    setuid: Buffer;
    sticky: Buffer;
    preEpoch: Buffer;
    post2038: Buffer;
  };
  /** Sparse files and their data runs as a 4 KiB-granular scan (and SEEK_DATA on ext4/tmpfs) sees them. */
  sparse: Array<{ path: Buffer; size: number; runs: DataRun[] }>;
  /** The long non-UTF-8 symlink target, bytes. */
  longTarget: Buffer;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export function have(tool: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0;
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.error?.message ?? r.stderr}`);
}

/** Deterministic non-zero-ish bytes, distinct per seed. */
export function pattern(length: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = (x & 0xff) | 1; // never 0: no data block may read as a hole
  }
  return buf;
}

const b = (s: string | Buffer) => (typeof s === "string" ? Buffer.from(s) : s);
const cat = (...parts: Array<string | Buffer>) => Buffer.concat(parts.map(b));

export async function makeEdgeTree(dir: string): Promise<TreeSpec> {
  const root = path.resolve(dir);
  fs.mkdirSync(root, { recursive: true });
  const at = (rel: Buffer | string) => cat(root, "/", rel);
  const isRoot = process.getuid?.() === 0;
  const skipped: string[] = [];

  for (const d of ["files", "names", "links", "hard/a", "hard/b", "hard/c", "special", "sparse", "xattr", "acl", "owners", "dirs", "empty", "times"]) {
    fs.mkdirSync(path.join(root, d), { recursive: true });
  }

  // Regular files around the 512-byte block boundary, and one past a MiB.
  const sizes: Array<[string, number]> = [["empty", 0], ["one", 1], ["b511", 511], ["b512", 512], ["b513", 513], ["big", MiB + 3]];
  sizes.forEach(([name, size], i) => fs.writeFileSync(path.join(root, "files", name), pattern(size, i + 1)));
  fs.writeFileSync(path.join(root, "files/mode0600"), "private\n", { mode: 0o600 });
  fs.chmodSync(path.join(root, "files/mode0600"), 0o600);
  fs.writeFileSync(path.join(root, "files/mode0755"), "#!/bin/sh\necho hi\n");
  fs.chmodSync(path.join(root, "files/mode0755"), 0o755);

  // Names: not UTF-8, 200 bytes, and a path over 1000 bytes.
  const nonUtf8 = cat("names/", Buffer.from([0xff, 0xfe]), "-latin1-\xe9", Buffer.from([0x80]));
  fs.writeFileSync(at(nonUtf8), "bytes, not a string\n");
  const longName = cat("names/", "n".repeat(200));
  fs.writeFileSync(at(longName), "long name\n");
  let deep = "deep";
  for (let i = 0; i < 10; i++) deep += `/${String(i).repeat(100)}`;
  fs.mkdirSync(path.join(root, deep), { recursive: true });
  const longPath = cat(deep, "/leaf");
  fs.writeFileSync(at(longPath), "deep\n");

  // Symlinks: ordinary, long non-UTF-8 target, dangling.
  const symlink = b("links/to-one");
  fs.symlinkSync("../files/one", at(symlink));
  const longTarget = cat("../", Buffer.from([0xff, 0xfe, 0xfd]), "/", "t".repeat(250), "/", Buffer.from([0xc3, 0x28]), "x".repeat(100));
  const longTargetSymlink = b("links/long-target");
  fs.symlinkSync(longTarget, at(longTargetSymlink));
  const dangling = b("links/dangling");
  fs.symlinkSync("no/such/target", at(dangling));

  // Three names of one inode in three directories.
  const hardlinks = ["hard/a/first", "hard/b/second", "hard/c/third"].map(b);
  fs.writeFileSync(at(hardlinks[0]!), pattern(5000, 77));
  fs.linkSync(at(hardlinks[0]!), at(hardlinks[1]!));
  fs.linkSync(at(hardlinks[2 - 1]!), at(hardlinks[2]!));

  // Special files.
  const fifo = b("special/fifo");
  sh("mkfifo", [path.join(root, "special/fifo")]);
  let chardev: Buffer | undefined;
  let blockdev: Buffer | undefined;
  let devices = false;
  if (isRoot && have("mknod")) {
    try {
      sh("mknod", [path.join(root, "special/chardev"), "c", "1", "3"]);
      sh("mknod", [path.join(root, "special/blockdev"), "b", "259", "70000"]); // minor > 255: the wide encoding
      chardev = b("special/chardev");
      blockdev = b("special/blockdev");
      devices = true;
    } catch (error) {
      skipped.push(`devices: ${(error as Error).message}`);
    }
  } else skipped.push("devices: not root");

  // Sparse files: 1 GiB with three small data regions and a trailing hole; data only at the very
  // end of an unaligned size; nothing but a hole.
  const sparse: TreeSpec["sparse"] = [];
  {
    const file = b("sparse/gig");
    const fd = fs.openSync(at(file), "w");
    fs.ftruncateSync(fd, GiB);
    fs.writeSync(fd, pattern(4096, 11), 0, 4096, 0);
    fs.writeSync(fd, pattern(8192, 12), 0, 8192, 300 * MiB);
    fs.writeSync(fd, pattern(100, 13), 0, 100, 700 * MiB + 4096);
    fs.closeSync(fd);
    sparse.push({ path: file, size: GiB, runs: [{ offset: 0, length: 4096 }, { offset: 300 * MiB, length: 8192 }, { offset: 700 * MiB + 4096, length: 4096 }] });
  }
  {
    const file = b("sparse/tail");
    const size = 10 * MiB + 5;
    const fd = fs.openSync(at(file), "w");
    fs.writeSync(fd, pattern(5, 14), 0, 5, 10 * MiB);
    fs.closeSync(fd);
    sparse.push({ path: file, size, runs: [{ offset: 10 * MiB, length: 5 }] });
  }
  {
    const file = b("sparse/all-hole");
    const fd = fs.openSync(at(file), "w");
    fs.ftruncateSync(fd, MiB);
    fs.closeSync(fd);
    sparse.push({ path: file, size: MiB, runs: [] });
  }

  // Owners and modes.
  const owned70000 = b("owners/u70000");
  fs.writeFileSync(at(owned70000), "owned by nobody we know\n");
  const setuid = b("files/setuid");
  fs.writeFileSync(at(setuid), "#!/bin/sh\n");
  fs.symlinkSync("u70000", path.join(root, "owners/link70000"));
  let owners = false;
  if (isRoot) {
    fs.chownSync(at(owned70000), 70000, 70000);
    fs.lchownSync(path.join(root, "owners/link70000"), 70000, 70001);
    fs.chownSync(at(setuid), 70000, 70000);
    owners = true;
  } else skipped.push("owners: not root");
  fs.chmodSync(at(setuid), 0o4755); // after chown, which clears it
  const sticky = b("dirs/sticky");
  fs.mkdirSync(at(sticky));
  fs.chmodSync(at(sticky), 0o1777);
  fs.mkdirSync(path.join(root, "dirs/setgid"));
  fs.chmodSync(path.join(root, "dirs/setgid"), 0o2755);
  fs.writeFileSync(path.join(root, "dirs/setgid/inside"), "x");
  fs.mkdirSync(path.join(root, "dirs/readonly"));
  fs.writeFileSync(path.join(root, "dirs/readonly/inside"), "y");
  fs.chmodSync(path.join(root, "dirs/readonly"), 0o555);
  const emptyDir = b("empty/nothing-here");
  fs.mkdirSync(at(emptyDir));

  // Extended attributes (binary value) and POSIX ACLs (access and default, with an inheriting child).
  const xattrFile = b("xattr/file");
  fs.writeFileSync(at(xattrFile), "has xattrs\n");
  const aclDir = b("acl/dir");
  fs.mkdirSync(at(aclDir));
  fs.writeFileSync(path.join(root, "acl/file"), "has an ACL\n");
  let xattrs = false;
  if (have("setfattr")) {
    try {
      sh("setfattr", ["-n", "user.binary", "-v", "0x00ff0102fe", path.join(root, "xattr/file")]);
      sh("setfattr", ["-n", "user.text", "-v", "hello", path.join(root, "xattr/file")]);
      sh("setfattr", ["-n", "user.on-dir", "-v", "0x01", path.join(root, "xattr")]);
      xattrs = true;
    } catch (error) {
      skipped.push(`xattrs: ${(error as Error).message}`);
    }
  } else skipped.push("xattrs: setfattr (package attr) not installed");
  let acls = false;
  if (have("setfacl")) {
    try {
      sh("setfacl", ["-m", "u:70000:r--,g:70001:rw-", path.join(root, "acl/file")]);
      sh("setfacl", ["-d", "-m", "u:70000:rwx", path.join(root, "acl/dir")]);
      fs.writeFileSync(path.join(root, "acl/dir/inherits"), "inherited ACL\n");
      acls = true;
    } catch (error) {
      skipped.push(`acls: ${(error as Error).message}`);
    }
  } else skipped.push("acls: setfacl (package acl) not installed");

  // Times: nanoseconds, before 1970, after 2038 (touch takes exact nanoseconds; Node's utimes cannot).
  const preEpoch = b("times/pre-1970");
  const post2038 = b("times/post-2038");
  fs.writeFileSync(at(preEpoch), "old\n");
  fs.writeFileSync(at(post2038), "future\n");
  fs.writeFileSync(path.join(root, "times/ns"), "nanoseconds\n");
  sh("touch", ["-h", "-d", "@-123456789.987654321", path.join(root, "times/pre-1970")]);
  sh("touch", ["-h", "-d", "@4102444800.123456789", path.join(root, "times/post-2038")]);
  sh("touch", ["-h", "-d", "@1700000000.123456789", path.join(root, "times/ns")]);
  sh("touch", ["-h", "-d", "@1600000000.000000999", path.join(root, "links/to-one")]);
  sh("touch", ["-h", "-d", "@1500000000.999999999", path.join(root, "special/fifo")]);
  // Directories last (their children changed them), deepest first.
  sh("touch", ["-h", "-d", "@1400000000.5", path.join(root, "empty/nothing-here")]);
  sh("touch", ["-h", "-d", "@-1.000000001", path.join(root, "empty")]);
  sh("touch", ["-h", "-d", "@1650000000.424242424", path.join(root, "times")]);

  return {
    root,
    skipped,
    has: { devices, owners, xattrs, acls },
    paths: {
      nonUtf8, longName, longPath, symlink, longTargetSymlink, dangling, hardlinks, fifo, chardev, blockdev,
      xattrFile, aclDir, owned70000, emptyDir, setuid, sticky, preEpoch, post2038,
    },
    sparse,
    longTarget,
  };
}

// -------------------------------------------------------------------------------------------------

export interface TreeObject {
  rel: Buffer;
  st: fs.BigIntStats;
  target?: Buffer;
}

/** Every object under root (root itself as "."), depth-first, children sorted bytewise. */
export function listTree(root: string | Buffer): TreeObject[] {
  const base = b(root);
  const out: TreeObject[] = [];
  const visit = (abs: Buffer, rel: Buffer) => {
    const st = fs.lstatSync(abs, { bigint: true });
    const obj: TreeObject = { rel, st };
    if (st.isSymbolicLink()) obj.target = fs.readlinkSync(abs, { encoding: "buffer" });
    out.push(obj);
    if (!st.isDirectory()) return;
    const names = fs.readdirSync(abs, { encoding: "buffer" }).sort(Buffer.compare);
    for (const name of names) visit(cat(abs, "/", name), rel.equals(b(".")) ? name : cat(rel, "/", name));
  };
  visit(base, b("."));
  return out;
}

export function show(p: Buffer): string {
  let out = "";
  for (const c of p) out += c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`;
  return out;
}

/** The type of an lstat result, in the Entry vocabulary ("unknown" for none of them). */
export function typeOf(st: fs.BigIntStats): string {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "directory";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  if (st.isCharacterDevice()) return "chardev";
  if (st.isBlockDevice()) return "blockdev";
  if (st.isSocket()) return "socket";
  return "unknown";
}

/** Content identity without hashing gigabytes of holes: non-zero 64 KiB blocks and their offsets. */
export function contentHash(abs: Buffer | string): string {
  const hash = createHash("sha256");
  const fd = fs.openSync(abs, "r");
  try {
    const block = 64 * KiB;
    const buf = Buffer.allocUnsafe(4 * MiB);
    const zero = Buffer.alloc(block);
    let pos = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      for (let off = 0; off < n; off += block) {
        const end = Math.min(off + block, n);
        if (end - off === block && buf.compare(zero, 0, block, off, end) === 0) continue;
        hash.update(`${pos + off}:`);
        hash.update(buf.subarray(off, end));
      }
      pos += n;
    }
    hash.update(`size:${pos}`);
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest("hex");
}

/** getfattr's dump of every object (names escaped by getfattr the same way on both sides). */
function xattrDump(root: Buffer): Map<string, string> {
  const r = spawnSync("getfattr", ["-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", "."], { cwd: root.toString(), encoding: "latin1", maxBuffer: 256 * MiB });
  const out = new Map<string, string>();
  let current: string | undefined;
  for (const line of (r.stdout ?? "").split("\n")) {
    if (line.startsWith("# file: ")) {
      current = line.slice("# file: ".length);
      out.set(current, "");
    } else if (current !== undefined && line.length > 0) {
      out.set(current, out.get(current) + line + "\n");
    }
  }
  return out;
}

export interface CompareOptions {
  /** Times are equal when they differ by less than this (default 1: exact to the nanosecond). */
  timePrecisionNs?: number;
  /** Compare uid/gid (default true). */
  owners?: boolean;
  /** Compare xattrs and ACLs with getfattr (default: when getfattr is installed). */
  xattrs?: boolean;
  /** Compare the times of "." (default true). */
  rootTimes?: boolean;
  /** Compare atimes too (default false: reading a file may change it). */
  atime?: boolean;
  /** Objects to leave out of the comparison (relative paths, "." for root). */
  ignore?: (rel: Buffer) => boolean;
}

/** Human-readable differences between two trees; [] when they are the same. */
export async function compareTrees(a: string | Buffer, b_: string | Buffer, opts: CompareOptions = {}): Promise<string[]> {
  const precision = BigInt(opts.timePrecisionNs ?? 1);
  const owners = opts.owners ?? true;
  const withXattrs = opts.xattrs ?? have("getfattr");
  const rootA = b(a);
  const rootB = b(b_);
  const diffs: string[] = [];
  const keep = (o: TreeObject) => !opts.ignore?.(o.rel);
  const left = listTree(rootA).filter(keep);
  const right = listTree(rootB).filter(keep);
  const key = (rel: Buffer) => rel.toString("latin1");
  const rightBy = new Map(right.map((o) => [key(o.rel), o]));
  const leftBy = new Map(left.map((o) => [key(o.rel), o]));
  for (const o of right) if (!leftBy.has(key(o.rel))) diffs.push(`${show(o.rel)}: only in ${show(rootB)}`);

  // Hard-link groups: the set of names sharing each inode, per side.
  const groups = (objs: TreeObject[]) => {
    const byInode = new Map<string, string[]>();
    for (const o of objs) {
      if (o.st.isDirectory() || o.st.nlink < 2n) continue;
      const id = `${o.st.dev}:${o.st.ino}`;
      byInode.set(id, [...(byInode.get(id) ?? []), show(o.rel)]);
    }
    const byName = new Map<string, string>();
    for (const names of byInode.values()) for (const n of names) byName.set(n, names.sort().join(", "));
    return byName;
  };
  const groupsA = groups(left);
  const groupsB = groups(right);

  for (const x of left) {
    const name = show(x.rel);
    const y = rightBy.get(key(x.rel));
    if (!y) {
      diffs.push(`${name}: missing from ${show(rootB)}`);
      continue;
    }
    const ta = typeOf(x.st);
    const tb = typeOf(y.st);
    if (ta !== tb) {
      diffs.push(`${name}: type ${ta} != ${tb}`);
      continue;
    }
    const isRoot = x.rel.equals(b("."));
    if (ta !== "symlink" && (x.st.mode & 0o7777n) !== (y.st.mode & 0o7777n)) {
      diffs.push(`${name}: mode ${(x.st.mode & 0o7777n).toString(8)} != ${(y.st.mode & 0o7777n).toString(8)}`);
    }
    if (owners && (x.st.uid !== y.st.uid || x.st.gid !== y.st.gid)) {
      diffs.push(`${name}: owner ${x.st.uid}:${x.st.gid} != ${y.st.uid}:${y.st.gid}`);
    }
    if ((ta === "file" || ta === "symlink") && x.st.size !== y.st.size) diffs.push(`${name}: size ${x.st.size} != ${y.st.size}`);
    if ((ta === "chardev" || ta === "blockdev") && x.st.rdev !== y.st.rdev) diffs.push(`${name}: rdev ${x.st.rdev} != ${y.st.rdev}`);
    if (ta === "symlink" && !x.target!.equals(y.target!)) diffs.push(`${name}: symlink target ${show(x.target!)} != ${show(y.target!)}`);
    if (!isRoot || opts.rootTimes !== false) {
      const times: Array<["mtime" | "atime", bigint, bigint]> = [["mtime", x.st.mtimeNs, y.st.mtimeNs]];
      if (opts.atime) times.push(["atime", x.st.atimeNs, y.st.atimeNs]);
      for (const [what, ta_, tb_] of times) {
        const d = ta_ - tb_;
        if ((d < 0n ? -d : d) >= precision) diffs.push(`${name}: ${what} ${ta_} != ${tb_} (ns)`);
      }
    }
    if (ta === "file") {
      const sparseA = x.st.blocks * 512n < x.st.size;
      const sparseB = y.st.blocks * 512n < y.st.size;
      if (sparseA !== sparseB) diffs.push(`${name}: sparse ${sparseA} != ${sparseB} (blocks ${x.st.blocks} vs ${y.st.blocks})`);
      else if (sparseA && y.st.blocks * 512n > x.st.blocks * 512n + BigInt(MiB)) {
        diffs.push(`${name}: allocates ${y.st.blocks * 512n} bytes, the original ${x.st.blocks * 512n}`);
      }
      if (x.st.size === y.st.size && contentHash(cat(rootA, "/", x.rel)) !== contentHash(cat(rootB, "/", y.rel))) {
        diffs.push(`${name}: content differs`);
      }
    }
    if (ta !== "directory" && (groupsA.get(name) ?? name) !== (groupsB.get(name) ?? name)) {
      diffs.push(`${name}: hard-link group [${groupsA.get(name) ?? name}] != [${groupsB.get(name) ?? name}]`);
    }
  }

  if (withXattrs) {
    const xa = xattrDump(rootA);
    const xb = xattrDump(rootB);
    const relOf = (k: string) => Buffer.from(k === "." ? "." : k.replace(/^\.\//, ""), "latin1");
    for (const k of new Set([...xa.keys(), ...xb.keys()])) {
      if (opts.ignore?.(relOf(k))) continue;
      const va = xa.get(k) ?? "";
      const vb = xb.get(k) ?? "";
      if (va !== vb) diffs.push(`${k}: xattrs ${JSON.stringify(va)} != ${JSON.stringify(vb)}`);
    }
  }
  return diffs;
}
