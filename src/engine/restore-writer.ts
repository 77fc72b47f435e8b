// The one place a recovery touches the filesystem. Archive names are hostile input: every path is
// checked before use so that nothing is ever created, truncated, chmod-ed or linked outside the
// destination — no "..", no absolute names, no walking through a symlink, whether the archive
// planted it a moment ago or it was already there.
//
// With the native *at calls (the compiled binary, Bun: NativeApi.atCalls), regular files are
// created and settled through an open descriptor of their parent directory, itself opened with
// openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS from a descriptor of the destination
// (BeneathTree): a directory swapped for a symlink during the restore makes that open fail
// (ELOOP) instead of leading the write elsewhere, and each file costs the kernel one name lookup,
// not a whole path. Directories' final metadata goes through the same kind of descriptor.
//
// Limits worth knowing (Node has no openat/O_PATH/mknodat):
// - Without the native calls (Node, Deno) checks are lstat-based and cached per run, so a
//   *concurrent* local attacker who swaps a verified directory for a symlink during the restore
//   is not defended against. Files are still opened O_NOFOLLOW|O_EXCL and directories' final
//   metadata is applied through an O_NOFOLLOW descriptor. Symlinks, hard links, fifos and
//   devices take that path-based way in every runtime.
// - Timestamps: with the native layer (the compiled binary, Bun) utimensat sets them to the
//   nanosecond. Without it, node:fs's utimes family goes through libuv, which truncates to
//   microseconds, and takes no negative number ("now" instead), so times go as decimal strings.
// - Fifos and devices: with the native layer, mknod(2) creates them; without it (node:fs has no
//   mknod) `mkfifo`/`mknod` (coreutils) do, reached through an inherited directory descriptor
//   (/proc/self/fd/3/...). Either way under a temporary ASCII name, then rename() gives them
//   their byte name.
import { spawn } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import type { Entry, Timespec } from "../../formats/entry.ts";
import type { AtCallsApi, NativeApi } from "../native/index.ts";
import { NativeError } from "../native/errno.ts";
import { fileAt, NEW_FILE_FLAGS, WORKING_FILE_MODE, type BatchBuffers, type CreateFailure } from "./create-batch.ts";
import { CREATE_MAX, type CreateQueue, type FailureHandler, type QueuedFile } from "./file-creator.ts";
import { AT_FDCWD, O_CLOEXEC, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS } from "../native/at.ts";
import {
  O_DIRECTORY,
  O_NOFOLLOW,
  O_NONBLOCK,
  SLASH,
  asError,
  closeQuietly,
  errorCode,
  joinPath,
  pathKey,
  showPath,
  splitPath,
  stripTrailingSlashes,
} from "./fsutil.ts";

export interface RestoreWriterOptions {
  /** Absolute directory path; created if missing. */
  destination: Buffer;
  /** chown to the entry's uid/gid (default: running as root). */
  sameOwner?: boolean;
  /** For lsetxattr; without it xattrs are skipped and reported. */
  native?: NativeApi;
  /**
   * What to do with an object already there (OVERWRITE): "always" (the default) replaces it
   * (unlinking it; never following a symlink), "never" leaves it, "newer" replaces it only when
   * the archive's copy is newer (mtime). Directories are merged whatever the policy.
   */
  overwrite?: OverwritePolicy;
  /**
   * The recovery's creator threads for small files (file-creator.ts), used with the native *at
   * calls only. A file they make is reported by onLateFailure if it fails: after its end() has
   * returned.
   */
  queue?: Promise<CreateQueue | undefined>;
  /** A file begun with `tag` failed after its end() returned (made by the creator threads). */
  onLateFailure?: (tag: FailureTag, error: Error) => void;
  /** What went wrong without failing the object (a chown, a chmod, times, an xattr), by its path under the destination. */
  onWarning?: (rel: Buffer, reason: string) => void;
}

/** Who to tell when an object's restore fails late: its nlist entry and its archive path. */
export interface FailureTag {
  target: number;
  path: Buffer;
}

export type OverwritePolicy = "always" | "never" | "newer";

export interface RestoreProblem {
  path: Buffer;
  reason: string;
}

export class RestoreRefused extends Error {
  readonly path: Buffer;
  constructor(path: Buffer, reason: string) {
    super(`refused to restore ${JSON.stringify(showPath(path))}: ${reason}`);
    this.name = "RestoreRefused";
    this.path = path;
  }
}

const DOT = Buffer.from(".");
const DOTDOT = Buffer.from("..");
const IMPLICIT_DIR_MODE = 0o755;
/** Directories are created private and get their real mode in finish(), after their children. */
const WORKING_DIR_MODE = 0o700;
const NODE_TOOL_TIMEOUT_MS = 30_000;
/**
 * Files up to this size are written with synchronous write(2) calls. A small file's create,
 * write, chown, chmod, utimensat and close are each cheaper than a trip through the thread pool
 * and back (two thread wake-ups and an event-loop turn per call, which cost more CPU than the
 * calls themselves: 20,000 small files went 1.8x slower than tar -xf). Larger files keep the
 * pool, so their writes overlap with reading the stream.
 */
const SYNC_WRITE_MAX = 256 * 1024;

type Current =
  /** dirFd/name: created by the tree (dirFd is open until the next begin()); -1: by path. */
  | { kind: "file"; entry: Entry; rel: Buffer; abs: Buffer; fd: number; end: number; sync: boolean; dirFd: number; name: Buffer }
  | { kind: "node"; entry: Entry; rel: Buffer; abs: Buffer }
  /** A small file for the creator threads: its content gathers in the batch at data[at...]. */
  | { kind: "queued"; entry: Entry; rel: Buffer; abs: Buffer; key: string; name: Buffer; parent: string; tag: FailureTag | undefined; data: Uint8Array; at: number; end: number }
  | { kind: "none" };

interface PendingDir {
  abs: Buffer;
  rel: Buffer;
  depth: number;
  /** undefined: created only as somebody's parent, the archive never described it. */
  entry?: Entry;
}

/** Thrown inside begin() when the object is left alone on purpose (already recorded). */
class Skip extends Error {}
/** Skip: an existing object the overwrite policy keeps. */
class Kept extends Skip {}

/**
 * Writes recovered objects under a destination directory. Call begin(entry, relPath), then write()
 * for a regular file's content, then end(); finally finish() once. If begin() throws (RestoreRefused
 * or an I/O error, both also recorded in stats.errors), the object is skipped: write() and end()
 * for it are no-ops, so a caller can keep streaming the archive and go on with the next entry.
 */
export class RestoreWriter {
  readonly stats: { files: number; bytes: number; errors: RestoreProblem[]; kept: Buffer[] } = { files: 0, bytes: 0, errors: [], kept: [] };

  /** The destination directory (absolute, without a trailing slash). */
  readonly destination: Buffer;
  private readonly sameOwner: boolean;
  private readonly overwrite: OverwritePolicy;
  private readonly native: NativeApi | undefined;
  /** The destination's descriptors (native *at calls); undefined: paths through node:fs. */
  private tree: BeneathTree | undefined;
  private current: Current = { kind: "none" };
  private ready: Promise<void> | undefined;
  /** `ready` has resolved: begin() need not wait for it. */
  private prepared = false;
  /** Relative paths (latin1 keys) known in this run to be real directories under the destination. */
  private readonly verified = new Set<string>();
  private readonly dirs = new Map<string, PendingDir>();
  private tempCounter = 0;
  private finished = false;
  private readonly queueOption: Promise<CreateQueue | undefined> | undefined;
  private readonly onLateFailure: ((tag: FailureTag, error: Error) => void) | undefined;
  private readonly onWarning: ((rel: Buffer, reason: string) => void) | undefined;
  private readonly onBatchFailure: FailureHandler = (file, failure, buffers) => this.failedInBatch(file, failure, buffers);
  /** Small files on their way through the creator threads (with the tree only). */
  private queue: CreateQueue | undefined;

  constructor(opts: RestoreWriterOptions) {
    if (opts.destination.length === 0 || opts.destination[0] !== SLASH) {
      throw new RangeError(`restore destination must be an absolute path: ${showPath(opts.destination)}`);
    }
    this.destination = stripTrailingSlashes(Buffer.from(opts.destination));
    this.sameOwner = opts.sameOwner ?? process.getuid?.() === 0;
    this.overwrite = opts.overwrite ?? "always";
    this.native = opts.native;
    this.queueOption = opts.queue;
    this.onLateFailure = opts.onLateFailure;
    this.onWarning = opts.onWarning;
  }

  /** `tag`: who to tell if the object fails after end() has returned (onLateFailure). */
  async begin(entry: Entry, relPath: Buffer, tag?: FailureTag): Promise<void> {
    if (this.current.kind !== "none") await this.end();
    if (this.finished) throw new Error("RestoreWriter: begin() after finish()");
    if (this.queue) await this.queue.collect();
    await this.start(entry, relPath, tag, this.queue !== undefined);
  }

  /** begin() itself; `queueable`: a small file may go to the creator threads. */
  private async start(entry: Entry, relPath: Buffer, tag: FailureTag | undefined, queueable: boolean): Promise<void> {
    try {
      const parts = this.parse(relPath, relPath);
      if (!this.prepared) await this.prepareDestination();
      if (parts.length === 0) {
        if (entry.type !== "directory") throw new RestoreRefused(relPath, "the destination itself can only be a directory");
        this.noteDir("", this.destination, relPath, 0, entry);
        this.current = { kind: "node", entry, rel: relPath, abs: this.destination };
        return;
      }
      const name = parts[parts.length - 1]!;
      const rel = joinedParts(relPath, parts);
      const key = pathKey(rel);
      const parent = parentKey(key, name);
      // What the creator threads still have to make comes first where the archive's order matters.
      const queue = this.queue;
      if (queueable && queue && !queue.idle && mustWaitFor(queue, entry, key, this.verified.has(parent))) await queue.drain();
      // The parent is checked once per run (most archives put many files in each directory).
      if (!this.verified.has(parent)) await this.directoryAt(parts.slice(0, -1), relPath, true);
      const abs = joinPath(this.destination, rel);
      switch (entry.type) {
        case "file": {
          if (queueable && queue && entry.size <= CREATE_MAX && !hasXattrs(entry) && !this.verified.has(key)) {
            await queue.room(name.length, entry.size);
            this.dirAt(this.tree!, parent, relPath); // opened (and checked) now: the threads only use it
            const at = queue.reserve(entry.size);
            this.current = { kind: "queued", entry, rel: relPath, abs, key, name, parent, tag, data: queue.data, at, end: 0 };
            return;
          }
          await this.openFile(entry, relPath, abs, key, name, parent);
          return;
        }
        case "directory":
          if (this.tree) await this.makeDirectoryAt(this.tree, name, abs, relPath, key, entry);
          else await this.makeDirectory(abs, relPath, key, entry);
          this.noteDir(key, abs, relPath, parts.length, entry);
          this.current = { kind: "node", entry, rel: relPath, abs };
          return;
        case "symlink": {
          const target = entry.linkTarget;
          if (!target || target.length === 0) throw new Error("symlink without a target");
          await this.replace(abs, relPath, key, entry, () => fsp.symlink(target, abs));
          break;
        }
        case "hardlink": {
          if (!entry.linkTarget) throw new Error("hard link without a target");
          const targetParts = this.parse(entry.linkTarget, relPath);
          if (targetParts.length === 0) throw new RestoreRefused(relPath, "hard link to the destination directory");
          const targetDir = await this.directoryAt(targetParts.slice(0, -1), relPath, false);
          const targetAbs = joinPath(targetDir, targetParts[targetParts.length - 1]!);
          const st = await fsp.lstat(targetAbs).catch((error: unknown) => {
            throw new Error(`hard link target ${showPath(entry.linkTarget!)} is missing (${errorCode(error) ?? error})`);
          });
          if (st.isDirectory()) throw new RestoreRefused(relPath, "hard link to a directory");
          // link(2) does not follow a symlink target: at worst we link the symlink itself.
          await this.replace(abs, relPath, key, entry, () => fsp.link(targetAbs, abs));
          break;
        }
        case "fifo":
        case "chardev":
        case "blockdev":
          await this.makeNode(parts.length === 1 ? this.destination : abs.subarray(0, abs.length - name.length - 1), abs, relPath, key, entry);
          break;
        case "socket":
          throw new Skip("sockets are not restored (a socket is created by the program that listens on it)");
        default:
          throw new Error(`unknown entry type ${String(entry.type)}`);
      }
      this.current = { kind: "node", entry, rel: relPath, abs };
    } catch (error) {
      this.current = { kind: "none" };
      if (error instanceof Skip) {
        if (error instanceof Kept) this.stats.kept.push(joinPath(this.destination, relPath));
        else this.notice(relPath, error.message);
        return;
      }
      this.problem(relPath, error instanceof RestoreRefused ? error.message : describeError(error));
      throw nodeLike(error);
    }
  }

  /** Creates a regular file now (replacing what is there as the policy allows); it becomes current. */
  private async openFile(entry: Entry, relPath: Buffer, abs: Buffer, key: string, name: Buffer, parent: string): Promise<void> {
    const sync = entry.size <= SYNC_WRITE_MAX;
    const tree = this.tree;
    if (tree) {
      const dirFd = this.dirAt(tree, parent, relPath);
      const fd = await this.replace(abs, relPath, key, entry, () => tree.at.openat(dirFd, name, NEW_FILE_FLAGS, WORKING_FILE_MODE), dirFd, name);
      this.current = { kind: "file", entry, rel: relPath, abs, fd, end: 0, sync, dirFd, name };
      return;
    }
    const fd = await this.replace(abs, relPath, key, entry, () => openNew(abs));
    this.current = { kind: "file", entry, rel: relPath, abs, fd, end: 0, sync, dirFd: -1, name };
  }

  /**
   * A queued file that cannot go to the threads after all (its content has holes, or xattrs came
   * after its header): created here and now, with what it has gathered so far.
   */
  private async unqueue(cur: Extract<Current, { kind: "queued" }>): Promise<void> {
    this.current = { kind: "none" };
    this.queue!.unreserve(cur.at);
    try {
      await this.openFile(cur.entry, cur.rel, cur.abs, cur.key, cur.name, cur.parent);
    } catch (error) {
      this.problem(cur.rel, error instanceof RestoreRefused ? error.message : describeError(error));
      throw nodeLike(error);
    }
    this.stats.bytes -= cur.end;
    // The batch's bytes stay as they are until the next reservation: written out first.
    if (cur.end > 0) await this.write(Buffer.from(cur.data.buffer, cur.data.byteOffset + cur.at, cur.end), 0);
  }

  /**
   * A file the threads could not make. The name was taken (EEXIST): made here, as begin() would
   * have, from the batch's copy of its content. Any other failure: reported, late.
   */
  private async failedInBatch(file: QueuedFile, failure: CreateFailure, buffers: BatchBuffers): Promise<void> {
    const tag = file.tag as FailureTag | undefined;
    if (!failure.fatal) {
      this.notice(file.rel, `${failure.step}: ${batchError(failure).message}`);
      return;
    }
    this.stats.files--;
    this.stats.bytes -= file.entry.size;
    if (failure.step === "openat" && failure.code === "EEXIST") {
      try {
        await this.start(file.entry, file.rel, tag, false);
        if (file.entry.size > 0) await this.write(Buffer.from(fileAt(buffers, failure.index).data), 0);
        await this.end();
      } catch (error) {
        this.current = { kind: "none" };
        if (tag) this.onLateFailure?.(tag, asError(error));
      }
      return;
    }
    const error = batchError(failure);
    this.problem(file.rel, error.message);
    if (tag) this.onLateFailure?.(tag, error);
  }

  async write(chunk: Buffer, fileOffset: number): Promise<void> {
    const queued = this.current;
    if (queued.kind === "queued") {
      if (fileOffset === queued.end && fileOffset + chunk.length <= queued.entry.size) {
        queued.data.set(chunk, queued.at + fileOffset);
        queued.end += chunk.length;
        this.stats.bytes += chunk.length;
        return;
      }
      await this.unqueue(queued);
    }
    const cur = this.current;
    if (cur.kind !== "file") return; // skipped object, or content of a hard link: nothing to do
    try {
      let done = 0;
      const at = cur.dirFd >= 0 && cur.sync ? this.tree!.at : undefined;
      while (done < chunk.length) {
        const n = chunk.length - done;
        done += at
          ? at.pwrite(cur.fd, chunk, done, n, fileOffset + done)
          : cur.sync
            ? fs.writeSync(cur.fd, chunk, done, n, fileOffset + done)
            : await writeAt(cur.fd, chunk, done, n, fileOffset + done);
      }
    } catch (error) {
      this.current = { kind: "none" };
      this.problem(cur.rel, describeError(error));
      // A file that could not be written whole is not left half there (on a full disk it would
      // also keep the space every later file needs). unlink never follows the last component.
      await this.discard(cur);
      throw nodeLike(error);
    }
    this.stats.bytes += chunk.length;
    if (fileOffset + chunk.length > cur.end) cur.end = fileOffset + chunk.length;
  }

  async end(): Promise<void> {
    const queued = this.current;
    if (queued.kind === "queued") {
      if (queued.end === queued.entry.size && !hasXattrs(queued.entry)) {
        this.current = { kind: "none" };
        const { entry, rel, key, tag } = queued;
        this.queue!.commit({ entry, rel, key, tag, onFailure: this.onBatchFailure }, this.tree!.dir(queued.parent), queued.name, queued.at, this.sameOwner ? entry.uid : -1);
        this.stats.files++;
        return;
      }
      await this.unqueue(queued);
    }
    const cur = this.current;
    this.current = { kind: "none" };
    if (cur.kind === "none") return;
    const { entry, rel, abs } = cur;
    if (cur.kind === "file") {
      const fd = cur.fd;
      try {
        // Holes at the end exist only as size: writes never reached there.
        if (cur.end !== entry.size) fs.ftruncateSync(fd, entry.size);
      } catch (error) {
        this.problem(rel, describeError(error));
        await this.discard(cur); // not left half there (see write)
        throw nodeLike(error);
      }
      this.stats.files++;
      if (cur.dirFd >= 0) this.settleFileAt(this.tree!.at, fd, rel, abs, entry);
      else this.settleFile(fd, rel, abs, entry);
      return;
    }
    this.stats.files++;
    switch (entry.type) {
      case "directory":
      case "hardlink": // the inode's metadata came with its first name
        return;
      case "symlink":
        await this.step(rel, "chown", this.sameOwner && (() => fsp.lchown(abs, entry.uid, entry.gid)));
        this.applyXattrs(abs, rel, entry);
        await this.setTimes(rel, abs, entry);
        return;
      default:
        // The mode was set on the node itself before it got its name (makeNode): a chmod by path
        // here would follow a symlink planted at the name meanwhile.
        await this.step(rel, "chown", this.sameOwner && (() => fsp.lchown(abs, entry.uid, entry.gid)));
        this.applyXattrs(abs, rel, entry);
        await this.setTimes(rel, abs, entry);
    }
  }

  /**
   * Times last. utimensat (native) keeps every nanosecond; node:fs rounds through a float to
   * microseconds, which is the fallback under Node. Never follows a symlink.
   */
  private async setTimes(rel: Buffer, abs: Buffer, entry: Entry, fd?: number): Promise<void> {
    const atime = entry.atime ?? entry.mtime;
    if (this.native?.fs || fd !== undefined) {
      this.setTimesNow(rel, abs, entry, fd);
    } else {
      await this.step(rel, "utimes", () => fsp.lutimes(abs, timeArg(atime), timeArg(entry.mtime)));
    }
  }

  /** setTimes where it needs no thread: utimensat (native), or futimes on the descriptor. */
  private setTimesNow(rel: Buffer, abs: Buffer, entry: Entry, fd: number | undefined): void {
    const atime = entry.atime ?? entry.mtime;
    const native = this.native?.fs;
    if (native) this.stepNow(rel, "utimes", () => native.utimens(abs, atime, entry.mtime, true));
    else if (fd !== undefined) this.stepNow(rel, "utimes", () => fs.futimesSync(fd, timeArg(atime), timeArg(entry.mtime)));
  }

  async finish(): Promise<void> {
    try {
      if (this.current.kind !== "none") await this.end();
      // Every file made before the directories get their final modes and times.
      await this.queue?.drain();
      this.finished = true;
      await this.settleDirectories();
    } finally {
      // Every descriptor the tree holds, whatever happened (an aborted job comes here too).
      this.finished = true;
      this.queue = undefined;
      this.tree?.close();
      this.tree = undefined;
    }
  }

  private async settleDirectories(): Promise<void> {
    // Deepest first: setting a child's times or a parent's read-only mode must come after the child.
    const dirs = [...this.dirs.entries()].sort((a, b) => b[1].depth - a[1].depth);
    const tree = this.tree;
    for (const [key, dir] of dirs) {
      const entry = dir.entry;
      let fd: number;
      try {
        fd = tree
          ? tree.openBeneath(key, fs.constants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK)
          : await new Promise<number>((resolve, reject) =>
              fs.open(dir.abs, fs.constants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK, (e, f) => (e ? reject(e) : resolve(f))),
            );
      } catch (error) {
        this.notice(dir.rel, describeError(error));
        continue;
      }
      try {
        if (!entry) {
          await this.step(dir.rel, "chmod", () => callback((cb) => fs.fchmod(fd, IMPLICIT_DIR_MODE, cb)));
          continue;
        }
        await this.step(dir.rel, "chown", this.sameOwner && (() => callback((cb) => fs.fchown(fd, entry.uid, entry.gid, cb))));
        await this.step(dir.rel, "chmod", () => callback((cb) => fs.fchmod(fd, entry.mode & 0o7777, cb)));
        this.applyXattrs(dir.abs, dir.rel, entry);
        if (tree) this.stepNow(dir.rel, "utimes", () => tree.at.futimens(fd, entry.atime ?? entry.mtime, entry.mtime));
        else await this.setTimes(dir.rel, dir.abs, entry, fd);
      } finally {
        closeQuietly(fd);
      }
    }
    this.dirs.clear();
  }

  /**
   * Incremental restores: removes what is in the directory `relPath` (under the destination)
   * and should not be, by `keep(name, isDirectory)` — the names an incremental's directory
   * listing says were deleted since its base, or changed type. Subtrees go whole, never
   * following a symlink and never leaving the destination. Returns the names removed.
   */
  async purge(relPath: Buffer, keep: (name: Buffer, isDirectory: boolean) => boolean): Promise<Buffer[]> {
    const parts = this.parse(relPath, relPath);
    await this.prepareDestination();
    await this.queue?.drain();
    const dir = await this.directoryAt(parts, relPath, false);
    const removed: Buffer[] = [];
    for (const name of await fsp.readdir(dir, { encoding: "buffer" })) {
      const abs = joinPath(dir, name);
      const st = await fsp.lstat(abs).catch(() => undefined);
      if (!st || keep(name, st.isDirectory())) continue;
      const rel = parts.length ? joinPath(parts.reduce((a, p) => joinPath(a, p)), name) : name;
      try {
        await removeTree(abs);
        removed.push(rel);
      } catch (error) {
        this.notice(rel, `not deleted: ${describeError(error)}`);
      }
      // Nothing learned about that subtree in this run holds any more.
      const key = pathKey(rel);
      for (const k of [...this.verified]) if (k === key || k.startsWith(key + "/")) this.verified.delete(k);
      for (const k of [...this.dirs.keys()]) if (k === key || k.startsWith(key + "/")) this.dirs.delete(k);
      this.tree?.forget(key);
    }
    return removed;
  }

  /**
   * Incremental restores: removes the extended attributes (ACLs included) of the existing
   * directory `relPath` that `keep` does not list, so one removed since the base is gone here
   * too (files are created anew; a directory is restored over the one already there).
   */
  async dropOtherXattrs(relPath: Buffer, keep: Array<[Buffer, Buffer]> | undefined): Promise<void> {
    const api = this.native?.xattr;
    if (!api?.remove) return;
    const parts = this.parse(relPath, relPath);
    await this.prepareDestination();
    await this.queue?.drain();
    const dir = await this.directoryAt(parts, relPath, false);
    const wanted = new Set((keep ?? []).map(([name]) => name.toString("latin1")));
    try {
      for (const name of api.list(dir)) if (!wanted.has(name.toString("latin1"))) api.remove(dir, name);
    } catch (error) {
      this.notice(relPath, `extended attributes: ${describeError(error)}`);
    }
  }

  // ----------------------------------------------------------------------------------------------

  /** chown (clears set-id bits), then chmod, xattrs, times (after the content), close. Never throws. */
  private settleFile(fd: number, rel: Buffer, abs: Buffer, entry: Entry): void {
    this.stepNow(rel, "chown", this.sameOwner && (() => fs.fchownSync(fd, entry.uid, entry.gid)));
    this.stepNow(rel, "chmod", () => fs.fchmodSync(fd, entry.mode & 0o7777));
    this.applyXattrs(abs, rel, entry);
    this.setTimesNow(rel, abs, entry, fd);
    // On NFS, close is where a failed write shows up.
    this.stepNow(rel, "close", () => fs.closeSync(fd));
  }

  /** settleFile through the native calls on the descriptor: no path, no node:fs wrapping. */
  private settleFileAt(at: AtCallsApi, fd: number, rel: Buffer, abs: Buffer, entry: Entry): void {
    this.stepNow(rel, "chown", this.sameOwner && (() => at.fchown(fd, entry.uid, entry.gid)));
    this.stepNow(rel, "chmod", () => at.fchmod(fd, entry.mode & 0o7777));
    const xattrs = entry.xattrs;
    const api = this.native?.xattr;
    if (xattrs && xattrs.length > 0 && api?.fset) {
      for (const [name, value] of xattrs) this.stepNow(rel, `xattr ${showPath(name)}`, () => api.fset!(fd, name, value));
    } else {
      this.applyXattrs(abs, rel, entry);
    }
    this.stepNow(rel, "utimes", () => at.futimens(fd, entry.atime ?? entry.mtime, entry.mtime));
    this.stepNow(rel, "close", () => at.close(fd));
  }

  /** A file that could not be written whole: closed and unlinked (by its parent's descriptor when it has one). */
  private async discard(cur: { fd: number; abs: Buffer; dirFd: number; name: Buffer }): Promise<void> {
    closeQuietly(cur.fd);
    if (cur.dirFd >= 0) {
      try {
        this.tree?.at.unlinkat(cur.dirFd, cur.name, 0);
      } catch {
        // nothing more to do: the write's error is what gets reported
      }
      return;
    }
    await fsp.unlink(cur.abs).catch(() => undefined);
  }

  private problem(path: Buffer, reason: string): void {
    this.stats.errors.push({ path, reason });
  }

  /**
   * A problem that does not fail the object (its metadata, a socket left out, a deletion not
   * made): recorded, and told (onWarning), since nothing else would say it.
   */
  private notice(path: Buffer, reason: string): void {
    this.problem(path, reason);
    this.onWarning?.(path, reason);
  }

  /** A metadata step whose failure is reported but does not stop the restore. */
  private async step(rel: Buffer, what: string, action: false | (() => Promise<unknown>)): Promise<void> {
    if (!action) return;
    try {
      await action();
    } catch (error) {
      this.notice(rel, `${what}: ${describeError(error)}`);
    }
  }

  /** step() for a synchronous call. */
  private stepNow(rel: Buffer, what: string, action: false | (() => unknown)): void {
    if (!action) return;
    try {
      action();
    } catch (error) {
      this.notice(rel, `${what}: ${describeError(error)}`);
    }
  }

  private applyXattrs(abs: Buffer, rel: Buffer, entry: Entry): void {
    const xattrs = entry.xattrs;
    if (!xattrs || xattrs.length === 0) return;
    const api = this.native?.xattr;
    if (!api) {
      const why = this.native?.reason ?? "no native xattr calls in this runtime";
      this.notice(rel, `extended attributes not restored (${xattrs.length}): ${why}`);
      return;
    }
    for (const [name, value] of xattrs) {
      try {
        api.set(abs, name, value);
      } catch (error) {
        this.notice(rel, `xattr ${showPath(name)}: ${describeError(error)}`);
      }
    }
  }

  /** Splits and checks an archive path; [] is the destination itself. */
  private parse(path: Buffer, reportAs: Buffer): Buffer[] {
    const refuse = (why: string): never => {
      throw new RestoreRefused(reportAs, path === reportAs ? why : `link target ${JSON.stringify(showPath(path))}: ${why}`);
    };
    if (path.length === 0) refuse("empty path");
    if (path.includes(0)) refuse("NUL byte in the name");
    if (path[0] === SLASH) refuse("absolute path");
    const parts: Buffer[] = [];
    for (const part of splitPath(path)) {
      if (part.length === 0) refuse("empty path component");
      if (part.equals(DOT)) continue;
      if (part.equals(DOTDOT)) refuse('".." path component');
      parts.push(part);
    }
    return parts;
  }

  private prepareDestination(): Promise<void> {
    this.ready ??= (async () => {
      await fsp.mkdir(this.destination, { recursive: true, mode: IMPLICIT_DIR_MODE });
      // The operator chose the destination: following a symlink there is their call.
      const st = await fsp.stat(this.destination);
      if (!st.isDirectory()) throw new Error(`restore destination ${showPath(this.destination)} is not a directory`);
      this.verified.add("");
      const at = this.native?.atCalls;
      if (at && !this.finished) this.tree = BeneathTree.open(at, this.destination);
      const queue = this.tree ? await this.queueOption : undefined;
      if (queue && this.tree && !this.finished) {
        this.queue = queue;
        // A descriptor the tree lets go of may still be named by a batch out: closed after it.
        this.tree.retire = (fd) => queue.retire(fd);
      }
      this.prepared = true;
    })();
    return this.ready;
  }

  /**
   * The absolute path of the directory `parts` under the destination, every component checked with
   * lstat to be a real directory (not a symlink). Missing ones are created when `create`.
   */
  private async directoryAt(parts: Buffer[], reportAs: Buffer, create: boolean): Promise<Buffer> {
    let abs = this.destination;
    let rel: Buffer | undefined;
    for (let i = 0; i < parts.length; i++) {
      rel = rel ? joinPath(rel, parts[i]!) : parts[i]!;
      abs = joinPath(abs, parts[i]!);
      const key = pathKey(rel);
      if (this.verified.has(key)) continue;
      if (this.tree) {
        this.checkDirectoryAt(this.tree, parts[i]!, key, rel, i + 1, reportAs, create);
        continue;
      }
      let st: fs.Stats | undefined;
      try {
        st = await fsp.lstat(abs);
      } catch (error) {
        if (errorCode(error) !== "ENOENT") throw error;
      }
      if (!st) {
        if (!create) throw new Error(`${showPath(rel)} does not exist`);
        try {
          await fsp.mkdir(abs, WORKING_DIR_MODE);
          this.noteDir(key, abs, rel, i + 1, undefined);
        } catch (error) {
          if (errorCode(error) !== "EEXIST") throw error;
        }
        st = await fsp.lstat(abs);
      }
      if (st.isSymbolicLink()) throw new RestoreRefused(reportAs, `${showPath(rel)} is a symbolic link`);
      if (!st.isDirectory()) throw new RestoreRefused(reportAs, `${showPath(rel)} is not a directory`);
      this.verified.add(key);
    }
    return abs;
  }

  /**
   * directoryAt's step with the tree: `name` made (when `create`) in its parent's descriptor,
   * then opened beneath the destination, which refuses a symlink (ELOOP) or a non-directory
   * (ENOTDIR) wherever on the way it is, now or put there later.
   */
  private checkDirectoryAt(tree: BeneathTree, name: Buffer, key: string, rel: Buffer, depth: number, reportAs: Buffer, create: boolean): void {
    if (create) {
      const parentFd = this.dirAt(tree, parentKey(key, name), reportAs);
      try {
        tree.at.mkdirat(parentFd, name, WORKING_DIR_MODE);
        this.noteDir(key, joinPath(this.destination, rel), rel, depth, undefined);
      } catch (error) {
        if (errorCode(error) !== "EEXIST") throw error;
      }
    }
    try {
      this.dirAt(tree, key, reportAs);
    } catch (error) {
      if (errorCode(error) === "ENOENT" && !create) throw new Error(`${showPath(rel)} does not exist`);
      throw error;
    }
    this.verified.add(key);
  }

  /**
   * tree.dir(key), with a refusal to walk through a symlink or a non-directory (ELOOP, ENOTDIR,
   * EXDEV from openat2) said as RestoreRefused naming the component, found by lstat (only on
   * this error path).
   */
  private dirAt(tree: BeneathTree, key: string, reportAs: Buffer): number {
    try {
      return tree.dir(key);
    } catch (error) {
      const code = errorCode(error);
      if (code !== "ELOOP" && code !== "ENOTDIR" && code !== "EXDEV") throw error;
      let rel = "";
      for (const part of key.split("/")) {
        rel = rel ? `${rel}/${part}` : part;
        const relBuf = Buffer.from(rel, "latin1");
        const st = fs.lstatSync(joinPath(this.destination, relBuf), { throwIfNoEntry: false });
        if (st?.isSymbolicLink()) throw new RestoreRefused(reportAs, `${showPath(relBuf)} is a symbolic link`);
        if (st && !st.isDirectory()) throw new RestoreRefused(reportAs, `${showPath(relBuf)} is not a directory`);
      }
      throw new RestoreRefused(reportAs, `${showPath(Buffer.from(key, "latin1"))} is not a directory beneath the destination (${code})`);
    }
  }

  /** makeDirectory with the tree: mkdirat in the parent's descriptor; a non-directory there is replaced. */
  private async makeDirectoryAt(tree: BeneathTree, name: Buffer, abs: Buffer, rel: Buffer, key: string, entry: Entry): Promise<void> {
    const parentFd = this.dirAt(tree, parentKey(key, name), rel);
    try {
      tree.at.mkdirat(parentFd, name, WORKING_DIR_MODE);
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error;
      try {
        tree.dir(key);
      } catch (notDir) {
        const code = errorCode(notDir);
        if (code !== "ELOOP" && code !== "ENOTDIR") throw notDir;
        // A symlink or a file where the directory goes: replaced like any object (by name, in
        // the parent's descriptor: unlinkat never follows the last component).
        await this.mayReplace(abs, entry); // reads the mtime only
        tree.at.unlinkat(parentFd, name, 0);
        tree.at.mkdirat(parentFd, name, WORKING_DIR_MODE);
      }
    }
    try {
      tree.dir(key);
    } catch (error) {
      if (errorCode(error) === "ELOOP" || errorCode(error) === "ENOTDIR") throw new RestoreRefused(rel, "directory replaced while restoring");
      throw error;
    }
    this.verified.add(key);
  }

  private noteDir(key: string, abs: Buffer, rel: Buffer, depth: number, entry: Entry | undefined): void {
    const known = this.dirs.get(key);
    if (known) {
      if (entry) known.entry = entry;
      return;
    }
    this.dirs.set(key, { abs, rel, depth, entry });
  }

  /**
   * Runs `create`; if the name is taken, removes what is there (when allowed) and runs it again.
   * With `dirFd` (the tree's descriptor of the parent) the removal is by name in that directory.
   */
  private async replace<T>(abs: Buffer, rel: Buffer, key: string, entry: Entry, create: () => T | Promise<T>, dirFd = -1, name?: Buffer): Promise<T> {
    try {
      return await create();
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error;
    }
    await this.mayReplace(abs, entry);
    if (dirFd >= 0 && this.tree && name) this.removeAt(this.tree, dirFd, name, key);
    else await this.remove(abs, key);
    return create();
  }

  /** remove() by name in an open directory: unlinkat, or for an (empty) directory AT_REMOVEDIR. */
  private removeAt(tree: BeneathTree, dirFd: number, name: Buffer, key: string): void {
    try {
      tree.at.unlinkat(dirFd, name, 0);
    } catch (error) {
      if (errorCode(error) !== "EISDIR") throw error;
      tree.at.unlinkat(dirFd, name, AT_REMOVEDIR); // ENOTEMPTY: we do not delete trees to make room for one object
      this.verified.delete(key);
      this.dirs.delete(key);
      tree.forget(key);
    }
  }

  /** Throws Kept when the overwrite policy keeps the object at `abs` (which exists). */
  private async mayReplace(abs: Buffer, entry: Entry, there?: fs.Stats): Promise<void> {
    if (this.overwrite === "always") return;
    if (this.overwrite === "never") throw new Kept("already exists (OVERWRITE=n)");
    const st = there ?? (await fsp.lstat(abs));
    const archived = entry.mtime.sec * 1000 + entry.mtime.nsec / 1e6;
    if (st.mtimeMs >= archived) throw new Kept("already exists and is not older than the backup's copy (OVERWRITE=newer)");
  }

  /** Unlinks a non-directory or an empty directory; never follows a symlink. */
  private async remove(abs: Buffer, key: string): Promise<void> {
    const st = await fsp.lstat(abs);
    if (st.isDirectory()) {
      await fsp.rmdir(abs); // ENOTEMPTY: we do not delete trees to make room for one object
      this.verified.delete(key);
      this.dirs.delete(key);
      this.tree?.forget(key);
    } else {
      await fsp.unlink(abs);
    }
  }

  private async makeDirectory(abs: Buffer, rel: Buffer, key: string, entry: Entry): Promise<void> {
    try {
      await fsp.mkdir(abs, WORKING_DIR_MODE);
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error;
      const st = await fsp.lstat(abs);
      if (!st.isDirectory()) {
        await this.mayReplace(abs, entry, st);
        await fsp.unlink(abs);
        await fsp.mkdir(abs, WORKING_DIR_MODE);
      }
    }
    const st = await fsp.lstat(abs);
    if (!st.isDirectory()) throw new RestoreRefused(rel, "directory replaced while restoring");
    this.verified.add(key);
  }

  /** mkfifo/mknod under a temporary ASCII name in the parent (via an inherited fd), then rename. */
  private async makeNode(parent: Buffer, abs: Buffer, rel: Buffer, key: string, entry: Entry): Promise<void> {
    const exists = await fsp.lstat(abs).then(
      (st) => st,
      (error: unknown) => {
        if (errorCode(error) === "ENOENT") return undefined;
        throw error;
      },
    );
    if (exists) {
      await this.mayReplace(abs, entry, exists);
      if (exists.isDirectory()) await this.remove(abs, key);
    }
    const tempName = `.ndmpd-restore-${process.pid}-${++this.tempCounter}.tmp`;
    const target = `/proc/self/fd/3/${tempName}`;
    const [command, args]: [string, string[]] =
      entry.type === "fifo"
        ? ["mkfifo", [target]]
        : ["mknod", [target, entry.type === "chardev" ? "c" : "b", String(entry.devMajor ?? 0), String(entry.devMinor ?? 0)]];
    const dirFd = await new Promise<number>((resolve, reject) =>
      fs.open(parent, fs.constants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW, (e, fd) => (e ? reject(e) : resolve(fd))),
    );
    try {
      const native = this.native?.fs;
      if (native) {
        // mknod(2) itself, on the temporary name in the checked parent: no child process.
        const typeBits = entry.type === "fifo" ? 0o010000 : entry.type === "chardev" ? 0o020000 : 0o060000;
        native.mknod(joinPath(parent, Buffer.from(tempName)), typeBits | 0o600, entry.devMajor ?? 0, entry.devMinor ?? 0);
      } else {
        await runTool(command, args, dirFd);
      }
    } finally {
      closeQuietly(dirFd);
    }
    const temp = joinPath(parent, Buffer.from(tempName));
    try {
      await chmodNode(temp, entry.mode & 0o7777);
      await fsp.rename(temp, abs); // atomically replaces a non-directory; never follows a symlink
    } catch (error) {
      await fsp.unlink(temp).catch(() => undefined);
      throw error;
    }
  }
}

/** Linux's O_PATH (x86_64, aarch64): a descriptor that names an inode without opening it. */
const O_PATH = 0o10000000;

/**
 * chmod of the fifo or device node just made at `path`, through an O_PATH descriptor of that very
 * inode (O_NOFOLLOW: a symlink put there instead is refused): opening a device node for real could
 * act on the device, and fchmod does not take O_PATH descriptors, but /proc/self/fd/N does.
 */
async function chmodNode(path: Buffer, mode: number): Promise<void> {
  const fd = await new Promise<number>((resolve, reject) => fs.open(path, O_PATH | O_NOFOLLOW, (e, f) => (e ? reject(e) : resolve(f))));
  try {
    const st = await new Promise<fs.Stats>((resolve, reject) => fs.fstat(fd, (e, s) => (e ? reject(e) : resolve(s))));
    if (!st.isFIFO() && !st.isCharacterDevice() && !st.isBlockDevice()) throw new Error("the node made for it was replaced");
    await fsp.chmod(`/proc/self/fd/${fd}`, mode);
  } finally {
    closeQuietly(fd);
  }
}

const AT_REMOVEDIR = 0x200;

/** `parts` (checked components of `path`) joined by "/": `path` itself unless "." components were dropped. */
function joinedParts(path: Buffer, parts: Buffer[]): Buffer {
  if (parts.length === 1) return parts[0]!;
  let slashes = 0;
  for (let at = path.indexOf(SLASH); at !== -1; at = path.indexOf(SLASH, at + 1)) slashes++;
  if (slashes === parts.length - 1) return path;
  const pieces: Buffer[] = [];
  for (const part of parts) pieces.push(part, SLASH_BUF);
  pieces.pop();
  return Buffer.concat(pieces);
}

const SLASH_BUF = Buffer.from("/");

function hasXattrs(entry: Entry): boolean {
  return entry.xattrs !== undefined && entry.xattrs.length > 0;
}

/**
 * Whether an object must wait for the files the creator threads still have: anything that is not
 * a plain file or directory (a hard link's target may be one of them; symlinks, nodes: by name),
 * an object of a name still queued (the later one wins), and a file in a directory not yet
 * checked (which may be created, or be a queued file's name).
 */
function mustWaitFor(queue: CreateQueue, entry: Entry, key: string, parentVerified: boolean): boolean {
  if (entry.type !== "file" && entry.type !== "directory") return true;
  return queue.has(key) || !parentVerified;
}

/** The key of `key`'s parent, `name` being its last component ("" for the destination). */
function parentKey(key: string, name: Buffer): string {
  return key.length > name.length ? key.slice(0, key.length - name.length - 1) : "";
}
/** No "..", no absolute symlink, no symlink at all, no /proc magic link on the way: never out of the destination. */
const BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
/** Open directory descriptors a tree keeps: archives list a directory's files together, so a few do. */
const TREE_FDS = 16;

/**
 * Descriptors of the destination and of the directories under it that files were last written
 * into, keyed by relative path (latin1 "a/b", "" for the destination). Each directory is opened
 * from the destination's descriptor with openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, so no
 * swap of a directory for a symlink, done before or during the restore, can take a file
 * elsewhere. The least recently used one is closed when more than TREE_FDS are open; close()
 * closes them all.
 */
export class BeneathTree {
  private readonly fds = new Map<string, number>();
  private lastKey: string | undefined;
  /** How a descriptor the tree no longer keeps is closed (a writer with creator threads defers it). */
  retire: (fd: number) => void = closeQuietly;

  private constructor(
    readonly at: AtCallsApi,
    private rootFd: number,
  ) {}

  /**
   * A tree over `destination` (the operator's choice: a symlink to it is followed), or undefined
   * when openat2 is refused (Linux < 5.6: ENOSYS; some seccomp filters: EPERM, ENOSYS): the
   * writer then goes by path.
   */
  static open(at: AtCallsApi, destination: Buffer): BeneathTree | undefined {
    const rootFd = at.openat(AT_FDCWD, destination, fs.constants.O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    const tree = new BeneathTree(at, rootFd);
    try {
      closeQuietly(tree.openBeneath("", fs.constants.O_RDONLY | O_DIRECTORY));
      return tree;
    } catch (error) {
      tree.close();
      if (error instanceof NativeError && (error.code === "ENOSYS" || error.code === "EPERM" || error.code === "EINVAL")) return undefined;
      throw error;
    }
  }

  /** A new descriptor of `key` (the caller closes it), opened beneath the destination. */
  openBeneath(key: string, flags: number): number {
    return this.at.openat2(this.rootFd, key === "" ? DOT : Buffer.from(key, "latin1"), flags | O_CLOEXEC, 0, BENEATH);
  }

  /** The open directory `key`, kept for the next files (not to be closed by the caller). */
  dir(key: string): number {
    if (key === "") return this.rootFd;
    const known = this.fds.get(key);
    if (known !== undefined) {
      if (this.lastKey !== key) {
        // Most recently used goes last: a Map iterates in insertion order.
        this.fds.delete(key);
        this.fds.set(key, known);
        this.lastKey = key;
      }
      return known;
    }
    const fd = this.openBeneath(key, fs.constants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (this.fds.size >= TREE_FDS) {
      const [oldest, oldFd] = this.fds.entries().next().value as [string, number];
      this.fds.delete(oldest);
      this.retire(oldFd);
    }
    this.fds.set(key, fd);
    this.lastKey = key;
    return fd;
  }

  /** Drops `key` and what is under it (removed, or about to be). */
  forget(key: string): void {
    for (const [k, fd] of [...this.fds]) {
      if (k === key || k.startsWith(key + "/")) {
        this.fds.delete(k);
        this.retire(fd);
      }
    }
    this.lastKey = undefined;
  }

  /** Open descriptors, the destination's included (tests count them). */
  get openCount(): number {
    return this.fds.size + (this.rootFd >= 0 ? 1 : 0);
  }

  close(): void {
    for (const fd of this.fds.values()) closeQuietly(fd);
    this.fds.clear();
    this.lastKey = undefined;
    if (this.rootFd >= 0) closeQuietly(this.rootFd);
    this.rootFd = -1;
  }
}

/** open(2) itself, not through the thread pool (see SYNC_WRITE_MAX). */
function openNew(abs: Buffer): number {
  return fs.openSync(abs, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | O_NOFOLLOW, WORKING_FILE_MODE);
}

function writeAt(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, offset, length, position, (e, n) => (e ? reject(e) : resolve(n))));
}

function callback(run: (cb: (error: NodeJS.ErrnoException | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => run((error) => (error ? reject(error) : resolve())));
}

/** A creator thread's failure as the writer's own calls say theirs (nodeLike); a lost thread has no errno, only why. */
function batchError(failure: CreateFailure): Error {
  return asError(failure.errno ? nodeLike(new NativeError(failure.step, failure.errno)) : new Error(`${failure.step}: ${failure.code}`));
}

/**
 * A native call's error as node:fs would word it ("EIO: write failed"), code and errno kept: the
 * caller logs the message after the object's name, and scripts (and tests) look for the errno
 * code right there.
 */
function nodeLike(error: unknown): unknown {
  if (!(error instanceof NativeError)) return error;
  return Object.assign(new Error(describeError(error)), { code: error.code, errno: error.errno, syscall: error.syscall });
}

function describeError(error: unknown): string {
  // "EIO: write failed" like node:fs's "EIO: i/o error, write": the errno code right after the name.
  if (error instanceof NativeError) return `${error.code}: ${error.syscall} failed`;
  const e = asError(error);
  const code = errorCode(e);
  return code && !e.message.startsWith(code) ? `${code}: ${e.message}` : e.message;
}

const IS_BUN = typeof process.versions.bun === "string";

/**
 * A time for fs.utimes & co. as a decimal string: numbers below zero are replaced by "now" in both
 * Node and Bun, strings are not. Node (libuv) truncates toward zero to whole microseconds, so it
 * gets the middle of the right microsecond, which survives the float rounding; Bun keeps the
 * double, so it gets the exact nanoseconds.
 */
/** rm -r without following symlinks: lstat, then unlink, or empty the directory and rmdir. */
async function removeTree(abs: Buffer): Promise<void> {
  const st = await fsp.lstat(abs);
  if (!st.isDirectory()) return fsp.unlink(abs);
  // A read-only directory cannot be emptied: make it writable first (it is going anyway).
  if ((st.mode & 0o700) !== 0o700) await fsp.chmod(abs, 0o700);
  for (const name of await fsp.readdir(abs, { encoding: "buffer" })) await removeTree(joinPath(abs, name));
  await fsp.rmdir(abs);
}

export function timeArg(t: Timespec): string {
  let ns = BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
  if (!IS_BUN) {
    const micros = ns >= 0n ? ns / 1000n : (ns - 999n) / 1000n; // floor
    ns = micros * 1000n + (micros >= 0n ? 500n : -500n);
  }
  const negative = ns < 0n;
  const abs = negative ? -ns : ns;
  return `${negative ? "-" : ""}${abs / 1_000_000_000n}.${(abs % 1_000_000_000n).toString().padStart(9, "0")}`;
}

/** Runs mkfifo/mknod with the parent directory as fd 3; reaps it; stderr goes into the error. */
function runTool(command: string, args: string[], dirFd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe", dirFd] });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      if (stderr.length < 1000) stderr += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), NODE_TOOL_TIMEOUT_MS);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${command} failed (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
    });
  });
}
