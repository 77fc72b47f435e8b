/**
 * Extended attributes on a dump tape: one ext2 EA block per inode (spec 6.7).
 * Names lose their namespace prefix for a numeric index; POSIX ACLs are stored in the
 * ext3 on-disk form (version 1), not the xattr form (version 2) that getxattr returns.
 */
import { Buffer } from "node:buffer";

const EA_BLOCK_MAGIC = 0xea020000;
/** In-inode EA layout that Linux dump writes for ext4's in-inode attributes. */
const EA_IBODY_MAGIC = 0xea020001;
const BLOCK_HEADER = 32;
const ENTRY_FIXED = 16;

const ACL_ACCESS = "system.posix_acl_access";
const ACL_DEFAULT = "system.posix_acl_default";
/** Index -> prefix. Indexes 2 and 3 are whole names (the stored name is empty). */
const PREFIXES: Array<[index: number, prefix: string]> = [
  [1, "user."],
  [2, ACL_ACCESS],
  [3, ACL_DEFAULT],
  [4, "trusted."],
  [5, "lustre."],
  [6, "security."],
];

const ACL_XATTR_VERSION = 2;
const ACL_EXT_VERSION = 1;
const ACL_USER = 0x02;
const ACL_GROUP = 0x08;
const ACL_UNDEFINED_ID = 0xffffffff;

export type Xattr = [name: Buffer, value: Buffer];

function entryLength(nameLen: number): number {
  return (ENTRY_FIXED + nameLen + 3) & ~3;
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** Split a full xattr name into (index, stored name), or undefined for a namespace restore rejects. */
export function splitName(name: Buffer): { index: number; suffix: Buffer } | undefined {
  const text = name.toString("latin1");
  for (const [index, prefix] of PREFIXES) {
    if (index === 2 || index === 3) {
      if (text === prefix) return { index, suffix: Buffer.alloc(0) };
    } else if (text.startsWith(prefix) && text.length > prefix.length) {
      return { index, suffix: name.subarray(prefix.length) };
    }
  }
  return undefined;
}

/** getxattr form (v2: 8-byte entries) -> ext3 on-disk form (v1: ids only for USER/GROUP). */
export function aclXattrToDisk(value: Buffer): Buffer | undefined {
  if (value.length < 4 || (value.length - 4) % 8 !== 0) return undefined;
  if (value.readUInt32LE(0) !== ACL_XATTR_VERSION) return undefined;
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeUInt32LE(ACL_EXT_VERSION, 0);
  parts.push(head);
  for (let p = 4; p < value.length; p += 8) {
    const tag = value.readUInt16LE(p);
    const withId = tag === ACL_USER || tag === ACL_GROUP;
    const e = Buffer.alloc(withId ? 8 : 4);
    e.writeUInt16LE(tag, 0);
    e.writeUInt16LE(value.readUInt16LE(p + 2), 2);
    if (withId) e.writeUInt32LE(value.readUInt32LE(p + 4), 4);
    parts.push(e);
  }
  return Buffer.concat(parts);
}

/** ext3 on-disk ACL (v1) -> getxattr form (v2), as restore does before lsetxattr. */
export function aclDiskToXattr(value: Buffer): Buffer | undefined {
  if (value.length < 4 || value.readUInt32LE(0) !== ACL_EXT_VERSION) return undefined;
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeUInt32LE(ACL_XATTR_VERSION, 0);
  parts.push(head);
  let p = 4;
  while (p < value.length) {
    if (p + 4 > value.length) return undefined;
    const tag = value.readUInt16LE(p);
    const withId = tag === ACL_USER || tag === ACL_GROUP;
    if (withId && p + 8 > value.length) return undefined;
    const e = Buffer.alloc(8);
    e.writeUInt16LE(tag, 0);
    e.writeUInt16LE(value.readUInt16LE(p + 2), 2);
    e.writeUInt32LE(withId ? value.readUInt32LE(p + 4) : ACL_UNDEFINED_ID, 4);
    parts.push(e);
    p += withId ? 8 : 4;
  }
  return Buffer.concat(parts);
}

/** One attribute ready for the EA block: index, stored name and stored (converted) value. */
export interface EaItem {
  index: number;
  suffix: Buffer;
  value: Buffer;
}

/** Bytes an item adds to the block: its entry plus its 4-aligned value. */
export function itemCost(item: EaItem): number {
  return entryLength(item.suffix.length) + pad4(item.value.length);
}

/** Bytes of a block holding no attributes: header plus the 4-byte end-of-list marker. */
export const EMPTY_BLOCK_SIZE = BLOCK_HEADER + 4;

/** Lay out an ext2 EA block: header, entry list, 4 zero bytes, then the values in order. */
export function encodeEaBlock(items: EaItem[]): Buffer {
  let size = EMPTY_BLOCK_SIZE;
  for (const item of items) size += itemCost(item);
  const buf = Buffer.alloc(size);
  buf.writeUInt32LE(EA_BLOCK_MAGIC, 0);
  buf.writeUInt32LE(1, 4); // h_refcount
  buf.writeUInt32LE(1, 8); // h_blocks
  let entryPos = BLOCK_HEADER;
  let valuePos = BLOCK_HEADER + 4;
  for (const item of items) valuePos += entryLength(item.suffix.length);
  for (const item of items) {
    buf.writeUInt8(item.suffix.length, entryPos);
    buf.writeUInt8(item.index, entryPos + 1);
    buf.writeUInt16LE(valuePos, entryPos + 2);
    buf.writeUInt32LE(0, entryPos + 4); // e_value_inum
    buf.writeUInt32LE(item.value.length, entryPos + 8);
    item.suffix.copy(buf, entryPos + ENTRY_FIXED);
    item.value.copy(buf, valuePos);
    entryPos += entryLength(item.suffix.length);
    valuePos += pad4(item.value.length);
  }
  return buf;
}

/**
 * Parse one EA record (block or in-inode layout) into full names and xattr-form values.
 * Problems (unknown index, values outside the buffer) are returned, not thrown: the rest
 * of the inode is still usable.
 */
export function decodeEaBlock(buf: Buffer): { xattrs: Xattr[]; problems: string[] } {
  const xattrs: Xattr[] = [];
  const problems: string[] = [];
  if (buf.length < 4) return { xattrs, problems: ["EA record too short"] };
  const magic = buf.readUInt32LE(0);
  let pos: number;
  let base: number;
  if (magic === EA_BLOCK_MAGIC) {
    pos = BLOCK_HEADER;
    base = 0;
  } else if (magic === EA_IBODY_MAGIC) {
    pos = 4;
    base = 4;
  } else {
    return { xattrs, problems: [`bad EA magic 0x${magic.toString(16)}`] };
  }
  while (pos + 4 <= buf.length && buf.readUInt32LE(pos) !== 0) {
    if (pos + ENTRY_FIXED > buf.length) {
      problems.push("EA entry list runs past the record");
      break;
    }
    const nameLen = buf.readUInt8(pos);
    const index = buf.readUInt8(pos + 1);
    const valueOffs = buf.readUInt16LE(pos + 2);
    const valueInum = buf.readUInt32LE(pos + 4);
    const valueSize = buf.readUInt32LE(pos + 8);
    const suffix = buf.subarray(pos + ENTRY_FIXED, pos + ENTRY_FIXED + nameLen);
    pos += entryLength(nameLen);
    const prefix = PREFIXES.find(([i]) => i === index)?.[1];
    const start = base + valueOffs;
    if (prefix === undefined) {
      problems.push(`unknown EA name index ${index}`);
    } else if (valueInum !== 0) {
      problems.push(`EA ${prefix}${suffix.toString("latin1")} stored in an EA inode: not on tape`);
    } else if (suffix.length < nameLen || start + valueSize > buf.length) {
      problems.push(`EA ${prefix}${suffix.toString("latin1")} runs past the record`);
    } else {
      const name = Buffer.concat([Buffer.from(prefix, "latin1"), suffix]);
      let value: Buffer | undefined = Buffer.from(buf.subarray(start, start + valueSize));
      if (index === 2 || index === 3) {
        value = aclDiskToXattr(value);
        if (!value) problems.push(`malformed ACL in ${name.toString("latin1")}`);
      }
      if (value) xattrs.push([name, value]);
    }
  }
  return { xattrs, problems };
}
