/**
 * A recovery's nlist as the engines use it: targets by index, over the flat nlist the request
 * decoded to (src/protocol/xdr/nlist.ts), with no JS object per entry.
 *
 * Per entry it keeps the archived path in the relative form (one arena), its place in the
 * order of those paths (for lookups by binary search: O(log n) each, O(n log n) to build), and
 * a byte saying whether anything matched it. Destinations are computed when asked for, and
 * problems are kept only for the entries that have one.
 */
import { ALL1 } from "../protocol/codes.ts";
import { DESTINATION_PATH, FH_INFO, NAME, Nlist, NlistBuilder, NODE, ORIGINAL_PATH } from "../protocol/xdr/nlist.ts";
import { NLIST_V4 } from "../protocol/xdr/v4.ts";
import { stripTrailingSlashes } from "./fsutil.ts";
import { normalizeRel } from "./selection.ts";

const SLASH = 0x2f;
const DOT = 0x2e;
const EMPTY = Buffer.alloc(0);
const SLASH_BYTES = Buffer.from("/");

/** How destinations are made of an entry (see DataService.targets). */
export interface TargetOptions {
  /** PREFIX (or FILESYSTEM): where entries without a destination_path go. */
  base?: Buffer;
  /** RECOVER_FULL_PATHS: each entry at destination_path/original_path. */
  fullPaths?: boolean;
}

export class Targets {
  readonly length: number;
  /** found[i] = 1 once at least one archived object matched entry i. */
  readonly found: Uint8Array;
  /** The first problem writing an entry, with its LOG_FILE status: only entries that had one. */
  private readonly problems = new Map<number, { status: number; why: string }>();
  /** The relative archived path of entry i is relArena[relOffsets[i], relOffsets[i + 1]). */
  private readonly relArena: Buffer;
  private readonly relOffsets: Uint32Array;
  /** Entry indices ordered by relative path, equal paths by index (the first one wins). */
  private readonly order: Uint32Array;
  private readonly base: Buffer | undefined;
  private readonly fullPaths: boolean;
  private byOffset: Uint32Array | undefined;

  constructor(
    private readonly nlist: Nlist,
    opts: TargetOptions = {},
  ) {
    this.length = nlist.length;
    this.found = new Uint8Array(nlist.length);
    this.base = opts.base;
    this.fullPaths = opts.fullPaths ?? false;
    // Straight from the wire bytes: a view per entry would be a million short-lived objects.
    const rels = new PathArena(nlist.length);
    const wire = nlist.bytesOnWire;
    for (let i = 0; i < nlist.length; i++) {
      const start = nlist.startOf(i, ORIGINAL_PATH);
      const end = start + nlist.size(i, ORIGINAL_PATH);
      if (isClean(wire, start, end)) rels.add(wire, start + 1, end);
      else {
        const rel = normalizeRel(wire.subarray(start, end));
        rels.add(rel, 0, rel.length);
      }
    }
    [this.relArena, this.relOffsets] = rels.finish();
    this.order = this.sortedByRel();
  }

  /** No targets (a recovery for file history only, which writes nothing). */
  static none(): Targets {
    return new Targets(new NlistBuilder(NLIST_V4, 0).finish());
  }

  /** The whole image to `destination` (an empty nlist): one target, the root. */
  static whole(destination: Buffer): Targets {
    const b = new NlistBuilder(NLIST_V4, 1);
    b.add(SLASH_BYTES, destination, EMPTY, EMPTY, ALL1, ALL1);
    return new Targets(b.finish());
  }

  /** Archived path, relative ("" = the whole image): a view, do not change it. */
  original(i: number): Buffer {
    return this.relArena.subarray(this.relOffsets[i]!, this.relOffsets[i + 1]!);
  }

  /** What LOG_FILE reports for entry i: the DMA's original_path, unchanged. */
  reportName(i: number): Buffer {
    return this.nlist.bytes(i, ORIGINAL_PATH);
  }

  node(i: number): bigint {
    return this.nlist.number(i, NODE);
  }

  fhInfo(i: number): bigint {
    return this.nlist.number(i, FH_INFO);
  }

  /**
   * RECOVER_FULL_PATHS: the directory the original path is recreated under (the destination
   * is base/original); the writer is confined to it rather than to the destination's parent.
   */
  baseOf(i: number): Buffer | undefined {
    if (!this.fullPaths) return undefined;
    const dest = this.nlist.bytes(i, DESTINATION_PATH);
    return stripTrailingSlashes(dest.length > 0 ? dest : (this.base ?? EMPTY));
  }

  /**
   * The absolute destination of entry i: destination_path/name, or destination_path when name
   * is empty, or base/original without a destination_path; with RECOVER_FULL_PATHS
   * baseOf(i)/original. Undefined when the entry has none (DataService refuses such a list).
   */
  destination(i: number): Buffer | undefined {
    const original = this.original(i);
    if (this.fullPaths) {
      const under = this.baseOf(i)!;
      if (original.length === 0) return under;
      return Buffer.concat([under.length > 1 ? under : EMPTY, SLASH_BYTES, original]);
    }
    const dest = this.nlist.bytes(i, DESTINATION_PATH);
    const name = this.nlist.bytes(i, NAME);
    if (name.length > 0) return Buffer.concat([dest, SLASH_BYTES, name]);
    if (dest.length > 0) return dest;
    if (this.base) return Buffer.concat([this.base, SLASH_BYTES, original]);
    return undefined;
  }

  /**
   * What is wrong with entry i's destination, or undefined: the refusals of DataService, found
   * from the lengths and first bytes alone (a million entries, no view of each).
   */
  problemWith(i: number): string | undefined {
    const n = this.nlist;
    const destFirst = n.firstByte(i, DESTINATION_PATH);
    if (this.fullPaths) {
      // Trailing slashes stripped, the first byte is still the first byte ("///" is "/").
      const first = destFirst >= 0 ? destFirst : (this.base?.[0] ?? -1);
      return first === SLASH ? undefined : "RECOVER_FULL_PATHS needs an absolute destination_path (or PREFIX)";
    }
    if (n.size(i, NAME) > 0) {
      if (n.includes(i, NAME, SLASH)) return "nlist name must not contain /";
      return destFirst < 0 || destFirst === SLASH ? undefined : "destinations must be absolute paths";
    }
    if (destFirst >= 0) return destFirst === SLASH ? undefined : "destinations must be absolute paths";
    if (!this.base) return "nlist entry without a destination";
    return this.base.length === 0 || this.base[0] === SLASH ? undefined : "destinations must be absolute paths";
  }

  /** The nlist's name of entry i (v4 `name`: the last component at the destination). */
  nameOf(i: number): Buffer {
    return this.nlist.bytes(i, NAME);
  }

  /** Marks entry i as matched by an archived object. */
  markFound(i: number): void {
    this.found[i] = 1;
  }

  isFound(i: number): boolean {
    return this.found[i] === 1;
  }

  /** Records the first problem of entry i, with its LOG_FILE status (later ones are not kept). */
  fail(i: number, status: number, why: string): void {
    if (!this.problems.has(i)) this.problems.set(i, { status, why });
  }

  error(i: number): string | undefined {
    return this.problems.get(i)?.why;
  }

  status(i: number): number | undefined {
    return this.problems.get(i)?.status;
  }

  /** The first entry (by index) whose relative path is `rel`, or -1. */
  first(rel: Buffer): number {
    const k = this.lowerBound(rel);
    return k < this.length && this.compareRel(this.order[k]!, rel) === 0 ? this.order[k]! : -1;
  }

  /** Every entry whose relative path is `rel`, in index order (nearly always 0 or 1 of them). */
  same(rel: Buffer): number[] {
    const out: number[] = [];
    for (let k = this.lowerBound(rel); k < this.length && this.compareRel(this.order[k]!, rel) === 0; k++) out.push(this.order[k]!);
    return out;
  }

  /**
   * The entries with an fh_info (not ALL1), by fh_info (equal ones by index): where direct
   * access goes, in stream order. Made on first use.
   */
  byFhInfo(): Uint32Array {
    if (this.byOffset) return this.byOffset;
    const withOffset: number[] = [];
    for (let i = 0; i < this.length; i++) if (this.fhInfo(i) !== ALL1) withOffset.push(i);
    withOffset.sort((a, b) => {
      const x = this.fhInfo(a);
      const y = this.fhInfo(b);
      return x < y ? -1 : x > y ? 1 : a - b;
    });
    this.byOffset = Uint32Array.from(withOffset);
    return this.byOffset;
  }

  /** The entries whose fh_info is `offset`, in index order. */
  atOffset(offset: bigint): number[] {
    const sorted = this.byFhInfo();
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.fhInfo(sorted[mid]!) < offset) lo = mid + 1;
      else hi = mid;
    }
    const out: number[] = [];
    for (let k = lo; k < sorted.length && this.fhInfo(sorted[k]!) === offset; k++) out.push(sorted[k]!);
    return out;
  }

  private compareRel(i: number, rel: Buffer): number {
    return -rel.compare(this.relArena, this.relOffsets[i]!, this.relOffsets[i + 1]!) || 0;
  }

  /** The first place in `order` whose path is not below `rel`. */
  private lowerBound(rel: Buffer): number {
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compareRel(this.order[mid]!, rel) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private sortedByRel(): Uint32Array {
    // A plain array sorts several times faster than a typed one with a comparator (JSC).
    const idx = Array.from({ length: this.length }, (_, i) => i);
    const arena = this.relArena;
    const off = this.relOffsets;
    idx.sort((a, b) => arena.compare(arena, off[b]!, off[b + 1]!, off[a]!, off[a + 1]!) || a - b);
    return Uint32Array.from(idx);
  }
}

/** Paths back to back in one buffer, with their offsets: entry i is [offsets[i], offsets[i + 1]). */
class PathArena {
  private arena = Buffer.allocUnsafe(1024);
  private used = 0;
  private readonly offsets: Uint32Array;
  private count = 0;

  constructor(n: number) {
    this.offsets = new Uint32Array(n + 1);
  }

  /** Appends b[from, to). */
  add(b: Buffer, from: number, to: number): void {
    const need = this.used + to - from;
    if (need > 0xffff_ffff) throw new RangeError("more than 4 GiB of paths");
    if (need > this.arena.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * this.arena.length));
      this.arena.copy(grown, 0, 0, this.used);
      this.arena = grown;
    }
    b.copy(this.arena, this.used, from, to);
    this.used = need;
    this.offsets[++this.count] = this.used;
  }

  finish(): [Buffer, Uint32Array] {
    return [Buffer.from(this.arena.subarray(0, this.used)), this.offsets];
  }
}

/**
 * An nlist path in the relative form (normalizeRel). Nearly every one is already "/a/b" (no
 * empty or "." component, no trailing slash): then it is that path without its first byte.
 */
export function relativeOf(p: Buffer): Buffer {
  return isClean(p, 0, p.length) ? p.subarray(1) : normalizeRel(p);
}

/** Is p[from, to) "/a/b" with no empty or "." component and no trailing slash? */
function isClean(p: Buffer, from: number, to: number): boolean {
  if (to - from < 2 || p[from] !== SLASH || p[to - 1] === SLASH) return false;
  let start = from + 1;
  for (let i = start; i <= to; i++) {
    if (i < to && p[i] !== SLASH) continue;
    const len = i - start;
    if (len === 0 || (len === 1 && p[start] === DOT)) return false;
    start = i + 1;
  }
  return true;
}
