/**
 * A tree for incremental-backup chains: makeChainTree builds it, applyChainStep(spec, 1) and
 * (spec, 2) change it between level 0, 1 and 2 with every change kind an incremental must
 * carry, and snapshotTree keeps a copy of the tree as it was at a level, to compare a restore
 * of the chain so far against (compareTrees, from tree.ts: names as bytes, type, mode, owner,
 * size, content, mtime, xattrs and ACLs, link targets, hard-link groups).
 *
 * Change kinds, each in both steps where it makes sense (step 1 on some objects, step 2 on
 * others, and some objects changed again in step 2):
 *   new directories (with files), content changed with the mtime kept, deleted files and
 *   whole trees, renamed files, renamed and moved directories (their files keep their times),
 *   mode-only, owner-only (root) and xattr-only changes, a new hard link to an old file,
 *   file -> directory and back, directory -> file and back, symlinks added and retargeted,
 *   truncation, non-UTF-8 names, 255-byte names, pre-1970 mtimes.
 *
 * Each step returns the non-directory names whose inode the next incremental must hold (a
 * dump or tar incremental may hold nothing else but directories): those it changed and those
 * inside a directory it moved; and the names it removed.
 * Nothing here is timing-sensitive: every change happens after the previous backup started,
 * and an object "changed with the mtime kept" still has a new ctime.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { have, pattern } from "./tree.ts";

export { compareTrees, listTree, show, type CompareOptions } from "./tree.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

const b = (s: string | Buffer) => (typeof s === "string" ? Buffer.from(s) : s);
const cat = (...parts: Array<string | Buffer>) => Buffer.concat(parts.map(b));
const bytes = (...xs: number[]) => Buffer.from(xs);

export interface ChainSpec {
  root: string;
  /** Features that could not be made here, with the reason. */
  skipped: string[];
  has: { xattrs: boolean; owners: boolean };
  /** Notable names (relative, bytes). */
  paths: {
    /** 255 bytes, the longest name a Linux filesystem allows; changed in step 2. */
    longName: Buffer;
    /** A file whose mtime is before 1970; rewritten (mtime set back) in step 2. */
    preEpoch: Buffer;
    nonUtf8: Buffer;
    /** The old file that gains hard links in steps 1 and 2. */
    hardOld: Buffer;
  };
  /** The bulk of level 0 that no step touches (so incrementals are small beside it). */
  bulkBytes: number;
}

export interface ChainStep {
  step: number;
  /** Non-directory names (after the step) whose mtime or ctime the step changed. */
  changed: Buffer[];
  /** Non-directories inside a directory that moved (their times are old: only the move tells). */
  moved: Buffer[];
  /** changed + moved: what the incremental of this step must hold, and (but directories) all it may hold. */
  mustHold: Buffer[];
  /** Names (before the step) that no longer exist after it. */
  removed: Buffer[];
}

/** The names of the long file and the non-UTF-8 ones, shared by the steps. */
const LONG = cat("long/", "L".repeat(255));
const LONG_NEW = cat("long/", bytes(0xe9), "M".repeat(254)); // 255 bytes, latin1 é first
const NON_UTF8 = cat("names/", bytes(0xff, 0xfe), "-base");
const NON_UTF8_RENAMED = cat("names/", bytes(0xff), "-renamed", bytes(0x80));
const LATIN1_NEW = cat("names/", bytes(0xe9), "t", bytes(0xe9), "-new1");
const PRE_EPOCH = b("times/pre1970");

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.error?.message ?? r.stderr}`);
}

let aliases = 0;
/**
 * Runs `fn` on a name for `abs` that a command line can carry: Node passes arguments as UTF-8,
 * so a path that is not UTF-8 is reached through an ASCII symlink to it (the commands below
 * follow it; nothing here is applied to a symlink itself).
 */
function viaAlias(abs: Buffer, fn: (p: string) => void): void {
  if (Buffer.from(abs.toString("utf8")).equals(abs)) {
    fn(abs.toString("utf8"));
    return;
  }
  const alias = path.join(os.tmpdir(), `chain-alias-${process.pid}-${aliases++}`);
  fs.symlinkSync(abs, alias);
  try {
    fn(alias);
  } finally {
    fs.rmSync(alias, { force: true });
  }
}

/** Exact nanosecond times (Node's utimes goes through a double), `time` as "sec.nnnnnnnnn". */
function touch(abs: Buffer, time: string, what: "-m" | "" = ""): void {
  viaAlias(abs, (p) => sh("touch", [...(what ? [what] : []), "-d", `@${time}`, "--", p]));
}

/** A stat mtime as touch's "sec.nnnnnnnnn" (also before 1970). */
function mtimeOf(abs: Buffer): string {
  const ns = fs.lstatSync(abs, { bigint: true }).mtimeNs;
  const sec = ns >= 0n ? ns / 1000000000n : -((-ns + 999999999n) / 1000000000n);
  const frac = ns - sec * 1000000000n;
  return `${sec}.${frac.toString().padStart(9, "0")}`;
}

function setfattr(abs: Buffer, name: string, value: string): void {
  viaAlias(abs, (p) => sh("setfattr", ["-n", name, "-v", value, "--", p]));
}

export async function makeChainTree(dir: string): Promise<ChainSpec> {
  const root = path.resolve(dir);
  fs.mkdirSync(root, { recursive: true });
  const at = (rel: Buffer | string) => cat(root, "/", rel);
  const mkdir = (rel: Buffer | string) => fs.mkdirSync(at(rel), { recursive: true });
  const write = (rel: Buffer | string, data: Buffer | string) => fs.writeFileSync(at(rel), data);
  const skipped: string[] = [];
  const isRoot = process.getuid?.() === 0;

  for (const d of ["big", "keep/sub", "edit", "del/t1/sub", "del/t2/sub", "ren/d1/sub", "ren/d2/sub", "moved", "mode/dir", "owner", "xattr", "hard", "type/d2f/sub", "sym", "trunc", "names", "long", "times"]) {
    mkdir(d);
  }
  // The bulk: what an incremental must not carry again.
  write("big/blob", pattern(2 * MiB, 1));
  write("big/blob2", pattern(MiB + 17, 2));
  write("keep/a", "kept a\n");
  write("keep/b", pattern(3000, 3));
  write("keep/sub/c", "kept c\n");
  write("edit/e1", "original content one\n");
  write("edit/e2", "original content two\n");
  for (const t of ["t1", "t2"]) {
    write(`del/f${t.slice(1)}`, `deleted in step ${t.slice(1)}\n`);
    write(`del/${t}/x`, "x\n");
    write(`del/${t}/sub/y`, pattern(700, 4));
  }
  write("ren/r1", "renamed in step 1\n");
  write("ren/r2", "renamed in step 2\n");
  for (const d of ["d1", "d2"]) {
    write(`ren/${d}/a`, `a of ${d}\n`);
    write(`ren/${d}/sub/b`, pattern(1500, 5));
  }
  write("mode/m1", "mode one\n");
  write("mode/m2", "mode two\n");
  write("owner/o1", "owner one\n");
  write("xattr/x1", "xattr one\n");
  write("xattr/x2", "xattr two\n");
  write("hard/old", pattern(4000, 6));
  write("type/f2d", "a file that becomes a directory\n");
  write("type/d2f/child", "inside a directory that becomes a file\n");
  write("type/d2f/sub/deeper", "deeper\n");
  fs.symlinkSync("../keep/a", at("sym/s0"));
  write("trunc/t1", pattern(64 * KiB, 7));
  write("trunc/t2", pattern(10 * KiB, 8));
  write(NON_UTF8, "non-UTF-8 name\n");
  write(LONG, "a 255-byte name\n");
  write(PRE_EPOCH, "from before 1970\n");
  touch(at(PRE_EPOCH), "-123456789.987654321");
  mkdir("times/olddir");
  write("times/olddir/f", "in an old directory\n");
  touch(at("times/olddir"), "-86400.5");

  let xattrs = false;
  if (have("setfattr")) {
    try {
      setfattr(at("xattr/x2"), "user.k", "before");
      xattrs = true;
    } catch (error) {
      skipped.push(`xattrs: ${(error as Error).message}`);
    }
  } else skipped.push("xattrs: setfattr (package attr) not installed");
  if (!isRoot) skipped.push("owners: not root");
  return {
    root,
    skipped,
    has: { xattrs, owners: isRoot },
    paths: { longName: LONG, preEpoch: PRE_EPOCH, nonUtf8: NON_UTF8, hardOld: b("hard/old") },
    bulkBytes: 3 * MiB + 17,
  };
}

/** Applies step 1 or 2 of the chain's changes to the tree built by makeChainTree. */
export function applyChainStep(spec: ChainSpec, step: 1 | 2): ChainStep {
  const root = spec.root;
  const at = (rel: Buffer | string) => cat(root, "/", rel);
  const write = (rel: Buffer | string, data: Buffer | string) => fs.writeFileSync(at(rel), data);
  const changed: Buffer[] = [];
  const removed: Buffer[] = [];
  const moved: Buffer[] = [];
  const carried = (...rels: Array<string | Buffer>) => moved.push(...rels.map(b));
  const did = (...rels: Array<string | Buffer>) => changed.push(...rels.map(b));
  const gone = (...rels: Array<string | Buffer>) => removed.push(...rels.map(b));
  /** Same-size new content, the old mtime put back (only the ctime tells). */
  const editKeepingMtime = (rel: Buffer | string, content: Buffer | string) => {
    const before = mtimeOf(at(rel));
    const old = fs.readFileSync(at(rel));
    const next = b(content);
    if (next.length !== old.length) throw new Error("editKeepingMtime wants the same size");
    write(rel, next);
    touch(at(rel), before, "-m");
  };
  const rename = (from: Buffer | string, to: Buffer | string) => fs.renameSync(at(from), at(to));

  if (step === 1) {
    // New directories with files.
    fs.mkdirSync(at("new1/sub"), { recursive: true });
    write("new1/sub/f", "new in step 1\n");
    write("new1/g", pattern(2000, 11));
    did("new1/sub/f", "new1/g");
    // Content changed, mtime kept.
    editKeepingMtime("edit/e1", "ORIGINAL content one\n");
    did("edit/e1");
    // Deleted: a file and a whole tree.
    fs.rmSync(at("del/f1"));
    fs.rmSync(at("del/t1"), { recursive: true });
    gone("del/f1", "del/t1", "del/t1/x", "del/t1/sub", "del/t1/sub/y");
    // Renamed file (its ctime changes); a directory moved to another parent: its files do not.
    rename("ren/r1", "ren/r1.renamed");
    did("ren/r1.renamed");
    gone("ren/r1");
    rename("ren/d1", "moved/d1");
    carried("moved/d1/a", "moved/d1/sub/b");
    gone("ren/d1", "ren/d1/a", "ren/d1/sub", "ren/d1/sub/b");
    // Mode only: a file and a directory.
    fs.chmodSync(at("mode/m1"), 0o600);
    fs.chmodSync(at("mode/dir"), 0o700);
    did("mode/m1");
    // Owner only.
    if (spec.has.owners) {
      fs.chownSync(at("owner/o1"), 70000, 70001);
      did("owner/o1");
    }
    // Xattr only.
    if (spec.has.xattrs) {
      setfattr(at("xattr/x1"), "user.added", "0x00ff01");
      did("xattr/x1");
    }
    // A new hard link to an old file: the old inode is in the incremental, under both names.
    fs.linkSync(at("hard/old"), at("hard/link1"));
    did("hard/old", "hard/link1");
    // File -> directory, directory -> file.
    fs.rmSync(at("type/f2d"));
    fs.mkdirSync(at("type/f2d"));
    write("type/f2d/inside", "now a directory\n");
    did("type/f2d/inside");
    fs.rmSync(at("type/d2f"), { recursive: true });
    write("type/d2f", "now a file\n");
    did("type/d2f");
    gone("type/d2f/child", "type/d2f/sub", "type/d2f/sub/deeper");
    // A symlink added.
    fs.symlinkSync("../new1/g", at("sym/s1"));
    did("sym/s1");
    // Truncation.
    fs.truncateSync(at("trunc/t1"), 1000);
    did("trunc/t1");
    // Non-UTF-8: one added, one renamed.
    write(LATIN1_NEW, "latin1 name, step 1\n");
    rename(NON_UTF8, NON_UTF8_RENAMED);
    did(LATIN1_NEW, NON_UTF8_RENAMED);
    gone(NON_UTF8);
    // A second 255-byte name, not UTF-8 either.
    write(LONG_NEW, "another 255-byte name\n");
    did(LONG_NEW);
    // A new file dated before 1970.
    write("times/pre1970-new", "new but old\n");
    touch(at("times/pre1970-new"), "-1000.25");
    did("times/pre1970-new");
  } else {
    fs.mkdirSync(at("new2/deep/er"), { recursive: true });
    write("new2/deep/er/f", "new in step 2\n");
    did("new2/deep/er/f");
    editKeepingMtime("edit/e2", "ORIGINAL content two\n");
    did("edit/e2");
    fs.rmSync(at("del/f2"));
    fs.rmSync(at("del/t2"), { recursive: true });
    gone("del/f2", "del/t2", "del/t2/x", "del/t2/sub", "del/t2/sub/y");
    rename("ren/r2", "ren/r2.renamed");
    did("ren/r2.renamed");
    gone("ren/r2");
    // A directory renamed in place, and the one moved in step 1 moved again, into a new directory.
    rename("ren/d2", "ren/d2.renamed");
    carried("ren/d2.renamed/a", "ren/d2.renamed/sub/b");
    gone("ren/d2", "ren/d2/a", "ren/d2/sub", "ren/d2/sub/b");
    rename("moved/d1", "new2/d1");
    carried("new2/d1/a", "new2/d1/sub/b");
    gone("moved/d1", "moved/d1/a", "moved/d1/sub", "moved/d1/sub/b");
    fs.chmodSync(at("mode/m2"), 0o640);
    did("mode/m2");
    if (spec.has.xattrs) {
      setfattr(at("xattr/x2"), "user.k", "after");
      did("xattr/x2");
    }
    // Another hard link to the old file, from another directory.
    fs.linkSync(at("hard/old"), at("keep/link2"));
    did("hard/old", "hard/link1", "keep/link2");
    // And back: the directory made in step 1 becomes a file again, the file a directory.
    fs.rmSync(at("type/f2d"), { recursive: true });
    write("type/f2d", "a file again\n");
    did("type/f2d");
    gone("type/f2d/inside");
    fs.rmSync(at("type/d2f"));
    fs.mkdirSync(at("type/d2f"));
    write("type/d2f/again", "a directory again\n");
    did("type/d2f/again");
    // A symlink added with a non-UTF-8 target, one retargeted.
    fs.symlinkSync(cat("../names/", bytes(0xff), "-renamed", bytes(0x80)), at("sym/s2"));
    fs.rmSync(at("sym/s0"));
    fs.symlinkSync("../keep/b", at("sym/s0"));
    did("sym/s2", "sym/s0");
    fs.truncateSync(at("trunc/t2"), 0);
    did("trunc/t2");
    // Non-UTF-8: the one added in step 1 deleted, a directory of them added.
    fs.rmSync(at(LATIN1_NEW));
    gone(LATIN1_NEW);
    const dir = cat("names/", bytes(0x80), "dir");
    fs.mkdirSync(at(dir));
    write(cat(dir, "/", bytes(0xff), "file"), "in a non-UTF-8 directory\n");
    did(cat(dir, "/", bytes(0xff), "file"));
    // The 255-byte name gets new content; the pre-1970 file too, its mtime put back.
    editKeepingMtime(LONG, "A 255-BYTE NAME\n");
    did(LONG);
    write(PRE_EPOCH, "FROM BEFORE 1970\n");
    touch(at(PRE_EPOCH), "-123456789.987654321");
    did(PRE_EPOCH);
  }
  return { step, changed, moved, mustHold: [...changed, ...moved], removed };
}

/**
 * A copy of the tree as it is now (`cp -a`: names, hard links, modes, owners, ns times and
 * xattrs), to compare a restore of the chain up to this level against.
 */
export function snapshotTree(src: string, dst: string): void {
  fs.rmSync(dst, { recursive: true, force: true });
  sh("cp", ["-a", "--", src, dst]);
}

/** show()'s escaping undone: the name's bytes. */
function unshow(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\\" && s[i + 1] === "x") {
      out.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else out.push(s.charCodeAt(i));
  }
  return Buffer.from(out);
}

/**
 * compareTrees' differences between a tree and what Linux `restore` 0.4b47 made of its dump,
 * minus the two things that restore cannot do whatever the stream says, and only those:
 *  - a 255-byte name comes back as its first 254 bytes (restore's record length for it is 8:
 *    e2fsprogs' EXT2_DIR_REC_LEN takes the name length + 1 as a byte), content and all;
 *  - a time before 1970 comes back as 0 (the dinode's seconds are u32; restore reads them so).
 * Returns what is left, and the renamed pairs it took out (for the caller to compare).
 */
export function withoutRestoreLimits(diffs: string[]): { rest: string[]; truncated: Array<[full: Buffer, shown: Buffer]> } {
  const parsed = diffs.map((d) => {
    const m = /^(.*?): (missing from|only in) /.exec(d);
    return m ? { d, name: unshow(m[1]!), kind: m[2]! } : { d };
  });
  const onlyIn = new Set(parsed.filter((p) => p.kind === "only in").map((p) => nameKey(p.name!)));
  const drop = new Set<string>();
  const truncated: Array<[Buffer, Buffer]> = [];
  for (const p of parsed) {
    if (p.kind !== "missing from") continue;
    const slash = p.name!.lastIndexOf(0x2f);
    const base = p.name!.subarray(slash + 1);
    if (base.length !== 255) continue;
    const shown = p.name!.subarray(0, p.name!.length - 1);
    if (!onlyIn.has(nameKey(shown))) continue;
    drop.add(p.d);
    drop.add(parsed.find((q) => q.kind === "only in" && q.name!.equals(shown))!.d);
    truncated.push([p.name!, shown]);
  }
  const rest = diffs.filter((d) => !drop.has(d) && !/: [am]time -\d+ != 0 \(ns\)$/.test(d));
  return { rest, truncated };
}

/** Keys for sets of relative names (bytes, as latin1). */
export const nameKey = (rel: Buffer) => rel.toString("latin1");
