// The creator threads (file-creator.ts) under Bun, by file-creator-probe.ts: vitest runs under
// Node, which has no creator threads (the restore writer makes every file itself there).
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { FileCreator } from "../../../src/engine/file-creator.ts";
import { makeTempDir } from "../devices/tape/helpers.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const bun = path.join(root, "node_modules/.bin/bun");

describe("creator threads", () => {
  const { dir, cleanup } = makeTempDir("ndmpd-creator-");
  afterAll(cleanup);

  it("under Node there are none: the writer makes its files itself", async () => {
    expect(await FileCreator.take()).toBeUndefined();
  });

  it("make every file of many batches whole, keep a retired descriptor open until its batches are back, report each failure once", async () => {
    const out = await new Promise<Record<string, any>>((resolve, reject) =>
      execFile(bun, [path.join(here, "file-creator-probe.ts"), dir], { cwd: root, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout.trim().split("\n").at(-1)!)),
      ),
    );
    expect(out.files).toBe(2000);
    expect(out.wrong).toBe(0);
    expect(out.threads).toBeGreaterThanOrEqual(1);
    expect(out.maxOut).toBeLessThanOrEqual(2 * out.threads);
    expect(out.pendingBeforeRetire).toBe(true); // the last file was still out when its directory was retired
    expect(out.openAfterRetire).toBe(true);
    expect(out.closedAfterDrain).toBe(true);
    expect(out.failures).toEqual(["bad0: openat ENOTDIR fatal", "bad1: openat ENOTDIR fatal", "bad2: openat ENOTDIR fatal"]);
  });
});

describe("creator threads in the binary", () => {
  it("are an entry point of the build, so a compiled recovery has them", () => {
    const script = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")).scripts.build as string;
    expect(script.split(/\s+/)).toContain("src/engine/create-worker.ts");
  });
});
