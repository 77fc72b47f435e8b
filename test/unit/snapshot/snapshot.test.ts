/**
 * The snapshot machinery's pure and local parts (src/snapshot, src/native/btrfs.ts): the
 * SNAPSHOT policy, the configuration, the records and their owners, hook commands (run for real:
 * exit status, time limit, stderr, the printed directory), the btrfs ioctl arguments, and the
 * choice of a method. Making and deleting real btrfs snapshots is test/integration/snapshot.test.ts.
 */
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config.ts";
import { Logger } from "../../../src/log.ts";
import { NO_NATIVE } from "../../../src/native/index.ts";
import { BTRFS_IOC_SNAP_CREATE_V2, BTRFS_SUPER_MAGIC, BTRFS_IOC_SNAP_DESTROY, btrfsApi, snapCreateArgs, snapDestroyArgs } from "../../../src/native/btrfs.ts";
import { cleanupLeftovers, parsePolicy, planSnapshot, snapshotMethod, takeSnapshot } from "../../../src/snapshot/index.ts";
import { destroyBtrfs, findSubvolume, hasSysAdmin } from "../../../src/snapshot/btrfs.ts";
import { fillIn, findHook, printedDir, runHook } from "../../../src/snapshot/hook.ts";
import { newSnapshotName, ownerAlive, processStart, readRecords, recordsDir, removeRecord, SNAPSHOT_PREFIX, writeRecord, type SnapshotRecord } from "../../../src/snapshot/records.ts";

const dir = mkdtempSync(join(tmpdir(), "ndmpd-snapshot-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const quiet = new Logger("error", "human");

function script(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

describe("SNAPSHOT policy", () => {
  it("reads y/n spellings, auto and required; empty means the default; anything else is undefined", () => {
    expect(parsePolicy(undefined, "auto")).toBe("auto");
    expect(parsePolicy("", "required")).toBe("required");
    for (const v of ["y", "Yes", "TRUE", "1", "on"]) expect(parsePolicy(v, "n")).toBe("y");
    for (const v of ["n", "no", "false", "0", "off", "none"]) expect(parsePolicy(v, "y")).toBe("n");
    expect(parsePolicy(" Required ", "n")).toBe("required");
    expect(parsePolicy("auto", "n")).toBe("auto");
    expect(parsePolicy("sometimes", "auto")).toBeUndefined();
  });
});

describe("configuration: [backup] and [[snapshot]]", () => {
  it("defaults to auto and no hooks; parses hooks with their time limit", () => {
    const none = parseConfig(`[server]\nstate_dir = "/s"\n`);
    expect(none.backup.snapshot).toBe("auto");
    expect(none.snapshotHooks).toEqual([]);
    const c = parseConfig(
      `[backup]\nsnapshot = "required"\n[[snapshot]]\npath = "/srv/db{,/**}"\ncreate = ["/usr/sbin/mk", "{path}"]\ndelete = ["/usr/sbin/rm", "{name}"]\ntimeout = 5\n` +
        `[[snapshot]]\npath = "/x"\ncreate = ["/bin/a"]\ndelete = ["/bin/b"]\n`,
    );
    expect(c.backup.snapshot).toBe("required");
    expect(c.snapshotHooks).toEqual([
      { path: "/srv/db{,/**}", create: ["/usr/sbin/mk", "{path}"], delete: ["/usr/sbin/rm", "{name}"], timeoutMs: 5000 },
      { path: "/x", create: ["/bin/a"], delete: ["/bin/b"], timeoutMs: 60_000 },
    ]);
  });

  it("refuses bad values, naming the key", () => {
    const bad: Array<[string, RegExp]> = [
      [`[backup]\nsnapshot = "maybe"\n`, /backup\.snapshot: must be one of auto, y, n, required/],
      [`[backup]\nsnap = "y"\n`, /unknown key/],
      [`[snapshot]\npath = "/x"\n`, /must be an array of tables/],
      [`[[snapshot]]\npath = "x"\ncreate = ["/a"]\ndelete = ["/b"]\n`, /path: must be an absolute path/],
      [`[[snapshot]]\npath = "/x"\ncreate = "/a b"\ndelete = ["/b"]\n`, /create: must be a command as a list of strings/],
      [`[[snapshot]]\npath = "/x"\ncreate = ["a"]\ndelete = ["/b"]\n`, /create: .*absolute path/],
      [`[[snapshot]]\npath = "/x"\ncreate = ["/a"]\n`, /delete: must be a command/],
      [`[[snapshot]]\npath = "/x"\ncreate = ["/a"]\ndelete = ["/b"]\ntimeout = 0\n`, /timeout: must be an integer from 1 to 3600/],
    ];
    for (const [text, why] of bad) expect(() => parseConfig(text), text).toThrow(why);
  });
});

describe("btrfs ioctl arguments", () => {
  it("encodes the request numbers and struct layouts of linux/btrfs.h", () => {
    // _IOW(0x94, 23, 4096 bytes) and _IOW(0x94, 15, 4096 bytes).
    expect(BTRFS_IOC_SNAP_CREATE_V2).toBe((1 << 30) + (4096 << 16) + (0x94 << 8) + 23);
    expect(BTRFS_IOC_SNAP_DESTROY).toBe((1 << 30) + (4096 << 16) + (0x94 << 8) + 15);
    const c = Buffer.from(snapCreateArgs(7, "ndmpd-x"));
    expect(c.length).toBe(4096);
    expect(c.readBigInt64LE(0)).toBe(7n); // the source subvolume's fd
    expect(c.readBigUInt64LE(16)).toBe(2n); // BTRFS_SUBVOL_RDONLY
    expect(c.subarray(56, 64).toString("latin1")).toBe("ndmpd-x\0");
    const d = Buffer.from(snapDestroyArgs("ndmpd-x"));
    expect(d.length).toBe(4096);
    expect(d.subarray(8, 16).toString("latin1")).toBe("ndmpd-x\0");
    for (const bad of ["", "a/b", "a\0b", "x".repeat(4040)]) expect(() => snapCreateArgs(1, bad)).toThrow(/not a snapshot name/);
  });

  it("without FFI (Node) the btrfs tool does the work", () => {
    expect(btrfsApi(NO_NATIVE).via).toBe("btrfs-tool");
  });
});

describe("records", () => {
  const state = join(dir, "state-records");
  const rec = (name: string, pid = process.pid, pidStart = processStart()): SnapshotRecord => ({
    version: 1,
    name,
    method: "btrfs",
    created: new Date().toISOString(),
    pid,
    pidStart,
    parentHex: Buffer.from("/nowhere").toString("hex"),
  });

  it("names carry our prefix and never repeat", () => {
    const a = newSnapshotName();
    expect(a.startsWith(SNAPSHOT_PREFIX)).toBe(true);
    expect(a).toMatch(/^ndmpd-\d{8}T\d{6}Z-\d+-[0-9a-f]{6}$/);
    expect(newSnapshotName()).not.toBe(a);
  });

  it("are written, read back and removed; unreadable ones are reported and left alone", () => {
    writeRecord(state, rec("ndmpd-one"));
    writeFileSync(join(recordsDir(state), "ndmpd-junk.json"), "{");
    writeFileSync(join(recordsDir(state), "other.json"), JSON.stringify({ ...rec("other"), name: "other" }));
    const r = readRecords(state);
    expect(r.records.map((x) => x.name)).toEqual(["ndmpd-one"]);
    expect(r.broken.sort()).toEqual(["ndmpd-junk.json", "other.json"]);
    removeRecord(state, "ndmpd-one");
    expect(readRecords(state).records).toEqual([]);
    expect(readRecords(join(dir, "no-such-state"))).toEqual({ records: [], broken: [] });
  });

  it("know a live owner from a dead one and from a reused pid", async () => {
    expect(ownerAlive(rec("ndmpd-a"))).toBe(true);
    expect(ownerAlive(rec("ndmpd-b", process.pid, "1"))).toBe(false); // our pid, another start time: reused
    const child = spawn("sleep", ["30"]);
    await new Promise((r) => child.once("spawn", r));
    const start = processStart(child.pid!);
    expect(start).toMatch(/^\d+$/);
    expect(ownerAlive(rec("ndmpd-c", child.pid!, start))).toBe(true);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(ownerAlive(rec("ndmpd-c", child.pid!, start))).toBe(false);
  });

  it("cleanup at start drops a record whose snapshot is gone, keeps a live owner's, and keeps one it cannot act on", async () => {
    const st = join(dir, "state-cleanup");
    writeRecord(st, rec("ndmpd-gone", 999_999_999, "5")); // dead owner, no snapshot: dropped
    writeRecord(st, rec("ndmpd-mine")); // this process: left alone
    const parent = join(dir, "not-a-subvolume");
    mkdirSync(join(parent, "ndmpd-plain"), { recursive: true });
    writeRecord(st, { ...rec("ndmpd-plain", 999_999_999, "5"), parentHex: Buffer.from(parent).toString("hex") }); // a plain directory: never deleted
    expect(await cleanupLeftovers(st, NO_NATIVE, quiet)).toBe(1);
    expect(readRecords(st).records.map((r) => r.name).sort()).toEqual(["ndmpd-mine", "ndmpd-plain"]);
    await expect(destroyBtrfs(NO_NATIVE, Buffer.from(parent), "ndmpd-plain")).rejects.toThrow(/is not a btrfs subvolume: not deleted/);
    await expect(destroyBtrfs(NO_NATIVE, Buffer.from(parent), "someone-elses")).rejects.toThrow(/not a snapshot name of ours/);
  });
});

describe("hooks", () => {
  it("match FILESYSTEM by pattern, first match first; fill in placeholders", () => {
    const hooks = [
      { path: "/srv/db{,/**}", create: ["/a"], delete: ["/b"], timeoutMs: 1000 },
      { path: "/srv/**", create: ["/c"], delete: ["/d"], timeoutMs: 1000 },
    ];
    expect(findHook(hooks, "/srv/db")?.create).toEqual(["/a"]);
    expect(findHook(hooks, "/srv/db/x")?.create).toEqual(["/a"]);
    expect(findHook(hooks, "/srv/other")?.create).toEqual(["/c"]);
    expect(findHook(hooks, "/home")).toBeUndefined();
    expect(fillIn(["/x", "{path}", "--name={name}", "{dir}"], { path: "/srv/db", name: "ndmpd-1" })).toEqual(["/x", "/srv/db", "--name=ndmpd-1", ""]);
  });

  it("run without a shell, with the variables in their environment; failures say how, with stderr", async () => {
    const echo = script("echo.sh", 'echo "$1 $NDMPD_SNAPSHOT_PATH $NDMPD_SNAPSHOT_NAME"; echo oops >&2');
    const r = await runHook([echo, "a b;c"], { path: "/p", name: "ndmpd-n" }, 5000);
    expect(r.stdout).toBe("a b;c /p ndmpd-n\n");
    expect(r.stderr).toBe("oops\n");
    const fail = script("fail.sh", "echo first >&2; echo 'disk full' >&2; exit 4");
    await expect(runHook([fail], { path: "/p", name: "n" }, 5000)).rejects.toThrow(/fail\.sh exited with status 4: first \/ disk full/);
    const slow = script("slow.sh", "exec sleep 30");
    await expect(runHook([slow], { path: "/p", name: "n" }, 300)).rejects.toThrow(/did not finish within 0.3 s/);
    await expect(runHook([join(dir, "missing")], { path: "/p", name: "n" }, 1000)).rejects.toThrow(/ENOENT/);
  });

  it("create's last line must be an existing absolute directory", () => {
    expect(printedDir(`noise\n${dir}\n\n`)).toBe(dir);
    expect(() => printedDir("")).toThrow(/printed no absolute directory/);
    expect(() => printedDir("relative/dir\n")).toThrow(/printed no absolute directory/);
    expect(() => printedDir(join(dir, "nope"))).toThrow(/cannot be read/);
    writeFileSync(join(dir, "file"), "");
    expect(() => printedDir(join(dir, "file"))).toThrow(/is not a directory/);
  });

  it("a hook snapshot (a directory the script names) is recorded while held, read from, and deleted", async () => {
    const state = join(dir, "state-hook");
    const live = join(dir, "live");
    const copy = join(dir, "copies");
    mkdirSync(live);
    mkdirSync(copy);
    writeFileSync(join(live, "f"), "x");
    const hook = script("copy.sh", `case "$1" in create) cp -a "$2" "${copy}/$3" && echo "${copy}/$3";; delete) rm -rf "$3";; esac`);
    const config = { snapshotHooks: [{ path: `${live}`, create: [hook, "create", "{path}", "{name}"], delete: [hook, "delete", "{name}", "{dir}"], timeoutMs: 5000 }] };
    const plan = planSnapshot(config, Buffer.from(live));
    expect(typeof plan === "string" ? plan : plan.method).toBe("hook");
    // Matched on the real path: a symlink inside the pattern to a place outside it matches nothing.
    mkdirSync(join(dir, "elsewhere"));
    symlinkSync(join(dir, "elsewhere"), join(live, "out"));
    const inside = { snapshotHooks: [{ ...config.snapshotHooks[0]!, path: `${live}/**` }] };
    expect(planSnapshot(inside, Buffer.from(join(live, "out")))).not.toHaveProperty("method", "hook");
    expect(planSnapshot(inside, Buffer.from(live))).toHaveProperty("method", "hook");
    expect(snapshotMethod(config, live, "ext4")).toBe("hook");
    expect(snapshotMethod(config, "/elsewhere", "ext4")).toBe("none");
    const snap = await takeSnapshot(plan as Exclude<typeof plan, string>, { stateDir: state, native: NO_NATIVE, log: quiet });
    expect(snap.label).toBe(`hook:${snap.name}`);
    expect(snap.dir.toString()).toBe(join(copy, snap.name));
    expect(readRecords(state).records.map((r) => [r.name, r.hook?.dir])).toEqual([[snap.name, join(copy, snap.name)]]);
    await snap.release();
    expect(readRecords(state).records).toEqual([]);
    expect(() => printedDir(join(copy, snap.name))).toThrow(/cannot be read/);
  });
});

describe("a delete that fails", () => {
  it("keeps the record, and the next start (the owner gone) deletes it then", async () => {
    const state = join(dir, "state-failing-delete");
    const flag = join(dir, "delete-may-work");
    const made = join(dir, "made");
    mkdirSync(made);
    const hook = script("flaky.sh", `case "$1" in create) echo "${made}";; delete) [ -e "${flag}" ] || { echo "device busy" >&2; exit 1; }; echo "$2" >> "${flag}";; esac`);
    const config = { snapshotHooks: [{ path: made, create: [hook, "create"], delete: [hook, "delete", "{name}"], timeoutMs: 5000 }] };
    const plan = planSnapshot(config, Buffer.from(made));
    if (typeof plan === "string") throw new Error(plan);
    const snap = await takeSnapshot(plan, { stateDir: state, native: NO_NATIVE, log: quiet });
    await snap.release(); // never throws
    const kept = readRecords(state).records;
    expect(kept.map((r) => r.name)).toEqual([snap.name]);
    expect(await cleanupLeftovers(state, NO_NATIVE, quiet)).toBe(0); // its owner (this process) is alive
    writeRecord(state, { ...kept[0]!, pid: 999_999_999, pidStart: "5" });
    writeFileSync(flag, "");
    expect(await cleanupLeftovers(state, NO_NATIVE, quiet)).toBe(1);
    expect(readRecords(state).records).toEqual([]);
    expect(readFileSync(flag, "utf8")).toBe(`${snap.name}\n`);
  });
});

describe("choosing a method", () => {
  it("reads CAP_SYS_ADMIN from the effective capabilities (what deleting a subvolume needs)", () => {
    expect(hasSysAdmin("Name:\tx\nCapEff:\t000001ffffffffff\n")).toBe(true);
    // The packaged unit's bounding set: DAC_READ_SEARCH, DAC_OVERRIDE, CHOWN, FOWNER, FSETID, MKNOD, SETFCAP, SYS_RAWIO.
    const unit = (1n << 2n) | (1n << 1n) | (1n << 0n) | (1n << 3n) | (1n << 4n) | (1n << 27n) | (1n << 31n) | (1n << 17n);
    expect(hasSysAdmin(`CapEff:\t${unit.toString(16).padStart(16, "0")}\n`)).toBe(false);
    expect(hasSysAdmin("no such line")).toBe(false);
  });

  it.runIf(Number(statfsSync(dir).type) !== BTRFS_SUPER_MAGIC)("a path that is not on btrfs has none, and says why", () => {
    expect(planSnapshot({ snapshotHooks: [] }, Buffer.from(dir))).toBe("not on btrfs");
    const none = findSubvolume(Buffer.from(join(dir, "does-not-exist")));
    expect(none).toMatch(/ENOENT/);
  });
});
