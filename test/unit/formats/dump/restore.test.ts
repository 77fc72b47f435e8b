/**
 * Our writer's stream against the real tools: dumpinspect --strict (the spec's oracle),
 * Debian restore 0.4b47 -t, -r and -x. Outside CI, skipped when a tool is missing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, readlinkSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DUMPINSPECT, MiB, SPARSE_SIZE, buildStream, needTools, run, testTree, type BuiltStream, type TestObject } from "./fixture.ts";

const tools = needTools(["restore", "python3", "getfattr"]);
const haveInspect = existsSync(DUMPINSPECT);
if (!haveInspect) {
  if (process.env.CI) throw new Error(`${DUMPINSPECT} missing in CI`);
  console.warn(`skipping dumpinspect checks: ${DUMPINSPECT} missing`);
}

/** Linux dev_t split, as glibc's major()/minor() (spec 11.1). */
function splitDev(rdev: bigint): [number, number] {
  return [Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n)), Number((rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n))];
}

/** Read bytes [off, off+len) of a file without reading the whole (600 MiB) file. */
function readAt(path: string, off: number, len: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(len);
    const n = readSync(fd, buf, 0, len, off);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** getfattr -d -m - -e hex: name -> hex value. */
async function xattrsOf(path: string): Promise<Record<string, string>> {
  const r = await run("getfattr", ["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", path]);
  expect(r.code).toBe(0);
  const out: Record<string, string> = {};
  for (const line of r.stdout.toString("latin1").split("\n")) {
    const m = /^([^#=][^=]*)=0x([0-9a-f]*)$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

/** Check one restored object against the object it was written from. */
async function checkRestored(root: string, o: TestObject, p: Buffer): Promise<void> {
  const path = Buffer.concat([Buffer.from(root + "/"), p]);
  const st = lstatSync(path, { bigint: true });
  const label = p.toString("latin1");
  const kind = { file: st.isFile(), directory: st.isDirectory(), symlink: st.isSymbolicLink(), fifo: st.isFIFO(), chardev: st.isCharacterDevice(), blockdev: st.isBlockDevice(), socket: st.isSocket() };
  expect(kind[o.type], `${label} type`).toBe(true);
  expect([Number(st.uid), Number(st.gid)], `${label} owner`).toEqual([o.uid, o.gid]);
  if (o.type === "symlink") {
    expect(readlinkSync(path, { encoding: "buffer" }).equals(o.linkTarget!), `${label} target`).toBe(true);
    return; // restore sets neither mode nor times on symlinks
  }
  expect(Number(st.mode & 0o7777n), `${label} mode`).toBe(o.mode);
  if (o.type !== "directory" || p.toString() !== ".") {
    const usec = BigInt(Math.floor(o.mtime.nsec / 1000));
    expect(st.mtimeNs, `${label} mtime`).toBe(BigInt(o.mtime.sec) * 1_000_000_000n + usec * 1000n);
  }
  if (o.type === "chardev" || o.type === "blockdev") expect(splitDev(st.rdev), `${label} rdev`).toEqual([o.devMajor, o.devMinor]);
  if (o.type === "file") {
    expect(Number(st.size), `${label} size`).toBe(o.size);
    if (o.size < 4 * MiB) {
      expect(readFileSync(path).equals(o.read!(0, o.size)), `${label} content`).toBe(true);
    } else {
      // Large sparse file: check every data run and a few hole windows, and that it is sparse.
      for (const r of o.sparse!) expect(readAt(path.toString(), r.offset, r.length).equals(o.read!(r.offset, r.length))).toBe(true);
      for (const off of [100 * MiB, 450 * MiB, SPARSE_SIZE - 70_000]) expect(readAt(path.toString(), off, 4096).every((b) => b === 0)).toBe(true);
      expect(Number(st.blocks) * 512, `${label} allocated`).toBeLessThan(1 * MiB);
    }
  }
  // getfattr takes the path as a (UTF-8) string argument: check the names it can express.
  if (Buffer.from(path.toString("utf8")).equals(path)) {
    const want: Record<string, string> = {};
    for (const [n, v] of o.xattrs ?? []) want[n.toString("latin1")] = v.toString("hex");
    expect(await xattrsOf(path.toString("utf8")), `${label} xattrs`).toEqual(want);
  }
}

describe.skipIf(!tools.ok)("our dump stream read by the real tools", () => {
  let tmp: string;
  let dumpFile: string;
  let built: BuiltStream;

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "ndmpd-dump-"));
    built = buildStream(testTree(true));
    dumpFile = join(tmp, "our.dump");
    writeFileSync(dumpFile, built.stream);
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it.skipIf(!haveInspect)("passes dumpinspect --strict", async () => {
    const r = await run("python3", [DUMPINSPECT, "--quiet", "--strict", dumpFile]);
    expect(r.stdout.toString(), r.stderr).toMatch(/\n0 problems\n$/);
    expect(r.code).toBe(0);
  });

  it("restore -t lists every name with its inode number", async () => {
    const r = await run("restore", ["-t", "-f", dumpFile]);
    expect(r.code, r.stderr).toBe(0);
    const listed = new Set<string>();
    for (const line of r.stdout.toString("latin1").split("\n")) {
      const m = /^\s*(\d+)\t(.*)$/.exec(line);
      if (m) listed.add(`${m[1]} ${m[2]}`);
    }
    for (const o of built.objects) {
      for (const p of o.paths) {
        const name = p.toString("latin1") === "." ? "." : "./" + p.toString("latin1");
        expect(listed.has(`${built.inoOf.get(o.id)} ${name}`), name).toBe(true);
      }
    }
  });

  it("restore -r reproduces content, metadata, links, holes, devices and xattrs", async () => {
    const dest = join(tmp, "full");
    mkdirSync(dest);
    const r = await run("restore", ["-r", "-y", "-f", dumpFile], { cwd: dest });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/not found on tape|expected next file|Mangled|missing/i);
    for (const o of built.objects) for (const p of o.paths) await checkRestored(dest, o, p);
    const h1 = lstatSync(join(dest, "hard1"));
    const h2 = lstatSync(join(dest, "a/hard2"));
    expect([h1.ino, h1.nlink]).toEqual([h2.ino, 2]);
    // Nothing extra besides restore's own symbol table.
    expect(readdirSync(dest).sort()).toEqual([...new Set(built.objects.flatMap((o) => o.paths.map((p) => p.toString("latin1").split("/")[0])))].filter((n) => n !== ".").concat("restoresymtable").sort());
  });

  it("restore -x extracts just one file, and just one directory tree", async () => {
    const one = join(tmp, "x-file");
    mkdirSync(one);
    let r = await run("restore", ["-x", "-a", "-o", "-y", "-f", dumpFile, "./hello.txt"], { cwd: one });
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(one)).toEqual(["hello.txt"]);
    const hello = built.objects.find((o) => o.id === 200)!;
    await checkRestored(one, hello, Buffer.from("hello.txt"));

    const dir = join(tmp, "x-dir");
    mkdirSync(dir);
    r = await run("restore", ["-x", "-a", "-o", "-y", "-f", dumpFile, "./a/b"], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const found: string[] = [];
    const walk = (rel: string): void => {
      for (const n of readdirSync(join(dir, rel), { encoding: "buffer" })) {
        const sub = rel ? `${rel}/${n.toString("latin1")}` : n.toString("latin1");
        found.push(sub);
        if (lstatSync(Buffer.from(join(dir, sub), "latin1")).isDirectory()) walk(sub);
      }
    };
    walk("");
    const want = built.objects.flatMap((o) => o.paths.map((p) => p.toString("latin1"))).filter((p) => p === "a" || p.startsWith("a/b"));
    expect(found.sort()).toEqual(want.sort());
    for (const o of built.objects) for (const p of o.paths) if (p.toString("latin1").startsWith("a/b/")) await checkRestored(dir, o, p);
  });
});
