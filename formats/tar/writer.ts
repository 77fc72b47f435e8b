/**
 * POSIX pax writer (ustar headers plus "x" extended headers), the format GNU tar calls
 * `--format=pax` and libarchive calls "pax restricted".
 *
 * Usage, per entry:
 *   out(encodeHeader(entry));          // x header (if needed) + ustar header (+ sparse map)
 *   out(exactly contentSize(entry) bytes of content);  // sparse: the data runs, in order
 *   out(padding(contentSize(entry)));
 * and once at the end: out(endOfArchive()).
 *
 * The header commits to contentSize(entry) bytes. If the file changes while it is being read,
 * the caller must still send exactly that many: pad with zeros if the file shrank, stop
 * (truncate) if it grew. Otherwise every later header would be misplaced.
 *
 * Compactness: a pax header is written only when some value does not fit the ustar fields
 * (long or non-ASCII-safe names, big sizes/ids, sub-second or out-of-range times, atime/ctime,
 * xattrs, sparse maps). A small file with a short name, whole-second mtime and no xattrs costs
 * one 512-byte header. Callers wanting compact archives of files with nanosecond mtimes can
 * round `mtime.nsec` to 0 and leave out atime/ctime before calling.
 */
import { type Entry, type EntryType, storedSize } from "../entry.ts";
import {
  BLOCK,
  F,
  MAX_OCTAL_11,
  MAX_OCTAL_7,
  paddingSize,
  writeBytes,
  writeChecksum,
  writeMagic,
  writeOctal,
} from "./header.ts";
import { ACL_XATTRS, aclXattrToText } from "./acl.ts";
import { decimal, encodeRecord, encodeTextRecord, formatTimeText, isUtf8, xattrKeyword } from "./pax.ts";

const TYPEFLAG: Record<Exclude<EntryType, "socket">, number> = {
  file: 0x30, // "0"
  hardlink: 0x31, // "1"
  symlink: 0x32, // "2"
  chardev: 0x33, // "3"
  blockdev: 0x34, // "4"
  directory: 0x35, // "5"
  fifo: 0x36, // "6"
};

const SLASH = 0x2f;

/** Number of content bytes the caller must stream after the header (sparse: the data runs). */
export function contentSize(entry: Entry): number {
  return storedSize(entry);
}

/** Zeros that follow `storedBytes` of content to reach the next 512-byte block. */
export function padding(storedBytes: number): Buffer {
  return Buffer.alloc(paddingSize(storedBytes));
}

/** The end-of-archive marker: two zero blocks. */
export function endOfArchive(): Buffer {
  return Buffer.alloc(2 * BLOCK);
}

/**
 * All header bytes for one entry: an optional pax "x" header (block + records, padded), the
 * ustar header, and for sparse files the GNU sparse 1.0 map block(s). Throws RangeError for
 * entries tar cannot represent (sockets, NUL bytes in names, inconsistent sparse runs).
 */
export function encodeHeader(entry: Entry): Buffer {
  validate(entry);
  // Records are Buffers, or strings for all-ASCII text ones (written as latin1).
  const records: Array<Buffer | string> = [];
  let binaryNames = false;
  const addName = (key: string, value: Buffer): void => {
    if (!isUtf8(value)) binaryNames = true;
    records.push(encodeRecord(key, value));
  };

  const block = scratchBlock();
  const tarPath = entry.type === "directory" ? withTrailingSlash(entry.path) : entry.path;

  // Sparse files follow GNU tar's sparse 1.0: the real name and size go into GNU.sparse.*
  // records and the ustar name is a stand-in, so a tar that ignores the records extracts the
  // (map + data) blob under a name that does not clobber the real file.
  const sparseMap = entry.type === "file" && entry.sparse ? encodeSparseMap(entry) : undefined;
  if (sparseMap) {
    records.push(encodeRecord("GNU.sparse.major", decimal(1)));
    records.push(encodeRecord("GNU.sparse.minor", decimal(0)));
    addName("GNU.sparse.name", tarPath);
    records.push(encodeRecord("GNU.sparse.realsize", decimal(entry.size)));
    placeName(block, sparseStandIn(tarPath));
  } else if (!placeName(block, tarPath)) {
    addName("path", tarPath);
  }

  if (entry.linkTarget && (entry.type === "symlink" || entry.type === "hardlink")) {
    if (entry.linkTarget.length <= F.linkname[1]) writeBytes(block, F.linkname, entry.linkTarget);
    else {
      writeBytes(block, F.linkname, entry.linkTarget.subarray(0, F.linkname[1]));
      addName("linkpath", entry.linkTarget);
    }
  }

  const size = contentSize(entry) + (sparseMap ? sparseMap.length : 0);
  writeOctal(block, F.size, size <= MAX_OCTAL_11 ? size : 0);
  if (size > MAX_OCTAL_11) records.push(encodeRecord("size", decimal(size)));

  writeOctal(block, F.mode, entry.mode & 0o7777);
  for (const [key, field] of [
    ["uid", F.uid],
    ["gid", F.gid],
  ] as const) {
    const id = entry[key];
    writeOctal(block, field, id <= MAX_OCTAL_7 ? id : 0);
    if (id > MAX_OCTAL_7) records.push(encodeRecord(key, decimal(id)));
  }

  const { mtime } = entry;
  writeOctal(block, F.mtime, clampTime(mtime.sec));
  if (mtime.nsec !== 0 || mtime.sec !== clampTime(mtime.sec)) {
    records.push(encodeTextRecord("mtime", formatTimeText(mtime)));
  }
  if (entry.atime) records.push(encodeTextRecord("atime", formatTimeText(entry.atime)));
  if (entry.ctime) records.push(encodeTextRecord("ctime", formatTimeText(entry.ctime)));

  block[F.typeflag[0]] = TYPEFLAG[entry.type as Exclude<EntryType, "socket">];
  writeMagic(block);
  for (const [key, field] of [
    ["uname", F.uname],
    ["gname", F.gname],
  ] as const) {
    const owner = entry[key];
    if (!owner) continue;
    // Keep a terminating NUL in the field; longer names go to pax.
    if (owner.length < field[1]) writeBytes(block, field, owner);
    else addName(key, owner);
  }

  const isDevice = entry.type === "chardev" || entry.type === "blockdev";
  writeOctal(block, F.devmajor, isDevice ? (entry.devMajor ?? 0) : 0);
  writeOctal(block, F.devminor, isDevice ? (entry.devMinor ?? 0) : 0);

  for (const [name, value] of entry.xattrs ?? []) {
    // POSIX ACLs travel as SCHILY.acl.* text, which GNU tar, star and libarchive restore.
    const aclKey = ACL_XATTRS[name.toString("latin1")];
    const aclText = aclKey ? aclXattrToText(value) : undefined;
    if (aclKey && aclText !== undefined) records.push(encodeRecord(aclKey, Buffer.from(aclText)));
    else records.push(encodeRecord(xattrKeyword(name), value));
  }

  // An incremental's directory listing (GNU tar --listed-incremental in pax format).
  if (entry.type === "directory" && entry.dumpdir) records.push(encodeRecord("GNU.dumpdir", entry.dumpdir));

  writeChecksum(block);

  // Everything goes into one buffer: [pax block, pax body, padding], ustar block, [sparse map].
  // POSIX: hdrcharset=BINARY says the names below are raw bytes, not UTF-8. libarchive
  // needs it to accept such names; GNU tar 1.34 ignores it (with a warning) and uses the
  // raw bytes anyway, which is what we want.
  if (binaryNames) records.unshift(encodeRecord("hdrcharset", Buffer.from("BINARY", "latin1")));
  let bodyLength = 0;
  for (const r of records) bodyLength += r.length; // strings are ASCII: one byte per char
  const paxLength = records.length > 0 ? BLOCK + bodyLength + paddingSize(bodyLength) : 0;
  const out = Buffer.alloc(paxLength + BLOCK + (sparseMap ? sparseMap.length : 0));
  if (records.length > 0) {
    writePaxHeaderBlock(out.subarray(0, BLOCK), tarPath, mtime.sec, bodyLength);
    let p = BLOCK;
    for (const r of records) p += typeof r === "string" ? out.write(r, p, "latin1") : r.copy(out, p);
  }
  block.copy(out, paxLength);
  if (sparseMap) sparseMap.copy(out, paxLength + BLOCK);
  return out;
}

/** The ustar block is built here and copied out: one reused buffer instead of one per entry. */
let scratch: Buffer | undefined;
function scratchBlock(): Buffer {
  scratch ??= Buffer.alloc(BLOCK);
  scratch.fill(0);
  return scratch;
}

/** Convenience object with the same operations, for code that swaps format codecs. */
export const tarWriter = {
  header: encodeHeader,
  contentSize,
  padding,
  end: endOfArchive,
};

// ---------------------------------------------------------------------------------------

function validate(entry: Entry): void {
  if (entry.type === "socket") throw new RangeError("tar cannot store sockets");
  if (!(entry.type in TYPEFLAG)) throw new RangeError(`unknown entry type ${String(entry.type)}`);
  checkName("path", entry.path);
  if (entry.type === "symlink" || entry.type === "hardlink") {
    if (!entry.linkTarget) throw new RangeError(`${entry.type} without linkTarget`);
    checkName("linkTarget", entry.linkTarget);
  }
  for (const key of ["size", "uid", "gid"] as const) checkCount(key, entry[key]);
  checkTime("mtime", entry.mtime);
  if (entry.atime) checkTime("atime", entry.atime);
  if (entry.ctime) checkTime("ctime", entry.ctime);
  for (const key of ["devMajor", "devMinor"] as const) {
    const v = entry[key];
    if (v === undefined) continue;
    checkCount(key, v);
    // Linux device numbers are 12 + 20 bits and always fit; no pax keyword exists for them.
    if (v > MAX_OCTAL_7) throw new RangeError(`${key} ${v} does not fit a ustar header`);
  }
  for (const [name] of entry.xattrs ?? []) {
    if (name.length === 0 || name.includes(0)) throw new RangeError("bad xattr name");
  }
  if (entry.type === "file" && entry.sparse) {
    let end = 0;
    for (const run of entry.sparse) {
      checkCount("sparse offset", run.offset);
      checkCount("sparse length", run.length);
      if (run.offset < end || run.offset + run.length > entry.size) {
        throw new RangeError("sparse runs must be sorted, disjoint and inside the file");
      }
      end = run.offset + run.length;
    }
  }
}

function checkName(what: string, name: Buffer): void {
  if (name.length === 0) throw new RangeError(`empty ${what}`);
  if (name.includes(0)) throw new RangeError(`${what} contains a NUL byte`);
}

function checkCount(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`bad ${what}: ${n}`);
}

function checkTime(what: string, t: { sec: number; nsec: number }): void {
  if (!Number.isSafeInteger(t.sec) || !Number.isInteger(t.nsec) || t.nsec < 0 || t.nsec > 999_999_999) {
    throw new RangeError(`bad ${what}: ${t.sec}.${t.nsec}`);
  }
}

function clampTime(sec: number): number {
  return Math.min(Math.max(sec, 0), MAX_OCTAL_11);
}

function withTrailingSlash(path: Buffer): Buffer {
  return path[path.length - 1] === SLASH ? path : Buffer.concat([path, Buffer.from("/")]);
}

/**
 * Put `name` into the ustar name (+ prefix) fields if it fits. Returns false (and stores a
 * truncated name, which pax-aware readers ignore) if it does not.
 */
function placeName(block: Buffer, name: Buffer): boolean {
  if (name.length <= F.name[1]) {
    writeBytes(block, F.name, name);
    return true;
  }
  // Split at a "/" so that prefix <= 155 bytes and the rest is 1..100 bytes.
  const first = Math.max(1, name.length - F.name[1] - 1);
  const last = Math.min(F.prefix[1], name.length - 2);
  for (let i = first; i <= last; i++) {
    if (name[i] !== SLASH) continue;
    writeBytes(block, F.prefix, name.subarray(0, i));
    writeBytes(block, F.name, name.subarray(i + 1));
    return true;
  }
  writeBytes(block, F.name, name.subarray(0, F.name[1]));
  return false;
}

/** The last path component (ignoring a trailing "/"), used for stand-in names. */
function baseName(path: Buffer): { dir: Buffer; base: Buffer } {
  const end = path[path.length - 1] === SLASH ? path.length - 1 : path.length;
  const slash = path.lastIndexOf(SLASH, end - 1);
  return { dir: path.subarray(0, slash + 1), base: path.subarray(slash + 1, end) };
}

/** GNU tar's "%d/GNUSparseFile.%p/%f" with a fixed 0 for the pid (it only has to be unique-ish). */
function sparseStandIn(path: Buffer): Buffer {
  const { dir, base } = baseName(path);
  const standIn = Buffer.concat([dir, Buffer.from("GNUSparseFile.0/"), base]);
  if (standIn.length <= F.name[1] + 1 + F.prefix[1]) return standIn;
  return Buffer.concat([Buffer.from("GNUSparseFile.0/"), base]).subarray(0, F.name[1]);
}

const PAX_DIR = Buffer.from("PaxHeaders/");

/** Fills `block` (zeros) with the "x" header of a pax body of `bodyLength` bytes. */
function writePaxHeaderBlock(block: Buffer, path: Buffer, mtimeSec: number, bodyLength: number): void {
  // name = "PaxHeaders/" + the base name, cut at the field's 100 bytes.
  const { base } = baseName(path);
  PAX_DIR.copy(block, F.name[0]);
  base.copy(block, F.name[0] + PAX_DIR.length, 0, Math.max(0, F.name[1] - PAX_DIR.length));
  writeOctal(block, F.mode, 0o644);
  writeOctal(block, F.uid, 0);
  writeOctal(block, F.gid, 0);
  writeOctal(block, F.size, bodyLength);
  writeOctal(block, F.mtime, clampTime(mtimeSec));
  block[F.typeflag[0]] = 0x78; // "x"
  writeMagic(block); // uname, gname, devmajor, devminor stay NUL, as GNU tar leaves them
  writeChecksum(block);
}

/**
 * GNU sparse 1.0 map: decimal text "count\n" then "offset\nlength\n" per run, padded to a
 * block; it is the start of the member data. When the file ends in a hole GNU tar adds a
 * final zero-length run at the end offset, and its extractor relies on it to set the file
 * size, so we add it too.
 */
function encodeSparseMap(entry: Entry): Buffer {
  const runs = entry.sparse!.filter((r) => r.length > 0);
  const last = runs[runs.length - 1];
  const lastEnd = last ? last.offset + last.length : 0;
  if (lastEnd < entry.size || runs.length === 0) runs.push({ offset: entry.size, length: 0 });
  let text = `${runs.length}\n`;
  for (const r of runs) text += `${r.offset}\n${r.length}\n`;
  const map = Buffer.alloc(text.length + paddingSize(text.length));
  map.write(text, 0, "latin1");
  return map;
}
