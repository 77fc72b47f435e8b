/**
 * What every format's recovery shares: one safe writer per destination directory (each
 * confined to its own), per-target error bookkeeping for LOG_FILE, and the final pass that
 * applies directory modes and times.
 */
import type { NativeApi } from "../native/index.ts";
import { RecoveryStatus } from "../protocol/codes.ts";
import { show } from "./backup.ts";
import { errorCode, joinPath } from "./fsutil.ts";
import { CreateQueue, FileCreator } from "./file-creator.ts";
import { RestoreRefused, RestoreWriter, type FailureTag, type OverwritePolicy } from "./restore-writer.ts";
import type { Targets } from "./targets.ts";

/** The LOG_FILE status of a failure, from what failed (the error's kind and errno), not its text. */
export function recoveryStatusOf(err: unknown): number {
  if (err instanceof RestoreRefused) return RecoveryStatus.FAILED_PERMISSION; // outside the destination, through a symlink...
  switch (errorCode(err)) {
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return RecoveryStatus.FAILED_PERMISSION;
    case "ENOENT":
    case "ENOTDIR":
      return RecoveryStatus.FAILED_NO_DIRECTORY;
    case "ENOMEM":
      return RecoveryStatus.FAILED_OUT_OF_MEMORY;
    case undefined:
      return RecoveryStatus.FAILED_UNDEFINED_ERROR;
    default:
      return RecoveryStatus.FAILED_IO_ERROR; // EIO, ENOSPC, EDQUOT...
  }
}

/** Metadata problems logged one by one; past that, counted (a restore as a user that may not chown could have millions). */
const WARNINGS_LOGGED = 100;

export class RestoreSet {
  private readonly writers = new Map<string, RestoreWriter>();
  /** Objects that could not be restored, and the first of them (the job's summary says so). */
  failed = 0;
  firstFailed: Buffer | undefined;
  /** Of those, objects whose end() had returned (made by the creator threads): not restored after all. */
  lateFailed = 0;
  /** The threads that make small files, and their queue, shared by the writers (with the native *at calls only). */
  private queue: Promise<CreateQueue | undefined> | undefined;

  constructor(
    private readonly targets: Targets,
    private readonly native: NativeApi | undefined,
    private readonly warn: (message: string) => void,
    private readonly overwrite: OverwritePolicy = "always",
  ) {}

  /** The writer confined to `root` (made on first use). */
  writerFor(root: Buffer): RestoreWriter {
    const key = root.toString("latin1");
    let w = this.writers.get(key);
    if (!w) {
      if (this.native?.atCalls) {
        this.queue ??= FileCreator.take().then(
          (creator) => creator && new CreateQueue(creator),
          () => undefined,
        );
      }
      w = new RestoreWriter({
        destination: root,
        native: this.native,
        overwrite: this.overwrite,
        queue: this.queue,
        onLateFailure: (tag: FailureTag, err: Error) => {
          this.lateFailed++;
          this.fail(tag.target, tag.path, err);
        },
        onWarning: (rel: Buffer, reason: string) => this.warnOnce(joinPath(root, rel), reason),
      });
      this.writers.set(key, w);
    }
    return w;
  }

  /** Problems that did not fail their object, and how many of them were logged one by one. */
  private warnings = 0;

  /** `path`: where the object is (the destination's path and its own). */
  private warnOnce(path: Buffer, reason: string): void {
    if (this.warnings++ < WARNINGS_LOGGED) this.warn(`${path.toString("utf8")}: ${reason}`);
  }

  /** Records the first problem of a target (for its LOG_FILE) and logs this one. */
  fail(target: number, path: Buffer, err: Error): void {
    const why = err instanceof RestoreRefused ? `refused: ${err.message}` : err.message;
    this.targets.fail(target, recoveryStatusOf(err), why);
    if (this.failed++ === 0) this.firstFailed = Buffer.from(path);
    this.warn(`${show(path)}: ${why}`);
  }

  /** Finishes every writer: directory modes and times are applied last. */
  async finish(): Promise<void> {
    const kept: Buffer[] = [];
    for (const w of this.writers.values()) {
      try {
        await w.finish();
      } catch (err) {
        this.warn(`finishing ${w.destination.toString()}: ${(err as Error).message}`);
      }
      // After finish(): the creator threads' files are settled there, those kept included.
      kept.push(...w.stats.kept);
    }
    (await this.queue)?.release();
    this.queue = undefined;
    if (this.warnings > WARNINGS_LOGGED) this.warn(`${this.warnings - WARNINGS_LOGGED} more object(s) restored with a problem like the above (not each logged)`);
    // One message, not one per object: a restore over a full tree may keep thousands.
    if (kept.length > 0) {
      const some = kept.slice(0, 5).map((p) => p.toString("utf8")).join(", ");
      this.warn(`${kept.length} existing object(s) kept, not overwritten (OVERWRITE=${this.overwrite === "never" ? "n" : this.overwrite}): ${some}${kept.length > 5 ? ", ..." : ""}`);
    }
  }
}
