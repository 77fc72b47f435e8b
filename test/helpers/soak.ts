/**
 * The soak: N workers against one compiled server, each backing up its own tree (tar, to a
 * receiver in this process) and recovering that stream into a fresh directory, over and over
 * for the given time. Every job must end SUCCESSFUL and restore every file; the server's
 * descriptors and RSS are sampled after the first round (the warm baseline) and at the end;
 * each worker's throughput is reported, so fairness shows as the slowest over the fastest.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import type { NdmpClient } from "../../src/client/client.ts";
import { AddrType, DataHaltReason as Halt, Message } from "../../src/protocol/codes.ts";
import { tcpAddr } from "../../src/transport/tcp.ts";
import { dma, listenOnce, Receiver, seededBytes, sendAll, until } from "./dma.ts";
import type { RunningServer } from "./server.ts";

export interface SoakResult {
  workers: number;
  seconds: number;
  jobs: number;
  failures: string[];
  /** Bytes per second of each worker, backup and recovery together. */
  rates: number[];
  /** The slowest worker's rate over the fastest's. */
  fairness: number;
  fds: [number, number];
  rssKiB: [number, number, number];
}

async function connectData(c: NdmpClient): Promise<Socket> {
  const l = await listenOnce();
  await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", l.port)] } });
  const s = await l.accepted;
  s.on("error", () => {});
  return s;
}

const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);

/** A tree of `files` files, about `mib` MiB in all. */
function makeTree(dir: string, files: number, mib: number, seed: number): void {
  mkdirSync(dir, { recursive: true });
  const each = Math.floor((mib * 1024 * 1024) / files);
  for (let i = 0; i < files; i++) writeFileSync(join(dir, `f${i}`), seededBytes(each, seed * 1000 + i));
}

async function oneRound(srv: RunningServer, tree: string, dest: string, files: number): Promise<number> {
  const c = await dma(srv.port);
  try {
    // Backup.
    const recv = new Receiver(await connectData(c));
    let since = c.posts.length;
    await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: tree }] });
    const b = await c.waitForPost(Message.NOTIFY_DATA_HALTED, 300_000, since);
    if (b.body.reason !== Halt.SUCCESSFUL) throw new Error(`backup halted ${b.body.reason}`);
    await until(() => recv.closed, 30_000, "the backup stream to end");
    const stream = Buffer.from(recv.bytes());
    await c.request(Message.DATA_STOP);
    // Recovery of that stream into a fresh directory.
    rmSync(dest, { recursive: true, force: true });
    const sender = await connectData(c);
    since = c.posts.length;
    await c.request(Message.DATA_START_RECOVER, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: dest }, { name: "PREFIX", value: dest }], nlist: [] });
    await sendAll(sender, stream);
    const r = await c.waitForPost(Message.NOTIFY_DATA_HALTED, 300_000, since);
    if (r.body.reason !== Halt.SUCCESSFUL) throw new Error(`recovery halted ${r.body.reason}`);
    await c.request(Message.DATA_STOP);
    const got = readdirSync(dest).length;
    if (got !== files) throw new Error(`recovery restored ${got} of ${files} files`);
    return stream.length * 2;
  } finally {
    await c.close();
  }
}

export async function soak(srv: RunningServer, work: string, opts: { workers: number; seconds: number; files: number; mib: number }): Promise<SoakResult> {
  const trees = Array.from({ length: opts.workers }, (_, i) => join(work, `tree${i}`));
  trees.forEach((t, i) => makeTree(t, opts.files, opts.mib, i + 1));
  const failures: string[] = [];
  const bytes = new Array<number>(opts.workers).fill(0);
  let jobs = 0;
  // The first round warms the server (scan workers, buffers): the baseline is taken after it.
  await Promise.all(trees.map((t, i) => oneRound(srv, t, join(work, `dest${i}`), opts.files).catch((e) => failures.push(`warm-up ${i}: ${e.message}`))));
  await new Promise((r) => setTimeout(r, 500));
  const fds0 = srv.fdCount();
  const rss0 = rssKiB(srv.pid);
  let rssMax = rss0;
  const started = Date.now();
  const deadline = started + opts.seconds * 1000;
  const sampler = setInterval(() => (rssMax = Math.max(rssMax, rssKiB(srv.pid))), 500);
  await Promise.all(
    trees.map(async (t, i) => {
      while (Date.now() < deadline) {
        try {
          bytes[i]! += await oneRound(srv, t, join(work, `dest${i}`), opts.files);
          jobs += 2;
        } catch (e) {
          failures.push(`worker ${i}: ${(e as Error).message}`);
          return;
        }
      }
    }),
  );
  clearInterval(sampler);
  const elapsed = (Date.now() - started) / 1000;
  await new Promise((r) => setTimeout(r, 1000));
  const rates = bytes.map((b) => Math.round(b / elapsed));
  return {
    workers: opts.workers,
    seconds: Math.round(elapsed),
    jobs,
    failures,
    rates,
    fairness: Math.min(...rates) / Math.max(...rates),
    fds: [fds0, srv.fdCount()],
    rssKiB: [rss0, rssMax, rssKiB(srv.pid)],
  };
}
