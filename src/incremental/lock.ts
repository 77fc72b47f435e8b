/**
 * The lock around every read-modify-write of the incremental state: an in-process queue (two
 * backups in one server) plus a lock file created with O_EXCL (a server and a CLI job, or two
 * servers, on one state directory). A lock file left by a process that died is taken over.
 */
import fsp from "node:fs/promises";
import { join } from "node:path";

const LOCK_NAME = "dumpdates.lock";
const RETRY_MS = 20;
const GIVE_UP_MS = 30_000;

let queue: Promise<unknown> = Promise.resolve();

export function withStateLock<T>(stateDir: string, body: () => Promise<T>): Promise<T> {
  const run = queue.then(() => holdingFileLock(stateDir, body));
  queue = run.catch(() => {});
  return run;
}

async function holdingFileLock<T>(stateDir: string, body: () => Promise<T>): Promise<T> {
  await fsp.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, LOCK_NAME);
  const deadline = Date.now() + GIVE_UP_MS;
  for (;;) {
    try {
      const fh = await fsp.open(path, "wx", 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      if (await holderIsGone(path)) {
        await fsp.unlink(path).catch(() => {});
        continue;
      }
      if (Date.now() > deadline) throw new Error(`${path} has been held by another process for ${GIVE_UP_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }
  try {
    return await body();
  } finally {
    await fsp.unlink(path).catch(() => {});
  }
}

/** The lock file names a process that no longer exists (or is unreadable garbage, long left). */
async function holderIsGone(path: string): Promise<boolean> {
  let text: string;
  try {
    text = await fsp.readFile(path, "utf8");
  } catch {
    return false; // just released, or being written: try again
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) {
    const st = await fsp.stat(path).catch(() => undefined);
    return st !== undefined && Date.now() - st.mtimeMs > 5000;
  }
  // The in-process queue lets one holder at a time through: our own pid here is a leftover.
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}
