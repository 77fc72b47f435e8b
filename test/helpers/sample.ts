/** Random values for any codec, walked from its shape: for round-trip tests of every message. */
import type { Codec } from "../../src/protocol/xdr/codec.ts";
import { Nlist } from "../../src/protocol/xdr/nlist.ts";

export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

export function sample(c: Codec<any>, rand: () => number, depth = 0): any {
  const s = c.shape;
  const int = (n: number) => Math.floor(rand() * n);
  switch (s.kind) {
    case "u32":
      return int(0x1_0000_0000);
    case "i32":
      return int(0x1_0000_0000) - 0x8000_0000;
    case "u16":
      return int(0x10000);
    case "i16":
      return int(0x10000) - 0x8000;
    case "u64":
      return (BigInt(int(0x1_0000_0000)) << 32n) | BigInt(int(0x1_0000_0000));
    case "bool":
      return rand() < 0.5;
    case "empty":
      return {};
    case "opaque": {
      const b = Buffer.alloc(int(Math.min(s.max, 13)));
      for (let i = 0; i < b.length; i++) b[i] = int(256); // any bytes: names need not be UTF-8
      return b;
    }
    case "fixed": {
      const b = Buffer.alloc(s.size);
      for (let i = 0; i < b.length; i++) b[i] = int(256);
      return b;
    }
    case "array": {
      const n = depth > 3 ? 0 : int(4);
      return Array.from({ length: n }, () => sample(s.item, rand, depth + 1));
    }
    case "struct": {
      const out: Record<string, unknown> = {};
      for (const [k, f] of Object.entries(s.fields)) out[k] = sample(f, rand, depth + 1);
      return out;
    }
    case "union": {
      const keys = Object.keys(s.arms).map(Number);
      const d = keys[int(keys.length)]!;
      const arm = s.arms[d];
      const out: Record<string, unknown> = { [s.disc]: d };
      if (arm) out[arm[0]] = sample(arm[1], rand, depth + 1);
      return out;
    }
  }
}

/**
 * A decoded value with each flat nlist (src/protocol/xdr/nlist.ts) as the array of plain
 * entries it stands for, so a round trip compares with the sampled value.
 */
export function plain(v: any): any {
  if (v instanceof Nlist) return v.toArray();
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object" && !Buffer.isBuffer(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}
