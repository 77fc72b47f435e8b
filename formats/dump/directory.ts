/**
 * On-tape directory contents (`struct direct`, spec 5.1): 8-byte fixed part, name, NUL,
 * padded to 4; entries never cross a 512-byte chunk (DIRBLKSIZ).
 */
import { Buffer } from "node:buffer";
import type { EntryType } from "../entry.ts";

export const DIRBLKSIZ = 512;
/** Longest name Debian restore 0.4b47 handles (its DIRSIZ truncates 255). */
export const MAX_NAME = 254;

export interface DirChild {
  name: Buffer;
  ino: number;
  type: EntryType;
}

const DT_UNKNOWN = 0;
const DT_BY_TYPE: Record<EntryType, number> = {
  fifo: 1,
  chardev: 2,
  directory: 4,
  blockdev: 6,
  file: 8,
  symlink: 10,
  socket: 12,
  hardlink: DT_UNKNOWN, // the caller should pass the linked object's type; 0 is still accepted
};
const TYPE_BY_DT = new Map<number, EntryType>(
  Object.entries(DT_BY_TYPE)
    .filter(([, dt]) => dt !== DT_UNKNOWN)
    .map(([type, dt]) => [dt, type as EntryType]),
);

/** Minimum record length of an entry with a name of `nameLen` bytes. */
export function dirsize(nameLen: number): number {
  return (8 + nameLen + 1 + 3) & ~3;
}

/**
 * Encode entries (the caller puts "." and ".." first) into whole 512-byte chunks.
 * When an entry does not fit in the rest of a chunk, the previous entry absorbs the gap.
 */
export function encodeDirectory(children: DirChild[]): Buffer {
  const chunks: Buffer[] = [];
  let chunk = Buffer.alloc(DIRBLKSIZ);
  let pos = 0;
  let lastPos = -1;
  const closeChunk = (): void => {
    // The last entry of a chunk extends to the chunk's end.
    if (lastPos >= 0) chunk.writeUInt16LE(DIRBLKSIZ - lastPos, lastPos + 4);
    chunks.push(chunk);
    chunk = Buffer.alloc(DIRBLKSIZ);
    pos = 0;
    lastPos = -1;
  };
  for (const child of children) {
    const len = dirsize(child.name.length);
    if (pos + len > DIRBLKSIZ) closeChunk();
    chunk.writeUInt32LE(child.ino, pos);
    chunk.writeUInt16LE(len, pos + 4);
    chunk.writeUInt8(DT_BY_TYPE[child.type], pos + 6);
    chunk.writeUInt8(child.name.length, pos + 7);
    child.name.copy(chunk, pos + 8); // NUL and padding are already zero
    lastPos = pos;
    pos += len;
  }
  closeChunk();
  return Buffer.concat(chunks);
}

export interface DecodedDirEntry {
  name: Buffer;
  ino: number;
  /** From d_type; undefined when the tape says DT_UNKNOWN. */
  type: EntryType | undefined;
}

/**
 * Decode directory data. Mangled entries are reported and their chunk skipped, as
 * restore does; "." and ".." are returned like any other entry.
 */
export function decodeDirectory(data: Buffer): { entries: DecodedDirEntry[]; problems: string[] } {
  const entries: DecodedDirEntry[] = [];
  const problems: string[] = [];
  let pos = 0;
  while (pos < data.length) {
    const room = DIRBLKSIZ - (pos % DIRBLKSIZ);
    if (data.length - pos < 8) {
      problems.push(`truncated directory entry at ${pos}`);
      break;
    }
    const ino = data.readUInt32LE(pos);
    const reclen = data.readUInt16LE(pos + 4);
    const dtype = data.readUInt8(pos + 6);
    const nameLen = data.readUInt8(pos + 7);
    if (reclen % 4 !== 0 || reclen > room || reclen < dirsize(nameLen) || pos + 8 + nameLen > data.length) {
      problems.push(`mangled directory entry at ${pos}`);
      pos += room;
      continue;
    }
    if (ino !== 0) {
      entries.push({ name: Buffer.from(data.subarray(pos + 8, pos + 8 + nameLen)), ino, type: TYPE_BY_DT.get(dtype) });
    }
    pos += reclen;
  }
  return { entries, problems };
}
