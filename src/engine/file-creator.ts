/**
 * Small files of a restore made on other threads. A restore of small files is six system calls
 * per file (create, write, chown, chmod, times, close) after parsing its header; made on the
 * restore's own thread they took as long as the parsing, and on a journaling filesystem much
 * longer. Here the restore's thread parses the stream and fills batches (create-batch.ts) while
 * CREATOR_THREADS threads make the files of earlier batches, on the other cores.
 *
 * FileCreator is the threads; CreateQueue is one recovery's use of them, shared by its writers
 * (one per destination, so memory does not grow with the nlist): the batch being filled, the
 * batches out, which names they hold (a later object of the same name waits for them: the
 * archive's order decides what is left), and the directory descriptors they use (kept open until
 * every batch naming one is back).
 *
 * Only with the native *at calls (Bun, the compiled binary) and the worker's code present;
 * otherwise the writer makes every file itself, as before.
 */
import os from "node:os";
import type { Worker } from "node:worker_threads";
import type { Entry } from "../../formats/entry.ts";
import { entryPointUrl } from "../native/entry-point.ts";
import { isBun } from "../native/index.ts";
import { CreateBatch, type BatchBuffers, type CreateFailure } from "./create-batch.ts";
import type { CreateReply, CreateRequest } from "./create-worker.ts";
import { closeQuietly } from "./fsutil.ts";

/**
 * Threads making files: one per core the restore's own thread leaves, at most two. On two cores
 * one does it: the restore's thread (parsing the stream) is the slower side, and a second
 * creator only contends for the filesystem's locks (20,000 x 4 KiB on ext4: the same time with
 * 12% more CPU).
 */
const CREATOR_THREADS = Math.max(1, Math.min(2, os.availableParallelism() - 1));
/** Batches out per thread before the restore waits: one being made, one queued. */
const PER_THREAD = 2;
/**
 * A batch goes out at this many files or bytes of content, or sooner while a thread is idle.
 * (20,000 x 4 KiB to tmpfs, warm server: 64 files 0.60-0.66 s, 128 files 0.56 s, 256 the same.)
 */
const BATCH_FILES = 128;
const BATCH_NAME_BYTES = 64 * 1024;
const BATCH_DATA_BYTES = 1024 * 1024;
/** An idle thread gets a batch as soon as it has this many files. */
const EAGER_FILES = 8;
/** Retired directory descriptors kept open for batches out, at most. */
const RETIRED_MAX = 64;
/** Files up to this size are made by the threads; larger ones stream through the writer. */
export const CREATE_MAX = 64 * 1024;

/** The threads, shared by the writers of one restore; kept warm between restores. */
export class FileCreator {
  private next = 0;
  private readonly waiting = new Map<number, (reply: CreateReply) => void>();
  private seq = 0;
  private broken: string | undefined;

  private constructor(private readonly workers: Worker[]) {
    for (const w of workers) {
      w.on("message", (reply: CreateReply) => this.answered(reply));
      w.on("error", (e: Error) => this.fail(`restore thread failed: ${e.message}`));
      w.on("exit", () => this.fail("restore thread ended"));
    }
  }

  get threads(): number {
    return this.workers.length;
  }

  /** Threads for a restore (kept ones when there are), or undefined: the writer makes its files itself. */
  static async take(): Promise<FileCreator | undefined> {
    const kept = idle.pop();
    if (kept) {
      for (const w of kept.workers) w.ref();
      return kept;
    }
    const url = creatorUrl();
    if (!url) return undefined;
    const { Worker } = await import("node:worker_threads");
    return new FileCreator(Array.from({ length: CREATOR_THREADS }, () => new Worker(url)));
  }

  /** Gives the threads back when the restore is done (every batch answered). */
  release(): void {
    if (this.broken || this.waiting.size > 0 || idle.length >= IDLE_KEPT) {
      this.terminate();
      return;
    }
    for (const w of this.workers) w.unref();
    idle.push(this);
  }

  /** Sends a batch to the next thread; the reply brings the buffers back with what failed. */
  submit(count: number, buffers: BatchBuffers): Promise<CreateReply> {
    const seq = ++this.seq;
    if (this.broken) return Promise.resolve({ seq, buffers, broken: this.broken });
    const worker = this.workers[this.next++ % this.workers.length]!;
    return new Promise((resolve) => {
      this.waiting.set(seq, resolve);
      const request: CreateRequest = { seq, count, buffers };
      worker.postMessage(request, [buffers.meta.buffer as ArrayBuffer, buffers.names.buffer as ArrayBuffer, buffers.data.buffer as ArrayBuffer]);
    });
  }

  private answered(reply: CreateReply): void {
    const resolve = this.waiting.get(reply.seq);
    this.waiting.delete(reply.seq);
    resolve?.(reply);
  }

  /** A thread that fails ends them all: every batch out is answered as lost (its files are reported). */
  private fail(why: string): void {
    if (this.broken) return;
    this.broken = why;
    for (const [seq, resolve] of this.waiting) resolve({ seq, buffers: CreateBatch.allocate(1, 1, 1).buffers, broken: why });
    this.waiting.clear();
    const at = idle.indexOf(this);
    if (at >= 0) idle.splice(at, 1);
    this.terminate();
  }

  private terminate(): void {
    for (const w of this.workers) {
      w.removeAllListeners("exit");
      void w.terminate();
    }
  }
}

const IDLE_KEPT = 1;
const idle: FileCreator[] = [];

/** Where the worker's code is: beside this file, or in a compiled binary its second entry point (see scan.ts). */
function creatorUrl(): URL | undefined {
  return isBun() ? entryPointUrl(import.meta.url, "engine/create-worker.ts") : undefined;
}

/** A file handed to the threads: what the writer needs to report it, or to make it itself after all. */
export interface QueuedFile {
  entry: Entry;
  /** The path as the archive gave it (what errors name), and its key under the destination. */
  rel: Buffer;
  key: string;
  tag: unknown;
  /** The writer's handler for it, should the threads fail to make it. */
  onFailure: FailureHandler;
}

interface Out {
  files: QueuedFile[];
  reply?: CreateReply;
  done: Promise<void>;
}

/**
 * What a writer does with a batch that came back: each failure in turn (the buffers still hold
 * the file's content, for a retry), before the buffers are used again.
 */
export type FailureHandler = (file: QueuedFile, failure: CreateFailure, buffers: BatchBuffers) => Promise<void>;

export class CreateQueue {
  private filling: CreateBatch;
  private fillingFiles: QueuedFile[] = [];
  /** Sequence number of the batch being filled; batches out have smaller ones. */
  private seq = 0;
  private readonly out = new Map<number, Out>();
  private readonly keys = new Set<string>();
  private readonly spare: BatchBuffers[] = [];
  /** Descriptors the writer let go of, closed once no batch up to `until` is out or being filled. */
  private readonly retired: Array<{ fd: number; until: number }> = [];

  constructor(private readonly creator: FileCreator) {
    this.filling = CreateBatch.allocate(BATCH_FILES, BATCH_NAME_BYTES, BATCH_DATA_BYTES);
  }

  /** The recovery is over (every writer finished, so every batch is back): the threads go back. */
  release(): void {
    this.creator.release();
  }

  /**
   * A file of this name (key) is in a batch not back yet. Keys are relative to each writer's
   * destination: one of another destination may match too, which only costs a wait.
   */
  has(key: string): boolean {
    return this.keys.has(key);
  }

  get idle(): boolean {
    return this.out.size === 0 && this.filling.count === 0;
  }

  /**
   * Makes room in the batch being filled for a file of `nameLength` and `size`: a full batch goes
   * out, and when enough are out, waits for one to come back (and handles its failures).
   */
  async room(nameLength: number, size: number): Promise<void> {
    if (!this.filling.fits(nameLength, size)) this.send();
    while (this.out.size >= this.creator.threads * PER_THREAD) {
      await Promise.race([...this.out.values()].map((o) => o.done));
      await this.settleReturned();
      this.closeRetired();
    }
  }

  /** The content buffer of the batch being filled. */
  get data(): Uint8Array {
    return this.filling.buffers.data;
  }

  /** Reserves `size` bytes of `data` for the next file: where they start. */
  reserve(size: number): number {
    return this.filling.reserve(size);
  }

  /** Gives back the last reservation (its file goes another way). */
  unreserve(at: number): void {
    this.filling.release(at);
  }

  /** Adds the file whose content is at `dataAt`; the batch goes out early when a thread is idle. */
  commit(file: QueuedFile, dirFd: number, name: Buffer, dataAt: number, uid: number): void {
    const e = file.entry;
    this.filling.commit(dirFd, name, dataAt, e.size, e.mode & 0o7777, uid, e.gid, e.atime ?? e.mtime, e.mtime);
    this.fillingFiles.push(file);
    this.keys.add(file.key);
    if (this.filling.count >= EAGER_FILES && this.out.size < this.creator.threads) this.send();
  }

  /** Closes `fd` once no batch that can name it is left (at once when none is). */
  retire(fd: number): void {
    if (this.idle) closeQuietly(fd);
    else this.retired.push({ fd, until: this.seq });
  }

  /**
   * Handles the batches that came back, without waiting for the others; or waits for all of them
   * when too many retired descriptors wait for them (a restore that moves between more
   * directories than the tree keeps open would otherwise hold one per directory).
   */
  async collect(): Promise<void> {
    if (this.retired.length >= RETIRED_MAX) return this.drain();
    await this.settleReturned();
    this.closeRetired();
  }

  /** Sends what is being filled and waits until every batch is back and handled. */
  async drain(): Promise<void> {
    if (this.filling.count > 0) this.send();
    while (this.out.size > 0) {
      await Promise.all([...this.out.values()].map((o) => o.done));
      await this.settleReturned();
    }
    this.closeRetired();
  }

  private async settleReturned(): Promise<void> {
    for (const [seq, o] of this.out) {
      if (!o.reply) continue;
      this.out.delete(seq);
      await this.settle(o.files, o.reply);
    }
  }

  private send(): void {
    if (this.filling.count === 0) return;
    const files = this.fillingFiles;
    const o: Out = { files, done: undefined as unknown as Promise<void> };
    o.done = this.creator.submit(this.filling.count, this.filling.buffers).then((reply) => {
      o.reply = reply;
    });
    this.out.set(this.seq++, o);
    this.filling = new CreateBatch(this.spare.pop() ?? CreateBatch.allocate(BATCH_FILES, BATCH_NAME_BYTES, BATCH_DATA_BYTES).buffers);
    this.fillingFiles = [];
  }

  private async settle(files: QueuedFile[], reply: CreateReply): Promise<void> {
    for (const f of files) this.keys.delete(f.key);
    if ("broken" in reply) {
      for (let i = 0; i < files.length; i++) {
        await files[i]!.onFailure(files[i]!, { index: i, fatal: true, step: "restore thread", code: reply.broken, errno: 0 }, reply.buffers);
      }
      return;
    }
    for (const failure of reply.failures) {
      const file = files[failure.index]!;
      await file.onFailure(file, failure, reply.buffers);
    }
    this.spare.push(reply.buffers);
  }

  private closeRetired(): void {
    let lowest = this.filling.count > 0 ? this.seq : Infinity;
    for (const seq of this.out.keys()) lowest = Math.min(lowest, seq);
    let kept = 0;
    for (const r of this.retired) {
      if (r.until < lowest) closeQuietly(r.fd);
      else this.retired[kept++] = r;
    }
    this.retired.length = kept;
  }
}
