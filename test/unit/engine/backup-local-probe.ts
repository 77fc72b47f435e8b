/**
 * Run with bun (scan workers and their read-ahead frames need it): a tar backup of ROOT through a
 * LOCAL pipe to a reader that behaves like the mover (copies each chunk into records, waiting on
 * every record), then every file's content in the stream checked against the disk. Prints JSON.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { readAll } from "../../../formats/tar/reader.ts";
import { runTarBackup } from "../../../src/engine/backup.ts";
import { createLocalPair } from "../../../src/transport/local.ts";

const root = process.argv[2]!;
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-probe-state-"));
const { mover, data } = createLocalPair();
const RECORD = 10_240;
const record = Buffer.alloc(RECORD);
const stream: Buffer[] = [];
const reading = (async () => {
  let fill = 0;
  for await (const chunk of mover as AsyncIterable<Buffer>) {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(RECORD - fill, chunk.length - off);
      chunk.copy(record, fill, off, off + n);
      fill += n;
      off += n;
      if (fill === RECORD) {
        stream.push(Buffer.from(record));
        fill = 0;
        await new Promise((r) => setImmediate(r)); // the tape write: later bytes may arrive meanwhile
      }
    }
  }
  stream.push(Buffer.from(record.subarray(0, fill)));
})();
const result = await runTarBackup({
  root: Buffer.from(root), out: data, historyStyle: "file", level: 0, stateDir, env: new Map(), signal: new AbortController().signal, warn: (m) => console.error(m),
});
await reading;
fs.rmSync(stateDir, { recursive: true, force: true });
const mismatches: string[] = [];
let files = 0;
const contents = new Map<string, Buffer[]>();
let current: string | undefined;
for (const ev of readAll(Buffer.concat(stream))) {
  if (ev.kind === "entry") {
    current = ev.entry.type === "file" ? ev.entry.path.toString() : undefined;
    if (current) files++;
  }
  else if (ev.kind === "data" && current) contents.set(current, [...(contents.get(current) ?? []), Buffer.from(ev.chunk)]);
}
for (const [name, parts] of contents) {
  if (!Buffer.concat(parts).equals(fs.readFileSync(path.join(root, name)))) mismatches.push(name);
}
console.log(JSON.stringify({ entries: result.entries, files, withData: contents.size, mismatches: mismatches.slice(0, 5) }));
