/**
 * The nlist of DATA_START_RECOVER as it came on the wire rather than one object per entry.
 *
 * A million-entry nlist decoded as objects held six fields of Buffers and bigints per entry
 * (~370 bytes each, several times its wire size). Here the entries stay in their XDR bytes (a
 * view of the request record, which has to be held anyway) and one Uint32Array says where each
 * of an entry's four byte strings starts: 16 bytes an entry on top of its wire size, and no JS
 * object per entry. The u64s are read from the bytes when asked for.
 *
 * The same layout serves v4 (`name`) and v3 (`name3`, whose fields mean other things: see
 * wire-v3.ts): a layout names the fields in wire order. Encoding accepts an Nlist or an array
 * of plain entries (what our client and the tests send), and the codec's shape is that of an
 * array of the entry struct, so tools that walk the schemas (the fuzz target) see no change.
 */
import { toBuffer, XdrError, type Bytes, type Codec, type XdrReader, type XdrWriter } from "./codec.ts";

/** Field names in wire order: four byte strings, then two u64s. */
export interface NlistLayout {
  bytes: readonly [string, string, string, string];
  numbers: readonly [string, string];
}

/** Column numbers of the v4 fields (and of the v3 ones that sit in the same places). */
export const ORIGINAL_PATH = 0;
export const DESTINATION_PATH = 1;
export const NAME = 2;
export const OTHER_NAME = 3;
export const NODE = 0;
export const FH_INFO = 1;

export type ByteField = 0 | 1 | 2 | 3;
export type NumberField = 0 | 1;

const EMPTY = Buffer.alloc(0);
const MAX_U64 = 0xffff_ffff_ffff_ffffn;

/** XDR pads every opaque to a multiple of 4 bytes. */
function padded(len: number): number {
  return (len + 3) & ~3;
}

export class Nlist {
  readonly length: number;

  /**
   * `wire` holds the entries in XDR (each: four opaques, two u64s); field f of entry i starts
   * at `starts[4i + f]`, right after its length word.
   */
  constructor(
    readonly layout: NlistLayout,
    private readonly wire: Buffer,
    private readonly starts: Uint32Array,
  ) {
    this.length = starts.length / 4;
  }

  /** The length of a byte field, without making a view. */
  size(i: number, f: ByteField): number {
    return this.wire.readUInt32BE(this.starts[4 * i + f]! - 4);
  }

  /** A byte field of entry i: a view of the wire bytes (do not change it). */
  bytes(i: number, f: ByteField): Buffer {
    const start = this.starts[4 * i + f]!;
    const len = this.wire.readUInt32BE(start - 4);
    return len === 0 ? EMPTY : this.wire.subarray(start, start + len);
  }

  /** Whether a byte field holds a NUL byte. */
  hasNul(i: number, f: ByteField): boolean {
    return this.includes(i, f, 0);
  }

  /** Whether a byte field holds `byte`. */
  includes(i: number, f: ByteField, byte: number): boolean {
    const start = this.starts[4 * i + f]!;
    const end = start + this.wire.readUInt32BE(start - 4);
    for (let p = start; p < end; p++) if (this.wire[p] === byte) return true;
    return false;
  }

  /** The first byte of a byte field, or -1 when it is empty. */
  firstByte(i: number, f: ByteField): number {
    const start = this.starts[4 * i + f]!;
    return this.wire.readUInt32BE(start - 4) === 0 ? -1 : this.wire[start]!;
  }

  /**
   * Where a byte field's bytes are in `bytesOnWire` (its length is size()): for walking many
   * entries without making a view of each.
   */
  startOf(i: number, f: ByteField): number {
    return this.starts[4 * i + f]!;
  }

  number(i: number, f: NumberField): bigint {
    const last = this.starts[4 * i + 3]!;
    return this.wire.readBigUInt64BE(last + padded(this.wire.readUInt32BE(last - 4)) + 8 * f);
  }

  /** Entry i as a plain object named by the layout (for tests, logs and re-encoding). */
  entry(i: number): Record<string, Buffer | bigint> {
    const out: Record<string, Buffer | bigint> = {};
    this.layout.bytes.forEach((name, f) => (out[name] = this.bytes(i, f as ByteField)));
    this.layout.numbers.forEach((name, f) => (out[name] = this.number(i, f as NumberField)));
    return out;
  }

  /** Every entry as a plain object: for small lists only (one object per entry). */
  toArray(): Array<Record<string, Buffer | bigint>> {
    return Array.from({ length: this.length }, (_, i) => this.entry(i));
  }

  /** The entries' XDR bytes (without the count word), to re-encode the list as it is. */
  get bytesOnWire(): Buffer {
    return this.wire;
  }

  /** An Nlist of plain entries (strings or bytes for the byte fields). */
  static from(layout: NlistLayout, entries: ReadonlyArray<Record<string, unknown>>): Nlist {
    const b = new NlistBuilder(layout, entries.length);
    for (const e of entries) {
      const [p0, p1, p2, p3] = layout.bytes.map((name) => toBuffer(e[name] as Bytes));
      const [n0, n1] = layout.numbers.map((name) => e[name] as bigint);
      b.add(p0!, p1!, p2!, p3!, n0!, n1!);
    }
    return b.finish();
  }
}

/** Builds an Nlist entry by entry, writing its XDR into a growing buffer. */
export class NlistBuilder {
  private wire: Buffer;
  private used = 0;
  private readonly starts: Uint32Array;
  private count = 0;

  /** `expected` entries exactly; `bytesHint` bytes of names expected (grown if short). */
  constructor(
    private readonly layout: NlistLayout,
    private readonly expected: number,
    bytesHint = 64 * expected,
  ) {
    this.wire = Buffer.alloc(Math.max(bytesHint + 32 * expected, 64));
    this.starts = new Uint32Array(4 * expected);
  }

  add(f0: Buffer, f1: Buffer, f2: Buffer, f3: Buffer, n0: bigint, n1: bigint): void {
    if (this.count >= this.expected) throw new XdrError(`nlist builder: more than ${this.expected} entries`);
    for (const n of [n0, n1]) if (typeof n !== "bigint" || n < 0n || n > MAX_U64) throw new XdrError(`u64 out of range: ${String(n)}`);
    this.room(32 + padded(f0.length) + padded(f1.length) + padded(f2.length) + padded(f3.length));
    let k = 4 * this.count;
    for (const b of [f0, f1, f2, f3]) {
      this.wire.writeUInt32BE(b.length, this.used);
      this.starts[k++] = this.used + 4;
      b.copy(this.wire, this.used + 4);
      // The padding is zero: the buffer was zero-filled and is never written twice.
      this.used += 4 + padded(b.length);
    }
    this.wire.writeBigUInt64BE(n0, this.used);
    this.wire.writeBigUInt64BE(n1, this.used + 8);
    this.used += 16;
    this.count++;
  }

  /** The list, its buffer trimmed to what it holds. */
  finish(): Nlist {
    if (this.count !== this.expected) throw new XdrError(`nlist builder: ${this.count} of ${this.expected} entries`);
    const wire = this.used === this.wire.length ? this.wire : Buffer.from(this.wire.subarray(0, this.used));
    return new Nlist(this.layout, wire, this.starts);
  }

  private room(n: number): void {
    const need = this.used + n;
    if (need > 0xffff_ffff) throw new XdrError("nlist of more than 4 GiB");
    if (need <= this.wire.length) return;
    const grown = Buffer.alloc(Math.min(Math.max(need, 2 * this.wire.length), 0xffff_ffff));
    this.wire.copy(grown, 0, 0, this.used);
    this.wire = grown;
  }
}

/** js-xdr's reader, whose buffer and position the nlist decoder walks itself. */
interface ReaderState {
  _buffer: Buffer;
  _index: number;
  _length: number;
}

/**
 * Decodes `n` entries at the reader's position in place: checks each length against the end
 * and each padding for zeros (as js-xdr does), notes where each byte field starts, and
 * returns the entries as a view of the record. Nothing is copied or allocated per entry.
 */
function readEntries(r: XdrReader, layout: NlistLayout, n: number): Nlist {
  const st = r as unknown as ReaderState;
  const buf = st._buffer;
  const from = st._index;
  const end = st._length;
  const starts = new Uint32Array(4 * n);
  let p = from;
  for (let i = 0; i < n; i++) {
    for (let f = 0; f < 4; f++) {
      if (p + 4 > end) throw new XdrError(`nlist entry ${i} runs past the end`);
      const len = buf.readUInt32BE(p);
      p += 4;
      if (len > end - p) throw new XdrError(`opaque of ${len} bytes runs past the end`);
      starts[4 * i + f] = p - from;
      p += len;
      const pad = padded(len) - len;
      if (p + pad > end) throw new XdrError(`nlist entry ${i} runs past the end`);
      for (let k = 0; k < pad; k++) if (buf[p + k] !== 0) throw new XdrError("invalid padding");
      p += pad;
    }
    if (p + 16 > end) throw new XdrError(`nlist entry ${i} runs past the end`);
    p += 16;
  }
  st._index = p;
  return new Nlist(layout, buf.subarray(from, p), starts);
}

/**
 * The codec of an nlist (`item<>` for the entry struct `item`, whose fields are the layout's):
 * decodes to an Nlist, encodes an Nlist or an array of entries.
 */
export function nlistCodec(item: Codec<any>, layout: NlistLayout): Codec<Nlist | Array<Record<string, unknown>>> {
  return {
    read: (r) => {
      const n = r.readUInt32BE();
      if (n * 4 > r.remainingBytes()) throw new XdrError(`array of ${n} elements runs past the end`);
      return readEntries(r, layout, n);
    },
    write: (v, w: XdrWriter) => {
      w.writeUInt32BE(v.length);
      if (v instanceof Nlist) {
        const bytes = v.bytesOnWire;
        w.write(bytes, bytes.length); // already XDR, padded
        return;
      }
      // Plain entries: the entry struct's own checks (missing fields, u64 range) apply.
      for (const x of v) item.write(x, w);
    },
    zero: () => [],
    shape: { kind: "array", item },
  };
}
