import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { wantsRestart } from "../../src/jit-tier.ts";
import { BINARY } from "../helpers/peers.ts";

describe("jit-tier: the short job commands start again without JSC's top tier", () => {
  const argv = (cmd: string) => ["/x/ndmpd", "/$bunfs/root/ndmpd", cmd, "DIR"];

  it("restarts the compiled binary for backup and recover only", () => {
    expect(wantsRestart(argv("backup"), {}, true)).toBe(true);
    expect(wantsRestart(argv("recover"), {}, true)).toBe(true);
    for (const cmd of ["serve", "list", "remote", "query", "version", "--version"]) expect(wantsRestart(argv(cmd), {}, true)).toBe(false);
    expect(wantsRestart(["/x/ndmpd", "/$bunfs/root/ndmpd"], {}, true)).toBe(false);
  });

  it("never from source, and never twice (nor when the operator chose the option)", () => {
    expect(wantsRestart(argv("backup"), {}, false)).toBe(false);
    expect(wantsRestart(argv("backup"), { BUN_JSC_useFTLJIT: "0" }, true)).toBe(false);
    expect(wantsRestart(argv("backup"), { BUN_JSC_useFTLJIT: "1" }, true)).toBe(false);
  });

  it.skipIf(!existsSync(BINARY))("the restarted binary still runs the command with its arguments", () => {
    const r = spawnSync(BINARY, ["backup", "--help"], { encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("backup");
    const bad = spawnSync(BINARY, ["recover", "--no-such-option"], { encoding: "utf8", timeout: 30_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("no-such-option");
  });
});
