// Run under Bun (compiled with `bun build --compile` by the engine tests, or plain `bun`): walks
// or copies a tree with the native layer (SEEK_DATA/SEEK_HOLE, l*xattr) and prints one JSON line.
//   probe walk <root>          entries: path/linkTarget/xattrs as hex, sparse runs
//   probe copy <root> <dest>   walk + RestoreWriter; stats and walk errors
import { loadNative } from "../../../src/native/index.ts";
import { walk } from "../../../src/engine/walker.ts";
import { copyTree } from "./copy-tree.ts";

const [mode, root, dest] = process.argv.slice(2);
const native = await loadNative();
const hex = (b: Buffer | undefined) => b?.toString("hex");

if (mode === "walk" && root) {
  const entries: unknown[] = [];
  const errors: string[] = [];
  for await (const { entry } of walk({ root: Buffer.from(root), native, onError: (p, e) => errors.push(`${hex(p)}: ${e.message}`) })) {
    entries.push({
      path: hex(entry.path),
      type: entry.type,
      size: entry.size,
      mtime: entry.mtime,
      linkTarget: hex(entry.linkTarget),
      sparse: entry.sparse,
      xattrs: entry.xattrs?.map(([n, v]) => [hex(n), hex(v)]),
    });
  }
  console.log(JSON.stringify({ runtime: native.runtime, entries, errors }));
} else if (mode === "copy" && root && dest) {
  const { writer, walkErrors } = await copyTree(Buffer.from(root), Buffer.from(dest), native);
  console.log(JSON.stringify({
    runtime: native.runtime,
    files: writer.stats.files,
    bytes: writer.stats.bytes,
    errors: writer.stats.errors.map((e) => `${hex(e.path)}: ${e.reason}`),
    walkErrors: walkErrors.map((e) => `${hex(e.path)}: ${e.message}`),
  }));
} else {
  console.error("usage: probe walk <root> | probe copy <root> <dest>");
  process.exit(2);
}
