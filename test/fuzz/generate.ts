/**
 * Structure-aware NDMP inputs from our own XDR schemas (src/protocol/xdr): every request and post
 * of v4 and v3, each field made from its codec's shape, and then lied about: lengths past the
 * end, huge array counts, out-of-range enums and union arms, truncation, trailing garbage.
 * Deterministic for a seed, so a finding replays.
 */
import type { Codec, Shape } from "../../src/protocol/xdr/codec.ts";
import { v3Messages } from "../../src/protocol/xdr/v3.ts";
import { v4Messages, type MessageSchema } from "../../src/protocol/xdr/v4.ts";
import { encodeHeader } from "../../src/protocol/message.ts";

/** xorshift32: small, fast, seedable. */
export class Rng {
  constructor(private s: number) {
    if (this.s === 0) this.s = 0x9e3779b9;
  }
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  below(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

const BOUNDARY = [0, 1, 2, 3, 4, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];
const u32be = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

function int(r: Rng): number {
  if (r.chance(0.5)) return r.below(8);
  if (r.chance(0.6)) return r.pick(BOUNDARY);
  return r.u32();
}

/** A length word: usually true, sometimes a lie (past the end, or enormous). */
function length(r: Rng, real: number): number {
  if (r.chance(0.85)) return real;
  return r.pick([real + 1, real + 4096, 0x7fff_ffff, 0xffff_ffff, r.u32()]);
}

function opaqueBytes(r: Rng): Buffer {
  if (r.chance(0.1)) return r.bytes(r.below(8192));
  if (r.chance(0.3)) return Buffer.from(r.pick(["/", "/tmp", "..", "../../etc", "FILESYSTEM", "HIST", "y", "tar", "dump", "ndmp", "vt0", "\0", "%s%n"]));
  return r.bytes(r.below(40));
}

function pad(b: Buffer): Buffer {
  const p = (4 - (b.length % 4)) % 4;
  return p ? Buffer.concat([b, Buffer.alloc(p)]) : b;
}

/** Bytes for one value of `shape`. */
export function gen(shape: Shape, r: Rng, depth = 0): Buffer {
  switch (shape.kind) {
    case "u32":
    case "i32":
    case "u16":
    case "i16":
      return u32be(int(r));
    case "bool":
      return u32be(r.chance(0.9) ? r.below(2) : int(r));
    case "u64":
      return Buffer.concat([u32be(r.chance(0.7) ? 0 : int(r)), u32be(int(r))]);
    case "empty":
      return Buffer.alloc(0);
    case "fixed":
      return r.chance(0.9) ? r.bytes(shape.size) : r.bytes(r.below(shape.size + 8));
    case "opaque": {
      const data = opaqueBytes(r);
      return Buffer.concat([u32be(length(r, data.length)), pad(data)]);
    }
    case "array": {
      const n = depth > 4 ? 0 : r.chance(0.05) ? r.below(300) : r.below(4);
      const items = Array.from({ length: n }, () => gen(item(shape.item), r, depth + 1));
      return Buffer.concat([u32be(length(r, n)), ...items]);
    }
    case "struct":
      return Buffer.concat(Object.values(shape.fields).map((c) => gen(item(c), r, depth + 1)));
    case "union": {
      const keys = Object.keys(shape.arms).map(Number);
      const d = r.chance(0.85) && keys.length > 0 ? r.pick(keys) : int(r);
      const arm = Object.prototype.hasOwnProperty.call(shape.arms, d) ? shape.arms[d] : shape.defaultArm;
      const body = arm ? gen(item(arm[1]), r, depth + 1) : Buffer.alloc(0);
      return Buffer.concat([u32be(d), body]);
    }
  }
}

const item = (c: Codec<any>): Shape => c.shape;

export const SCHEMAS: ReadonlyArray<{ version: number; schema: MessageSchema }> = [
  ...v4Messages.map((schema) => ({ version: 4, schema })),
  ...v3Messages.map((schema) => ({ version: 3, schema })),
];

/** One framed record: a header (mostly a request), a body from the schema, then mutations. */
export function record(r: Rng, seq: number, code?: number): { code: number; bytes: Buffer } {
  const s = r.pick(SCHEMAS).schema;
  const c = code ?? (r.chance(0.03) ? r.u32() : s.code);
  let body = gen(s.request.shape, r);
  if (r.chance(0.1)) body = body.subarray(0, r.below(body.length + 1)); // truncated
  if (r.chance(0.05)) body = Buffer.concat([body, r.bytes(r.below(64))]); // trailing garbage
  if (r.chance(0.05) && body.length > 0) body[r.below(body.length)] ^= 1 << r.below(8); // a flipped bit
  const header = encodeHeader({
    sequence: r.chance(0.95) ? seq : r.u32(),
    time_stamp: r.u32(),
    message_type: r.chance(0.95) ? 0 : r.pick([1, 2, r.u32()]),
    message_code: c,
    reply_sequence: r.chance(0.95) ? 0 : r.u32(),
    error_code: r.chance(0.95) ? 0 : r.u32(),
  });
  let rec = Buffer.concat([header, body]);
  if (r.chance(0.02)) rec = rec.subarray(0, r.below(24)); // shorter than a header
  const mark = Buffer.alloc(4);
  const lie = r.chance(0.02);
  mark.writeUInt32BE(((r.chance(0.98) ? 0x8000_0000 : 0) | (lie ? r.u32() & 0x7fff_ffff : rec.length)) >>> 0);
  return { code: c, bytes: Buffer.concat([mark, rec]) };
}
