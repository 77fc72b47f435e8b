/**
 * Byte-level vectors: our headers must be identical, byte for byte, to GNU tar's for the same
 * metadata. This pins down field formatting (zero-padded octal + NUL), magic, checksum, name
 * placement and the pax record/x header layout.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Entry } from "../../../../formats/entry.ts";
import { formatTime, parseTime } from "../../../../formats/tar/pax.ts";
import { buildArchive, isGnuTar, isRoot, type Item, run, tempDir, toolTestsEnabled } from "./helpers.ts";

const tarOk = toolTestsEnabled("tar", "install GNU tar") && (isGnuTar() || !!process.env.CI);

// Fixed metadata, forced on GNU tar with --owner/--group/--mtime/--mode.
const META = { mode: 0o640, uid: 1234, gid: 5678, uname: Buffer.from("alice"), gname: Buffer.from("staff"), mtime: { sec: 1_700_000_000, nsec: 0 } };
const GNU_ARGS = ["--owner=alice:1234", "--group=staff:5678", "--mtime=@1700000000", "--mode=0640", "--no-recursion"];
const CONTENT = Buffer.from("hello world\n");

function entry(path: string, type: Entry["type"], extra: Partial<Entry> = {}): Entry {
  return { path: Buffer.from(path), type, size: 0, ...META, ...extra };
}

/** GNU tar pads the archive to its 10240-byte record; ours ends right after the end marker. */
function expectSameArchive(ours: Buffer, gnu: Buffer): void {
  expect(gnu.length % 10240).toBe(0);
  expect(gnu.length).toBeGreaterThanOrEqual(ours.length);
  for (let off = 0; off < ours.length; off += 512) {
    const a = ours.subarray(off, off + 512);
    const b = gnu.subarray(off, off + 512);
    // Compare block by block so a failure names the block, and print it as text.
    expect(a.toString("latin1"), `block at ${off}`).toBe(b.toString("latin1"));
  }
  expect(gnu.subarray(ours.length).every((x) => x === 0)).toBe(true);
}

describe.runIf(tarOk)("headers are byte-identical to GNU tar's", () => {
  const tmp = tempDir();
  const dir = join(tmp.path, "in");
  fs.mkdirSync(dir);
  afterAll(() => tmp.cleanup());

  const gnuTar = (format: string, names: string[]): Buffer => {
    const out = join(tmp.path, `${format}.tar`);
    run("tar", [`--format=${format}`, ...GNU_ARGS, "-cf", out, "-C", dir, ...names]);
    return fs.readFileSync(out);
  };

  it("ustar: file, directory, symlink, hard link, fifo (and a device as root)", () => {
    fs.writeFileSync(join(dir, "hello.txt"), CONTENT);
    fs.mkdirSync(join(dir, "sub"));
    fs.symlinkSync("hello.txt", join(dir, "link"));
    fs.linkSync(join(dir, "hello.txt"), join(dir, "hard"));
    run("mkfifo", [join(dir, "fifo")]);
    const items: Item[] = [
      { entry: entry("hello.txt", "file", { size: CONTENT.length }), data: CONTENT },
      { entry: entry("sub", "directory") },
      { entry: entry("link", "symlink", { linkTarget: Buffer.from("hello.txt"), size: 9 }) },
      { entry: entry("hard", "hardlink", { linkTarget: Buffer.from("hello.txt") }) },
      { entry: entry("fifo", "fifo") },
    ];
    const names = ["hello.txt", "sub", "link", "hard", "fifo"];
    if (isRoot) {
      run("mknod", [join(dir, "null"), "c", "1", "3"]);
      items.push({ entry: entry("null", "chardev", { devMajor: 1, devMinor: 3 }) });
      names.push("null");
    }
    expectSameArchive(buildArchive(items).archive, gnuTar("ustar", names));
  });

  it("ustar: a 150-byte path split into prefix and name", () => {
    const long = `${"p".repeat(70)}/${"q".repeat(79)}`;
    fs.mkdirSync(join(dir, "p".repeat(70)));
    fs.writeFileSync(join(dir, long), CONTENT);
    const ours = buildArchive([{ entry: entry(long, "file", { size: CONTENT.length }), data: CONTENT }]).archive;
    expectSameArchive(ours, gnuTar("ustar", [long]));
  });

  it("pax: x header with a long path record", () => {
    const long = "n".repeat(150);
    fs.writeFileSync(join(dir, long), CONTENT);
    const out = join(tmp.path, "pax.tar");
    run("tar", [
      "--format=pax",
      ...GNU_ARGS,
      // GNU tar always adds atime/ctime and names x headers after its pid; turn that off.
      "--pax-option=delete=atime,delete=ctime,exthdr.name=PaxHeaders/%f",
      "-cf",
      out,
      "-C",
      dir,
      long,
    ]);
    const ours = buildArchive([{ entry: entry(long, "file", { size: CONTENT.length }), data: CONTENT }]).archive;
    expectSameArchive(ours, fs.readFileSync(out));
  });
});

describe("pax time text matches GNU tar's", () => {
  // Strings as GNU tar 1.34 writes them for the same instants.
  const cases: Array<[{ sec: number; nsec: number }, string]> = [
    [{ sec: 1_700_000_000, nsec: 0 }, "1700000000"],
    [{ sec: 4_000_000_000, nsec: 123_456_789 }, "4000000000.123456789"],
    [{ sec: 1_795_606_046, nsec: 745_859_496 }, "1795606046.745859496"],
    [{ sec: -1_000_000_001, nsec: 500_000_000 }, "-1000000000.5"],
    [{ sec: -1, nsec: 999_999_999 }, "-0.000000001"],
    [{ sec: 5, nsec: 100 }, "5.0000001"],
  ];
  for (const [t, text] of cases) {
    it(`${t.sec}.${t.nsec} <-> ${text}`, () => {
      expect(formatTime(t).toString()).toBe(text);
      expect(parseTime(Buffer.from(text))).toEqual(t);
    });
  }
  it("reads times with more than 9 fraction digits or none", () => {
    expect(parseTime(Buffer.from("12.1234567891234"))).toEqual({ sec: 12, nsec: 123_456_789 });
    expect(parseTime(Buffer.from("12."))).toEqual({ sec: 12, nsec: 0 });
    expect(parseTime(Buffer.from("-12"))).toEqual({ sec: -12, nsec: 0 });
    expect(parseTime(Buffer.from("1e5"))).toBeUndefined();
  });
  it("refuses what is not -?DIGITS(.DIGITS)? with 1 to 16 whole digits", () => {
    for (const bad of ["", "-", ".5", "-.5", "12.3x", "12 ", " 12", "+12", "1.2.3", "12345678901234567", "--1"]) {
      expect(parseTime(Buffer.from(bad)), JSON.stringify(bad)).toBeUndefined();
    }
    expect(parseTime(Buffer.from("1234567890123456.000000001"))).toEqual({ sec: 1234567890123456, nsec: 1 });
    expect(parseTime(Buffer.from("-0.5"))).toEqual({ sec: -1, nsec: 500_000_000 });
    expect(parseTime(Buffer.from("-0"))).toEqual({ sec: 0, nsec: 0 });
  });
});
