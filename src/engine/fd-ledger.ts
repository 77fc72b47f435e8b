/**
 * The descriptors a scan worker holds open from one call to the next (the directories it keeps
 * open for *at calls, the file it is reading), noted in memory it shares with the main thread.
 * A worker that is terminated (an aborted backup) runs no finally block, and its descriptors
 * belong to the process: without this, each abort would leak one per directory level. The main
 * thread closes what is still noted once the worker has exited (closeNoted).
 *
 * A slot holds fd + 1 (0 = free). Threads claim and free slots with compare-and-exchange, so the
 * walker and the reader of one scan can share one ledger.
 */
import type { AtApi } from "../native/index.ts";

export const LEDGER_SLOTS = 128;

export function newLedger(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(LEDGER_SLOTS * 4));
}

/** Notes `fd`; false when every slot is taken (the caller must then not keep it open). */
export function noteFd(ledger: Int32Array, fd: number): boolean {
  for (let i = 0; i < ledger.length; i++) if (Atomics.compareExchange(ledger, i, 0, fd + 1) === 0) return true;
  return false;
}

/** Drops `fd` from the ledger (before it is closed, so the main thread never closes a reused number). */
export function forgetFd(ledger: Int32Array, fd: number): void {
  for (let i = 0; i < ledger.length; i++) if (Atomics.compareExchange(ledger, i, fd + 1, 0) === fd + 1) return;
}

/** After the worker exited: closes every descriptor still noted. Returns how many. */
export function closeNoted(ledger: Int32Array, close: (fd: number) => void): number {
  let n = 0;
  for (let i = 0; i < ledger.length; i++) {
    const v = Atomics.exchange(ledger, i, 0);
    if (v <= 0) continue;
    n++;
    try {
      close(v - 1);
    } catch {
      // Already closed: nothing to give back.
    }
  }
  return n;
}

/** `at` whose opens are noted in `ledger` and whose closes forget them first. */
export function ledgered(at: AtApi, ledger: Int32Array): AtApi {
  const noted = new Set<number>();
  const keep = (fd: number): number => {
    if (fd < 0) return fd;
    if (!noteFd(ledger, fd)) {
      at.close(fd);
      return -1; // the caller takes its path-based way
    }
    noted.add(fd);
    return fd;
  };
  // The calls that open or close nothing (statx, pread, listxattrat) are at's own, not wrapped.
  return {
    ...at,
    openDir: (path, follow) => keep(at.openDir(path, follow)),
    openAt: (dirfd, name, flags) => keep(at.openAt(dirfd, name, flags)),
    close(fd) {
      if (noted.delete(fd)) forgetFd(ledger, fd);
      at.close(fd);
    },
  };
}
