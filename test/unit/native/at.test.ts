import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir } from "../devices/tape/helpers.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const bun = path.join(root, "node_modules/.bin/bun");

describe("the *at calls under Bun (AtApi)", () => {
  const { dir, cleanup } = makeTempDir("ndmpd-at-");
  afterAll(cleanup);

  it("openat2 stays beneath its directory and refuses every symlink; the other calls act on the names given", async () => {
    fs.mkdirSync(path.join(dir, "a"), { mode: 0o755 });
    fs.symlinkSync("/etc", path.join(dir, "l"));
    const out = await new Promise<string>((resolve, reject) =>
      execFile(bun, [path.join(here, "at-probe.ts"), dir], { cwd: root, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const result = JSON.parse(out.trim().split("\n").at(-1)!);
    expect(result.resolve).toEqual({
      a: "ok",
      l: "ELOOP",
      "l/passwd": "ELOOP",
      "a/../l": "ELOOP",
      "..": "EXDEV",
      "a/../..": "EXDEV",
      "/etc": "EXDEV",
    });
    expect(result.magic).toBe("ELOOP");
    expect(result.exclusive).toBe("EEXIST");
    expect(result.noFollowOpen).toBe("ELOOP");
    expect(result.chownSelf).toBe("ok");
    expect(result.rmdirFile).toBe("ENOTDIR");
    expect(result.missing).toBe("ENOENT");
    expect(result.symTimes).toEqual(["1000000000123456789", "4102444800987654321"]);
    expect(result.names).toEqual(["f", "fifo", "hardsym", "sym"]);
    expect(result.fileMode).toBe(0o640 & ~process.umask());
    expect(result.fifo).toBe(true);
    expect(result.hardsym).toBe(true);
  });
});
