// The filesystem walk behind every backup: one Entry per object below a root, in a deterministic
// order (root first, then depth-first pre-order with children sorted bytewise), names as bytes end
// to end. Per-object problems (a directory we may not read, a file that vanished) are reported
// through onError and the walk goes on: a backup of 10 million files must not die on one of them.
import fs from "node:fs";
import fsp from "node:fs/promises";
import type { BigIntStats } from "node:fs";
import type { DataRun, Entry, EntryType, InodeNumber } from "../../formats/entry.ts";
import { listDataRuns, type NativeApi } from "../native/index.ts";
import { O_NOFOLLOW, asError, joinPath, openForBackup, stripTrailingSlashes, typeFromMode } from "./fsutil.ts";
import { DOT, entryFromStat, LinkTracker, mayBeSparse, attachXattrs, SCAN_READ, sparseOrUndefined, ZeroScan } from "./stat-entry.ts";

export interface WalkOptions {
  /** Absolute path of the backup root (bytes: Linux names need not be UTF-8). */
  root: Buffer;
  /** Default true: a directory on another filesystem is emitted (so the mount point exists on restore) but not descended. */
  oneFilesystem?: boolean;
  /** Called for each object below root; return false to skip it (and, for a directory, its subtree). */
  filter?: (relPath: Buffer, type: EntryType) => boolean;
  /** From loadNative(); null interfaces mean portable fallbacks (zero-block scan, no xattrs). */
  native?: NativeApi;
  /** Default true. "directories": only directories' (dump's first pass reads the others' again later). */
  xattrs?: boolean | "directories";
  /** Unreadable directories and files, objects that vanished: reported here, the walk continues. */
  onError?: (relPath: Buffer, err: Error) => void;
  /**
   * Default true. false: a non-directory is described from its directory's listing alone
   * (getdents64: type, st_ino; the directory's st_dev), with no lstat, no link target, no data
   * runs and no hard-link bookkeeping: its mode, owner, size and times are zero and nlink unset.
   * For a caller that describes every such object again later (a level-0 dump's first pass) and
   * only on filesystems whose d_ino is st_ino. Only the synchronous walk (the scan worker) with
   * native.dir does it; a name of unknown type (DT_UNKNOWN) is lstat-ed as usual.
   */
  statFiles?: boolean;
  /**
   * With statFiles false: whether the names listed (not lstat-ed) go through `filter` too, by
   * their path (a selection). Default true. false: the caller's filter only checks a name's own
   * rules, and every name getdents64 gives passes them (at most 255 bytes, no "/" or NUL), so
   * the walk makes no path per name. A name out of that range still goes through the filter.
   */
  filterListed?: boolean;
}

export interface WalkItem {
  entry: Entry;
  absPath: Buffer;
}

/**
 * With statFiles false: a directory's non-directories, as its listing gives them, in one item
 * (they have nothing but a name, a type and an st_ino: an Entry and two paths each would cost
 * the walk more than getdents64). It comes right after the directory is opened, before any of
 * its subdirectories' items; its directories and names of unknown type come as WalkItems.
 */
export interface ListedNames {
  /** The directory's path relative to the root ("." for the root). */
  dir: Buffer;
  /** The directory's st_dev: theirs too. */
  dev: InodeNumber;
  count: number;
  /** Name i is bytes[starts[i], starts[i] + lengths[i]), in byte order. */
  bytes: Buffer;
  starts: number[];
  lengths: number[];
  types: EntryType[];
  /** Their st_ino (d_ino). */
  inos: InodeNumber[];
}

export function isListed(item: WalkItem | ListedNames): item is ListedNames {
  return (item as ListedNames).count !== undefined;
}

/**
 * How many lstat calls of one directory's children are started ahead of the one being emitted.
 * lstat stays asynchronous on purpose: lstatSync is ~4x faster on a warm cache, but one hung NFS
 * call would then freeze the whole server (every session, the control connections included).
 */
const STAT_WINDOW = 64;

type StatResult = BigIntStats | Error;

/** A directory being walked: its sorted names and the lstat calls started so far. */
interface Frame {
  abs: Buffer;
  /** null for the root, whose children have bare names as relative paths. */
  rel: Buffer | null;
  names: Buffer[];
  next: number;
  stats: Array<Promise<StatResult> | undefined>;
  launched: number;
}

export function walk(opts: WalkOptions): AsyncIterable<WalkItem> {
  return new Walker(opts).run();
}

class Walker {
  private readonly oneFilesystem: boolean;
  private readonly wantXattrs: boolean | "directories";
  private readonly links = new LinkTracker();
  private rootDev = 0n;

  constructor(private readonly opts: WalkOptions) {
    this.oneFilesystem = opts.oneFilesystem ?? true;
    this.wantXattrs = opts.xattrs ?? true;
  }

  private report(relPath: Buffer, error: unknown): void {
    this.opts.onError?.(relPath, asError(error));
  }

  async *run(): AsyncGenerator<WalkItem> {
    const root = stripTrailingSlashes(this.opts.root);
    let st: BigIntStats;
    try {
      st = await fsp.lstat(root, { bigint: true });
      // The operator named the root: if it is a symlink to a directory, walk the directory.
      if (st.isSymbolicLink()) {
        const target = await fsp.stat(root, { bigint: true });
        if (target.isDirectory()) st = target;
      }
    } catch (error) {
      this.report(DOT, error);
      return;
    }
    this.rootDev = st.dev;
    const type = typeFromMode(st.mode);
    if (!type) return;
    const rootEntry = await this.describe(root, DOT, st, type);
    if (!rootEntry) return;
    yield { entry: rootEntry, absPath: root };
    if (type !== "directory") return;

    const stack: Frame[] = [];
    const rootFrame = await this.openDir(root, null, DOT);
    if (rootFrame) stack.push(rootFrame);

    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      if (frame.next >= frame.names.length) {
        stack.pop();
        continue;
      }
      const index = frame.next++;
      const name = frame.names[index]!;
      const stat = await this.statAt(frame, index);
      frame.stats[index] = undefined; // let the stats of emitted names be collected
      const rel = frame.rel ? joinPath(frame.rel, name) : name;
      const abs = joinPath(frame.abs, name);
      if (stat instanceof Error) {
        this.report(rel, stat);
        continue;
      }
      const childType = typeFromMode(stat.mode);
      if (!childType) {
        this.report(rel, new Error(`unknown file type (mode ${stat.mode.toString(8)})`));
        continue;
      }
      if (this.opts.filter && !this.opts.filter(rel, childType)) continue;
      const entry = await this.describe(abs, rel, stat, childType);
      if (!entry) continue;
      yield { entry, absPath: abs };
      if (childType !== "directory") continue;
      if (this.oneFilesystem && stat.dev !== this.rootDev) continue;
      const child = await this.openDir(abs, rel, rel);
      if (child) stack.push(child);
    }
  }

  private async openDir(abs: Buffer, rel: Buffer | null, reportAs: Buffer): Promise<Frame | undefined> {
    let names: Buffer[];
    try {
      names = await fsp.readdir(abs, { encoding: "buffer" });
    } catch (error) {
      this.report(reportAs, error);
      return undefined;
    }
    names.sort(Buffer.compare);
    return { abs, rel, names, next: 0, stats: new Array(names.length), launched: 0 };
  }

  /** The lstat of name `index`, keeping up to two windows of lstat calls in flight ahead of it. */
  private statAt(frame: Frame, index: number): Promise<StatResult> {
    const want = Math.min(frame.names.length, index + 2 * STAT_WINDOW);
    if (index >= frame.launched || frame.launched - index < STAT_WINDOW) {
      for (let i = frame.launched; i < want; i++) {
        frame.stats[i] = lstatSettled(joinPath(frame.abs, frame.names[i]!));
      }
      frame.launched = Math.max(frame.launched, want);
    }
    return frame.stats[index]!;
  }

  /** The Entry for one object, or undefined (reported) when it cannot be read. */
  private async describe(abs: Buffer, rel: Buffer, st: BigIntStats, type: EntryType): Promise<Entry | undefined> {
    const entry = entryFromStat(rel, st, type);
    const linkKey = this.links.keyOf(type, st);
    if (linkKey && this.links.linkToFirst(linkKey, entry)) return entry;

    try {
      if (type === "symlink") {
        entry.linkTarget = await fsp.readlink(abs, { encoding: "buffer" });
        entry.size = entry.linkTarget.length;
      } else if (mayBeSparse(type, st)) {
        const runs = await this.dataRuns(abs, entry.size);
        if (runs) entry.sparse = runs;
      }
    } catch (error) {
      this.report(rel, error);
      return undefined;
    }

    if ((this.wantXattrs === true || (this.wantXattrs === "directories" && type === "directory")) && this.opts.native?.xattr) {
      if (!attachXattrs(entry, this.opts.native.xattr, abs, (e) => this.report(rel, e))) return undefined;
    }

    if (linkKey) this.links.remember(linkKey, rel, st);
    return entry;
  }

  /** Data runs of a sparse candidate; undefined when it turns out to be dense. */
  private async dataRuns(abs: Buffer, size: number): Promise<DataRun[] | undefined> {
    const handle = await openForBackup(abs, fs.constants.O_RDONLY | O_NOFOLLOW);
    try {
      const seek = this.opts.native?.seek;
      const runs = seek ? listDataRuns(seek, handle.fd, size) : await scanForData(handle, size);
      return sparseOrUndefined(runs, size);
    } finally {
      await handle.close();
    }
  }
}

/** lstat that never rejects (a prefetched call may never be awaited). The callback API is
 * measurably cheaper per call than fs/promises, and a walk makes one call per object. */
function lstatSettled(path: Buffer): Promise<StatResult> {
  return new Promise((resolve) => {
    fs.lstat(path, { bigint: true }, (error, st) => resolve(error ? asError(error) : st));
  });
}

/** The zero-block scan (see ZeroScan) over an open file. */
async function scanForData(handle: fsp.FileHandle, size: number): Promise<DataRun[]> {
  const scan = new ZeroScan();
  const buf = Buffer.allocUnsafe(SCAN_READ);
  let pos = 0;
  while (pos < size) {
    const want = Math.min(SCAN_READ, size - pos);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await handle.read(buf, got, want - got, pos + got);
      if (bytesRead === 0) break; // shrank under us: the rest reads as nothing
      got += bytesRead;
    }
    if (got === 0) break;
    scan.feed(buf, got, pos);
    pos += got;
    if (got < want) break;
  }
  return scan.finish(pos);
}
