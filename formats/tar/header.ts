/**
 * The 512-byte ustar header block: field layout and the numeric encodings tar uses
 * (octal text, and GNU's base-256 for values octal cannot hold).
 *
 * Layout facts come from POSIX.1-2017 "pax" (ustar interchange format) and the GNU tar
 * manual ("Tar Internals", old GNU sparse header).
 */

export const BLOCK = 512;

/** Offset and length of every ustar field. */
export const F = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

/** Old GNU header: where the sparse map and real size live (the prefix area is reused). */
export const GNU_SPARSE = {
  entries: 386, // 4 x (offset[12], numbytes[12])
  entryCount: 4,
  isExtended: 482,
  realSize: [483, 12],
  extEntryCount: 21, // in each 512-byte extension block
  extIsExtended: 504,
} as const;

/** Largest value each octal field can hold (digits = field length - 1, then NUL). */
export const MAX_OCTAL_7 = 0o7777777; // mode, uid, gid, devmajor, devminor
export const MAX_OCTAL_11 = 0o77777777777; // size, mtime (8 GiB - 1; year 2242)

const USTAR_MAGIC = Buffer.from("ustar\u000000", "latin1"); // magic "ustar\0" + version "00"

export type HeaderFlavor = "ustar" | "gnu" | "v7";

export function isZeroBlock(block: Buffer, start = 0): boolean {
  for (let i = start; i < start + BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** Zero bytes to append after `n` bytes of member data to reach the next block. */
export function paddingSize(n: number): number {
  const r = n % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

// ---------------------------------------------------------------------------------------
// Encoding (writer side). The writer only ever emits values that fit the octal fields and
// moves anything larger to pax records, so base-256 is never written.

/** Write `value` as zero-padded octal filling the field, NUL-terminated, as GNU tar does. */
export function writeOctal(block: Buffer, field: readonly [number, number], value: number): void {
  const [off, len] = field;
  // Digit by digit from the right: this runs ~10 times per header, and string formatting
  // was the writer's main cost for small files.
  let v = value;
  for (let i = off + len - 2; i >= off; i--) {
    block[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  if (v !== 0) throw new RangeError(`${value} does not fit a ${len}-byte octal field`);
  block[off + len - 1] = 0;
}

/** Copy bytes into a field; the caller has checked they fit. Unused bytes stay NUL. */
export function writeBytes(block: Buffer, field: readonly [number, number], value: Buffer): void {
  value.copy(block, field[0], 0, field[1]);
}

export function writeMagic(block: Buffer): void {
  USTAR_MAGIC.copy(block, F.magic[0]);
}

/** Sum of the header bytes with the checksum field counted as eight spaces. */
export function headerChecksum(block: Buffer, start = 0): number {
  const cs = start + F.chksum[0];
  let field = 0;
  for (let i = cs; i < cs + 8; i++) field += block[i]!;
  return byteSum(block, start) - field + 8 * 0x20;
}

/**
 * Sum of the 512 bytes of a block: the checksum is the writer's and reader's biggest per-header
 * cost. Four bytes per step with four independent sums; no typed-array view of the block, since
 * making one means materializing `block.buffer`, which costs more than the loop (Bun).
 */
function byteSum(block: Buffer, start: number): number {
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  for (let i = start; i < start + BLOCK; i += 4) {
    a += block[i]!;
    b += block[i + 1]!;
    c += block[i + 2]!;
    d += block[i + 3]!;
  }
  return a + b + c + d;
}

/** GNU tar writes the checksum as six octal digits, NUL, space. */
export function writeChecksum(block: Buffer): void {
  writeOctal(block, [F.chksum[0], 7], headerChecksum(block)); // six digits and a NUL
  block[F.chksum[0] + 7] = 0x20;
}

// ---------------------------------------------------------------------------------------
// Decoding (reader side).

/** Signed sum, for archives from old tars that summed `char` as signed. */
export function headerChecksumSigned(block: Buffer, start = 0): number {
  let sum = 8 * 0x20;
  const cs = start + F.chksum[0];
  for (let i = start; i < start + BLOCK; i++) {
    if (i >= cs && i < cs + 8) continue;
    const b = block[i]!;
    sum += b >= 0x80 ? b - 0x100 : b;
  }
  return sum;
}

/** "ustar" then NUL (POSIX), "  \0" (old GNU) or one space (some old tars); compared as bytes, no string per header. */
export function flavorOf(block: Buffer, start = 0): HeaderFlavor {
  const m = start + F.magic[0];
  if (block[m] !== 0x75 || block[m + 1] !== 0x73 || block[m + 2] !== 0x74 || block[m + 3] !== 0x61 || block[m + 4] !== 0x72) return "v7";
  const sixth = block[m + 5];
  if (sixth === 0x20 && block[m + 6] === 0x20 && block[m + 7] === 0) return "gnu";
  return sixth === 0 || sixth === 0x20 ? "ustar" : "v7";
}

/** Bytes of a text field up to the first NUL (a full field has no NUL). Copies; an empty field gives a new empty buffer. */
export function readBytes(block: Buffer, off: number, len: number): Buffer {
  let end = off;
  while (end < off + len && block[end] !== 0) end++;
  if (end === off) return Buffer.alloc(0);
  return Buffer.from(block.subarray(off, end));
}

/**
 * Parse a numeric field: octal text (leading spaces, ending at space or NUL), or GNU
 * base-256 when the high bit of the first byte is set (0x80 positive, 0xff negative,
 * two's complement). Returns `undefined` for text that is not a number; the caller turns
 * that into an error naming the field.
 */
export function readNumeric(block: Buffer, off: number, len: number): number | undefined {
  const first = block[off]!;
  if (first & 0x80) return readBase256(block, off, len);
  let i = off;
  const end = off + len;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return undefined;
    value = value * 8 + (c - 0x30);
    digits++;
  }
  // Anything after the terminator must be more terminators.
  for (; i < end; i++) if (block[i] !== 0 && block[i] !== 0x20) return undefined;
  if (digits > 17) return undefined; // 8^17 > 2^53: not exact any more
  return value;
}

function readBase256(block: Buffer, off: number, len: number): number | undefined {
  const first = block[off]!;
  const negative = (first & 0x40) !== 0;
  let v = BigInt(first & 0x7f);
  for (let i = off + 1; i < off + len; i++) v = (v << 8n) | BigInt(block[i]!);
  if (negative) v -= 1n << BigInt(len * 8 - 1);
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) return undefined;
  return Number(v);
}
