/**
 * The tar backup: walk -> pax writer -> data connection, with file history.
 *
 * Small files are read ahead with bounded concurrency (their contents wait in a short queue
 * while earlier entries are written), so a tree of many small files does not pay one
 * open/read/close round trip per file in series. Large files stream in 1 MiB pieces.
 * Each entry's `fh_info` is the stream offset of its first header block.
 */
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import type { Duplex } from "node:stream";
import type { Entry } from "../../formats/entry.ts";
import { contentSize, encodeHeader, endOfArchive, padding } from "../../formats/tar/writer.ts";
import type { NativeApi } from "../native/index.ts";
import { ChunkedWriter, endAll } from "../transport/backpressure.ts";
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

  for (;;) {
    if (opts.signal.aborted) throw opts.signal.reason ?? new Error("aborted");
    if (queue.length === 0) await refill();
    const q = queue.shift();
    if (!q) break;
    const entry = q.item.entry;
    const offset = out.offset;
    await out.push(encodeHeader(entry));
    if (entry.type === "file") await writeContent(out, q, warn);
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

/** Streams exactly contentSize(entry) bytes: a file that shrank is padded, one that grew is cut. */
async function writeContent(out: ChunkedWriter, q: Queued, warn: (m: string) => void): Promise<void> {
  const entry = q.item.entry;
  const size = contentSize(entry);
  let sent = 0;
  if (q.content) {
    const got = await q.content;
    if (got instanceof Error) {
      warn(`${show(entry.path)}: ${got.message}; stored as zeros`);
    } else {
      const data = got.length > size ? got.subarray(0, size) : got;
      if (got.length !== size) warn(`${show(entry.path)}: changed size while being backed up`);
      await out.push(data);
      sent = data.length;
    }
  } else {
    let fh: FileHandle | undefined;
    try {
      fh = await open(q.item.absPath, "r");
      const runs = entry.sparse ?? [{ offset: 0, length: entry.size }];
      for (const run of runs) {
        let pos = run.offset;
        const end = run.offset + run.length;
        while (pos < end) {
          const want = Math.min(PIECE, end - pos);
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await fh.read(buf, 0, want, pos);
          if (bytesRead === 0) throw new Error("file shrank while being backed up");
          await out.push(buf.subarray(0, bytesRead));
          sent += bytesRead;
          pos += bytesRead;
        }
      }
    } catch (e) {
      warn(`${show(entry.path)}: ${(e as Error).message}; the rest is stored as zeros`);
    } finally {
      await fh?.close();
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

async function readWhole(path: Buffer, size: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    // One byte more than expected tells us the file grew.
    const buf = Buffer.allocUnsafe(size + 1);
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

/** A path for messages: the bytes shown as UTF-8 where possible. */
export function show(rel: Buffer): string {
  return rel.length === 1 && rel[0] === 0x2e ? "/" : "/" + rel.toString("utf8");
}

export type { Entry };
