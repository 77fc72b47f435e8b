/**
 * Snapshots made by the admin's commands (LVM thin, ZFS, XFS on LVM, a SAN): a [[snapshot]]
 * entry whose `path` pattern matches FILESYSTEM runs `create`, which prints the directory where
 * FILESYSTEM's snapshot can be read (its last line of output), and later `delete`. Commands run
 * without a shell, with a time limit; their stderr goes to the server's log. In the arguments
 * {path} is FILESYSTEM, {name} the snapshot's name (ours, with our prefix) and {dir} (delete
 * only) the directory create printed; the same come as NDMPD_SNAPSHOT_PATH, _NAME and _DIR.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import picomatch from "picomatch";
import type { SnapshotHook } from "../config.ts";

export function findHook(hooks: readonly SnapshotHook[], path: string): SnapshotHook | undefined {
  return hooks.find((h) => picomatch.isMatch(path, h.path, { dot: true }));
}

export interface HookVars {
  path: string;
  name: string;
  dir?: string;
}

export function fillIn(argv: readonly string[], v: HookVars): string[] {
  return argv.map((a) => a.replaceAll("{path}", v.path).replaceAll("{name}", v.name).replaceAll("{dir}", v.dir ?? ""));
}

export interface HookRun {
  stdout: string;
  stderr: string;
}

/** Runs one hook command; rejects with what went wrong (exit status, signal, time limit, its stderr). */
export function runHook(argv: string[], v: HookVars, timeoutMs: number): Promise<HookRun> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, NDMPD_SNAPSHOT_PATH: v.path, NDMPD_SNAPSHOT_NAME: v.name, NDMPD_SNAPSHOT_DIR: v.dir ?? "" };
    execFile(argv[0]!, argv.slice(1), { env, timeout: timeoutMs, killSignal: "SIGKILL", encoding: "utf8", maxBuffer: 1024 * 1024 }, (error, stdout, stderr) => {
      if (!error) return resolve({ stdout, stderr });
      const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string; code?: number | string };
      const how = e.killed ? `did not finish within ${timeoutMs / 1000} s` : typeof e.code === "number" ? `exited with status ${e.code}` : e.signal ? `was killed by ${e.signal}` : e.message;
      const tail = stderr.trim().split("\n").slice(-3).join(" / ");
      reject(new Error(`snapshot hook ${argv[0]} ${how}${tail ? `: ${tail}` : ""}`));
    });
  });
}

/** The directory create printed (its last non-empty line): must be an existing absolute directory. */
export function printedDir(stdout: string): string {
  const line = stdout.split("\n").map((l) => l.trim()).filter(Boolean).at(-1);
  if (!line || !line.startsWith("/")) throw new Error("the snapshot hook's create printed no absolute directory");
  let st: fs.Stats;
  try {
    st = fs.statSync(line);
  } catch (e) {
    throw new Error(`the snapshot hook's create printed ${line}, which cannot be read: ${(e as Error).message}`);
  }
  if (!st.isDirectory()) throw new Error(`the snapshot hook's create printed ${line}, which is not a directory`);
  return line;
}
