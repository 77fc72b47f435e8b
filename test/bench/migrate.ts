/**
 * Benchmark: data migration (`remote copy`, data service to data service) and tape duplication
 * (`remote duplicate`, mover to mover), beside a plain backup of the same bytes to a TCP sink
 * (the reference: what one data service alone does with the stream), in the same run.
 *
 *   copy       a tree of one BENCH_MIB file of pseudo-random bytes, tar, server A -> server B
 *              (TCP, B listening) and A -> A (two sessions, IPC), timed from DATA_LISTEN to
 *              both NOTIFY_DATA_HALTED; the reference is A's tar backup of the tree to a sink.
 *   duplicate  the same bytes as one tape file of 256 KiB records on A's vt0, duplicated to
 *              B's drive (TCP) and to A's vt1 (IPC), timed from TAPE_OPEN to the last filemark.
 *
 * Each measure runs twice; the second counts (warm cache). Both servers are compiled binaries on
 * 127.0.0.1, the DMA is this process (the CLI's own job code, src/dma/copy.ts and duplicate.ts).
 */
import { linkSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { NdmpClient } from "../../src/client/client.ts";
import { copyJob } from "../../src/dma/copy.ts";
import { duplicateJob } from "../../src/dma/duplicate.ts";
import { Progress } from "../../src/dma/progress.ts";
import { AddrType, ALL1, Message, MoverHaltReason, MoverMode, TapeOpenMode } from "../../src/protocol/codes.ts";
import { connectTo, sendAll } from "../helpers/dma.ts";
import { benchClient, startBenchServer } from "./server.ts";
import { oursOnce } from "./tar.ts";

const MiB = 1024 * 1024;
const RS = 256 * 1024;

export interface Measure {
  what: string;
  bytes: number;
  seconds: number;
}

const quiet = () => new Progress({ write: () => true }, "json", "bench");

async function twice(f: () => Promise<Measure>): Promise<Measure> {
  await f();
  return f();
}

/** Writes `data` as tape file 0 of `device` through the mover (256 KiB records), then a filemark. */
async function writeTape(c: NdmpClient, device: string, data: Buffer): Promise<void> {
  await c.request(Message.TAPE_OPEN, { device, mode: TapeOpenMode.RDWR });
  await c.request(Message.MOVER_SET_RECORD_SIZE, { len: RS });
  await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
  const r = await c.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.TCP });
  const sock = await connectTo(r.body.connect_addr);
  const halted = c.waitForPost(Message.NOTIFY_MOVER_HALTED, 600_000);
  await sendAll(sock, data, { chunk: MiB });
  const h = await halted;
  if (h.body.reason !== MoverHaltReason.CONNECT_CLOSED) throw new Error(`mover halted with reason ${h.body.reason}`);
  await c.request(Message.MOVER_STOP);
  await c.request(Message.TAPE_CLOSE); // the filemark
}

export async function runMigrateBench(dir: string, stream: { data: Buffer; file: string }): Promise<{ reference: Measure; copy: Measure[]; duplicate: Measure[] }> {
  const tree = join(dir, "migrate-src");
  mkdirSync(tree, { recursive: true });
  linkSync(stream.file, join(tree, "big"));
  const tapes = (names: string[]) => names.map((n) => `[[tape]]\nname = "${n}"\npath = "${dir}/${n}-$PORT.tape"\ncapacity = "64GiB"\n`).join("");
  const a = await startBenchServer(join(dir), tapes(["vt0", "vt1"]).replaceAll("$PORT", "a"));
  const bDir = join(dir, "b");
  mkdirSync(bDir, { recursive: true });
  const b = await startBenchServer(bDir, tapes(["vt0"]).replaceAll("$PORT", "b"));
  try {
    const reference = await twice(async () => {
      const r = await oursOnce(a, tree, false, "tar");
      return { what: "plain tar backup to a TCP sink (one data service)", bytes: r.bytes, seconds: r.seconds };
    });

    const copyOnce = async (what: string, sameServer: boolean): Promise<Measure> => {
      const dst = join(dir, "migrate-dst");
      rmSync(dst, { recursive: true, force: true });
      const s = await benchClient(a.port);
      const d = await benchClient(sameServer ? a.port : b.port);
      try {
        const t0 = performance.now();
        const r = await copyJob({ client: s, path: tree, name: "a" }, { client: d, path: dst, name: sameServer ? "a" : "b" }, { format: "tar", level: 0, excludes: [], listen: "dst", sameServer, progress: quiet() });
        const seconds = (performance.now() - t0) / 1000;
        if (!r.ok) throw new Error(`copy failed: ${r.errors.join("; ")}`);
        return { what, bytes: r.bytes, seconds };
      } finally {
        await s.close();
        await d.close();
        rmSync(dst, { recursive: true, force: true });
      }
    };
    const copy = [await twice(() => copyOnce("copy A -> B (TCP), tar", false)), await twice(() => copyOnce("copy A -> A (IPC), tar", true))];
    rmSync(tree, { recursive: true, force: true });

    const w = await benchClient(a.port);
    await writeTape(w, "vt0", stream.data);
    await w.close();
    const dupOnce = async (what: string, sameServer: boolean): Promise<Measure> => {
      const s = await benchClient(a.port);
      const d = await benchClient(sameServer ? a.port : b.port);
      try {
        const t0 = performance.now();
        const r = await duplicateJob({ client: s, device: "vt0", name: "a/vt0" }, { client: d, device: sameServer ? "vt1" : "vt0", name: "dst" }, { listen: "dst", sameServer, overwrite: true, progress: quiet() });
        const seconds = (performance.now() - t0) / 1000;
        if (!r.ok || r.bytes !== stream.data.length) throw new Error(`duplicate failed (${r.bytes} bytes): ${r.errors.join("; ")}`);
        return { what, bytes: r.bytes, seconds };
      } finally {
        await s.close();
        await d.close();
      }
    };
    const duplicate = [await twice(() => dupOnce("duplicate A/vt0 -> B/vt0 (TCP), 256 KiB records", false)), await twice(() => dupOnce("duplicate A/vt0 -> A/vt1 (IPC), 256 KiB records", true))];
    return { reference, copy, duplicate };
  } finally {
    await a.stop();
    await b.stop();
    for (const f of ["vt0-a", "vt1-a", "vt0-b"]) rmSync(join(dir, `${f}.tape`), { force: true });
    rmSync(bDir, { recursive: true, force: true });
    rmSync(tree, { recursive: true, force: true });
  }
}
