/**
 * What an admin meets first, against the compiled binary: with no configuration file and an
 * empty state directory the CLI backs up, lists and restores on the embedded library, and a
 * DMA (ndmjob) finds the embedded drive and changer on `ndmpd serve` and backs up to the drive.
 * (The Debian package's tests are in debian-package.test.ts, which runs alone: installing the
 * package puts a configuration in /etc/ndmpd that the tests without one must never see.)
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { jobSucceeded, ndmjob } from "../helpers/ndmjob.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { compareTrees, makeEdgeTree } from "../helpers/tree.ts";

const ready = havePeers("binary", "ndmjob", "unshare");

/** The environment of a user with no configuration: no NDMPD_CONFIG, an empty state dir. */
function bareEnv(state: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NDMPD_CONFIG;
  delete env.NDMPD_PASSWORD;
  return { ...env, NDMPD_STATE_DIR: state, ...extra };
}

describe.runIf(ready)("no configuration: the embedded library", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-oob-"));
  const SRC = join(W, "src");

  beforeAll(async () => {
    await makeEdgeTree(SRC);
  }, 60_000);
  afterAll(() => rmSync(W, { recursive: true, force: true }));

  it("there is no /etc/ndmpd/ndmpd.toml on this machine (else the CLI would read it)", () => {
    expect(existsSync("/etc/ndmpd/ndmpd.toml")).toBe(false);
  });

  it("ndmpd backup DIR, list and recover --to DIR round-trip a tree with no file written by the user", async () => {
    const state = join(W, "state-cli");
    const env = bareEnv(state);
    const b = await run(BINARY, ["backup", SRC, "--json"], { env, timeoutMs: 60_000 });
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(b.stderr).toContain("embedded library lib0 (drive vt0)");
    expect(b.stdout).toMatch(/"event":"end","ok":true/);
    // Created on first use: four cartridges, the first one in the drive.
    expect(readdirSync(join(state, "lib0")).sort()).toEqual(["NDMP001L8.tape", "NDMP002L8.tape", "NDMP003L8.tape", "NDMP004L8.tape", "library.json"]);

    const l = await run(BINARY, ["list", "--json"], { env });
    expect(l.code, l.stderr).toBe(0);
    const listing = JSON.parse(l.stdout);
    expect(listing.backups.map((x: { seq: number; root: string }) => [x.seq, x.root])).toEqual([[1, SRC]]);

    const out = join(W, "restored");
    const r = await run(BINARY, ["recover", "--to", out], { env, timeoutMs: 60_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(await compareTrees(SRC, out)).toEqual([]);

    const c = await run(BINARY, ["changer", "status"], { env });
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/Data Transfer Element 0:Full \(Storage Element 1 Loaded\):VolumeTag = NDMP001L8/);
  });

  it("--tape is needed, and said so, only when there is more than one drive", async () => {
    const cfg = join(W, "two.toml");
    writeFileSync(cfg, `[server]\nstate_dir = "${W}/state-two"\n[[tape]]\nname = "a"\npath = "${W}/a.tape"\n[[tape]]\nname = "b"\npath = "${W}/b.tape"\n`, { mode: 0o600 });
    const r = await run(BINARY, ["list", "--config", cfg]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("list needs --tape NAME (the configuration has drives a, b)");
  });

  it("ndmjob against `ndmpd serve` with no configuration sees the drive and the changer, and backs up to the drive", async () => {
    const ns: Netns = await createNetns();
    const state = join(W, "state-serve");
    const [cmd, ...pre] = ns.prefix();
    const proc = spawn(cmd!, [...pre, BINARY, "serve", "--log-format", "json"], { env: bareEnv(state, { NDMPD_PASSWORD: "oob-secret" }), stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<number | null>((r) => proc.once("exit", (c) => r(c)));
    let stdout = "";
    let stderr = "";
    proc.stdout!.on("data", (c) => (stdout += c));
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no start: ${stderr}`)), 15_000);
        proc.stderr!.on("data", (c) => {
          stderr += c;
          if (stderr.includes('"msg":"listening"')) {
            clearTimeout(t);
            resolve();
          }
        });
        proc.once("exit", (c) => reject(new Error(`exited ${c}: ${stderr}`)));
      });
      expect(stdout).toContain(`embedded library lib0 with drive vt0 (4 cartridges in ${state}/lib0)`);
      const A = "127.0.0.1:10000/4,ndmp,oob-secret";
      const q = await ndmjob(ns, ["-q", "-T", A, "-R", A], 30_000);
      expect(q.stdout).toMatch(/QR "  tape ndmpd virtual tape"\nQR "    device     vt0"/);
      expect(q.stdout).toMatch(/QR "  scsi ndmpd virtual library"\nQR "    device     lib0"/);
      const idx = join(W, "oob.idx");
      const b = await ndmjob(ns, ["-c", "-v", "-D", A, "-T", A, "-f", "vt0", "-B", "tar", "-C", SRC, "-I", idx], 120_000);
      expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
      const out = join(W, "restored-ndmjob");
      mkdirSync(out);
      const x = await ndmjob(ns, ["-x", "-v", "-D", A, "-T", A, "-f", "vt0", "-B", "tar", "-C", out, "-J", idx], 120_000);
      expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
      expect(await compareTrees(SRC, out)).toEqual([]);
    } finally {
      proc.kill("SIGTERM");
      await exited;
      await ns.stop();
    }
  });
});
