/**
 * Reads a virtual tape cartridge file (src/devices/tape/virtual.ts) as tape files of records, to
 * compare cartridges record for record. Filemarks end files; the end of data ends the last one
 * (an empty last file is not listed).
 */
import { readFileSync } from "node:fs";
import { DATA_START, decodeEntry, ENTRY_HEADER_SIZE, entryEnd } from "../../src/devices/tape/virtual-format.ts";

export function vtapeFiles(path: string): Buffer[][] {
  const buf = readFileSync(path);
  const files: Buffer[][] = [];
  let cur: Buffer[] = [];
  let at = DATA_START;
  for (;;) {
    const e = decodeEntry(buf, at);
    if (!e || e.offset !== at) break;
    if (e.kind === "filemark") {
      files.push(cur);
      cur = [];
    } else {
      cur.push(buf.subarray(at + ENTRY_HEADER_SIZE, at + ENTRY_HEADER_SIZE + e.length));
    }
    at = entryEnd(e);
  }
  if (cur.length > 0) files.push(cur);
  return files;
}
