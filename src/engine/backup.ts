/**
 * The tar backup: walk -> pax writer -> data connection, with file history.
 *
 * Small files are read ahead with bounded concurrency (their contents wait in a short queue
 * while earlier entries are written), so a tree of many small files does not pay one
 * open/read/close round trip per file in series. Large files stream in 1 MiB pieces.
 * Each entry's `fh_info` is the stream offset of its first header block.
 */
import fs, { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import type { Duplex } from "node:stream";
import type { Entry } from "../../formats/entry.ts";
import { contentSize, encodeHeader, endOfArchive, padding } from "../../formats/tar/writer.ts";
import type { NativeApi } from "../native/index.ts";
import { ChunkedWriter, ConnectionGone, endAll } from "../transport/backpressure.ts";
import { O_NOATIME, O_NOFOLLOW, O_NONBLOCK } from "./fsutil.ts";
import { fileStat, type FileHistory } from "./history.ts";
import { walk, type WalkItem } from "./walker.ts";

export interface BackupOptions {
  root: Buffer;
  out: Duplex;
  /** File history, when the DMA asked for it (HIST). */
  history?: FileHistory;
  /** Which FH style to post: "file" (FH_ADD_FILE) or "dir" (FH_ADD_DIR + FH_ADD_NODE). */
  historyStyle: "file" | "dir";
  /** The backup level (0 = full); formats without incrementals are only ever asked for 0. */
  level: number;
  /** Where persistent per-filesystem state lives (dump's inode numbers, dump dates). */
  stateDir: string;
  /** The tape's record size when known (our own mover, LOCAL): dump records it in c_ntrec. */
  recordSize?: number;
  /** The job's environment as the DMA sent it (format-specific variables). */
  env: ReadonlyMap<string, string>;
  filter?: (rel: Buffer, isDir: boolean) => boolean;
  native?: NativeApi;
  signal: AbortSignal;
  /** Problems that don't stop the backup (unreadable files, files that changed). */
  warn(message: string): void;
  /** Called after each entry with the running totals. */
  progress?(bytes: number, entries: number): void;
}

export interface BackupResult {
  bytes: number;
  entries: number;
  warnings: number;
  /** Pairs the format adds to the job's DATA_GET_ENV list (dump: DUMP_DATE, LEVEL). */
  envOut?: Map<string, string>;
}

/** Files up to this size are read ahead whole. */
const SMALL_FILE = 256 * 1024;
/** How many entries may wait, read ahead, for their turn. */
const READ_AHEAD = 64;
const PIECE = 1024 * 1024;

interface Queued {
  item: WalkItem;
  /** Whole content of a small regular file, being read. */
  content?: Promise<Buffer | Error>;
}

export async function runTarBackup(opts: BackupOptions): Promise<BackupResult> {
  const out = new ChunkedWriter(opts.out);
  let warnings = 0;
  let entries = 0;
  const warn = (m: string) => {
    warnings++;
    opts.warn(m);
  };
  const items = walk({
    root: opts.root,
    native: opts.native,
    filter: opts.filter ? (rel, type) => opts.filter!(rel, type === "directory") : undefined,
    onError: (rel, err) => warn(`${show(rel)}: ${err.message}`),
  })[Symbol.asyncIterator]();

  const queue: Queued[] = [];
  let walked = false;
  const refill = async () => {
    while (!walked && queue.length < READ_AHEAD) {
      const next = await items.next();
      if (next.done) {
        walked = true;
        break;
      }
      const q: Queued = { item: next.value };
      const e = next.value.entry;
      if (e.type === "file" && !e.sparse && e.size > 0 && e.size <= SMALL_FILE) {
        q.content = readWhole(next.value.absPath, e.size).catch((err: Error) => err);
      }
      queue.push(q);
    }
  };
  /** First names (keys: latin1 paths) that were not archived, and the name that took over, if any. */
  const dropped = new Map<string, Buffer | undefined>();

  for (;;) {
    if (opts.signal.aborted) throw opts.signal.reason ?? new Error("aborted");
    if (queue.length === 0) await refill();
    const q = queue.shift();
    if (!q) break;
    let entry = q.item.entry;
    let heirOf: string | undefined;
    if (entry.type === "hardlink" && entry.linkTarget && dropped.has(entry.linkTarget.toString("latin1"))) {
      // The name this one links to was not archived: link to the name that took its place, or
      // become that name (a regular file, read now).
      heirOf = entry.linkTarget.toString("latin1");
      const heir = dropped.get(heirOf);
      if (heir) {
        entry = { ...entry, linkTarget: heir };
        heirOf = undefined;
      } else {
        entry = { ...entry, type: "file", linkTarget: undefined };
        q.item = { ...q.item, entry };
        q.content = undefined;
      }
    }
    // Open (or collect the read-ahead of) a file before its header goes out: a file that is gone,
    // or is no longer a regular file, is left out of the archive rather than stored as zeros.
    let source: Buffer | FileHandle | undefined;
    if (entry.type === "file" && contentSize(entry) > 0) {
      source = await openSource(q, warn);
      if (source === undefined) {
        dropped.set(entry.path.toString("latin1"), undefined);
        if (queue.length < READ_AHEAD / 2) await refill();
        continue;
      }
    }
    if (heirOf !== undefined) dropped.set(heirOf, entry.path);
    const offset = out.offset;
    try {
      await out.push(encodeHeader(entry));
      if (source) await writeContent(out, entry, source, warn);
    } finally {
      if (source && !Buffer.isBuffer(source)) await source.close().catch(() => {});
    }
    entries++;
    if (opts.history) await opts.history.addFile(entry.path, fileStat(entry), BigInt(entry.ino ?? 0), BigInt(offset));
    opts.progress?.(out.offset, entries);
    if (queue.length < READ_AHEAD / 2) await refill();
  }
  await out.push(endOfArchive());
  await out.flush();
  await endAll(opts.out);
  return { bytes: out.offset, entries, warnings };
}

/** The read-ahead content of a small file, or an open handle on a large one; undefined (warned) to leave it out. */
async function openSource(q: Queued, warn: (m: string) => void): Promise<Buffer | FileHandle | undefined> {
  const entry = q.item.entry;
  if (q.content) {
    const got = await q.content;
    if (!(got instanceof Error)) return got;
    warn(`${show(entry.path)}: ${why(got)}; not backed up`);
    return undefined;
  }
  let fh: FileHandle | undefined;
  try {
    fh = await openForRead(q.item.absPath);
    const st = await fh.stat();
    if (!st.isFile()) throw new NotRegular();
    return fh;
  } catch (e) {
    await fh?.close().catch(() => {});
    warn(`${show(entry.path)}: ${why(e as Error)}; not backed up`);
    return undefined;
  }
}

class NotRegular extends Error {
  constructor() {
    super("it is no longer a regular file");
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

/** O_NOFOLLOW: a name replaced by a symlink is not followed. O_NONBLOCK: one replaced by a FIFO does not hang the open. */
async function openForRead(path: Buffer): Promise<FileHandle> {
  const flags = constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
  if (O_NOATIME && noatime) {
    try {
      return await open(path, flags | O_NOATIME);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EPERM") throw e;
      noatime = false; // not the owner and not root: atimes will move, nothing to do about it
    }
  }
  return open(path, flags);
}
let noatime = true;

/** Streams exactly contentSize(entry) bytes: a file that shrank is padded, one that grew is cut. */
async function writeContent(out: ChunkedWriter, entry: Entry, source: Buffer | FileHandle, warn: (m: string) => void): Promise<void> {
  const size = contentSize(entry);
  let sent = 0;
  if (Buffer.isBuffer(source)) {
    const data = source.length > size ? source.subarray(0, size) : source;
    if (source.length !== size) warn(`${show(entry.path)}: it changed size while being backed up (${size} bytes expected)`);
    await out.push(data);
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
  await out.push(padding(size));
}

/**
 * The whole content of a small file. The callback API: it is measurably cheaper per call than
 * fs/promises' FileHandle, and a tree of small files makes three calls per file.
 */
async function readWhole(path: Buffer, size: number): Promise<Buffer> {
  const fd = await openFd(path);
  try {
    // One byte more than expected tells us the file grew. A regular file reads short only at
    // its end, so a first read of exactly `size` bytes is the whole file.
    const buf = Buffer.allocUnsafe(size + 1);
    let got = await readFd(fd, buf, 0, buf.length, 0);
    if (got < size) {
      for (let n = got; n > 0 && got < buf.length; got += n) n = await readFd(fd, buf, got, buf.length - got, got);
      // Short: shrunk, or no longer a file at all (a FIFO reads as empty): only then is a stat worth it.
      if (got < size && !(await fstatFd(fd)).isFile()) throw new NotRegular();
    }
    return buf.subarray(0, got);
  } finally {
    fs.close(fd, () => {});
  }
}

function openFd(path: Buffer): Promise<number> {
  const flags = constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
  return new Promise((resolve, reject) => {
    const plain = () => fs.open(path, flags, (e, fd) => (e ? reject(e) : resolve(fd)));
    if (!(O_NOATIME && noatime)) return plain();
    fs.open(path, flags | O_NOATIME, (e, fd) => {
      if (!e) return resolve(fd);
      if (e.code !== "EPERM") return reject(e);
      noatime = false;
      plain();
    });
  });
}

function readFd(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

function fstatFd(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (e, st) => (e ? reject(e) : resolve(st))));
}

/** A path for messages: the bytes shown as UTF-8 where possible. */
export function show(rel: Buffer): string {
  return rel.length === 1 && rel[0] === 0x2e ? "/" : "/" + rel.toString("utf8");
}

export type { Entry };
