/**
 * A batch of small regular files for a creator thread to make (file-creator.ts): for each, the
 * open descriptor of its parent (the restore writer's BeneathTree: already checked beneath the
 * destination), its name, its whole content and its metadata. Three flat buffers, transferred
 * to the thread and back, not an object per file: a restore of small files makes thousands a
 * second.
 *
 * Layout: `meta` holds FIELDS numbers per file (below); `names` the names end to end; `data`
 * the contents end to end. A batch is filled on the restore's thread (add), read on the
 * creator's (fileAt), and its buffers come back with the result for the next batch.
 */
import fs from "node:fs";
import type { Timespec } from "../../formats/entry.ts";
import { O_CLOEXEC } from "../native/at.ts";
import type { AtCallsApi } from "../native/types.ts";
import { O_NOFOLLOW } from "./fsutil.ts";

/** Numbers per file in `meta`. */
const FIELDS = 12;
const DIR_FD = 0;
const NAME_AT = 1;
const NAME_LEN = 2;
const DATA_AT = 3;
const DATA_LEN = 4;
const MODE = 5;
/** -1: not chowned (the restore does not keep owners). */
const UID = 6;
const GID = 7;
const ATIME_SEC = 8;
const ATIME_NSEC = 9;
const MTIME_SEC = 10;
const MTIME_NSEC = 11;

export interface BatchBuffers {
  meta: Float64Array;
  names: Uint8Array;
  data: Uint8Array;
}

/** What a creator thread needs for one file. */
export interface CreateItem {
  dirFd: number;
  name: Uint8Array;
  /** The whole content (the file is this long: no holes, nothing more to come). */
  data: Uint8Array;
  /** Permission bits (with set-id bits: chown first, then chmod, as the restore writer does). */
  mode: number;
  /** -1: left to the restoring user. */
  uid: number;
  gid: number;
  atime: Timespec;
  mtime: Timespec;
}

/** A failure of one file of a batch, by its index: `fatal` (not created, or removed again) or a metadata step. */
export interface CreateFailure {
  index: number;
  fatal: boolean;
  /** The step: "openat", "pwrite", "chown", "chmod", "utimes", "close". */
  step: string;
  code: string;
  errno: number;
}

export class CreateBatch {
  count = 0;
  private namesUsed = 0;
  private dataUsed = 0;

  constructor(readonly buffers: BatchBuffers) {}

  static allocate(files: number, nameBytes: number, dataBytes: number): CreateBatch {
    return new CreateBatch({ meta: new Float64Array(files * FIELDS), names: new Uint8Array(nameBytes), data: new Uint8Array(dataBytes) });
  }

  /** Room for one more file of `name` and `size` bytes. */
  fits(nameLength: number, size: number): boolean {
    const b = this.buffers;
    return (this.count + 1) * FIELDS <= b.meta.length && this.namesUsed + nameLength <= b.names.length && this.dataUsed + size <= b.data.length;
  }

  get dataBytes(): number {
    return this.dataUsed;
  }

  /**
   * Reserves `size` bytes of content for the next file and returns where they start in `data`;
   * the caller copies the content there, then commits (or drops the reservation with release).
   */
  reserve(size: number): number {
    const at = this.dataUsed;
    this.dataUsed += size;
    return at;
  }

  /** Gives back a reservation that was not committed (it is the last one). */
  release(at: number): void {
    this.dataUsed = at;
  }

  /** Adds the file whose content was reserved at `dataAt`. Returns its index. */
  commit(dirFd: number, name: Uint8Array, dataAt: number, dataLength: number, mode: number, uid: number, gid: number, atime: Timespec, mtime: Timespec): number {
    const b = this.buffers;
    const i = this.count++;
    const m = i * FIELDS;
    b.names.set(name, this.namesUsed);
    b.meta[m + DIR_FD] = dirFd;
    b.meta[m + NAME_AT] = this.namesUsed;
    b.meta[m + NAME_LEN] = name.length;
    b.meta[m + DATA_AT] = dataAt;
    b.meta[m + DATA_LEN] = dataLength;
    b.meta[m + MODE] = mode;
    b.meta[m + UID] = uid;
    b.meta[m + GID] = gid;
    b.meta[m + ATIME_SEC] = atime.sec;
    b.meta[m + ATIME_NSEC] = atime.nsec;
    b.meta[m + MTIME_SEC] = mtime.sec;
    b.meta[m + MTIME_NSEC] = mtime.nsec;
    this.namesUsed += name.length;
    return i;
  }
}

/** File `i` of a batch's buffers (views, no copies). */
export function fileAt(b: BatchBuffers, i: number): CreateItem {
  const m = i * FIELDS;
  const nameAt = b.meta[m + NAME_AT]!;
  const dataAt = b.meta[m + DATA_AT]!;
  return {
    dirFd: b.meta[m + DIR_FD]!,
    name: b.names.subarray(nameAt, nameAt + b.meta[m + NAME_LEN]!),
    data: b.data.subarray(dataAt, dataAt + b.meta[m + DATA_LEN]!),
    mode: b.meta[m + MODE]!,
    uid: b.meta[m + UID]!,
    gid: b.meta[m + GID]!,
    atime: { sec: b.meta[m + ATIME_SEC]!, nsec: b.meta[m + ATIME_NSEC]! },
    mtime: { sec: b.meta[m + MTIME_SEC]!, nsec: b.meta[m + MTIME_NSEC]! },
  };
}

/** Opened as the restore writer opens a new file: never through a symlink, never over an existing name. */
export const NEW_FILE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | O_NOFOLLOW | O_CLOEXEC;
/** New files are private until their mode is set, after their content. */
export const WORKING_FILE_MODE = 0o600;

/**
 * Makes the `count` files of a batch, as RestoreWriter would one by one: created private (O_EXCL,
 * never following a symlink) in its parent's descriptor, written whole, then chown (which clears
 * set-id bits), chmod, times, close. A file whose write fails is closed and unlinked again
 * (fatal); EEXIST from the open is fatal too and makes nothing (the writer decides about the
 * existing object). A failed metadata step is reported and the file stays.
 */
export function createFiles(at: AtCallsApi, b: BatchBuffers, count: number): CreateFailure[] {
  const failures: CreateFailure[] = [];
  const fail = (index: number, fatal: boolean, step: string, error: unknown): void => {
    const e = error as { code?: string; errno?: number };
    failures.push({ index, fatal, step, code: e.code ?? String(error), errno: e.errno ?? 0 });
  };
  for (let i = 0; i < count; i++) {
    const f = fileAt(b, i);
    let fd: number;
    try {
      fd = at.openat(f.dirFd, f.name, NEW_FILE_FLAGS, WORKING_FILE_MODE);
    } catch (error) {
      fail(i, true, "openat", error);
      continue;
    }
    try {
      for (let done = 0; done < f.data.length; ) done += at.pwrite(fd, f.data, done, f.data.length - done, done);
    } catch (error) {
      fail(i, true, "pwrite", error);
      closeQuietly(at, fd);
      try {
        at.unlinkat(f.dirFd, f.name, 0);
      } catch {
        // the write's error is what gets reported
      }
      continue;
    }
    if (f.uid >= 0) step(i, "chown", () => at.fchown(fd, f.uid, f.gid));
    step(i, "chmod", () => at.fchmod(fd, f.mode));
    step(i, "utimes", () => at.futimens(fd, f.atime, f.mtime));
    step(i, "close", () => at.close(fd));
  }
  return failures;

  function step(index: number, what: string, action: () => void): void {
    try {
      action();
    } catch (error) {
      fail(index, false, what, error);
    }
  }
}

function closeQuietly(at: AtCallsApi, fd: number): void {
  try {
    at.close(fd);
  } catch {
    // the descriptor is gone either way
  }
}
