import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RestoreWriter } from "../../../src/engine/restore-writer.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-purge-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const B = (s: string) => Buffer.from(s, "latin1");

describe("RestoreWriter.purge (an incremental's deletions)", () => {
  it("removes what the listing does not keep, whole subtrees included, and reports it", async () => {
    const dest = path.join(tmp, "d1");
    fs.mkdirSync(path.join(dest, "dir/gone/deep"), { recursive: true });
    fs.writeFileSync(path.join(dest, "dir/keep"), "k");
    fs.writeFileSync(path.join(dest, "dir/drop"), "d");
    fs.writeFileSync(path.join(dest, "dir/gone/deep/x"), "x");
    fs.chmodSync(path.join(dest, "dir/gone/deep"), 0o500); // read-only: still removed
    fs.writeFileSync(Buffer.concat([B(dest + "/dir/"), Buffer.from([0xff])]), "non-UTF-8");
    const w = new RestoreWriter({ destination: B(dest) });
    const removed = await w.purge(B("dir"), (name) => name.equals(B("keep")));
    await w.finish();
    expect(removed.map((r) => r.toString("latin1")).sort()).toEqual(["dir/drop", "dir/gone", "dir/\xff"]);
    expect(fs.readdirSync(path.join(dest, "dir"))).toEqual(["keep"]);
    expect(w.stats.errors).toEqual([]);
  });

  it("never follows a symlink: one in the destination is removed itself, its target is left alone", async () => {
    const outside = path.join(tmp, "outside");
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, "precious"), "p");
    const dest = path.join(tmp, "d2");
    fs.mkdirSync(path.join(dest, "real"), { recursive: true });
    fs.symlinkSync(outside, path.join(dest, "link"));
    fs.symlinkSync(outside, path.join(dest, "real/inner-link"));
    const w = new RestoreWriter({ destination: B(dest) });
    await w.purge(B("."), (name) => name.equals(B("real")));
    await w.purge(B("real"), () => false);
    await w.finish();
    expect(fs.readdirSync(dest)).toEqual(["real"]);
    expect(fs.readdirSync(path.join(dest, "real"))).toEqual([]);
    expect(fs.readFileSync(path.join(outside, "precious"), "utf8")).toBe("p");
  });

  it("refuses a directory reached through a symlink, and paths that leave the destination", async () => {
    const outside = path.join(tmp, "outside2");
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, "precious"), "p");
    const dest = path.join(tmp, "d3");
    fs.mkdirSync(dest);
    fs.symlinkSync(outside, path.join(dest, "link"));
    const w = new RestoreWriter({ destination: B(dest) });
    await expect(w.purge(B("link"), () => false)).rejects.toThrow(/symbolic link/);
    await expect(w.purge(B("../outside2"), () => false)).rejects.toThrow(/\.\./);
    await w.finish();
    expect(fs.readdirSync(outside)).toEqual(["precious"]);
  });
});
