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

const ROOT = 2;
const FIRST = 3;
/** c_inumber and d_ino are u32. */
const LIMIT = 0xffffffff;

function identityKey(dev: IdNumber, ino: IdNumber): string {
  return `${idText(dev)}:${idText(ino)}`;
}

/** Decimal, as BigInt(v) prints it; without making a BigInt for the usual number (one key per object walked). */
function idText(v: IdNumber): string {
  return typeof v === "number" && Number.isSafeInteger(v) ? String(v) : BigInt(v).toString();
}

export class InodeMap {
  private readonly byKey = new Map<string, number>();
  private rootKey: string | null = null;
  private nextNumber = FIRST;

  /**
   * Declare the identity of the backup root; it is numbered 2. If the root's identity
   * changed since the map was saved (directory re-created), the old root identity is
   * dropped; if the new root was known under another number, that number is retired.
   */
  setRoot(dev: IdNumber, ino: IdNumber): number {
    const key = identityKey(dev, ino);
    this.byKey.delete(key);
    this.rootKey = key;
    return ROOT;
  }

  /** Number for an object, allocating a new one at the end if it was never seen. */
  assign(dev: IdNumber, ino: IdNumber): number {
    const key = identityKey(dev, ino);
    if (key === this.rootKey) return ROOT;
    const known = this.byKey.get(key);
    if (known !== undefined) return known;
    if (this.nextNumber > LIMIT) throw new RangeError("dump inode numbers exhausted (u32); compact the map");
    const fresh = this.nextNumber++;
    this.byKey.set(key, fresh);
    return fresh;
  }

  /** Number for an object, or undefined if it was never assigned. */
  lookup(dev: IdNumber, ino: IdNumber): number | undefined {
    const key = identityKey(dev, ino);
    if (key === this.rootKey) return ROOT;
    return this.byKey.get(key);
  }

  /** Drop an identity (object deleted). Its number is not reused until `compact()`. */
  forget(dev: IdNumber, ino: IdNumber): void {
    this.byKey.delete(identityKey(dev, ino));
  }

  /**
   * Drops every identity whose number `keep` refuses (objects not seen by a new level 0):
   * their numbers are still never handed out again. The root is kept.
   */
  keepOnly(keep: (ino: number) => boolean): void {
    for (const [key, ino] of this.byKey) if (!keep(ino)) this.byKey.delete(key);
  }

  /** Highest number handed out so far + 1: the `maxino` a dump needs for its maps. */
  get maxino(): number {
    return this.nextNumber;
  }

  get size(): number {
    return this.byKey.size + (this.rootKey === null ? 0 : 1);
  }

  /**
   * A new map holding only the given live identities, renumbered densely from 3 in the
   * order given (the root keeps 2). For a new level-0 chain only: see the file comment.
   */
  compact(live: Iterable<[dev: IdNumber, ino: IdNumber]>): InodeMap {
    const out = new InodeMap();
    if (this.rootKey !== null) out.rootKey = this.rootKey;
    for (const [dev, ino] of live) out.assign(dev, ino);
    return out;
  }

  toJSON(): InodeMapJSON {
    return { version: 1, next: this.nextNumber, root: this.rootKey, entries: [...this.byKey] };
  }

  static fromJSON(json: InodeMapJSON): InodeMap {
    if (json?.version !== 1 || !Number.isSafeInteger(json.next) || json.next < FIRST || !Array.isArray(json.entries)) {
      throw new TypeError("not an InodeMap (version 1) document");
    }
    const map = new InodeMap();
    map.nextNumber = json.next;
    map.rootKey = typeof json.root === "string" ? json.root : null;
    for (const [key, ino] of json.entries) {
      if (typeof key !== "string" || !Number.isInteger(ino) || ino < FIRST || ino >= json.next) {
        throw new TypeError(`bad InodeMap entry ${JSON.stringify([key, ino])}`);
      }
      map.byKey.set(key, ino);
    }
    return map;
  }
}
