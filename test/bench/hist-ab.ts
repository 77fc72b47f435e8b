/**
 * HIST=y against HIST=n server CPU, for two binaries side by side (A = BENCH_BINARY_A, B =
 * BENCH_BINARY_B, default dist/ndmpd for both), runs alternating A/B and y/n so that a shared
 * machine's noise falls on both alike. Prints each run and the medians.
 *   bun test/bench/hist-ab.ts [runs=9] [files=20000]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { oursOnce, makeManyFiles } from "./tar.ts";

const runs = Number(process.argv[2] ?? 9);
const files = Number(process.argv[3] ?? 20_000);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "ndmpd-hist-ab-"));
const tree = join(dir, "many");
mkdirSync(tree);
makeManyFiles(tree, files);

async function start(bin: string, sub: string) {
  process.env.BENCH_BINARY = bin;
  // server.ts reads BENCH_BINARY when loaded: load a fresh copy per binary.
  const m = await import(`./server.ts?${sub}`);
  const d = join(dir, sub);
  mkdirSync(d);
  return m.startBenchServer(d);
}
/** utime and stime of a process, seconds. */
const times = (pid: number): [number, number] => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").split(" ");
  return [Number(f[11]) / 100, Number(f[12]) / 100];
};
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const bins = { A: process.env.BENCH_BINARY_A ?? "dist/ndmpd", B: process.env.BENCH_BINARY_B ?? "dist/ndmpd" };
const srv = { A: await start(bins.A, "A"), B: await start(bins.B, "B") };
const cpu: Record<string, number[]> = { Ay: [], An: [], By: [], Bn: [] };
const sys: Record<string, number[]> = { Ay: [], An: [], By: [], Bn: [] };
try {
  for (const k of ["A", "B"] as const) for (const h of [true, false]) await oursOnce(srv[k], tree, h); // warm-up
  for (let i = 0; i < runs; i++) {
    const order = i % 2 ? (["B", "A"] as const) : (["A", "B"] as const);
    for (const k of order) {
      for (const h of i % 2 ? [false, true] : [true, false]) {
        const t0 = times(srv[k].pid);
        const r = await oursOnce(srv[k], tree, h);
        const t1 = times(srv[k].pid);
        cpu[k + (h ? "y" : "n")]!.push(r.cpu);
        sys[k + (h ? "y" : "n")]!.push(t1[1] - t0[1]);
        if (h && r.fhEntries < files) throw new Error(`only ${r.fhEntries} FH entries`);
      }
    }
    console.log(`run ${i}: ` + Object.entries(cpu).map(([k, v]) => `${k}=${v.at(-1)!.toFixed(3)}`).join(" "));
  }
  for (const k of ["A", "B"] as const) {
    const y = median(cpu[k + "y"]!), n = median(cpu[k + "n"]!);
    console.log(`${k} sys (whole session): HIST=y ${median(sys[k + "y"]!).toFixed(3)} s, HIST=n ${median(sys[k + "n"]!).toFixed(3)} s`);
    console.log(`${k} (${bins[k]}): HIST=y ${y.toFixed(3)} s, HIST=n ${n.toFixed(3)} s, y/n ${(y / n).toFixed(3)} (+${((y / n - 1) * 100).toFixed(1)}%)`);
  }
} finally {
  await srv.A.stop();
  await srv.B.stop();
  rmSync(dir, { recursive: true, force: true });
}
