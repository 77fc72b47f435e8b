/**
 * The tar backup: scan -> pax writer -> data connection, with file history.
 *
 * Small files come from the scan (scan.ts) with their contents already read; large files
 * stream in 1 MiB pieces.
 * Each entry's `fh_info` is the stream offset of its first header block.
 */
import type { FileHandle } from "node:fs/promises";
import type { Duplex } from "node:stream";
import type { Entry, InodeNumber } from "../../formats/entry.ts";
import { contentSize, encodeHeader, encodeHeaderInto, endOfArchive, padding } from "../../formats/tar/writer.ts";
import type { BackupBase, DirInventory } from "../incremental/index.ts";
import type { NativeApi } from "../native/index.ts";
import { ChunkedWriter, ConnectionGone, endAll } from "../transport/backpressure.ts";
import { onReaderDone } from "../transport/consumers.ts";
import fsp from "node:fs/promises";
import { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { encodeDumpdir, type DumpdirChild } from "../../formats/tar/dumpdir.ts";
import type { Timespec } from "../../formats/entry.ts";
import { changedSince, dirIsKnown } from "../incremental/index.ts";
import { joinPath, openForBackup, timespecFromNs } from "./fsutil.ts";
import { fhStat, type FileHistory } from "./history.ts";
import { NotRegular, READ_FLAGS, recycleFrames, scan, type ScanItem, type ScanOptions } from "./scan.ts";
import type { Selection } from "./selection.ts";

export interface BackupOptions {
  /** FILESYSTEM, the live path: what the stream, the history and the records are about. */
  root: Buffer;
  /** Where the tree is read from when not from `root`: FILESYSTEM's view in a snapshot (src/snapshot). */
  source?: Buffer;
  /** Gives each object read from `source` the identity it has in the live tree (a snapshot's st_dev differs). */
  remap?: (entry: Entry) => void;
  out: Duplex;
  /** File history, when the DMA asked for it (HIST). */
  history?: FileHistory;
  /** Which FH style to post: "file" (FH_ADD_FILE) or "dir" (FH_ADD_DIR + FH_ADD_NODE). */
  historyStyle: "file" | "dir";
  /** The backup level (0 = full); the same as base.level. */
  level: number;
  /**
   * What this backup is based on (src/incremental): level, the "since" time (none for a full
   * backup), the base backup's date (dump's c_ddate), IGNORE_CTIME, the base's directories.
   * Absent means a full backup (unit tests that call a format directly).
   */
  base?: BackupBase;
  /** The backup's start time (ns since the epoch): the next incremental takes changes from here. */
  startTime?: bigint;
  /** Where persistent per-filesystem state lives (dump's inode numbers, dump dates). */
  stateDir: string;
  /** The tape's record size when known (our own mover, LOCAL): dump records it in c_ntrec. */
  recordSize?: number;
  /** The job's environment as the DMA sent it (format-specific variables). */
  env: ReadonlyMap<string, string>;
  /** FILES / EXCLUDE; absent = everything. */
  selection?: Selection;
  native?: NativeApi;
  signal: AbortSignal;
  /** Problems that don't stop the backup (unreadable files, files that changed). */
  warn(message: string): void;
  /** Called after each entry with the running totals. */
  /** After each entry: bytes written so far, entries, and the entry's path (for `ndmpd sessions`). */
  progress?(bytes: number, entries: number, path?: Buffer): void;
  /**
   * Called once per entry (or chunk of input): a promise while the DMA has not read the posts
   * already queued for it (LOG_MESSAGE, LOG_FILE, FH), which the job waits for (one bounded
   * queue for every post); undefined when there is room.
   */
  pace?(): Promise<void> | undefined;
}

/** Waits while the DMA's posts are backed up (BackupOptions.pace / RecoverOptions.pace). */
export async function paced(opts: { pace?(): Promise<void> | undefined }): Promise<void> {
  const wait = opts.pace?.();
  if (wait) await wait;
}

export interface BackupResult {
  bytes: number;
  entries: number;
  warnings: number;
  /** Pairs the format adds to the job's DATA_GET_ENV list (the service adds DUMP_DATE and LEVEL). */
  envOut?: Map<string, string>;
  /** The tree's directories as walked (relative path key -> "dev:ino"), recorded for the next incremental. */
  dirs?: DirInventory;
}

/** Files up to this size are read ahead whole. */
const SMALL_FILE = 256 * 1024;
const PIECE = 1024 * 1024;
/**
 * Room for a header in front of each scanned item (the worker scan lays its read-ahead buffer
 * out as the stream): a pax block, one block of records (the times, a long name) and the ustar
 * block. A header that needs more is written on its own.
 */
const HEADER_ROOM = 3 * 512;

export async function runTarBackup(opts: BackupOptions): Promise<BackupResult> {
  const out = new ChunkedWriter(opts.out);
  const t = new TarRun(opts, out, new FrameRecycler(out, opts.out));
  const items = scan({
    root: opts.source ?? opts.root,
    remap: opts.remap,
    native: opts.native,
    selection: opts.selection,
    readAhead: SMALL_FILE,
    headerRoom: HEADER_ROOM,
    ...t.frames.scanOptions(),
    onError: (rel, err) => t.warn(`${show(rel)}: ${err.message}`),
  });
  // A small file whose content came with the scan goes out without an await of its own (each
  // await is a trip through the microtask queue, at 200,000 files a measurable share of the
  // CPU): the loop waits only where it must, for the DMA's posts, a full connection buffer,
  // a large file's reads, an incremental's directory listing.
  for await (const q of items) {
    if (opts.signal.aborted) throw opts.signal.reason ?? new Error("aborted");
    const wait = opts.pace?.();
    if (wait) await wait;
    const archived = archive(t, q);
    if (archived) await archived;
  }
  await out.push(endOfArchive());
  await out.flush();
  await endAll(opts.out);
  t.frames.end();
  return { bytes: out.offset, entries: t.entries, warnings: t.warnings, dirs: t.changes.dirs };
}

// The backup's steps are small functions, each returning a promise only when it has to wait,
// rather than one loop body with an await at every step: the JIT compiles a function whole, and
// as one the loop was some 4,900 bytecodes, compiled three or four times over a server's first
// backups (and in every CLI job).

/** One tar backup's state. */
class TarRun {
  entries = 0;
  warnings = 0;
  /** First names (keys: latin1 paths) that were not archived, and the name that took over, if any. */
  readonly dropped = new Map<string, Buffer | undefined>();
  readonly changes: ChangeSelector;

  constructor(
    readonly opts: BackupOptions,
    readonly out: ChunkedWriter,
    readonly frames: FrameRecycler,
  ) {
    this.changes = new ChangeSelector(opts.base);
  }

  readonly warn = (m: string) => {
    this.warnings++;
    this.opts.warn(m);
  };

  /** Not archived: a later name of the inode takes over (a hard link to it becomes the file). */
  leaveOut(entry: Entry): void {
    if (entry.type !== "hardlink") this.dropped.set(entry.path.toString("latin1"), undefined);
  }

  /** `entry` is in the archive from `offset`: counted, and named in the history. */
  archived(entry: Entry, offset: number): void | Promise<void> {
    const { opts, out } = this;
    this.entries++;
    this.frames.used(out.offset);
    const posted = opts.history?.addFile(entry.path, fhStat(entry), entry.ino ?? 0, offset);
    if (posted) return posted.then(() => opts.progress?.(out.offset, this.entries, entry.path));
    opts.progress?.(out.offset, this.entries, entry.path);
  }
}

/** One scan item into the archive, unless an incremental leaves it out. */
function archive(t: TarRun, q: ScanItem): void | Promise<void> {
  if (q.frame) t.frames.enter(q.frame.buffer);
  const taken = t.changes.take(q);
  // Unchanged since the base: not in this incremental.
  if (typeof taken !== "boolean") return taken.then((yes) => (yes ? archiveTaken(t, q) : t.leaveOut(q.entry)));
  return taken ? archiveTaken(t, q) : t.leaveOut(q.entry);
}

function archiveTaken(t: TarRun, q: ScanItem): void | Promise<void> {
  let entry = q.entry;
  let heirOf: string | undefined;
  if (entry.type === "hardlink" && entry.linkTarget && t.dropped.has(entry.linkTarget.toString("latin1"))) {
    // The name this one links to was not archived: link to the name that took its place, or
    // become that name (a regular file, read now).
    heirOf = entry.linkTarget.toString("latin1");
    const heir = t.dropped.get(heirOf);
    if (heir) {
      entry = { ...entry, linkTarget: heir };
      heirOf = undefined;
    } else {
      entry = { ...entry, type: "file", linkTarget: undefined };
      q.entry = entry;
      q.content = undefined;
    }
  }
  if (entry.type !== "file" || contentSize(entry) === 0) return writeEntry(t, q, entry, undefined, heirOf);
  // Open (or collect the read-ahead of) a file before its header goes out: a file that is gone,
  // or is no longer a regular file, is left out of the archive rather than stored as zeros.
  if (q.content !== undefined && !(q.content instanceof Error)) return writeEntry(t, q, entry, q.content, heirOf);
  return openThenWrite(t, q, entry, heirOf);
}

async function openThenWrite(t: TarRun, q: ScanItem, entry: Entry, heirOf: string | undefined): Promise<void> {
  const source = await openSource(q, t.warn);
  if (source === undefined) t.dropped.set(entry.path.toString("latin1"), undefined);
  else await writeEntry(t, q, entry, source, heirOf);
}

/** The entry's header and content; without a wait when its read-ahead frame goes out whole. */
function writeEntry(t: TarRun, q: ScanItem, entry: Entry, source: Buffer | FileHandle | undefined, heirOf: string | undefined): void | Promise<void> {
  if (heirOf !== undefined) t.dropped.set(heirOf, entry.path);
  const offset = t.out.offset;
  if (q.frame && (source === undefined || Buffer.isBuffer(source))) {
    const framed = writeFramed(t.out, entry, q.frame, source, t.warn);
    if (framed === true) return t.archived(entry, offset);
    if (framed !== false) return framed.then((sent) => (sent ? t.archived(entry, offset) : writeUnframed(t, entry, source, offset)));
    return writeUnframed(t, entry, source, offset);
  }
  return writeUnframed(t, entry, source, offset, q.frame);
}

/** The header on its own, then the content (a large file's reads, or a source that did not fit a frame). */
async function writeUnframed(t: TarRun, entry: Entry, source: Buffer | FileHandle | undefined, offset: number, frame?: Buffer): Promise<void> {
  const { out } = t;
  try {
    const framed = frame ? await writeFramed(out, entry, frame, source, t.warn) : false;
    if (!framed) {
      const header = encodeHeader(entry);
      if (!out.tryPush(header)) await out.push(header);
      if (source) await writeContent(out, entry, source, t.warn);
    }
  } finally {
    if (source && !Buffer.isBuffer(source)) await source.close().catch(() => {});
  }
  await t.archived(entry, offset);
}

/**
 * Gives the scan's read-ahead buffers back (recycleFrames) once every byte sent from them was
 * written: items come batch after batch, so a buffer is done with when the next one starts,
 * and free when the connection's writes (ChunkedWriter.written) pass its last byte.
 */
export class FrameRecycler {
  private current: ArrayBufferLike | undefined;
  private until = 0;
  private readonly waiting: Array<{ buffer: ArrayBufferLike; until: number }> = [];
  /** Whether buffers come back at all (then the scan is told so: ScanOptions.recycled). */
  readonly enabled: boolean;
  /** Whether the end of the stream means every byte is done with (a socket: written out). */
  private readonly doneAtEnd: boolean;

  /**
   * For a backup writing `out` to `conn`. A plain socket is done with bytes when their write
   * callback runs (they are in the kernel); the LOCAL pipe hands them on to the mover by
   * reference, so there they are done with once the mover asks for more (onReaderDone). TLS is
   * left out rather than trusted on its buffering: there the buffers are not reused.
   */
  constructor(
    private readonly out: ChunkedWriter,
    conn: Duplex,
  ) {
    const free = (offset: number) => {
      while (this.waiting.length > 0 && this.waiting[0]!.until <= offset) recycleFrames(this.waiting.shift()!.buffer);
    };
    this.doneAtEnd = conn instanceof Socket && !(conn instanceof TLSSocket);
    if (this.doneAtEnd) out.onWritten = free;
    // The pipe's offsets count from its first byte, as the writer's do: `out` is its only writer
    // from the start of the stream (dump's pass 2 makes its recycler before its first byte).
    this.enabled = this.doneAtEnd || onReaderDone(conn, free);
  }

  /**
   * What the scan that fills the frames is told: whether they come back (a pooled scan), and,
   * since they come back only once written, to send what the backup holds while it waits.
   */
  scanOptions(): Pick<ScanOptions, "recycled" | "beforeWait"> {
    if (!this.enabled) return { recycled: false };
    return { recycled: true, beforeWait: () => void this.out.flush().catch(() => {}) };
  }

  /** An item of the batch in `buffer` is next. */
  enter(buffer: ArrayBufferLike): void {
    if (!this.enabled || buffer === this.current) return;
    if (this.current) this.waiting.push({ buffer: this.current, until: this.until });
    this.current = buffer;
  }

  /** The current batch's bytes so far end at stream offset `offset`. */
  used(offset: number): void {
    if (this.current) this.until = offset;
  }

  /**
   * The stream has ended. On a socket everything was written out; on the LOCAL pipe the mover
   * may still be reading the last bytes: what it has not asked past is left to the collector.
   */
  end(): void {
    const rest = this.waiting.splice(0);
    if (this.current) rest.push({ buffer: this.current, until: this.until });
    this.current = undefined;
    if (this.doneAtEnd) for (const w of rest) recycleFrames(w.buffer);
  }
}

/**
 * What an incremental holds (GNU tar's --listed-incremental rules): every directory, with its
 * full name list (GNU.dumpdir) so a restore can apply deletions; every non-directory whose mtime
 * or ctime is at or after the base; and everything below a directory that moved or is new
 * since the base (its files keep their old times). A full backup takes everything and lists no
 * names. Either way the tree's directories are collected for the next incremental.
 */
class ChangeSelector {
  readonly dirs: DirInventory = new Map();
  /** Directories (latin1 keys) backed up whole: moved or new since the base, or inside one. */
  private readonly whole = new Set<string>();
  private rootDev: InodeNumber | undefined;

  constructor(private readonly base: BackupBase | undefined) {}

  /** Whether the item goes into this backup; a promise only when a directory's listing must be made. */
  take(q: ScanItem): boolean | Promise<boolean> {
    const entry = q.entry;
    const base = this.base;
    if (entry.type !== "directory") {
      // A full backup takes every non-directory: no key for those (a string per file).
      if (base?.since === undefined) return true;
      return this.whole.has(parentKey(entry.path.toString("latin1"))) || changedSince(entry, base);
    }
    const key = entry.path.toString("latin1");
    if (key === ".") this.rootDev = entry.dev;
    this.dirs.set(key, `${entry.dev ?? 0}:${entry.ino ?? 0}`);
    if (base?.since === undefined) return true;
    const whole = this.whole.has(parentKey(key)) || !dirIsKnown(base, key, entry.dev ?? 0, entry.ino ?? 0, entry.ctime);
    if (whole) this.whole.add(key);
    // A mount point is backed up, its contents are not: no listing, so a restore leaves them be.
    if (entry.dev !== this.rootDev) return true;
    return listing(q.absPath, (st) => whole || changedSince(st, base)).then((dumpdir) => {
      entry.dumpdir = dumpdir;
      return true;
    });
  }
}

function parentKey(key: string): string {
  const slash = key.lastIndexOf("/");
  return key === "." ? "" : slash < 0 ? "." : key.slice(0, slash);
}

/** How many lstat calls of a directory's children run at once while its listing is made. */
const LISTING_BATCH = 64;

/**
 * A directory's GNU.dumpdir: every name in it now, D for directories, Y for what this archive
 * will hold, N for the rest. Names the walk leaves out (EXCLUDE, unreadable) stay listed, so a
 * restore of the chain never deletes them. undefined when the directory cannot be read.
 */
async function listing(abs: Buffer, included: (st: { mtime: Timespec; ctime: Timespec }) => boolean): Promise<Buffer | undefined> {
  let names: Buffer[];
  try {
    names = await fsp.readdir(abs, { encoding: "buffer" });
  } catch {
    // The walk reports it. No listing at all: an empty one would delete the directory's contents on restore.
    return undefined;
  }
  const children: DumpdirChild[] = [];
  for (let i = 0; i < names.length; i += LISTING_BATCH) {
    const batch = names.slice(i, i + LISTING_BATCH);
    const stats = await Promise.all(batch.map((n) => fsp.lstat(joinPath(abs, n), { bigint: true }).catch(() => undefined)));
    batch.forEach((name, j) => {
      const st = stats[j];
      if (!st) return children.push({ name, letter: "N" });
      if (st.isDirectory()) return children.push({ name, letter: "D" });
      children.push({ name, letter: included({ mtime: timespecFromNs(st.mtimeNs), ctime: timespecFromNs(st.ctimeNs) }) ? "Y" : "N" });
    });
  }
  return encodeDumpdir(children);
}

/** The read-ahead content of a small file, or an open handle on a large one; undefined (warned) to leave it out. */
async function openSource(q: ScanItem, warn: (m: string) => void): Promise<Buffer | FileHandle | undefined> {
  const entry = q.entry;
  if (q.content) {
    if (!(q.content instanceof Error)) return q.content;
    warn(`${show(entry.path)}: ${why(q.content)}; not backed up`);
    return undefined;
  }
  let fh: FileHandle | undefined;
  try {
    fh = await openForBackup(q.absPath, READ_FLAGS);
    const st = await fh.stat();
    if (!st.isFile()) throw new NotRegular();
    return fh;
  } catch (e) {
    await fh?.close().catch(() => {});
    warn(`${show(entry.path)}: ${why(e as Error)}; not backed up`);
    return undefined;
  }
}

/** What went wrong with a file the walk had seen, in words. */
function why(e: Error): string {
  switch ((e as NodeJS.ErrnoException).code) {
    case "ENOENT":
      return "it vanished before it could be read";
    case "ELOOP":
      return "it was replaced by a symbolic link";
    case "EISDIR":
      return "it was replaced by a directory";
    default:
      return e.message;
  }
}

/**
 * The entry's header written into its frame (scan.ts), and sent from there with the content the
 * frame holds, without a copy: false (nothing sent) when the header does not fit the room.
 * A content that is not the expected size goes the general way (writeContent warns and pads).
 * A plain boolean when it is all done (the frame went into the writer's buffer): a promise only
 * when the buffer must drain first or a content is still to write.
 */
function writeFramed(out: ChunkedWriter, entry: Entry, frame: Buffer, source: Buffer | FileHandle | undefined, warn: (m: string) => void): boolean | Promise<boolean> {
  const n = encodeHeaderInto(entry, frame, HEADER_ROOM);
  if (n < 0) return false;
  const inFrame = frame.length > HEADER_ROOM && Buffer.isBuffer(source) && source.length === contentSize(entry);
  const to = inFrame ? frame.length : HEADER_ROOM;
  const pushed = out.tryPushOwned(frame, HEADER_ROOM - n, to);
  if (pushed && (!source || inFrame)) return true;
  return (async () => {
    if (!pushed) await out.pushOwned(frame, HEADER_ROOM - n, to);
    if (source && !inFrame) await writeContent(out, entry, source, warn);
    return true;
  })();
}

/** Streams exactly contentSize(entry) bytes: a file that shrank is padded, one that grew is cut. */
async function writeContent(out: ChunkedWriter, entry: Entry, source: Buffer | FileHandle, warn: (m: string) => void): Promise<void> {
  const size = contentSize(entry);
  let sent = 0;
  if (Buffer.isBuffer(source)) {
    const data = source.length > size ? source.subarray(0, size) : source;
    if (source.length !== size) warn(`${show(entry.path)}: it changed size while being backed up (${size} bytes expected)`);
    if (!out.tryPush(data)) await out.push(data);
    sent = data.length;
  } else {
    let shrank = false;
    const runs = entry.sparse ?? [{ offset: 0, length: entry.size }];
    try {
      for (const run of runs) {
        let pos = run.offset;
        const end = run.offset + run.length;
        while (pos < end) {
          const want = Math.min(PIECE, end - pos);
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await source.read(buf, 0, want, pos);
          if (bytesRead === 0) {
            shrank = true;
            break;
          }
          await out.push(buf.subarray(0, bytesRead));
          sent += bytesRead;
          pos += bytesRead;
        }
        if (shrank) break;
      }
    } catch (e) {
      if (e instanceof ConnectionGone) throw e;
      warn(`${show(entry.path)}: ${(e as Error).message}; the rest is stored as zeros`);
      shrank = false;
    }
    if (shrank) warn(`${show(entry.path)}: it shrank while being backed up; the missing ${size - sent} bytes are stored as zeros`);
    else if (sent === size) {
      const st = await source.stat({ bigint: true }).catch(() => undefined);
      const mtimeNs = BigInt(entry.mtime.sec) * 1_000_000_000n + BigInt(entry.mtime.nsec ?? 0);
      if (st && (st.size !== BigInt(entry.size) || st.mtimeNs !== mtimeNs)) {
        warn(`${show(entry.path)}: it changed while being backed up (now ${st.size} bytes; ${size} archived)`);
      }
    }
  }
  // The header promised `size` bytes: keep every later header where it belongs.
  for (let left = size - sent; left > 0; ) {
    const n = Math.min(left, PIECE);
    await out.push(Buffer.alloc(n));
    left -= n;
  }
  const pad = padding(size);
  if (!out.tryPush(pad)) await out.push(pad);
}

/** A path for messages: the bytes shown as UTF-8 where possible. */
export function show(rel: Buffer): string {
  return rel.length === 1 && rel[0] === 0x2e ? "/" : "/" + rel.toString("utf8");
}

export type { Entry };
