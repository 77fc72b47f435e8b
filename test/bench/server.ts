/**
 * The compiled server and a logged-in DMA client, for the benchmarks (plain scripts, no vitest).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NdmpClient } from "../../src/client/client.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BINARY = process.env.BENCH_BINARY ?? join(ROOT, "dist/ndmpd");
const USER = "ndmp";
const PASSWORD = "bench-secret";

export interface BenchServer {
  port: number;
  pid: number;
  stop(): Promise<number | null>;
}

/** Starts `binary` (dist/ndmpd, or BENCH_BINARY) on 127.0.0.1 (any port) with `extra` config (e.g. [[tape]] tables). */
export async function startBenchServer(dir: string, extra = "", binary = BINARY): Promise<BenchServer> {
  const cfg = join(dir, "ndmpd.toml");
  writeFileSync(
    cfg,
    `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "${dir}/state"\nauth_failure_delay_ms = 0\n\n[auth]\nmethods = ["md5"]\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n\n${extra}`,
  );
  chmodSync(cfg, 0o600);
  const proc: ChildProcess = spawn(binary, ["serve", "--config", cfg, "--log-format", "json", "--log-level", "info"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  let err = "";
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`ndmpd did not start: ${err}`));
    }, 15_000);
    proc.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      const m = /"msg":"listening"[^\n]*"port":(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
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
    async stop() {
      proc.kill("SIGTERM");
      return exited;
    },
  };
}

/** A client that has opened v4 and authenticated (MD5), as a DMA would. */
export async function benchClient(port: number): Promise<NdmpClient> {
  const c = await NdmpClient.connect("127.0.0.1", port);
  await c.open(4);
  await c.authMd5(USER, PASSWORD);
  return c;
}
