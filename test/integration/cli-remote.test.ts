/**
 * `ndmpd remote backup|recover`: ndmpd as a small DMA of other NDMP servers, in a private
 * network namespace. Our server is the data agent; ndmjob's daemon is the tape agent (its
 * simulated tape, a TCP data connection between the two).
 *  - A tape our remote DMA wrote (label file + image file) is restored whole by ndmjob -x,
 *    told to skip the label's filemark: the image is a plain NDMP tape file any DMA can read.
 *  - An image ndmjob -c wrote (no label) is restored by our remote DMA, whole and selected paths.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { jobSucceeded, ndmjob, simtapeFile, startNdmjobDaemon, type NdmjobDaemon } from "../helpers/ndmjob.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { compareTrees, makeEdgeTree } from "../helpers/tree.ts";

const ready = havePeers("binary", "ndmjob", "unshare");

describe.runIf(ready)("ndmpd remote with ndmjob's tape agent", () => {
  let ns: Netns;
  let srv: RunningServer;
  let daemon: NdmjobDaemon;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-remote-"));
  const SRC = join(W, "src");
  const STATE = join(W, "state");
  const D = `127.0.0.1:10000/4,${USER},${PASSWORD}`;
  const T = "127.0.0.1:10001/4,ndmp,ndmp";

  /** ndmpd remote ... inside the namespace, our server as data agent, ndmjob's as tape agent. */
  const remote = (sub: string, ...args: string[]) => {
    const argv = [...ns.prefix(), BINARY, "remote", sub, "--data", "127.0.0.1:10000", "--data-user", USER, "--tape", "127.0.0.1:10001", "--state-dir", STATE, ...args];
    return run(argv[0]!, argv.slice(1), { timeoutMs: 60_000, env: { ...process.env, NDMPD_DATA_PASSWORD: PASSWORD, NDMPD_TAPE_PASSWORD: "ndmp" } });
  };
  const endOf = (s: string) => s.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).find((o) => o.event === "end");
  /** A fresh simulated tape (an existing empty file) and no stale lock. */
  const blankTape = (name: string) => {
    const p = join(W, name);
    writeFileSync(p, "");
    rmSync(`${p}.lck`, { force: true });
    return p;
  };

  beforeAll(async () => {
    ns = await createNetns();
    await makeEdgeTree(SRC);
    srv = await startServer({
      netns: ns,
      config: `[server]\nlisten = "127.0.0.1:10000"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`,
    });
    daemon = await startNdmjobDaemon(ns, 10001);
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await srv?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("remote backup to ndmjob's tape agent: label then image; ndmjob -x restores the image", async () => {
    const tape = blankTape("remote.tape");
    // ndmjob's mover reads 10240-byte records by default (-b 20): write those.
    const b = await remote("backup", SRC, "--device", tape, "--record-size", "10240", "--label", "via-ndmjob", "--json");
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(endOf(b.stdout)).toMatchObject({ ok: true, backup: 1, tapeFiles: "0-1" });

    // Tape file 0 is our label, tape file 1 the image.
    const bytes = readFileSync(tape);
    expect(simtapeFile(bytes, 0).toString("latin1")).toMatch(/^NDMPD-LABEL 1\n\{.*"label":"via-ndmjob"/);
    expect(simtapeFile(bytes, 1).length).toBeGreaterThan(1024 * 1024);

    rmSync(`${tape}.lck`, { force: true });
    const out = join(W, "by-ndmjob");
    const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", tape, "-m", "+1", "-B", "tar", "-C", out]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(SRC, out)).toEqual([]);

    // Direct access through ndmjob's mover: our data service's NOTIFY_DATA_READs are relayed as
    // MOVER_READs by our DMA, with the offsets from our catalog.
    rmSync(`${tape}.lck`, { force: true });
    const dar = join(W, "dar-remote");
    const d = await remote("recover", "--device", tape, "--file", "1", "--to", dar, "--json", "/times", "files/b511");
    expect(d.code, d.stderr + d.stdout).toBe(0);
    const end = endOf(d.stdout);
    expect(end).toMatchObject({ ok: true, direct: true });
    expect(end.directReads).toBeGreaterThanOrEqual(2);
    expect(await compareTrees(join(SRC, "times"), join(dar, "times"))).toEqual([]);
    expect(readFileSync(join(dar, "files/b511"))).toEqual(readFileSync(join(SRC, "files/b511")));

    // A second backup appends (files 2 and 3), and our remote recover restores it by number.
    rmSync(`${tape}.lck`, { force: true });
    const b2 = await remote("backup", join(SRC, "files"), "--device", tape, "--record-size", "10240", "--label", "two");
    expect(b2.code, b2.stderr + b2.stdout).toBe(0);
    rmSync(`${tape}.lck`, { force: true });
    const out2 = join(W, "second-by-us");
    const r = await remote("recover", "--device", tape, "--file", "2", "--to", out2, "--json");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(await compareTrees(join(SRC, "files"), out2)).toEqual([]);
  });

  it("remote recover of an image ndmjob -c wrote (no label): whole, and selected paths", async () => {
    const tape = blankTape("ndmjob.tape");
    const c = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", tape, "-B", "tar", "-C", SRC]);
    expect(jobSucceeded(c.stdout), c.stdout).toBe(true);

    rmSync(`${tape}.lck`, { force: true });
    const all = join(W, "ndmjob-all");
    const r = await remote("recover", "--device", tape, "--tape-file", "0", "--to", all, "--json");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(endOf(r.stdout)).toMatchObject({ ok: true, direct: false });
    expect(await compareTrees(SRC, all)).toEqual([]);

    rmSync(`${tape}.lck`, { force: true });
    const sel = join(W, "ndmjob-sel");
    mkdirSync(sel);
    const r2 = await remote("recover", "--device", tape, "--tape-file", "0", "--to", sel, "/files/b513", "hard");
    expect(r2.code, r2.stderr + r2.stdout).toBe(0);
    expect(readdirSync(sel).sort()).toEqual(["files", "hard"]);
    expect(readFileSync(join(sel, "files/b513"))).toEqual(readFileSync(join(SRC, "files/b513")));
    expect(await compareTrees(join(SRC, "hard"), join(sel, "hard"))).toEqual([]);
  });
});
