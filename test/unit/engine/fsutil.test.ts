import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  deviceNumbers,
  joinPath,
  O_NOFOLLOW,
  openFdForBackup,
  openForBackup,
  openSyncForBackup,
  splitPath,
  stripTrailingSlashes,
  timespecFromNs,
} from "../../../src/engine/fsutil.ts";

const b = (s: string) => Buffer.from(s);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-fsutil-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("byte paths", () => {
  it("join, strip and split without decoding", () => {
    expect(joinPath(b("a/b"), b("c"))).toEqual(b("a/b/c"));
    expect(joinPath(b("/"), b("c"))).toEqual(b("/c"));
    expect(joinPath(b("x"), Buffer.from([0xff]))).toEqual(Buffer.from([0x78, 0x2f, 0xff]));
    expect(stripTrailingSlashes(b("/a//"))).toEqual(b("/a"));
    expect(stripTrailingSlashes(b("/"))).toEqual(b("/"));
    expect(splitPath(b("a//b")).map(String)).toEqual(["a", "", "b"]);
  });

  it("times before 1970 keep nanoseconds in 0..999999999; device numbers as glibc splits them", () => {
    expect(timespecFromNs(-1n)).toEqual({ sec: -1, nsec: 999_999_999 });
    expect(timespecFromNs(1_500_000_000_123n)).toEqual({ sec: 1500, nsec: 123 });
    // makedev(300, 70000) as glibc builds it
    const rdev = ((300n & 0xfffn) << 8n) | ((300n & ~0xfffn) << 32n) | (70000n & 0xffn) | ((70000n & ~0xffn) << 12n);
    expect(deviceNumbers(rdev)).toEqual({ major: 300, minor: 70000 });
  });
});

describe("opening files for backup", () => {
  const file = path.join(tmp, "f");
  const link = path.join(tmp, "l");
  fs.writeFileSync(file, "content");
  fs.chmodSync(tmp, 0o755);
  fs.chmodSync(file, 0o644);
  fs.symlinkSync(file, link);
  const flags = fs.constants.O_RDONLY | O_NOFOLLOW;

  it("all three forms read the file and pass the caller's flags (O_NOFOLLOW refuses a symlink)", async () => {
    const fh = await openForBackup(b(file), flags);
    expect((await fh.readFile()).toString()).toBe("content");
    await fh.close();
    const fd = await openFdForBackup(b(file), flags);
    expect(fs.readFileSync(fd).toString()).toBe("content");
    fs.closeSync(fd);
    const sfd = openSyncForBackup(b(file), flags);
    expect(fs.readFileSync(sfd).toString()).toBe("content");
    fs.closeSync(sfd);
    await expect(openForBackup(b(link), flags)).rejects.toMatchObject({ code: "ELOOP" });
    await expect(openFdForBackup(b(link), flags)).rejects.toMatchObject({ code: "ELOOP" });
    expect(() => openSyncForBackup(b(link), flags)).toThrow(expect.objectContaining({ code: "ELOOP" }));
    await expect(openForBackup(b(path.join(tmp, "missing")), flags)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("a file of someone else's (O_NOATIME refused with EPERM) still opens, without it", async (ctx) => {
    // O_NOATIME is refused to anyone but the owner and root: as root, act as nobody.
    if (process.getuid?.() !== 0 || typeof process.seteuid !== "function") ctx.skip();
    process.seteuid!(65534);
    try {
      const fd = openSyncForBackup(b(file), flags);
      expect(fs.readFileSync(fd).toString()).toBe("content");
      fs.closeSync(fd);
      const fh = await openForBackup(b(file), flags);
      await fh.close();
    } finally {
      process.seteuid!(0);
    }
  });
});
