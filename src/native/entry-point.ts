/**
 * Where a worker's code is, for `new Worker(url)`: run from source, the .ts file beside the
 * module asking; inside a `bun build --compile` binary everything is bundled at
 * /$bunfs/root/<path>.js, the path relative to the build's entry points' common directory:
 * src/ for ndmpd itself (engine/scan-worker.js), the repository for a test probe built from
 * test/ (src/engine/scan-worker.js). Undefined when a binary was built without it.
 */
import fs from "node:fs";

/** `from`: the asking module's import.meta.url; `source`: its path relative to src/ ("engine/scan-worker.ts"). */
export function entryPointUrl(from: string, source: string): URL | undefined {
  const here = new URL(from);
  const name = source.slice(source.lastIndexOf("/") + 1);
  if (!here.pathname.startsWith("/$bunfs/")) return new URL(`./${name}`, here);
  const bundled = source.replace(/\.ts$/, ".js");
  for (const rel of [`./${bundled}`, `./src/${bundled}`]) {
    const url = new URL(rel, here);
    if (fs.existsSync(url.pathname)) return url;
  }
  return undefined;
}
