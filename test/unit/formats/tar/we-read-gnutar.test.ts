/**
 * Our reader must decode what GNU tar (pax, gnu, ustar formats; sparse 0.0, 0.1, 1.0 and old
 * GNU sparse) and bsdtar write from a real tree: every name byte, content byte and attribute.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Entry } from "../../../../formats/entry.ts";
import {
  collect,
  isGnuTar,
  isRoot,
  logicalContent,
  pattern,
  type ReadItem,
  readInChunks,
  run,
  tempDir,
  toolTestsEnabled,
} from "./helpers.ts";

const tarOk = toolTestsEnabled("tar", "install GNU tar") && (isGnuTar() || !!process.env.CI);
const bsdOk = toolTestsEnabled("bsdtar", "apt-get install libarchive-tools");
const setfattrOk = spawnSync("setfattr", ["--version"], { stdio: "ignore" }).status === 0;
if (!setfattrOk && !process.env.CI) console.warn("setfattr not found (apt-get install attr): xattrs not tested");

const MiB = 1024 * 1024;
const XATTRS: Array<[string, Buffer]> = [
  ["user.bin", Buffer.from([0, 1, 0x0a, 0xff, 0x3d, 0])],
  ["user.text", Buffer.from("hello")],
];
const LONG_DIR = `tree/${"D".repeat(120)}`;
const LONG_FILE = `${LONG_DIR}/${"F".repeat(150)}`;

/** Build the source tree; returns the paths (relative to `src`) GNU tar must handle. */
function makeTree(src: string): void {
  const p = (rel: string | Buffer): Buffer => Buffer.concat([Buffer.from(`${src}/`), Buffer.from(rel)]);
  fs.mkdirSync(p("tree"));
  fs.writeFileSync(p("tree/plain"), pattern(5000, 1));
  fs.writeFileSync(p(Buffer.concat([Buffer.from("tree/bin-"), Buffer.from([0xff, 0xfe, 0x80])])), "non-UTF-8 name");
  fs.mkdirSync(p(LONG_DIR));
  fs.writeFileSync(p(LONG_FILE), "long name");
  fs.symlinkSync(`../${"t".repeat(120)}`, p("tree/symlink"));
  fs.linkSync(p("tree/plain"), p("tree/hard"));
  fs.writeFileSync(p("tree/old"), "old");
  fs.writeFileSync(p("tree/xattrs"), "x");
  // Sparse: 3 MiB with two data regions and a hole at the end.
  const fd = fs.openSync(p("tree/sparse"), "w");
  fs.ftruncateSync(fd, 3 * MiB);
  fs.writeSync(fd, pattern(8192, 2), 0, 8192, 1 * MiB);
  fs.writeSync(fd, pattern(100, 3), 0, 100, 2.5 * MiB);
  fs.closeSync(fd);
  run("mkfifo", [`${src}/tree/fifo`]);
  if (isRoot) {
    run("mknod", [`${src}/tree/null`, "c", "1", "3"]);
    fs.chownSync(p("tree/plain"), 3_000_000, 4_000_000); // base-256 in gnu, pax records in pax
  }
  if (setfattrOk) {
    for (const [name, value] of XATTRS) run("setfattr", ["-n", name, "-v", `0x${value.toString("hex")}`, `${src}/tree/xattrs`]);
  }
  run("touch", ["-h", "-d", "@1700000000.123456789", `${src}/tree/plain`]);
  run("touch", ["-d", "@-1000000000.5", `${src}/tree/old`]);
}

/** All paths under `rel` (Buffer-safe), relative to `src`. */
function walk(src: string, rel: Buffer): Buffer[] {
  const out = [rel];
  const full = Buffer.concat([Buffer.from(`${src}/`), rel]);
  if (fs.lstatSync(full).isDirectory()) {
    for (const name of fs.readdirSync(full, { encoding: "buffer" })) {
      out.push(...walk(src, Buffer.concat([rel, Buffer.from("/"), name])));
    }
  }
  return out;
}

interface Expect {
  /** Times carry nanoseconds (pax), whole seconds, or either (restricted pax: ns only where an x header was needed anyway). */
  ns: boolean | "either";
  xattrs: boolean;
  /** The writer was asked to store tree/sparse as a sparse file. */
  sparse: boolean;
  /**
   * libarchive writes pre-1970 fractional times as "<floor seconds>.<fraction>" (so
   * -1000000000.5 s becomes "-1000000001.5"); POSIX and GNU tar, and so our reader, read that
   * as a plain decimal. Skip the time check for such entries in libarchive archives.
   */
  libarchiveTimes?: boolean;
  /** Paths deliberately left out of the archive. */
  exclude?: string[];
}

function verify(src: string, items: ReadItem[], how: Expect): void {
  const want = walk(src, Buffer.from("tree"))
    .map((b) => b.toString("latin1"))
    .filter((n) => !how.exclude?.includes(n));
  expect(items.map((i) => i.entry.path.toString("latin1")).sort()).toEqual(want.sort());
  for (const item of items) verifyEntry(src, item, how);
}

function verifyEntry(src: string, item: ReadItem, how: Expect): void {
  const { entry } = item;
  const label = entry.path.toString("latin1");
  const full = Buffer.concat([Buffer.from(`${src}/`), entry.path]);
  const st = fs.lstatSync(full, { bigint: true });
  expect(entry.mode, label).toBe(Number(st.mode & 0o7777n));
  expect([entry.uid, entry.gid], label).toEqual([Number(st.uid), Number(st.gid)]);
  const ns = BigInt(entry.mtime.sec) * 1_000_000_000n + BigInt(entry.mtime.nsec);
  const wholeNs = (st.mtimeNs / 1_000_000_000n - (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n ? 1n : 0n)) * 1_000_000_000n;
  const skipTime = how.libarchiveTimes && st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n;
  const wantNs = how.ns === true || (how.ns === "either" && ns === st.mtimeNs) ? st.mtimeNs : wholeNs;
  if (!skipTime) expect(ns, label).toBe(wantNs);
  const type: Entry["type"] = st.isDirectory()
    ? "directory"
    : st.isSymbolicLink()
      ? "symlink"
      : st.isFIFO()
        ? "fifo"
        : st.isCharacterDevice()
          ? "chardev"
          : "file";
  if (entry.type === "hardlink") {
    expect(type, label).toBe("file");
    const first = fs.lstatSync(Buffer.concat([Buffer.from(`${src}/`), entry.linkTarget!]), { bigint: true });
    expect(first.ino, label).toBe(st.ino);
    expect(item.data.length).toBe(0);
    return;
  }
  expect(entry.type, label).toBe(type);
  if (type === "file") {
    expect(entry.size, label).toBe(Number(st.size));
    expect(logicalContent(item).equals(fs.readFileSync(full)), label).toBe(true);
    if (how.sparse && label === "tree/sparse") {
      expect(entry.sparse, "sparse map").toBeDefined();
      expect(item.data.length).toBeLessThan(64 * 1024); // only the data regions were stored
    }
  }
  if (type === "symlink") expect(entry.linkTarget!.equals(fs.readlinkSync(full, { encoding: "buffer" })), label).toBe(true);
  if (type === "chardev") expect([entry.devMajor, entry.devMinor]).toEqual([1, 3]);
  if (how.xattrs && setfattrOk && label === "tree/xattrs") {
    const got = (entry.xattrs ?? []).map(([n, v]) => [n.toString(), v.toString("hex")]);
    expect(got.sort()).toEqual(XATTRS.map(([n, v]) => [n, v.toString("hex")]).sort());
  }
}

/** Read an archive in odd chunk sizes, so block boundaries fall everywhere. */
function readArchive(path: string): ReadItem[] {
  const { items, ended } = collect(readInChunks(fs.readFileSync(path), [1000, 7, 65536]));
  expect(ended).toBe(true);
  return items;
}

describe.runIf(tarOk)("we read GNU tar's archives", () => {
  const tmp = tempDir();
  const src = join(tmp.path, "src");
  const tarIt = (name: string, args: string[]): string => {
    const out = join(tmp.path, name);
    run("tar", [...args, "-cf", out, "-C", src, ...(args.includes("--") ? [] : ["tree"])]);
    return out;
  };
  beforeAll(() => {
    fs.mkdirSync(src);
    makeTree(src);
  });
  afterAll(() => tmp.cleanup());

  it("--format=pax with xattrs and sparse files", () => {
    const items = readArchive(tarIt("pax.tar", ["--format=pax", "--sparse", "--xattrs", "--xattrs-include=*"]));
    verify(src, items, { ns: true, xattrs: true, sparse: true });
  });

  it("--format=gnu: long names (L/K), base-256 numbers, old GNU sparse (S)", () => {
    const path = tarIt("gnu.tar", ["--format=gnu", "--sparse"]);
    const raw = fs.readFileSync(path);
    expect(raw.includes("././@LongLink")).toBe(true); // the L/K paths really ran
    verify(src, readArchive(path), { ns: false, xattrs: false, sparse: true });
    if (isRoot) {
      // uid 3,000,000 does not fit 7 octal digits: GNU tar used base-256 (first byte 0x80).
      const k = raw.indexOf("tree/plain\0");
      expect(raw[k + 108]).toBe(0x80);
    }
  });

  it("--format=ustar for what ustar can hold", () => {
    // ustar has no room for >256-byte names, ids over 2^21 or times before 1970.
    const exclude = [LONG_DIR, LONG_FILE, "tree/old", "tree/symlink", ...(isRoot ? ["tree/plain", "tree/hard"] : [])];
    const path = tarIt("ustar.tar", ["--format=ustar", ...exclude.map((e) => `--exclude=${e}`)]);
    verify(src, readArchive(path), { ns: false, xattrs: false, sparse: false, exclude });
  });

  for (const version of ["0.0", "0.1", "1.0"]) {
    it(`--format=pax --sparse-version=${version}`, () => {
      const path = tarIt(`sparse-${version}.tar`, ["--format=pax", `--sparse-version=${version}`]);
      verify(src, readArchive(path), { ns: true, xattrs: false, sparse: true });
    });
  }

  it.runIf(bsdOk)("bsdtar --format=pax, and bsdtar's default format", () => {
    for (const format of ["pax", "gnutar", "restricted"]) {
      const out = join(tmp.path, `bsd-${format}.tar`);
      const args = format === "restricted" ? [] : [`--format=${format}`];
      run("bsdtar", [...args, "-cf", out, "-C", src, "tree"]);
      const items = readArchive(out);
      // bsdtar's gnutar format stores whole seconds; its pax formats write sub-second times.
      verify(src, items, {
        ns: format === "pax" ? true : format === "gnutar" ? false : "either",
        xattrs: format !== "gnutar",
        sparse: format !== "gnutar", // bsdtar writes sparse files only in its pax formats
        libarchiveTimes: true,
      });
    }
  });
});
