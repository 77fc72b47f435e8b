// The restore writer with the native *at calls (BeneathTree in restore-writer.ts), run under Bun
// by restore-tree-probe.ts: vitest runs under Node, where the writer goes by path instead.
// Every case twice: the writer making each file itself, and with creator threads making the
// small ones (file-creator.ts), as a recovery's writers do.
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir } from "../devices/tape/helpers.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const bun = path.join(root, "node_modules/.bin/bun");

function probeWith(creator: boolean, ...args: string[]): Promise<Record<string, any>> {
  const env = { ...process.env, PROBE_CREATOR: creator ? "1" : "0" };
  return new Promise((resolve, reject) =>
    execFile(bun, [path.join(here, "restore-tree-probe.ts"), ...args], { cwd: root, env, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout.trim().split("\n").at(-1)!)),
    ),
  );
}

/** Directory descriptors a batch out may still hold past the tree's own (file-creator.ts RETIRED_MAX). */
const RETIRED_MAX = 64;

describe.each([
  ["the writer itself", false],
  ["creator threads", true],
])("restoring through open directory descriptors (Bun), files made by %s", (_, creator) => {
  const { dir, cleanup } = makeTempDir("ndmpd-tree-");
  afterAll(cleanup);
  const probe = (...args: string[]) => probeWith(creator, ...args);
  // Worker threads open descriptors of their own as they start: with them, no more at the end than before.
  const noLeak = (out: Record<string, any>) => (creator ? expect(out.after).toBeLessThanOrEqual(out.before) : expect(out.after).toBe(out.before));

  it("writes every file with its mode and nanosecond times, keeps a few descriptors open and closes them all", async () => {
    const dest = path.join(dir, "many");
    const out = await probe("many", dest);
    expect(out.errors).toEqual([]);
    expect(out.files).toBe(60 + 60 * 5 + 3 + 1);
    expect(out.during - out.before).toBeLessThanOrEqual(17 + (creator ? RETIRED_MAX : 0)); // the destination + TREE_FDS
    noLeak(out);
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
    noLeak(out);
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
    // b, swapped before finish(): its mode and times are not applied through the symlink, and
    // that is told (onWarning), not only recorded: the object itself was restored.
    expect(out.errors.some((e: string) => e.startsWith("b: "))).toBe(true);
    expect(out.warnings.some((e: string) => e.startsWith("b: "))).toBe(true);
    // Refusals fail their object (the caller reports them); only the rest are warnings.
    expect(out.warnings.some((e: string) => e.includes("refused"))).toBe(false);
  });

  it("leaves no descriptor open when the job stops in the middle of a file", async () => {
    const dest = path.join(dir, "abort");
    const out = await probe("abort", dest);
    expect(out.during).toBeGreaterThan(out.before);
    noLeak(out);
    expect(out.errors).toEqual([]);
  });

  it("keeps the archive's order and every byte: duplicates, holes, late xattrs, links, replaced names, OVERWRITE", async () => {
    const dest = path.join(dir, "queue");
    const out = await probe("queue", dest);
    noLeak(out);
    const long = "x".repeat(256);
    // Said once either way: at begin() by the writer itself, after end() by the creator threads.
    expect(out.errors).toEqual([`${long}: ENAMETOOLONG: openat failed`]);
    expect(creator ? out.late : out.early).toEqual([`${long}: ENAMETOOLONG: openat failed`]);
    expect(creator ? out.early : out.late).toEqual([]);
    expect(out.files).toBe(14);
    expect(out.dup).toBe("second\n"); // the later of two objects of one name
    expect(out.empty).toBe("");
    expect(out.bytes).toBe(true);
    expect(out.sparse).toEqual({ size: 8192, blocks: 8, tail: true }); // the hole is still one
    expect(out.xattr).toBe("value");
    expect(out.linked).toBe(true);
    expect(out.wasFile).toBe("dup");
    expect(out.wasFile2).toBe(true);
    expect(out.inDir).toBe("ok");
    expect(out.old).toBe("new\n");
    expect(out.kept).toBe("old\n");
    expect(out.keptList).toEqual([`${dest}-keep/kept`]);
    expect(out.mode).toBe(0o640);
    expect(out.mtime).toBe("1600000000123456789");
  });
});
