// The walk of walker.ts with synchronous system calls, for the scan worker (scan-worker.ts): the
// same entries in the same order with the same reports, but one thread making plain syscalls
// back to back instead of a promise and a thread-pool round trip per call. It must only run off
// the main thread: a call that hangs (a dead NFS server) blocks whatever thread makes it.
import fs, { type BigIntStats } from "node:fs";
import { inodeNumber, type DataRun, type Entry, type EntryType, type InodeNumber } from "../../formats/entry.ts";
import { listDataRuns, listingName, type AtApi, type DirApi, type DirListing } from "../native/index.ts";
import { StatxBuffer } from "../native/statx.ts";
import { O_NOFOLLOW, asError, joinPath, openSyncForBackup, stripTrailingSlashes, typeFromMode } from "./fsutil.ts";
import {
  DOT,
  entryFromStat,
  entryFromStatx,
  LinkTracker,
  mayBeSparse,
  attachXattrs,
  SCAN_READ,
  sparseOrUndefined,
  statxMayBeSparse,
  ZeroScan,
  type LinkFacts,
} from "./stat-entry.ts";
import type { ListedNames, WalkItem, WalkOptions } from "./walker.ts";

interface Frame {
  abs: Buffer;
  /** null for the root, whose children have bare names as relative paths. */
  rel: Buffer | null;
  names: Buffer[];
  next: number;
  /** The directory open for statx of its names (native.at), or -1: lstat by path. */
  fd: number;
  /** With statFiles false: its non-directories, to be handed out as one item (then dropped). */
  listed?: ListedNames;
}

/** d_type -> the type of an object described from the listing alone (directories and DT_UNKNOWN are lstat-ed). */
const LISTED_TYPES: Record<number, EntryType> = { 8: "file", 10: "symlink", 1: "fifo", 2: "chardev", 6: "blockdev", 12: "socket" };
/** The longest name the filter's name rules pass without a look (NAME_MAX). */
const NAME_MAX = 255;

/**
 * Byte order of two names in one buffer. A loop, not Buffer.compare with offsets: names are
 * short, and its argument checks cost more than the comparison (most of a listing's time).
 */
function compareBytes(bytes: Buffer, a: number, aLength: number, b: number, bLength: number): number {
  const n = Math.min(aLength, bLength);
  for (let k = 0; k < n; k++) {
    const d = bytes[a + k]! - bytes[b + k]!;
    if (d !== 0) return d;
  }
  return aLength - bLength;
}

export function walkSync(opts: WalkOptions): Generator<WalkItem | ListedNames> {
  return new SyncWalker(opts).run();
}

class SyncWalker {
  private readonly oneFilesystem: boolean;
  private readonly wantXattrs: boolean | "directories";
  private readonly links = new LinkTracker();
  private rootDev: InodeNumber | undefined;
  /** Calls relative to a directory fd, when the runtime has them (Bun): see AtApi. */
  private readonly at: AtApi | null;
  /** The one statx result buffer of this walk. */
  private readonly sx = new StatxBuffer();

  constructor(private readonly opts: WalkOptions) {
    this.oneFilesystem = opts.oneFilesystem ?? true;
    this.wantXattrs = opts.xattrs ?? true;
    this.at = opts.native?.at ?? null;
  }

  private report(relPath: Buffer, error: unknown): void {
    this.opts.onError?.(relPath, asError(error));
  }

  *run(): Generator<WalkItem | ListedNames> {
    const root = stripTrailingSlashes(this.opts.root);
    let st: BigIntStats;
    try {
      st = fs.lstatSync(root, { bigint: true });
      // The operator named the root: if it is a symlink to a directory, walk the directory.
      if (st.isSymbolicLink()) {
        const target = fs.statSync(root, { bigint: true });
        if (target.isDirectory()) st = target;
      }
    } catch (error) {
      this.report(DOT, error);
      return;
    }
    const type = typeFromMode(st.mode);
    if (!type) return;
    const rootEntry = this.describe(root, DOT, entryFromStat(DOT, st, type), st, mayBeSparse(type, st));
    if (!rootEntry) return;
    this.rootDev = rootEntry.dev;
    yield { entry: rootEntry, absPath: root };
    if (type !== "directory") return;

    const stack: Frame[] = [];
    const rootFrame = this.openDir(root, null, DOT, true, st.dev);
    if (rootFrame) stack.push(rootFrame);
    if (rootFrame?.listed) {
      yield rootFrame.listed;
      rootFrame.listed = undefined;
    }

    try {
      while (stack.length > 0) {
        const frame = stack[stack.length - 1]!;
        if (frame.next >= frame.names.length) {
          this.closeDir(stack.pop()!);
          continue;
        }
        const at = frame.next++;
        const name = frame.names[at]!;
        const rel = frame.rel ? joinPath(frame.rel, name) : name;
        const abs = joinPath(frame.abs, name);
        const entry = this.child(frame, name, abs, rel);
        if (!entry) continue;
        yield { entry, absPath: abs };
        if (entry.type !== "directory") continue;
        if (this.oneFilesystem && entry.dev !== this.rootDev) continue;
        const child = this.openDir(abs, rel, rel, false, BigInt(entry.dev ?? 0));
        if (child) stack.push(child);
        if (child?.listed) {
          yield child.listed;
          child.listed = undefined;
        }
      }
    } finally {
      // A consumer that stops early (or an error) leaves directories open: close them.
      for (const frame of stack) this.closeDir(frame);
    }
  }

  /**
   * One name of a directory, described: by statx relative to the open directory when it can be
   * (one path component for the kernel, no stat object), else by lstat of the whole path, which
   * also gives a failure its usual error. undefined when left out (reported, or filtered).
   */
  private child(frame: Frame, name: Buffer, abs: Buffer, rel: Buffer): Entry | undefined {
    const sx = this.sx;
    if (frame.fd >= 0 && this.at!.lstatAt(frame.fd, name, sx)) {
      const type = typeFromMode(sx.mode);
      if (type) {
        if (this.opts.filter && !this.opts.filter(rel, type)) return undefined;
        return this.describe(abs, rel, entryFromStatx(rel, sx, type), sx, statxMayBeSparse(type, sx), frame.fd, name);
      }
    }
    let stat: BigIntStats;
    try {
      stat = fs.lstatSync(abs, { bigint: true });
    } catch (error) {
      this.report(rel, error);
      return undefined;
    }
    const type = typeFromMode(stat.mode);
    if (!type) {
      this.report(rel, new Error(`unknown file type (mode ${stat.mode.toString(8)})`));
      return undefined;
    }
    if (this.opts.filter && !this.opts.filter(rel, type)) return undefined;
    return this.describe(abs, rel, entryFromStat(rel, stat, type), stat, mayBeSparse(type, stat));
  }

  private openDir(abs: Buffer, rel: Buffer | null, reportAs: Buffer, follow: boolean, dev: bigint): Frame | undefined {
    const dir = this.opts.statFiles === false ? this.opts.native?.dir : undefined;
    if (dir) return this.openListed(dir, abs, rel, reportAs, dev);
    let names: Buffer[];
    try {
      names = fs.readdirSync(abs, { encoding: "buffer" });
    } catch (error) {
      this.report(reportAs, error);
      return undefined;
    }
    names.sort(Buffer.compare);
    // A directory that cannot be opened now (gone, replaced by a symlink) has its names looked up by path: lstat reports them.
    const fd = this.at && names.length > 0 ? this.at.openDir(abs, follow) : -1;
    return { abs, rel, names, next: 0, fd };
  }

  /**
   * A directory read with getdents64, in byte order: its non-directories go out as one
   * ListedNames (no lstat), its directories and names of unknown type are lstat-ed by path as
   * usual.
   */
  private openListed(dir: DirApi, abs: Buffer, rel: Buffer | null, reportAs: Buffer, dev: bigint): Frame | undefined {
    let listing: DirListing;
    try {
      listing = dir.list(abs);
    } catch (error) {
      this.report(reportAs, error);
      return undefined;
    }
    const { bytes, starts, lengths } = listing;
    const order = Array.from({ length: listing.count }, (_, i) => i).sort((a, b) => compareBytes(bytes, starts[a]!, lengths[a]!, starts[b]!, lengths[b]!));
    const names: Buffer[] = [];
    const listed: ListedNames = { dir: rel ?? DOT, dev: inodeNumber(dev), count: 0, bytes, starts: [], lengths: [], types: [], inos: [] };
    const filter = this.opts.filter;
    const filterAll = this.opts.filterListed !== false;
    for (const i of order) {
      const type = LISTED_TYPES[listing.types[i]!];
      const length = lengths[i]!;
      if (!type) {
        names.push(listingName(listing, i));
        continue;
      }
      if (filter && (filterAll || length === 0 || length > NAME_MAX)) {
        const name = listingName(listing, i);
        if (!filter(rel ? joinPath(rel, name) : name, type)) continue;
      }
      listed.starts.push(starts[i]!);
      listed.lengths.push(length);
      listed.types.push(type);
      listed.inos.push(listing.inos[i]!);
      listed.count++;
    }
    return { abs, rel, names, next: 0, fd: -1, listed: listed.count > 0 ? listed : undefined };
  }

  private closeDir(frame: Frame): void {
    if (frame.fd >= 0) this.at!.close(frame.fd);
    frame.fd = -1;
  }

  /**
   * The Entry for one object (made from its stat), or undefined (reported) when it cannot be read.
   * With `dirfd` (its directory, open) and its `name` there, its xattrs are listed relative to the
   * directory (listxattrat): most files have none, and then that one call is all.
   */
  private describe(abs: Buffer, rel: Buffer, entry: Entry, st: LinkFacts, maySparse: boolean, dirfd = -1, name?: Buffer): Entry | undefined {
    const type = entry.type;
    const linkKey = this.links.keyOf(type, st);
    if (linkKey && this.links.linkToFirst(linkKey, entry)) return entry;

    try {
      if (type === "symlink") {
        entry.linkTarget = fs.readlinkSync(abs, { encoding: "buffer" });
        entry.size = entry.linkTarget.length;
      } else if (maySparse) {
        const runs = this.dataRuns(abs, entry.size);
        if (runs) entry.sparse = runs;
      }
    } catch (error) {
      this.report(rel, error);
      return undefined;
    }

    if ((this.wantXattrs === true || (this.wantXattrs === "directories" && type === "directory")) && this.opts.native?.xattr) {
      // A failed listxattrat (or none in this kernel) gives null: listed by path, which says what went wrong.
      const names = dirfd >= 0 ? (this.at!.listXattrsAt?.(dirfd, name!) ?? undefined) : undefined;
      if (names?.length !== 0 && !attachXattrs(entry, this.opts.native.xattr, abs, (e) => this.report(rel, e), names)) return undefined;
    }

    if (linkKey) this.links.remember(linkKey, rel, st);
    return entry;
  }

  /** Data runs of a sparse candidate; undefined when it turns out to be dense. */
  private dataRuns(abs: Buffer, size: number): DataRun[] | undefined {
    const fd = openSyncForBackup(abs, fs.constants.O_RDONLY | O_NOFOLLOW);
    try {
      const seek = this.opts.native?.seek;
      const runs = seek ? listDataRuns(seek, fd, size) : scanForDataSync(fd, size);
      return sparseOrUndefined(runs, size);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/**
 * One object described again by its path, as the walk would describe it (lstat, link target,
 * data runs, xattrs) but with no hard-link bookkeeping: dump's second pass (scan.ts, a list
 * scan). Throws what lstat or readlink throw, and ENOENT from the xattrs (the object is gone);
 * other xattr failures leave it without them.
 */
export function describePath(abs: Buffer, rel: Buffer, native: WalkOptions["native"]): Entry {
  const st = fs.lstatSync(abs, { bigint: true });
  const type = typeFromMode(st.mode);
  if (!type) throw new Error(`unknown file type (mode ${st.mode.toString(8)})`);
  return completed(entryFromStat(rel, st, type), abs, mayBeSparse(type, st), native);
}

/**
 * What a described object needs beyond its stat: a symlink's target, a sparse candidate's data
 * runs, and its xattrs (`xattrNames` when they were listed already; [] for none). Throws what
 * readlink throws, and ENOENT from the xattrs (the object is gone); other xattr failures leave
 * it without them.
 */
function completed(entry: Entry, abs: Buffer, maySparse: boolean, native: WalkOptions["native"], xattrNames?: Buffer[]): Entry {
  if (entry.type === "symlink") {
    entry.linkTarget = fs.readlinkSync(abs, { encoding: "buffer" });
    entry.size = entry.linkTarget.length;
  } else if (maySparse) {
    const fd = openSyncForBackup(abs, fs.constants.O_RDONLY | O_NOFOLLOW);
    try {
      const runs = sparseOrUndefined(native?.seek ? listDataRuns(native.seek, fd, entry.size) : scanForDataSync(fd, entry.size), entry.size);
      if (runs) entry.sparse = runs;
    } finally {
      fs.closeSync(fd);
    }
  }
  if (native?.xattr && xattrNames?.length !== 0) {
    let gone: unknown;
    attachXattrs(entry, native.xattr, abs, (e) => (gone = e), xattrNames);
    if (gone !== undefined && (gone as NodeJS.ErrnoException).code === "ENOENT") throw gone;
  }
  return entry;
}

function scanForDataSync(fd: number, size: number): DataRun[] {
  const scan = new ZeroScan();
  const buf = Buffer.allocUnsafe(SCAN_READ);
  let pos = 0;
  while (pos < size) {
    const want = Math.min(SCAN_READ, size - pos);
    let got = 0;
    while (got < want) {
      const n = fs.readSync(fd, buf, got, want - got, pos + got);
      if (n === 0) break; // shrank under us: the rest reads as nothing
      got += n;
    }
    if (got === 0) break;
    scan.feed(buf, got, pos);
    pos += got;
    if (got < want) break;
  }
  return scan.finish(pos);
}

/**
 * describePath for a list of paths in a row (dump's second pass), with each path's directory
 * kept open while the next paths are in it too (the list is in inode order, which for most trees
 * keeps a directory's files together): the object is described relative to that directory
 * (statx, listxattrat: one path component for the kernel, no BigInt stat object) as the walk
 * does. Without the native calls, or when one fails, describePath by the whole path (which also
 * gives a failure its usual error). Call close() at the end.
 */
export class ListDescriber {
  private readonly at: AtApi | null;
  private readonly sx = new StatxBuffer();
  /** The directory open (its path relative to the root) and its fd, or -1. */
  private dirRel: Buffer | undefined;
  private dirFd = -1;

  constructor(
    private readonly root: Buffer,
    private readonly native: WalkOptions["native"],
  ) {
    this.at = native?.at ?? null;
  }

  describe(rel: Buffer): { entry: Entry; absPath: Buffer } {
    const abs = joinPath(this.root, rel);
    const slash = rel.lastIndexOf(0x2f);
    const fd = this.at ? this.dirOf(rel, slash) : -1;
    const name = slash < 0 ? rel : rel.subarray(slash + 1);
    const sx = this.sx;
    if (fd < 0 || !this.at!.lstatAt(fd, name, sx)) return { entry: describePath(abs, rel, this.native), absPath: abs };
    const type = typeFromMode(sx.mode);
    if (!type) throw new Error(`unknown file type (mode ${sx.mode.toString(8)})`);
    // Most files have no xattrs: then listxattrat is the one call for them. null: listed by path.
    const names = this.native?.xattr ? (this.at!.listXattrsAt?.(fd, name) ?? undefined) : undefined;
    const entry = completed(entryFromStatx(rel, sx, type), abs, statxMayBeSparse(type, sx), this.native, names);
    return { entry, absPath: abs };
  }

  close(): void {
    if (this.dirFd >= 0) this.at!.close(this.dirFd);
    this.dirFd = -1;
    this.dirRel = undefined;
  }

  /** The directory of `rel` (its part before `slash`, -1: the root): the one already open, or opened now (-1 if it cannot be). */
  private dirOf(rel: Buffer, slash: number): number {
    if (this.dirRel !== undefined && isDirOf(this.dirRel, rel, slash)) return this.dirFd;
    this.close();
    // A copy: `rel` may be a view of a buffer that is reused.
    const dirRel = slash < 0 ? DOT : Buffer.from(rel.subarray(0, slash));
    // Not followed if the directory itself was replaced by a symlink (lstat by path would see the link).
    this.dirFd = this.at!.openDir(dirRel === DOT ? this.root : joinPath(this.root, dirRel), false);
    this.dirRel = dirRel;
    return this.dirFd;
  }
}

/**
 * Whether `dir` (DOT for the root) is the part of `rel` before `slash`: compared in place,
 * byte by byte (most paths in a row share their directory; a view and equals() for each cost
 * more than the comparison).
 */
function isDirOf(dir: Buffer, rel: Buffer, slash: number): boolean {
  if (dir === DOT || slash < 0) return dir === DOT && slash < 0;
  if (dir.length !== slash) return false;
  for (let k = slash - 1; k >= 0; k--) if (dir[k] !== rel[k]) return false;
  return true;
}
