/**
 * The tar recovery: data connection -> pax reader -> the objects the nlist selects -> the
 * safe writer, one writer per destination directory, none of which can be escaped.
 *
 * The same loop serves DATA_START_RECOVER_FILEHIST: with `extract` off it writes nothing and
 * posts file history for what it reads instead.
 */
import type { Duplex } from "node:stream";
import type { Entry } from "../../formats/entry.ts";
import { TarReader, type TarEvent } from "../../formats/tar/reader.ts";
import { hostIdOf } from "../host/accounts.ts";
import type { NativeApi } from "../native/index.ts";
import { show } from "./backup.ts";
import { fileStat, type FileHistory } from "./history.ts";
import { RestoreRefused, RestoreWriter } from "./restore-writer.ts";
import { placeFor, type Target } from "./selection.ts";

export interface RecoverOptions {
  input: Duplex;
  targets: Target[];
  recursive: boolean;
  /** false for RECOVER_FILEHIST: read and report, write nothing. */
  extract: boolean;
  history?: FileHistory;
  native?: NativeApi;
  signal: AbortSignal;
  warn(message: string): void;
  progress?(bytes: number, entries: number): void;
}

export interface RecoverResult {
  bytes: number;
  entries: number;
  restored: number;
  /** The archive's end-of-archive marker was seen. */
  complete: boolean;
}

/** The archive ended early or is damaged: the recovery failed. */
export class RecoverFailed extends Error {
  override name = "RecoverFailed";
}

export async function runTarRecover(opts: RecoverOptions): Promise<RecoverResult> {
  const reader = new TarReader({ resolveAclName: hostIdOf });
  const writers = new Map<string, RestoreWriter>();
  let bytes = 0;
  let entries = 0;
  let restored = 0;
  let complete = false;
  /** The object being written, while its data arrives. */
  let current: { writer: RestoreWriter; target: Target; path: Buffer } | undefined;

  const writerFor = (root: Buffer): RestoreWriter => {
    const key = root.toString("latin1");
    let w = writers.get(key);
    if (!w) {
      w = new RestoreWriter({ destination: root, native: opts.native });
      writers.set(key, w);
    }
    return w;
  };

  const fail = (target: Target, path: Buffer, err: Error) => {
    const why = err instanceof RestoreRefused ? `refused: ${err.message}` : err.message;
    target.error ??= why;
    opts.warn(`${show(path)}: ${why}`);
  };

  const onEntry = async (entry: Entry, offset: number) => {
    entries++;
    if (opts.history) await opts.history.addFile(entry.path, fileStat(entry), BigInt(entry.ino ?? 0), BigInt(offset));
    if (!opts.extract) return;
    const place = placeFor(entry.path, opts.targets, opts.recursive);
    if (!place) return;
    place.target.found = true;
    let e = entry;
    if (entry.type === "hardlink" && entry.linkTarget) {
      // The first name of the inode must have been restored under the same destination.
      const first = placeFor(entry.linkTarget, opts.targets, opts.recursive);
      if (!first || first.root.compare(place.root) !== 0) {
        fail(place.target, entry.path, new Error("its hard-link partner is not part of this restore"));
        return;
      }
      e = { ...entry, linkTarget: first.rel };
    }
    const writer = writerFor(place.root);
    try {
      await writer.begin(e, place.rel);
      current = { writer, target: place.target, path: entry.path };
    } catch (err) {
      fail(place.target, entry.path, err as Error);
    }
  };

  const onEvent = async (ev: TarEvent) => {
    switch (ev.kind) {
      case "entry":
        await onEntry(ev.entry, ev.offset);
        break;
      case "data":
        if (current) {
          try {
            await current.writer.write(ev.chunk, ev.fileOffset);
          } catch (err) {
            fail(current.target, current.path, err as Error);
            current = undefined;
          }
        }
        break;
      case "end-of-entry":
        if (current) {
          try {
            await current.writer.end();
            restored++;
          } catch (err) {
            fail(current.target, current.path, err as Error);
          }
          current = undefined;
        }
        break;
      case "end":
        complete = true;
        break;
    }
  };

  try {
    for await (const chunk of opts.input as AsyncIterable<Buffer>) {
      if (opts.signal.aborted) throw opts.signal.reason ?? new Error("aborted");
      bytes += chunk.length;
      for (const ev of reader.feed(chunk)) {
        await onEvent(ev);
        if (complete) break;
      }
      opts.progress?.(bytes, entries);
      if (complete) break;
    }
  } finally {
    for (const w of writers.values()) {
      try {
        await w.finish();
      } catch (err) {
        opts.warn(`finishing ${w.destination.toString()}: ${(err as Error).message}`);
      }
    }
  }
  if (!complete) throw new RecoverFailed("the backup stream ended before the end of the archive");
  return { bytes, entries, restored, complete };
}
