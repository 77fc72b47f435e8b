/**
 * File history posts (FH_ADD_FILE, FH_ADD_DIR, FH_ADD_NODE) collected into catalog rows.
 */
import fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FileRow } from "../catalog/catalog.ts";
import type { Post } from "../client/client.ts";
import { ALL1, Message } from "../protocol/codes.ts";
import { toBuffer } from "../protocol/xdr/codec.ts";


/** Collects FH_ADD_FILE (path style) and FH_ADD_DIR/FH_ADD_NODE (dir/node style) into rows. */
export class HistoryCollector {
  private readonly files: FileRow[] = [];
  /** With `spill`: path-style rows go to a file instead of `files` (a backup's catalog rows). */
  private readonly spill: RowSpill | undefined;
  private readonly dirs: Array<{ name: Buffer; node: bigint; parent: bigint }> = [];
  private readonly nodes = new Map<bigint, { stat: any; fhInfo: bigint }>();
  count = 0;

  /**
   * spill: keep path-style rows in a temporary file, not in memory, so that the file history of
   * a tree of any size takes a bounded amount of memory until the catalog takes it (each()).
   * (Dir/node-style history is resolved to paths at the end, from what is kept in memory.)
   */
  constructor(opts: { spill?: boolean } = {}) {
    if (opts.spill) this.spill = new RowSpill();
  }

  /** One FH post: decoded from the wire, or the data service's own body (an in-process job). */
  add(p: Pick<Post, "code" | "body">): void {
    if (p.code === Message.FH_ADD_FILE) {
      const spill = this.spill;
      for (const f of p.body?.files ?? []) {
        const names = f.names;
        const name = names.length === 1 || names[0].fs_type === 0 ? names[0] : (names.find((n: any) => n.fs_type === 0) ?? names[0]);
        // Spilled straight from the post's fields: no row object per file on the way.
        if (spill) spill.addFile(toBuffer(name.unix_name), f.stats[0], f.node, f.fh_info);
        else this.files.push(row(toBuffer(name.unix_name), f.stats[0], f.node, f.fh_info));
        this.count++;
      }
    } else if (p.code === Message.FH_ADD_DIR) {
      for (const d of p.body?.dirs ?? []) {
        const name = d.names.find((n: any) => n.fs_type === 0) ?? d.names[0];
        // A copy: an in-process post may name it with a slice of a buffer that is reused.
        this.dirs.push({ name: Buffer.from(toBuffer(name.unix_name)), node: d.node, parent: d.parent });
      }
    } else if (p.code === Message.FH_ADD_NODE) {
      for (const n of p.body?.nodes ?? []) {
        this.nodes.set(n.node, { stat: n.stats[0], fhInfo: n.fh_info });
        this.count++;
      }
    }
  }

  /** How many rows each() gives. */
  rowCount(): number {
    return this.dirs.length === 0 ? this.files.length + (this.spill?.count ?? 0) : this.resolved().length;
  }

  /** Every row, once, in order (from the spill file when there is one); then the spill is gone. */
  *each(): Generator<FileRow> {
    yield* this.files;
    if (this.spill) yield* this.spill.drain();
    if (this.dirs.length > 0) yield* this.resolved();
  }

  /** Removes the spill file (each() does it too when read to its end). */
  dispose(): void {
    this.spill?.dispose();
  }

  /** Every entry with its full path ("/" = the root). Dir/node history is resolved here. */
  rows(): FileRow[] {
    if (this.spill) throw new Error("a spilling collector's rows are read with each()");
    if (this.dirs.length === 0) return this.files;
    return this.resolved();
  }

  private resolvedRows: FileRow[] | undefined;

  /** Dir/node history as paths, worked out once. */
  private resolved(): FileRow[] {
    return (this.resolvedRows ??= this.resolve());
  }

  private resolve(): FileRow[] {
    // Each directory names itself "." and its parent ".."; every other entry links a child to
    // its directory. The root is the directory whose ".." is itself.
    const up = new Map<bigint, { parent: bigint; name: Buffer }[]>();
    let root: bigint | undefined;
    for (const d of this.dirs) {
      const n = d.name.toString("latin1");
      if (n === "..") {
        if (d.node === d.parent) root = d.node;
        continue;
      }
      if (n === ".") continue;
      let list = up.get(d.node);
      if (!list) up.set(d.node, (list = []));
      list.push({ parent: d.parent, name: d.name });
    }
    const pathOf = new Map<bigint, Buffer>();
    if (root !== undefined) pathOf.set(root, Buffer.from("/"));
    const resolve = (node: bigint, depth = 0): Buffer | undefined => {
      const known = pathOf.get(node);
      if (known) return known;
      const link = up.get(node)?.[0];
      if (!link || depth > 4096) return undefined;
      const parent = resolve(link.parent, depth + 1);
      if (!parent) return undefined;
      const p = parent.length === 1 ? Buffer.concat([parent, link.name]) : Buffer.concat([parent, Buffer.from("/"), link.name]);
      pathOf.set(node, p);
      return p;
    };
    const out = [...this.files];
    if (root !== undefined && this.nodes.has(root)) {
      const n = this.nodes.get(root)!;
      out.push(row(Buffer.from("/"), n.stat, root, n.fhInfo));
    }
    for (const [node, links] of up) {
      const n = this.nodes.get(node);
      if (!n) continue;
      // Hard links: one row per name, all with the node's offset.
      for (const link of links) {
        const parent = resolve(link.parent);
        if (!parent) continue;
        const p = parent.length === 1 ? Buffer.concat([parent, link.name]) : Buffer.concat([parent, Buffer.from("/"), link.name]);
        out.push(row(p, n.stat, node, n.fhInfo));
      }
    }
    return out;
  }
}

/**
 * Rows appended to a temporary file in 1 MiB writes and read back in order. A row: u32 path
 * length, the path, then node, fhInfo (f64, NaN = null), ftype, mode, uid, gid (u32), size,
 * mtime (f64).
 */
class RowSpill {
  count = 0;
  private fd: number | undefined;
  private dir: string | undefined;
  private buf = Buffer.allocUnsafe(SPILL_CHUNK);
  private pos = 0;

  /** One FH_ADD_FILE entry's row (what row() would make of it), written as it comes. */
  addFile(path: Uint8Array, stat: any, node: bigint, fhInfo: bigint): void {
    const need = 4 + path.length + ROW_FIXED;
    if (this.pos + need > this.buf.length) this.flush(need);
    const b = this.buf;
    let p = b.writeUInt32LE(path.length, this.pos);
    b.set(path, p);
    p += path.length;
    p = b.writeDoubleLE(node === ALL1 ? NaN : Number(node), p);
    p = b.writeDoubleLE(fhInfo === ALL1 ? NaN : Number(fhInfo), p);
    if (stat) {
      p = b.writeUInt32LE((stat.ftype ?? 8) >>> 0, p);
      p = b.writeUInt32LE((stat.fattr ?? 0) >>> 0, p);
      p = b.writeUInt32LE((stat.owner ?? 0) >>> 0, p);
      p = b.writeUInt32LE((stat.group ?? 0) >>> 0, p);
      p = b.writeDoubleLE(stat.size === ALL1 ? 0 : Number(stat.size), p);
      p = b.writeDoubleLE(stat.mtime ?? 0, p);
    } else {
      p = b.writeUInt32LE(8, p); // row()'s defaults for an entry without attributes
      b.fill(0, p, p + 12 + 16);
      p += 12 + 16;
    }
    this.pos = p;
    this.count++;
  }

  private flush(room = 0): void {
    if (this.pos > 0) {
      if (this.fd === undefined) {
        this.dir = fs.mkdtempSync(join(tmpdir(), "ndmpd-history-"));
        this.fd = fs.openSync(join(this.dir, "rows"), "w+", 0o600);
      }
      fs.writeSync(this.fd, this.buf, 0, this.pos);
      this.pos = 0;
    }
    if (room > this.buf.length) this.buf = Buffer.allocUnsafe(room);
  }

  *drain(): Generator<FileRow> {
    try {
      if (this.fd !== undefined) {
        this.flush();
        // One read buffer, reused: a row cut at its end moves to its start before the next read
        // (a fresh buffer per read would be fresh pages to touch, 80 MB of them for 1M files).
        const b = this.buf;
        let at = 0;
        let have = 0;
        for (;;) {
          const n = fs.readSync(this.fd, b, have, b.length - have, at);
          if (n === 0) break;
          at += n;
          have += n;
          let p = 0;
          for (;;) {
            if (p + 4 > have) break;
            const len = b.readUInt32LE(p);
            if (p + 4 + len + ROW_FIXED > have) break;
            yield decodeRow(b, p + 4, len);
            p += 4 + len + ROW_FIXED;
          }
          b.copyWithin(0, p, have);
          have -= p;
        }
      } else {
        for (let p = 0; p < this.pos; ) {
          const len = this.buf.readUInt32LE(p);
          yield decodeRow(this.buf, p + 4, len);
          p += 4 + len + ROW_FIXED;
        }
      }
    } finally {
      this.dispose();
    }
  }

  dispose(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
    this.fd = undefined;
    this.dir = undefined;
    this.pos = 0;
  }
}

const SPILL_CHUNK = 1024 * 1024;
/** A row's bytes after its path: node, fhInfo (f64), ftype, mode, uid, gid (u32), size, mtime (f64). */
const ROW_FIXED = 48;

function decodeRow(b: Buffer, at: number, len: number): FileRow {
  // A copy of the path: the buffer is read into again (and a view would keep all of it alive).
  const path = Buffer.allocUnsafe(len);
  b.copy(path, 0, at, at + len);
  const p = at + len;
  const node = b.readDoubleLE(p);
  const fhInfo = b.readDoubleLE(p + 8);
  return {
    path,
    node: node !== node ? null : node,
    fhInfo: fhInfo !== fhInfo ? null : fhInfo,
    ftype: b.readUInt32LE(p + 16),
    mode: b.readUInt32LE(p + 20),
    uid: b.readUInt32LE(p + 24),
    gid: b.readUInt32LE(p + 28),
    size: b.readDoubleLE(p + 32),
    mtime: b.readDoubleLE(p + 40),
  };
}

function row(path: Buffer, stat: any, node: bigint, fhInfo: bigint): FileRow {
  const n = (v: bigint) => (v === ALL1 ? null : Number(v));
  return {
    path,
    node: n(node),
    fhInfo: n(fhInfo),
    ftype: stat?.ftype ?? 8,
    mode: stat?.fattr ?? 0,
    uid: stat?.owner ?? 0,
    gid: stat?.group ?? 0,
    size: stat ? Number(stat.size === ALL1 ? 0n : stat.size) : 0,
    mtime: stat?.mtime ?? 0,
  };
}
