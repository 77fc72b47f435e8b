/**
 * Driving ndmjob (Amanda's NDMJOB) in tests: as DMA, and its daemon as a tape agent inside
 * a network namespace (it binds every address). See shared/interop/ndmjob.md.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { Netns } from "./netns.ts";
import { NDMJOB } from "./peers.ts";
import { run, type RunResult } from "./run.ts";

export interface NdmjobDaemon {
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts `ndmjob -o test-daemon` (READY on stdout, exits at stdin EOF) in its own PID
 * namespace inside `ns`: it forks a child per connection and never reaps them, and the PID
 * namespace takes every one of them down with it.
 */
export async function startNdmjobDaemon(ns: Netns, port: number, extra: string[] = []): Promise<NdmjobDaemon> {
  const [cmd, ...pre] = ns.prefix();
  const p: ChildProcess = spawn(cmd!, [...pre, "unshare", "--pid", "--fork", "--kill-child", NDMJOB, "-o", "test-daemon", ...extra, "-p", String(port)], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const exited = new Promise<void>((r) => p.once("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    let out = "";
    p.stdout!.on("data", (c) => {
      out += c;
      if (out.includes("READY")) resolve();
    });
    p.once("exit", (code) => reject(new Error(`ndmjob daemon exited (${code}): ${out}`)));
  });
  p.stderr!.resume();
  return {
    port,
    async stop() {
      p.stdin!.end();
      const t = setTimeout(() => p.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Runs ndmjob inside the namespace with a time limit. */
export function ndmjob(ns: Netns | undefined, args: string[], timeoutMs = 300_000): Promise<RunResult> {
  const pre = ns?.prefix() ?? [];
  const argv = [...pre, NDMJOB, ...args];
  return run(argv[0]!, argv.slice(1), { timeoutMs });
}

/** ndmjob's own verdict on a -c/-x/-t job (shared/interop/ndmjob.md §1.3). */
export function jobSucceeded(out: string): boolean {
  return out.includes('SESS "Operation ended OKAY"') && /SESS "Operation complete"\n/.test(out + "\n") && !out.includes("Operation complete but had problems");
}

/** Parses a sorted ndmjob index file into its lines by tag. */
export function parseIndex(text: string): { files: Map<string, { stat: string; fhInfo: number }>; env: Map<string, string>; media: string[] } {
  const files = new Map<string, { stat: string; fhInfo: number }>();
  const env = new Map<string, string>();
  const media: string[] = [];
  for (const line of text.split("\n")) {
    let m;
    if ((m = /^DHf (\S+) UNIX (.*) @(\d+)$/.exec(line))) files.set(decodeName(m[1]!), { stat: m[2]!, fhInfo: Number(m[3]) });
    else if ((m = /^DE ([^=]+)=(.*)$/.exec(line))) env.set(m[1]!, m[2]!);
    else if ((m = /^CM (.*)$/.exec(line))) media.push(m[1]!);
  }
  return { files, env, media };
}

/** ndmjob escapes bytes <= ' ', > 0x7e and '%' as %XX: back to the raw bytes (latin1 string). */
export function decodeName(s: string): string {
  return Buffer.from(s.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("latin1");
}

/**
 * The payload of tape file `fileNo` of an ndmjob simulated tape (shared/interop/ndmjob.md §6.1:
 * 32-byte little-endian gap headers magic, type, prev_size, size; DATA gaps carry a record).
 */
export function simtapeFile(tape: Buffer, fileNo = 0): Buffer {
  const MAGIC = 0x0beefee0n;
  const tag = (s: string) => BigInt(Buffer.from(s, "latin1").readUInt32LE(0));
  const DATA = tag("DATA");
  const FILE = tag("FILE");
  const EOT = tag("EOT_");
  const parts: Buffer[] = [];
  let off = 0;
  let file = 0;
  while (off + 32 <= tape.length) {
    if (tape.readBigUInt64LE(off) !== MAGIC) throw new Error(`bad simulated-tape gap at ${off}`);
    const type = tape.readBigUInt64LE(off + 8);
    const size = Number(tape.readBigUInt64LE(off + 24));
    off += 32;
    if (type === DATA) {
      if (file === fileNo) parts.push(tape.subarray(off, off + size));
      off += size;
    } else if (type === FILE) file++;
    else if (type === EOT) break;
  }
  return Buffer.concat(parts);
}

/** Accepts one connection on 127.0.0.1:PORT, sends FILE, closes (like tcpcat.py send). */
const TCP_SEND = `
const net = require("net"), fs = require("fs");
const [port, file] = process.argv.slice(1);
const srv = net.createServer((c) => { c.end(fs.readFileSync(file)); c.on("close", () => srv.close()); c.resume(); });
srv.listen(Number(port), "127.0.0.1", () => console.log("listening"));
setTimeout(() => process.exit(2), 120000).unref();
`;

/**
 * Serves `file` to the first connection on 127.0.0.1:`port` inside `ns` (the other end of
 * `ndmjob -o tape-tcp=...`). Resolves once it listens; `sent` resolves when it has exited.
 */
export async function serveFileOnce(ns: Netns, port: number, file: string): Promise<{ sent: Promise<void> }> {
  const [cmd, ...pre] = ns.prefix();
  const p = spawn(cmd!, [...pre, process.execPath, "-e", TCP_SEND, String(port), file], { stdio: ["ignore", "pipe", "inherit"] });
  const sent = new Promise<void>((r) => p.once("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once("data", () => resolve());
    p.once("exit", (code) => reject(new Error(`file server exited (${code}) before listening`)));
  });
  p.stdout!.resume();
  return { sent };
}

/** The DHd/DHn/DHr lines of an ndmjob index (dump's dir/node history), and paths through them. */
export function parseDirIndex(text: string) {
  const children = new Map<number, Map<string, number>>();
  const nodes = new Map<number, number>();
  let root: number | undefined;
  for (const line of text.split("\n")) {
    let m;
    if ((m = /^DHd (\d+) (\S+) UNIX (\d+)$/.exec(line))) {
      const parent = Number(m[1]);
      if (!children.has(parent)) children.set(parent, new Map());
      children.get(parent)!.set(decodeName(m[2]!), Number(m[3]));
    } else if ((m = /^DHn (\d+) UNIX .* @(\d+)$/.exec(line))) nodes.set(Number(m[1]), Number(m[2]));
    else if ((m = /^DHr (\d+)$/.exec(line))) root = Number(m[1]);
  }
  const resolve = (rel: string): number | undefined => {
    let node = root;
    for (const part of rel.split("/")) {
      if (node === undefined) return undefined;
      node = children.get(node)?.get(part);
    }
    return node;
  };
  return { root, nodes, resolve };
}
