/**
 * The scan workers (see scan.ts). One code, two roles, set by the first message:
 *  - "start": the walker. Walks with walker-sync.ts and posts the entries in batches
 *    (scan-wire.ts), to the reader when there is one, else to the backup. It never runs more than WORKER_CREDIT
 *    batches ahead of the backup: the backup writes at the pace of the tape, and memory must not
 *    grow with the tree.
 *  - "read": the reader. Reads the small files of each batch whole, with plain syscalls, and
 *    passes the batch on to the backup.
 *
 * Workers are kept between scans (scan.ts): each "start" or "read" begins a new scan.
 * It is a separate entry point of the compiled binary (package.json: build).
 */
import fs from "node:fs";
import { parentPort, type MessagePort } from "node:worker_threads";
import { loadNative } from "../native/index.ts";
import {
  NotRegular,
  paddedTo,
  READ_FLAGS,
  readsAhead,
  scanFilter,
  toWire,
  WORKER_CREDIT,
  type BatchMessage,
  type ReadMessage,
  type RecycleMessage,
  type StartMessage,
  type WorkerMessage,
} from "./scan.ts";
import { BatchWriter, planBatch, type WireError } from "./scan-wire.ts";
import type { AtApi } from "../native/index.ts";
import { ledgered } from "./fd-ledger.ts";
import { backupOpenFlags, openSyncForBackup } from "./fsutil.ts";
import { ListDescriber, walkSync } from "./walker-sync.ts";
import { isListed } from "./walker.ts";
import type { Entry } from "../../formats/entry.ts";

/** A batch goes out at this many records or this many bytes (with the contents to read); the first ones are small so the backup starts at once. */
const BATCH_ITEMS = 512;
const FIRST_BATCH_ITEMS = 16;
const BATCH_BYTES = 4 * 1024 * 1024;

const port = parentPort!;
let credit = WORKER_CREDIT;
let waiting: (() => void) | undefined;

port.on("message", (m: { type: string }) => {
  if (m.type === "start") {
    // A kept worker serves one scan after another: every scan starts with its full credit.
    credit = WORKER_CREDIT;
    waiting = undefined;
    void walkRole(m as StartMessage).catch((e: unknown) => fatal(e, (m as StartMessage).to ?? port));
  } else if (m.type === "read") readRole(m as ReadMessage);
  else if (m.type === "recycle") keepForReuse((m as RecycleMessage).buffer);
  else if (m.type === "more") {
    credit++;
    waiting?.();
  }
});

function fatal(e: unknown, to: MessagePort | typeof port): void {
  to.postMessage({ type: "fatal", message: String((e as Error)?.message ?? e) } satisfies WorkerMessage);
}

async function walkRole(start: StartMessage): Promise<void> {
  const loaded = await loadNative();
  const native = loaded.at && start.ledger ? { ...loaded, at: ledgered(loaded.at, start.ledger) } : loaded;
  const out = start.to ?? port;
  const batch = new BatchWriter();
  let limit = FIRST_BATCH_ITEMS;
  const send = async () => {
    while (credit <= 0) await new Promise<void>((resolve) => (waiting = resolve));
    waiting = undefined;
    credit--;
    const data = batch.take();
    out.postMessage({ type: "batch", data } satisfies WorkerMessage, [data]);
    limit = Math.min(limit * 4, BATCH_ITEMS);
  };
  const report = (rel: Buffer, error: Error) => batch.addReport(rel, toWire(error));
  const selection = start.selection && { exclude: start.selection.exclude, files: start.selection.files.map((f) => Buffer.from(f)) };
  const walker = start.list
    ? describeList(Buffer.from(start.root), start.list, native, report)
    : walkSync({
        root: Buffer.from(start.root),
        native,
        filter: scanFilter({ selection, dumpNames: start.dumpNames }, report),
        xattrs: start.xattrs === "directories" ? "directories" : true,
        statFiles: start.statFiles,
        // Listed names need the filter only for a selection (scanFilter's name rules pass them).
        filterListed: selection !== undefined,
        onError: report,
      });
  // Contents to read ahead (a reader's work) count toward the batch size, so a batch's
  // contents stay about BATCH_BYTES.
  let planned = 0;
  for (const item of walker) {
    if (isListed(item)) batch.addListed(item);
    else {
      batch.addItem(item.entry, item.absPath);
      if (readsAhead(item.entry, start.readAhead)) planned += item.entry.size;
    }
    if (batch.count >= limit || planned + batch.size >= BATCH_BYTES) {
      await send();
      planned = 0;
    }
  }
  if (batch.count > 0) await send();
  out.postMessage({ type: "end" } satisfies WorkerMessage);
}

/** A list scan (dump's second pass): each path of the list described again, in order; one that cannot be is reported in its place. */
function* describeList(root: Buffer, list: Uint8Array, native: Awaited<ReturnType<typeof loadNative>>, report: (rel: Buffer, error: Error) => void) {
  const view = new DataView(list.buffer, list.byteOffset, list.byteLength);
  const bytes = Buffer.from(list.buffer, list.byteOffset, list.byteLength);
  const describer = new ListDescriber(root, native);
  try {
    for (let p = 0; p < list.byteLength; ) {
      const n = view.getUint32(p, true);
      const rel = Buffer.from(bytes.subarray(p + 4, p + 4 + n));
      p += 4 + n;
      let item: { entry: Entry; absPath: Buffer };
      try {
        item = describer.describe(rel);
      } catch (error) {
        report(rel, error as Error);
        continue;
      }
      yield item;
    }
  } finally {
    describer.close();
  }
}

function readRole(m: ReadMessage): void {
  // A new scan: buffers of an earlier one that never came back are forgotten.
  pool = m.pool;
  parent.forget();
  void loadNative().then((n) => (parent.at = n.at ? (m.ledger ? ledgered(n.at, m.ledger) : n.at) : null));
  out = 0;
  queued.length = 0;
  pump = () => {
    // Batches wait here, in order, while the pool has no buffer to fill.
    while (queued.length > 0) {
      const msg = queued[0]!;
      if (msg.type === "batch" && pool !== undefined && spare.length === 0 && out >= pool) return;
      queued.shift();
      handle(msg);
    }
  };
  const handle = (msg: WorkerMessage) => {
    try {
      if (msg.type === "batch") {
        const filled = readContents(msg.data, m.readAhead, m.headerRoom, m.frameAlign);
        const moved = [filled.data, filled.contents!, filled.slots!.buffer as ArrayBuffer];
        if (filled.heads) moved.push(filled.heads.buffer as ArrayBuffer);
        port.postMessage(filled, moved);
      } else {
        port.postMessage(msg);
        // This scan is over: the next one (the worker is kept) comes with a port of its own.
        if (msg.type === "end") {
          m.from.close();
          parent.forget();
        }
      }
    } catch (e) {
      fatal(e, port);
    }
  };
  m.from.on("message", (msg: WorkerMessage) => {
    queued.push(msg);
    pump();
  });
}

/** The reader's pool (ReadMessage.pool; undefined = no pool, a buffer per batch) and its buffers out. */
let pool: number | undefined;
let out = 0;
/** Batches (and the end) not yet handled, waiting for a buffer. */
const queued: WorkerMessage[] = [];
let pump = () => {};

/**
 * Reads the small files of a batch, all into one buffer. With `headerRoom` (the tar backup)
 * the buffer is laid out as the stream will be: every item gets that many bytes before it for
 * its header, and a content is followed by zeros to the next 512-byte (`align`) boundary, so the backup
 * writes header, content and padding of many files as one slice, with no copy.
 */
function readContents(data: ArrayBuffer, limit: number, headerRoom = 0, align = 512): BatchMessage {
  const plan = planBatch(data);
  const n = plan.count;
  const slots = new Int32Array(2 * n).fill(-1);
  const heads = headerRoom > 0 ? new Int32Array(n).fill(-1) : undefined;
  // readsAhead() of the entry, from the plan: a regular file without data runs, 0 < size <= limit.
  const reads = (i: number) => plan.fileSize[i]! > 0 && plan.fileSize[i]! <= limit;
  const room = (i: number) => (reads(i) ? framed(plan.fileSize[i]!, headerRoom, align) : 0);
  let total = 1; // the last file's extra byte
  for (let i = 0; i < n; i++) total += (heads && plan.isItem[i] ? headerRoom : 0) + room(i);
  const contents = reusedOr(total, pool !== undefined);
  const errors: Array<[number, WireError]> = [];
  const batch = Buffer.from(data);
  let pos = 0;
  for (let i = 0; i < n; i++) {
    if (!plan.isItem[i]) continue;
    if (heads) {
      heads[i] = pos;
      pos += headerRoom;
    }
    if (!reads(i)) continue;
    const size = plan.fileSize[i]!;
    try {
      // The extra byte that tells a file grew lands in the padding or in the next item's header
      // room, both rewritten: the padding here, the header by the backup.
      const absPath = batch.subarray(plan.absStart[i]!, plan.absStart[i]! + plan.absLength[i]!);
      const got = readWholeSync(absPath, size, contents, pos);
      slots[2 * i] = pos;
      slots[2 * i + 1] = got;
      if (heads) contents.fill(0, pos + Math.min(got, size), pos + framed(size, headerRoom, align));
    } catch (error) {
      errors.push([i, toWire(error as Error)]);
    }
    pos += room(i);
  }
  const msg: BatchMessage = { type: "batch", data, slots, contents: contents.buffer as ArrayBuffer };
  if (heads) msg.heads = heads;
  if (errors.length > 0) msg.errors = errors;
  return msg;
}

/** Contents buffers the backup gave back (scan.ts recycleFrames), for the next batches. */
const spare: ArrayBuffer[] = [];

/** A new buffer is at least this big (a batch's contents and header room), so a given-back one fits most batches. */
const MIN_CONTENTS = BATCH_BYTES + BATCH_ITEMS * 1536;

function keepForReuse(buffer: ArrayBuffer): void {
  if (pool === undefined) return; // from a scan that is over (the pool is per scan)
  out--;
  spare.push(buffer);
  pump();
}

/** A buffer of `size` bytes: from the pool when the scan has one (a given-back buffer when one fits). */
function reusedOr(size: number, pooled: boolean): Buffer {
  if (!pooled) return Buffer.allocUnsafeSlow(size);
  out++;
  const i = spare.findIndex((b) => b.byteLength >= size);
  if (i >= 0) return Buffer.from(spare.splice(i, 1)[0]!, 0, size);
  spare.shift(); // one too small for this batch makes room for the new one
  return Buffer.from(Buffer.allocUnsafeSlow(Math.max(size, MIN_CONTENTS)).buffer, 0, size);
}

/** Bytes a read-ahead content takes: with header room, padded to `align`; else one more (the growth probe). */
function framed(size: number, headerRoom: number, align: number): number {
  return headerRoom > 0 ? paddedTo(size, align) : size + 1;
}

/**
 * The directory of the files being read, kept open while the next file is in it too: the
 * reader opens a file by its name in that directory (openat through bun:ffi, AtApi), one path
 * component for the kernel instead of the whole path. null `at` (Node, Deno): paths.
 */
class ParentDir {
  at: AtApi | null = null;
  private path: Buffer | undefined;
  private fd = -1;

  /** An fd of the file at `abs` opened read-only, or -1 (the caller opens it by path, which also says why it failed). */
  open(abs: Buffer): number {
    const at = this.at;
    if (!at) return -1;
    const slash = abs.lastIndexOf(0x2f);
    if (slash <= 0) return -1;
    const dir = abs.subarray(0, slash);
    if (!this.path || !this.path.equals(dir)) {
      this.forget();
      // The path's earlier components are followed, as open(abs) follows them; the file's own name is not (O_NOFOLLOW).
      this.fd = at.openDir(dir, true);
      if (this.fd < 0) return -1;
      this.path = Buffer.from(dir);
    }
    return at.openAt(this.fd, abs.subarray(slash + 1), backupOpenFlags(READ_FLAGS));
  }

  forget(): void {
    if (this.fd >= 0) this.at?.close(this.fd);
    this.fd = -1;
    this.path = undefined;
  }
}
const parent = new ParentDir();

/** pread through bun:ffi when there is an AtApi; a failure is asked again of node:fs, which throws its error. */
function readAt(fd: number, buf: Buffer, at: number, length: number, position: number): number {
  const got = parent.at ? parent.at.readAt(fd, buf, at, length, position) : -1;
  return got >= 0 ? got : fs.readSync(fd, buf, at, length, position);
}

/**
 * As scan.ts readWhole, with plain syscalls, into buf[at, at + size + 1): one byte more than
 * expected tells us the file grew; a first read of `size` bytes is the whole file. Returns the
 * bytes read (at most size + 1).
 */
function readWholeSync(path: Buffer, size: number, buf: Buffer, at: number): number {
  let fd = parent.open(path);
  if (fd < 0) fd = openSyncForBackup(path, READ_FLAGS);
  try {
    const end = at + size + 1;
    let got = readAt(fd, buf, at, size + 1, 0);
    if (got < size) {
      for (let n = got; n > 0 && at + got < end; got += n) n = readAt(fd, buf, at + got, size + 1 - got, got);
      // Short: shrunk, or no longer a file at all (a FIFO reads as empty).
      if (got < size && !fs.fstatSync(fd).isFile()) throw new NotRegular();
    }
    return got;
  } finally {
    if (parent.at) parent.at.close(fd);
    else fs.closeSync(fd);
  }
}
