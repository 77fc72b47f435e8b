/**
 * What every format's recovery shares: one safe writer per destination directory (each
 * confined to its own), per-target error bookkeeping for LOG_FILE, and the final pass that
 * applies directory modes and times.
 */
import type { NativeApi } from "../native/index.ts";
import { show } from "./backup.ts";
import { RestoreRefused, RestoreWriter } from "./restore-writer.ts";
import type { Target } from "./selection.ts";

export class RestoreSet {
  private readonly writers = new Map<string, RestoreWriter>();

  constructor(
    private readonly native: NativeApi | undefined,
    private readonly warn: (message: string) => void,
  ) {}

  /** The writer confined to `root` (made on first use). */
  writerFor(root: Buffer): RestoreWriter {
    const key = root.toString("latin1");
    let w = this.writers.get(key);
    if (!w) {
      w = new RestoreWriter({ destination: root, native: this.native });
      this.writers.set(key, w);
    }
    return w;
  }

  /** Records the first problem of a target (for its LOG_FILE) and logs this one. */
  fail(target: Target, path: Buffer, err: Error): void {
    const why = err instanceof RestoreRefused ? `refused: ${err.message}` : err.message;
    target.error ??= why;
    this.warn(`${show(path)}: ${why}`);
  }

  /** Finishes every writer: directory modes and times are applied last. */
  async finish(): Promise<void> {
    for (const w of this.writers.values()) {
      try {
        await w.finish();
      } catch (err) {
        this.warn(`finishing ${w.destination.toString()}: ${(err as Error).message}`);
      }
    }
  }
}
