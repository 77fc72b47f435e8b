/**
 * The dump backup: walk -> synthetic inode numbers -> DumpWriter -> data connection, with
 * file history (digest shared/spec/dump-format.md §3, §4, §7.4, §10, §11).
 *
 * Dump is inode-ordered, not walk-ordered, so the backup makes two passes:
 *
 *  1. Walk the tree once. Every object gets its persistent dump inode number (root = 2; the
 *     table lives in the state directory so a file keeps its number across the dumps of a
 *     level chain). Kept per object: its first path and type; per directory also
 *     its metadata and its entries (name + number), which go on tape as the directory.
 *  2. Write: TS_TAPE/CLRI/BITS, every directory (ascending), then every other dumped inode in
 *     ascending order, each lstat-ed again just before it is written (so what goes on tape is
 *     what is there now), then TS_END.
 *
 * Incrementals (LEVEL 1-31, or a BASE_DATE token; src/incremental decides the base): a
 * non-directory goes on tape when its mtime or ctime is at or after the start of the base
 * backup (full precision, inclusive), and so does everything under a directory that moved or
 * is new since the base (same dev+ino elsewhere, or unknown), whose files keep their old
 * times. Every directory goes on tape at every level (the digest's "simplest correct rule"),
 * so a restore always has every directory's full list of names: that is how `restore -r` and
 * our recovery find what was deleted or renamed. TS_CLRI = the inodes in use now (restore -r
 * removes what is not in it), TS_BITS = the inodes on this tape, c_ddate = the base dump's
 * c_date (restore -r checks the chain with it).
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Entry, EntryType } from "../../formats/entry.ts";
import { DumpWriter, InodeMap, longNameClashes, type DirChild, type DumpWarning, type InodeMapCompact, type InodeMapJSON, type WriteStep } from "../../formats/dump/index.ts";
import { MAX_NAME } from "../../formats/dump/directory.ts";
import { changedSince, dirIsKnown, type BackupBase, type DirInventory } from "../incremental/index.ts";
import { listDataRuns, type DataRun, type NativeApi } from "../native/index.ts";
import { ChunkedWriter, endAll } from "../transport/backpressure.ts";
import { FrameRecycler, show, type BackupOptions, type BackupResult } from "./backup.ts";
import { O_NOFOLLOW, asError, deviceNumbers, errorCode, joinPath, openForBackup, stripTrailingSlashes, typeFromMode } from "./fsutil.ts";
import { fhStat } from "./history.ts";
import { listScanAvailable, scan, type ScanItem } from "./scan.ts";
import type { ListedNames } from "./walker.ts";
import { entryFromStat, mayBeSparse, readXattrs, sparseOrUndefined } from "./stat-entry.ts";

const DOT = Buffer.from(".");
const DOTDOT = Buffer.from("..");
const ROOTINO = 2;
/** Files up to this size are read whole, ahead of their turn (like the tar backup). */
const SMALL_FILE = 256 * 1024;
/** Inodes described (and small files read) ahead of the one being written. */
const READ_AHEAD = 64;
const PIECE = 1024 * 1024;
/** Tape records per block when the mover's record size is not known to the engine (10 KiB). */
const DEFAULT_NTREC = 10;
/**
 * Room the scan workers leave in front of each file they read ahead, for its TS_INODE header,
 * and the unit its content is padded to: the header, the content and its padding then go out
 * as one slice of the read-ahead buffer, which is reused (FrameRecycler), instead of copied into
 * fresh memory (on this kind of VM every new page costs tens of microseconds).
 */
const ROOM = 1024;
/** How pass 2 opens what it reads (O_NOFOLLOW: a name replaced by a symlink is not followed). */
const OPEN_FLAGS = fs.constants.O_RDONLY | O_NOFOLLOW;

type NonDirType = Exclude<EntryType, "hardlink" | "directory">;

/** A directory from pass 1: written on tape from this (its entries are its content). */
interface DirRecord {
  ino: number;
  rel: Buffer;
  parent: number;
  entry: Entry;
  children: ChildList;
  /** Moved here or new since the base: everything under it goes on tape. */
  whole: boolean;
}

const CHILD_TYPES: EntryType[] = ["file", "directory", "symlink", "fifo", "chardev", "blockdev", "socket"];

/**
 * A directory's entries from pass 1, kept until the directory is on tape: the names one after
 * another in one buffer, numbers and types in arrays, rather than an object and a Buffer per
 * name. At 200,000 files those were 400,000 objects, half the heap of a dump, that the garbage
 * collector went through again and again until the directories were written.
 */
export class ChildList {
  private bytes = Buffer.allocUnsafe(64);
  private used = 0;
  private readonly ends: number[] = [];
  private readonly inos: number[] = [];
  private readonly types: number[] = [];
  /** The longest name's length (a name past 254 bytes may clash with another: dropClashingNames). */
  longest = 0;

  get length(): number {
    return this.inos.length;
  }

  /** Adds the entry named bytes[start, start + length). */
  add(bytes: Uint8Array, start: number, length: number, ino: number, type: EntryType): void {
    if (this.used + length > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, this.used + length));
      this.bytes.copy(grown, 0, 0, this.used);
      this.bytes = grown;
    }
    this.bytes.set(bytes.subarray(start, start + length), this.used);
    this.used += length;
    if (length > this.longest) this.longest = length;
    this.ends.push(this.used);
    this.inos.push(ino);
    this.types.push(CHILD_TYPES.indexOf(type));
  }

  ino(i: number): number {
    return this.inos[i]!;
  }

  name(i: number): Buffer {
    return this.bytes.subarray(i === 0 ? 0 : this.ends[i - 1]!, this.ends[i]!);
  }

  /** The entries as the dump writer takes them (names are views of this list: keep it while they are used). */
  list(): DirChild[] {
    const out: DirChild[] = [];
    for (let i = 0; i < this.inos.length; i++) out.push({ name: this.name(i), ino: this.inos[i]!, type: CHILD_TYPES[this.types[i]!]! });
    return out;
  }

  /** The list without entries `drop` (indexes). */
  without(drop: ReadonlySet<number>): ChildList {
    const kept = new ChildList();
    for (let i = 0; i < this.inos.length; i++) {
      if (drop.has(i)) continue;
      const name = this.name(i);
      kept.add(name, 0, name.length, this.inos[i]!, CHILD_TYPES[this.types[i]!]!);
    }
    return kept;
  }
}

/** A non-directory from pass 1: just enough to find it again. */
interface ObjRecord {
  rel: Buffer;
  type: NonDirType;
  /** Pass-1 data runs of a sparse file (used when SEEK_DATA is not available in pass 2). */
  sparse?: DataRun[];
  size: number;
  /** Other names of a hard-linked file (file-style history needs every path). */
  moreNames?: Buffer[];
}

const OBJ_TYPES: NonDirType[] = ["file", "symlink", "fifo", "chardev", "blockdev", "socket"];
const ABSENT = 255;

function grown<T extends Float64Array | Uint32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/**
 * Pass 1's non-directories by dump inode number, in arrays indexed by the number rather than an
 * object and a Map entry each, their paths copied one after another into one buffer (a tree of
 * small files is mostly these; fewer live objects also means less for the garbage collector to
 * go through again and again during pass 2, and the walk's batches are not kept alive by views
 * of their bytes). get() and rel() hand out views made for the caller: change a record with
 * addName(), not through them.
 */
class ObjectTable {
  private paths = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  /** Per inode: where its path starts in `paths`, its length, its type (ABSENT: none). */
  private starts = new Float64Array(1024);
  private lengths = new Uint32Array(1024);
  private types = new Uint8Array(1024).fill(ABSENT);
  private sizes = new Float64Array(1024);
  private end = 0;
  /** The few with data runs, or more than one name. */
  private readonly sparse = new Map<number, DataRun[]>();
  private readonly names = new Map<number, Buffer[]>();

  set(ino: number, rec: ObjRecord): void {
    this.room(ino, rec.rel.length);
    this.paths.set(rec.rel, this.used); // (TypedArray.set: Buffer.copy costs a native call per path)
    this.placed(ino, rec.rel.length, rec.type, rec.size);
    if (rec.sparse) this.sparse.set(ino, rec.sparse);
    if (rec.moreNames) this.names.set(ino, rec.moreNames);
  }

  /** An object known by its directory's path (`dirRel`, "." for the root) and its name alone. */
  setNamed(ino: number, dirRel: Buffer, names: Buffer, start: number, nameLength: number, type: NonDirType): void {
    const inRoot = dirRel.length === 1 && dirRel[0] === 0x2e;
    const length = inRoot ? nameLength : dirRel.length + 1 + nameLength;
    this.room(ino, length);
    let at = this.used;
    if (!inRoot) {
      this.paths.set(dirRel, at);
      this.paths[at + dirRel.length] = 0x2f;
      at += dirRel.length + 1;
    }
    names.copy(this.paths, at, start, start + nameLength);
    this.placed(ino, length, type, 0);
  }

  has(ino: number): boolean {
    return ino < this.end && this.types[ino] !== ABSENT;
  }

  typeOf(ino: number): NonDirType {
    return OBJ_TYPES[this.types[ino]!]!;
  }

  /** Room for inode `ino` and a path of `length` bytes. */
  private room(ino: number, length: number): void {
    if (ino >= this.types.length) this.grow(ino);
    if (this.used + length <= this.paths.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.paths.length * 2, this.used + length));
    this.paths.copy(bigger, 0, 0, this.used);
    this.paths = bigger;
  }

  /** The path just written at `used` is inode `ino`'s. */
  private placed(ino: number, length: number, type: NonDirType, size: number): void {
    this.starts[ino] = this.used;
    this.lengths[ino] = length;
    this.used += length;
    this.end = Math.max(this.end, ino + 1);
    this.types[ino] = OBJ_TYPES.indexOf(type);
    this.sizes[ino] = size;
  }

  get(ino: number): ObjRecord | undefined {
    const rel = this.rel(ino);
    if (rel === undefined) return undefined;
    const rec: ObjRecord = { rel, type: OBJ_TYPES[this.types[ino]!]!, size: this.sizes[ino]! };
    const sparse = this.sparse.get(ino);
    if (sparse) rec.sparse = sparse;
    const names = this.names.get(ino);
    if (names) rec.moreNames = names;
    return rec;
  }

  /** The path alone (pass 2's list). */
  rel(ino: number): Buffer | undefined {
    if (!(ino < this.end) || this.types[ino] === ABSENT) return undefined;
    const start = this.starts[ino]!;
    return this.paths.subarray(start, start + this.lengths[ino]!);
  }

  /** The paths of `inos` as a list scan takes them (scan.ts packList's layout), straight from the table: no Buffer per path. */
  packedPaths(inos: number[]): Uint8Array {
    let total = 0;
    for (const ino of inos) total += 4 + this.lengths[ino]!;
    const out = Buffer.allocUnsafeSlow(total); // an ArrayBuffer of its own: moved to the scan's walker, not copied
    let at = 0;
    for (const ino of inos) {
      const length = this.lengths[ino]!;
      out.writeUInt32LE(length, at);
      this.paths.copy(out, at + 4, this.starts[ino]!, this.starts[ino]! + length);
      at += 4 + length;
    }
    return out;
  }

  /** Another name of the inode (a hard link). */
  addName(ino: number, path: Buffer): void {
    const names = this.names.get(ino);
    if (names) names.push(path);
    else this.names.set(ino, [path]);
  }

  delete(ino: number): void {
    if (!(ino < this.end)) return;
    this.types[ino] = ABSENT;
    this.sparse.delete(ino);
    this.names.delete(ino);
  }

  /** The numbers held, ascending. */
  *keys(): Generator<number> {
    for (let ino = 0; ino < this.end; ino++) if (this.types[ino] !== ABSENT) yield ino;
  }

  private grow(ino: number): void {
    const n = Math.max(ino + 1, this.types.length * 2);
    const types = new Uint8Array(n).fill(ABSENT);
    types.set(this.types);
    this.types = types;
    this.sizes = grown(this.sizes, new Float64Array(n));
    this.starts = grown(this.starts, new Float64Array(n));
    this.lengths = grown(this.lengths, new Uint32Array(n));
  }
}

/**
 * A set of dump inode numbers as one bit each, grown as needed. Pass 1 marks every object it
 * sees and every one it will dump: a Set<number> of 200,000 numbers cost more main-thread time
 * than the rest of the walk's bookkeeping (hashing, rehashing as it grew), and a bitmap also
 * hands its numbers back in ascending order, with no sort.
 */
export class InodeBits {
  private bits = new Uint8Array(1024);
  private count = 0;

  add(ino: number): void {
    const byte = ino >>> 3;
    if (byte >= this.bits.length) {
      const bigger = new Uint8Array(Math.max(byte + 1, this.bits.length * 2));
      bigger.set(this.bits);
      this.bits = bigger;
    }
    const mask = 1 << (ino & 7);
    if ((this.bits[byte]! & mask) === 0) {
      this.bits[byte]! |= mask;
      this.count++;
    }
  }

  has(ino: number): boolean {
    const byte = ino >>> 3;
    return byte < this.bits.length && (this.bits[byte]! & (1 << (ino & 7))) !== 0;
  }

  delete(ino: number): void {
    if (!this.has(ino)) return;
    this.bits[ino >>> 3]! &= ~(1 << (ino & 7));
    this.count--;
  }

  get size(): number {
    return this.count;
  }

  /** The numbers held, ascending. */
  toArray(): number[] {
    const out = new Array<number>(this.count);
    let n = 0;
    for (let byte = 0; byte < this.bits.length; byte++) {
      const b = this.bits[byte]!;
      if (b === 0) continue;
      for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) out[n++] = byte * 8 + bit;
    }
    return out;
  }
}

/**
 * What the state directory keeps per filesystem (stateDir/dump/<fsid>.json): the inode
 * numbers. (Dump dates are src/incremental's dumpdates, shared with tar.) Version 2 holds them
 * compact (InodeMapCompact); version 1, "dev:ino" pairs, is still read.
 */
interface DumpState {
  version: 1 | 2;
  /** For people reading the file: which backup root (latin1) and st_dev it belongs to. */
  root: string;
  dev: string;
  inodes: InodeMapJSON | InodeMapCompact;
}

export async function runDumpBackup(opts: BackupOptions): Promise<BackupResult> {
  let warnings = 0;
  const warn = (m: string) => {
    warnings++;
    opts.warn(m);
  };
  // The dump's date is the backup's start time, taken before the walk: anything changed while
  // we walk is newer and goes into the next incremental. On tape it is whole seconds (c_date).
  const startNs = opts.startTime ?? BigInt(Date.now()) * 1_000_000n;
  const date = Number(startNs / 1_000_000_000n);
  const root = stripTrailingSlashes(opts.root);

  // ---- state: inode numbers and dump dates of this filesystem ----
  // Two dumps of one filesystem at once would each extend the inode table and the last save
  // would drop the other's numbers: refuse the second one (checked before anything is awaited,
  // so that of two jobs started together the first one wins).
  const key = root.toString("latin1");
  if (running.has(key)) throw new Error(`another dump of ${show(root)} is running; try again when it has finished`);
  running.add(key);
  try {
    const rootStat = await fsp.stat(root, { bigint: true });
    const statePath = stateFile(opts.stateDir, root, rootStat.dev);
    return await dumpFilesystem(opts, root, rootStat.dev, statePath, date, warn, () => warnings);
  } finally {
    running.delete(key);
  }
}

/** Backup roots being dumped in this process. */
const running = new Set<string>();

async function dumpFilesystem(
  opts: BackupOptions,
  root: Buffer,
  rootDev: bigint,
  statePath: string,
  date: number,
  warn: (m: string) => void,
  warningCount: () => number,
): Promise<BackupResult> {
  const base: BackupBase | undefined = opts.base?.since === undefined ? undefined : opts.base;
  /** Where objects are read: the live root, or its view in a snapshot. Names and headers use `root`. */
  const from = opts.source ? stripTrailingSlashes(opts.source) : root;
  const incremental = base !== undefined;
  const inodes = (await loadState(statePath, incremental, warn)) ?? new InodeMap();
  // c_ddate: the base dump's c_date, which restore -r compares with the previous tape's c_date.
  const ddate = base ? Number((base.baseDate ?? base.since!) / 1_000_000_000n) : 0;
  const level = opts.base?.level ?? opts.level;

  // ---- pass 1: walk, number, collect directories ----
  const tree = new Pass1(root, inodes, base);
  // A level 0 takes every inode whatever its times, and describes each again in pass 2: pass 1
  // needs only identities and types, which the directory listing gives (no lstat per file), where
  // d_ino is st_ino. An incremental compares times, so it lstats everything.
  const statFiles = incremental || !(await direntInoIsStIno(from));
  await walkTree(opts, from, tree, statFiles, warn);
  const { dirs, objects, dumped, existing } = tree;
  if (dirs.length === 0 || dirs[0]!.ino !== ROOTINO) throw new Error(`${show(root)}: the backup root could not be read`);
  tree.dirByRel.clear();
  dropClashingNames(dirs, objects, dumped, existing, warn);

  // A new level 0 starts a new chain: identities gone since are dropped (their numbers are
  // still never handed out again, see InodeMap). Then the table is saved before any byte is
  // written, so every number that reaches a tape is remembered.
  if (level === 0) inodes.keepOnly((ino) => tree.seenNumbers.has(ino));
  await saveState(statePath, { version: 2, root: root.toString("latin1"), dev: String(rootDev), inodes: inodes.toCompact() });

  // ---- pass 2: the stream ----
  const dirsInWalkOrder = [...dirs];
  dirs.sort((a, b) => a.ino - b.ino);
  const dumpedFiles = dumped.toArray(); // ascending
  const writer = new DumpWriter({
    date,
    ddate,
    level,
    filesys: cut(root, 63),
    dev: cut(root, 63),
    host: cut(Buffer.from(hostname()), 63),
    // Records per tape block, in 1 KiB units: the mover's record size when we know it.
    ntrec: opts.recordSize && opts.recordSize % 1024 === 0 ? Math.min(opts.recordSize / 1024, 1024) : DEFAULT_NTREC,
    inodes: existing,
    dumped: incremental ? [...dirs.map((d) => d.ino), ...dumpedFiles] : undefined,
  });
  existing.length = 0;
  const out = new ChunkedWriter(opts.out);
  const pass2 = new Pass2(opts, writer, out, from, warn, dirs, objects);

  await out.push(writer.begin());
  if (opts.history && opts.historyStyle === "dir") {
    // An incremental's history names only what it holds: directories, and the files on this tape.
    const onTape = incremental ? new Set(dumpedFiles) : undefined;
    await postDirectories(opts, dirsInWalkOrder, onTape && ((c) => c.type === "directory" || onTape.has(c.ino)));
  }
  await writeDirectories(pass2, dirs);
  await writeFiles(pass2, dumpedFiles, objects);

  await out.push(writer.end());
  pass2.forward();
  await out.flush();
  await endAll(opts.out);
  pass2.frames.end();

  // The data service records the backup (dumpdates, DUMP_DATE) once it has succeeded.
  return { bytes: out.offset, entries: pass2.entries, warnings: warningCount(), dirs: tree.inventory };
}

// The passes are small functions and classes rather than one: the JIT compiles a function whole
// once a loop in it is hot, and compiled again whenever its assumptions fail. As one function of
// some 13,000 bytecodes, the dump took 85-220 ms of compiler time per compile, several times
// over a server's first dumps (on two cores, that is taken from the backup).

/** Pass 1's findings: the tree's directories and objects, numbered. */
class Pass1 {
  readonly dirs: DirRecord[] = [];
  readonly dirByRel = new Map<string, DirRecord>();
  readonly objects = new ObjectTable();
  /** Every number in the tree (the dump's TS_CLRI map is made from it). */
  readonly existing: number[] = [];
  /** The numbers that go on tape. */
  readonly dumped = new InodeBits();
  /** The numbers of the identities seen in this walk. */
  readonly seenNumbers = new InodeBits();
  /** The tree's directories (path -> dev:ino), recorded for the next incremental. */
  readonly inventory: DirInventory = new Map();
  /** The parent of the last entry: the walk gives a directory's entries one after another. */
  private lastParent: DirRecord | undefined;

  constructor(
    /** The backup's root (FILESYSTEM), for messages. */
    private readonly root: Buffer,
    private readonly inodes: InodeMap,
    private readonly base: BackupBase | undefined,
  ) {}

  /**
   * A directory's non-directories from its listing alone (statFiles false: a level 0, which
   * takes them all): numbered and named here without an Entry each. Their directory's item came
   * first.
   */
  listed(listed: ListedNames): void {
    const { objects, seenNumbers } = this;
    const parent = this.dirByRel.get(listed.dir.toString("latin1"));
    // (The walk hands a directory's names over right after the directory itself.)
    if (!parent) throw new Error(`${show(listed.dir)}: names listed before their directory`);
    const { bytes, starts, lengths } = listed;
    for (let i = 0; i < listed.count; i++) {
      const ino = this.inodes.assign(listed.dev, listed.inos[i]!);
      const start = starts[i]!;
      const length = lengths[i]!;
      // Numbered before in this walk: another name of it (a hard link), one more directory entry.
      const again = seenNumbers.has(ino) && objects.has(ino);
      seenNumbers.add(ino);
      if (again) {
        const name = Buffer.from(bytes.subarray(start, start + length));
        parent.children.add(bytes, start, length, ino, objects.typeOf(ino));
        objects.addName(ino, parent.ino === ROOTINO ? name : joinPath(parent.rel, name));
        continue;
      }
      const type = listed.types[i] as NonDirType;
      this.existing.push(ino);
      parent.children.add(bytes, start, length, ino, type);
      objects.setNamed(ino, parent.rel, bytes, start, length, type);
      this.dumped.add(ino);
    }
  }

  /** The walk's next entry (pre-order: a directory before what is in it). */
  add(entry: Entry): void {
    const { objects, base } = this;
    const isRoot = entry.path.equals(DOT);
    const dev = entry.dev ?? 0;
    const realIno = entry.ino ?? 0;
    const ino = isRoot ? this.inodes.setRoot(dev, realIno) : this.inodes.assign(dev, realIno);
    // A non-directory numbered before in this walk is another name of it: a hard link. (The walk
    // says so itself when it lstat-ed the object; described from the listing alone, it cannot.)
    const again = entry.type !== "directory" && entry.type !== "hardlink" && this.seenNumbers.has(ino) && objects.has(ino);
    this.seenNumbers.add(ino);
    const slash = entry.path.lastIndexOf(0x2f);
    const name = slash < 0 ? entry.path : entry.path.subarray(slash + 1);
    let parent: DirRecord | undefined;
    if (!isRoot) {
      const last = this.lastParent;
      parent = last && isParentOf(last, entry.path, slash) ? last : this.dirByRel.get(slash < 0 ? "." : entry.path.toString("latin1", 0, slash));
      this.lastParent = parent;
      if (!parent) return; // cannot happen: the walk is pre-order
    }
    if (entry.type === "hardlink" || again) {
      // Another name of an inode already numbered: one more directory entry, nothing else
      // (but a name inside a moved directory puts the inode on tape).
      const obj = objects.get(ino);
      if (obj) {
        parent!.children.add(name, 0, name.length, ino, obj.type);
        objects.addName(ino, entry.path);
        if (base && parent!.whole) this.dumped.add(ino);
      }
      return;
    }
    this.existing.push(ino);
    if (entry.type === "directory") {
      const key = entry.path.toString("latin1");
      this.inventory.set(key, `${dev}:${realIno}`);
      const whole = !!base && (parent?.whole || !dirIsKnown(base, key, dev, realIno, entry.ctime));
      const rec: DirRecord = { ino, rel: entry.path, parent: parent?.ino ?? ROOTINO, entry: { ...entry, path: DOT }, children: new ChildList(), whole };
      this.dirs.push(rec);
      this.dirByRel.set(key, rec);
      parent?.children.add(name, 0, name.length, ino, "directory");
      return;
    }
    if (isRoot) throw new Error(`${show(this.root)} is not a directory`);
    const type = entry.type as NonDirType;
    parent!.children.add(name, 0, name.length, ino, type);
    objects.set(ino, { rel: entry.path, type, sparse: entry.sparse, size: entry.size });
    if (!base || parent!.whole || changedSince(entry, base)) this.dumped.add(ino);
  }
}

async function walkTree(opts: BackupOptions, from: Buffer, tree: Pass1, statFiles: boolean, warn: (m: string) => void): Promise<void> {
  const items = scan({
    root: from,
    remap: opts.remap,
    native: opts.native,
    selection: opts.selection,
    dumpNames: true,
    // The other objects are described again, xattrs and all, just before they are written.
    xattrs: "directories",
    readAhead: 0,
    statFiles,
    onListed: (listed) => {
      if (opts.signal.aborted) throw opts.signal.reason ?? new Error("aborted");
      tree.listed(listed);
    },
    onError: (rel, err) => warn(`${show(rel)}: ${err.message}`),
  });
  for await (const { entry } of items) {
    if (opts.signal.aborted) throw opts.signal.reason ?? new Error("aborted");
    const wait = opts.pace?.(); // paced(), without an await per entry while there is room
    if (wait) await wait;
    tree.add(entry);
  }
}

/** Pass 2's stream: the writer, where its bytes go, and the warnings and count so far. */
class Pass2 {
  entries = 0;
  /** Inodes we already warned about (so the writer's "not written" does not repeat it). */
  readonly skipped = new Set<number>();
  /** Frames come back as in the tar backup (over a plain socket or the LOCAL pipe). */
  readonly frames: FrameRecycler;
  private seen = 0;
  private readonly dirByIno: Map<number, DirRecord>;

  constructor(
    readonly opts: BackupOptions,
    readonly writer: DumpWriter,
    readonly out: ChunkedWriter,
    /** Where objects are read (the live root or its snapshot). */
    readonly from: Buffer,
    readonly warn: (m: string) => void,
    dirs: DirRecord[],
    private readonly objects: ObjectTable,
  ) {
    this.dirByIno = new Map(dirs.map((d) => [d.ino, d]));
    this.frames = new FrameRecycler(out, opts.out);
  }

  /** The writer's new warnings, with the path of the inode they are about. */
  forward(): void {
    const { writer } = this;
    for (; this.seen < writer.warnings.length; this.seen++) {
      const w: DumpWarning = writer.warnings[this.seen]!;
      if (w.code === "not-written" && w.ino !== undefined && this.skipped.has(w.ino)) continue;
      const p = w.ino === undefined ? undefined : (this.dirByIno.get(w.ino)?.rel ?? this.objects.get(w.ino)?.rel);
      this.warn(p ? `${show(p)}: ${w.message}` : w.message);
    }
  }
}

async function writeDirectories(c: Pass2, dirs: DirRecord[]): Promise<void> {
  const { opts, out } = c;
  for (const d of dirs) {
    if (opts.signal.aborted) throw opts.signal.reason ?? new Error("aborted");
    const wait = opts.pace?.(); // paced(), without an await per entry while there is room
    if (wait) await wait;
    const { offset, bytes } = c.writer.directory(d.ino, d.entry, d.children.list(), d.parent);
    c.forward();
    await out.push(bytes);
    c.entries++;
    if (opts.history) {
      if (opts.historyStyle === "dir") await opts.history.addNode(fhStat(d.entry), d.ino, offset);
      else await opts.history.addFile(d.rel, fhStat(d.entry), d.ino, offset);
    }
    d.children = new ChildList(); // on tape now: let the names go
    opts.progress?.(out.offset, c.entries, d.rel);
  }
}

/**
 * Non-directories, ascending, each described again just before it is written: by the scan
 * workers when there are some (a list scan, small files read ahead on another core), else here,
 * the next READ_AHEAD described (and small files read) while earlier ones stream.
 */
function writeFiles(c: Pass2, inos: number[], objects: ObjectTable): Promise<void> {
  if (listScanAvailable()) return writeListScanned(c, inos, objects);
  return writeEach(c, preparedHere(inos, objects, c.from, c.opts.native));
}

/**
 * A list scan (scan.ts): the workers describe each path again and read the small files. A path
 * they could not describe comes back as a report in its place, so reports and items together
 * are the inodes in order.
 */
async function writeListScanned(c: Pass2, inos: number[], objects: ObjectTable): Promise<void> {
  const failed: Error[] = [];
  let next = 0;
  const items = scan({
    root: c.from,
    native: c.opts.native,
    list: objects.packedPaths(inos),
    readAhead: SMALL_FILE,
    headerRoom: ROOM,
    frameAlign: ROOM,
    ...c.frames.scanOptions(),
    onError: (_rel, e) => failed.push(e),
  });
  for await (const item of items) {
    // (Checked first: splice would make an array per item.)
    if (failed.length > 0) await writeEach(c, failed.splice(0).map((e) => notDescribed(inos[next++]!, objects, e)));
    const written = writeNext(c, describedAgain(inos[next++]!, objects, item));
    if (written) await written;
  }
  await writeEach(c, failed.splice(0).map((e) => notDescribed(inos[next++]!, objects, e)));
}

async function writeEach(c: Pass2, items: AsyncIterable<Prepared> | Iterable<Prepared>): Promise<void> {
  for await (const p of items) {
    const written = writeNext(c, p);
    if (written) await written;
  }
}

function writeNext(c: Pass2, p: Prepared): void | Promise<void> {
  const { opts } = c;
  if (opts.signal.aborted) throw opts.signal.reason ?? new Error("aborted");
  const wait = opts.pace?.(); // paced(), without an await per entry while there is room
  if (wait) return wait.then(() => writeFile(c, p));
  return writeFile(c, p);
}

function describedAgain(ino: number, objects: ObjectTable, item: ScanItem): Prepared {
  const rec = objects.get(ino)!;
  if (item.entry.type === "directory") return { ino, rec, entry: new Error("became a directory while being backed up") };
  return { ino, rec, entry: item.entry, content: item.content, frame: item.frame };
}

function notDescribed(ino: number, objects: ObjectTable, e: Error): Prepared {
  return { ino, rec: objects.get(ino)!, entry: errorCode(e) === "ENOENT" ? new Error("vanished before it could be backed up") : e };
}

/** One inode on tape, and its history; a promise only when something has to wait. */
function writeFile(c: Pass2, p: Prepared): void | Promise<void> {
  if (p.frame) c.frames.enter(p.frame.buffer);
  if (!c.writer.isNamed(p.ino)) return; // every name was left out: nothing would find it
  if (p.entry instanceof Error) {
    c.skipped.add(p.ino);
    c.warn(`${show(p.rec.rel)}: ${p.entry.message}; not backed up`);
    return;
  }
  const entry = p.entry;
  const { offset, steps } = c.writer.inode(p.ino, entry, p.frame?.subarray(0, ROOM));
  const written = writeSteps(c.out, steps, p, c.from, c.warn);
  if (written) return written.then(() => fileWritten(c, p, entry, offset));
  return fileWritten(c, p, entry, offset);
}

function fileWritten(c: Pass2, p: Prepared, entry: Entry, offset: number | bigint): void | Promise<void> {
  const { opts } = c;
  c.frames.used(c.out.offset);
  c.forward();
  c.entries++;
  let posted: Promise<void> | undefined;
  if (opts.history) {
    const stat = fhStat(entry);
    if (opts.historyStyle === "dir") posted = opts.history.addNode(stat, p.ino, offset);
    else posted = addFileNames(opts.history, [p.rec.rel, ...(p.rec.moreNames ?? [])], stat, p.ino, offset);
  }
  if (posted) return posted.then(() => opts.progress?.(c.out.offset, c.entries, p.rec.rel));
  opts.progress?.(c.out.offset, c.entries, p.rec.rel);
}

/** FH_ADD_FILE for each name of an inode, in order; a promise only when one has to wait. */
function addFileNames(history: NonNullable<BackupOptions["history"]>, names: Buffer[], stat: ReturnType<typeof fhStat>, ino: number, offset: number | bigint): Promise<void> | undefined {
  for (let i = 0; i < names.length; i++) {
    const posted = history.addFile(names[i]!, stat, ino, offset);
    if (posted) return posted.then(() => addFileNames(history, names.slice(i + 1), stat, ino, offset));
  }
  return undefined;
}

/** Filesystems whose getdents64 d_ino is the st_ino lstat gives (not overlayfs, not every FUSE or network filesystem). */
const DIRENT_INO_FILESYSTEMS = new Set(["ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs"]);

/** Whether the filesystem `dir` is on is one of those, by its st_dev in /proc/self/mountinfo. */
async function direntInoIsStIno(dir: Buffer): Promise<boolean> {
  try {
    const { major, minor } = deviceNumbers((await fsp.stat(dir, { bigint: true })).dev);
    const want = `${major}:${minor}`;
    for (const line of (await fsp.readFile("/proc/self/mountinfo", "utf8")).split("\n")) {
      const fields = line.split(" ");
      if (fields[2] !== want) continue;
      const dash = fields.indexOf("-", 6);
      return dash > 0 && DIRENT_INO_FILESYSTEMS.has(fields[dash + 1] ?? "");
    }
  } catch {
    // No /proc: lstat everything.
  }
  return false;
}

/** Whether `path`'s directory part (before `slash`, -1 for none) is `dir`'s path. */
function isParentOf(dir: DirRecord, path: Buffer, slash: number): boolean {
  if (slash < 0) return dir.ino === ROOTINO;
  return dir.ino !== ROOTINO && dir.rel.length === slash && path.compare(dir.rel, 0, slash, 0, slash) === 0;
}

/**
 * A 255-byte name whose first 254 bytes (what Linux restore sees) are another name of its
 * directory is left out (see the writer's longNameClashes), and with it whatever only that
 * name leads to, before the inode maps are made: nothing unnamed goes on tape.
 */
function dropClashingNames(dirs: DirRecord[], objects: ObjectTable, dumped: InodeBits, existing: number[], warn: (m: string) => void): void {
  const dropped = new Set<number>();
  let any = false;
  for (const d of dirs) {
    // Walk order: a directory's parent was seen (and maybe dropped) before it.
    if (d.ino !== ROOTINO && dropped.has(d.parent)) {
      dropped.add(d.ino);
      continue;
    }
    if (d.children.longest <= MAX_NAME) continue; // only longer names can clash (no list made: most directories)
    const children = d.children.list();
    const clashes = longNameClashes(children.map((c) => c.name));
    if (clashes.size === 0) continue;
    any = true;
    for (const i of clashes) {
      const c = children[i]!;
      warn(`${show(d.ino === ROOTINO ? c.name : Buffer.concat([d.rel, Buffer.from("/"), c.name]))}: 255-byte name left out: its first 254 bytes, all Linux restore can take, are another name here`);
      if (c.type === "directory") dropped.add(c.ino);
    }
    d.children = d.children.without(clashes);
  }
  if (!any) return;
  const kept = dirs.filter((d) => !dropped.has(d.ino));
  dirs.length = 0;
  dirs.push(...kept);
  const named = new Set<number>([ROOTINO]);
  for (const d of dirs) for (let i = 0; i < d.children.length; i++) named.add(d.children.ino(i));
  for (const ino of dumped.toArray()) if (!named.has(ino)) dumped.delete(ino);
  for (const ino of [...objects.keys()]) if (!named.has(ino)) objects.delete(ino);
  const live = existing.filter((ino) => named.has(ino));
  existing.length = 0;
  existing.push(...live);
}

/**
 * FH_ADD_DIR for every directory entry, all before any FH_ADD_NODE (digest §10): the root's
 * "." (node = parent = 2) first and its ".." second, as NDMJOB-derived DMAs require; then
 * for each directory, in walk order (a directory is named by its parent before its own
 * entries come), its "." and ".." and then its children (those `keep` accepts: an
 * incremental leaves out the names of files that are not on its tape).
 */
async function postDirectories(opts: BackupOptions, dirsInWalkOrder: DirRecord[], keep?: (c: DirChild) => boolean): Promise<void> {
  const history = opts.history!;
  for (const d of dirsInWalkOrder) {
    const up = d.ino === ROOTINO ? ROOTINO : d.parent;
    await history.addDir(DOT, d.ino, d.ino);
    await history.addDir(DOTDOT, up, d.ino);
    for (const c of d.children.list()) if (!keep || keep(c)) await history.addDir(c.name, c.ino, d.ino);
  }
}

// ---- pass 2 helpers ---------------------------------------------------------------------------

/** Without workers (Node, Deno): described and read here, READ_AHEAD inodes ahead. */
async function* preparedHere(inos: number[], objects: ObjectTable, root: Buffer, native: NativeApi | undefined): AsyncGenerator<Prepared> {
  const pending: Array<Promise<Prepared>> = [];
  let next = 0;
  const refill = () => {
    while (next < inos.length && pending.length < READ_AHEAD) {
      const ino = inos[next++]!;
      pending.push(prepare(ino, objects.get(ino)!, root, native));
    }
  };
  refill();
  while (pending.length > 0) {
    const p = await pending.shift()!;
    refill();
    yield p;
  }
}

interface Prepared {
  ino: number;
  rec: ObjRecord;
  /** The object as it is now, or why it cannot be backed up. */
  entry: Entry | Error;
  /** Whole content of a small dense file (one byte more than expected if it grew). */
  content?: Buffer | Error;
  /**
   * The worker scan's frame (ScanItem.frame): ROOM bytes for the TS_INODE header, then the
   * content read ahead, if any, with zeros to the next record. Sent from there, not copied.
   */
  frame?: Buffer;
}

async function prepare(ino: number, rec: ObjRecord, root: Buffer, native: NativeApi | undefined): Promise<Prepared> {
  const abs = joinPath(root, rec.rel);
  let entry: Entry;
  try {
    entry = await describe(abs, rec, native);
  } catch (err) {
    const e = asError(err);
    return { ino, rec, entry: errorCode(e) === "ENOENT" ? new Error("vanished before it could be backed up") : e };
  }
  const p: Prepared = { ino, rec, entry };
  if (entry.type === "file" && !entry.sparse && entry.size > 0 && entry.size <= SMALL_FILE) {
    p.content = await readWhole(abs, entry.size).catch(asError);
  }
  return p;
}

/** The object at `abs` now (lstat, link target, device numbers, data runs, xattrs), by the walk's rules. */
async function describe(abs: Buffer, rec: ObjRecord, native: NativeApi | undefined): Promise<Entry> {
  const st = await fsp.lstat(abs, { bigint: true });
  const type = typeFromMode(st.mode);
  if (!type) throw new Error(`unknown file type (mode ${st.mode.toString(8)})`);
  if (type === "directory") throw new Error("became a directory while being backed up");
  const entry = entryFromStat(rec.rel, st, type);
  if (type === "symlink") {
    entry.linkTarget = await fsp.readlink(abs, { encoding: "buffer" });
    entry.size = entry.linkTarget.length;
  } else if (mayBeSparse(type, st)) {
    // Holes: SEEK_DATA when we have it; otherwise the walk's scan, if the size is unchanged.
    if (native?.seek) {
      const fh = await openForBackup(abs, OPEN_FLAGS);
      try {
        const runs = sparseOrUndefined(listDataRuns(native.seek, fh.fd, entry.size), entry.size);
        if (runs) entry.sparse = runs;
      } finally {
        await fh.close();
      }
    } else if (rec.sparse && rec.size === entry.size) entry.sparse = rec.sparse;
  }
  if (native?.xattr) {
    try {
      const xattrs = readXattrs(native.xattr, abs);
      if (xattrs.length > 0) entry.xattrs = xattrs;
    } catch (err) {
      if (errorCode(err) === "ENOENT") throw err;
      // Without them the object is still worth having (EOPNOTSUPP: the filesystem has none).
    }
  }
  return entry;
}

/**
 * Puts an inode's steps on the wire. Data steps read the file; a file that shrank is padded
 * with zeros and one that grew is cut, because the headers already promised `length + pad`
 * bytes (every later offset depends on it). A small file read ahead into its frame (the usual
 * case) goes out here without an await (each is a trip through the microtask queue, per file):
 * a promise comes back only when the connection is full or a step needs the file itself.
 */
function writeSteps(out: ChunkedWriter, steps: Iterable<WriteStep>, p: Prepared, root: Buffer, warn: (m: string) => void): void | Promise<void> {
  const entry = p.entry as Entry;
  const frame = p.frame;
  if (!frame || (p.content instanceof Buffer && p.content.length !== entry.size) || !inFrame(p.content, frame)) return writeStepsAsync(out, steps[Symbol.iterator](), p, root, warn);
  const it = steps[Symbol.iterator]();
  for (let r = it.next(); !r.done; r = it.next()) {
    const step = r.value;
    if (step.kind === "bytes") {
      const own = step.bytes.buffer === frame.buffer && step.bytes.byteOffset === frame.byteOffset;
      if (own ? out.tryPushOwned(frame, 0, ROOM) : out.tryPush(step.bytes)) continue;
      return (own ? out.pushOwned(frame, 0, ROOM) : out.push(step.bytes)).then(() => writeStepsAsync(out, it, p, root, warn));
    }
    const end = ROOM + step.fileOffset + step.length + step.pad;
    if (frame.length < end) return writeStepsAsync(out, it, p, root, warn, step);
    if (!out.tryPushOwned(frame, ROOM + step.fileOffset, end)) return out.pushOwned(frame, ROOM + step.fileOffset, end).then(() => writeStepsAsync(out, it, p, root, warn));
  }
}

/** The rest of writeSteps from `it` (and `first`, a step taken from it already), with awaits. */
async function writeStepsAsync(out: ChunkedWriter, it: Iterator<WriteStep>, p: Prepared, root: Buffer, warn: (m: string) => void, first?: WriteStep): Promise<void> {
  const entry = p.entry as Entry;
  let fh: fsp.FileHandle | undefined;
  let problem: string | undefined;
  if (p.content instanceof Buffer && p.content.length !== entry.size) problem = "changed size while being backed up";
  const frame = p.frame;
  const next = (): WriteStep | undefined => {
    const r = it.next();
    return r.done ? undefined : r.value;
  };
  try {
    for (let step = first ?? next(); step !== undefined; step = next()) {
      if (step.kind === "bytes") {
        // The header the writer put in the frame's room (the first step) goes out from there.
        if (frame && step.bytes.buffer === frame.buffer && step.bytes.byteOffset === frame.byteOffset) {
          if (!out.tryPushOwned(frame, 0, ROOM)) await out.pushOwned(frame, 0, ROOM);
        } else if (!out.tryPush(step.bytes)) await out.push(step.bytes);
        continue;
      }
      let sent = 0;
      const end = ROOM + step.fileOffset + step.length + step.pad;
      if (frame && !problem && inFrame(p.content, frame) && frame.length >= end) {
        // The content read ahead, and its padding (zeros), right behind the header.
        if (!out.tryPushOwned(frame, ROOM + step.fileOffset, end)) await out.pushOwned(frame, ROOM + step.fileOffset, end);
        continue;
      }
      if (p.content instanceof Buffer) {
        const piece = p.content.subarray(step.fileOffset, Math.min(step.fileOffset + step.length, p.content.length));
        await out.push(piece);
        sent = piece.length;
      } else if (p.content instanceof Error) {
        problem ??= `${p.content.message}; stored as zeros`;
      } else if (!problem || fh) {
        try {
          fh ??= await openForBackup(joinPath(root, p.rec.rel), OPEN_FLAGS);
          let pos = step.fileOffset;
          while (sent < step.length) {
            const want = Math.min(PIECE, step.length - sent);
            const buf = Buffer.allocUnsafe(want);
            const { bytesRead } = await fh.read(buf, 0, want, pos);
            if (bytesRead === 0) {
              problem ??= "shrank while being backed up; the rest is stored as zeros";
              break;
            }
            await out.push(buf.subarray(0, bytesRead));
            sent += bytesRead;
            pos += bytesRead;
          }
        } catch (err) {
          problem ??= `${asError(err).message}; the rest is stored as zeros`;
        }
      }
      for (let left = step.length - sent + step.pad; left > 0; ) {
        const n = Math.min(left, PIECE);
        await out.push(Buffer.alloc(n));
        left -= n;
      }
    }
  } finally {
    await fh?.close();
  }
  if (problem) warn(`${show(p.rec.rel)}: ${problem}`);
}

/** Whether a read-ahead content lies in its frame, right after the header room. */
function inFrame(content: Buffer | Error | undefined, frame: Buffer): content is Buffer {
  return content instanceof Buffer && content.buffer === frame.buffer && content.byteOffset === frame.byteOffset + ROOM;
}

async function readWhole(abs: Buffer, size: number): Promise<Buffer> {
  const fh = await openForBackup(abs, OPEN_FLAGS);
  try {
    const buf = Buffer.allocUnsafe(size + 1); // one byte more tells us the file grew
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

// ---- persistent state -------------------------------------------------------------------------

/** One file per filesystem: the backup root's path and st_dev, hashed into a safe file name. */
function stateFile(stateDir: string, root: Buffer, dev: bigint): string {
  const id = createHash("sha256").update(root).update(`\0${dev}`).digest("hex").slice(0, 32);
  return join(stateDir, "dump", `${id}.json`);
}

/** The filesystem's inode numbers as the state directory has them (undefined: none yet, or a level 0 starts over). */
async function loadState(path: string, incremental: boolean, warn: (m: string) => void): Promise<InodeMap | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path, "utf8");
  } catch (err) {
    if (errorCode(err) !== "ENOENT") throw err;
    // New numbers under an incremental would not match its base's: restore -r would apply
    // them to the wrong files.
    if (incremental) throw new Error(`dump state ${path} (this filesystem's inode numbers) is missing; run a level 0 dump to start a new chain`);
    return undefined;
  }
  try {
    const s = JSON.parse(text) as DumpState;
    if (s?.version === 2) return InodeMap.fromCompact(s.inodes as InodeMapCompact); // validates
    if (s?.version !== 1) throw new Error("unknown format");
    return InodeMap.fromJSON(s.inodes as InodeMapJSON); // validates
  } catch (err) {
    // Without the table, numbers would change under an incremental chain: only a level 0 may
    // start over (it begins a new chain anyway).
    const why = `dump state ${path} is damaged (${asError(err).message})`;
    if (incremental) throw new Error(`${why}; run a level 0 dump to start a new chain`);
    warn(`${why}; starting a new inode table`);
    return undefined;
  }
}

/** Written whole to a temporary file, synced, then renamed over the old one. */
async function saveState(path: string, state: DumpState): Promise<void> {
  await fsp.mkdir(join(path, ".."), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fh = await fsp.open(tmp, "w", 0o600);
  try {
    await fh.writeFile(JSON.stringify(state));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, path);
}

function cut(b: Buffer, max: number): Buffer {
  return b.length <= max ? b : b.subarray(0, max);
}
