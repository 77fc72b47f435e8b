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
import { type Entry, type EntryType, type Timespec, storedSize } from "../entry.ts";
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
  const h = prepareHeader(entry);
  const out = Buffer.alloc(h.length);
  assemble(h, out, 0);
  return out;
}

/**
 * encodeHeader's bytes written into `target`, right-aligned so that they end at `end` (the
 * content follows there): the length written, or -1 (nothing written) when they take more
 * than `end` bytes. The bytes before the header are left as they are.
 */
export function encodeHeaderInto(entry: Entry, target: Buffer, end: number): number {
  const plain = writePlainHeader(entry, target, end);
  if (plain >= 0) return plain;
  const h = prepareHeader(entry);
  if (h.length > end) return -1;
  const at = end - h.length;
  target.fill(0, at, end);
  assemble(h, target, at);
  return h.length;
}

interface PreparedHeader {
  /** The ustar block (the shared scratch block: assemble before the next prepareHeader). */
  block: Buffer;
  records: Array<Buffer | string>;
  bodyLength: number;
  paxLength: number;
  sparseMap?: Buffer;
  tarPath: Buffer;
  mtimeSec: number;
  length: number;
}

function prepareHeader(entry: Entry): PreparedHeader {
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

  // POSIX: hdrcharset=BINARY says the names below are raw bytes, not UTF-8. libarchive
  // needs it to accept such names; GNU tar 1.34 ignores it (with a warning) and uses the
  // raw bytes anyway, which is what we want.
  if (binaryNames) records.unshift(encodeRecord("hdrcharset", Buffer.from("BINARY", "latin1")));
  let bodyLength = 0;
  for (const r of records) bodyLength += r.length; // strings are ASCII: one byte per char
  const paxLength = records.length > 0 ? BLOCK + bodyLength + paddingSize(bodyLength) : 0;
  const length = paxLength + BLOCK + (sparseMap ? sparseMap.length : 0);
  return { block, records, bodyLength, paxLength, sparseMap, tarPath, mtimeSec: mtime.sec, length };
}

/** [pax block, pax body, padding], ustar block, [sparse map] into `out` at `at` (zeros there). */
function assemble(h: PreparedHeader, out: Buffer, at: number): void {
  if (h.records.length > 0) {
    writePaxHeaderBlock(out.subarray(at, at + BLOCK), h.tarPath, h.mtimeSec, h.bodyLength);
    let p = at + BLOCK;
    for (const r of h.records) p += typeof r === "string" ? out.write(r, p, "latin1") : r.copy(out, p);
  }
  h.block.copy(out, at + h.paxLength);
  if (h.sparseMap) h.sparseMap.copy(out, at + h.paxLength + BLOCK);
}

// ---------------------------------------------------------------------------------------
// The common case, written in place. A tree of small files is mostly entries whose header is
// a ustar block and, at most, a pax block of times: this writes exactly the bytes
// encodeHeader would (test/unit/formats/tar/plain-header.test.ts holds it to that), with
// plain stores instead of Buffer methods, each of which costs a native call (under Bun about
// as much as the rest of a header).

const PAX_NAME = [..."PaxHeaders/"].map((c) => c.charCodeAt(0));
const MAGIC = [..."ustar\u000000"].map((c) => c.charCodeAt(0));
const KEY_MTIME = [..."mtime="].map((c) => c.charCodeAt(0));
const KEY_ATIME = [..."atime="].map((c) => c.charCodeAt(0));
const KEY_CTIME = [..."ctime="].map((c) => c.charCodeAt(0));

/**
 * Writes the header of a "plain" entry so that it ends at `end` of `out`, and returns its
 * length; -1 (nothing written) for anything else: a name or link target longer than its
 * ustar field, a name that needs hdrcharset, big ids or sizes, times before the epoch or past
 * the octal field, xattrs, sparse maps, listings, sockets, NUL bytes.
 */
export function writePlainHeader(entry: Entry, out: Buffer, end: number): number {
  const type = entry.type;
  if (type === "socket" || entry.xattrs?.length || (type === "directory" && entry.dumpdir) || (type === "file" && entry.sparse)) return -1;
  const path = entry.path;
  const dirSlash = type === "directory" && path[path.length - 1] !== SLASH ? 1 : 0;
  if (path.length === 0 || path.length + dirSlash > F.name[1] || !noNul(path)) return -1;
  const link = type === "symlink" || type === "hardlink" ? entry.linkTarget : undefined;
  if ((type === "symlink" || type === "hardlink") && (!link || link.length === 0 || link.length > F.linkname[1] || !noNul(link))) return -1;
  const size = contentSize(entry);
  if (!plainCount(size, MAX_OCTAL_11) || !plainCount(entry.uid, MAX_OCTAL_7) || !plainCount(entry.gid, MAX_OCTAL_7)) return -1;
  if (!plainCount(entry.mode, Infinity)) return -1;
  const { mtime, atime, ctime } = entry;
  if (!plainTime(mtime) || mtime.sec > MAX_OCTAL_11 || (atime && !plainTime(atime)) || (ctime && !plainTime(ctime))) return -1;
  if ((entry.uname && entry.uname.length >= F.uname[1]) || (entry.gname && entry.gname.length >= F.gname[1])) return -1;
  const isDevice = type === "chardev" || type === "blockdev";
  const major = isDevice ? (entry.devMajor ?? 0) : 0;
  const minor = isDevice ? (entry.devMinor ?? 0) : 0;
  if (!plainCount(major, MAX_OCTAL_7) || !plainCount(minor, MAX_OCTAL_7)) return -1;

  const mLen = mtime.nsec !== 0 ? timeRecordLength(mtime) : 0;
  const aLen = atime ? timeRecordLength(atime) : 0;
  const cLen = ctime ? timeRecordLength(ctime) : 0;
  const body = mLen + aLen + cLen;
  const paxLength = body > 0 ? BLOCK + body + paddingSize(body) : 0;
  const length = paxLength + BLOCK;
  if (length > end) return -1;
  const at = end - length;
  Uint8Array.prototype.fill.call(out, 0, at, end);

  // Each store below adds its bytes to the block's sum: the checksum needs no second pass.
  if (body > 0) {
    // The x block: "PaxHeaders/" + the base name, cut at 100 bytes.
    let n = at;
    let sum = MAGIC_SUM + PAX_NAME_SUM + 0x78; // "x"
    for (let i = 0; i < PAX_NAME.length; i++) out[n++] = PAX_NAME[i]!;
    const stop = path[path.length - 1] === SLASH ? path.length - 1 : path.length;
    let from = stop - 1;
    while (from >= 0 && path[from] !== SLASH) from--;
    for (let i = from + 1; i < stop && n < at + F.name[1]; i++) sum += out[n++] = path[i]!;
    sum += octal(out, at + F.mode[0], F.mode[1], 0o644);
    sum += octal(out, at + F.uid[0], F.uid[1], 0);
    sum += octal(out, at + F.gid[0], F.gid[1], 0);
    sum += octal(out, at + F.size[0], F.size[1], body);
    sum += octal(out, at + F.mtime[0], F.mtime[1], mtime.sec);
    out[at + F.typeflag[0]] = 0x78;
    magic(out, at);
    checksum(out, at, sum);
    let p = at + BLOCK;
    if (mLen) p = timeRecord(out, p, mLen, KEY_MTIME, mtime);
    if (aLen) p = timeRecord(out, p, aLen, KEY_ATIME, atime!);
    if (cLen) timeRecord(out, p, cLen, KEY_CTIME, ctime!);
  }

  const u = at + paxLength;
  const typeflag = TYPEFLAG[type];
  let sum = MAGIC_SUM + typeflag;
  for (let i = 0; i < path.length; i++) sum += out[u + i] = path[i]!;
  if (dirSlash) sum += out[u + path.length] = SLASH;
  if (link) for (let i = 0; i < link.length; i++) sum += out[u + F.linkname[0] + i] = link[i]!;
  sum += octal(out, u + F.size[0], F.size[1], size);
  sum += octal(out, u + F.mode[0], F.mode[1], entry.mode & 0o7777);
  sum += octal(out, u + F.uid[0], F.uid[1], entry.uid);
  sum += octal(out, u + F.gid[0], F.gid[1], entry.gid);
  sum += octal(out, u + F.mtime[0], F.mtime[1], mtime.sec);
  out[u + F.typeflag[0]] = typeflag;
  magic(out, u);
  const { uname, gname } = entry;
  if (uname) for (let i = 0; i < uname.length; i++) sum += out[u + F.uname[0] + i] = uname[i]!;
  if (gname) for (let i = 0; i < gname.length; i++) sum += out[u + F.gname[0] + i] = gname[i]!;
  sum += octal(out, u + F.devmajor[0], F.devmajor[1], major);
  sum += octal(out, u + F.devminor[0], F.devminor[1], minor);
  checksum(out, u, sum);
  return length;
}

const MAGIC_SUM = MAGIC.reduce((a, c) => a + c, 0);
const PAX_NAME_SUM = PAX_NAME.reduce((a, c) => a + c, 0);

function noNul(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] === 0) return false;
  return true;
}

function plainCount(n: number, max: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n <= max;
}

function plainTime(t: Timespec): boolean {
  return Number.isSafeInteger(t.sec) && t.sec >= 0 && Number.isInteger(t.nsec) && t.nsec >= 0 && t.nsec <= 999_999_999;
}

/** As writeOctal: len - 1 octal digits and a NUL, at `off`; returns the sum of the bytes. */
function octal(out: Buffer, off: number, len: number, value: number): number {
  let sum = 0;
  let i = off + len - 2;
  let v = value;
  // Above 2^31 (sizes past 2 GiB, times past 2038) the low digits in floating point first.
  for (; v > 0x7fffffff && i >= off; i--) {
    const d = 0x30 + (v % 8);
    out[i] = d;
    sum += d;
    v = Math.floor(v / 8);
  }
  for (; i >= off; i--) {
    const d = 0x30 | (v & 7);
    out[i] = d;
    sum += d;
    v >>>= 3;
  }
  out[off + len - 1] = 0;
  return sum;
}

function magic(out: Buffer, block: number): void {
  for (let i = 0; i < MAGIC.length; i++) out[block + F.magic[0] + i] = MAGIC[i]!;
}

/** As writeChecksum, given the sum of every byte of the block but the checksum field. */
function checksum(out: Buffer, block: number, sum: number): void {
  const cs = block + F.chksum[0];
  octal(out, cs, 7, sum + 8 * 0x20);
  out[cs + 7] = 0x20;
}

function decimalDigits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = n <= 0x7fffffff ? (n / 10) | 0 : Math.floor(n / 10);
    d++;
  }
  return d;
}

/** The fraction of formatTimeText: nine digits less the trailing zeros (nsec > 0). */
function fractionDigits(nsec: number): number {
  let d = 9;
  while (nsec % 10 === 0) {
    nsec = (nsec / 10) | 0;
    d--;
  }
  return d;
}

/** "<len> key=<sec>[.<fraction>]\n" for a time of 0 or more seconds: its length. */
function timeRecordLength(t: Timespec): number {
  const rest = 6 + decimalDigits(t.sec) + (t.nsec === 0 ? 0 : 1 + fractionDigits(t.nsec)) + 2; // "key=", value, " ", "\n"
  const digits = rest + 2 <= 99 ? 2 : 3; // 11-digit seconds and nine fraction digits: 31 bytes
  return rest + digits;
}

function timeRecord(out: Buffer, p: number, len: number, key: number[], t: Timespec): number {
  p = decimalAt(out, p, len);
  out[p++] = 0x20;
  for (let i = 0; i < key.length; i++) out[p++] = key[i]!;
  p = decimalAt(out, p, t.sec);
  if (t.nsec !== 0) {
    out[p++] = 0x2e; // "."
    let frac = t.nsec;
    let digits = 9;
    while (frac % 10 === 0) {
      frac = (frac / 10) | 0;
      digits--;
    }
    for (let i = digits - 1; i >= 0; i--) {
      out[p + i] = 0x30 + (frac % 10);
      frac = (frac / 10) | 0;
    }
    p += digits;
  }
  out[p++] = 0x0a;
  return p;
}

function decimalAt(out: Buffer, p: number, n: number): number {
  const d = decimalDigits(n);
  for (let i = d - 1; i >= 0; i--) {
    const q = n <= 0x7fffffff ? (n / 10) | 0 : Math.floor(n / 10);
    out[p + i] = 0x30 + (n - q * 10);
    n = q;
  }
  return p + d;
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
