import { execFile, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Entry, EntryType } from "../../../formats/entry.ts";
import type { WalkItem, WalkOptions } from "../../../src/engine/walker.ts";
import { have, listTree, makeEdgeTree, show, typeOf, type TreeObject, type TreeSpec } from "../../helpers/tree.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const bun = path.join(repo, "node_modules/.bin/bun");
const isRoot = process.getuid?.() === 0;

const key = (p: Buffer) => p.toString("latin1");



/** seconds + ns as one bigint, to compare with lstat's *Ns fields. */
const ns = (t: { sec: number; nsec: number }) => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);

export interface WalkerVariant {
  name: string;
  walk(opts: WalkOptions): AsyncIterable<WalkItem>;
  /** The compiled-binary and timing checks need to run once, for the walker the probe uses. */
  full: boolean;
}

/** The walker's contract, checked for both walkers (walker.ts and walker-sync.ts). */
export function walkerSuite(variant: WalkerVariant): void {
  async function collect(opts: Partial<WalkOptions> & { root: Buffer }): Promise<{ items: WalkItem[]; errors: Array<[string, Error]> }> {
    const items: WalkItem[] = [];
    const errors: Array<[string, Error]> = [];
    for await (const item of variant.walk({ onError: (p, e) => errors.push([show(p), e]), ...opts })) items.push(item);
    return { items, errors };
  }

  let tmp: string;
  let spec: TreeSpec;
  let listing: TreeObject[];
  let items: WalkItem[];
  let walkErrors: Array<[string, Error]>;
  let byPath: Map<string, Entry>;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ndmpd-walker-"));
    spec = await makeEdgeTree(path.join(tmp, "tree"));
    listing = listTree(spec.root);
    ({ items, errors: walkErrors } = await collect({ root: Buffer.from(spec.root) }));
    byPath = new Map(items.map((i) => [key(i.entry.path), i.entry]));
  });

  afterAll(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe(`${variant.name} over the edge tree (portable path: Node, no native calls)`, () => {
    it("reports every object once: root first, then depth-first pre-order, children bytewise", () => {
      expect(walkErrors).toEqual([]);
      expect(items.map((i) => show(i.entry.path))).toEqual(listing.map((o) => show(o.rel)));
      expect(new Set(items.map((i) => key(i.entry.path))).size).toBe(items.length);
      expect(items[0]!.entry.path.toString()).toBe(".");
      expect(items[0]!.absPath.toString()).toBe(spec.root);
      for (const { entry, absPath } of items.slice(1)) {
        expect(absPath.equals(Buffer.concat([Buffer.from(spec.root + "/"), entry.path]))).toBe(true);
        expect(entry.path[0]).not.toBe(0x2f);
      }
    });

    it("keeps names as bytes: non-UTF-8, 200-byte names, paths over 1000 bytes", () => {
      for (const p of [spec.paths.nonUtf8, spec.paths.longName, spec.paths.longPath]) {
        expect(byPath.has(key(p)), show(p)).toBe(true);
      }
      expect(spec.paths.longPath.length).toBeGreaterThan(1000);
    });

    it("gives exact metadata from lstat (type, mode, owner, size, ns times, inode, devices)", () => {
      const seen = new Set<string>();
      for (const obj of listing) {
        const e = byPath.get(key(obj.rel))!;
        const where = show(obj.rel);
        const st = obj.st;
        const type = typeOf(st) as EntryType;
        expect(e.type === "hardlink" ? "file" : e.type, where).toBe(type);
        expect(e.mode, where).toBe(Number(st.mode & 0o7777n));
        expect([e.uid, e.gid], where).toEqual([Number(st.uid), Number(st.gid)]);
        expect(ns(e.mtime), where).toBe(st.mtimeNs);
        expect(ns(e.ctime!), where).toBe(st.ctimeNs);
        if (type === "file" || type === "fifo" || type === "chardev" || type === "blockdev") expect(ns(e.atime!), where).toBe(st.atimeNs);
        expect(e.dev, where).toBe(Number(st.dev));
        expect(e.ino, where).toBe(Number(st.ino));
        expect(e.nlink, where).toBe(Number(st.nlink));
        expect(e.size, where).toBe(type === "file" || type === "symlink" ? Number(st.size) : 0);
        if (type === "symlink") expect(e.linkTarget!.equals(obj.target!), where).toBe(true);
        expect(e.xattrs, where).toBeUndefined(); // no native xattr calls under Node
        if (type === "file" && st.blocks * 512n >= st.size) expect(e.sparse, where).toBeUndefined();
        seen.add(key(obj.rel));
      }
      expect(seen.size).toBe(items.length);
      // Spot checks against values set on purpose (not only "same as lstat").
      expect(byPath.get(key(spec.paths.preEpoch))!.mtime).toEqual({ sec: -123456790, nsec: 12345679 });
      expect(byPath.get(key(spec.paths.post2038))!.mtime).toEqual({ sec: 4102444800, nsec: 123456789 });
      expect(byPath.get(key(spec.paths.setuid))!.mode).toBe(0o4755);
      expect(byPath.get(key(spec.paths.sticky))!.mode).toBe(0o1777);
      expect(byPath.get(key(spec.paths.longTargetSymlink))!.linkTarget!.equals(spec.longTarget)).toBe(true);
      expect(byPath.get(key(spec.paths.longTargetSymlink))!.size).toBe(spec.longTarget.length);
      expect(byPath.get(key(spec.paths.fifo))!.type).toBe("fifo");
      if (spec.has.owners) expect(byPath.get(key(spec.paths.owned70000))!.uid).toBe(70000);
    });

    it.skipIf(!isRoot)("decodes device numbers like stat(1) does, including minors above 255", () => {
      expect(spec.has.devices).toBe(true);
      for (const p of [spec.paths.chardev!, spec.paths.blockdev!]) {
        const out = spawnSync("stat", ["-c", "%t %T", path.join(spec.root, p.toString())], { encoding: "utf8" }).stdout.trim();
        const [major, minor] = out.split(" ").map((h) => parseInt(h, 16));
        const e = byPath.get(key(p))!;
        expect([e.devMajor, e.devMinor], show(p)).toEqual([major, minor]);
      }
      expect(byPath.get(key(spec.paths.blockdev!))!).toMatchObject({ type: "blockdev", devMajor: 259, devMinor: 70000 });
      expect(byPath.get(key(spec.paths.chardev!))!).toMatchObject({ type: "chardev", devMajor: 1, devMinor: 3 });
    });

    it("reports later names of an inode as hard links to the first name", () => {
      const [first, ...others] = spec.paths.hardlinks;
      const e0 = byPath.get(key(first!))!;
      expect(e0.type).toBe("file");
      expect(e0.linkTarget).toBeUndefined();
      for (const p of others) {
        const e = byPath.get(key(p))!;
        expect(e.type, show(p)).toBe("hardlink");
        expect(show(e.linkTarget!)).toBe(show(first!));
      }
      // Every other object is reported as itself.
      expect(items.filter((i) => i.entry.type === "hardlink")).toHaveLength(2);
    });

    it("finds the data runs of sparse files with the zero-block scan", () => {
      for (const s of spec.sparse) {
        const e = byPath.get(key(s.path))!;
        expect(e.size, show(s.path)).toBe(s.size);
        expect(e.sparse, show(s.path)).toEqual(s.runs);
      }
      expect(byPath.get(key(Buffer.from("files/big")))!.sparse).toBeUndefined();
      expect(byPath.get(key(Buffer.from("files/empty")))!.sparse).toBeUndefined();
    });

    it("skips what the filter refuses, with its whole subtree, and tells it the type", async () => {
      const calls = new Map<string, EntryType>();
      const { items: some, errors } = await collect({
        root: Buffer.from(spec.root),
        filter: (rel, type) => {
          calls.set(show(rel), type);
          return !(rel.equals(Buffer.from("deep")) || rel.equals(Buffer.from("files/big")) || rel.equals(Buffer.from("sparse")));
        },
      });
      expect(errors).toEqual([]);
      const names = some.map((i) => show(i.entry.path));
      expect(names.filter((n) => n === "deep" || n.startsWith("deep/") || n.startsWith("sparse"))).toEqual([]);
      expect(names).not.toContain("files/big");
      expect(names).toContain("files/b513");
      expect(calls.get("deep")).toBe("directory");
      expect(calls.get("files/big")).toBe("file");
      expect(calls.get(show(spec.paths.symlink))).toBe("symlink");
      expect(calls.get(show(spec.paths.fifo))).toBe("fifo");
      expect([...calls.keys()].some((n) => n.startsWith("deep/"))).toBe(false);
      expect(calls.has(".")).toBe(false);
      expect(some.length).toBe(items.length - 1 - 12 - 4);

      // A hard link whose first name was filtered out is a file in its own right.
      const { items: linked } = await collect({
        root: Buffer.from(spec.root),
        filter: (rel) => !rel.equals(spec.paths.hardlinks[0]!) && !rel.equals(Buffer.from("sparse")),
      });
      const second = linked.find((i) => i.entry.path.equals(spec.paths.hardlinks[1]!))!.entry;
      const third = linked.find((i) => i.entry.path.equals(spec.paths.hardlinks[2]!))!.entry;
      expect(second.type).toBe("file");
      expect(third).toMatchObject({ type: "hardlink", linkTarget: spec.paths.hardlinks[1] });
    });

    it("walks a root given with a trailing slash the same way", async () => {
      const gig = spec.sparse[0]!.path; // no need to read 1 GiB of holes again
      const { items: again } = await collect({ root: Buffer.from(spec.root + "/"), filter: (rel) => !rel.equals(gig) });
      expect(again.map((i) => show(i.entry.path))).toEqual(items.filter((i) => !i.entry.path.equals(gig)).map((i) => show(i.entry.path)));
      expect(again[1]!.absPath.toString()).toBe(`${spec.root}/${again[1]!.entry.path.toString()}`);
    });
  });

  describe("per-object problems are reported and the walk goes on", () => {
    let dir: string;
    beforeAll(() => {
      dir = path.join(tmp, "errors");
      fs.mkdirSync(dir);
      fs.chmodSync(tmp, 0o755); // let an unprivileged uid reach it
      for (const d of ["a-first", "gone", "locked", "z-last"]) fs.mkdirSync(path.join(dir, d));
      fs.writeFileSync(path.join(dir, "locked/secret"), "s");
      fs.writeFileSync(path.join(dir, "z-last/file"), "z");
      fs.symlinkSync("target", path.join(dir, "vanishing-link"));
      fs.chmodSync(path.join(dir, "locked"), 0o700);
    });

    it("a directory or a symlink that vanishes mid-walk", async () => {
      const { items: got, errors } = await collect({
        root: Buffer.from(dir),
        filter: (rel) => {
          const name = rel.toString();
          if (name === "gone") fs.rmdirSync(path.join(dir, "gone"));
          if (name === "vanishing-link") fs.unlinkSync(path.join(dir, "vanishing-link"));
          return true;
        },
      });
      expect(errors.map(([p, e]) => [p, (e as NodeJS.ErrnoException).code])).toEqual([
        ["gone", "ENOENT"],
        ["vanishing-link", "ENOENT"],
      ]);
      const names = got.map((i) => show(i.entry.path));
      expect(names).toContain("gone"); // its entry was made before its contents could not be read
      expect(names).not.toContain("vanishing-link");
      expect(names).toContain("z-last/file");
    });

    it("an unreadable directory (EACCES)", async () => {
      // Root reads everything: walk as an unprivileged uid for this one (glibc applies seteuid to
      // every thread, libuv's pool included).
      const drop = isRoot && typeof process.seteuid === "function";
      if (!drop) fs.chmodSync(path.join(dir, "locked"), 0o000);
      if (drop) process.seteuid!(65534);
      let result: Awaited<ReturnType<typeof collect>>;
      try {
        result = await collect({ root: Buffer.from(dir) });
      } finally {
        if (drop) process.seteuid!(0);
        else fs.chmodSync(path.join(dir, "locked"), 0o700);
      }
      expect(result.errors.map(([p, e]) => [p, (e as NodeJS.ErrnoException).code])).toEqual([["locked", "EACCES"]]);
      const names = result.items.map((i) => show(i.entry.path));
      expect(names).toContain("locked");
      expect(names).not.toContain("locked/secret");
      expect(names).toContain("z-last/file");
    });

    it("a missing root is reported, not thrown", async () => {
      const { items: none, errors } = await collect({ root: Buffer.from(path.join(tmp, "does-not-exist")) });
      expect(none).toEqual([]);
      expect(errors.map(([p, e]) => [p, (e as NodeJS.ErrnoException).code])).toEqual([[".", "ENOENT"]]);
    });
  });

  describe.skipIf(!isRoot)("one filesystem", () => {
    let dir: string;
    let mounted = false;
    beforeAll(() => {
      dir = path.join(tmp, "onefs");
      fs.mkdirSync(path.join(dir, "mnt"), { recursive: true });
      fs.writeFileSync(path.join(dir, "a.txt"), "a");
      fs.writeFileSync(path.join(dir, "z.txt"), "z");
      mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=4m", "none", path.join(dir, "mnt")]).status === 0;
      if (mounted) {
        fs.mkdirSync(path.join(dir, "mnt/sub"));
        fs.writeFileSync(path.join(dir, "mnt/inner.txt"), "inner");
        fs.writeFileSync(path.join(dir, "mnt/sub/x"), "x");
      }
    });
    afterAll(() => {
      if (mounted) spawnSync("umount", [path.join(dir, "mnt")]);
    });

    it("emits a mount point but does not descend into it, unless asked to", async () => {
      expect(mounted, "mount -t tmpfs (as root)").toBe(true);
      const { items: one, errors } = await collect({ root: Buffer.from(dir) });
      expect(errors).toEqual([]);
      expect(one.map((i) => show(i.entry.path))).toEqual([".", "a.txt", "mnt", "z.txt"]);
      expect(one[2]!.entry.type).toBe("directory");
      expect(one[2]!.entry.dev).not.toBe(one[0]!.entry.dev);

      const { items: all } = await collect({ root: Buffer.from(dir), oneFilesystem: false });
      expect(all.map((i) => show(i.entry.path))).toEqual([".", "a.txt", "mnt", "mnt/inner.txt", "mnt/sub", "mnt/sub/x", "z.txt"]);
    });
  });


  if (!variant.full) return;

  describe("native path (SEEK_DATA/SEEK_HOLE, l*xattr) inside a `bun build --compile` binary", () => {
    let compiled: string;
    beforeAll(async () => {
      compiled = path.join(tmp, "engine-probe");
      const r = await run(bun, ["build", "--compile", path.join(here, "probe.ts"), "--outfile", compiled]);
      if (r.code !== 0) throw new Error(`bun build --compile failed: ${r.stderr}`);
    });

    it("finds the same entries, the same sparse runs, and every xattr and ACL getfattr sees", async () => {
      const r = await run(compiled, ["walk", spec.root]);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
        runtime: string;
        errors: string[];
        entries: Array<{ path: string; type: string; size: number; mtime: unknown; linkTarget?: string; sparse?: unknown; xattrs?: Array<[string, string]> }>;
      };
      expect(out.runtime).toBe("bun-ffi");
      expect(out.errors).toEqual([]);
      expect(out.entries.map((e) => e.path)).toEqual(items.map((i) => i.entry.path.toString("hex")));
      const nodeByHex = new Map(items.map((i) => [i.entry.path.toString("hex"), i.entry]));
      for (const e of out.entries) {
        const n = nodeByHex.get(e.path)!;
        const where = show(n.path);
        expect([e.type, e.size, e.mtime, e.linkTarget], where).toEqual([n.type, n.size, n.mtime, n.linkTarget?.toString("hex")]);
        // SEEK_DATA on ext4/tmpfs reports the same 4 KiB-granular runs the scan found.
        expect(e.sparse, where).toEqual(n.sparse);
      }

      // getfattr (attr) is a test peer .ci/run installs: missing, this fails rather than pass unchecked.
      expect(have("getfattr"), "getfattr (package attr)").toBe(true);
      const dump = spawnSync("getfattr", ["-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", "."], { cwd: spec.root, encoding: "latin1" }).stdout;
      const expected = new Map<string, string[]>();
      let file = "";
      for (const line of dump.split("\n")) {
        if (line.startsWith("# file: ")) file = line.slice(8).replace(/^\.\//, "");
        else if (line.includes("=0x")) {
          const [name, value] = [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 3)];
          expected.set(file, [...(expected.get(file) ?? []), `${name}=${value}`]);
        }
      }
      expect(expected.size).toBeGreaterThan(0);
      const got = new Map<string, string[]>();
      for (const e of out.entries) {
        if (!e.xattrs) continue;
        got.set(Buffer.from(e.path, "hex").toString("latin1"), e.xattrs.map(([n, v]) => `${Buffer.from(n, "hex").toString("latin1")}=${v}`));
      }
      expect(got).toEqual(expected);
      if (spec.has.xattrs) expect(got.get("xattr/file")).toEqual(["user.binary=00ff0102fe", "user.text=68656c6c6f"]);
      if (spec.has.acls) expect(got.get(spec.paths.aclDir.toString())?.[0]).toMatch(/^system\.posix_acl_default=/);
    });
  });

  // How fast is test/bench's business (timing floors fail on a busy machine): this checks the count.
  describe("many files", () => {
    it("walks 20,000 small files, as many as find sees", async () => {
      const dir = path.join(tmp, "many");
      for (let d = 0; d < 100; d++) {
        fs.mkdirSync(path.join(dir, `d${d}`), { recursive: true });
        for (let f = 0; f < 200; f++) fs.writeFileSync(path.join(dir, `d${d}`, `f${f}`), "x");
      }
      const { items: many, errors } = await collect({ root: Buffer.from(dir) });
      expect(errors).toEqual([]);
      expect(many).toHaveLength(20_101);
      const find = spawnSync("sh", ["-c", `find '${dir}' -printf '%s\\n' | wc -l`], { encoding: "utf8" });
      expect(find.stdout.trim()).toBe("20101");
    });
  });


}

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: repo, encoding: "utf8", timeout: 90_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
