/**
 * DAR benchmark: restoring one 4 KiB file out of a >= 1 GiB backup by direct access, beside a
 * full sequential restore of the same file, on the compiled server in the local configuration
 * (our data service, mover and virtual drive; our client as the DMA).
 *
 *   bun test/bench/dar.ts          (also a section of test/bench/run.ts)
 * Environment: BENCH_DIR (scratch directory), BENCH_MIB (size of the big file, default 1024).
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NdmpClient } from "../../src/client/client.ts";
import { AddrType, ALL1, DataHaltReason, Message, MoverMode, TapeMtioOp, TapeOpenMode } from "../../src/protocol/codes.ts";
import { benchClient, startBenchServer } from "./server.ts";

const MiB = 1024 * 1024;
const RECORD = 256 * 1024;

export interface DarBenchResult {
  backupBytes: number;
  darSeconds: number;
  sequentialSeconds: number;
  /** darSeconds / sequentialSeconds (goal <= 1/100). */
  ratio: number;
  /** Stream bytes each restore read from the tape (the server's "recovery done" report). */
  darBytes: number;
  sequentialBytes: number;
}

/** One job in the local configuration: tape open, LOCAL mover + data connection. */
async function localJob(c: NdmpClient, mode: number, start: () => Promise<void>): Promise<number> {
  await c.request(Message.TAPE_OPEN, { device: "vt0", mode: mode === MoverMode.READ ? TapeOpenMode.RDWR : TapeOpenMode.READ });
  await c.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.REW, count: 1 });
  await c.request(Message.MOVER_SET_RECORD_SIZE, { len: RECORD });
  await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
  await c.request(Message.MOVER_LISTEN, { mode, addr_type: AddrType.LOCAL });
  await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.LOCAL } });
  const since = c.posts.length;
  const t0 = performance.now();
  await start();
  const halted = await c.waitForPost(Message.NOTIFY_DATA_HALTED, 3_600_000, since);
  const seconds = (performance.now() - t0) / 1000;
  if (halted.body.reason !== DataHaltReason.SUCCESSFUL) throw new Error(`data halted with reason ${halted.body.reason}`);
  await c.request(Message.DATA_STOP);
  // The mover halts once the data side closes; if it paused at the end of the tape file, close it.
  const st = (await c.request(Message.MOVER_GET_STATE)).body;
  if (st.state === 3) await c.request(Message.MOVER_CLOSE);
  await waitMoverHalted(c);
  await c.request(Message.MOVER_STOP);
  await c.request(Message.TAPE_CLOSE);
  return seconds;
}

async function waitMoverHalted(c: NdmpClient): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await c.request(Message.MOVER_GET_STATE)).body.state === 4) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("the mover did not halt");
}

export async function runDarBench(sizeMiB = Number(process.env.BENCH_MIB ?? 1024)): Promise<DarBenchResult> {
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "ndmpd-dar-bench-"));
  const src = join(dir, "src");
  mkdirSync(src);
  // The 4 KiB file sits after the big one in the stream (names sort "a..." < "z..."), so a
  // sequential restore has to read through the whole backup to reach it.
  const big = openSync(join(src, "a-big.bin"), "w");
  const block = Buffer.alloc(8 * MiB);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let off = 0; off < sizeMiB * MiB; off += block.length) writeSync(big, block, 0, block.length, off);
  closeSync(big);
  const small = Buffer.alloc(4096, 0x5a);
  writeFileSync(join(src, "z-small.txt"), small);

  const srv = await startBenchServer(dir, `[[tape]]\nname = "vt0"\npath = "${dir}/vt0.tape"\ncapacity = "64GiB"\n`);
  try {
    const c = await benchClient(srv.port);
    const env = [
      { name: "FILESYSTEM", value: src },
      { name: "HIST", value: "y" },
    ];
    await localJob(c, MoverMode.READ, async () => {
      await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env });
    });
    const fh = c.posts.filter((p) => p.code === Message.FH_ADD_FILE).flatMap((p) => p.body.files);
    const entry = fh.find((f: any) => f.names[0].unix_name.toString() === "/z-small.txt");
    if (!entry) throw new Error("no file history for /z-small.txt");
    const backupBytes = Number((await c.request(Message.DATA_GET_STATE)).body.bytes_processed) || sizeMiB * MiB;

    let runs = 0;
    let darBytes = 0;
    let sequentialBytes = 0;
    const restore = async (direct: boolean) => {
      const dest = join(dir, `${direct ? "dar" : "seq"}-${++runs}`);
      const seconds = await localJob(c, MoverMode.WRITE, async () => {
        await c.request(Message.DATA_START_RECOVER, {
          env: [...env, { name: "DIRECT", value: direct ? "y" : "n" }],
          nlist: [{ original_path: "/z-small.txt", destination_path: join(dest, "z-small.txt"), name: "", other_name: "", node: ALL1, fh_info: entry.fh_info }],
          butype_name: "tar",
        });
      });
      if (!readFileSync(join(dest, "z-small.txt")).equals(small)) throw new Error(`${direct ? "DAR" : "sequential"} restore is wrong`);
      const done = c.posts.filter((p) => p.code === Message.LOG_MESSAGE).map((p) => p.body.entry.toString()).filter((t: string) => t.startsWith("recovery done")).at(-1);
      const bytes = Number(/ (\d+) bytes/.exec(done ?? "")?.[1]);
      if (direct) darBytes = bytes;
      else sequentialBytes = bytes;
      return seconds;
    };
    // The better of three runs each (warm caches: the virtual tape reads at memory speed, which
    // favours the sequential restore; a real tape streams at a few hundred MB/s).
    const best = async (direct: boolean) => {
      let t = Infinity;
      for (let i = 0; i < 3; i++) t = Math.min(t, await restore(direct));
      return t;
    };
    const darSeconds = await best(true);
    const sequentialSeconds = await best(false);
    await c.close();
    return { backupBytes, darSeconds, sequentialSeconds, ratio: darSeconds / sequentialSeconds, darBytes, sequentialBytes };
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printDar(r: DarBenchResult, out: (line: string) => void = console.log): void {
  out(`  backup of ${(r.backupBytes / MiB).toFixed(0)} MiB (one big file and the 4 KiB file, local configuration)`);
  out(`  bytes read from tape: DAR ${r.darBytes}, sequential ${r.sequentialBytes} (1/${(r.sequentialBytes / r.darBytes).toFixed(0)})`);
  out(`  DAR restore of one 4 KiB file                          ${r.darSeconds.toFixed(3).padStart(8)} s`);
  out(`  sequential restore of the same file (whole backup)     ${r.sequentialSeconds.toFixed(3).padStart(8)} s`);
  out(`  ratio DAR/sequential: ${r.ratio.toFixed(4)} (1/${(1 / r.ratio).toFixed(0)}; goal <= 1/100)`);
}

if (import.meta.main) {
  runDarBench().then(printDar, (e) => {
    console.error(e);
    process.exit(1);
  });
}
