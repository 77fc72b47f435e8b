/**
 * The performance table of issue 18, every row beside its reference measured in the same run:
 *
 *   tar, 20,000 x 4 KiB in 100 dirs, HIST=n, to a TCP sink      vs `tar -cf -` into the same kind of sink
 *   tar, 200,000 x 64 B in 1,000 dirs                           vs `tar -cf -`
 *   dump, 20,000 x 4 KiB / 200,000 x 64 B                       vs our tar on the same tree
 *   `ndmpd backup DIR --tape vt0` (virtual drive, catalog)      vs `tar -cf FILE DIR`
 *   tar, one big file (BENCH_TAR_GIB), to a TCP sink            vs `tar -cf -`, and the loopback ceiling (`cat FILE` into the sink)
 *   server CPU with HIST=y against HIST=n, 20,000 files
 *   peak RSS of `ndmpd backup`, 20,000 files                    vs GNU tar's
 *   `ndmpd recover` of 20,000 files                             vs `tar -xf`
 *   scale: 10k, 100k, 1M tiny files (BENCH_SCALE): time per file and peak RSS, server (HIST=y) and CLI
 *
 * Each measure runs BENCH_RUNS times (default 5) after one warm-up; a row prints the median and
 * the spread (min-max) of wall time and CPU time (user + sys of the server process, or of the
 * command). The machine may be shared: CPU moves less than wall time. BENCH_COLD=1 (root) adds
 * the first two rows with the page cache dropped before each measure.
 *
 * Environment: BENCH_TAR_FILES (20000), BENCH_SMALL_FILES (200000), BENCH_TAR_GIB (1),
 * BENCH_SCALE (10000,100000,1000000), BENCH_RUNS (5), BENCH_DIR (scratch, default tmp).
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, startBenchServer, type BenchServer } from "./server.ts";
import { makeManyFiles, oursOnce, tarOnce, writeRandomFile } from "./tar.ts";

interface Run {
  seconds: number;
  cpu: number;
  /** Peak RSS in KiB, where measured. */
  rss?: number;
}

interface Stats {
  runs: Run[];
  med: Run;
}

const MiB = 1024 * 1024;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** One warm-up (cache, JIT), then BENCH_RUNS measures. */
async function measure(f: () => Promise<Run>, cold = false): Promise<Stats> {
  const n = Math.max(1, Number(process.env.BENCH_RUNS ?? 5));
  await f();
  const runs: Run[] = [];
  for (let i = 0; i < n; i++) {
    if (cold) dropCaches();
    runs.push(await f());
  }
  const rss = runs.map((r) => r.rss).filter((r): r is number => r !== undefined);
  return {
    runs,
    med: { seconds: median(runs.map((r) => r.seconds)), cpu: median(runs.map((r) => r.cpu)), rss: rss.length ? median(rss) : undefined },
  };
}

function dropCaches(): void {
  spawnSync("sync");
  writeFileSync("/proc/sys/vm/drop_caches", "3\n");
}

function spread(s: Stats, key: "seconds" | "cpu"): string {
  const xs = s.runs.map((r) => r[key]);
  return `${s.med[key].toFixed(3)} [${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)}]`;
}

function show(what: string, s: Stats): string {
  const rss = s.med.rss === undefined ? "" : `  peak RSS ${(s.med.rss / 1024).toFixed(1)} MiB`;
  return `    ${what.padEnd(44)} wall ${spread(s, "seconds")} s  cpu ${spread(s, "cpu")} s${rss}`;
}

/** A row: ours and the reference, and the ratio of the medians (time, and CPU). */
function row(name: string, oursWhat: string, ours: Stats, refWhat: string, ref: Stats): void {
  console.log(`  row ${name}`);
  console.log(show(oursWhat, ours));
  console.log(show(refWhat, ref));
  console.log(`    ratio ours/reference (time): ${(ours.med.seconds / ref.med.seconds).toFixed(2)}   (cpu: ${(ours.med.cpu / Math.max(ref.med.cpu, 0.001)).toFixed(2)})`);
}

/** A command under GNU time: wall time, user + sys, peak RSS. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn("/usr/bin/time", ["-f", "TIME %U %S %M", cmd, ...args], { stdio: ["ignore", "ignore", "pipe"], env });
    let err = "";
    p.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    p.once("error", reject);
    p.once("close", (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const m = /TIME ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(err);
      if (code !== 0 || !m) return reject(new Error(`${cmd} ${args.join(" ")} exited with ${code}: ${err.slice(-2000)}`));
      resolve({ seconds, cpu: Number(m[1]) + Number(m[2]), rss: Number(m[3]) });
    });
  });
}

/** VmHWM of a live process, KiB. */
function peakRss(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
}

/** Tiny files (64 B) in directories of 200. */
function makeTinyFiles(dir: string, count: number, perDir = 200): void {
  const data = Buffer.alloc(64, 0x61);
  for (let i = 0; i < count; i++) {
    const sub = join(dir, `d${String(Math.floor(i / perDir)).padStart(4, "0")}`);
    if (i % perDir === 0) mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `f${String(i).padStart(7, "0")}`), data);
  }
}

/** A state directory and a virtual drive for the CLI, made anew for each run. */
function cliConfig(dir: string): { cfg: string; reset(): void } {
  const cfg = join(dir, "cli.toml");
  const state = join(dir, "cli-state");
  writeFileSync(cfg, `[server]\nstate_dir = "${state}"\n\n[[tape]]\nname = "vt0"\npath = "${dir}/cli-vt0.tape"\ncapacity = "64GiB"\n`, { mode: 0o600 });
  return {
    cfg,
    reset() {
      rmSync(state, { recursive: true, force: true });
      rmSync(join(dir, "cli-vt0.tape"), { recursive: true, force: true });
    },
  };
}

const serverRun = async (srv: BenchServer, tree: string, hist: boolean, butype = "tar"): Promise<Run> => {
  const r = await oursOnce(srv, tree, hist, butype);
  return { seconds: r.seconds, cpu: r.cpu };
};
const tarRun = async (tree: string): Promise<Run> => {
  const r = await tarOnce(tree, []);
  return { seconds: r.seconds, cpu: r.cpu };
};

export async function runTable(): Promise<void> {
  const files = Number(process.env.BENCH_TAR_FILES ?? 20_000);
  const small = Number(process.env.BENCH_SMALL_FILES ?? 200_000);
  const gib = Number(process.env.BENCH_TAR_GIB ?? 1);
  const scale = (process.env.BENCH_SCALE ?? "10000,100000,1000000").split(",").map(Number).filter((n) => n > 0);
  const cold = process.env.BENCH_COLD === "1";
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "ndmpd-bench-table-"));
  const srv = await startBenchServer(dir);
  try {
    const many = join(dir, "many");
    mkdirSync(many);
    makeManyFiles(many, files);
    const tiny = join(dir, "tiny");
    mkdirSync(tiny);
    makeTinyFiles(tiny, small, Math.max(1, Math.round(small / 1000)));
    const big = join(dir, "big");
    mkdirSync(big);
    writeRandomFile(join(big, "big"), Math.round(gib * 1024) * MiB, 1);

    const manyName = `${files} x 4 KiB`;
    const smallName = `${small} x 64 B`;
    const tarMany = await measure(() => serverRun(srv, many, false));
    row(`tar backup, ${manyName}, HIST=n, TCP sink`, "ndmpd DATA_START_BACKUP(tar)", tarMany, "tar -cf - (into the same kind of sink)", await measure(() => tarRun(many)));
    const tarSmall = await measure(() => serverRun(srv, tiny, false));
    row(`tar backup, ${smallName}, HIST=n, TCP sink`, "ndmpd DATA_START_BACKUP(tar)", tarSmall, "tar -cf -", await measure(() => tarRun(tiny)));
    if (cold) {
      row(`tar backup, ${manyName}, cold cache`, "ndmpd DATA_START_BACKUP(tar)", await measure(() => serverRun(srv, many, false), true), "tar -cf -", await measure(() => tarRun(many), true));
      row(`tar backup, ${smallName}, cold cache`, "ndmpd DATA_START_BACKUP(tar)", await measure(() => serverRun(srv, tiny, false), true), "tar -cf -", await measure(() => tarRun(tiny), true));
    }
    row(`dump backup, ${manyName}, HIST=n`, "ndmpd DATA_START_BACKUP(dump)", await measure(() => serverRun(srv, many, false, "dump")), "our tar (the row above)", tarMany);
    row(`dump backup, ${smallName}, HIST=n`, "ndmpd DATA_START_BACKUP(dump)", await measure(() => serverRun(srv, tiny, false, "dump")), "our tar", tarSmall);

    // The CLI job: a local backup to a virtual drive, with its catalog; then its recovery.
    const cli = cliConfig(dir);
    const tarFile = join(dir, "ref.tar");
    const cliBackup = () => {
      cli.reset();
      return timed(BINARY, ["backup", many, "--tape", "vt0", "--config", cli.cfg]);
    };
    const gnuBackup = () => {
      rmSync(tarFile, { force: true });
      return timed("tar", ["-cf", tarFile, "-C", many, "."]);
    };
    const cliB = await measure(cliBackup);
    const gnuB = await measure(gnuBackup);
    row(`ndmpd backup DIR --tape vt0 (virtual drive, catalog), ${manyName}`, "ndmpd backup", cliB, "tar -cf FILE DIR", gnuB);
    console.log(`  row peak RSS of ndmpd backup, ${manyName}: ndmpd ${(cliB.med.rss! / 1024).toFixed(1)} MiB, GNU tar ${(gnuB.med.rss! / 1024).toFixed(1)} MiB`);
    // Each run restores into a new directory, and none is removed until the row is done: ext4
    // allocates a new inode past every recently deleted one (ialloc.c: recently_deleted), so a
    // restore right after an `rm -rf` of the last one measured that scan (tar -xf itself went
    // 1.3, 4.0, 4.3, 6.6 s in four such rounds) instead of the restore.
    const restored = join(dir, "restored");
    mkdirSync(restored);
    let round = 0;
    const cliRecover = () => timed(BINARY, ["recover", "--tape", "vt0", "--to", join(restored, `ndmpd-${++round}`), "--config", cli.cfg]);
    const gnuRecover = () => {
      const to = join(restored, `tar-${++round}`);
      mkdirSync(to);
      return timed("tar", ["-xf", tarFile, "-C", to]);
    };
    row(`recovery of ${manyName}`, "ndmpd recover", await measure(cliRecover), "tar -xf", await measure(gnuRecover));
    rmSync(restored, { recursive: true, force: true });

    const bigTar = await measure(() => serverRun(srv, big, false));
    row(`tar backup, one ${gib} GiB file, TCP sink`, "ndmpd DATA_START_BACKUP(tar)", bigTar, "tar -cf -", await measure(() => tarRun(big)));
    const ceiling = await measure(async () => {
      const r = await tarOnce(big, [], "cat");
      return { seconds: r.seconds, cpu: r.cpu };
    });
    console.log(show("loopback ceiling: cat FILE into the sink", ceiling));
    console.log(`    ours / loopback ceiling (throughput): ${(ceiling.med.seconds / bigTar.med.seconds).toFixed(2)}`);

    // Both measured here, one after the other: the first row's HIST=n ran on a server not yet
    // warmed by the rows between, and beside it HIST=y came out cheaper than HIST=n.
    const histNo = await measure(() => serverRun(srv, many, false));
    const hist = await measure(() => serverRun(srv, many, true));
    console.log(`  row server CPU with HIST=y against HIST=n, ${manyName}`);
    console.log(show("HIST=y", hist));
    console.log(show("HIST=n", histNo));
    console.log(`    HIST=y / HIST=n (server cpu): ${(hist.med.cpu / histNo.med.cpu).toFixed(2)}`);

    // Scale: a fresh server per size (its peak RSS is its own), HIST=y to our client as DMA; the CLI beside it.
    console.log(`  row scale (tiny files, tar): time per file and peak RSS`);
    for (const n of scale) {
      const tree = join(dir, `scale-${n}`);
      mkdirSync(tree);
      makeTinyFiles(tree, n);
      const sdir = join(dir, `scale-srv-${n}`);
      mkdirSync(sdir);
      const s = await startBenchServer(sdir);
      let server: Run;
      try {
        await serverRun(s, tree, true);
        server = await serverRun(s, tree, true);
        server.rss = peakRss(s.pid);
      } finally {
        await s.stop();
      }
      cli.reset();
      const c = await timed(BINARY, ["backup", tree, "--tape", "vt0", "--config", cli.cfg]);
      console.log(
        `    ${String(n).padStart(8)} files: server ${((server.seconds / n) * 1e6).toFixed(1)} us/file, peak RSS ${(server.rss / 1024).toFixed(1)} MiB;  CLI ${((c.seconds / n) * 1e6).toFixed(1)} us/file, peak RSS ${(c.rss! / 1024).toFixed(1)} MiB`,
      );
      rmSync(tree, { recursive: true, force: true });
    }
    cli.reset();
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
