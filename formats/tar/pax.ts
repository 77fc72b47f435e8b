/**
 * pax extended header records: "<length> <keyword>=<value>\n", where <length> counts the
 * whole record including its own digits. Because every record states its length, values are
 * raw bytes and may hold NUL or newline (xattr values do).
 */
import type { Timespec } from "../entry.ts";

export type PaxRecord = [key: string, value: Buffer];

/** Encode one record. The key is ASCII except for xattr names, which are passed as latin1. */
export function encodeRecord(key: string, value: Buffer): Buffer {
  const keyBytes = Buffer.from(key, "latin1");
  const rest = keyBytes.length + value.length + 3; // " ", "=", "\n"
  // The length prefix counts its own digits: grow the digit count until it is consistent.
  let digits = String(rest).length;
  while (String(rest + digits).length !== digits) digits++;
  const total = rest + digits;
  const out = Buffer.allocUnsafe(total);
  let p = out.write(`${total} `, 0, "latin1");
  p += keyBytes.copy(out, p);
  out[p++] = 0x3d; // "="
  p += value.copy(out, p);
  out[p] = 0x0a;
  return out;
}

/**
 * Split a pax header body into records. Keys are returned as latin1 strings so that xattr
 * names keep their exact bytes. Throws a plain Error with the offset inside `body`; the reader
 * wraps it with the stream offset.
 */
export function parseRecords(body: Buffer): PaxRecord[] {
  const records: PaxRecord[] = [];
  let pos = 0;
  while (pos < body.length) {
    let i = pos;
    let len = 0;
    while (i < body.length && body[i] !== 0x20) {
      const c = body[i]!;
      if (c < 0x30 || c > 0x39) throw new PaxSyntaxError("bad pax record length", pos);
      // Nine digits already exceed any header we accept; stop before the number grows.
      if (i - pos >= 9) throw new PaxSyntaxError("pax record length runs past the header", pos);
      len = len * 10 + (c - 0x30);
      i++;
    }
    // The shortest record is "<len> k=\n": a length below that would not move forward.
    if (i === pos || i >= body.length || len < i - pos + 4) throw new PaxSyntaxError("bad pax record length", pos);
    if (len > body.length - pos) {
      throw new PaxSyntaxError(`pax record length ${len} runs past the header`, pos);
    }
    const end = pos + len;
    if (body[end - 1] !== 0x0a) throw new PaxSyntaxError("pax record does not end in newline", pos);
    const eq = body.indexOf(0x3d, i + 1);
    if (eq < 0 || eq >= end - 1 || eq === i + 1) {
      throw new PaxSyntaxError("pax record without keyword=value", pos);
    }
    records.push([body.toString("latin1", i + 1, eq), copyOf(body, eq + 1, end - 1)]);
    pos = end;
  }
  return records;
}

/**
 * body[start, end) as a new buffer. Not a subarray: under Bun a view of a small, new buffer makes
 * the engine move that buffer's bytes out of its heap first, which cost more than the whole
 * record (a third of the reader's time per entry).
 */
function copyOf(body: Buffer, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  body.copy(out, 0, start, end);
  return out;
}

export class PaxSyntaxError extends Error {
  constructor(
    message: string,
    readonly at: number,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------
// Values

export function decimal(n: number): Buffer {
  return Buffer.from(String(n), "latin1");
}

/** Decimal unsigned integer, or undefined if the text is not one (or not exact in a double). */
export function parseDecimal(value: Buffer): number | undefined {
  if (value.length === 0 || value.length > 16) return undefined;
  let n = 0;
  for (const c of value) {
    if (c < 0x30 || c > 0x39) return undefined;
    n = n * 10 + (c - 0x30);
  }
  return n;
}

/**
 * A time as pax writes it: seconds, then a fraction with trailing zeros removed (GNU tar's
 * form). Negative times with a fraction are written as one signed decimal, so
 * {sec: -1000000001, nsec: 500000000} is "-1000000000.5".
 */
export function formatTime(t: Timespec): Buffer {
  return Buffer.from(formatTimeText(t), "latin1");
}

/** formatTime as a string (ASCII). */
export function formatTimeText(t: Timespec): string {
  if (t.nsec === 0) return String(t.sec);
  let sec = t.sec;
  let nsec = t.nsec;
  let sign = "";
  if (sec < 0) {
    sign = "-";
    sec = -(sec + 1);
    nsec = 1_000_000_000 - nsec;
  }
  // Nine digits, trailing zeros dropped (nsec > 0, so at least one digit stays).
  let digits = 9;
  while (nsec % 10 === 0) {
    nsec /= 10;
    digits--;
  }
  const frac = String(nsec);
  return `${sign}${sec}.${frac.length < digits ? "0".repeat(digits - frac.length) + frac : frac}`;
}

/**
 * encodeRecord for an ASCII key and value (times, sizes, ids), as a string: the writer puts it
 * straight into the header buffer, with no Buffer of its own (one per record was a measurable
 * part of a small file's cost).
 */
export function encodeTextRecord(key: string, value: string): string {
  const rest = key.length + value.length + 3;
  // The length counts its own digits: 8 + 1 = "9", 97 + 2 = "99", 996 + 3 = "999".
  let digits = rest <= 8 ? 1 : rest <= 97 ? 2 : rest <= 996 ? 3 : 4;
  while (String(rest + digits).length !== digits) digits++;
  return `${rest + digits} ${key}=${value}\n`;
}

/** Inverse of formatTime; accepts any number of fraction digits (extra ones are dropped). */
export function parseTime(value: Buffer): Timespec | undefined {
  // -?D{1,16}(.D*)? read byte by byte: every archived object has two or three of these, and a
  // regular expression over a string copy cost more than the rest of its header.
  const n = value.length;
  const negative = n > 0 && value[0] === 0x2d;
  let i = negative ? 1 : 0;
  let whole = 0;
  for (; i < n; i++) {
    const c = value[i]!;
    if (c < 0x30 || c > 0x39) break;
    whole = whole * 10 + (c - 0x30);
  }
  const digits = i - (negative ? 1 : 0);
  if (digits < 1 || digits > 16) return undefined;
  let nsec = 0;
  if (i < n) {
    if (value[i] !== 0x2e) return undefined;
    let scale = 0;
    for (i++; i < n; i++) {
      const c = value[i]!;
      if (c < 0x30 || c > 0x39) return undefined;
      if (scale < 9) {
        nsec = nsec * 10 + (c - 0x30);
        scale++;
      }
    }
    for (; scale < 9; scale++) nsec *= 10;
  }
  if (!negative) return { sec: whole, nsec };
  if (nsec === 0) return { sec: whole === 0 ? 0 : -whole, nsec: 0 };
  return { sec: -whole - 1, nsec: 1_000_000_000 - nsec };
}

// ---------------------------------------------------------------------------------------
// xattr names inside SCHILY.xattr keywords. A keyword ends at the first "=", so GNU tar
// escapes "=" as %3D and "%" as %25 (checked against GNU tar 1.34); we do the same.

export const XATTR_PREFIX = "SCHILY.xattr.";

export function xattrKeyword(name: Buffer): string {
  return XATTR_PREFIX + name.toString("latin1").replace(/%/g, "%25").replace(/=/g, "%3D");
}

export function xattrNameFromKeyword(key: string): Buffer {
  const raw = key.slice(XATTR_PREFIX.length).replace(/%(3D|25)/gi, (_m, hex: string) =>
    hex === "25" ? "%" : "=",
  );
  return Buffer.from(raw, "latin1");
}

/** Names in pax records are UTF-8 by default; anything else needs hdrcharset=BINARY. */
export function isUtf8(b: Buffer): boolean {
  for (const c of b) if (c >= 0x80) return strictUtf8(b);
  return true;
}

function strictUtf8(b: Buffer): boolean {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}
