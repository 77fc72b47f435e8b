/**
 * File history batching (digest §5.3): FH entries are collected into posts of hundreds to
 * thousands of entries and sent on the control connection as the backup runs. When the DMA
 * reads slowly the backup waits for the control connection to drain instead of queueing
 * without bound, so memory stays flat whatever the size of the tree.
 */
import { countFileHistory } from "../metrics/metrics.ts";
import { ALL1, FileType, FsType, Message } from "../protocol/codes.ts";
import type { Entry } from "../../formats/entry.ts";
import { FhRecordWriter, type FhStat } from "../protocol/fh-record.ts";
import type { FhDir, FhFile, FhNode, FileStat } from "../protocol/xdr/v4.ts";

/** Where FH posts go: the session, which knows when its socket has room again. */
export interface HistoryPeer {
  post(code: number, body: unknown): void;
  /** Resolves when the control connection's send buffer is below its high-water mark. */
  drained(): Promise<void>;
  /** Whether it takes posts pre-encoded (postRecord) rather than as objects (post). */
  takesRecords?(): boolean;
  /** Sends a record from FhRecordWriter.take() and owns it from then on. */
  postRecord?(record: Buffer): void;
}

/** Entries per post: big enough to amortize, small enough to stay far below message limits. */
const BATCH_ENTRIES = 1000;
/** Estimated bytes per post before it is sent regardless of the entry count. */
const BATCH_BYTES = 512 * 1024;

const ftypeOf: Record<Entry["type"], number> = {
  file: FileType.REG,
  hardlink: FileType.REG,
  directory: FileType.DIR,
  symlink: FileType.SLINK,
  fifo: FileType.FIFO,
  chardev: FileType.CSPEC,
  blockdev: FileType.BSPEC,
  socket: FileType.SOCK,
};

const u32Seconds = (sec: number | undefined) => Math.max(0, Math.min(0xffff_ffff, Math.floor(sec ?? 0)));

/** NDMP file_stat from an entry (UNIX arm; times are u32 seconds, clamped). */
export function fileStat(e: Entry, size = e.size): FileStat {
  return { ...fhStat(e), size: BigInt(size) };
}

/** fileStat with the size as a number: what the history needs, without a bigint per entry. */
export function fhStat(e: Entry, size: number | bigint = e.size): FhStat {
  const t = u32Seconds;
  return {
    unsupported: 0,
    fs_type: FsType.UNIX,
    ftype: ftypeOf[e.type],
    mtime: t(e.mtime.sec),
    atime: t(e.atime?.sec ?? e.mtime.sec),
    ctime: t(e.ctime?.sec ?? e.mtime.sec),
    owner: e.uid >>> 0,
    group: e.gid >>> 0,
    fattr: e.mode & 0o7777,
    size,
    links: Math.min(e.nlink ?? 1, 0xffff_ffff),
  };
}

/** A bigint for the object form of a post (the pre-encoded form takes numbers as they are). */
const big = (v: number | bigint): bigint => (typeof v === "bigint" ? v : BigInt(v));
const bigStat = (s: FhStat): FileStat => (typeof s.size === "bigint" ? (s as FileStat) : { ...s, size: BigInt(s.size) });

/** The root's name in the history. */
const ROOT_NAME = Buffer.from("/");
const NO_BYTES = Buffer.alloc(0);

export class FileHistory {
  private files: FhFile[] = [];
  private dirs: FhDir[] = [];
  private nodes: FhNode[] = [];
  /**
   * The pre-encoded form (protocol/fh-record.ts), when the peer takes it: a session writing to
   * a DMA on the wire. A DMA in this process (the CLI) gets objects.
   */
  private readonly records: { file: FhRecordWriter; dir: FhRecordWriter; node: FhRecordWriter } | undefined;
  private bytes = 0;
  private count = 0;
  /** Entries posted so far, by kind (for the job's report). */
  posted = 0;
  /** Set by close(): the job has halted, and nothing more may be posted. */
  private closed = false;

  constructor(private readonly peer: HistoryPeer) {
    this.records =
      peer.postRecord && peer.takesRecords?.()
        ? { file: new FhRecordWriter(Message.FH_ADD_FILE), dir: new FhRecordWriter(Message.FH_ADD_DIR), node: new FhRecordWriter(Message.FH_ADD_NODE) }
        : undefined;
  }

  // The add* calls return a promise only when the caller must wait (a post went out and the DMA
  // is behind): a backup makes one per object, and an await on each cost a turn of the job.
  // Numbers (node, fh_info, size) may be numbers or bigints: the pre-encoded form needs no bigint.

  /** FH_ADD_FILE: `path` is relative to the backup root ("." = the root, sent as "/"). */
  addFile(path: Buffer, stat: FhStat, node: number | bigint, fhInfo: number | bigint): Promise<void> | undefined {
    if (this.closed) return undefined;
    const root = path.length === 1 && path[0] === 0x2e;
    if (this.records) this.records.file.file(root ? NO_BYTES : path, true, stat, node, fhInfo);
    else {
      const name = root ? ROOT_NAME : slashed(path);
      this.files.push({ names: [{ fs_type: FsType.UNIX, unix_name: name }], stats: [bigStat(stat)], node: big(node), fh_info: big(fhInfo) });
    }
    return this.grew((root ? 1 : path.length + 1) + 96);
  }

  /** FH_ADD_DIR: one directory entry (name = base name only). */
  addDir(name: Buffer, node: number | bigint, parent: number | bigint): Promise<void> | undefined {
    if (this.closed) return undefined;
    if (this.records) this.records.dir.dir(name, node, parent);
    else this.dirs.push({ names: [{ fs_type: FsType.UNIX, unix_name: name }], node: big(node), parent: big(parent) });
    return this.grew(name.length + 32);
  }

  /** FH_ADD_NODE: attributes and position of one inode. */
  addNode(stat: FhStat, node: number | bigint, fhInfo: number | bigint): Promise<void> | undefined {
    if (this.closed) return undefined;
    if (this.records) this.records.node.node(stat, node, fhInfo);
    else this.nodes.push({ stats: [bigStat(stat)], node: big(node), fh_info: big(fhInfo) });
    return this.grew(96);
  }

  /** Sends everything collected (call before NOTIFY_DATA_HALTED). */
  flush(): void {
    if (this.closed) return;
    // Dirs before nodes: an ADD_DIR naming a node must precede its ADD_NODE (digest §5.2).
    if (this.records) {
      for (const w of [this.records.file, this.records.dir, this.records.node]) {
        const record = w.take();
        if (record) this.peer.postRecord!(record);
      }
    } else {
      if (this.files.length > 0) this.peer.post(Message.FH_ADD_FILE, { files: this.files });
      if (this.dirs.length > 0) this.peer.post(Message.FH_ADD_DIR, { dirs: this.dirs });
      if (this.nodes.length > 0) this.peer.post(Message.FH_ADD_NODE, { nodes: this.nodes });
      this.files = [];
      this.dirs = [];
      this.nodes = [];
    }
    this.posted += this.count;
    countFileHistory(this.count);
    this.count = 0;
    this.bytes = 0;
  }

  /**
   * Sends what was collected and drops anything added later: the data service calls this when the
   * job halts, just before NOTIFY_DATA_HALTED, while the job itself may still be winding down.
   */
  close(): void {
    this.flush();
    this.closed = true;
  }

  private grew(bytes: number): Promise<void> | undefined {
    this.bytes += bytes;
    if (++this.count < BATCH_ENTRIES && this.bytes < BATCH_BYTES) return undefined;
    // A node may only be posted after the dir entries naming it: send dirs first (flush does).
    this.flush();
    return this.peer.drained();
  }
}

export const UNKNOWN = ALL1;

/** "/" + path, without Buffer.concat (under Bun it costs several times this, once per file). */
function slashed(path: Buffer): Buffer {
  const name = Buffer.allocUnsafe(path.length + 1);
  name[0] = 0x2f;
  name.set(path, 1);
  return name;
}
