/**
 * The benchmarks run in CI too, at a small size, so that `npm run bench` keeps working and its
 * figures appear in every CI log. Nothing here judges speed (a shared CI machine cannot): it checks
 * that each section measured ours and its reference in the same run and printed the ratio, and
 * that the direct access restore read only a few records where the sequential one read the lot.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";

const ROOT = join(import.meta.dirname, "../..");
const ready = havePeers("binary", "bun", "tar");

describe.runIf(ready)("npm run bench, small (BENCH_MIB=128, 3,000 small files)", () => {
  it("prints mover, tar/dump, DAR, copy and duplicate figures and issue 18's table, each as a ratio against its reference measured in the same run", async () => {
    const r = await run(join(ROOT, "node_modules/.bin/bun"), [join(ROOT, "test/bench/run.ts")], {
      timeoutMs: 600_000,
      env: { ...process.env, BENCH_MIB: "128", BENCH_TAR_GIB: "0.125", BENCH_TAR_FILES: "3000", BENCH_SMALL_FILES: "3000", BENCH_SCALE: "1000,3000", BENCH_RUNS: "2" },
    });
    console.log(r.stdout);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const ratio = (re: RegExp) => {
      const m = re.exec(r.stdout);
      expect(m, `${re} in the output`).not.toBeNull();
      const v = Number(m![1]);
      expect(Number.isFinite(v) && v > 0, `${re}: ${m![1]}`).toBe(true);
      return v;
    };
    ratio(/ratio ours\/reference \(throughput\), ndmpd mover -> virtual tape[^:]*: ([\d.]+)/);
    // Both trees, tar and dump, against GNU tar with the same metadata.
    expect(r.stdout.match(/ratio ours\(tar\)\/GNU tar same metadata \(time\): [\d.]+/g)).toHaveLength(2);
    expect(r.stdout.match(/ratio ours\(dump\)\/GNU tar same metadata \(time\): [\d.]+/g)).toHaveLength(2);
    ratio(/HIST=y \/ HIST=n \(time\): ([\d.]+)/);
    expect(Number(/FH entries: (\d+)/.exec(r.stdout)?.[1])).toBe(3016); // the files, their directories and the root
    ratio(/ratio DAR\/sequential: ([\d.]+)/);
    // Migration and duplication, each way, beside a plain backup to a sink.
    for (const what of ["copy A -> B \\(TCP\\)", "copy A -> A \\(IPC\\)", "duplicate A/vt0 -> B/vt0 \\(TCP\\)", "duplicate A/vt0 -> A/vt1 \\(IPC\\)"]) {
      ratio(new RegExp(`ratio ours/reference \\(throughput\\), ${what}[^:]*: ([\\d.]+)`));
    }
    // Issue 18's table: every row beside its reference, and the scale row at each size.
    expect(r.stdout.match(/^  row .*\n(?:    .*\n)*?    ratio ours\/reference \(time\): [\d.]+ {3}\(cpu: [\d.]+\)$/gm)).toHaveLength(7);
    ratio(/ours \/ loopback ceiling \(throughput\): ([\d.]+)/);
    ratio(/HIST=y \/ HIST=n \(server cpu\): ([\d.]+)/);
    expect(r.stdout).toMatch(/row peak RSS of ndmpd backup, 3000 x 4 KiB: ndmpd [\d.]+ MiB, GNU tar [\d.]+ MiB/);
    for (const n of [1000, 3000]) expect(r.stdout).toMatch(new RegExp(`^ +${n} files: server [\\d.]+ us/file, peak RSS [\\d.]+ MiB;  CLI [\\d.]+ us/file, peak RSS [\\d.]+ MiB$`, "m"));
    const [, dar, seq] = /bytes read from tape: DAR (\d+), sequential (\d+)/.exec(r.stdout) ?? [];
    expect(Number(dar)).toBeLessThanOrEqual(1024 * 1024);
    expect(Number(seq)).toBeGreaterThanOrEqual(128 * 1024 * 1024);
  }, 620_000);
});
