import { execFile, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cString, ListingBuilder, parseDirents, splitNameList } from "../../../src/native/libc.ts";
import { listingName } from "../../../src/native/types.ts";
import { NativeError, errnoName, ERRNO } from "../../../src/native/errno.ts";
import { listDataRuns, loadNative } from "../../../src/native/index.ts";
import type { SeekApi } from "../../../src/native/types.ts";
import { makeTempDir } from "../devices/tape/helpers.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const bun = path.join(root, "node_modules/.bin/bun");
const probeSource = path.join(here, "probe.ts");

const MiB = 1024 * 1024;
// Data at [1 MiB, +4 KiB) and [6 MiB, +8 KiB) in an 8 MiB file: everything else is a hole.
const EXPECTED_RUNS = [
  { offset: 1 * MiB, length: 4096 },
  { offset: 6 * MiB, length: 8192 },
];

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: root, encoding: "utf8", timeout: 90_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe("native layer under Node", () => {
  it("reports every interface as unavailable, with a reason", async () => {
    const native = await loadNative();
    expect(native.runtime).toBe("none");
    expect(native.ioctl).toBeNull();
    expect(native.seek).toBeNull();
    expect(native.xattr).toBeNull();
    expect(native.reason).toMatch(/not available in this runtime/);
  });

  it("builds C strings and splits xattr name lists byte-exactly", () => {
    expect([...cString("ab")]).toEqual([97, 98, 0]);
    expect([...cString(Buffer.from([0xff, 0x01]))]).toEqual([0xff, 0x01, 0]);
    expect([...cString(Buffer.from([1, 0]))]).toEqual([1, 0]);
    expect(() => cString(Buffer.from([1, 0, 2]))).toThrow(NativeError);
    const names = splitNameList(Buffer.from("user.a\0security.selinux\0user.\xff\0", "latin1"));
    expect(names.map((n) => n.toString("latin1"))).toEqual(["user.a", "security.selinux", "user.\xff"]);
  });

  it("lists data runs from any SeekApi, stopping at the file size", () => {
    // A model file: data in [10, 20) and [50, 60), size 100.
    const data = [[10, 20], [50, 60]] as const;
    const seek: SeekApi = {
      seekData: (_fd, offset) => data.find(([, end]) => end > offset)?.map((start) => Math.max(start, offset))[0] ?? null,
      seekHole: (_fd, offset) => data.find(([start, end]) => offset >= start && offset < end)?.[1] ?? 100,
    };
    expect(listDataRuns(seek, 0, 100)).toEqual([{ offset: 10, length: 10 }, { offset: 50, length: 10 }]);
    expect(listDataRuns(seek, 0, 55)).toEqual([{ offset: 10, length: 10 }, { offset: 50, length: 5 }]);
  });

  it("names errnos", () => {
    expect(errnoName(ERRNO.ENOTTY)).toBe("ENOTTY");
    expect(errnoName(4242)).toBe("E4242");
    expect(errnoName(36)).toBe("ENAMETOOLONG"); // not in our table: the host's name
    expect(new NativeError("ioctl", 25).code).toBe("ENOTTY");
  });
});

describe("native layer under Bun (compiled binary and bun)", () => {
  let dir: string;
  let cleanup: () => void;
  let sparse: string;
  let withXattr: string;
  let toSet: string;
  let compiled: string;
  let haveSetfattr = false;

  beforeAll(async () => {
    ({ dir, cleanup } = makeTempDir("ndmpd-native-"));
    sparse = path.join(dir, "sparse.bin");
    const fd = fs.openSync(sparse, "w");
    fs.ftruncateSync(fd, 8 * MiB);
    fs.writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 1 * MiB);
    fs.writeSync(fd, Buffer.alloc(8192, 2), 0, 8192, 6 * MiB);
    fs.closeSync(fd);

    withXattr = path.join(dir, "xattr.txt");
    toSet = path.join(dir, "set.txt");
    fs.writeFileSync(withXattr, "x");
    fs.writeFileSync(toSet, "y");
    haveSetfattr = spawnSync("setfattr", ["-n", "user.test", "-v", "hello-xattr", withXattr]).status === 0;

    compiled = path.join(dir, "probe");
    const build = await run(bun, ["build", "--compile", probeSource, "--outfile", compiled]);
    if (build.code !== 0) throw new Error(`bun build --compile failed: ${build.stderr}`);
  });

  afterAll(() => cleanup?.());

  function check(output: string): void {
    const result = JSON.parse(output.trim().split("\n").at(-1)!);
    expect(result.runtime).toBe("bun-ffi");
    expect(result.runs).toEqual(EXPECTED_RUNS);
    if (haveSetfattr) {
      expect(result.names).toContain("user.test");
      expect(result.value).toBe("hello-xattr");
    }
    expect(result.missing).toBeNull();
    expect(result.setBack).toEqual([0, 255, 1, 2]);
    expect(result.removed).toBeNull();
    // listxattrat exists from Linux 6.13; on an older kernel the binding answers null (listed by path).
    if (result.listAt) expect(result.listAt).toEqual({ same: true, set: ["user.ndmpd"], missing: null });
    expect(result.ioctl).toBe("ENOTTY");
    expect(result.stOpen).toBe("NO_DEVICE");
    expect(result.mtimeNs).toBe("4102444800987654321");
    expect(result.atimeNs).toBe("1000000000123456789");
    expect(result.fifo).toEqual({ isFifo: true, mode: 0o640 });
    expect(result.flock).toEqual([true, false, true]);
    // getdents64: every name of the probe's directory (no "." or ".."), d_ino = st_ino, DT_REG 8.
    const files = result.dir.filter((e: { name: string }) => ["sparse.bin", "xattr.txt", "set.txt"].includes(e.name));
    expect(files.length).toBe(3);
    for (const e of result.dir) expect(e.sameIno, e.name).toBe(true);
    expect(files.every((e: { type: number }) => e.type === 8)).toBe(true);
    expect(result.dir.some((e: { name: string }) => e.name === "." || e.name === "..")).toBe(false);
    expect(result.dirOfFile).toBe("ENOTDIR");
    // major 300 and minor 70000, in hex as stat(1) prints them.
    if (process.getuid?.() === 0) expect(result.chardev).toEqual({ isChar: true, numbers: "12c:11170" });
  }

  it("works inside a `bun build --compile` binary", async () => {
    const result = await run(compiled, [sparse, withXattr, toSet]);
    expect(result.code, result.stderr).toBe(0);
    check(result.stdout);
    if (haveSetfattr) {
      // The value we set through lsetxattr is visible to the system tools too.
      const got = spawnSync("getfattr", ["--only-values", "-n", "user.ndmpd", toSet]);
      expect([...got.stdout]).toEqual([0, 255, 1, 2]);
    }
  });

  it("works under plain `bun file.ts`", async () => {
    const result = await run(bun, [probeSource, sparse, withXattr, toSet]);
    expect(result.code, result.stderr).toBe(0);
    check(result.stdout);
  });
});

describe("parseDirents (getdents64's struct linux_dirent64)", () => {
  /** One record: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, the name, NUL, padded to 8. */
  function record(ino: bigint, type: number, name: string): Buffer {
    const reclen = Math.ceil((19 + name.length + 1) / 8) * 8;
    const b = Buffer.alloc(reclen);
    b.writeBigUInt64LE(ino, 0);
    b.writeUInt16LE(reclen, 16);
    b[18] = type;
    b.write(name, 19, "latin1");
    return b;
  }

  it("gives names, d_ino (exact past 2^53) and d_type, without . and ..", () => {
    const buf = Buffer.concat([record(2n, 4, "."), record(1n, 4, ".."), record(12n, 8, "a"), record(2n ** 63n + 5n, 10, "..x"), record(7n, 4, "sub")]);
    const out = new ListingBuilder();
    parseDirents(buf, buf.length, out);
    // A second call (getdents64 hands a big directory over in several) adds to the same listing.
    const more = record(9n, 8, "z".repeat(255));
    parseDirents(more, more.length, out);
    const listing = out.done();
    expect(listing.count).toBe(4);
    expect(Array.from({ length: listing.count }, (_, i) => listingName(listing, i).toString("latin1"))).toEqual(["a", "..x", "sub", "z".repeat(255)]);
    expect(listing.inos).toEqual([12, 2n ** 63n + 5n, 7, 9]);
    expect([...listing.types]).toEqual([8, 10, 4, 8]);
  });

  it("refuses a record that runs past what the kernel returned", () => {
    const buf = record(3n, 8, "a-longer-name"); // 40 bytes
    expect(() => parseDirents(buf, buf.length - 8, new ListingBuilder())).toThrow(NativeError);
  });
});
