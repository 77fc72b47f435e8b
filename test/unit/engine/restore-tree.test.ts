// The restore writer with the native *at calls (BeneathTree in restore-writer.ts), run under Bun
// by restore-tree-probe.ts: vitest runs under Node, where the writer goes by path instead.
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir } from "../devices/tape/helpers.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const bun = path.join(root, "node_modules/.bin/bun");

function probe(...args: string[]): Promise<Record<string, any>> {
  return new Promise((resolve, reject) =>
    execFile(bun, [path.join(here, "restore-tree-probe.ts"), ...args], { cwd: root, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout.trim().split("\n").at(-1)!)),
    ),
  );
}

describe("restoring through open directory descriptors (Bun)", () => {
  const { dir, cleanup } = makeTempDir("ndmpd-tree-");
  afterAll(cleanup);

  it("writes every file with its mode and nanosecond times, keeps a few descriptors open and closes them all", async () => {
    const dest = path.join(dir, "many");
    const out = await probe("many", dest);
    expect(out.errors).toEqual([]);
    expect(out.files).toBe(60 + 60 * 5 + 3 + 1);
    expect(out.during - out.before).toBeLessThanOrEqual(17); // the destination + TREE_FDS
    expect(out.after).toBe(out.before);
    for (const [name, content] of [["d0/f0", "content 0/0\n"], ["d59/f4", "content 59/4\n"], ["d1/late", "late\n"], ["implicit/deeper/f", "deep\n"]] as const) {
      const p = path.join(dest, name);
      expect(fs.readFileSync(p, "utf8")).toBe(content);
      const st = fs.statSync(p, { bigint: true });
      expect(Number(st.mode & 0o7777n), name).toBe(0o640);
      expect(st.mtimeNs, name).toBe(1_600_000_000_123_456_789n);
    }
    const d = fs.statSync(path.join(dest, "d7"), { bigint: true });
    expect(Number(d.mode & 0o7777n)).toBe(0o750);
    expect(d.mtimeNs).toBe(1_600_000_000_123_456_789n);
    expect(fs.statSync(path.join(dest, "implicit")).mode & 0o7777).toBe(0o755);
  });

  it("never writes outside the destination when a directory is swapped for a symlink during the restore", async () => {
    const dest = path.join(dir, "swap");
    const outside = path.join(dir, "outside");
    fs.mkdirSync(outside, { mode: 0o700 });
    const out = await probe("swap", dest, outside);
    expect(out.outside).toEqual([]); // no escape
    expect(out.outsideMode).toBe(0o700);
    expect(out.after).toBe(out.before);
    // Into a/ while its descriptor is still open: the directory itself (now a.moved), not the symlink.
    expect(out.result["a/1"]).toBe("ok");
    expect(out.result["a/2"]).toBe("ok");
    expect(fs.readFileSync(path.join(dest, "a.moved/2"), "utf8")).toBe("two\n");
    // A new directory under it is made there too, but opening it means walking from the
    // destination through a/, now the symlink: refused. So is every later lookup of a/.
    expect(out.result["a/sub/3"]).toBe("refused");
    expect(out.result["a/4"]).toBe("refused");
    expect(out.result["a/new/5"]).toBe("refused");
    expect(out.result["pre/6"]).toBe("refused");
    expect(out.result["pre/deep/7"]).toBe("refused");
    expect(out.errors.filter((e: string) => e.startsWith("a/4:"))).toEqual(["a/4: refused to restore \"a/4\": a is a symbolic link"]);
    // b, swapped before finish(): its mode and times are not applied through the symlink.
    expect(out.errors.some((e: string) => e.startsWith("b: "))).toBe(true);
  });

  it("leaves no descriptor open when the job stops in the middle of a file", async () => {
    const dest = path.join(dir, "abort");
    const out = await probe("abort", dest);
    expect(out.during).toBeGreaterThan(out.before);
    expect(out.after).toBe(out.before);
    expect(out.errors).toEqual([]);
  });
});
