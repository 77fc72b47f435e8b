/**
 * Declarative XDR codecs for NDMP messages.
 *
 * The byte-level work (bounds checks, 4-byte padding and its zero check, big-endian integers)
 * is @stellar/js-xdr's XdrReader/XdrWriter. On top of them this file gives a few combinators
 * (struct, array, union) that produce *plain objects*, because js-xdr's own struct/union
 * classes are made for generated code and would leak accessor objects into every handler.
 *
 * Rules that matter for NDMP:
 * - enums are decoded as plain numbers and never rejected here: a DMA that sends an
 *   out-of-range enum must get ILLEGAL_ARGS_ERR from the handler, not a dropped connection;
 * - `str` decodes to a Buffer, because names are bytes (Linux paths need not be UTF-8);
 *   encoders accept a string (UTF-8) or bytes;
 * - u16 travels in 4 bytes, as XDR says for `u_short`;
 * - every codec can produce a zero value, so an error reply can carry a well-formed body.
 */
import * as jsXdrModule from "@stellar/js-xdr";

// js-xdr ships CommonJS (Node and Deno load it: named classes sit on the default export) and
// an ES module (Bun's bundler picks it: named exports). Take the classes from whichever is there.
const loaded = jsXdrModule as unknown as Record<string, typeof jsXdrModule.default>;
const jsXdr: typeof jsXdrModule.default = "XdrReader" in loaded ? (loaded as never) : loaded["default"]!;
export const { XdrReader, XdrWriter } = jsXdr;
export type XdrReader = InstanceType<typeof jsXdr.XdrReader>;
export type XdrWriter = InstanceType<typeof jsXdr.XdrWriter>;

export class XdrError extends Error {
  override name = "XdrError";
}

export interface Codec<T> {
  read(r: XdrReader): T;
  write(v: T, w: XdrWriter): void;
  /** The value this type has when nothing is known: 0, empty, first union arm. */
  zero(): T;
  /** What the codec is, so tools (and tests) can walk a schema. */
  shape: Shape;
}

export type Shape =
  | { kind: "u32" | "i32" | "u16" | "i16" | "u64" | "bool" | "empty" }
  | { kind: "opaque"; max: number }
  | { kind: "fixed"; size: number }
  | { kind: "array"; item: Codec<any> }
  | { kind: "struct"; fields: Record<string, Codec<any>> }
  | { kind: "union"; disc: string; arms: Record<number, [string, Codec<any>] | null>; defaultArm?: [string, Codec<any>] | null };

/** Any XDR string or opaque: decoded as Buffer, encodable from a string too. */
export type Bytes = Buffer | Uint8Array | string;

export type Infer<C> = C extends Codec<infer T> ? T : never;

const MAX_U32 = 0xffff_ffff;

function checkInt(v: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new XdrError(`${what} out of range: ${v}`);
}

export const u32: Codec<number> = {
  read: (r) => r.readUInt32BE(),
  write: (v, w) => {
    checkInt(v, 0, MAX_U32, "u32");
    w.writeUInt32BE(v);
  },
  shape: { kind: "u32" },
  zero: () => 0,
};

export const i32: Codec<number> = {
  read: (r) => r.readInt32BE(),
  write: (v, w) => {
    checkInt(v, -0x8000_0000, 0x7fff_ffff, "i32");
    w.writeInt32BE(v);
  },
  shape: { kind: "i32" },
  zero: () => 0,
};

/** XDR `u_short`: four bytes on the wire, value in the low 16 bits. */
export const u16: Codec<number> = {
  read: (r) => r.readUInt32BE() & 0xffff,
  write: (v, w) => {
    checkInt(v, 0, 0xffff, "u16");
    w.writeUInt32BE(v);
  },
  shape: { kind: "u16" },
  zero: () => 0,
};

/** XDR `short`: four bytes, sign-extended. */
export const i16: Codec<number> = {
  read: (r) => (r.readInt32BE() << 16) >> 16,
  write: (v, w) => {
    checkInt(v, -0x8000, 0x7fff, "i16");
    w.writeInt32BE(v);
  },
  shape: { kind: "i16" },
  zero: () => 0,
};

/** NDMP enums: plain numbers, unknown values kept (see the file comment). */
export const enumT: Codec<number> = u32;

export const bool: Codec<boolean> = {
  read: (r) => r.readUInt32BE() !== 0,
  write: (v, w) => w.writeUInt32BE(v ? 1 : 0),
  shape: { kind: "bool" },
  zero: () => false,
};

/** The two u64 values nearly every nlist entry carries (node and fh_info "unknown", and 0). */
const ALL_ONES = 0xffff_ffff_ffff_ffffn;
const ZERO = 0n;

/**
 * ndmp_u_quad: high word then low word, i.e. one big-endian u64. The common values decode to
 * one shared bigint, not a fresh one each: a million-entry nlist holds two per entry.
 */
export const u64: Codec<bigint> = {
  read: (r) => {
    const v = r.readBigUInt64BE();
    return v === ALL_ONES ? ALL_ONES : v === ZERO ? ZERO : v;
  },
  write: (v, w) => {
    if (typeof v !== "bigint" || v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new XdrError(`u64 out of range: ${v}`);
    w.writeBigUInt64BE(v);
  },
  shape: { kind: "u64" },
  zero: () => 0n,
};

export function toBuffer(v: Bytes): Buffer {
  if (typeof v === "string") return Buffer.from(v, "utf8");
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

const EMPTY = Buffer.alloc(0);

/** Variable-length opaque / string, with an optional maximum length. */
export function opaque(max = MAX_U32): Codec<Bytes> {
  return {
    read: (r) => {
      const len = r.readUInt32BE();
      if (len > max) throw new XdrError(`opaque of ${len} bytes exceeds ${max}`);
      if (len > r.remainingBytes()) throw new XdrError(`opaque of ${len} bytes runs past the end`);
      // Copy: the record buffer is reused only by us, but handlers may keep names for long.
      // Empty ones are one shared zero-length Buffer (nothing to mutate), not one each: most
      // nlist entries carry two (name, other_name), and each Buffer costs ~80 bytes.
      if (len === 0) return EMPTY;
      return Buffer.from(r.read(len));
    },
    write: (v, w) => {
      const b = toBuffer(v);
      if (b.length > max) throw new XdrError(`opaque of ${b.length} bytes exceeds ${max}`);
      w.writeUInt32BE(b.length);
      w.write(b, b.length);
    },
    zero: () => Buffer.alloc(0),
    shape: { kind: "opaque", max },
  };
}

export const str: Codec<Bytes> = opaque();

/** Fixed-length opaque (no length word). */
export function fixed(size: number): Codec<Buffer> {
  return {
    read: (r) => Buffer.from(r.read(size)),
    write: (v, w) => {
      if (v.length !== size) throw new XdrError(`fixed opaque needs ${size} bytes, got ${v.length}`);
      w.write(v, size);
    },
    zero: () => Buffer.alloc(size),
    shape: { kind: "fixed", size },
  };
}

/** Variable-length array `T<>`. Each element needs at least 4 bytes, which bounds the count. */
export function array<T>(item: Codec<T>): Codec<T[]> {
  return {
    read: (r) => {
      const n = r.readUInt32BE();
      if (n * 4 > r.remainingBytes()) throw new XdrError(`array of ${n} elements runs past the end`);
      const out: T[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = item.read(r);
      return out;
    },
    write: (v, w) => {
      w.writeUInt32BE(v.length);
      for (const x of v) item.write(x, w);
    },
    zero: () => [],
    shape: { kind: "array", item },
  };
}

type FieldMap = Record<string, Codec<any>>;
export type StructOf<F extends FieldMap> = { [K in keyof F]: Infer<F[K]> };

/** A struct: fields in declaration order (JS keeps string-key insertion order). */
export function struct<F extends FieldMap>(fields: F): Codec<StructOf<F>> & { fields: F } {
  const entries = Object.entries(fields);
  return {
    fields,
    read: (r) => {
      const out: Record<string, unknown> = {};
      for (const [name, c] of entries) out[name] = c.read(r);
      return out as StructOf<F>;
    },
    write: (v, w) => {
      for (const [name, c] of entries) {
        const x = (v as Record<string, unknown>)[name];
        if (x === undefined) throw new XdrError(`missing field ${name}`);
        c.write(x, w);
      }
    },
    zero: () => {
      const out: Record<string, unknown> = {};
      for (const [name, c] of entries) out[name] = c.zero();
      return out as StructOf<F>;
    },
    shape: { kind: "struct", fields },
  };
}

/**
 * A discriminated union as a plain object: `{ [disc]: number, [armName]?: value }`.
 * `arms` maps each discriminant to `[armName, codec]`, or null for a void arm.
 * `defaultArm` serves every other discriminant (XDR `default:`); without it an unknown
 * discriminant is a decode error.
 */
export function union<D extends string>(
  disc: D,
  arms: Record<number, [string, Codec<any>] | null>,
  defaultArm?: [string, Codec<any>] | null,
): Codec<{ [K in D]: number } & Record<string, any>> {
  const armFor = (d: number): [string, Codec<any>] | null => {
    if (Object.prototype.hasOwnProperty.call(arms, d)) return arms[d]!;
    if (defaultArm !== undefined) return defaultArm;
    throw new XdrError(`${disc} ${d} has no union arm`);
  };
  const first = Number(Object.keys(arms)[0]);
  return {
    read: (r) => {
      const d = r.readUInt32BE();
      const arm = armFor(d);
      const out: Record<string, unknown> = { [disc]: d };
      if (arm) out[arm[0]] = arm[1].read(r);
      return out as any;
    },
    write: (v, w) => {
      const d = v[disc];
      const arm = armFor(d);
      w.writeUInt32BE(d);
      if (arm) {
        const x = v[arm[0]];
        if (x === undefined) throw new XdrError(`union ${disc}=${d} needs field ${arm[0]}`);
        arm[1].write(x, w);
      }
    },
    zero: () => {
      const arm = armFor(first);
      const out: Record<string, unknown> = { [disc]: first };
      if (arm) out[arm[0]] = arm[1].zero();
      return out as any;
    },
    shape: { kind: "union", disc, arms, defaultArm },
  };
}

/** The codec of a message with no body. */
export const empty: Codec<Record<string, never>> = {
  read: () => ({}),
  write: () => {},
  zero: () => ({}),
  shape: { kind: "empty" },
};

/**
 * Decodes `bytes` with `codec`. Bytes left over after the body are ignored on purpose:
 * some peers pad records (protocol digest §1.2), and the record boundary is authoritative.
 */
export function decode<T>(codec: Codec<T>, bytes: Buffer): T {
  try {
    return codec.read(new XdrReader(bytes));
  } catch (e) {
    if (e instanceof XdrError) throw e;
    throw new XdrError((e as Error).message);
  }
}

/**
 * js-xdr's writer grows its buffer 8 KiB at a time, copying it each time: quadratic for a big
 * message (a 36 MB nlist took 40 s). This one doubles it, as a growable buffer should.
 */
class GrowingWriter extends XdrWriter {
  resize(minRequiredSize: number): void {
    const self = this as unknown as { _length: number };
    (XdrWriter.prototype as unknown as { resize(n: number): void }).resize.call(this, Math.max(minRequiredSize, self._length * 2));
  }
}

export function encode<T>(codec: Codec<T>, value: T, into?: XdrWriter): Buffer {
  const w = into ?? new GrowingWriter();
  codec.write(value, w);
  return into ? Buffer.alloc(0) : Buffer.from(w.finalize());
}
