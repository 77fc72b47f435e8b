/**
 * Turning pax records (global "g" ones, then the entry's own "x" ones, in stream order) into
 * the values that override the ustar fields. Knows the POSIX keywords, star's SCHILY.*,
 * libarchive's LIBARCHIVE.xattr.* and GNU tar's GNU.sparse.* (versions 0.0, 0.1 and 1.0).
 */
import type { DataRun, Timespec } from "../entry.ts";
import { ACL_KEYWORDS, aclTextToXattr, type AclNameResolver } from "./acl.ts";
import {
  XATTR_PREFIX,
  type PaxRecord,
  parseDecimal,
  parseTime,
  xattrNameFromKeyword,
} from "./pax.ts";

export interface PaxValues {
  path?: Buffer;
  linkpath?: Buffer;
  size?: number;
  uid?: number;
  gid?: number;
  uname?: Buffer;
  gname?: Buffer;
  mtime?: Timespec;
  atime?: Timespec;
  ctime?: Timespec;
  devmajor?: number;
  devminor?: number;
  /** GNU tar's directory listing of an incremental (raw bytes, NUL-separated). */
  dumpdir?: Buffer;
  /** Keyed by the name's latin1 string so a later record for the same name replaces it. (Made on first use: most entries have none.) */
  xattrs?: Map<string, Buffer>;
  /** libarchive writes each xattr twice (LIBARCHIVE.* and SCHILY.*); these are used only as a fallback. */
  libarchiveXattrs?: Map<string, Buffer>;
  /** GNU sparse records, made on first use. */
  sparse?: {
    major?: number;
    minor?: number;
    name?: Buffer;
    realsize?: number;
    /** 0.1 (GNU.sparse.map) or 0.0 (GNU.sparse.offset/numbytes pairs). */
    runs?: DataRun[];
    pendingOffset?: number;
  };
}

export interface PaxLimits {
  maxNameLength: number;
  maxSparseRuns: number;
  resolveAclName?: AclNameResolver;
}

/** A value the reader cannot accept; the reader adds the stream offset. */
export class PaxValueError extends Error {}

export function emptyPaxValues(): PaxValues {
  return {};
}

export function applyRecords(v: PaxValues, records: PaxRecord[], limits: PaxLimits): void {
  for (const [key, value] of records) applyRecord(v, key, value, limits);
}

function applyRecord(v: PaxValues, key: string, value: Buffer, limits: PaxLimits): void {
  // POSIX: an empty value removes an earlier (global) value for the keyword.
  const clear = value.length === 0;
  if (key.startsWith(XATTR_PREFIX)) {
    const xname = xattrNameFromKeyword(key).toString("latin1");
    // An xattr may legitimately have an empty value, so no "clear" meaning here.
    (v.xattrs ??= new Map()).set(xname, value);
    return;
  }
  const aclName = ACL_KEYWORDS[key];
  if (aclName !== undefined) {
    // Text ACL -> the binary xattr Linux uses; one we cannot resolve is dropped, not invented.
    const bin = clear ? undefined : aclTextToXattr(value.toString("utf8"), limits.resolveAclName);
    if (bin) (v.xattrs ??= new Map()).set(aclName, bin);
    return;
  }
  if (key.startsWith("LIBARCHIVE.xattr.")) {
    const xname = decodeURIComponentBytes(key.slice("LIBARCHIVE.xattr.".length));
    (v.libarchiveXattrs ??= new Map()).set(xname, Buffer.from(value.toString("latin1"), "base64"));
    return;
  }
  switch (key) {
    case "path":
      v.path = name(key, value, limits);
      return;
    case "linkpath":
      v.linkpath = name(key, value, limits);
      return;
    case "size":
      v.size = num(key, value);
      return;
    case "uid":
      v.uid = num(key, value);
      return;
    case "gid":
      v.gid = num(key, value);
      return;
    case "uname":
      v.uname = name(key, value, limits);
      return;
    case "gname":
      v.gname = name(key, value, limits);
      return;
    case "mtime":
      v.mtime = time(key, value);
      return;
    case "atime":
      v.atime = time(key, value);
      return;
    case "ctime":
      v.ctime = time(key, value);
      return;
    case "SCHILY.devmajor":
      v.devmajor = num(key, value);
      return;
    case "SCHILY.devminor":
      v.devminor = num(key, value);
      return;
    case "GNU.dumpdir":
      v.dumpdir = clear ? undefined : value;
      return;
    case "GNU.sparse.major":
      sparseOf(v).major = num(key, value);
      return;
    case "GNU.sparse.minor":
      sparseOf(v).minor = num(key, value);
      return;
    case "GNU.sparse.name":
      sparseOf(v).name = name(key, value, limits);
      return;
    case "GNU.sparse.realsize":
    case "GNU.sparse.size":
      sparseOf(v).realsize = num(key, value);
      return;
    case "GNU.sparse.map":
      sparseOf(v).runs = clear ? undefined : parseSparseMap01(value, limits);
      return;
    case "GNU.sparse.offset":
      sparseOf(v).pendingOffset = num(key, value);
      return;
    case "GNU.sparse.numbytes": {
      const length = checked(key, parseDecimal(value));
      const sparse = sparseOf(v);
      const offset = sparse.pendingOffset;
      if (offset === undefined) throw new PaxValueError("GNU.sparse.numbytes without offset");
      const runs = (sparse.runs ??= []);
      if (runs.length >= limits.maxSparseRuns) throw new PaxValueError("too many sparse runs");
      runs.push({ offset, length });
      sparse.pendingOffset = undefined;
      return;
    }
    default:
      // hdrcharset, charset, comment, GNU.sparse.numblocks, vendor keywords: nothing to do.
      // We never decode names, so hdrcharset=BINARY needs no action.
      return;
  }
}

// Record values by kind; an empty value (undefined here) removes what a global record set.
function name(key: string, value: Buffer, limits: PaxLimits): Buffer | undefined {
  if (value.length === 0) return undefined;
  if (value.length > limits.maxNameLength) throw new PaxValueError(`${key} is ${value.length} bytes, over the ${limits.maxNameLength} limit`);
  return value;
}

function num(key: string, value: Buffer): number | undefined {
  return value.length === 0 ? undefined : checked(key, parseDecimal(value));
}

function time(key: string, value: Buffer): Timespec | undefined {
  return value.length === 0 ? undefined : checked(key, parseTime(value));
}

function sparseOf(v: PaxValues): NonNullable<PaxValues["sparse"]> {
  return (v.sparse ??= {});
}

function checked<T>(key: string, v: T | undefined): T {
  if (v === undefined) throw new PaxValueError(`malformed value for pax keyword ${key}`);
  return v;
}

/** GNU sparse 0.1: "offset,length,offset,length,...". */
function parseSparseMap01(value: Buffer, limits: PaxLimits): DataRun[] {
  const parts = value.toString("latin1").split(",");
  if (parts.length % 2 !== 0) throw new PaxValueError("GNU.sparse.map has an odd number of values");
  if (parts.length / 2 > limits.maxSparseRuns) throw new PaxValueError("too many sparse runs");
  const runs: DataRun[] = [];
  for (let i = 0; i < parts.length; i += 2) {
    const offset = parseDecimal(Buffer.from(parts[i]!, "latin1"));
    const length = parseDecimal(Buffer.from(parts[i + 1]!, "latin1"));
    if (offset === undefined || length === undefined) throw new PaxValueError("malformed GNU.sparse.map");
    runs.push({ offset, length });
  }
  return runs;
}

/** libarchive percent-encodes xattr names; decode to bytes (as a latin1 string). */
function decodeURIComponentBytes(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}
