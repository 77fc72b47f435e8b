// Backup-then-restore without a format in between: walk a tree and feed every entry, with its
// content read from the source, to a RestoreWriter. Shared by the Node tests and the Bun probe.
import fs from "node:fs";
import type { NativeApi } from "../../../src/native/index.ts";
import { RestoreWriter } from "../../../src/engine/restore-writer.ts";
import { walk, type WalkItem } from "../../../src/engine/walker.ts";

const CHUNK = 1024 * 1024;

export interface CopyResult {
  items: WalkItem[];
  walkErrors: Array<{ path: Buffer; message: string }>;
  writer: RestoreWriter;
}

export async function copyTree(source: Buffer, destination: Buffer, native?: NativeApi): Promise<CopyResult> {
  const writer = new RestoreWriter({ destination, native });
  const items: WalkItem[] = [];
  const walkErrors: CopyResult["walkErrors"] = [];
  const buf = Buffer.allocUnsafe(CHUNK);
  for await (const item of walk({ root: source, native, onError: (path, err) => walkErrors.push({ path, message: err.message }) })) {
    items.push(item);
    const { entry, absPath } = item;
    await writer.begin(entry, entry.path);
    if (entry.type === "file") {
      const runs = entry.sparse ?? [{ offset: 0, length: entry.size }];
      const fd = fs.openSync(absPath, "r");
      try {
        for (const run of runs) {
          for (let pos = run.offset; pos < run.offset + run.length; ) {
            const n = fs.readSync(fd, buf, 0, Math.min(CHUNK, run.offset + run.length - pos), pos);
            if (n === 0) break;
            await writer.write(Buffer.from(buf.subarray(0, n)), pos);
            pos += n;
          }
        }
      } finally {
        fs.closeSync(fd);
      }
    }
    await writer.end();
  }
  await writer.finish();
  return { items, walkErrors, writer };
}
