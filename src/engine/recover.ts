/**
 * The tar recovery: backup stream -> pax reader -> the objects the nlist selects -> the safe
 * writer, one writer per destination directory, none of which can be escaped.
 *
 * Two ways through the stream:
 * - sequential: everything from offset 0, picking out what the nlist asks for;
 * - direct access (DAR, digest §3.4): with DIRECT=y and fh_info offsets in the nlist, jump to
 *   each target's first header (in offset order, forward only), read exactly that entry — or,
 *   for a directory, its subtree, which a depth-first backup keeps contiguous — then the next.
 *   Targets without an offset (fh_info = ALL1) are found by a scan from the start first.
 *
 * The same loop serves DATA_START_RECOVER_FILEHIST: with `extract` off it writes nothing and
 * posts file history for what it reads instead.
 */
import type { Duplex } from "node:stream";
import type { Entry } from "../../formats/entry.ts";
import { parseDumpdir } from "../../formats/tar/dumpdir.ts";
import { TarReader, type TarEvent } from "../../formats/tar/reader.ts";
import { hostIdOf } from "../host/accounts.ts";
import { ConnectionGone } from "../transport/backpressure.ts";
import { declareDoneOnNext } from "../transport/consumers.ts";
import type { NativeApi } from "../native/index.ts";
import { ALL1, RecoveryStatus } from "../protocol/codes.ts";
import { paced, show } from "./backup.ts";
import { fileStat, type FileHistory } from "./history.ts";
import type { OverwritePolicy, RestoreWriter } from "./restore-writer.ts";
import { RestoreSet } from "./restore-set.ts";
import { placeFor } from "./selection.ts";
import type { Targets } from "./targets.ts";
import type { StreamSource } from "./stream-source.ts";

export interface RecoverOptions {
  /** The stream, already requested from offset 0 (sequential recovery). */
  input: Duplex;
  /** For direct access: the stream by offset. When set, the engine asks for what it reads. */
  source?: StreamSource;
  targets: Targets;
  recursive: boolean;
  /** false for RECOVER_FILEHIST: read and report, write nothing. */
  extract: boolean;
  history?: FileHistory;
  native?: NativeApi;
  /** OVERWRITE: what to do with objects already at the destination (default: replace them). */
  overwrite?: OverwritePolicy;
  signal: AbortSignal;
  warn(message: string): void;
  /** Bytes read so far, entries, and the entry being read (tar), for `ndmpd sessions`. */
  progress?(bytes: number, entries: number, path?: Buffer): void;
  /**
   * Called once per entry (or chunk of input): a promise while the DMA has not read the posts
   * already queued for it (LOG_MESSAGE, LOG_FILE, FH), which the job waits for (one bounded
   * queue for every post); undefined when there is room.
   */
  pace?(): Promise<void> | undefined;
}

export interface RecoverResult {
  bytes: number;
  entries: number;
  restored: number;
  /** Objects that could not be written (each one logged as a warning), and the first of them. */
  failed: number;
  firstFailed?: Buffer;
  /** The archive's end-of-archive marker was seen (sequential), or every target was reached (DAR). */
  complete: boolean;
}

/** The archive ended early or is damaged: the recovery failed. */
export class RecoverFailed extends Error {
  override name = "RecoverFailed";
}

/** Largest single direct-access read: big files arrive in pieces of this size. */
const DAR_PIECE = 4 * 1024 * 1024;
/** While scanning for targets without offsets, read ahead this much per request. */
const SCAN_PIECE = 1024 * 1024;

export async function runTarRecover(opts: RecoverOptions): Promise<RecoverResult> {
  const job = new TarRecovery(opts);
  try {
    if (opts.source) await job.direct(opts.source);
    else await job.sequential(opts.input);
  } finally {
    await job.close();
  }
  return { bytes: job.bytes, entries: job.entries, restored: job.restored - job.lateFailed(), ...job.failures(), complete: true };
}

class TarRecovery {
  bytes = 0;
  entries = 0;
  restored = 0;
  private readonly restores: RestoreSet;

  lateFailed(): number {
    return this.restores.lateFailed;
  }

  failures(): { failed: number; firstFailed?: Buffer } {
    return { failed: this.restores.failed, firstFailed: this.restores.firstFailed };
  }
  /** The object being written, while its data arrives. */
  private current: { writer: RestoreWriter; target: number; path: Buffer } | undefined;
  /**
   * Per-target progress through the stream, for knowing when a direct read is done: seen[i],
   * its own entry was seen (a directory's subtree may still follow); done[i], nothing more of
   * it can follow. One byte each, not an object per nlist entry.
   */
  private readonly seen: Uint8Array;
  private readonly done: Uint8Array;
  /**
   * The targets seen and not done yet (the only ones an entry can finish): each entry costs a
   * lookup by path and a pass over a few open targets, not one comparison per nlist entry.
   */
  private readonly open = new Set<number>();
  /** The path of the entry being read (for "is this still inside the subtree?"). */
  private lastPath: Buffer | undefined;
  /** Whether that entry is a directory (whose subtree may follow it). */
  private isDirectory = false;
  /** The entry being read, for the progress report. */
  private reading: Buffer | undefined;

  constructor(private readonly opts: RecoverOptions) {
    this.restores = new RestoreSet(opts.targets, opts.native, opts.warn, opts.overwrite);
    this.seen = new Uint8Array(opts.targets.length);
    this.done = new Uint8Array(opts.targets.length);
  }

  async sequential(input: Duplex): Promise<void> {
    const reader = this.reader(0);
    let ended = false;
    // Not `for await`: leaving that loop early destroys the connection, and the mover would
    // halt (CONNECT_CLOSED) while this service is still finishing — a state DMAs such as
    // ndmjob take for a failed job. The service closes the connection when it halts.
    const chunks = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    // Each chunk is fed whole and every event it gives is awaited (the restore writer's writes
    // are done when write() returns; the tar reader copies headers and extended headers): once
    // the loop asks for the next chunk, nothing holds a view of this one. A LOCAL mover may
    // then read the next records into the same memory.
    declareDoneOnNext(input);
    while (!ended) {
      const next = await chunks.next();
      if (next.done) break;
      this.checkAbort();
      this.bytes += next.value.length;
      ended = await this.feed(reader, next.value, () => false);
      this.opts.progress?.(this.bytes, this.entries, this.reading);
      await paced(this.opts);
    }
    // The peer closed the data connection before the archive's end: a data connection failure (CONNECT_ERROR).
    if (!ended) throw new ConnectionGone(`the data connection closed after ${this.bytes} bytes, before the end of the archive`);
  }

  async direct(source: StreamSource): Promise<void> {
    const targets = this.opts.targets;
    const unknown: number[] = [];
    for (let i = 0; i < targets.length; i++) if (targets.fhInfo(i) === ALL1) unknown.push(i);
    const known = targets.byFhInfo();
    let pos = 0;
    if (unknown.length > 0) {
      // No offset for these: read from the start until each has been seen whole.
      // A target once done stays done: the first one not done yet is where to look next time.
      let first = 0;
      const allDone = () => {
        while (first < unknown.length && this.done[unknown[first]!]) first++;
        return first === unknown.length;
      };
      pos = await this.readFrom(source, 0, SCAN_PIECE, allDone);
    }
    for (const t of known) {
      if (this.done[t]) continue;
      const off = Number(targets.fhInfo(t));
      if (!Number.isSafeInteger(off) || (off < pos && !this.seen[t])) {
        // Already read past it without finding it there: the offset does not point at it.
        this.done[t] = 1;
        continue;
      }
      // Seen but not finished: the previous target ended where this one starts (its end shows
      // only at the next entry's header), and the read stopped there. Read it again from its
      // own offset: those records are still at hand.
      if (off < pos) this.seen[t] = 0;
      try {
        pos = await this.readFrom(source, off, 1, () => this.done[t] === 1, t);
      } catch (err) {
        if (!(err as Error).message.startsWith("direct access went backwards")) throw err;
        targets.fail(t, RecoveryStatus.FAILED_UNDEFINED_ERROR, `its data was read past and is no longer at hand (${(err as Error).message})`);
        this.done[t] = 1;
      }
    }
  }

  /**
   * Reads entries from `start` until `enough()`, asking for at least `piece` bytes at a time
   * (1 = only what the reader needs next). Returns the stream position reached.
   */
  private async readFrom(source: StreamSource, start: number, piece: number, enough: () => boolean, expect?: number): Promise<number> {
    const reader = this.reader(start);
    let pos = start;
    let first = true;
    while (!enough()) {
      this.checkAbort();
      const need = Math.min(Math.max(reader.needed, piece, 1), DAR_PIECE);
      const bytes = await source.fetch(pos, pos + need);
      if (bytes.length === 0) {
        // The stream ended: whatever was not reached is not in this backup.
        for (const t of this.open) if (this.seen[t]) this.done[t] = 1; // every seen target is in open
        if (expect !== undefined) this.done[expect] = 1;
        break;
      }
      pos += bytes.length;
      this.bytes = source.received;
      const ended = await this.feed(reader, bytes, enough, first ? expect : undefined);
      first = false;
      this.opts.progress?.(this.bytes, this.entries, this.reading);
      await paced(this.opts);
      if (ended) break;
    }
    return pos;
  }

  private reader(startOffset: number): TarReader {
    this.lastPath = undefined;
    return new TarReader({ startOffset, resolveAclName: hostIdOf });
  }

  /** Feeds one chunk; returns true at the end of the archive. Stops early once `enough()`. */
  private async feed(reader: TarReader, chunk: Buffer, enough: () => boolean, expect?: number): Promise<boolean> {
    const targets = this.opts.targets;
    for (const ev of reader.feed(chunk)) {
      if (expect !== undefined && ev.kind === "entry") {
        // The first entry at a target's offset must be that target (digest §3.4: the node and
        // fh_info let the server check it found the right file).
        if (!relOf(ev.entry.path).equals(targets.original(expect))) {
          targets.fail(expect, RecoveryStatus.FAILED_NOT_FOUND, `the backup holds ${show(ev.entry.path)} at offset ${targets.fhInfo(expect)}, not ${show(targets.original(expect))}`);
          this.done[expect] = 1;
          return false;
        }
        expect = undefined;
      }
      await this.onEvent(ev);
      if (ev.kind === "end") {
        this.done.fill(1);
        return true;
      }
      if (enough()) return false;
    }
    return false;
  }

  private async onEvent(ev: TarEvent): Promise<void> {
    switch (ev.kind) {
      case "entry": {
        const entry = withoutDotSlash(ev.entry);
        this.track(entry.path);
        await this.onEntry(entry, ev.offset);
        return;
      }
      case "data":
        if (!this.current) return;
        try {
          await this.current.writer.write(ev.chunk, ev.fileOffset);
        } catch (err) {
          this.restores.fail(this.current.target, this.current.path, err as Error);
          this.current = undefined;
        }
        return;
      case "end-of-entry":
        this.entryEnded();
        if (!this.current) return;
        try {
          await this.current.writer.end();
          this.restored++;
        } catch (err) {
          this.restores.fail(this.current.target, this.current.path, err as Error);
        }
        this.current = undefined;
        return;
      case "end":
        return;
    }
  }

  /** A new entry: targets whose subtree it leaves are done; the one it is, is seen. */
  private track(path: Buffer): void {
    this.lastPath = path;
    const rel = relOf(path);
    const targets = this.opts.targets;
    for (const t of this.open) {
      if (this.done[t] || !this.seen[t]) this.open.delete(t);
      else if (!within(rel, targets.original(t))) {
        this.done[t] = 1;
        this.open.delete(t);
      }
    }
    for (const t of targets.same(rel)) {
      if (this.done[t]) continue;
      this.seen[t] = 1;
      this.open.add(t);
    }
  }

  /** The entry's data is over: a target that has no subtree is done now. */
  private entryEnded(): void {
    if (!this.lastPath) return;
    const rel = relOf(this.lastPath);
    for (const t of this.opts.targets.same(rel)) {
      if (this.done[t]) continue;
      if (!this.opts.recursive || !this.isDirectory) this.done[t] = 1;
    }
  }

  private async onEntry(entry: Entry, offset: number): Promise<void> {
    this.entries++;
    this.reading = entry.path;
    this.isDirectory = entry.type === "directory";
    const opts = this.opts;
    if (opts.history) await opts.history.addFile(entry.path, fileStat(entry), BigInt(entry.ino ?? 0), BigInt(offset));
    if (!opts.extract) return;
    const place = placeFor(entry.path, opts.targets, opts.recursive);
    if (!place) return;
    opts.targets.markFound(place.target);
    let e = entry;
    if (entry.type === "hardlink" && entry.linkTarget) {
      // The first name of the inode must have been restored under the same destination.
      const first = placeFor(entry.linkTarget, opts.targets, opts.recursive);
      if (!first || first.root.compare(place.root) !== 0) {
        this.restores.fail(place.target, entry.path, new Error("its hard-link partner is not part of this restore"));
        return;
      }
      e = { ...entry, linkTarget: first.rel };
    }
    const writer = this.restores.writerFor(place.root);
    const current = { writer, target: place.target, path: entry.path };
    try {
      await writer.begin(e, place.rel, current);
      this.current = current;
    } catch (err) {
      this.restores.fail(place.target, entry.path, err as Error);
      return;
    }
    // An incremental's directory: what is there and not in its listing was deleted since the base.
    if (e.type === "directory" && e.dumpdir && opts.recursive) await this.applyDeletions(writer, place.rel, e);
  }

  private async applyDeletions(writer: RestoreWriter, rel: Buffer, entry: Entry): Promise<void> {
    let names: Map<string, string>;
    try {
      names = parseDumpdir(entry.dumpdir!).names;
    } catch (err) {
      this.opts.warn(`${show(entry.path)}: its directory listing is damaged (${(err as Error).message}); no deletions applied there`);
      return;
    }
    try {
      await writer.purge(rel, (name, isDir) => {
        const letter = names.get(name.toString("latin1"));
        // GNU tar's rule: not listed, or listed as a directory and not one, or as a file and a directory.
        return letter !== undefined && !(letter === "D" && !isDir) && !(letter === "Y" && isDir);
      });
      await writer.dropOtherXattrs(rel, entry.xattrs);
    } catch (err) {
      this.opts.warn(`${show(entry.path)}: deletions not applied (${(err as Error).message})`);
    }
  }

  private checkAbort(): void {
    if (this.opts.signal.aborted) throw this.opts.signal.reason ?? new Error("aborted");
  }

  /** Finishes every writer: directory modes and times are applied last. */
  async close(): Promise<void> {
    await this.restores.finish();
  }
}

/**
 * GNU tar's `-C DIR .` names every entry "./a/b" (and the root "./"): the same paths as "a/b"
 * for matching the nlist and for the destination, so they are read as those (hard-link
 * targets too). Other names are passed through untouched.
 */
function withoutDotSlash<E extends { path: Buffer; linkTarget?: Buffer; type: string }>(entry: E): E {
  const dotted = (b: Buffer | undefined) => b !== undefined && b.length >= 2 && b[0] === 0x2e && b[1] === 0x2f;
  const hard = entry.type === "hardlink" && dotted(entry.linkTarget);
  if (!dotted(entry.path) && !hard) return entry;
  const strip = (b: Buffer) => {
    let i = 0;
    while (b.length - i >= 2 && b[i] === 0x2e && b[i + 1] === 0x2f) {
      i += 2;
      while (b[i] === 0x2f) i++;
    }
    return i === b.length ? Buffer.from(".") : b.subarray(i);
  };
  return { ...entry, path: dotted(entry.path) ? strip(entry.path) : entry.path, ...(hard ? { linkTarget: strip(entry.linkTarget!) } : {}) };
}

const NO_PATH = Buffer.alloc(0);

/** An archive path as the nlist's relative paths are ("." is the root, ""). */
function relOf(path: Buffer): Buffer {
  return path.length === 1 && path[0] === 0x2e ? NO_PATH : path;
}

/** Is `rel` the target path `original` or inside it ("" is the root, which holds everything)? */
function within(rel: Buffer, original: Buffer): boolean {
  if (original.length === 0 || rel.equals(original)) return true;
  return rel.length > original.length && rel[original.length] === 0x2f && rel.compare(original, 0, original.length, 0, original.length) === 0;
}
