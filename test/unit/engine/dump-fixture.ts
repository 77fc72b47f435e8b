/**
 * Running the dump engine in memory for the unit tests: a backup into a Buffer (with the
 * file history it posts), and a recovery from a Buffer.
 */
import fs from "node:fs";
import path from "node:path";
import { PassThrough } from "node:stream";
import type { Selection } from "../../../src/engine/selection.ts";
import { runDumpBackup } from "../../../src/engine/dump-backup.ts";
import { backupStartTime, dumpDateEnv, recordBackup, resolveBase } from "../../../src/incremental/index.ts";
import { runDumpRecover } from "../../../src/engine/dump-recover.ts";
import { FileHistory } from "../../../src/engine/history.ts";
import { reportBack, targetsOf, type TargetSpec } from "../../helpers/targets.ts";
import type { BackupOptions, BackupResult } from "../../../src/engine/backup.ts";
import type { RecoverResult } from "../../../src/engine/recover.ts";
import { Message } from "../../../src/protocol/codes.ts";
import { DirectoryIndex, DumpReader, type DumpEvent } from "../../../formats/dump/index.ts";

export type Post = { code: number; body: any };

export interface BackupRun {
  stream: Buffer;
  /** DUMP_DATE as DATA_GET_ENV returns it (a token for BASE_DATE). */
  dumpDate: string;
  result: BackupResult;
  posts: Post[];
  warnings: string[];
}

function collector(): { history: FileHistory; posts: Post[] } {
  const posts: Post[] = [];
  const history = new FileHistory({ post: (code, body) => posts.push({ code, body }), drained: async () => {} });
  return { history, posts };
}

export async function backup(
  root: string,
  stateDir: string,
  o: { level?: number; style?: "file" | "dir"; env?: Record<string, string>; history?: boolean; selection?: Selection; progress?: BackupOptions["progress"] } = {},
): Promise<BackupRun> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on("data", (c: Buffer) => chunks.push(c));
  const { history, posts } = collector();
  const warnings: string[] = [];
  // As the data service does it: the base from LEVEL (and the rest of the environment), a
  // start time, and the backup recorded once it succeeded.
  const env = new Map(Object.entries({ LEVEL: String(o.level ?? 0), ...o.env }));
  const base = resolveBase(env, { stateDir, root: Buffer.from(root), type: "dump" });
  const startTime = backupStartTime(stateDir);
  const result = await runDumpBackup({
    root: Buffer.from(root),
    out,
    history: o.history === false ? undefined : history,
    historyStyle: o.style ?? "dir",
    level: base.level,
    base,
    startTime,
    stateDir,
    env,
    selection: o.selection,
    progress: o.progress,
    signal: new AbortController().signal,
    warn: (m) => warnings.push(m),
  });
  history.flush();
  await recordBackup(stateDir, base, startTime, result.dirs);
  return { stream: Buffer.concat(chunks), dumpDate: dumpDateEnv(base, startTime).get("DUMP_DATE")!, result, posts, warnings };
}

export async function recover(
  stream: Buffer,
  targets: TargetSpec[],
  o: { extract?: boolean; recursive?: boolean; chunk?: number } = {},
): Promise<{ result: RecoverResult; posts: Post[]; warnings: string[] }> {
  const input = new PassThrough();
  const size = o.chunk ?? 64 * 1024;
  // Written piecewise so the reader sees arbitrary chunk boundaries.
  (async () => {
    for (let i = 0; i < stream.length; i += size) {
      if (!input.write(stream.subarray(i, i + size))) await new Promise((r) => input.once("drain", r));
    }
    input.end();
  })();
  const { history, posts } = collector();
  const warnings: string[] = [];
  const extract = o.extract ?? true;
  const ts = targetsOf(targets);
  const result = await runDumpRecover({
    input,
    targets: ts,
    recursive: o.recursive ?? true,
    extract,
    history: extract ? undefined : history,
    signal: new AbortController().signal,
    warn: (m) => warnings.push(m),
  });
  reportBack(ts, targets);
  history.flush();
  return { result, posts, warnings };
}

export function target(original: string, destination: string): TargetSpec {
  return {
    original: Buffer.from(original),
    destination: Buffer.from(destination),
    node: 0xffffffffffffffffn,
    fhInfo: 0xffffffffffffffffn,
  };
}

/** FH entries by kind, in the order posted. */
export function historyOf(posts: Post[]): { dirs: any[]; nodes: any[]; files: any[]; order: string[] } {
  const dirs: any[] = [];
  const nodes: any[] = [];
  const files: any[] = [];
  const order: string[] = [];
  for (const p of posts) {
    if (p.code === Message.FH_ADD_DIR) (dirs.push(...p.body.dirs), order.push("dir"));
    else if (p.code === Message.FH_ADD_NODE) (nodes.push(...p.body.nodes), order.push("node"));
    else if (p.code === Message.FH_ADD_FILE) (files.push(...p.body.files), order.push("file"));
  }
  return { dirs, nodes, files, order };
}

/** Parses a stream whole: inode offsets, paths per inode, the maps and the tape header. */
export function parse(stream: Buffer) {
  const reader = new DumpReader();
  const index = new DirectoryIndex();
  const offsets = new Map<number, number>();
  const types = new Map<number, string>();
  const content = new Map<number, Buffer[]>();
  const maps: { clri?: Buffer; bits?: Buffer } = {};
  let tape: any;
  let ended = false;
  const events: DumpEvent[] = [...reader.feed(stream), ...reader.finish()];
  for (const ev of events) {
    if (ev.kind === "tape") tape = ev.tape;
    else if (ev.kind === "map") maps[ev.which] = ev.map;
    else if (ev.kind === "inode") (offsets.set(ev.ino, ev.offset), types.set(ev.ino, ev.entry.type));
    else if (ev.kind === "directory") index.add(ev.ino, ev.entries);
    else if (ev.kind === "data") content.set(ev.ino, [...(content.get(ev.ino) ?? []), Buffer.from(ev.chunk)]);
    else if (ev.kind === "end") ended = true;
  }
  const inoOf = new Map<string, number>();
  for (const ino of offsets.keys()) for (const p of index.paths(ino)) inoOf.set(p.toString("latin1"), ino);
  return { tape, maps, offsets, types, index, inoOf, ended, content };
}

/** A small tree with one of everything a non-root user can make. */
export function makeSmallTree(root: string): void {
  fs.mkdirSync(path.join(root, "sub/deeper"), { recursive: true });
  fs.mkdirSync(path.join(root, "empty"));
  fs.writeFileSync(path.join(root, "a.txt"), "alpha\n");
  fs.writeFileSync(path.join(root, "sub/b.bin"), Buffer.alloc(700_000, 7)); // > 512 slots: TS_ADDR
  fs.writeFileSync(path.join(root, "sub/deeper/c.txt"), "deep\n");
  fs.writeFileSync(path.join(root, "big.bin"), Buffer.alloc(300_000, 3)); // past the read-ahead size
  fs.linkSync(path.join(root, "a.txt"), path.join(root, "sub/a-link"));
  fs.symlinkSync("a.txt", path.join(root, "sym"));
  const fd = fs.openSync(path.join(root, "sparse"), "w");
  fs.writeSync(fd, Buffer.from("tail"), 0, 4, 5 * 1024 * 1024);
  fs.closeSync(fd);
  fs.writeFileSync(path.join(root, "mode600"), "x", { mode: 0o600 });
  fs.chmodSync(path.join(root, "mode600"), 0o600);
  fs.utimesSync(path.join(root, "a.txt"), 1_600_000_000.123456, 1_600_000_000.654321);
}
