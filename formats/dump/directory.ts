/**
 * On-tape directory contents (`struct direct`, spec 5.1): 8-byte fixed part, name, NUL,
 * padded to 4; entries never cross a 512-byte chunk (DIRBLKSIZ).
 *
 * 255-byte names: restore 0.4b47 (built against e2fsprogs, whose EXT2_DIR_REC_LEN takes the
 * name length + 1 as a byte) computes a record length of 8 for them and loses the name, and
 * dumpinspect rejects them. With `longNamesInPad` (flagged in the directory's header, see
 * HeaderExt) such a name is written as its first 254 bytes, NUL, and its last byte in the
 * entry's one pad byte: restore restores the file under the 254-byte name, our reader under
 * the whole one. (Pad bytes are zero in every other entry we write.)
 */
import { Buffer } from "node:buffer";
import type { EntryType } from "../entry.ts";

export const DIRBLKSIZ = 512;
/** Longest name Debian restore 0.4b47 handles (its DIRSIZ truncates 255). */
export const MAX_NAME = 254;
/** The longest a Linux name can be; written as MAX_NAME bytes + the pad byte. */
const LONG_NAME = 255;

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
 * 255-byte names are written the `longNamesInPad` way (the caller flags the directory).
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
    const long = child.name.length === LONG_NAME;
    const shown = long ? child.name.subarray(0, MAX_NAME) : child.name;
    const len = dirsize(shown.length);
    if (pos + len > DIRBLKSIZ) closeChunk();
    chunk.writeUInt32LE(child.ino, pos);
    chunk.writeUInt16LE(len, pos + 4);
    chunk.writeUInt8(DT_BY_TYPE[child.type], pos + 6);
    chunk.writeUInt8(shown.length, pos + 7);
    shown.copy(chunk, pos + 8); // NUL and padding are already zero
    if (long) chunk[pos + 8 + MAX_NAME + 1] = child.name[MAX_NAME]!;
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
export function decodeDirectory(data: Buffer, opts: { longNamesInPad?: boolean } = {}): { entries: DecodedDirEntry[]; problems: string[] } {
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
      let name = Buffer.from(data.subarray(pos + 8, pos + 8 + nameLen));
      // The 255th byte of a long name, in the pad byte after the NUL (a directory we flagged).
      const last = nameLen === MAX_NAME && opts.longNamesInPad ? data[pos + 8 + MAX_NAME + 1]! : 0;
      if (last === 0x2f) problems.push(`entry at ${pos}: a "/" as the 255th byte of a name; left at 254 bytes`);
      else if (last) name = Buffer.concat([name, Buffer.from([last])]);
      entries.push({ name, ino, type: TYPE_BY_DT.get(dtype) });
    }
    pos += reclen;
  }
  return { entries, problems };
}
