import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startEnv } from "../../src/runtime-env.ts";
import { BINARY } from "../helpers/peers.ts";

describe("runtime-env: the data commands start again with the runtime options they need", () => {
  const argv = (cmd: string) => ["/x/ndmpd", "/$bunfs/root/ndmpd", cmd, "DIR"];

  it("backup and recover: without JSC's top tier, and keeping freed memory; nothing else (the server keeps the runtime's defaults)", () => {
    expect(startEnv(argv("backup"), {}, true)).toEqual({ BUN_JSC_useFTLJIT: "0", MIMALLOC_PURGE_DELAY: "200" });
    expect(startEnv(argv("recover"), {}, true)).toEqual({ BUN_JSC_useFTLJIT: "0", MIMALLOC_PURGE_DELAY: "200" });
    for (const cmd of ["serve", "list", "remote", "query", "version", "--version"]) expect(startEnv(argv(cmd), {}, true)).toEqual({});
    expect(startEnv(["/x/ndmpd", "/$bunfs/root/ndmpd"], {}, true)).toEqual({});
  });

  it("never from source, and never twice (nor what the operator set)", () => {
    expect(startEnv(argv("backup"), {}, false)).toEqual({});
    expect(startEnv(argv("backup"), { BUN_JSC_useFTLJIT: "0", MIMALLOC_PURGE_DELAY: "200" }, true)).toEqual({});
    expect(startEnv(argv("backup"), { BUN_JSC_useFTLJIT: "1" }, true)).toEqual({ MIMALLOC_PURGE_DELAY: "200" });
    expect(startEnv(argv("recover"), { MIMALLOC_PURGE_DELAY: "10" }, true)).toEqual({ BUN_JSC_useFTLJIT: "0" });
  });

  it.skipIf(!existsSync(BINARY))("the restarted binary still runs the command with its arguments", () => {
    const r = spawnSync(BINARY, ["backup", "--help"], { encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("backup");
    const bad = spawnSync(BINARY, ["recover", "--no-such-option"], { encoding: "utf8", timeout: 30_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("no-such-option");
  });

  it.skipIf(!existsSync(BINARY))("a job runs with the options (in the same process: its pid), and with the operator's value when one was set", async () => {
    // The config is a FIFO nobody writes: the job, restarted, waits in reading it, long enough
    // for its environment to be read.
    const dir = mkdtempSync(join(tmpdir(), "ndmpd-env-"));
    const fifo = join(dir, "ndmpd.toml");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const job = (purge: string | undefined) => {
      const env = { ...process.env };
      if (purge === undefined) delete env.MIMALLOC_PURGE_DELAY;
      else env.MIMALLOC_PURGE_DELAY = purge;
      return spawn(BINARY, ["recover", "--tape", "vt0", "--to", join(dir, "out"), "--config", fifo], { env, stdio: "ignore" });
    };
    const purgeOf = async (pid: number): Promise<string[]> => {
      // The restart replaces the program, not the process: wait for the new environment.
      for (let i = 0; i < 250; i++) {
        const vars = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
        if (vars.some((v) => v.startsWith("BUN_JSC_useFTLJIT="))) return vars.filter((v) => v.startsWith("MIMALLOC_PURGE_DELAY="));
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error("the job did not restart");
    };
    const plain = job(undefined);
    const chosen = job("25");
    try {
      expect(await purgeOf(plain.pid!)).toEqual(["MIMALLOC_PURGE_DELAY=200"]);
      expect(await purgeOf(chosen.pid!)).toEqual(["MIMALLOC_PURGE_DELAY=25"]);
    } finally {
      for (const p of [plain, chosen]) {
        const exited = new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once("exit", r)));
        p.kill("SIGKILL");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
