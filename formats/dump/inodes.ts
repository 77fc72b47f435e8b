/**
 * Synthetic, compact, persistent inode numbers for dump streams (spec section 4).
 *
 * Dump inode numbers are 32-bit and the inode maps cost maxino/8 bytes twice, so real
 * 64-bit st_ino values are not used. The backup root is always 2 (ROOTINO); other objects
 * get 3, 4, 5, ... in the order they are first seen, keyed by their (dev, ino) identity,
 * so all hard links of a file share one number.
 *
 * Stability: an incremental chain is applied by inode number, so the engine persists the
 * map per backup target (toJSON / fromJSON) and reuses it for every level. Objects seen
 * before keep their number; new objects get fresh numbers at the end.
 *
 * Reuse: a number is never handed out twice during a map's life, even after its object
 * disappears (`forget` only drops the identity). Freed numbers come back only through
 * `compact()`, which renumbers the live objects densely; do that only when starting a new
 * level-0 chain, because it changes numbers that older dumps of the chain rely on.
 */

/** Identity numbers as lstat gives them; bigints keep 64-bit inode numbers exact. */
export type IdNumber = number | bigint;

export interface InodeMapJSON {
  version: 1;
  /** Next number to hand out. */
  next: number;
  /** Identity key ("dev:ino") of the root, which owns number 2, if set. */
  root: string | null;
  /** Identity key -> number, root excluded. */
  entries: Array<[key: string, ino: number]>;
}

/**
 * The same map, compact (version 2): per device, the inode numbers (st_ino) as little-endian
 * u32 pairs (low word, high word) and the dump numbers as little-endian u32s, each array
 * base64 in one string. A tree of 200,000 files took 4.9 MB of "dev:ino" pairs in version 1 and
 * a third of a second of the main thread to parse; this is 3.2 MB of a few strings that decode
 * natively.
 */
export interface InodeMapCompact {
  version: 2;
  next: number;
  root: string | null;
  devices: Array<{ dev: string; inos: string; numbers: string }>;
}

const ROOT = 2;
const FIRST = 3;
/** c_inumber and d_ino are u32. */
const LIMIT = 0xffffffff;

function identityKey(dev: IdNumber, ino: IdNumber): string {
  return `${BigInt(dev)}:${BigInt(ino)}`;
}

/** Map keys: a number when exact, else the bigint (Map compares bigints by value), so 5 and 5n are one key. */
type Id = number | bigint;
function id(v: IdNumber): Id {
  return typeof v === "number" || v > BigInt(Number.MAX_SAFE_INTEGER) ? v : Number(v);
}

/** "dev:ino" as toJSON writes it, back to its two ids (a TypeError when it is not one). Read without a regular expression: a state holds one key per object. */
function parseKey(key: unknown): [Id, Id] {
  const colon = typeof key === "string" ? key.indexOf(":") : -1;
  const dev = colon > 0 ? idOf(key as string, 0, colon) : undefined;
  const ino = dev === undefined ? undefined : idOf(key as string, colon + 1, (key as string).length);
  if (dev === undefined || ino === undefined) throw new TypeError(`bad InodeMap key ${JSON.stringify(key)}`);
  return [dev, ino];
}

/** The decimal number in key[from, to), or undefined if that is not one; up to 15 digits is always a safe integer. */
function idOf(key: string, from: number, to: number): Id | undefined {
  if (to <= from) return undefined;
  let n = 0;
  for (let i = from; i < to; i++) {
    const digit = key.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    n = n * 10 + digit;
  }
  return to - from <= 15 ? n : id(BigInt(key.slice(from, to)));
}

/**
 * st_ino -> dump number for one device: open addressing over typed arrays (linear probing,
 * deletion by backward shift), at most half full. A JS Map took about 70 bytes per object and
 * boxed every st_ino past 2^31; this takes 24 bytes per object and loads a saved map with one
 * pass over its arrays. Numbers are >= 3, so 0 marks a free slot. An st_ino past 2^53 (not
 * exact as a number) is a bigint and goes to a small Map beside the table.
 */
export class InoTable {
  private lo: Uint32Array;
  private hi: Uint32Array;
  private val: Uint32Array;
  private mask: number;
  private count = 0;
  private big: Map<bigint, number> | undefined;

  constructor(expected = 0) {
    let slots = 16;
    while (slots < expected * 2) slots *= 2;
    this.lo = new Uint32Array(slots);
    this.hi = new Uint32Array(slots);
    this.val = new Uint32Array(slots);
    this.mask = slots - 1;
  }

  get size(): number {
    return this.count + (this.big?.size ?? 0);
  }

  get(ino: Id): number | undefined {
    if (typeof ino === "bigint") return this.big?.get(ino);
    const s = this.find(ino >>> 0, Math.floor(ino / 0x1_0000_0000));
    return s < 0 ? undefined : this.val[s];
  }

  set(ino: Id, n: number): void {
    if (typeof ino === "bigint") {
      (this.big ??= new Map()).set(ino, n);
      return;
    }
    const lo = ino >>> 0;
    const hi = Math.floor(ino / 0x1_0000_0000);
    const found = this.find(lo, hi);
    if (found >= 0) {
      this.val[found] = n;
      return;
    }
    if ((this.count + 1) * 2 > this.val.length) this.grow();
    this.put(lo, hi, n);
  }

  delete(ino: Id): boolean {
    if (typeof ino === "bigint") return this.big?.delete(ino) ?? false;
    let hole = this.find(ino >>> 0, Math.floor(ino / 0x1_0000_0000));
    if (hole < 0) return false;
    const { lo, hi, val, mask } = this;
    val[hole] = 0;
    this.count--;
    // Move back each following entry of the run whose home slot is not between the hole and it.
    for (let j = (hole + 1) & mask; val[j] !== 0; j = (j + 1) & mask) {
      const home = slotOf(lo[j]!, hi[j]!, mask);
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (stays) continue;
      lo[hole] = lo[j]!;
      hi[hole] = hi[j]!;
      val[hole] = val[j]!;
      val[j] = 0;
      hole = j;
    }
    return true;
  }

  /** Every entry, in no particular order. */
  forEach(fn: (ino: Id, n: number) => void): void {
    const { lo, hi, val } = this;
    for (let s = 0; s < val.length; s++) if (val[s] !== 0) fn(hi[s]! * 0x1_0000_0000 + lo[s]!, val[s]!);
    this.big?.forEach((n, ino) => fn(ino, n));
  }

  /** Keeps only the entries `keep` accepts. */
  filter(keep: (n: number) => boolean): void {
    const { lo, hi, val } = this;
    // Usually nothing goes (a level 0 of a tree that lost nothing): then no new table.
    let drops = false;
    for (let s = 0; s < val.length && !drops; s++) drops = val[s] !== 0 && !keep(val[s]!);
    if (drops) this.rebuild(lo, hi, val, keep);
    if (this.big) for (const [ino, n] of this.big) if (!keep(n)) this.big.delete(ino);
  }

  private rebuild(lo: Uint32Array, hi: Uint32Array, val: Uint32Array, keep: (n: number) => boolean): void {
    this.lo = new Uint32Array(val.length);
    this.hi = new Uint32Array(val.length);
    this.val = new Uint32Array(val.length);
    this.count = 0;
    for (let s = 0; s < val.length; s++) if (val[s] !== 0 && keep(val[s]!)) this.put(lo[s]!, hi[s]!, val[s]!);
  }

  /** The slot holding (lo, hi), or -1. */
  private find(lo: number, hi: number): number {
    const { mask, val } = this;
    for (let s = slotOf(lo, hi, mask); val[s] !== 0; s = (s + 1) & mask) if (this.lo[s] === lo && this.hi[s] === hi) return s;
    return -1;
  }

  /** Stores a key known to be absent, with room known to be there. */
  private put(lo: number, hi: number, n: number): void {
    const { mask, val } = this;
    let s = slotOf(lo, hi, mask);
    while (val[s] !== 0) s = (s + 1) & mask;
    this.lo[s] = lo;
    this.hi[s] = hi;
    val[s] = n;
    this.count++;
  }

  private grow(): void {
    const { lo, hi, val } = this;
    const slots = val.length * 2;
    this.lo = new Uint32Array(slots);
    this.hi = new Uint32Array(slots);
    this.val = new Uint32Array(slots);
    this.mask = slots - 1;
    this.count = 0;
    for (let s = 0; s < val.length; s++) if (val[s] !== 0) this.put(lo[s]!, hi[s]!, val[s]!);
  }
}

/** A home slot: inode numbers run in sequences, so mix the bits before masking. */
function slotOf(lo: number, hi: number, mask: number): number {
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) & mask;
}

export class InodeMap {
  /**
   * dev -> ino -> number, root excluded. Numeric keys, not "dev:ino" strings: the map takes
   * one entry per object of the tree, and a string per object cost more than the rest of
   * the first pass's bookkeeping.
   */
  private readonly byId = new Map<Id, InoTable>();
  private rootKey: string | null = null;
  private rootDev: Id | undefined;
  private rootIno: Id | undefined;
  private nextNumber = FIRST;

  /**
   * Declare the identity of the backup root; it is numbered 2. If the root's identity
   * changed since the map was saved (directory re-created), the old root identity is
   * dropped; if the new root was known under another number, that number is retired.
   */
  setRoot(dev: IdNumber, ino: IdNumber): number {
    this.byId.get(id(dev))?.delete(id(ino));
    this.setRootKey(identityKey(dev, ino));
    return ROOT;
  }

  /** Number for an object, allocating a new one at the end if it was never seen. */
  assign(dev: IdNumber, ino: IdNumber): number {
    const d = id(dev);
    const i = id(ino);
    if (i === this.rootIno && d === this.rootDev) return ROOT;
    let inos = this.byId.get(d);
    if (!inos) this.byId.set(d, (inos = new InoTable()));
    const known = inos.get(i);
    if (known !== undefined) return known;
    if (this.nextNumber > LIMIT) throw new RangeError("dump inode numbers exhausted (u32); compact the map");
    const fresh = this.nextNumber++;
    inos.set(i, fresh);
    return fresh;
  }

  /** Number for an object, or undefined if it was never assigned. */
  lookup(dev: IdNumber, ino: IdNumber): number | undefined {
    const d = id(dev);
    const i = id(ino);
    if (i === this.rootIno && d === this.rootDev) return ROOT;
    return this.byId.get(d)?.get(i);
  }

  /** Drop an identity (object deleted). Its number is not reused until `compact()`. */
  forget(dev: IdNumber, ino: IdNumber): void {
    this.byId.get(id(dev))?.delete(id(ino));
  }

  /**
   * Drops every identity whose number `keep` refuses (objects not seen by a new level 0):
   * their numbers are still never handed out again. The root is kept.
   */
  keepOnly(keep: (ino: number) => boolean): void {
    for (const inos of this.byId.values()) inos.filter(keep);
  }

  /** Highest number handed out so far + 1: the `maxino` a dump needs for its maps. */
  get maxino(): number {
    return this.nextNumber;
  }

  get size(): number {
    let n = this.rootKey === null ? 0 : 1;
    for (const inos of this.byId.values()) n += inos.size;
    return n;
  }

  /**
   * A new map holding only the given live identities, renumbered densely from 3 in the
   * order given (the root keeps 2). For a new level-0 chain only: see the file comment.
   */
  compact(live: Iterable<[dev: IdNumber, ino: IdNumber]>): InodeMap {
    const out = new InodeMap();
    if (this.rootKey !== null) out.setRootKey(this.rootKey);
    for (const [dev, ino] of live) out.assign(dev, ino);
    return out;
  }

  toJSON(): InodeMapJSON {
    const entries: Array<[string, number]> = [];
    for (const [d, inos] of this.byId) inos.forEach((i, n) => entries.push([`${d}:${i}`, n]));
    return { version: 1, next: this.nextNumber, root: this.rootKey, entries };
  }

  toCompact(): InodeMapCompact {
    const devices: InodeMapCompact["devices"] = [];
    for (const [d, map] of this.byId) {
      if (map.size === 0) continue;
      const inos = Buffer.allocUnsafe(map.size * 8);
      const numbers = Buffer.allocUnsafe(map.size * 4);
      let k = 0;
      map.forEach((i, n) => {
        const big = typeof i === "bigint" ? i : undefined;
        inos.writeUInt32LE(big === undefined ? (i as number) % 0x1_0000_0000 : Number(big & 0xffffffffn), 8 * k);
        inos.writeUInt32LE(big === undefined ? Math.floor((i as number) / 0x1_0000_0000) : Number(big >> 32n), 8 * k + 4);
        numbers.writeUInt32LE(n, 4 * k);
        k++;
      });
      devices.push({ dev: String(d), inos: inos.toString("base64"), numbers: numbers.toString("base64") });
    }
    return { version: 2, next: this.nextNumber, root: this.rootKey, devices };
  }

  /** A map from toCompact()'s document; a TypeError when it is not a valid one. */
  static fromCompact(doc: InodeMapCompact): InodeMap {
    if (doc?.version !== 2 || !Number.isSafeInteger(doc.next) || doc.next < FIRST || doc.next > LIMIT + 1 || !Array.isArray(doc.devices)) {
      throw new TypeError("not an InodeMap (version 2) document");
    }
    const map = new InodeMap();
    map.nextNumber = doc.next;
    if (typeof doc.root === "string") map.setRootKey(doc.root);
    for (const group of doc.devices) {
      const dev = typeof group?.dev === "string" ? idOf(group.dev, 0, group.dev.length) : undefined;
      if (dev === undefined || typeof group.inos !== "string" || typeof group.numbers !== "string") throw new TypeError("bad InodeMap device group");
      const inos = Buffer.from(group.inos, "base64");
      const numbers = Buffer.from(group.numbers, "base64");
      const count = numbers.length / 4;
      if (!Number.isInteger(count) || inos.length !== count * 8) throw new TypeError(`bad InodeMap arrays for device ${group.dev}`);
      let byIno = map.byId.get(dev);
      if (!byIno) map.byId.set(dev, (byIno = new InoTable(count)));
      for (let k = 0; k < count; k++) {
        const n = numbers.readUInt32LE(4 * k);
        if (n < FIRST || n >= doc.next) throw new TypeError(`bad InodeMap number ${n}`);
        const lo = inos.readUInt32LE(8 * k);
        const hi = inos.readUInt32LE(8 * k + 4);
        // Up to 2^53 - 1 a number is exact; beyond, the bigint (as id() keys it).
        const ino: Id = hi < 0x20_0000 ? hi * 0x1_0000_0000 + lo : (BigInt(hi) << 32n) | BigInt(lo);
        byIno.set(ino, n);
      }
    }
    return map;
  }

  private setRootKey(key: string): void {
    this.rootKey = key;
    [this.rootDev, this.rootIno] = parseKey(key);
  }

  static fromJSON(json: InodeMapJSON): InodeMap {
    if (json?.version !== 1 || !Number.isSafeInteger(json.next) || json.next < FIRST || !Array.isArray(json.entries)) {
      throw new TypeError("not an InodeMap (version 1) document");
    }
    const map = new InodeMap();
    map.nextNumber = json.next;
    if (typeof json.root === "string") map.setRootKey(json.root);
    for (const [key, ino] of json.entries) {
      if (typeof key !== "string" || !Number.isInteger(ino) || ino < FIRST || ino >= json.next) {
        throw new TypeError(`bad InodeMap entry ${JSON.stringify([key, ino])}`);
      }
      const [d, i] = parseKey(key);
      let inos = map.byId.get(d);
      if (!inos) map.byId.set(d, (inos = new InoTable()));
      inos.set(i, ino);
    }
    return map;
  }
}
