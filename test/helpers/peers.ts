/**
 * Real peers the tests talk to (ndmjob, GNU tar, restore, tshark) and the compiled binary.
 * Outside CI a missing peer skips its tests with a message; in CI it is a failure.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { it } from "vitest";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BINARY = `${ROOT}dist/ndmpd`;
export const NDMJOB = "/usr/lib/amanda/ndmjob";
export const IN_CI = !!process.env.CI;

function onPath(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

const PEERS: Record<string, () => boolean> = {
  binary: () => existsSync(BINARY),
  ndmjob: () => existsSync(NDMJOB),
  tshark: () => onPath("tshark"),
  openssl: () => onPath("openssl"),
  unshare: () => onPath("unshare") && onPath("ip") && process.getuid?.() === 0,
  tar: () => onPath("tar"),
  restore: () => existsSync("/usr/sbin/restore") || onPath("restore"),
  deno: () => existsSync(`${ROOT}node_modules/deno/deno`),
  bun: () => existsSync(`${ROOT}node_modules/.bin/bun`),
};

/**
 * True when every named peer is here. When one is missing: in CI, registers a failing test
 * that names it; elsewhere prints why the tests that need it are skipped.
 */
export function havePeers(...names: (keyof typeof PEERS)[]): boolean {
  const missing = names.filter((n) => !PEERS[n]!());
  if (missing.length === 0) return true;
  const what = missing.map((m) => (m === "binary" ? `${BINARY} (npm run build)` : m)).join(", ");
  if (IN_CI) {
    it(`peer available: ${what}`, () => {
      throw new Error(`missing in CI: ${what}`);
    });
  } else {
    console.warn(`skipping tests that need: ${what}`);
  }
  return false;
}
