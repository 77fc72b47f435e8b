/**
 * Run with bun (pass 2's list scan needs the scan workers): a level-0 dump of ROOT during which,
 * once pass 1 is over (at the first directory written), every file named f*3 is removed and
 * d1/f5 becomes a directory. Writes the stream to OUT and prints the warnings and counts as JSON.
 */
import fs from "node:fs";
import path from "node:path";
import { listScanAvailable } from "../../../src/engine/scan.ts";
import { backup } from "./dump-fixture.ts";

const [root, stateDir, out] = process.argv.slice(2) as [string, string, string];
let changed = false;
const removed: string[] = [];
const change = () => {
  if (changed) return;
  changed = true;
  for (const d of fs.readdirSync(root)) {
    for (const f of fs.readdirSync(path.join(root, d))) {
      if (!f.endsWith("3")) continue;
      fs.rmSync(path.join(root, d, f));
      removed.push(`${d}/${f}`);
    }
  }
  fs.rmSync(path.join(root, "d1/f5"));
  fs.mkdirSync(path.join(root, "d1/f5"));
};
const run = await backup(root, stateDir, { style: "dir", progress: change });
fs.writeFileSync(out, run.stream);
console.log(JSON.stringify({ listScan: listScanAvailable(), changed, removed, entries: run.result.entries, warnings: run.warnings }));
