/**
 * Runs the real compiled ndmpd on a loopback port for a test, with a config of the test's.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Netns } from "./netns.ts";
import { BINARY } from "./peers.ts";

export const USER = "ndmp";
export const PASSWORD = "test-secret";

export interface RunningServer {
  port: number;
  pid: number;
  proc: ChildProcess;
  dir: string;
  /** Parsed JSON log lines so far. */
  logs: Array<Record<string, any>>;
  stderr(): string;
  /** Open file descriptors of the server process (leak checks). */
  fdCount(): number;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  /** TOML; "$DIR" becomes the server's temp dir. Default: loopback, any port, md5+text. */
  config?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Run inside this network namespace (via nsenter). */
  netns?: Netns;
}

export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const dir = mkdtempSync(join(tmpdir(), "ndmpd-it-"));
  const cfgPath = join(dir, "ndmpd.toml");
  const config =
    opts.config ??
    `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "${dir}/state"\nauth_failure_delay_ms = 0\n\n[auth]\nmethods = ["md5", "text"]\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`;
  writeFileSync(cfgPath, config.replaceAll("$DIR", dir));
  chmodSync(cfgPath, 0o600);
  const argv = [...(opts.netns?.prefix() ?? []), BINARY];
  const proc = spawn(argv[0]!, [...argv.slice(1), "serve", "--config", cfgPath, "--log-format", "json", "--log-level", "debug", ...(opts.args ?? [])], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...opts.env },
  });
  let err = "";
  const logs: Array<Record<string, any>> = [];
  let exited: number | null | undefined;
  const exitPromise = new Promise<number | null>((r) => proc.once("exit", (code) => r((exited = code))));
  proc.stdout!.resume();
  let consumed = 0;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ndmpd did not start: ${err}`)), 15_000);
    proc.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      let nl;
      while ((nl = err.indexOf("\n", consumed)) >= 0) {
        const line = err.slice(consumed, nl);
        consumed = nl + 1;
        try {
          const j = JSON.parse(line);
          logs.push(j);
          if (j.msg === "listening") {
            clearTimeout(timer);
            resolve(j.port);
          }
        } catch {
          // not JSON (a crash trace): kept in stderr()
        }
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`ndmpd exited with ${code}: ${err}`));
    });
  });
  return {
    port,
    pid: proc.pid!,
    proc,
    dir,
    logs,
    stderr: () => err,
    fdCount: () => readdirSync(`/proc/${proc.pid}/fd`).length,
    async stop(signal = "SIGTERM") {
      if (exited === undefined) proc.kill(signal);
      const code = await exitPromise;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
