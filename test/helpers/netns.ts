/**
 * A private network namespace holding only `lo`, so that peers that bind every address
 * (ndmjob's daemon and mover) and captures on the fixed NDMP port 10000 stay inside the test.
 * Needs root (CI runs as root).
 */
import { spawn, type ChildProcess } from "node:child_process";

export interface Netns {
  pid: number;
  /** argv prefix that runs a command inside the namespace. */
  prefix(): string[];
  stop(): Promise<void>;
}

export async function createNetns(): Promise<Netns> {
  const holder: ChildProcess = spawn("unshare", ["-n", "sh", "-c", "ip link set lo up && echo ready && exec sleep 100000"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.once("data", () => resolve());
    holder.once("exit", (code) => reject(new Error(`unshare failed (${code})`)));
  });
  const exited = new Promise<void>((r) => holder.once("exit", () => r()));
  return {
    pid: holder.pid!,
    prefix: () => ["nsenter", "-t", String(holder.pid), "-n", "--"],
    async stop() {
      holder.kill("SIGKILL");
      await exited;
    },
  };
}
