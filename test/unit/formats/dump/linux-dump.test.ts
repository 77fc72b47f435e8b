/**
 * Our reader on a stream written by the real Linux `dump -0` (0.4b47): an ext4 image is
 * populated with `mkfs.ext4 -d`, attached read-only to a loop device (dump refuses image
 * files), dumped, and read back; names, content, modes, owners, times, devices and xattrs
 * must match the source tree. Outside CI, skipped when a tool or a loop device is missing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chownSync, closeSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync, writeSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { aclValue, MiB, NAME_254, NON_UTF8, needTools, pattern, prng, readAll, run } from "./fixture.ts";

const tools = needTools(["mkfs.ext4", "losetup", "dump", "setfattr", "setfacl", "mknod", "mkfifo"]);

/** Source tree: path (bytes, relative) -> what we expect back. */
interface Made {
  path: Buffer;
  content?: Buffer;
  xattrs?: Record<string, string>;
}

function abs(root: string, rel: Buffer): Buffer {
  return Buffer.concat([Buffer.from(root + "/"), rel]);
}

async function populate(root: string): Promise<Made[]> {
  const made: Made[] = [];
  const file = (rel: string | Buffer, content: Buffer): Buffer => {
    const p = typeof rel === "string" ? Buffer.from(rel) : rel;
    writeFileSync(abs(root, p), content);
    made.push({ path: p, content });
    return p;
  };
  mkdirSync(join(root, "a/b/c"), { recursive: true });
  const hello = file("hello.txt", Buffer.from("hello world\n"));
  chownSync(abs(root, hello), 70000, 80000);
  expect((await run("setfattr", ["-n", "user.comment", "-v", "hello", join(root, "hello.txt")])).code).toBe(0);
  expect((await run("setfacl", ["-m", "u:1234:rw", join(root, "hello.txt")])).code).toBe(0);
  made[made.length - 1].xattrs = { "user.comment": Buffer.from("hello").toString("hex"), "system.posix_acl_access": aclValue().toString("hex") };
  utimesSync(join(root, "hello.txt"), 1_700_000_000.25, 1_700_000_000.5);
  file("empty", Buffer.alloc(0));
  file("medium.bin", pattern(3, 0, 700_000));
  file("a/b/c/deep.bin", pattern(2, 0, 3000));
  file("hard1", Buffer.from("linked\n"));
  linkSync(join(root, "hard1"), join(root, "a/hard2"));
  made.push({ path: Buffer.from("a/hard2"), content: Buffer.from("linked\n") });
  file(Buffer.concat([Buffer.from("a/"), NON_UTF8]), Buffer.from("not utf-8\n"));
  file(Buffer.concat([Buffer.from("a/b/"), NAME_254]), Buffer.from("long name\n"));
  symlinkSync("hello.txt", join(root, "link"));
  symlinkSync("x/".repeat(749) + "y", join(root, "a/longlink"));
  expect((await run("mknod", [join(root, "cdev"), "c", "4", "64"])).code).toBe(0);
  expect((await run("mknod", [join(root, "bdev"), "b", "8", "1"])).code).toBe(0);
  expect((await run("mkfifo", [join(root, "fifo")])).code).toBe(0);
  expect((await run("setfattr", ["-n", "user.dirattr", "-v", "d", join(root, "a")])).code).toBe(0);
  // Sparse: 5 MiB with 4 KiB of data at 3 MiB.
  const fd = openSync(join(root, "sparse.img"), "w");
  writeSync(fd, pattern(5, 0, 4096), 0, 4096, 3 * MiB);
  ftruncateSync(fd, 5 * MiB);
  closeSync(fd);
  const sparse = Buffer.alloc(5 * MiB);
  pattern(5, 0, 4096).copy(sparse, 3 * MiB);
  made.push({ path: Buffer.from("sparse.img"), content: sparse });
  return made;
}

/** Every path under root, relative, as bytes. */
function walk(root: string, rel: Buffer = Buffer.alloc(0)): Buffer[] {
  const out: Buffer[] = [];
  for (const name of readdirSync(rel.length ? abs(root, rel) : root, { encoding: "buffer" })) {
    const p = rel.length ? Buffer.concat([rel, Buffer.from("/"), name]) : name;
    out.push(p);
    if (lstatSync(abs(root, p)).isDirectory()) out.push(...walk(root, p));
  }
  return out;
}

describe.skipIf(!tools.ok)("our reader on a real Linux dump -0 stream", () => {
  let tmp: string;
  let src: string;
  let stream: Buffer | undefined;
  let made: Made[] = [];
  let unavailable = "";

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "ndmpd-lxdump-"));
    src = join(tmp, "src");
    mkdirSync(src);
    made = await populate(src);
    const image = join(tmp, "fs.ext4");
    const mk = await run("mkfs.ext4", ["-q", "-F", "-b", "4096", "-d", src, image, "32M"]);
    expect(mk.code, mk.stderr).toBe(0);
    const lo = await run("losetup", ["-r", "--show", "-f", image]);
    if (lo.code !== 0) {
      unavailable = `losetup failed: ${lo.stderr.trim()}`;
      return;
    }
    const dev = lo.stdout.toString().trim();
    try {
      const out = join(tmp, "lx.dump");
      const d = await run("dump", ["-0", "-q", "-f", out, dev]);
      expect(d.code, d.stderr).toBe(0);
      stream = readFileSync(out);
    } finally {
      await run("losetup", ["-d", dev]);
    }
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("reads names, content, modes, owners, times, devices and xattrs", (ctx) => {
    if (unavailable) {
      if (process.env.CI) throw new Error(unavailable);
      console.warn(`skipping: ${unavailable}`);
      ctx.skip();
    }
    const rnd = prng(99);
    const got = readAll(stream!, () => 1 + Math.floor(rnd() * 9000));
    expect(got.ended).toBe(true);
    expect(got.tape?.level).toBe(0);
    // Every source path (plus ext4's lost+found) resolves, and nothing else is on tape.
    const byPath = new Map<string, number>();
    for (const [ino] of got.inodes) for (const p of got.index.paths(ino)) byPath.set(p.toString("latin1"), ino);
    const want = walk(src).map((p) => p.toString("latin1"));
    expect([...byPath.keys()].filter((p) => p !== "." && p !== "lost+found").sort()).toEqual(want.sort());
    for (const rel of walk(src)) {
      const label = rel.toString("latin1");
      const st = lstatSync(abs(src, rel), { bigint: true });
      const r = got.inodes.get(byPath.get(label)!)!;
      const e = r.entry;
      expect(e.mode, label).toBe(Number(st.mode & 0o7777n));
      expect([e.uid, e.gid], label).toEqual([Number(st.uid), Number(st.gid)]);
      expect(e.mtime.sec, label).toBe(Number(st.mtimeNs / 1_000_000_000n)); // Linux dump stores no sub-seconds
      if (st.isFile()) {
        expect(e.type, label).toBe("file");
        expect(e.size, label).toBe(Number(st.size));
        const content = Buffer.alloc(e.size);
        for (const [off, bytes] of r.data) bytes.copy(content, off);
        expect(content.equals(readFileSync(abs(src, rel))), label).toBe(true);
      } else if (st.isSymbolicLink()) {
        expect(e.linkTarget?.equals(readlinkSync(abs(src, rel), { encoding: "buffer" })), label).toBe(true);
      } else if (st.isDirectory()) {
        expect(e.type, label).toBe("directory");
      } else if (st.isFIFO()) {
        expect(e.type, label).toBe("fifo");
      } else {
        expect(e.type, label).toBe(st.isCharacterDevice() ? "chardev" : "blockdev");
        expect([e.devMajor, e.devMinor], label).toEqual(label === "cdev" ? [4, 64] : [8, 1]);
      }
    }
    // Hard links: one inode, two names.
    expect(byPath.get("hard1")).toBe(byPath.get("a/hard2"));
    // xattrs, with the ACL converted back to the getxattr form.
    const hello = got.inodes.get(byPath.get("hello.txt")!)!.entry;
    const xattrs = Object.fromEntries((hello.xattrs ?? []).map(([n, v]) => [n.toString(), v.toString("hex")]));
    expect(xattrs).toEqual(made.find((m) => m.path.toString() === "hello.txt")!.xattrs);
    const dirA = got.inodes.get(byPath.get("a")!)!.entry;
    expect(dirA.xattrs?.map(([n, v]) => `${n}=${v}`)).toEqual(["user.dirattr=d"]);
    // The sparse file's holes were not sent as data.
    const sparse = got.inodes.get(byPath.get("sparse.img")!)!;
    expect(sparse.data.reduce((n, [, b]) => n + b.length, 0)).toBeLessThan(64 * 1024);
  });
});
