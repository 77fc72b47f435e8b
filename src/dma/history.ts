/**
 * File history posts (FH_ADD_FILE, FH_ADD_DIR, FH_ADD_NODE) collected into catalog rows.
 */
import type { FileRow } from "../catalog/catalog.ts";
import type { Post } from "../client/client.ts";
import { ALL1, Message } from "../protocol/codes.ts";
import { toBuffer } from "../protocol/xdr/codec.ts";


/** Collects FH_ADD_FILE (path style) and FH_ADD_DIR/FH_ADD_NODE (dir/node style) into rows. */
export class HistoryCollector {
  private readonly files: FileRow[] = [];
  private readonly dirs: Array<{ name: Buffer; node: bigint; parent: bigint }> = [];
  private readonly nodes = new Map<bigint, { stat: any; fhInfo: bigint }>();
  count = 0;

  add(p: Post): void {
    if (p.code === Message.FH_ADD_FILE) {
      for (const f of p.body?.files ?? []) {
        const name = f.names.find((n: any) => n.fs_type === 0) ?? f.names[0];
        this.files.push(row(toBuffer(name.unix_name), f.stats[0], f.node, f.fh_info));
        this.count++;
      }
    } else if (p.code === Message.FH_ADD_DIR) {
      for (const d of p.body?.dirs ?? []) {
        const name = d.names.find((n: any) => n.fs_type === 0) ?? d.names[0];
        this.dirs.push({ name: toBuffer(name.unix_name), node: d.node, parent: d.parent });
      }
    } else if (p.code === Message.FH_ADD_NODE) {
      for (const n of p.body?.nodes ?? []) {
        this.nodes.set(n.node, { stat: n.stats[0], fhInfo: n.fh_info });
        this.count++;
      }
    }
  }

  /** Every entry with its full path ("/" = the root). Dir/node history is resolved here. */
  rows(): FileRow[] {
    if (this.dirs.length === 0) return this.files;
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
