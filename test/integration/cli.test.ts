/**
 * The command line of the compiled binary, the embedded defaults, and the same code under
 * the other runtimes (Bun from source, Deno through deno.json).
 */
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createNetns } from "../helpers/netns.ts";
import { BINARY, havePeers, ROOT } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";

const dir = mkdtempSync(join(tmpdir(), "ndmpd-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.runIf(havePeers("binary"))("ndmpd command line", () => {
  it("prints its version and help for every command", async () => {
    expect((await run(BINARY, ["version"])).stdout).toMatch(/^ndmpd \d+\.\d+\.\d+\n$/);
    const help = await run(BINARY, ["help"]);
    expect(help.code).toBe(0);
    for (const cmd of ["serve", "query", "version", "help"]) expect(help.stdout).toContain(`  ${cmd}`);
    for (const cmd of ["serve", "query", "version"]) {
      const r = await run(BINARY, [cmd, "--help"]);
      expect(r.code, cmd).toBe(0);
      expect(r.stdout).toContain(`Usage: ndmpd ${cmd}`);
    }
    expect((await run(BINARY, ["help", "query"])).stdout).toContain("Usage: ndmpd query");
    const bad = await run(BINARY, ["frobnicate"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("unknown command 'frobnicate'");
    expect((await run(BINARY, ["serve", "--bogus"])).code).toBe(2);
  });

  it("rejects an invalid config with one message naming the key and line, exit 2", async () => {
    const p = join(dir, "bad.toml");
    writeFileSync(p, `[server]\nlisten = "127.0.0.1:10000"\n\n[identity]\nvendor = 42\n`);
    chmodSync(p, 0o600);
    const r = await run(BINARY, ["serve", "--config", p]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`ndmpd: ${p}:5: identity.vendor: must be a string of 1-255 characters`);
    const open = join(dir, "open.toml");
    writeFileSync(open, `[[user]]\nname = "ndmp"\npassword = "x"\n`);
    chmodSync(open, 0o644);
    const r2 = await run(BINARY, ["serve", "--config", open]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/readable by everyone/);
    const syntax = join(dir, "syntax.toml");
    writeFileSync(syntax, `[server]\nlisten = \n`);
    const r3 = await run(BINARY, ["serve", "--config", syntax]);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toMatch(new RegExp(`^ndmpd: ${syntax}:2: `));
  });

  it.runIf(havePeers("unshare"))("with no config serves 127.0.0.1:10000 with a one-time password for user ndmp", async () => {
    const ns = await createNetns();
    const [cmd, ...pre] = ns.prefix();
    const srv = spawn(cmd!, [...pre, BINARY], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NDMPD_PASSWORD: "", NDMPD_STATE_DIR: join(dir, "state-bare") } });
    const exited = new Promise<number | null>((r) => srv.once("exit", (c) => r(c)));
    try {
      const out = await new Promise<string>((resolve, reject) => {
        let s = "";
        srv.stdout!.on("data", (c) => {
          s += c;
          if (s.includes("\n")) resolve(s);
        });
        srv.once("exit", () => reject(new Error("exited")));
      });
      const pw = /one-time password (\S+)/.exec(out)![1]!;
      let q;
      for (let i = 0; i < 50; i++) {
        q = await run(cmd!, [...pre, BINARY, "query", "127.0.0.1", "--user", "ndmp", "--password", pw]);
        if (q.code === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(q!.code).toBe(0);
      expect(q!.stdout).toContain("Server 127.0.0.1:10000 NDMPv4");
      // Only loopback: the namespace's other addresses are not served.
      const wrong = await run(cmd!, [...pre, BINARY, "query", "127.0.0.1", "--user", "ndmp", "--password", "guess"]);
      expect(wrong.code).toBe(1);
    } finally {
      srv.kill("SIGTERM");
      expect(await exited).toBe(0);
      await ns.stop();
    }
  });
});

describe.runIf(havePeers("binary"))("IPv6", () => {
  it("serves an IPv6 listen address and answers `ndmpd query` over it", async () => {
    const { startServer, USER, PASSWORD } = await import("../helpers/server.ts");
    const srv = await startServer({
      config: `[server]\nlisten = "[::1]:0"\nstate_dir = "$DIR/s"\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`,
    });
    try {
      const q = await run(BINARY, ["query", `[::1]:${srv.port}`, "--user", USER, "--password", PASSWORD]);
      expect(q.code, q.stderr).toBe(0);
      expect(q.stdout).toContain(`Server ::1:${srv.port} NDMPv4`);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  });
});

describe.runIf(havePeers("bun", "unshare"))("the README's start command", () => {
  it("`npm start` serves the embedded defaults on 127.0.0.1:10000", async () => {
    const ns = await createNetns();
    const [cmd, ...pre] = ns.prefix();
    const srv = spawn(cmd!, [...pre, "npm", "start"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NDMPD_PASSWORD: "readme-pw", NDMPD_STATE_DIR: join(dir, "state-npm") }, detached: true });
    const exited = new Promise<void>((r) => srv.once("exit", () => r()));
    try {
      let q;
      for (let i = 0; i < 100; i++) {
        q = await run(cmd!, [...pre, BINARY, "query", "127.0.0.1", "--user", "ndmp", "--password", "readme-pw"]);
        if (q.code === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(q!.code, q!.stderr).toBe(0);
      expect(q!.stdout).toContain("Server 127.0.0.1:10000 NDMPv4");
    } finally {
      // npm runs bun as a child: signal the whole process group.
      process.kill(-srv.pid!, "SIGTERM");
      await exited;
      await ns.stop();
    }
  }, 60_000);
});

describe("runtime portability", () => {
  it.runIf(havePeers("bun"))("bun src/main.ts version", async () => {
    const r = await run(`${ROOT}node_modules/.bin/bun`, ["src/main.ts", "version"], { cwd: ROOT });
    expect(r.stdout).toMatch(/^ndmpd \d+\.\d+\.\d+\n$/);
  });

  it.runIf(havePeers("deno"))("deno task start -- version", async () => {
    const r = await run(`${ROOT}node_modules/deno/deno`, ["task", "start", "--", "version"], { cwd: ROOT, timeoutMs: 120_000 });
    expect(r.stdout).toMatch(/ndmpd \d+\.\d+\.\d+\n$/);
    expect(r.code).toBe(0);
  });
});
