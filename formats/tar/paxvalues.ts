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
  /** Keyed by the name's latin1 string so a later record for the same name replaces it. */
  xattrs: Map<string, Buffer>;
  /** libarchive writes each xattr twice (LIBARCHIVE.* and SCHILY.*); these are used only as a fallback. */
  libarchiveXattrs: Map<string, Buffer>;
  sparse: {
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
  return { xattrs: new Map(), libarchiveXattrs: new Map(), sparse: {} };
}

export function applyRecords(v: PaxValues, records: PaxRecord[], limits: PaxLimits): void {
  for (const [key, value] of records) applyRecord(v, key, value, limits);
}

function applyRecord(v: PaxValues, key: string, value: Buffer, limits: PaxLimits): void {
  // POSIX: an empty value removes an earlier (global) value for the keyword.
  const clear = value.length === 0;
  const name = (): Buffer | undefined => {
    if (clear) return undefined;
    if (value.length > limits.maxNameLength) {
      throw new PaxValueError(`${key} is ${value.length} bytes, over the ${limits.maxNameLength} limit`);
    }
    return value;
  };
  const num = (): number | undefined => (clear ? undefined : checked(key, parseDecimal(value)));
  const time = (): Timespec | undefined => (clear ? undefined : checked(key, parseTime(value)));

  if (key.startsWith(XATTR_PREFIX)) {
    const xname = xattrNameFromKeyword(key).toString("latin1");
    // An xattr may legitimately have an empty value, so no "clear" meaning here.
    v.xattrs.set(xname, value);
    return;
  }
  const aclName = ACL_KEYWORDS[key];
  if (aclName !== undefined) {
    // Text ACL -> the binary xattr Linux uses; one we cannot resolve is dropped, not invented.
    const bin = clear ? undefined : aclTextToXattr(value.toString("utf8"), limits.resolveAclName);
    if (bin) v.xattrs.set(aclName, bin);
    return;
  }
  if (key.startsWith("LIBARCHIVE.xattr.")) {
    const xname = decodeURIComponentBytes(key.slice("LIBARCHIVE.xattr.".length));
    v.libarchiveXattrs.set(xname, Buffer.from(value.toString("latin1"), "base64"));
    return;
  }
  switch (key) {
    case "path":
      v.path = name();
      return;
    case "linkpath":
      v.linkpath = name();
      return;
    case "size":
      v.size = num();
      return;
    case "uid":
      v.uid = num();
      return;
    case "gid":
      v.gid = num();
      return;
    case "uname":
      v.uname = name();
      return;
    case "gname":
      v.gname = name();
      return;
    case "mtime":
      v.mtime = time();
      return;
    case "atime":
      v.atime = time();
      return;
    case "ctime":
      v.ctime = time();
      return;
    case "SCHILY.devmajor":
      v.devmajor = num();
      return;
    case "SCHILY.devminor":
      v.devminor = num();
      return;
    case "GNU.dumpdir":
      v.dumpdir = clear ? undefined : value;
      return;
    case "GNU.sparse.major":
      v.sparse.major = num();
      return;
    case "GNU.sparse.minor":
      v.sparse.minor = num();
      return;
    case "GNU.sparse.name":
      v.sparse.name = name();
      return;
    case "GNU.sparse.realsize":
    case "GNU.sparse.size":
      v.sparse.realsize = num();
      return;
    case "GNU.sparse.map":
      v.sparse.runs = clear ? undefined : parseSparseMap01(value, limits);
      return;
    case "GNU.sparse.offset":
      v.sparse.pendingOffset = num();
      return;
    case "GNU.sparse.numbytes": {
      const length = checked(key, parseDecimal(value));
      if (v.sparse.pendingOffset === undefined) throw new PaxValueError("GNU.sparse.numbytes without offset");
      const runs = (v.sparse.runs ??= []);
      if (runs.length >= limits.maxSparseRuns) throw new PaxValueError("too many sparse runs");
      runs.push({ offset: v.sparse.pendingOffset, length });
      v.sparse.pendingOffset = undefined;
      return;
    }
    default:
      // hdrcharset, charset, comment, GNU.sparse.numblocks, vendor keywords: nothing to do.
      // We never decode names, so hdrcharset=BINARY needs no action.
      return;
  }
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
