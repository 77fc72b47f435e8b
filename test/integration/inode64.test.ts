/**
 * 64-bit inode numbers end to end, on a real filesystem: overlayfs with xino=on over a tmpfs lower
 * layer numbers its files 2^63 + n, where neighbours are one JS number apart only as bigints (as
 * doubles 2^63 + 2 and 2^63 + 3 are equal). A dump backup of it with the compiled binary must
 * give every file its own dump inode, so the recovery returns each file's own contents; hard
 * links stay one inode. Needs root (mount), as CI runs.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";

const ready = havePeers("binary");
const FILES = 40;

describe.runIf(ready)("inode numbers past 2^53 (overlayfs xino)", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-ino64-"));
  const lower = join(W, "lower");
  const merged = join(W, "merged");
  const CFG = join(W, "ndmpd.toml");
  const mounted: string[] = [];
  const sh = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  };

  beforeAll(() => {
    for (const d of ["lower", "upper", "work", "merged"]) mkdirSync(join(W, d));
    sh("mount", ["-t", "tmpfs", "tmpfs", lower]);
    mounted.unshift(lower);
    mkdirSync(join(lower, "d"));
    for (let i = 0; i < FILES; i++) writeFileSync(join(lower, "d", `f${i}`), `contents of file ${i}\n`);
    linkSync(join(lower, "d", "f0"), join(lower, "d", "f0-link"));
    sh("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${W}/upper,workdir=${W}/work,xino=on`, merged]);
    mounted.unshift(merged);
    writeFileSync(CFG, `[server]\nstate_dir = "${W}/state"\n\n[[tape]]\nname = "vt0"\npath = "${W}/vt0.tape"\ncapacity = "256MiB"\n`);
    chmodSync(CFG, 0o600);
  });
  afterAll(() => {
    for (const m of mounted) spawnSync("umount", [m]);
    rmSync(W, { recursive: true, force: true });
  });

  it("the filesystem really numbers files past 2^53, neighbours equal as doubles", () => {
    // BigIntStats are signed: 2^63 + n comes back negative.
    const a = BigInt.asUintN(64, lstatSync(join(merged, "d", "f1"), { bigint: true }).ino);
    const b = BigInt.asUintN(64, lstatSync(join(merged, "d", "f2"), { bigint: true }).ino);
    expect(a > 2n ** 53n).toBe(true);
    expect(a).not.toBe(b);
    expect(Number(a) === Number(b) || Number(a) === Number(b + 1n) || Number(a) === Number(b - 1n)).toBe(true);
  });

  it("a dump backup gives each file its own inode: the recovery returns every file's own contents", async () => {
    const b = await run(BINARY, ["backup", merged, "--format", "dump", "--tape", "vt0", "--config", CFG], { timeoutMs: 120_000 });
    expect(b.code, b.stderr + b.stdout).toBe(0);
    const out = join(W, "out");
    const r = await run(BINARY, ["recover", "--tape", "vt0", "--to", out, "--config", CFG], { timeoutMs: 120_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    for (let i = 0; i < FILES; i++) expect(readFileSync(join(out, "d", `f${i}`), "utf8"), `f${i}`).toBe(`contents of file ${i}\n`);
    const l0 = lstatSync(join(out, "d", "f0"));
    const l1 = lstatSync(join(out, "d", "f0-link"));
    expect(l1.ino).toBe(l0.ino); // the hard link is still one inode
    expect(lstatSync(join(out, "d", "f1")).ino).not.toBe(l0.ino);
  });
});
