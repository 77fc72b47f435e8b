/** Shared helpers for the tar codec tests. */
import { spawnSync, type SpawnSyncOptions } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Entry } from "../../../../formats/entry.ts";
import { type TarEvent, TarReader } from "../../../../formats/tar/reader.ts";
import { contentSize, encodeHeader, endOfArchive, padding } from "../../../../formats/tar/writer.ts";

export interface Item {
  entry: Entry;
  /** Content bytes as the writer's caller streams them (sparse: the data runs, concatenated). */
  data?: Buffer;
}

/** Build a whole archive in memory; also returns each entry's first-header offset. */
export function buildArchive(items: Item[]): { archive: Buffer; offsets: number[] } {
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  let pos = 0;
  const push = (b: Buffer): void => {
    parts.push(b);
    pos += b.length;
  };
  for (const { entry, data } of items) {
    offsets.push(pos);
    push(encodeHeader(entry));
    const n = contentSize(entry);
    const content = data ?? Buffer.alloc(0);
    if (content.length !== n) throw new Error(`test bug: ${entry.path} needs ${n} bytes, has ${content.length}`);
    push(content);
    push(padding(n));
  }
  push(endOfArchive());
  return { archive: Buffer.concat(parts), offsets };
}

export interface ReadItem {
  entry: Entry;
  offset: number;
  /** Stored bytes concatenated in stream order. */
  data: Buffer;
  /** Logical offset of every data chunk, merged where contiguous: [offset, length]. */
  extents: Array<[number, number]>;
}

/** Group a flat event list into entries; checks the event grammar as it goes. */
export function collect(events: TarEvent[]): { items: ReadItem[]; ended: boolean } {
  const items: ReadItem[] = [];
  let open: (ReadItem & { chunks: Buffer[] }) | undefined;
  let ended = false;
  for (const ev of events) {
    if (ended) throw new Error("event after end");
    switch (ev.kind) {
      case "entry":
        if (open) throw new Error("entry inside entry");
        open = { entry: ev.entry, offset: ev.offset, data: Buffer.alloc(0), extents: [], chunks: [] };
        break;
      case "data": {
        if (!open) throw new Error("data outside entry");
        open.chunks.push(Buffer.from(ev.chunk));
        const last = open.extents[open.extents.length - 1];
        if (last && last[0] + last[1] === ev.fileOffset) last[1] += ev.chunk.length;
        else open.extents.push([ev.fileOffset, ev.chunk.length]);
        break;
      }
      case "end-of-entry": {
        if (!open) throw new Error("end-of-entry outside entry");
        const { chunks, ...rest } = open;
        items.push({ ...rest, data: Buffer.concat(chunks) });
        open = undefined;
        break;
      }
      case "end":
        if (open) throw new Error("end inside entry");
        ended = true;
        break;
    }
  }
  if (open) throw new Error("unterminated entry");
  return { items, ended };
}

/** Feed `archive` in pieces of the given sizes (cycled) and return all events. */
export function readInChunks(archive: Buffer, sizes: number[], startOffset = 0): TarEvent[] {
  const reader = new TarReader({ startOffset });
  const events: TarEvent[] = [];
  let pos = 0;
  let k = 0;
  while (pos < archive.length) {
    const n = sizes[k++ % sizes.length]!;
    // Copy, so a test would notice if the reader kept views of a buffer across calls.
    events.push(...reader.feed(Buffer.from(archive.subarray(pos, pos + n))));
    pos += n;
  }
  events.push(...reader.finish());
  return events;
}

/** Expand sparse data into the full logical file (for small files only). */
export function logicalContent(item: ReadItem): Buffer {
  const out = Buffer.alloc(item.entry.size);
  let p = 0;
  for (const [off, len] of item.extents) {
    item.data.copy(out, off, p, p + len);
    p += len;
  }
  return out;
}

// ---- external tools -------------------------------------------------------------------

export function run(cmd: string, args: string[], options: SpawnSyncOptions = {}): Buffer {
  // spawnSync waits for the child, so nothing is left for PID 1 to reap.
  const r = spawnSync(cmd, args, { maxBuffer: 64 * 1024 * 1024, ...options });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${String(r.stderr)}`);
  }
  return r.stdout as Buffer;
}

export function runWithStderr(cmd: string, args: string[], options: SpawnSyncOptions = {}): { stdout: Buffer; stderr: string; status: number | null } {
  const r = spawnSync(cmd, args, { maxBuffer: 64 * 1024 * 1024, ...options });
  if (r.error) throw r.error;
  return { stdout: r.stdout as Buffer, stderr: String(r.stderr), status: r.status };
}

function hasTool(cmd: string): boolean {
  const r = spawnSync(cmd, ["--version"], { stdio: "ignore" });
  return !r.error && r.status === 0;
}

/**
 * Whether tests needing `cmd` should run. Outside CI a missing tool skips them with a message;
 * in CI they run anyway and fail, so a broken CI image cannot pass silently.
 */
export function toolTestsEnabled(cmd: string, install: string): boolean {
  if (hasTool(cmd)) return true;
  if (process.env.CI) return true;
  console.warn(`skipping ${cmd} interop tests: ${cmd} not found (${install})`);
  return false;
}

export function isGnuTar(): boolean {
  const r = spawnSync("tar", ["--version"]);
  return !r.error && String(r.stdout).includes("GNU tar");
}

export function tempDir(): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), "ndmpd-tar-"));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

// ---- entry builders --------------------------------------------------------------------

const T0 = { sec: 1_700_000_000, nsec: 0 };

export function file(path: string | Buffer, data: Buffer, extra: Partial<Entry> = {}): Item {
  return {
    entry: { path: toBuf(path), type: "file", mode: 0o644, uid: 1000, gid: 1000, size: data.length, mtime: T0, ...extra },
    data,
  };
}

export function node(path: string | Buffer, type: Entry["type"], extra: Partial<Entry> = {}): Item {
  return {
    entry: { path: toBuf(path), type, mode: type === "directory" ? 0o755 : 0o644, uid: 0, gid: 0, size: 0, mtime: T0, ...extra },
  };
}

export function toBuf(s: string | Buffer): Buffer {
  return typeof s === "string" ? Buffer.from(s) : s;
}

/** Deterministic pseudo-random bytes. */
export function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
