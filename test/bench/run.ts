/**
 * Benchmarks against the compiled binary, as a plain script: `npm run bench` (= build, then
 * `bun test/bench/run.ts [section ...]`). Each section measures ours and a reference tool in the
 * same run, on the same bytes, and prints MiB/s for both and the ratio ours/reference.
 *
 *   mover   MOVER_LISTEN(READ, TCP) backup to a virtual tape at 256 KiB records, from a TCP peer
 *           in this process, timed from the first byte sent to NOTIFY_MOVER_HALTED; beside it
 *           `dd if=<the same bytes> of=<file> bs=256K conv=fsync`.
 *
 *   tar     our tar and dump backups of (a) one big file and (b) 20,000 files of 4 KiB, to a TCP
 *           sink, beside `tar -cf -` into the same kind of sink; FH entries/s and the HIST=y cost.
 *   dar     direct access recovery of one 4 KiB file out of a BENCH_MIB backup, beside a full
 *           sequential restore of the same file: times and their ratio (goal <= 1/100).
 *   migrate `remote copy` of a BENCH_MIB tree (data service to data service, TCP between two
 *           servers and IPC within one) and `remote duplicate` of a BENCH_MIB tape file (mover to
 *           mover, the same two ways), beside a plain tar backup of the tree to a TCP sink.
 *   tls     `remote copy` A -> B with the data connection in TLS (NDMPD_DATA_TLS selected on both
 *           sessions) beside the same copy in clear.
 *
 * Add a section by appending to SECTIONS (for example tar: our backup vs GNU tar; dar: DAR reads).
 * Environment: BENCH_MIB (stream size, default 1024), BENCH_DIR (scratch directory, default tmp).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AddrType, ALL1, Message, MoverHaltReason, MoverMode, TapeOpenMode } from "../../src/protocol/codes.ts";
import { printDar, runDarBench } from "./dar.ts";
import { runMigrateBench } from "./migrate.ts";
import { connectTo, sendAll, seededBytes } from "../helpers/dma.ts";
import { benchClient, BINARY, startBenchServer } from "./server.ts";
import { runTarBench } from "./tar.ts";
import { runTlsBench } from "./tls.ts";
import { runTable } from "./table.ts";

const MiB = 1024 * 1024;

interface Measure {
  what: string;
  bytes: number;
  seconds: number;
}

interface SectionResult {
  ours?: Measure;
  reference?: Measure;
  extra?: Measure[];
  /** Sections whose figures are not throughputs print their own lines. */
  lines?: string[];
}

interface Context {
  dir: string;
  sizeMiB: number;
  /** The stream bytes (seeded), and a file holding the same bytes, made once on first use. */
  stream(): { data: Buffer; file: string };
}

interface Section {
  name: string;
  describe: string;
  run(ctx: Context): Promise<SectionResult>;
}

// ---- helpers ----




function dd(input: string, output: string, bs: string): Measure {
  const t0 = performance.now();
  const r = spawnSync("dd", [`if=${input}`, `of=${output}`, `bs=${bs}`, "conv=fsync"], { encoding: "utf8" });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`dd failed: ${r.stderr}`);
  return { what: `dd bs=${bs} conv=fsync`, bytes: statSync(output).size, seconds };
}

// ---- sections ----

const moverSection: Section = {
  name: "mover",
  describe: "MOVER_LISTEN(READ, TCP) backup to a virtual tape, 256 KiB records, vs dd bs=256K conv=fsync",
  async run(ctx) {
    const { data, file } = ctx.stream();
    const rs = 256 * 1024;
    const srv = await startBenchServer(ctx.dir, `[[tape]]\nname = "bench0"\npath = "${ctx.dir}/bench0.tape"\n`);
    let ours: Measure;
    let closeTime: Measure;
    try {
      const c = await benchClient(srv.port);
      await c.request(Message.TAPE_OPEN, { device: "bench0", mode: TapeOpenMode.RDWR });
      await c.request(Message.MOVER_SET_RECORD_SIZE, { len: rs });
      await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
      const r = await c.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.TCP });
      const sock = await connectTo(r.body.connect_addr);
      const halted = c.waitForPost(Message.NOTIFY_MOVER_HALTED, 600_000);
      const t0 = performance.now();
      await sendAll(sock, data, { chunk: MiB });
      const h = await halted;
      const t1 = performance.now();
      if (h.body.reason !== MoverHaltReason.CONNECT_CLOSED) throw new Error(`mover halted with reason ${h.body.reason}`);
      const st = (await c.request(Message.MOVER_GET_STATE)).body;
      if (st.bytes_moved !== BigInt(data.length)) throw new Error(`bytes_moved ${st.bytes_moved}, sent ${data.length}`);
      ours = { what: "ndmpd mover -> virtual tape (to NOTIFY_MOVER_HALTED)", bytes: data.length, seconds: (t1 - t0) / 1000 };
      await c.request(Message.MOVER_STOP);
      await c.request(Message.TAPE_CLOSE); // filemark + fdatasync
      const t2 = performance.now();
      closeTime = { what: "ndmpd, including TAPE_CLOSE (filemark + fdatasync)", bytes: data.length, seconds: (t2 - t0) / 1000 };
      await c.close();
    } finally {
      await srv.stop();
      rmSync(join(ctx.dir, "bench0.tape"), { force: true });
    }
    const out = join(ctx.dir, "dd.out");
    const reference = dd(file, out, "256K");
    rmSync(out, { force: true });
    return { ours, reference, extra: [closeTime] };
  },
};

const darSection: Section = {
  name: "dar",
  describe: "DAR restore of one 4 KiB file out of the backup vs a sequential restore of it (local configuration)",
  async run(ctx) {
    const r = await runDarBench(ctx.sizeMiB);
    const lines: string[] = [];
    printDar(r, (line) => lines.push(line));
    return { lines };
  },
};

const tarSection: Section = {
  name: "tar",
  describe: "tar and dump backups of (a) one big file and (b) 20,000 files of 4 KiB, against GNU tar on the same trees",
  async run() {
    // runTarBench prints its own rows (it has several per tree).
    await runTarBench();
    return {};
  },
};

const migrateSection: Section = {
  name: "migrate",
  describe: "remote copy (data -> data) and remote duplicate (mover -> mover), TCP and IPC, vs a plain tar backup to a TCP sink",
  async run(ctx) {
    const r = await runMigrateBench(ctx.dir, ctx.stream());
    return { ours: r.copy[0], extra: [...r.copy.slice(1), ...r.duplicate], reference: r.reference };
  },
};

const tlsSection: Section = {
  name: "tls",
  describe: "remote copy A -> B with the data connection in TLS (NDMPD_DATA_TLS) vs the same copy in clear",
  async run(ctx) {
    return runTlsBench(ctx.dir, ctx.stream());
  },
};

const tableSection: Section = {
  name: "table",
  describe: "issue 18's table: small files, dump, the CLI job, one big file, HIST cost, peak RSS, recovery and scale, each row beside its reference (medians of BENCH_RUNS, with the spread)",
  async run() {
    await runTable();
    return {};
  },
};

const SECTIONS: Section[] = [moverSection, tarSection, darSection, migrateSection, tlsSection, tableSection];

// ---- main ----

function rate(m: Measure): string {
  return `${(m.bytes / MiB / m.seconds).toFixed(1)} MiB/s`;
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !SECTIONS.some((s) => s.name === w));
  if (unknown.length > 0) {
    console.error(`unknown section(s): ${unknown.join(", ")}; known: ${SECTIONS.map((s) => s.name).join(", ")}`);
    process.exit(2);
  }
  try {
    statSync(BINARY);
  } catch {
    console.error(`${BINARY} is missing: run npm run build (npm run bench does)`);
    process.exit(2);
  }
  const sizeMiB = Number(process.env.BENCH_MIB ?? 1024);
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "ndmpd-bench-"));
  let made: { data: Buffer; file: string } | undefined;
  const ctx: Context = {
    dir,
    sizeMiB,
    stream() {
      if (!made) {
        const data = seededBytes(sizeMiB * MiB, 1);
        const file = join(dir, "stream.bin");
        writeFileSync(file, data);
        made = { data, file };
      }
      return made;
    },
  };
  let failed = false;
  try {
    for (const s of SECTIONS.filter((x) => wanted.length === 0 || wanted.includes(x.name))) {
      console.log(`\n== ${s.name}: ${s.describe} (${sizeMiB} MiB)`);
      try {
        const r = await s.run(ctx);
        for (const line of r.lines ?? []) console.log(line);
        if (!r.ours || !r.reference) continue;
        for (const m of [r.ours, ...(r.extra ?? []), r.reference]) {
          console.log(`  ${m.what.padEnd(56)} ${(m.bytes / MiB).toFixed(0).padStart(6)} MiB in ${m.seconds.toFixed(2).padStart(6)} s  ${rate(m).padStart(14)}`);
        }
        for (const m of [r.ours, ...(r.extra ?? [])]) {
          console.log(`  ratio ours/reference (throughput), ${m.what}: ${(r.reference!.seconds / m.seconds).toFixed(2)}`);
        }
      } catch (e) {
        failed = true;
        console.error(`  ${s.name} failed: ${(e as Error).stack ?? e}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

await main();
