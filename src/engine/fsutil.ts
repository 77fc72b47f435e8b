// Small byte-path and stat helpers shared by the walker and the restore writer. Paths stay Buffers
// throughout: Linux names are bytes, and a lossy string conversion would back up or restore the
// wrong file.
import fs from "node:fs";
import fsp from "node:fs/promises";
import type { EntryType, Timespec } from "../../formats/entry.ts";

export const SLASH = 0x2f;
const SLASH_BUF = Buffer.from("/");
const NS_PER_SEC = 1_000_000_000n;

/** "a/b" + "c" -> "a/b/c"; a root of "/" does not double the slash. */
export function joinPath(dir: Buffer, name: Buffer): Buffer {
  if (dir.length > 0 && dir[dir.length - 1] === SLASH) return Buffer.concat([dir, name]);
  return Buffer.concat([dir, SLASH_BUF, name]);
}

/** Drops trailing slashes except for "/" itself. */
export function stripTrailingSlashes(path: Buffer): Buffer {
  let end = path.length;
  while (end > 1 && path[end - 1] === SLASH) end--;
  return end === path.length ? path : path.subarray(0, end);
}

/** Splits on "/" without decoding; empty components are kept (callers decide what they mean). */
export function splitPath(path: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === SLASH) {
      parts.push(path.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}

/** A Map/Set key for a byte path: latin1 maps each byte to one char, so it is exact and reversible. */
export function pathKey(path: Buffer): string {
  return path.toString("latin1");
}

/** Bytes for messages: printable ASCII as is, everything else as \xHH. */
export function showPath(path: Buffer): string {
  let out = "";
  for (const b of path) {
    out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/** A bigint nanosecond timestamp (may be negative: before 1970) as seconds + 0..999999999 ns. */
export function timespecFromNs(ns: bigint): Timespec {
  let sec = ns / NS_PER_SEC;
  let nsec = ns % NS_PER_SEC;
  if (nsec < 0n) {
    nsec += NS_PER_SEC;
    sec -= 1n;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

const S_IFMT = 0o170000;
const TYPE_BY_FORMAT: Record<number, EntryType> = {
  0o100000: "file",
  0o040000: "directory",
  0o120000: "symlink",
  0o010000: "fifo",
  0o020000: "chardev",
  0o060000: "blockdev",
  0o140000: "socket",
};

export function typeFromMode(mode: bigint | number): EntryType | undefined {
  return TYPE_BY_FORMAT[Number(mode) & S_IFMT];
}

/** glibc's gnu_dev_major/gnu_dev_minor on a 64-bit dev_t. */
export function deviceNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/** Node's system errors carry a code; anything else is not one. */
/** close(2) whose failure has nobody to tell (already reported, or nothing to report). */
export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // the descriptor is gone either way
  }
}

export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** Open flags not every runtime exports; 0 means "not available", which is always safe. */
export const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;
export const O_NOATIME = fs.constants.O_NOATIME ?? 0;
export const O_DIRECTORY = fs.constants.O_DIRECTORY ?? 0;
export const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;

/**
 * Opening files for backup. O_NOATIME keeps a backup from touching atimes, but only the owner (or
 * root) may ask for it: after the first EPERM (not root, a file of someone else's) this thread
 * stops asking, since it would fail again for most files.
 */
let noatime = O_NOATIME !== 0;

function refused(error: unknown): boolean {
  if (!noatime || errorCode(error) !== "EPERM") return false;
  noatime = false; // atimes will move: nothing to do about it
  return true;
}

/** `flags` with O_NOATIME while this thread still asks for it (a native open, falling back to openSyncForBackup on failure). */
export function backupOpenFlags(flags: number): number {
  return noatime ? flags | O_NOATIME : flags;
}

/** open(2) for reading, as a FileHandle. */
export async function openForBackup(path: Buffer, flags: number): Promise<fsp.FileHandle> {
  if (noatime) {
    try {
      return await fsp.open(path, flags | O_NOATIME);
    } catch (error) {
      if (!refused(error)) throw error;
    }
  }
  return fsp.open(path, flags);
}

/** The same with the callback API, as a bare fd: cheaper per call, for the many small files. */
export function openFdForBackup(path: Buffer, flags: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const plain = () => fs.open(path, flags, (e, fd) => (e ? reject(e) : resolve(fd)));
    if (!noatime) return plain();
    fs.open(path, flags | O_NOATIME, (e, fd) => {
      if (!e) return resolve(fd);
      if (!refused(e)) return reject(e);
      plain();
    });
  });
}

/** The same with a plain syscall (the scan workers). */
export function openSyncForBackup(path: Buffer, flags: number): number {
  if (noatime) {
    try {
      return fs.openSync(path, flags | O_NOATIME);
    } catch (error) {
      if (!refused(error)) throw error;
    }
  }
  return fs.openSync(path, flags);
}
