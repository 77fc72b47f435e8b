/**
 * Shared test fixture: a synthetic tree of every object kind, turned into a dump stream by
 * driving DumpWriter the way the backup engine will (two passes, ascending inodes), plus
 * helpers to run external tools.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import type { Entry, EntryType, Timespec } from "../../../../formats/entry.ts";
import { InodeMap } from "../../../../formats/dump/inodes.ts";
import { DirectoryIndex, DumpReader, type DumpEvent, type TapeInfo } from "../../../../formats/dump/reader.ts";
import { DumpWriter, materialize, type DirChild, type DumpWarning, type DumpWriterOptions } from "../../../../formats/dump/writer.ts";

export const MiB = 1024 * 1024;

/** One filesystem object of the test tree (several paths = hard links). */
export interface TestObject {
  /** Fake st_ino, unique per object. */
  id: number;
  paths: Buffer[];
  type: Exclude<EntryType, "hardlink">;
  mode: number;
  uid: number;
  gid: number;
  mtime: Timespec;
  size: number;
  sparse?: Array<{ offset: number; length: number }>;
  linkTarget?: Buffer;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Array<[Buffer, Buffer]>;
  /** Content generator for files: bytes [offset, offset+length). */
  read?: (offset: number, length: number) => Buffer;
}

/** Deterministic bytes depending on a seed and the absolute position. */
export function pattern(seed: number, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = ((offset + i) * 31 + seed * 7 + ((offset + i) >> 10)) & 0xff;
  return out;
}

/** Content of a sparse file: pattern inside the runs, zeros elsewhere. */
function sparseReader(seed: number, runs: Array<{ offset: number; length: number }>) {
  return (offset: number, length: number): Buffer => {
    const out = Buffer.alloc(length);
    for (const r of runs) {
      const from = Math.max(offset, r.offset);
      const to = Math.min(offset + length, r.offset + r.length);
      if (to > from) pattern(seed, from, to - from).copy(out, from - offset);
    }
    return out;
  };
}

/** POSIX ACL in getxattr form (version 2): u::rw- u:1234:rw- g::r-- m::rw- o::r-- */
export function aclValue(): Buffer {
  const entries: Array<[tag: number, perm: number, id: number]> = [
    [0x01, 6, 0xffffffff],
    [0x02, 6, 1234],
    [0x04, 4, 0xffffffff],
    [0x10, 6, 0xffffffff],
    [0x20, 4, 0xffffffff],
  ];
  const buf = Buffer.alloc(4 + 8 * entries.length);
  buf.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    buf.writeUInt16LE(tag, 4 + 8 * i);
    buf.writeUInt16LE(perm, 6 + 8 * i);
    buf.writeUInt32LE(id, 8 + 8 * i);
  });
  return buf;
}

export const NON_UTF8 = Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e]); // "f\xff\xfe.bin"
export const NAME_254 = Buffer.from("L".repeat(250) + ".txt");
export const NAME_255 = Buffer.from("M".repeat(251) + ".txt");
export const SPARSE_SIZE = 600 * MiB + 123;

const B = (s: string): Buffer => Buffer.from(s);
const T = (sec: number, nsec = 0): Timespec => ({ sec, nsec });

/** The test tree. `big` adds the ~600 MiB sparse file (many TS_ADDR headers). */
export function testTree(big: boolean): TestObject[] {
  const dir = (id: number, path: string, mode = 0o755, extra: Partial<TestObject> = {}): TestObject => ({
    id, paths: [B(path)], type: "directory", mode, uid: 0, gid: 0, mtime: T(1_600_000_000, 5000), size: 0, ...extra,
  });
  const file = (id: number, paths: Buffer[], content: Buffer, extra: Partial<TestObject> = {}): TestObject => ({
    id, paths, type: "file", mode: 0o644, uid: 1000, gid: 100, mtime: T(1_650_000_000, 987_654_321),
    size: content.length, read: (o, l) => content.subarray(o, o + l), ...extra,
  });
  const objs: TestObject[] = [
    dir(100, "."),
    dir(101, "a", 0o750, { xattrs: [[B("user.dirattr"), B("on a directory")]] }),
    dir(102, "a/b"),
    dir(103, "a/b/c", 0o700, { uid: 70000, gid: 80000 }),
    file(200, [B("hello.txt")], B("hello world\n"), {
      uid: 70000, gid: 80000, mode: 0o4664 /* group bits = ACL mask */, mtime: T(1_700_000_000, 123_456_789),
      xattrs: [[B("user.comment"), B("hello")], [B("system.posix_acl_access"), aclValue()]],
    }),
    file(201, [B("empty")], Buffer.alloc(0)),
    file(202, [B("a/b/c/deep.bin")], pattern(2, 0, 3000)),
    file(204, [B("hard1"), B("a/hard2")], B("linked\n")),
    file(205, [Buffer.concat([B("a/"), NON_UTF8])], B("not utf-8\n")),
    file(206, [Buffer.concat([B("a/b/"), NAME_254])], B("long name\n")),
    file(208, [B("tail-hole")], Buffer.alloc(0), { size: 300_000, sparse: [{ offset: 0, length: 5000 }], read: sparseReader(8, [{ offset: 0, length: 5000 }]) }),
    { id: 300, paths: [B("link")], type: "symlink", mode: 0o777, uid: 1000, gid: 100, mtime: T(1_600_000_001), size: 9, linkTarget: B("hello.txt") },
    { id: 301, paths: [B("a/longlink")], type: "symlink", mode: 0o777, uid: 0, gid: 0, mtime: T(1_600_000_002), size: 1500, linkTarget: B("x/".repeat(749) + "y") },
    { id: 400, paths: [B("cdev")], type: "chardev", mode: 0o600, uid: 0, gid: 6, mtime: T(1_600_000_003), size: 0, devMajor: 4, devMinor: 64 },
    { id: 401, paths: [B("bigdev")], type: "chardev", mode: 0o600, uid: 0, gid: 0, mtime: T(1_600_000_004), size: 0, devMajor: 300, devMinor: 70000 },
    { id: 402, paths: [B("bdev")], type: "blockdev", mode: 0o660, uid: 0, gid: 6, mtime: T(1_600_000_005), size: 0, devMajor: 8, devMinor: 1 },
    { id: 403, paths: [B("fifo")], type: "fifo", mode: 0o644, uid: 1000, gid: 100, mtime: T(1_600_000_006, 1000), size: 0 },
    { id: 404, paths: [B("a/sock")], type: "socket", mode: 0o755, uid: 0, gid: 0, mtime: T(1_600_000_007), size: 0 },
  ];
  // Data in the second group of 512 slots: a TS_ADDR header with data records.
  const twoRuns = [{ offset: 0, length: 2000 }, { offset: 530_000, length: 3000 }];
  objs.push(file(209, [B("a/b/two-groups")], Buffer.alloc(0), { size: 600_000, sparse: twoRuns, read: sparseReader(9, twoRuns) }));
  if (big) {
    objs.push(file(203, [B("medium.bin")], pattern(3, 0, 700_000)));
    const runs = [
      { offset: 0, length: 4096 },
      { offset: 300 * MiB + 100, length: 10_000 },
      { offset: SPARSE_SIZE - 5000, length: 5000 },
    ];
    objs.push(file(500, [B("sparse.img")], Buffer.alloc(0), { size: SPARSE_SIZE, sparse: runs, read: sparseReader(5, runs) }));
  }
  return objs;
}

export function toEntry(o: TestObject, path: Buffer): Entry {
  return {
    path, type: o.type, mode: o.mode, uid: o.uid, gid: o.gid, size: o.size, mtime: o.mtime, atime: o.mtime, ctime: o.mtime,
    linkTarget: o.linkTarget, devMajor: o.devMajor, devMinor: o.devMinor, xattrs: o.xattrs, sparse: o.sparse,
    dev: 1, ino: o.id, nlink: o.paths.length,
  };
}

function parentOf(path: Buffer): Buffer {
  const slash = path.lastIndexOf(0x2f);
  return slash < 0 ? B(".") : path.subarray(0, slash);
}

function baseOf(path: Buffer): Buffer {
  return path.subarray(path.lastIndexOf(0x2f) + 1);
}

export interface BuiltStream {
  stream: Buffer;
  warnings: DumpWarning[];
  /** object id -> dump inode number */
  inoOf: Map<number, number>;
  /** dump inode number -> fh_info offset */
  offsets: Map<number, number>;
  objects: TestObject[];
}

/** Drive the writer like the engine: directories, then other inodes ascending, then TS_END. */
export function buildStream(objects: TestObject[], opts: Partial<DumpWriterOptions> = {}): BuiltStream {
  const map = new InodeMap();
  const inoOf = new Map<number, number>();
  for (const o of objects) {
    inoOf.set(o.id, o.paths[0].equals(B(".")) ? map.setRoot(1, o.id) : map.assign(1, o.id));
  }
  const byPath = new Map<string, TestObject>();
  for (const o of objects) for (const p of o.paths) byPath.set(p.toString("latin1"), o);
  const children = new Map<number, DirChild[]>();
  for (const o of objects) {
    for (const p of o.paths) {
      if (p.equals(B("."))) continue;
      const parent = byPath.get(parentOf(p).toString("latin1"))!;
      const list = children.get(parent.id) ?? [];
      list.push({ name: baseOf(p), ino: inoOf.get(o.id)!, type: o.type });
      children.set(parent.id, list);
    }
  }
  const writer = new DumpWriter({ date: 1_760_000_000, level: 0, label: "test", filesys: "/srv/data", host: "testhost", inodes: inoOf.values(), maxino: map.maxino, ...opts });
  const parts: Buffer[] = [writer.begin()];
  const offsets = new Map<number, number>();
  const sorted = [...objects].sort((x, y) => inoOf.get(x.id)! - inoOf.get(y.id)!);
  for (const o of sorted.filter((x) => x.type === "directory")) {
    const ino = inoOf.get(o.id)!;
    const parent = o.paths[0].equals(B(".")) ? 2 : inoOf.get(byPath.get(parentOf(o.paths[0]).toString("latin1"))!.id)!;
    const w = writer.directory(ino, toEntry(o, o.paths[0]), children.get(o.id) ?? [], parent);
    offsets.set(ino, w.offset);
    parts.push(w.bytes);
  }
  for (const o of sorted.filter((x) => x.type !== "directory")) {
    const ino = inoOf.get(o.id)!;
    if (!writer.isNamed(ino)) continue; // all its names were left out (255-byte name)
    const w = writer.inode(ino, toEntry(o, o.paths[0]));
    offsets.set(ino, w.offset);
    parts.push(materialize(w.steps, o.read ?? (() => Buffer.alloc(0))));
  }
  parts.push(writer.end());
  return { stream: Buffer.concat(parts), warnings: writer.warnings, inoOf, offsets, objects };
}

/** Run a command to completion (always waited for); never throws on a non-zero exit. */
export function run(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    child.stdin.on("error", () => {}); // the tool may exit before reading its input
    child.stdin.end(opts.input ?? Buffer.alloc(0));
  });
}

/** Look a tool up in PATH (and sbin). */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
  for (const d of dirs) if (d && existsSync(`${d}/${name}`)) return `${d}/${name}`;
  return undefined;
}

/**
 * Tools a test needs: outside CI a missing one skips the test (with a message); in CI it
 * is a failure, so the suite cannot pass by skipping.
 */
export function needTools(names: string[]): { ok: boolean; missing: string[] } {
  const missing = names.filter((n) => !findTool(n));
  if (missing.length > 0) {
    if (process.env.CI) throw new Error(`required tools missing in CI: ${missing.join(", ")}`);
    console.warn(`skipping: tools missing: ${missing.join(", ")}`);
  }
  return { ok: missing.length === 0, missing };
}

export { DUMPINSPECT } from "../../../helpers/dumpinspect.ts";

// ---- reading back -------------------------------------------------------------------


export interface ReadInode {
  entry: Entry;
  offset: number;
  /** Data events in order: [fileOffset, bytes]. */
  data: Array<[number, Buffer]>;
  dirEntries?: Array<{ name: Buffer; ino: number }>;
  ended: boolean;
}

export interface ReadResult {
  tape?: TapeInfo;
  maps: Record<string, Buffer>;
  inodes: Map<number, ReadInode>;
  index: DirectoryIndex;
  warnings: string[];
  ended: boolean;
}

/**
 * Feed `stream` to a DumpReader in chunks from `chunkSize` (a function so tests can vary
 * it) and gather everything, checking the per-inode event order as it goes.
 */
export function readAll(stream: Buffer, chunkSize: (i: number) => number, startOffset = 0): ReadResult {
  const reader = new DumpReader({ startOffset });
  const res: ReadResult = { maps: {}, inodes: new Map(), index: new DirectoryIndex(), warnings: [], ended: false };
  let open: number | undefined;
  const handle = (ev: DumpEvent): void => {
    switch (ev.kind) {
      case "tape":
        res.tape = ev.tape;
        break;
      case "map":
        res.maps[ev.which] = ev.map;
        break;
      case "inode":
        if (open !== undefined && open !== ev.ino) throw new Error(`inode ${ev.ino} while ${open} is open`);
        open = ev.ino;
        res.inodes.set(ev.ino, { entry: ev.entry, offset: ev.offset, data: [], ended: false });
        break;
      case "data": {
        if (open !== ev.ino) throw new Error(`data for ${ev.ino} while ${open} is open`);
        res.inodes.get(ev.ino)!.data.push([ev.fileOffset, Buffer.from(ev.chunk)]); // copy: chunk is a view of our input
        break;
      }
      case "directory":
        res.inodes.get(ev.ino)!.dirEntries = ev.entries;
        res.index.add(ev.ino, ev.entries);
        break;
      case "xattrs":
        if (open !== ev.ino) throw new Error(`xattrs for ${ev.ino} while ${open} is open`);
        break;
      case "end-of-inode":
        if (open !== ev.ino) throw new Error(`end of ${ev.ino} while ${open} is open`);
        res.inodes.get(ev.ino)!.ended = true;
        open = undefined;
        break;
      case "warning":
        res.warnings.push(ev.message);
        break;
      case "end":
        res.ended = true;
        break;
    }
  };
  let pos = 0;
  for (let i = 0; pos < stream.length; i++) {
    const n = Math.max(1, chunkSize(i));
    for (const ev of reader.feed(stream.subarray(pos, pos + n))) handle(ev);
    pos += n;
  }
  for (const ev of reader.finish()) handle(ev);
  return res;
}

/** Merge data events into contiguous runs (to compare with the expected data runs). */
export function dataRuns(data: Array<[number, Buffer]>): Array<{ offset: number; length: number }> {
  const runs: Array<{ offset: number; length: number }> = [];
  for (const [off, buf] of data) {
    const last = runs[runs.length - 1];
    if (last && last.offset + last.length === off) last.length += buf.length;
    else runs.push({ offset: off, length: buf.length });
  }
  return runs;
}

/** A tiny deterministic PRNG (tests must be reproducible). */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}
