// Run under Bun (compiled with `bun build --compile` by the engine tests, or plain `bun`): walks
// or copies a tree with the native layer (SEEK_DATA/SEEK_HOLE, l*xattr) and prints one JSON line.
//   probe walk <root>          entries: path/linkTarget/xattrs as hex, sparse runs
//   probe copy <root> <dest>   walk + RestoreWriter; stats and walk errors
//   probe scan <root> <auto|inline> [EXCLUDE]
//                              scan.ts (auto = the worker pair when the build has them): entries,
//                              sha256 of read-ahead contents (or the error code), reports
//                              (env PROBE_XATTRS=directories: the scan's xattrs option;
//                              PROBE_STAT_FILES=n: statFiles false; each ListedNames then adds
//                              its names, marked listed, where it came)
//   probe list <root>          a list scan of the tree's non-directories beside the in-thread scan
//   probe abort <root>         five scans stopped early: descriptors before and after
//   probe rescan <root>        four scans in one process (the kept workers): same results?
//   probe prewarm <root>       scan workers started ahead (prewarmScanWorkers), then scans (one without read-ahead): threads
//                              before, after the start and after the scan; its entries beside an inline scan
//   probe frames <root> <room> <align>
//                              a worker scan with header room: per item, its frame's length,
//                              where its content sits in it, and whether the rest of the frame after the content is zeros
import { loadNative } from "../../../src/native/index.ts";
import { createHash } from "node:crypto";
import { FRAME_POOL, packList, prewarmScanWorkers, recycleFrames, scan, scanWorkerUrl } from "../../../src/engine/scan.ts";
import { walk } from "../../../src/engine/walker.ts";
import { copyTree } from "./copy-tree.ts";
import type { Entry } from "../../../formats/entry.ts";

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
} else if (mode === "scan" && root && (dest === "auto" || dest === "inline")) {
  const exclude = process.argv[5] ? [process.argv[5]] : [];
  const entries: unknown[] = [];
  const reports: string[] = [];
  for await (const { entry, content } of scan({
    root: Buffer.from(root),
    native,
    readAhead: 256 * 1024,
    selection: { exclude, files: [] },
    mode: dest,
    xattrs: process.env.PROBE_XATTRS === "directories" ? "directories" : undefined,
    statFiles: process.env.PROBE_STAT_FILES === "n" ? false : undefined,
    onListed: (l) => {
      for (let i = 0; i < l.count; i++) {
        const name = l.bytes.subarray(l.starts[i]!, l.starts[i]! + l.lengths[i]!);
        const path = l.dir.length === 1 && l.dir[0] === 0x2e ? name : Buffer.concat([l.dir, Buffer.from("/"), name]);
        entries.push({ listed: true, path: hex(path), type: l.types[i], dev: l.dev, ino: l.inos[i] });
      }
    },
    onError: (p, e) => reports.push(`${hex(p)}: ${(e as NodeJS.ErrnoException).code ?? ""} ${e.message}`),
  })) {
    entries.push({
      ...entry,
      path: hex(entry.path),
      linkTarget: hex(entry.linkTarget),
      xattrs: entry.xattrs?.map(([n, v]) => [hex(n), hex(v)]),
      content: content === undefined ? undefined : content instanceof Error ? `error ${(content as NodeJS.ErrnoException).code ?? content.message}` : createHash("sha256").update(content).digest("hex"),
    });
  }
  console.log(JSON.stringify({ runtime: native.runtime, worker: dest === "auto" && scanWorkerUrl() !== undefined, entries, reports }));
} else if (mode === "rescan" && root) {
  // Kept workers (scan.ts): a full scan, one left after 3 items, then two full ones, in one
  // process that must then exit by itself (idle workers hold nothing open).
  const once = async (stopAfter = Infinity) => {
    const seen: string[] = [];
    for await (const { entry, content } of scan({ root: Buffer.from(root), native, readAhead: 256 * 1024, onError: () => {} })) {
      const sum = content === undefined || content instanceof Error ? "" : createHash("sha256").update(content).digest("hex");
      seen.push(`${hex(entry.path)} ${entry.type} ${sum}`);
      if (seen.length >= stopAfter) break;
    }
    return seen;
  };
  const first = await once();
  const partial = await once(3);
  const second = await once();
  const third = await once();
  console.log(JSON.stringify({ worker: scanWorkerUrl() !== undefined, count: first.length, partial: partial.length, same: JSON.stringify(first) === JSON.stringify(second) && JSON.stringify(second) === JSON.stringify(third) }));
} else if (mode === "prewarm" && root) {
  // A pair started ahead is the one the next scan takes: the scan starts no thread of its own.
  const { readdirSync, readFileSync } = await import("node:fs");
  const threads = () => readdirSync("/proc/self/task").length;
  const entries = async (m: "auto" | "inline") => {
    const seen: string[] = [];
    for await (const { entry, content } of scan({ root: Buffer.from(root), native, readAhead: 256 * 1024, mode: m, onError: () => {} })) {
      const sum = content === undefined || content instanceof Error ? "" : createHash("sha256").update(content).digest("hex");
      seen.push(`${hex(entry.path)} ${entry.type} ${sum}`);
    }
    return seen;
  };
  /** Worker threads (their name), apart from the runtime's own. */
  const workers = () => readdirSync("/proc/self/task").filter((t) => readFileSync(`/proc/self/task/${t}/comm`, "utf8").trim() === "Worker").length;
  const before = threads();
  await prewarmScanWorkers();
  await new Promise((r) => setTimeout(r, 300));
  const started = threads();
  const pair = workers();
  const scanned = await entries("auto");
  const after = threads();
  // A scan that reads nothing ahead (dump's first pass) borrows the idle pair's walker, and the
  // next scan takes the pair again: no worker started by either.
  let walked = 0;
  for await (const _ of scan({ root: Buffer.from(root), native, readAhead: 0, onError: () => {} })) walked++;
  const afterWalk = workers();
  const again = await entries("auto");
  const inline = await entries("inline");
  console.log(JSON.stringify({ worker: scanWorkerUrl() !== undefined, before, started, after, pair, afterWalk, afterAgain: workers(), walked, count: scanned.length, same: JSON.stringify(scanned) === JSON.stringify(inline) && JSON.stringify(again) === JSON.stringify(inline) }));
} else if (mode === "abort" && root) {
  // Scans stopped early, each after a few entries (their workers terminated mid-walk): the
  // process holds no more descriptors afterwards than before.
  const { readdirSync } = await import("node:fs");
  const open = () => readdirSync("/proc/self/fd").length;
  const before = open();
  for (let round = 0; round < 5; round++) {
    let n = 0;
    for await (const _ of scan({ root: Buffer.from(root), native, readAhead: 256 * 1024, mode: "auto", onError: () => {} })) if (++n >= 3000) break;
  }
  await new Promise((r) => setTimeout(r, 200));
  console.log(JSON.stringify({ worker: scanWorkerUrl() !== undefined, at: native.at != null, before, after: open() }));
} else if (mode === "pool" && root) {
  // A recycled scan (the tar backup over TCP) with a consumer that gives a frame buffer back
  // only when the scan waits and it holds FRAME_POOL, and then only 300 ms later: the reader must
  // stop at the pool (without one, it has sent the next batch long before) and the scan still
  // runs to its end.
  const held: ArrayBufferLike[] = [];
  let most = 0;
  let items = 0;
  let content = 0;
  let waits = 0;
  let current: ArrayBufferLike | undefined;
  let later: ReturnType<typeof setTimeout> | undefined;
  for await (const item of scan({
    root: Buffer.from(root),
    native,
    readAhead: 256 * 1024,
    headerRoom: 1536,
    recycled: true,
    beforeWait: () => {
      waits++;
      // Every held buffer but the current batch's is done with; give back the oldest only.
      if (held.length < FRAME_POOL || later) return;
      later = setTimeout(() => {
        later = undefined;
        const i = held.findIndex((b) => b !== current);
        if (i >= 0) recycleFrames(held.splice(i, 1)[0]!);
      }, 300);
    },
    onError: () => {},
  })) {
    items++;
    if (Buffer.isBuffer(item.content)) content += item.content.length;
    const b = item.frame?.buffer;
    if (b && !held.includes(b)) held.push(b);
    current = b;
    most = Math.max(most, held.length);
  }
  console.log(JSON.stringify({ items, content, most, waits, pool: FRAME_POOL }));
} else if (mode === "list" && root) {
  // A list scan (dump's second pass): the non-directories of an in-thread scan, with a name
  // that does not exist in the middle, described again by the workers. Prints both, in order.
  // The fields the dump writer uses: the list scan describes relative to an open directory
  // (statx) where the walk used lstat, and must give the same.
  const described = (entry: Entry, content: Buffer | Error | undefined) => ({
    path: hex(entry.path)!,
    type: entry.type,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    size: entry.size,
    nlink: entry.nlink,
    ino: String(entry.ino),
    dev: String(entry.dev),
    // (Not atime: the first scan's reads move it.)
    mtime: entry.mtime,
    ctime: entry.ctime,
    device: entry.devMajor === undefined ? undefined : [entry.devMajor, entry.devMinor],
    linkTarget: hex(entry.linkTarget),
    sparse: entry.sparse,
    xattrs: entry.xattrs?.map(([n, v]) => [hex(n), hex(v)]),
    content: sum(content),
  });
  const walked: unknown[] = [];
  const paths: Buffer[] = [];
  const sum = (c: Buffer | Error | undefined) => (c === undefined ? undefined : c instanceof Error ? "error" : createHash("sha256").update(c).digest("hex"));
  for await (const { entry, content } of scan({ root: Buffer.from(root), native, readAhead: 256 * 1024, mode: "inline", onError: () => {} })) {
    if (entry.type === "directory" || entry.type === "hardlink") continue;
    paths.push(entry.path);
    walked.push(described(entry, content));
  }
  const half = Math.floor(paths.length / 2);
  // The first three again at the end: a directory left and come back to.
  const list = [...paths.slice(0, half), Buffer.from("no-such-file"), ...paths.slice(half), ...paths.slice(0, 3)];
  const listed: unknown[] = [];
  for await (const { entry, content } of scan({ root: Buffer.from(root), native, readAhead: 256 * 1024, list: packList(list), onError: (p, e) => listed.push({ report: hex(p), code: (e as NodeJS.ErrnoException).code }) })) {
    listed.push(described(entry, content));
  }
  console.log(JSON.stringify({ walked, listed, half }));
} else if (mode === "frames" && root && dest) {
  const room = Number(dest);
  const align = Number(process.argv[5]);
  const items: unknown[] = [];
  for await (const { entry, content, frame } of scan({ root: Buffer.from(root), native, readAhead: 256 * 1024, headerRoom: room, frameAlign: align, onError: () => {} })) {
    const at = content instanceof Buffer && frame && content.buffer === frame.buffer ? content.byteOffset - frame.byteOffset : undefined;
    const tail = frame && content instanceof Buffer ? frame.subarray(room + entry.size) : undefined;
    items.push({ path: hex(entry.path), size: entry.size, content: content instanceof Buffer, frame: frame?.length, at, zeros: tail?.every((b) => b === 0) });
  }
  console.log(JSON.stringify({ items }));
} else {
  console.error("usage: probe walk <root> | probe copy <root> <dest> | probe scan <root> <auto|inline> [EXCLUDE]");
  process.exit(2);
}
