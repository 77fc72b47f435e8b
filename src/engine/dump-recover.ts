/**
 * The dump recovery: data connection -> DumpReader -> the objects the nlist selects -> the
 * safe writer (digest shared/spec/dump-format.md §9). Reads our streams and Linux dump's.
 *
 * A dump stream carries every directory first, then the other inodes in ascending order,
 * and only directories carry names. So the directories are gathered (metadata and entries)
 * until the first non-directory; then every path is known, the selected directories are
 * created, and each following inode is written under each of its names that the nlist
 * selects: the first name in a destination gets the content, the other names in that
 * destination become hard links to it.
 *
 * Direct access (DAR, digest §3.4; with DIRECT=y and fh_info = TS_INODE offsets in the nlist):
 * - a target whose offset holds a file: jump there and read that one inode. The stream has no
 *   names outside the directory phase, so the target itself names it (an "anchor");
 * - a target whose offset holds a directory: read on from there (the rest of the directory
 *   phase, then the inodes) until past the largest inode number of its subtree — a dump's
 *   directory subtree is not contiguous, its files are spread over the inode section;
 * - targets without an offset: a scan from offset 0, which stops once past the largest inode
 *   number any of them needs. File targets the scan passes are restored by it.
 * Everything is read forward only, in offset order.
 *
 * Incrementals (c_ddate != 0): recovered level after level into one destination, they give
 * the tree of the last level. A directory on the tape lists every name it had at dump time,
 * so whatever the destination holds in that directory under another name (deleted or renamed
 * since the base), or as another type (a file that became a directory, or back), is removed
 * before the directory is filled: inside directories this image covers and the targets
 * select, never outside the destination. A directory that moved is on the tape whole under
 * its new name (the backup sees to that), so no inode bookkeeping across images is needed.
 * Names whose inode is not on this tape (TS_BITS) are left as the earlier levels put them; a
 * target naming only such a file is not found in this image (LOG_FILE FAILED_NOT_FOUND).
 *
 * With `extract` off (DATA_START_RECOVER_FILEHIST) nothing is written; the names and inodes
 * are posted as dir/node file history instead, in the order a backup posts them (an
 * incremental's: the directories, and only the names of files on its tape).
 */
import type { Duplex } from "node:stream";
import type { Entry } from "../../formats/entry.ts";
import { DumpFormatError, DumpReader, type DecodedDirEntry, type DumpEvent } from "../../formats/dump/index.ts";
import { DR_EXTATTRIBUTES, TS_ADDR, TS_INODE, decodeHeader } from "../../formats/dump/header.ts";
import { ALL1, RecoveryStatus } from "../protocol/codes.ts";
import { paced, show } from "./backup.ts";
import { fileStat } from "./history.ts";
import { RecoverFailed, type RecoverOptions, type RecoverResult } from "./recover.ts";
import type { RestoreWriter } from "./restore-writer.ts";
import { RestoreSet } from "./restore-set.ts";
import { ConnectionGone } from "../transport/backpressure.ts";
import { placeFor } from "./selection.ts";
import type { StreamSource } from "./stream-source.ts";

const ROOTINO = 2;
const DOT = Buffer.from(".");
const DOTDOT = Buffer.from("..");
const SLASH = Buffer.from("/");
/** The dump record size: headers and data slots. */
const TP_BSIZE = 1024;
/** Data slots one TS_INODE / TS_ADDR header describes. */
const TP_NINDIR = 512;
/** Largest single direct-access read: big files arrive in pieces of this size. */
const DAR_PIECE = 4 * 1024 * 1024;
/** Scans (from 0, or through a directory's subtree) read this much per request. */
const SCAN_PIECE = 1024 * 1024;
/** A scan steps over an unwanted file this big by its headers instead of reading its data. */
const SKIP_SIZE = SCAN_PIECE;

/** A directory read in the directory phase. */
interface DirInfo {
  ino: number;
  offset: number;
  entry: Entry;
  entries: DecodedDirEntry[];
}

/** Where one inode's content goes: one per destination root. */
interface Primary {
  writer: RestoreWriter;
  target: number;
  path: Buffer;
  rel: Buffer;
}

/** The inode being read. */
interface Current {
  ino: number;
  primaries: Primary[];
  /** Further names, linked to the primary of the same destination once the content is in. */
  links: Array<{ primary: Primary; target: number; path: Buffer; rel: Buffer }>;
}

/** One read through the stream: sequential, a scan, or a jump to one target. */
interface Pass {
  /** Starts at offset 0: the whole directory phase is read (the root must be in it). */
  fromStart: boolean;
  /** false while directories are being read; true from the first non-directory on. */
  namesKnown: boolean;
  dirs: DirInfo[];
  lastDir?: DirInfo;
  /** The targets this pass reads for; it stops once past the largest inode they need. */
  wanted: Set<number>;
  /** That inode number, once the names are known (Infinity: read to the end). */
  maxNeeded: number;
  /** Inodes any target would take (names known): the others need not be read. */
  needed: Set<number>;
  /** Set by onInode: a large unneeded inode starts here; step over it. */
  skipFrom?: number;
  /** Reads ahead in large pieces (a scan from 0, or through a directory's subtree). */
  scan: boolean;
  /** A jump: the first inode must be this target's. */
  expect?: number;
  /** The first inode of the pass was seen. */
  started: boolean;
  /** A jump to a file: where its inode (+ the next header) should end, from its size. */
  estimatedEnd?: number;
}

export async function runDumpRecover(opts: RecoverOptions): Promise<RecoverResult> {
  const job = new DumpRecovery(opts);
  try {
    if (opts.source) await job.direct(opts.source);
    else await job.sequential(opts.input);
  } finally {
    await job.close();
  }
  return { bytes: job.bytes, entries: job.entries, restored: job.restored - job.lateFailed(), ...job.failures(), complete: job.complete };
}

class DumpRecovery {
  bytes = 0;
  entries = 0;
  restored = 0;
  complete = false;
  private readonly restores: RestoreSet;

  failures(): { failed: number; firstFailed?: Buffer } {
    return { failed: this.restores.failed, firstFailed: this.restores.firstFailed };
  }

  lateFailed(): number {
    return this.restores.lateFailed;
  }
  /** child ino -> [(parent directory ino, name)], from every directory read. */
  private readonly parents = new Map<number, Array<[parent: number, name: Buffer]>>();
  /** Inodes whose path is known without their parents: the root, and targets found at their offset. */
  private readonly anchors = new Map<number, Buffer>([[ROOTINO, Buffer.alloc(0)]]);
  /** Each directory's entries (with their d_type), for spotting unreachable subdirectories. */
  private readonly dirEntries = new Map<number, DecodedDirEntry[]>();
  /** Directory inodes read. */
  private readonly dirInos = new Set<number>();
  private current: Current | undefined;
  /** From TS_TAPE: an incremental (c_ddate != 0), whose directories say what was deleted. */
  private incremental: boolean | undefined;
  /**
   * The directory headers carry our extension: the stream is ours, and a directory that moved
   * is on it whole. (Linux dump puts a moved directory on the tape without its files: removing
   * its old name would lose them; only restore -r, with its symbol table, can rename it.)
   */
  private ours: boolean | undefined;
  private warnedForeign = false;
  /** TS_BITS: the inodes on this tape. */
  private bits: Buffer | undefined;

  constructor(private readonly opts: RecoverOptions) {
    this.restores = new RestoreSet(opts.targets, opts.native, opts.warn, opts.overwrite);
  }

  async sequential(input: Duplex): Promise<void> {
    const pass = newPass(true, new Set(), undefined);
    pass.maxNeeded = Infinity;
    const reader = new DumpReader();
    try {
      // Not `for await`: leaving that loop at TS_END would destroy the connection, and the
      // mover would halt (CONNECT_CLOSED) while this service is still finishing — a state DMAs
      // such as ndmjob take for a failed job. The service closes the connection when it halts.
      const chunks = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      while (!this.complete) {
        const next = await chunks.next();
        if (next.done) break;
        this.checkAbort();
        this.bytes += next.value.length;
        for (const ev of reader.feed(next.value)) await this.onEvent(ev, pass);
        this.opts.progress?.(this.bytes, this.entries);
        await paced(this.opts);
      }
      if (!this.complete) {
        // The data connection closed before TS_END: the stream was cut, not damaged (the tar
        // recovery reports this the same way: a data connection failure).
        const cut = reader.offset;
        try {
          for (const ev of reader.finish()) await this.onEvent(ev, pass);
        } catch (err) {
          if (err instanceof DumpFormatError) throw new ConnectionGone(`the data connection closed after ${cut} bytes, before the end of the dump`);
          throw err;
        }
      }
    } catch (err) {
      if (err instanceof DumpFormatError) throw new RecoverFailed(`the backup stream is damaged: ${err.message}`);
      throw err;
    }
    if (!this.complete) throw new RecoverFailed("the backup stream ended before the end of the dump");
  }

  async direct(source: StreamSource): Promise<void> {
    const targets = this.opts.targets;
    const usable = (t: number) => Number.isSafeInteger(Number(targets.fhInfo(t)));
    const unknown: number[] = [];
    for (let i = 0; i < targets.length; i++) if (targets.fhInfo(i) === ALL1 || !usable(i)) unknown.push(i);
    // In offset order; the unusable ones (past 2^53) are all at its end.
    const known = [...targets.byFhInfo()].filter(usable);
    /** Offset of the first inode header not read yet (Infinity after TS_END). */
    let resume = 0;
    try {
      if (unknown.length > 0) resume = await this.readFrom(source, 0, newPass(true, new Set(unknown), undefined));
      for (const t of known) {
        // Restored by an earlier pass (a scan that knew its name, or a directory's subtree).
        if (targets.isFound(t) || targets.error(t) !== undefined) continue;
        const off = Number(targets.fhInfo(t));
        // Already read past it without finding it there: the offset does not point at it.
        if (off < resume) continue;
        resume = await this.readFrom(source, off, newPass(false, new Set([t]), t));
      }
    } catch (err) {
      if (err instanceof DumpFormatError) throw new RecoverFailed(`the backup stream is damaged: ${err.message}`);
      throw err;
    }
    this.complete = true;
  }

  /** Reads one pass from `start` until it has what it wants; returns the offset to resume at. */
  private async readFrom(source: StreamSource, start: number, pass: Pass): Promise<number> {
    let reader = new DumpReader({ startOffset: start });
    let pos = start;
    for (;;) {
      this.checkAbort();
      const bytes = await source.fetch(pos, pos + this.need(pass, pos));
      this.bytes = source.received;
      if (bytes.length === 0) {
        // The stream ended (a region may stop between inodes; from 0 it needs TS_END).
        for (const ev of reader.finish()) await this.onEvent(ev, pass);
        await this.endPass(pass);
        return Infinity;
      }
      pos += bytes.length;
      for (const ev of reader.feed(bytes)) {
        const stop = await this.onEvent(ev, pass);
        if (stop !== undefined) {
          await this.endPass(pass);
          return stop;
        }
        if (pass.skipFrom !== undefined) break;
      }
      if (pass.skipFrom !== undefined) {
        // The rest of this batch is that inode's data (or, for a sparse one, inodes after it,
        // which the new reader reads again from the records kept).
        pos = await this.skipInode(source, pass.skipFrom);
        pass.skipFrom = undefined;
        reader = new DumpReader({ startOffset: pos });
      }
      this.opts.progress?.(this.bytes, this.entries);
      await paced(this.opts);
    }
  }

  /**
   * Steps over the inode whose TS_INODE is at `offset` by reading only its headers: each says
   * which of its (up to 512) slots are on the tape, so where the next header is. Returns the
   * offset of the next inode's header (or of TS_END).
   */
  private async skipInode(source: StreamSource, offset: number): Promise<number> {
    const first = decodeHeader(Buffer.from(await source.fetch(offset, offset + TP_BSIZE)), offset);
    if (first.type !== TS_INODE) throw new DumpFormatError("no TS_INODE where an inode was read", offset);
    const ino = first.inumber;
    let h = first;
    let at = offset;
    for (;;) {
      this.checkAbort();
      let next = at + TP_BSIZE;
      if (h.type === TS_INODE && h.flags & DR_EXTATTRIBUTES) next += h.count * TP_BSIZE;
      else for (let i = 0; i < h.count; i++) if (h.addr[i] !== 0) next += TP_BSIZE;
      const rec = await source.fetch(next, next + TP_BSIZE);
      this.bytes = source.received;
      if (rec.length < TP_BSIZE) throw new DumpFormatError("stream ends inside an inode", next);
      const n = decodeHeader(Buffer.from(rec), next);
      const same = n.inumber === ino && (n.type === TS_ADDR || (n.type === TS_INODE && n.flags & DR_EXTATTRIBUTES));
      if (!same) return next;
      h = n;
      at = next;
    }
  }

  /** How much to ask for next: scans read ahead; a jump reads what its inode still needs. */
  private need(pass: Pass, pos: number): number {
    if (pass.scan) return SCAN_PIECE;
    // A jump: the first header, then the inode's data slots, TS_ADDR headers and the next
    // inode's header (which ends this one). Holes make this an overestimate; the reader
    // decides when the inode is over, so an underestimate only costs one more small read.
    if (pass.estimatedEnd === undefined) return TP_BSIZE;
    return Math.min(Math.max(pass.estimatedEnd - pos, TP_BSIZE), DAR_PIECE);
  }

  /** A pass stopped: an inode left open (a region ending between inodes) is finished. */
  private async endPass(pass: Pass): Promise<void> {
    await this.directoriesDone(pass);
    await this.endInode();
  }

  /** Handles one event; returns the offset to resume at when the pass is to stop here. */
  private async onEvent(ev: DumpEvent, pass: Pass): Promise<number | undefined> {
    switch (ev.kind) {
      case "tape":
        this.incremental = ev.tape.ddate !== 0;
        return undefined;
      case "map":
        if (ev.which === "bits") this.bits = ev.map;
        return undefined;
      case "inode":
        // A jump past TS_TAPE learns it from any header, which all carry c_ddate.
        this.incremental ??= ev.ddate !== 0;
        this.ours ??= ev.ndmpd;
        return this.onInode(ev.ino, ev.offset, ev.entry, ev.metaOnly, pass);
      case "directory": {
        if (pass.lastDir?.ino === ev.ino) pass.lastDir.entries = ev.entries;
        this.dirEntries.set(ev.ino, ev.entries);
        for (const e of ev.entries) {
          if (e.name.equals(DOT) || e.name.equals(DOTDOT)) continue;
          let list = this.parents.get(e.ino);
          if (!list) this.parents.set(e.ino, (list = []));
          list.push([ev.ino, e.name]);
        }
        return undefined;
      }
      case "data": {
        const cur = this.current;
        if (cur?.ino !== ev.ino) return undefined;
        for (const p of [...cur.primaries]) {
          try {
            await p.writer.write(ev.chunk, ev.fileOffset);
          } catch (err) {
            this.restores.fail(p.target, p.path, err as Error);
            cur.primaries = cur.primaries.filter((x) => x !== p);
          }
        }
        return undefined;
      }
      case "end-of-inode":
        if (this.current?.ino === ev.ino) await this.endInode();
        return undefined;
      case "warning":
        this.opts.warn(`dump stream at ${ev.offset}: ${ev.message}`);
        return undefined;
      case "end":
        await this.directoriesDone(pass); // a backup of directories only
        this.complete = true;
        return Infinity;
      default:
        return undefined;
    }
  }

  private async onInode(ino: number, offset: number, entry: Entry, metaOnly: boolean, pass: Pass): Promise<number | undefined> {
    const expect = pass.expect;
    const targets = this.opts.targets;
    if (expect !== undefined && !pass.started) {
      // The first inode of a jump must be the target's (digest §3.4: the node and fh_info let
      // the server check it found the right file).
      const node = targets.node(expect);
      if (node !== ALL1 && node !== BigInt(ino)) {
        targets.fail(expect, RecoveryStatus.FAILED_NOT_FOUND, `the backup holds inode ${ino} at offset ${offset}, not inode ${node}`);
        this.opts.warn(`${show(targets.original(expect))}: ${targets.error(expect)}`);
        return offset + 1;
      }
      // A directory: its subtree follows in two parts (the rest of the directory phase, then
      // its files among the inodes): read on in large pieces.
      if (entry.type === "directory") pass.scan = true;
      if (entry.type === "file") {
        const slots = Math.ceil(entry.size / TP_BSIZE);
        const addrs = Math.max(0, Math.ceil(slots / TP_NINDIR) - 1);
        pass.estimatedEnd = offset + (1 + slots + addrs + 1) * TP_BSIZE;
      }
    }
    pass.started = true;
    // A target found at its own offset names its inode, even where no directory read does.
    for (const t of targets.atOffset(BigInt(offset))) {
      const node = targets.node(t);
      if (node === ALL1 || node === BigInt(ino)) this.anchors.set(ino, targets.original(t));
    }
    if (entry.type === "directory" && !pass.namesKnown) {
      this.entries++;
      pass.lastDir = { ino, offset, entry, entries: [] };
      pass.dirs.push(pass.lastDir);
      this.dirInos.add(ino);
      return undefined;
    }
    await this.directoriesDone(pass);
    // Inodes come in ascending order: past the last one wanted, nothing more is.
    if (ino > pass.maxNeeded) return offset;
    if (pass.scan && pass.maxNeeded !== Infinity && !pass.needed.has(ino) && entry.type === "file" && entry.size >= SKIP_SIZE) {
      // A big file nobody asked for (a 1 GiB file before the wanted ones, say): its data is
      // not read.
      this.entries++;
      pass.skipFrom = offset;
      return undefined;
    }
    this.entries++;
    if (entry.type === "directory") {
      this.opts.warn(`directory inode ${ino} after the directory phase; ignored`);
      return undefined;
    }
    const opts = this.opts;
    if (opts.history) await opts.history.addNode(fileStat(entry), BigInt(ino), BigInt(offset));
    if (!opts.extract) return undefined;
    const paths = this.pathsOf(ino);
    if (paths.length === 0) return undefined; // no name leads to it (Linux dump's unnamed inodes, say)
    const cur: Current = { ino, primaries: [], links: [] };
    for (const path of paths) {
      const place = placeFor(path, opts.targets, opts.recursive);
      if (!place) continue;
      targets.markFound(place.target);
      if (metaOnly) {
        this.restores.fail(place.target, path, new Error("metadata-only record (dump -m) is not applied; restore the previous level's copy"));
        continue;
      }
      const writer = this.restores.writerFor(place.root);
      const primary = cur.primaries.find((p) => p.writer === writer);
      if (primary) cur.links.push({ primary, target: place.target, path, rel: place.rel });
      else {
        const first = { writer, target: place.target, path, rel: place.rel };
        try {
          // The reader's own entry object: the xattrs it reads later are added to it.
          await writer.begin(entry, place.rel, first);
          cur.primaries.push(first);
        } catch (err) {
          this.restores.fail(place.target, path, err as Error);
        }
      }
    }
    this.current = cur;
    return undefined;
  }

  /** The directory phase of a pass is over: post or create its directories, and see what it needs. */
  private async directoriesDone(pass: Pass): Promise<void> {
    if (pass.namesKnown) return;
    pass.namesKnown = true;
    const opts = this.opts;
    const dirs = pass.dirs;
    if (pass.fromStart && !dirs.some((d) => d.ino === ROOTINO)) throw new RecoverFailed("the root directory (inode 2) is not in the backup");
    if (opts.history) {
      // All names before any node (digest §10): the root's "." and ".." first.
      const byIno = new Map(dirs.map((d) => [d.ino, d]));
      const order = [byIno.get(ROOTINO)!, ...dirs.filter((d) => d.ino !== ROOTINO)];
      for (const d of order) {
        const up = d.entries.find((e) => e.name.equals(DOTDOT))?.ino ?? ROOTINO;
        await opts.history.addDir(DOT, BigInt(d.ino), BigInt(d.ino));
        await opts.history.addDir(DOTDOT, BigInt(d.ino === ROOTINO ? ROOTINO : up), BigInt(d.ino));
        for (const e of d.entries) {
          if (e.name.equals(DOT) || e.name.equals(DOTDOT)) continue;
          if (e.type !== "directory" && !this.onTape(e.ino)) continue; // an incremental names only what it holds
          await opts.history.addDir(e.name, BigInt(e.ino), BigInt(d.ino));
        }
      }
      for (const d of dirs) await opts.history.addNode(fileStat(d.entry), BigInt(d.ino), BigInt(d.offset));
    }
    if (opts.extract) {
      // Parents before children, so each directory is created as itself, not as a stand-in.
      const placed: Array<{ d: DirInfo; path: Buffer }> = [];
      for (const d of dirs) {
        const path = this.pathsOf(d.ino)[0];
        if (path) placed.push({ d, path });
        else if (pass.fromStart) opts.warn(`directory inode ${d.ino} has no name in the backup; skipped`);
      }
      placed.sort((a, b) => depth(a.path) - depth(b.path));
      const incremental = opts.recursive && this.incremental === true;
      for (const { d, path } of placed) {
        const place = placeFor(path, opts.targets, opts.recursive);
        if (!place) continue;
        opts.targets.markFound(place.target);
        // A directory target: its subtree's inodes follow; this pass reads until past them.
        if (opts.source && relOf(path) === opts.targets.original(place.target).toString("latin1")) pass.wanted.add(place.target);
        const writer = this.restores.writerFor(place.root);
        try {
          await writer.begin(d.entry, place.rel);
          await writer.end();
          this.restored++;
        } catch (err) {
          this.restores.fail(place.target, path, err as Error);
          continue;
        }
        // Parents come first: a directory is emptied of what its listing lacks before its
        // subdirectories are made (one that was a file here is removed by its parent's purge).
        if (incremental) await this.applyDeletions(writer, place.rel, path, d.entries);
      }
    }
    dirs.length = 0;
    if (pass.maxNeeded !== Infinity) pass.maxNeeded = this.maxNeeded(pass);
  }

  /** Is the inode on this tape (TS_BITS)? Without the map (a jump past it), assume so. */
  private onTape(ino: number): boolean {
    const bits = this.bits;
    if (!bits || ino < 1 || ((ino - 1) >>> 3) >= bits.length) return bits === undefined;
    return (bits[(ino - 1) >>> 3]! & (1 << ((ino - 1) & 7))) !== 0;
  }

  /**
   * An incremental's directory: removes from its copy in the destination every name its listing
   * lacks, and every object whose type (directory or not) differs from the listing's d_type.
   */
  private async applyDeletions(writer: RestoreWriter, rel: Buffer, path: Buffer, entries: DecodedDirEntry[]): Promise<void> {
    if (!this.ours) {
      if (!this.warnedForeign) {
        this.warnedForeign = true;
        this.opts.warn("an incremental dump not written by ndmpd: deletions and renames since its base are not applied (Linux restore -r applies them)");
      }
      return;
    }
    const listed = new Map<string, DecodedDirEntry>();
    for (const e of entries) if (!e.name.equals(DOT) && !e.name.equals(DOTDOT)) listed.set(e.name.toString("latin1"), e);
    try {
      await writer.purge(rel, (name, isDir) => {
        const e = listed.get(name.toString("latin1"));
        return e !== undefined && (e.type === undefined || (e.type === "directory") === isDir);
      });
    } catch (err) {
      this.opts.warn(`${show(path)}: deletions not applied (${(err as Error).message})`);
    }
  }

  /** The largest inode number that a target this pass reads for needs; fills `pass.needed`. */
  private maxNeeded(pass: Pass): number {
    let max = 0;
    if (pass.wanted.size === 0) return max;
    const inos = new Set<number>([...this.parents.keys(), ...this.anchors.keys()]);
    for (const ino of inos) {
      if (this.dirInos.has(ino)) continue;
      for (const path of this.pathsOf(ino)) {
        const place = placeFor(path, this.opts.targets, this.opts.recursive);
        if (!place) continue;
        pass.needed.add(ino);
        if (pass.wanted.has(place.target) && ino > max) max = ino;
      }
    }
    // A directory of the subtree that was dumped before the pass began (a jump to a directory
    // reads the directory phase from there on): its names, and so its files, are unknown.
    if (!pass.fromStart && this.opts.recursive) {
      for (const [ino, ups] of this.parents) {
        if (this.dirInos.has(ino)) continue;
        for (const [parent, name] of ups) {
          const place = this.dirPath(parent, 0);
          if (place === undefined) continue;
          const p = place.length === 0 ? name : Buffer.concat([place, SLASH, name]);
          const t = placeFor(p, this.opts.targets, true)?.target;
          const d = this.isDirEntry(parent, ino);
          if (t !== undefined && pass.wanted.has(t) && d) {
            this.opts.targets.fail(t, RecoveryStatus.FAILED_UNDEFINED_ERROR, `${show(p)} precedes its parent in the backup and cannot be reached by direct access; restore without DIRECT=y`);
            this.opts.warn(`${show(p)}: ${this.opts.targets.error(t)}`);
          }
        }
      }
    }
    return max;
  }

  /** Does directory `dir` list `ino` as a directory? */
  private isDirEntry(dir: number, ino: number): boolean {
    for (const d of this.dirEntries.get(dir) ?? []) if (d.ino === ino && d.type === "directory") return true;
    return false;
  }

  private async endInode(): Promise<void> {
    const cur = this.current;
    this.current = undefined;
    if (!cur) return;
    const ok = new Set<Primary>();
    for (const p of cur.primaries) {
      try {
        await p.writer.end();
        this.restored++;
        ok.add(p);
      } catch (err) {
        this.restores.fail(p.target, p.path, err as Error);
      }
    }
    for (const l of cur.links) {
      if (!ok.has(l.primary)) {
        this.restores.fail(l.target, l.path, new Error(`its hard-link partner ${show(l.primary.path)} could not be restored`));
        continue;
      }
      const link: Entry = { path: l.path, type: "hardlink", linkTarget: l.primary.rel, mode: 0, uid: 0, gid: 0, size: 0, mtime: { sec: 0, nsec: 0 } };
      try {
        await l.primary.writer.begin(link, l.rel);
        await l.primary.writer.end();
        this.restored++;
      } catch (err) {
        this.restores.fail(l.target, l.path, err as Error);
      }
    }
  }

  /** Every path of `ino` ("." for the root), relative to the root. */
  private pathsOf(ino: number): Buffer[] {
    const out: Buffer[] = [];
    const anchor = this.anchors.get(ino);
    if (anchor) out.push(anchor.length === 0 ? DOT : anchor);
    if (ino === ROOTINO) return out;
    for (const [parent, name] of this.parents.get(ino) ?? []) {
      const up = this.dirPath(parent, 0);
      if (up === undefined) continue;
      const p = up.length === 0 ? name : Buffer.concat([up, SLASH, name]);
      if (!out.some((o) => o.equals(p))) out.push(p);
    }
    return out;
  }

  /** Path of a directory (empty for the root), or undefined if unreachable. */
  private dirPath(dir: number, depth: number): Buffer | undefined {
    const anchor = this.anchors.get(dir);
    if (anchor) return anchor;
    if (depth > 4096) return undefined; // a loop in hostile input
    const first = this.parents.get(dir)?.[0];
    if (!first) return undefined;
    const up = this.dirPath(first[0], depth + 1);
    if (up === undefined) return undefined;
    return up.length === 0 ? first[1] : Buffer.concat([up, SLASH, first[1]]);
  }

  private checkAbort(): void {
    if (this.opts.signal.aborted) throw this.opts.signal.reason ?? new Error("aborted");
  }

  /** Finishes every writer: directory modes and times are applied last. */
  async close(): Promise<void> {
    await this.restores.finish();
  }
}

function newPass(fromStart: boolean, wanted: Set<number>, expect: number | undefined): Pass {
  return { fromStart, namesKnown: false, dirs: [], wanted, maxNeeded: 0, needed: new Set(), scan: expect === undefined, expect, started: false };
}

/** A path as selection compares it ("." is the root, ""). */
function relOf(path: Buffer): string {
  return path.equals(DOT) ? "" : path.toString("latin1");
}

function depth(path: Buffer): number {
  if (path.equals(DOT)) return 0;
  let n = 1;
  for (const c of path) if (c === 0x2f) n++;
  return n;
}
