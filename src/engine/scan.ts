/**
 * The source side of every backup: the walk, the selection (FILES/EXCLUDE), and the contents of
 * small files read ahead of their turn. Backup engines iterate ScanItems and never touch the
 * walk themselves.
 *
 * Two ways to get them, one contract:
 *  - Under Bun (the compiled binary, `npm start`): a worker thread (scan-worker.ts) runs the
 *    synchronous walk of walker-sync.ts and reads small files with plain syscalls, and hands
 *    them over in batches. A tree of small files costs a handful of syscalls per file on
 *    another core instead of a promise and a thread-pool round trip per call on the thread that
 *    also encodes the stream and serves every session. A call that hangs (a dead NFS server)
 *    blocks only that worker, and the backup's abort terminates it.
 *  - Elsewhere (Node under vitest, Deno): the asynchronous walk of walker.ts, with the reads of
 *    small files started READ_AHEAD entries ahead, in this thread.
 */
import fs, { constants } from "node:fs";
import type { MessagePort } from "node:worker_threads";
import type { Entry, EntryType } from "../../formats/entry.ts";
import { nameProblem } from "../../formats/dump/index.ts";
import { entryPointUrl } from "../native/entry-point.ts";
import { isBun, type NativeApi } from "../native/index.ts";
import { O_NOFOLLOW, O_NONBLOCK, openFdForBackup } from "./fsutil.ts";
import { selectionFilter, type Selection } from "./selection.ts";
import { decodeBatch, type WireError } from "./scan-wire.ts";
import { walk, type ListedNames } from "./walker.ts";
import { closeNoted, newLedger } from "./fd-ledger.ts";

export interface ScanOptions {
  /** Where the walk reads (the live root, or its view in a snapshot). */
  root: Buffer;
  /** Applied to each entry before it is handed on (a snapshot's objects get the live st_dev). */
  remap?: (entry: Entry) => void;
  native?: NativeApi;
  /** FILES / EXCLUDE; absent = everything. */
  selection?: Selection;
  /**
   * Instead of walking: these paths (relative to root, laid out as packList lays them), each
   * described again, in this order; one that cannot be described is reported (onError) in its
   * place. Only the worker scan has it (listScanAvailable); dump's second pass uses it. When it
   * fills an ArrayBuffer of its own it is moved to the walker, not copied (at 1,000,000 paths,
   * some 20 MB): the caller must not use it after the scan starts.
   */
  list?: Uint8Array;
  /** Leave out (with a report) names the dump format cannot carry. */
  dumpNames?: boolean;
  /** Whose extended attributes the walk reads: everyone's (the default), or only directories' (dump's first pass). */
  xattrs?: "all" | "directories";
  /** Regular files up to this size come with their content; 0 = none do. */
  readAhead: number;
  /**
   * false: non-directories described from the directory listing alone (WalkOptions.statFiles;
   * the worker walk only). They do not come as items: each directory's come to `onListed`, in
   * walk order between the items (right after their directory's item), as one ListedNames.
   */
  statFiles?: boolean;
  onListed?: (names: ListedNames) => void;
  /** Objects the walk could not read, names left out: reported here, the scan goes on. */
  onError(rel: Buffer, error: Error): void;
  /**
   * Bytes to leave before each item in the read-ahead buffer, for its header (tar); 0 = none.
   * Items then come with a `frame`. Only the worker scan makes frames.
   */
  headerRoom?: number;
  /** With headerRoom: a content is followed by zeros up to a multiple of this (tar 512, the default; dump 1024). */
  frameAlign?: number;
  /**
   * The consumer gives every frame buffer back (recycleFrames) once its bytes are written. The
   * reader then fills a fixed pool of buffers (FRAME_POOL) and waits for one to come back
   * rather than allocate: memory stays flat however fast it reads. Without it each batch gets
   * a buffer of its own, left to the garbage collector.
   */
  recycled?: boolean;
  /**
   * Called when the worker scan must wait for its next batch: the consumer sends what it
   * holds, so that the buffers the reader's pool waits for can come back.
   */
  beforeWait?: () => void;
  /** "inline" forces the in-thread scan (tests compare the two). */
  mode?: "auto" | "inline";
}

export interface ScanItem {
  entry: Entry;
  absPath: Buffer;
  /** For a small regular file (opts.readAhead): its content, or why it could not be read. */
  content?: Buffer | Error;
  /**
   * With ScanOptions.headerRoom: the item's stretch of the read-ahead buffer, headerRoom bytes
   * (free for its header, right-aligned) then, for a file read ahead, its content and zeros to
   * the next 512-byte (ScanOptions.frameAlign) boundary. Frames of consecutive items are adjacent, in one buffer.
   */
  frame?: Buffer;
}

/** Read-ahead depth of the in-thread scan: file reads in flight while earlier entries are written. */
const READ_AHEAD = 64;

/** Whether scan() can take a `list` here (it needs the worker scan). */
export function listScanAvailable(opts: Pick<ScanOptions, "mode"> = {}): boolean {
  return (opts.mode ?? "auto") === "auto" && isBun() && scanWorkerUrl() !== undefined;
}

export function scan(opts: ScanOptions): AsyncGenerator<ScanItem> {
  if (opts.list && !listScanAvailable(opts)) throw new Error("a list scan needs the scan workers");
  const url = (opts.mode ?? "auto") === "auto" && isBun() ? scanWorkerUrl() : undefined;
  const items = url ? scanInWorker(opts.remap && opts.onListed ? { ...opts, onListed: remappedListed(opts.onListed, opts.remap) } : opts, url) : scanInThread(opts);
  return opts.remap ? remapped(items, opts.remap) : items;
}

async function* remapped(items: AsyncGenerator<ScanItem>, remap: (entry: Entry) => void): AsyncGenerator<ScanItem> {
  try {
    for await (const item of items) {
      remap(item.entry);
      yield item;
    }
  } finally {
    await items.return(undefined);
  }
}

/** Listed names are non-directories on their directory's device: that is remapped as one of theirs would be. */
function remappedListed(onListed: (names: ListedNames) => void, remap: (entry: Entry) => void): (names: ListedNames) => void {
  return (names) => {
    const like: Entry = { path: names.dir, type: "file", mode: 0, uid: 0, gid: 0, size: 0, mtime: { sec: 0, nsec: 0 }, dev: names.dev };
    remap(like);
    names.dev = like.dev ?? names.dev;
    onListed(names);
  };
}

/** The walk filter for a scan: the selection, and for dump the names restore cannot take. */
export function scanFilter(
  opts: Pick<ScanOptions, "selection" | "dumpNames">,
  report: (rel: Buffer, error: Error) => void,
): ((rel: Buffer, type: EntryType) => boolean) | undefined {
  const selected = selectionFilter(opts.selection);
  if (!opts.dumpNames) return selected ? (rel, type) => selected(rel, type === "directory") : undefined;
  return (rel, type) => {
    // A name dump cannot carry is left out before it gets a number, and said so. (A 255-byte
    // name is carried: the dump writer says what Linux restore makes of it.)
    const slash = rel.lastIndexOf(0x2f);
    const base = slash < 0 ? rel : rel.subarray(slash + 1);
    const problem = nameProblem(base);
    if (problem && problem !== "restore-limit") {
      const why = problem === "invalid" ? "invalid name" : `${base.length}-byte name (dump names are at most 255 bytes)`;
      report(rel, new Error(`${why}; not backed up`));
      return false;
    }
    return selected ? selected(rel, type === "directory") : true;
  };
}

/** Whether a scan reads this entry's content ahead. */
export function readsAhead(entry: Entry, limit: number): boolean {
  return entry.type === "file" && !entry.sparse && entry.size > 0 && entry.size <= limit;
}

/** A regular file that turned into something else between the walk and the read. */
export class NotRegular extends Error {
  constructor() {
    super("it is no longer a regular file");
  }
}

// ---- in this thread ----

async function* scanInThread(opts: ScanOptions): AsyncGenerator<ScanItem> {
  const items = walk({
    root: opts.root,
    native: opts.native,
    filter: scanFilter(opts, opts.onError),
    xattrs: opts.xattrs === "directories" ? "directories" : true,
    onError: opts.onError,
  })[Symbol.asyncIterator]();
  const queue: Array<{ item: ScanItem; content?: Promise<Buffer | Error> }> = [];
  let walked = false;
  try {
    for (;;) {
      while (!walked && queue.length < READ_AHEAD) {
        const next = await items.next();
        if (next.done) {
          walked = true;
          break;
        }
        const { entry, absPath } = next.value;
        const content = readsAhead(entry, opts.readAhead) ? readWhole(absPath, entry.size).catch((e: Error) => e) : undefined;
        queue.push({ item: { entry, absPath }, content });
      }
      const head = queue.shift();
      if (!head) return;
      if (head.content) head.item.content = await head.content;
      yield head.item;
    }
  } finally {
    await items.return?.();
  }
}

/**
 * The whole content of a small file. The callback API: it is measurably cheaper per call than
 * fs/promises' FileHandle, and a tree of small files makes three calls per file.
 */
async function readWhole(path: Buffer, size: number): Promise<Buffer> {
  const fd = await openFdForBackup(path, READ_FLAGS);
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

/** O_NOFOLLOW: a name replaced by a symlink is not followed. O_NONBLOCK: one replaced by a FIFO does not hang the open. */
export const READ_FLAGS = constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
function readFd(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

function fstatFd(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (e, st) => (e ? reject(e) : resolve(st))));
}

// ---- in a worker ----

/** What crosses between the threads (structured clone turns Buffers into Uint8Arrays). */
/** To the walker. With `to`, batches go there (the reader), which reads the contents. */
export interface StartMessage {
  type: "start";
  root: Uint8Array;
  selection?: { exclude: string[]; files: Uint8Array[] };
  dumpNames: boolean;
  xattrs?: "all" | "directories";
  readAhead: number;
  statFiles?: boolean;
  to?: MessagePort;
  /** A list scan: u32 length + path bytes, one after another. */
  list?: Uint8Array;
  /** Where the worker notes the descriptors it holds open (fd-ledger.ts). */
  ledger?: Int32Array;
}
/** To the reader: the walker's batches arrive on `from`. */
export interface ReadMessage {
  type: "read";
  from: MessagePort;
  readAhead: number;
  headerRoom?: number;
  frameAlign?: number;
  /** ScanOptions.recycled: at most this many frame buffers out at once. */
  pool?: number;
  /** Shared with the walker (fd-ledger.ts). */
  ledger?: Int32Array;
}
/** A batch of scan-wire.ts records, with the contents the reader filled in. */
export interface BatchMessage {
  type: "batch";
  data: ArrayBuffer;
  /** Per record [start, length] in `contents`; start -1 = no content. */
  slots?: Int32Array;
  contents?: ArrayBuffer;
  /** With headerRoom: per record where its header room starts in `contents` (-1: a report). */
  heads?: Int32Array;
  /** Records whose file could not be read: index and why. */
  errors?: Array<[number, WireError]>;
}
/** To the reader: a contents buffer to fill again. */
export interface RecycleMessage {
  type: "recycle";
  buffer: ArrayBuffer;
}
export type WorkerMessage = BatchMessage | { type: "end" } | { type: "fatal"; message: string };

/** `size` rounded up to a multiple of `align`: a frame's content and the zeros after it. */
export function paddedTo(size: number, align: number): number {
  return size + ((align - (size % align)) % align);
}

/** Batches a worker may have sent ahead of the one being consumed. */
export const WORKER_CREDIT = 2;
/**
 * Frame buffers a recycled scan may have out at once: the batch being written, those the
 * socket still holds, and WORKER_CREDIT read ahead of them.
 */
export const FRAME_POOL = 6;
/**
 * Under Bun the garbage collector does not count memory that arrived from another thread, so
 * contents buffers that are not recycled are counted here, and a collection is asked for after
 * this many bytes of them: without it a backup over the LOCAL pipe grew by its stream size.
 */
const UNCOUNTED_GC_BYTES = 64 * 1024 * 1024;
let uncounted = 0;

function countUncounted(bytes: number): void {
  uncounted += bytes;
  if (uncounted < UNCOUNTED_GC_BYTES) return;
  uncounted = 0;
  (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc(false);
}

/**
 * Where the worker's code is (entry-point.ts): an entry point of the build. Undefined (scan in
 * this thread) when a binary was built without it.
 */
export function scanWorkerUrl(): URL | undefined {
  if (workerUrl === null) workerUrl = findWorker();
  return workerUrl;
}
let workerUrl: URL | undefined | null = null;

function findWorker(): URL | undefined {
  return entryPointUrl(import.meta.url, "engine/scan-worker.ts");
}

/**
 * Read-ahead buffers go back to the reader that filled them once the backup is done with them
 * (recycleFrames: their bytes were written), so a backup reuses a few buffers instead of
 * leaving one per batch to the garbage collector, which under Bun does not count memory that
 * arrived from another thread and let a backup of small files grow by its stream size.
 */
const frameOwners = new WeakMap<ArrayBufferLike, Worker>();

/** Gives a frame buffer (ScanItem.frame's .buffer) back; nothing may use its bytes after this. */
export function recycleFrames(buffer: ArrayBufferLike): void {
  const reader = frameOwners.get(buffer);
  if (!reader) return;
  frameOwners.delete(buffer);
  try {
    reader.postMessage({ type: "recycle", buffer: buffer as ArrayBuffer } satisfies RecycleMessage, [buffer as ArrayBuffer]);
  } catch {
    // The reader has ended: the buffer is left to the garbage collector.
  }
}

/**
 * Scan workers are started once and kept: a new worker costs a thread, a module load and its
 * JIT warm-up, which for a tree of 20,000 small files was a quarter of the backup's CPU. A
 * scan takes an idle pair (or starts one), and gives it back when it ran to its end; a scan
 * that stopped early (abort, error, a consumer that left) terminates its workers, since one of
 * them may be stuck in a system call or still walking. Idle workers are unref'd: they never
 * keep the process alive.
 */
const IDLE_KEPT = 2;
interface IdlePair {
  walker: Worker;
  reader?: Worker;
  url: URL;
  /** Drops the pair from the pool when one of its workers fails or exits while idle. */
  drop: () => void;
}
const idle: IdlePair[] = [];
type Worker = import("node:worker_threads").Worker;

/**
 * Workers for a scan: `reader` when it reads ahead. A scan without one (dump's first pass) takes
 * a lone walker, else an idle pair's walker, else a new pair's, and keeps the pair's reader aside
 * (`spare`) until the pair goes back to the pool: one worker fewer (each is a runtime of its own,
 * some 20 MiB) for a dump, whose second pass then takes the same pair.
 */
async function takeWorkers(url: URL, withReader: boolean): Promise<ScanWorkers> {
  const fits = (p: IdlePair) => p.url.href === url.href && (p.reader !== undefined) === withReader;
  let i = idle.findIndex(fits);
  if (i < 0 && !withReader) i = idle.findIndex((p) => p.url.href === url.href);
  if (i >= 0) {
    const pair = idle.splice(i, 1)[0]!;
    for (const w of [pair.walker, pair.reader]) {
      w?.off("error", pair.drop).off("exit", pair.drop);
      w?.ref();
    }
    return withReader || !pair.reader ? { walker: pair.walker, reader: pair.reader } : { walker: pair.walker, spare: pair.reader };
  }
  const { Worker } = await import("node:worker_threads");
  return withReader ? { walker: new Worker(url), reader: new Worker(url) } : { walker: new Worker(url), spare: new Worker(url) };
}

interface ScanWorkers {
  walker: Worker;
  /** The stage after the walker, when the scan reads ahead. */
  reader?: Worker;
  /** A borrowed pair's reader, unused by this scan: it goes back to the pool with the walker. */
  spare?: Worker;
}

/**
 * Starts a pair of scan workers (a walker and its reader) now and keeps it idle for the scans to
 * come (a scan that reads nothing ahead, dump's first pass, borrows its walker). A short process
 * (the CLI's backup) otherwise waits for them (a thread and a module load each, about 70 ms here)
 * just as its walk begins; started at once, they start while it sets up its drive, its server
 * and its catalog. Nothing happens without the scan workers, or with the pool full.
 */
export async function prewarmScanWorkers(): Promise<void> {
  const url = listScanAvailable() ? scanWorkerUrl() : undefined;
  if (!url || idle.length >= IDLE_KEPT) return;
  const { Worker } = await import("node:worker_threads");
  keepWorkers({ walker: new Worker(url), reader: new Worker(url) }, url);
}

function keepWorkers(pair: { walker: Worker; reader?: Worker }, url: URL): void {
  if (idle.length >= IDLE_KEPT) {
    void Promise.all([pair.walker.terminate(), pair.reader?.terminate()]);
    return;
  }
  // A kept worker that fails or exits is dropped from the pool (and its partner ended).
  const entry: IdlePair = { ...pair, url, drop: () => {} };
  entry.drop = () => {
    const at = idle.indexOf(entry);
    if (at < 0) return;
    idle.splice(at, 1);
    void Promise.all([pair.walker.terminate(), pair.reader?.terminate()]);
  };
  for (const w of [pair.walker, pair.reader]) {
    if (!w) continue;
    w.unref();
    w.on("error", entry.drop).on("exit", entry.drop);
  }
  idle.push(entry);
}

/**
 * Two workers when contents are wanted: the walker (lstat, readdir, xattrs) passes each batch to
 * the reader (open, read, close of the small files), which hands it to this thread. Both make
 * syscalls at once, on two cores, and this thread only encodes and sends.
 */
async function* scanInWorker(opts: ScanOptions, url: URL): AsyncGenerator<ScanItem> {
  const run = await WorkerScan.start(opts, url);
  try {
    for (;;) {
      const batch = run.take();
      if (!batch) {
        if (run.finished) return;
        await run.arrival();
        continue;
      }
      for (let i = 0; i < batch.records.length; i++) {
        const item = itemOf(batch, i, opts);
        if (item) yield item;
      }
    }
  } finally {
    await run.close();
  }
}

// The generator above only hands out items; starting the workers, taking their batches and
// letting them go are here and in small functions below. The JIT compiles a generator whole, and
// with all of it inside, this one was one of the largest functions a backup compiles (some 3,300
// bytecodes, 35-145 ms a compile).

/** One scan by a pair of workers: their batches as they come, and how the scan ended. */
class WorkerScan {
  private readonly batches: BatchMessage[] = [];
  private ended = false;
  /** Every batch was taken after the workers' "end": they may be kept for the next scan. */
  finished = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private readonly stages: Worker[];
  private readonly last: Worker;
  private readonly ledger = newLedger();

  private constructor(
    private readonly opts: ScanOptions,
    private readonly url: URL,
    private readonly pair: ScanWorkers,
  ) {
    // (A spare is listened to as well: one that died must not go back to the pool.)
    this.stages = [pair.walker, pair.reader, pair.spare].filter((w): w is Worker => w !== undefined);
    this.last = pair.reader ?? pair.walker; // the stage whose batches come here
  }

  static async start(opts: ScanOptions, url: URL): Promise<WorkerScan> {
    const { MessageChannel } = await import("node:worker_threads");
    const run = new WorkerScan(opts, url, await takeWorkers(url, opts.readAhead > 0));
    const { walker, reader } = run.pair;
    run.last.on("message", run.onMessage);
    for (const w of run.stages) {
      w.on("error", run.onError);
      w.on("exit", run.onExit);
    }
    const start: StartMessage = {
      type: "start",
      root: opts.root,
      selection: opts.selection,
      dumpNames: opts.dumpNames ?? false,
      xattrs: opts.xattrs,
      readAhead: opts.readAhead,
      statFiles: opts.statFiles,
      ledger: run.ledger,
    };
    if (opts.list) start.list = opts.list;
    if (reader) {
      const { port1, port2 } = new MessageChannel();
      const pool = opts.recycled && opts.headerRoom ? FRAME_POOL : undefined;
      reader.postMessage({ type: "read", from: port2, readAhead: opts.readAhead, headerRoom: opts.headerRoom, frameAlign: opts.frameAlign, pool, ledger: run.ledger } satisfies ReadMessage, [port2]);
      walker.postMessage({ ...start, to: port1 }, [port1, ...movable(start.list)]);
    } else walker.postMessage(start, movable(start.list));
    return run;
  }

  private readonly onMessage = (m: WorkerMessage) => {
    if (m.type === "batch") this.batches.push(m);
    else if (m.type === "end") this.ended = true;
    else this.failure = new Error(m.message);
    this.wake?.();
  };
  private readonly onError = (e: Error) => {
    this.failure ??= e;
    this.wake?.();
  };
  private readonly onExit = (code: number) => {
    if (!this.ended) this.failure ??= new Error(`a scan worker stopped early (exit code ${code})`);
    this.wake?.();
  };

  /** The next batch, decoded (the walker is given credit for one more); undefined when none has come yet or the scan is over (then `finished`). */
  take(): Received | undefined {
    const batch = this.batches.shift();
    if (batch) {
      this.pair.walker.postMessage({ type: "more" });
      return receive(batch, this.opts, this.pair.reader);
    }
    if (this.failure) throw this.failure;
    if (this.ended) this.finished = true;
    return undefined;
  }

  /** Resolves when a batch, the end or a failure comes. */
  arrival(): Promise<void> {
    this.opts.beforeWait?.();
    return new Promise<void>((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
    });
  }

  /** Keeps the workers for the next scan when this one ended well, else stops them. */
  async close(): Promise<void> {
    const { walker, reader, spare } = this.pair;
    this.last.off("message", this.onMessage);
    for (const w of this.stages) {
      w.off("error", this.onError);
      w.off("exit", this.onExit);
    }
    if (this.finished && !this.failure) keepWorkers({ walker, reader: reader ?? spare }, this.url);
    else {
      await Promise.all([walker.terminate(), reader?.terminate(), spare?.terminate()]);
      // Terminated workers ran no finally: their open directories and file are ours to close.
      closeNoted(this.ledger, (fd) => fs.closeSync(fd));
    }
  }
}

/** The ArrayBuffer of `list` to move with the message, when `list` is all of it (else it is copied). */
function movable(list: Uint8Array | undefined): ArrayBuffer[] {
  if (!list || list.byteOffset !== 0 || list.byteLength !== list.buffer.byteLength || !(list.buffer instanceof ArrayBuffer)) return [];
  return [list.buffer];
}

/** A batch from the workers, decoded: its records and the buffer their contents are in. */
interface Received {
  batch: BatchMessage;
  records: ReturnType<typeof decodeBatch>;
  contents: Buffer | undefined;
  errors: Map<number, WireError>;
  align: number;
}

function receive(batch: BatchMessage, opts: ScanOptions, reader: Worker | undefined): Received {
  const contents = batch.contents ? Buffer.from(batch.contents) : undefined;
  if (batch.heads && reader && batch.contents && opts.recycled) frameOwners.set(batch.contents, reader);
  else if (batch.contents) countUncounted(batch.contents.byteLength);
  return { batch, records: decodeBatch(batch.data), contents, errors: new Map(batch.errors ?? []), align: opts.frameAlign ?? 512 };
}

/** Record `i` of the batch as an item; a report or a listing goes to its callback instead (undefined). */
function itemOf(b: Received, i: number, opts: ScanOptions): ScanItem | undefined {
  const r = b.records[i]!;
  if ("report" in r) {
    opts.onError(r.report.rel, fromWire(r.report.error));
    return undefined;
  }
  if ("listed" in r) {
    if (!opts.onListed) throw new Error("a scan with statFiles false needs onListed");
    opts.onListed(r.listed);
    return undefined;
  }
  const item: ScanItem = r;
  const { batch, contents } = b;
  const start = batch.slots?.[2 * i] ?? -1;
  const got = start >= 0 ? batch.slots![2 * i + 1]! : 0;
  if (contents && start >= 0) item.content = contents.subarray(start, start + got);
  else if (b.errors.has(i)) item.content = fromWire(b.errors.get(i)!);
  const head = batch.heads?.[i] ?? -1;
  if (contents && head >= 0) {
    const end = start >= 0 ? start + paddedTo(r.entry.size, b.align) : head + opts.headerRoom!;
    item.frame = contents.subarray(head, end);
  }
  return item;
}

/** Paths as a list scan takes them (ScanOptions.list): u32 length + the path's bytes, one after another. */
export function packList(list: Buffer[]): Uint8Array {
  let total = 0;
  for (const p of list) total += 4 + p.length;
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const p of list) {
    out.writeUInt32LE(p.length, at);
    p.copy(out, at + 4);
    at += 4 + p.length;
  }
  return out;
}

export function toWire(error: Error): WireError {
  const code = (error as NodeJS.ErrnoException).code;
  return typeof code === "string" ? { message: error.message, code } : { message: error.message };
}

function fromWire(w: WireError): Error {
  const e = new Error(w.message) as NodeJS.ErrnoException;
  if (w.code) e.code = w.code;
  return e;
}
