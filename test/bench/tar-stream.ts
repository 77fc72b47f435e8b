/**
 * Measurement, not a test: our pax writer/reader against tar-stream's pack/extract for many
 * small in-memory files, plus a check of what tar-stream can and cannot carry.
 *
 *   npx bun test/unit/formats/tar/measure-tar-stream.ts [files]
 *   npx deno run -A test/unit/formats/tar/measure-tar-stream.ts [files]
 */
import { performance } from "node:perf_hooks";
import tarStream from "tar-stream";
import type { Entry } from "../../formats/entry.ts";
import { TarFormatError, TarReader } from "../../formats/tar/reader.ts";
import { contentSize, encodeHeader, endOfArchive, padding } from "../../formats/tar/writer.ts";

const FILES = Number(process.argv[2] ?? 20_000);
const ROUNDS = 5;

function makeFiles(): Array<{ name: string; data: Buffer }> {
  const files = [];
  for (let i = 0; i < FILES; i++) {
    files.push({ name: `dir${i % 100}/file-${i}.txt`, data: Buffer.alloc(100 + (i % 1900), i & 0xff) });
  }
  return files;
}

function ours(files: Array<{ name: string; data: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const entry: Entry = {
      path: Buffer.from(f.name),
      type: "file",
      mode: 0o644,
      uid: 1000,
      gid: 1000,
      size: f.data.length,
      mtime: { sec: 1_700_000_000, nsec: 0 },
    };
    parts.push(encodeHeader(entry), f.data, padding(contentSize(entry)));
  }
  parts.push(endOfArchive());
  return Buffer.concat(parts);
}

async function theirs(files: Array<{ name: string; data: Buffer }>): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on("end", () => resolve());
    pack.on("error", reject);
  });
  const mtime = new Date(1_700_000_000_000);
  for (const f of files) pack.entry({ name: f.name, size: f.data.length, mode: 0o644, uid: 1000, gid: 1000, mtime }, f.data);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function readOurs(archive: Buffer): number {
  const reader = new TarReader();
  let n = 0;
  for (let p = 0; p < archive.length; p += 65536) {
    for (const ev of reader.feed(archive.subarray(p, p + 65536))) if (ev.kind === "entry") n++;
  }
  reader.finish();
  return n;
}

async function readTheirs(archive: Buffer): Promise<number> {
  const extract = tarStream.extract();
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (_h, stream, next) => {
      n++;
      stream.on("end", () => next());
      stream.resume();
    });
    extract.on("finish", () => resolve());
    extract.on("error", reject);
  });
  for (let p = 0; p < archive.length; p += 65536) extract.write(archive.subarray(p, p + 65536));
  extract.end(undefined);
  await done;
  return n;
}

async function time(label: string, f: () => unknown): Promise<void> {
  const ms: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    await f();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)]!;
  console.log(`${label.padEnd(28)} median ${median.toFixed(1).padStart(7)} ms  (${((FILES / median) * 1000).toFixed(0)} files/s)`);
}

/** What tar-stream writes for things our backups need, decoded by our reader. */
async function capabilities(): Promise<void> {
  const binName = Buffer.from([0x61, 0xff, 0xfe]).toString("latin1"); // the best a string API can do
  const cases: Array<[string, Parameters<ReturnType<typeof tarStream.pack>["entry"]>[0]]> = [
    ["name bytes 61 ff fe", { name: binName, size: 0 }],
    ["mtime 4000000000.123 (2096)", { name: "t", size: 0, mtime: new Date(4_000_000_000_123) }],
    ["uid 3000000", { name: "u", size: 0, uid: 3_000_000 }],
    ["xattr user.bin = 00 ff 0a", { name: "x", size: 0, pax: { "SCHILY.xattr.user.bin": "\u0000\u00ff\n" } }],
  ];
  for (const [want, header] of cases) {
    const pack = tarStream.pack();
    const chunks: Buffer[] = [];
    pack.on("data", (c: unknown) => chunks.push(c as Buffer));
    const ended = new Promise((resolve) => {
      pack.on("end", () => resolve(undefined));
      pack.on("error", (e: Error) => resolve(console.log(`  ${want}: pack error ${e.message}`)));
    });
    pack.entry(header, Buffer.alloc(0));
    pack.finalize();
    await ended;
    try {
      const reader = new TarReader();
      const events = [...reader.feed(Buffer.concat(chunks)), ...reader.finish()];
      const e = events.find((ev) => ev.kind === "entry")!.entry;
      const x = e.xattrs ? ` xattr=${e.xattrs[0]![1].toString("hex")}` : "";
      console.log(`  wanted ${want}: got name=${e.path.toString("hex")} uid=${e.uid} mtime=${e.mtime.sec}.${e.mtime.nsec}${x}`);
    } catch (err) {
      if (!(err instanceof TarFormatError)) throw err;
      console.log(`  wanted ${want}: unreadable header (${err.message})`);
    }
  }
}

const files = makeFiles();
const a = ours(files);
const b = await theirs(files);
console.log(`${FILES} files, ${(a.length / 1e6).toFixed(1)} MB archive (ours), ${(b.length / 1e6).toFixed(1)} MB (tar-stream)`);
// Field formatting differs (tar-stream writes 6 octal digits + space + NUL), so compare lengths only.
console.log(`first header, ours:       ${JSON.stringify(a.toString("latin1", 100, 157))}`);
console.log(`first header, tar-stream: ${JSON.stringify(b.toString("latin1", 100, 157))}`);
await time("write: ours", () => ours(files));
await time("write: tar-stream pack", () => theirs(files));
await time("read:  ours (64 KiB chunks)", () => readOurs(a));
await time("read:  tar-stream extract", () => readTheirs(a));
console.log("tar-stream capabilities:");
await capabilities();
