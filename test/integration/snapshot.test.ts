/**
 * Backups from snapshots, against the compiled binary (the btrfs ioctls through bun:ffi) on a
 * real btrfs filesystem on a loop device (and an ext4 one for the refusals):
 *  - while a writer process keeps rewriting and renaming files, a three-way backup by ndmjob
 *    equals a reference snapshot taken at the same moment (GNU tar extracts it, ndmjob -x
 *    restores it), the live tree is never read (inotify), names and inode numbers are the live ones;
 *  - no snapshot is left after success, DATA_ABORT, a DMA that drops its connection, and kill -9
 *    of the server followed by a restart;
 *  - a [[snapshot]] hook (a script making a btrfs snapshot) is used, a failing one is a clear
 *    error (or a live backup under auto); SNAPSHOT=required on ext4 is refused;
 *  - a level 1 after a level 0 catches a file changed during the level 0 (tar; and dump, whose
 *    chain, with a live level 2 on top, Linux restore -r replays);
 *  - CONFIG_GET_FS_INFO says SNAPSHOT_METHOD per filesystem.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TarReader } from "../../formats/tar/reader.ts";
import { NdmpClient, NdmpClientError } from "../../src/client/client.ts";
import { AddrType, DataHaltReason as Halt, ErrorCode, LogType, Message } from "../../src/protocol/codes.ts";
import { tcpAddr } from "../../src/transport/tcp.ts";
import { dma, Receiver, seededBytes, until } from "../helpers/dma.ts";
import { D, T } from "../helpers/lab.ts";
import { jobSucceeded, ndmjob, parseIndex, simtapeFile, startNdmjobDaemon, type NdmjobDaemon } from "../helpers/ndmjob.ts";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { BINARY, havePeers, IN_CI } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { compareTrees } from "../helpers/tree.ts";
import { DUMPINSPECT } from "../helpers/dumpinspect.ts";
import { NO_NATIVE } from "../../src/native/index.ts";
import { createBtrfs, destroyBtrfs, findSubvolume } from "../../src/snapshot/btrfs.ts";

const tools = ["mkfs.btrfs", "btrfs", "mkfs.ext4", "losetup", "inotifywait"].filter((t) => spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0);
if (tools.length > 0 && IN_CI) it(`tools available: ${tools.join(", ")}`, () => expect(tools).toEqual([]));
const ready = havePeers("binary", "ndmjob", "tar", "restore", "unshare") && tools.length === 0;

const MiB = 1024 * 1024;

interface Loop {
  dev: string;
  mnt: string;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

function mountImage(image: string, size: string, mkfs: string[], mnt: string): Loop {
  sh("truncate", ["-s", size, image]);
  sh(mkfs[0]!, [...mkfs.slice(1), image]);
  const dev = sh("losetup", ["-f", "--show", image]).trim();
  mkdirSync(mnt, { recursive: true });
  sh("mount", [dev, mnt]);
  return { dev, mnt };
}

function unmount(l: Loop | undefined): void {
  if (!l) return;
  if (spawnSync("umount", [l.mnt]).status !== 0) spawnSync("umount", ["-l", l.mnt]);
  spawnSync("losetup", ["-d", l.dev]);
}

/** Our snapshots of a subvolume (names in SUBVOLUME/.ndmpd-snapshots). */
const snapshotsIn = (subvol: string) => (existsSync(join(subvol, ".ndmpd-snapshots")) ? readdirSync(join(subvol, ".ndmpd-snapshots")) : []);
const recordsIn = (stateDir: string) => (existsSync(join(stateDir, "snapshots")) ? readdirSync(join(stateDir, "snapshots")) : []);

/**
 * A process that keeps changing the tree without ever reading it: overwrites 1 MiB pieces of
 * the big files (opened for writing only), rewrites small files, renames some back and forth.
 */
const WRITER = `
const fs = require("fs"), path = require("path"), crypto = require("crypto");
const [dir, bigCount, smallCount] = process.argv.slice(1);
let n = 0;
const piece = Buffer.alloc(1 << 20);
function step() {
  n++;
  const b = path.join(dir, "big", "b" + (n % Number(bigCount)));
  crypto.randomFillSync(piece);
  const fd = fs.openSync(b, fs.constants.O_WRONLY);
  fs.writeSync(fd, piece, 0, piece.length, (n * 7919 % 32) * piece.length);
  fs.closeSync(fd);
  const s = n % Number(smallCount);
  fs.writeFileSync(path.join(dir, "small", "s" + s), "generation " + n + "\\n" + "x".repeat(n % 5000));
  const m = n - 1;
  const r = path.join(dir, "small", "r" + (m % 10));
  if (m % 20 < 10) fs.renameSync(r, r + ".moved"); else fs.renameSync(r + ".moved", r);
  setTimeout(step, 2);
}
step();
`;

describe.runIf(ready)("backups from snapshots (btrfs on a loop device)", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-snap-"));
  let btr: Loop | undefined;
  let ext: Loop | undefined;
  let ns: Netns | undefined;
  let daemon: NdmjobDaemon | undefined;
  let lab: RunningServer | undefined;
  let srv: RunningServer | undefined;
  let c: NdmpClient | undefined;
  const MNT = join(W, "btrfs");
  const VOL = join(MNT, "vol");
  const TREE = join(VOL, "tree");
  const HVOL = join(MNT, "hvol");
  const HOOKSNAPS = join(MNT, "hooksnaps");
  const HOOK = join(W, "hook.sh");
  const HOOKLOG = join(W, "hook.log");
  const EXT_TREE = () => join(ext!.mnt, "tree");
  const STATE = join(W, "state");
  const BIG = 6;
  const SMALL = 300;

  const config = (listen: string, state: string) =>
    `[server]\nlisten = "${listen}"\nstate_dir = "${state}"\nauth_failure_delay_ms = 0\n` +
    `[auth]\nmethods = ["md5", "text"]\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n` +
    `[[snapshot]]\npath = "${HVOL}/**"\ncreate = ["${HOOK}", "create", "{path}", "{name}"]\ndelete = ["${HOOK}", "delete", "{name}", "{dir}"]\ntimeout = 60\n` +
    `[[snapshot]]\npath = "${MNT}/failing/**"\ncreate = ["/bin/sh", "-c", "echo 'no space left for the snapshot' >&2; exit 3"]\ndelete = ["/bin/true"]\n`;

  beforeAll(async () => {
    btr = mountImage(join(W, "btrfs.img"), "1200M", ["mkfs.btrfs", "-q"], MNT);
    ext = mountImage(join(W, "ext4.img"), "32M", ["mkfs.ext4", "-q", "-F"], join(W, "ext4"));
    sh("btrfs", ["subvolume", "create", VOL]);
    sh("btrfs", ["subvolume", "create", HVOL]);
    mkdirSync(HOOKSNAPS);
    // A few hundred MB: six 32 MiB files and 300 small ones (10 of which the writer renames).
    mkdirSync(join(TREE, "big"), { recursive: true });
    mkdirSync(join(TREE, "small"));
    for (let i = 0; i < BIG; i++) writeFileSync(join(TREE, "big", `b${i}`), seededBytes(32 * MiB, i));
    for (let i = 0; i < SMALL; i++) writeFileSync(join(TREE, "small", `s${i}`), `small ${i}\n`.repeat(i + 1));
    for (let i = 0; i < 10; i++) writeFileSync(join(TREE, "small", `r${i}`), `renamed ${i}\n`);
    mkdirSync(join(HVOL, "tree", "d"), { recursive: true });
    writeFileSync(join(HVOL, "tree", "d", "f"), "through the hook\n");
    mkdirSync(join(MNT, "failing", "tree"), { recursive: true });
    writeFileSync(join(MNT, "failing", "tree", "f"), "live\n");
    mkdirSync(EXT_TREE());
    writeFileSync(join(EXT_TREE(), "f"), "on ext4\n");
    writeFileSync(
      HOOK,
      `#!/bin/sh\nset -e\necho "$@" >> ${HOOKLOG}\ncase "$1" in\n` +
        `create) btrfs subvolume snapshot -r "$(dirname "$2")" "${HOOKSNAPS}/$3" >/dev/null; echo "made $3" >&2; echo "${HOOKSNAPS}/$3/$(basename "$2")" ;;\n` +
        `delete) btrfs subvolume delete "${HOOKSNAPS}/$2" >/dev/null ;;\nesac\n`,
    );
    chmodSync(HOOK, 0o755);
    ns = await createNetns();
    lab = await startServer({ netns: ns, config: config("127.0.0.1:10000", join(W, "lab-state")) });
    daemon = await startNdmjobDaemon(ns, 10001);
    srv = await startServer({ config: config("127.0.0.1:0", STATE) });
    c = await dma(srv.port);
  }, 300_000);

  afterAll(async () => {
    await c?.close().catch(() => {});
    await srv?.stop();
    await daemon?.stop();
    await lab?.stop();
    await ns?.stop();
    unmount(btr);
    unmount(ext);
    rmSync(W, { recursive: true, force: true });
  }, 120_000);

  // ---- the DMA side for the client-driven tests ----

  const dataConnect = async (session: NdmpClient): Promise<Socket> => {
    const server = createServer();
    const accepted = new Promise<Socket>((r) => server.once("connection", (s) => (server.close(), r(s))));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    await session.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", port)] } });
    return accepted;
  };
  const start = async (session: NdmpClient, env: Record<string, string>, butype = "tar"): Promise<number> => {
    try {
      await session.request(Message.DATA_START_BACKUP, { butype_name: butype, env: Object.entries(env).map(([name, value]) => ({ name, value })) });
      return ErrorCode.NO_ERR;
    } catch (e) {
      if (!(e instanceof NdmpClientError)) throw e;
      return e.error;
    }
  };
  const logsOf = (session: NdmpClient, since: number, type?: number) =>
    session.posts
      .slice(since)
      .filter((p) => p.code === Message.LOG_MESSAGE && (type === undefined || p.body.log_type === type))
      .map((p) => Buffer.from(p.body.entry).toString());
  const getEnv = async (session: NdmpClient) =>
    new Map(((await session.request(Message.DATA_GET_ENV)).body.env as Array<{ name: unknown; value: unknown }>).map((p) => [String(p.name), String(p.value)]));
  /** A whole backup; the stream as received, the halt reason, DATA_GET_ENV, the LOG_MESSAGEs. */
  const backup = async (session: NdmpClient, env: Record<string, string>, opts: { whileRunning?: () => Promise<void>; butype?: string } = {}) => {
    const sock = await dataConnect(session);
    sock.pause();
    const since = session.posts.length;
    const err = await start(session, env, opts.butype);
    if (err !== ErrorCode.NO_ERR) throw new Error(`DATA_START_BACKUP: error ${err}: ${logsOf(session, since).join("; ")}`);
    await opts.whileRunning?.();
    const recv = new Receiver(sock);
    sock.resume();
    const h = await session.waitForPost(Message.NOTIFY_DATA_HALTED, 120_000, since);
    await until(() => recv.closed, 30_000, "the data connection to close");
    const envOut = await getEnv(session);
    await session.request(Message.DATA_STOP);
    const nodes = new Map<string, bigint>();
    for (const p of session.posts.slice(since).filter((p) => p.code === Message.FH_ADD_FILE)) {
      for (const f of p.body.files as Array<{ names: Array<{ unix_name: Uint8Array }>; node: bigint }>) nodes.set(Buffer.from(f.names[0]!.unix_name).toString("latin1"), BigInt(f.node));
    }
    return { reason: h.body.reason as number, stream: recv.bytes(), env: envOut, logs: logsOf(session, since), nodes };
  };
  const tarEntries = (stream: Buffer) => {
    const out = new Map<string, { type: string; data: Buffer[] }>();
    let cur: { type: string; data: Buffer[] } | undefined;
    for (const ev of new TarReader().feed(stream)) {
      if (ev.kind === "entry") out.set(ev.entry.path.toString("latin1"), (cur = { type: ev.entry.type, data: [] }));
      else if (ev.kind === "data" && cur) cur.data.push(Buffer.from(ev.chunk));
    }
    return out;
  };

  it("CONFIG_GET_FS_INFO: SNAPSHOT_METHOD btrfs on btrfs, none on ext4", async () => {
    const r = await c!.request(Message.CONFIG_GET_FS_INFO);
    const method = (mnt: string) => {
      const fs = (r.body.fs_info as Array<{ fs_logical_device: unknown; fs_env: Array<{ name: unknown; value: unknown }> }>).find((f) => String(f.fs_logical_device) === mnt);
      return fs?.fs_env.find((e) => String(e.name) === "SNAPSHOT_METHOD")?.value?.toString();
    };
    expect(method(MNT)).toBe("btrfs");
    expect(method(ext!.mnt)).toBe("none");
  });

  it("a backup while a writer rewrites and renames files equals a reference snapshot of that moment; the live tree is never read", async () => {
    const tape = join(W, "writer.simtape");
    writeFileSync(tape, "");
    const idx = join(W, "writer.idx");
    const writer: ChildProcess = spawn(process.execPath, ["-e", WRITER, TREE, String(BIG), String(SMALL)], { stdio: ["ignore", "ignore", "inherit"] });
    const writerExit = new Promise<void>((r) => writer.once("exit", () => r()));
    let watch: ChildProcess | undefined;
    try {
      await new Promise((r) => setTimeout(r, 500)); // it is writing
      // Everything that reads the live tree shows up as IN_ACCESS or IN_CLOSE_NOWRITE (the
      // writer only opens files for writing and never lists a directory).
      watch = spawn("inotifywait", ["-m", "-r", "-q", "-e", "access,close_nowrite", "--format", "%w%f %e", TREE], { stdio: ["ignore", "pipe", "pipe"] });
      let events = "";
      watch.stdout!.on("data", (d) => (events += d));
      // -q hides "Watches established": wait until a read of our own shows up, then start counting.
      await until(() => {
        readdirSync(join(TREE, "big"));
        return events.includes("big");
      }, 20_000, "inotifywait to watch");
      await new Promise((r) => setTimeout(r, 300));
      const baseline = events.length;
      // The moment: the writer stops, the reference snapshot is taken, the backup takes its own,
      // and only then does the writer go on (it keeps changing the tree during the whole backup).
      writer.kill("SIGSTOP");
      sh("btrfs", ["subvolume", "snapshot", "-r", VOL, join(MNT, "ref")]);
      const job = ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", tape, "-B", "tar", "-E", "HIST=y", "-C", TREE, "-I", idx]);
      await until(() => snapshotsIn(VOL).length > 0, 60_000, "the backup's snapshot");
      writer.kill("SIGCONT");
      const r = await job;
      expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
      expect(snapshotsIn(VOL)).toEqual([]); // deleted after success
      expect(recordsIn(join(W, "lab-state"))).toEqual([]);
      const live = events.slice(baseline);
      expect(live, "reads of the live tree during the backup").toBe("");
      // The job ran while the writer kept going: the live tree is no longer the reference.
      writer.kill("SIGKILL");
      await writerExit;
      expect(await compareTrees(join(MNT, "ref", "tree"), TREE, { xattrs: false })).not.toEqual([]);

      const index = parseIndex(readFileSync(idx, "latin1"));
      expect(index.env.get("SNAPSHOT")).toMatch(/^btrfs:ndmpd-/);
      expect(r.stdout).toMatch(/snapshot btrfs:ndmpd-\S+ made \(ioctl\)/);
      // Names are the live ones; inode numbers too (the snapshot keeps them).
      const names = [...index.files.keys()];
      expect(names).toContain("/big/b0");
      expect(names.some((n) => n.includes(".ndmpd-snapshots") || n.includes("ndmpd-"))).toBe(false);

      const stream = simtapeFile(readFileSync(tape), 0);
      expect(stream.length).toBeGreaterThan(BIG * 32 * MiB);
      writeFileSync(join(W, "writer.tar"), stream);
      const xt = join(W, "x-tar");
      mkdirSync(xt);
      const t = await run("tar", ["-xpf", join(W, "writer.tar"), "-C", xt]);
      expect(t.code, t.stderr).toBe(0);
      expect(await compareTrees(join(MNT, "ref", "tree"), xt, { xattrs: false })).toEqual([]);
      const xn = join(W, "x-ndmjob");
      const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", tape, "-B", "tar", "-C", xn, "-J", idx]);
      expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
      expect(await compareTrees(join(MNT, "ref", "tree"), xn, { xattrs: false })).toEqual([]);
    } finally {
      writer.kill("SIGCONT");
      writer.kill("SIGKILL");
      await writerExit;
      watch?.kill();
    }
  }, 600_000);

  it("DATA_ABORT mid-stream: the snapshot is deleted (ndmpd sessions showed it while held)", async () => {
    const sock = await dataConnect(c!);
    sock.pause(); // never read: the backup stalls with the snapshot held
    const since = c!.posts.length;
    expect(await start(c!, { FILESYSTEM: TREE })).toBe(ErrorCode.NO_ERR);
    await until(() => snapshotsIn(VOL).length === 1 && recordsIn(STATE).length === 1, 30_000, "the snapshot and its record");
    expect((await getEnv(c!)).get("SNAPSHOT")).toBe(`btrfs:${snapshotsIn(VOL)[0]}`);
    // ndmpd sessions shows it too.
    const list = await run(BINARY, ["sessions", "--json", "--config", join(srv!.dir, "ndmpd.toml")]);
    expect(list.code, list.stderr).toBe(0);
    const mine = (JSON.parse(list.stdout) as Array<{ data: { operation: string; path: string; snapshot?: string } }>).find((x) => x.data.operation === "BACKUP");
    expect(mine?.data).toMatchObject({ path: TREE, snapshot: `btrfs:${snapshotsIn(VOL)[0]}` });
    const table = await run(BINARY, ["sessions", "--config", join(srv!.dir, "ndmpd.toml")]);
    expect(table.stdout).toContain(`${TREE} [btrfs:${snapshotsIn(VOL)[0]}]`);
    await c!.request(Message.DATA_ABORT);
    expect((await c!.waitForPost(Message.NOTIFY_DATA_HALTED, 30_000, since)).body.reason).toBe(Halt.ABORTED);
    await c!.request(Message.DATA_STOP);
    sock.destroy();
    await until(() => snapshotsIn(VOL).length === 0 && recordsIn(STATE).length === 0, 30_000, "the snapshot to be deleted");
  }, 120_000);

  it("a DMA that drops its connection mid-stream: the snapshot is deleted", async () => {
    const c2 = await dma(srv!.port);
    const sock = await dataConnect(c2);
    sock.pause();
    expect(await start(c2, { FILESYSTEM: TREE })).toBe(ErrorCode.NO_ERR);
    await until(() => snapshotsIn(VOL).length === 1, 30_000, "the snapshot");
    (c2 as unknown as { socket: Socket }).socket.destroy();
    sock.destroy();
    await until(() => snapshotsIn(VOL).length === 0 && recordsIn(STATE).length === 0, 30_000, "the snapshot to be deleted");
  }, 120_000);

  it("kill -9 of the server holding a snapshot: the next start deletes it and says so", async () => {
    const state = join(W, "state-k");
    let k = await startServer({ config: config("127.0.0.1:0", state) });
    try {
      const ck = await dma(k.port);
      const sock = await dataConnect(ck);
      sock.pause();
      expect(await start(ck, { FILESYSTEM: TREE })).toBe(ErrorCode.NO_ERR);
      await until(() => snapshotsIn(VOL).length === 1 && recordsIn(state).length === 1, 30_000, "the snapshot and its record");
      const name = snapshotsIn(VOL)[0]!;
      await k.stop("SIGKILL");
      sock.destroy();
      (ck as unknown as { socket: Socket }).socket.destroy();
      expect(snapshotsIn(VOL)).toEqual([name]); // nobody deleted it
      // A snapshot that is not ours (no record) is never touched.
      sh("btrfs", ["subvolume", "snapshot", "-r", VOL, join(VOL, ".ndmpd-snapshots", "ndmpd-not-recorded")]);
      k = await startServer({ config: config("127.0.0.1:0", state) });
      expect(snapshotsIn(VOL)).toEqual(["ndmpd-not-recorded"]);
      expect(recordsIn(state)).toEqual([]);
      expect(k.logs.some((l) => l.msg === "leftover snapshot deleted" && String(l.snapshot) === `btrfs:${name}`), k.stderr()).toBe(true);
    } finally {
      await k.stop();
      spawnSync("btrfs", ["subvolume", "delete", join(VOL, ".ndmpd-snapshots", "ndmpd-not-recorded")]);
    }
  }, 120_000);

  it("a level 1 after a level 0 catches a file changed during the level 0, which holds it as it was at the snapshot", async () => {
    const changing = join(TREE, "small", "s5");
    writeFileSync(changing, "before the level 0\n");
    await new Promise((r) => setTimeout(r, 20));
    const l0 = await backup(c!, { FILESYSTEM: TREE, LEVEL: "0", HIST: "f" }, {
      whileRunning: async () => {
        await until(() => snapshotsIn(VOL).length === 1, 30_000, "the snapshot");
        writeFileSync(changing, "changed during the level 0\n");
      },
    });
    expect(l0.reason, l0.logs.join("\n")).toBe(Halt.SUCCESSFUL);
    expect(l0.env.get("SNAPSHOT")).toMatch(/^btrfs:/);
    expect(Buffer.concat(tarEntries(l0.stream).get("small/s5")!.data).toString()).toBe("before the level 0\n");
    // The file history's node numbers are the live inode numbers (a btrfs snapshot keeps them).
    const ino = BigInt(statSync(join(TREE, "small", "s7")).ino);
    expect(l0.nodes.get("/small/s7") ?? l0.nodes.get("small/s7")).toBe(ino);
    // DUMP_DATE's seconds and the dumpdates line: the snapshot's time, before the change.
    const date = Number(BigInt(l0.env.get("DUMP_DATE")!) & 0xffffffffn);
    expect(date).toBeLessThanOrEqual(Math.floor(statSync(changing).mtimeMs / 1000));
    const l1 = await backup(c!, { FILESYSTEM: TREE, LEVEL: "1" });
    expect(l1.reason, l1.logs.join("\n")).toBe(Halt.SUCCESSFUL);
    const files = [...tarEntries(l1.stream)].filter(([, e]) => e.type !== "directory");
    expect(files.map(([k]) => k)).toContain("small/s5");
    expect(Buffer.concat(tarEntries(l1.stream).get("small/s5")!.data).toString()).toBe("changed during the level 0\n");
    expect(files.length).toBeLessThan(20); // only what changed
    // A live level 2 builds on it: the snapshot's objects were recorded with the live identity.
    const l2 = await backup(c!, { FILESYSTEM: TREE, LEVEL: "2", SNAPSHOT: "n" });
    expect(l2.reason, l2.logs.join("\n")).toBe(Halt.SUCCESSFUL);
    expect([...tarEntries(l2.stream)].filter(([, e]) => e.type !== "directory").map(([k]) => k)).toEqual([]);
    expect(snapshotsIn(VOL)).toEqual([]);
  }, 300_000);

  it("SNAPSHOT=required on ext4 is refused before the job starts; y and auto back up live with a warning; a bad value is refused", async () => {
    const sock = await dataConnect(c!);
    sock.resume();
    let since = c!.posts.length;
    expect(await start(c!, { FILESYSTEM: EXT_TREE(), SNAPSHOT: "required" })).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(logsOf(c!, since, LogType.ERROR).join("\n")).toMatch(/SNAPSHOT=required: .*tree has no snapshot method \(not on btrfs/);
    since = c!.posts.length;
    expect(await start(c!, { FILESYSTEM: EXT_TREE(), SNAPSHOT: "sometimes" })).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(logsOf(c!, since, LogType.ERROR).join("\n")).toMatch(/SNAPSHOT=sometimes: must be y, n, auto or required/);
    sock.destroy();
    await c!.request(Message.DATA_ABORT).catch(() => {});
    await c!.request(Message.DATA_STOP).catch(() => {});
    for (const policy of ["y", "auto"]) {
      const b = await backup(c!, { FILESYSTEM: EXT_TREE(), SNAPSHOT: policy });
      expect(b.reason).toBe(Halt.SUCCESSFUL);
      expect(b.env.get("SNAPSHOT")).toBe("none");
      expect(b.logs.join("\n")).toMatch(/no snapshot of .*tree \(not on btrfs\): backing up the live tree/);
    }
    const n = await backup(c!, { FILESYSTEM: TREE, SNAPSHOT: "n" });
    expect(n.env.get("SNAPSHOT")).toBe("none");
    expect(n.logs.join("\n")).not.toMatch(/snapshot/);
  }, 120_000);

  it("a [[snapshot]] hook is used (its create and delete run), and a failing one is a clear error, or a live backup under auto", async () => {
    writeFileSync(HOOKLOG, "");
    const b = await backup(c!, { FILESYSTEM: join(HVOL, "tree"), HIST: "y" });
    expect(b.reason, b.logs.join("\n")).toBe(Halt.SUCCESSFUL);
    const label = b.env.get("SNAPSHOT")!;
    expect(label).toMatch(/^hook:ndmpd-/);
    const name = label.slice("hook:".length);
    expect(b.logs.join("\n")).toContain(`snapshot ${label} made (hook)`);
    expect(readFileSync(HOOKLOG, "utf8")).toBe(`create ${join(HVOL, "tree")} ${name}\ndelete ${name} ${join(HOOKSNAPS, name, "tree")}\n`);
    expect(readdirSync(HOOKSNAPS)).toEqual([]);
    expect(Buffer.concat(tarEntries(b.stream).get("d/f")!.data).toString()).toBe("through the hook\n");
    expect(recordsIn(STATE)).toEqual([]);
    expect(srv!.logs.some((l) => l.msg === "snapshot hook create: stderr" && l.stderr === `made ${name}`)).toBe(true);

    const failing = { FILESYSTEM: join(MNT, "failing", "tree") };
    const y = await backup(c!, { ...failing, SNAPSHOT: "y" });
    expect(y.reason).toBe(Halt.INTERNAL_ERROR);
    expect(y.logs.join("\n")).toMatch(/SNAPSHOT=y: snapshot hook \/bin\/sh exited with status 3: no space left for the snapshot/);
    const auto = await backup(c!, { ...failing, SNAPSHOT: "auto" });
    expect(auto.reason).toBe(Halt.SUCCESSFUL);
    expect(auto.env.get("SNAPSHOT")).toBe("none");
    expect(auto.logs.join("\n")).toMatch(/exited with status 3.*: backing up the live tree/);
    expect(recordsIn(STATE)).toEqual([]);
  }, 120_000);

  it("ndmpd backup --snapshot: required on btrfs names the snapshot in its summary; required on ext4 fails and says why; a bad value is a usage error", async () => {
    const cfg = join(W, "cli.toml");
    writeFileSync(cfg, `[server]\nstate_dir = "${join(W, "cli-state")}"\n\n[[tape]]\nname = "vtc"\npath = "${join(W, "vtc.tape")}"\ncapacity = "2GiB"\n`);
    chmodSync(cfg, 0o600);
    const cli = (...args: string[]) => run(BINARY, [...args, "--config", cfg], { timeoutMs: 300_000 });
    const ok = await cli("backup", join(HVOL, "tree"), "--tape", "vtc", "--snapshot", "n", "--json");
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
    expect(JSON.parse(ok.stdout.trim().split("\n").at(-1)!).snapshot).toBe("none");
    const b = await cli("backup", join(MNT, "failing"), "--tape", "vtc", "--snapshot", "required", "--json");
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(JSON.parse(b.stdout.trim().split("\n").at(-1)!).snapshot).toMatch(/^btrfs:ndmpd-/);
    expect(snapshotsIn(MNT)).toEqual([]);
    expect(recordsIn(join(W, "cli-state"))).toEqual([]);
    const e = await cli("backup", EXT_TREE(), "--tape", "vtc", "--snapshot", "required");
    expect(e.code).not.toBe(0);
    expect(e.stderr + e.stdout).toMatch(/SNAPSHOT=required: .*has no snapshot method/);
    const u = await cli("backup", EXT_TREE(), "--tape", "vtc", "--snapshot", "maybe");
    expect(u.code).not.toBe(0);
    expect(u.stderr).toMatch(/--snapshot must be y, n, auto or required/);
  }, 300_000);

  it("dump from snapshots: level 0 then 1 (a file changed during the level 0), valid streams, the level 1 holding the directories and that file only; a live level 2 builds on them; restore -r replays the chain", async () => {
    const dvol = join(MNT, "dvol");
    sh("btrfs", ["subvolume", "create", dvol]);
    mkdirSync(join(dvol, "d"));
    for (let i = 0; i < 20; i++) writeFileSync(join(dvol, "d", `f${i}`), seededBytes(300_000 + i, 100 + i));
    const changing = join(dvol, "d", "f3");
    const l0 = await backup(c!, { FILESYSTEM: dvol, LEVEL: "0", SNAPSHOT: "required" }, {
      butype: "dump",
      whileRunning: async () => {
        await until(() => snapshotsIn(dvol).length === 1, 30_000, "the snapshot");
        writeFileSync(changing, "changed during the level 0\n");
      },
    });
    expect(l0.reason, l0.logs.join("\n")).toBe(Halt.SUCCESSFUL);
    const l1 = await backup(c!, { FILESYSTEM: dvol, LEVEL: "1", SNAPSHOT: "required" }, { butype: "dump" });
    expect(l1.reason, l1.logs.join("\n")).toBe(Halt.SUCCESSFUL);
    expect(l1.env.get("SNAPSHOT")).toMatch(/^btrfs:/);
    // A live level 2: same inode table and directory identities as the snapshots' (nothing changed).
    const l2 = await backup(c!, { FILESYSTEM: dvol, LEVEL: "2", SNAPSHOT: "n" }, { butype: "dump" });
    expect(l2.reason, l2.logs.join("\n")).toBe(Halt.SUCCESSFUL);
    const inodes: number[] = [];
    for (const [i, img] of [l0, l1, l2].entries()) {
      const f = join(W, `dvol${i}.dump`);
      writeFileSync(f, img.stream);
      const r = await run("python3", [DUMPINSPECT, "--strict", "--headers", f]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      inodes.push(r.stdout.split("\n").filter((l) => /^\s*\d+ @\d+\s+TS_INODE /.test(l)).length);
    }
    // Level 0: the root, d and 20 files (d/f3 as it was at the snapshot); level 1: the two
    // directories and d/f3; level 2 (live): the directories.
    expect(inodes).toEqual([22, 3, 2]);
    // Linux restore -r replays the chain into the tree as it is now (nothing changed after the
    // level 1; restore keeps microseconds and leaves "." alone).
    const dest = join(W, "dvol-restore");
    mkdirSync(dest);
    for (let i = 0; i < 3; i++) {
      const r = await run("restore", ["-r", "-f", join(W, `dvol${i}.dump`)], { cwd: dest });
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
    const ours = (rel: Buffer) => rel.equals(Buffer.from("restoresymtable")) || rel.equals(Buffer.from(".ndmpd-snapshots"));
    expect(await compareTrees(dvol, dest, { timePrecisionNs: 1000, rootTimes: false, ignore: ours, xattrs: false })).toEqual([]);
    expect(l0.stream.includes(Buffer.from("changed during the level 0"))).toBe(false);
    expect(l1.stream.includes(Buffer.from("changed during the level 0\n"))).toBe(true);
    expect(snapshotsIn(dvol)).toEqual([]);
  }, 300_000);

  it("SIGTERM while a job holds a snapshot: the server deletes it before it exits", async () => {
    const state = join(W, "state-t");
    const t = await startServer({ config: config("127.0.0.1:0", state) });
    const ct = await dma(t.port);
    const sock = await dataConnect(ct);
    sock.pause();
    expect(await start(ct, { FILESYSTEM: TREE })).toBe(ErrorCode.NO_ERR);
    await until(() => snapshotsIn(VOL).length === 1, 30_000, "the snapshot");
    expect(await t.stop("SIGTERM")).toBe(0);
    sock.destroy();
    await ct.close().catch(() => {});
    expect(snapshotsIn(VOL)).toEqual([]);
    expect(recordsIn(state)).toEqual([]);
  }, 120_000);

  it("under Node (no FFI) the btrfs tool makes and deletes the snapshot: the portable path", async () => {
    const target = findSubvolume(Buffer.from(TREE));
    if (typeof target === "string") throw new Error(target);
    expect(target.subvolume.toString()).toBe(VOL);
    expect(target.rel.toString()).toBe("tree");
    const made = await createBtrfs(NO_NATIVE, target, "ndmpd-tool-path");
    expect(made.via).toBe("btrfs-tool");
    expect(sh("btrfs", ["subvolume", "show", made.root.toString()])).toMatch(/Flags:\s+readonly/);
    expect(statSync(join(made.root.toString(), "tree", "small", "s1")).ino).toBe(statSync(join(TREE, "small", "s1")).ino);
    expect(await destroyBtrfs(NO_NATIVE, Buffer.from(join(VOL, ".ndmpd-snapshots")), "ndmpd-tool-path")).toBe(true);
    expect(snapshotsIn(VOL)).toEqual([]);
  }, 120_000);

  it("a server without CAP_SYS_ADMIN (as the packaged unit runs it): btrfs is no method, required is refused and says why", async () => {
    // setpriv drops it from the bounding set, as the unit's CapabilityBoundingSet does.
    const capless = { pid: 0, prefix: () => ["setpriv", "--bounding-set=-sys_admin"], stop: async () => {} };
    const p = await startServer({ netns: capless, config: config("127.0.0.1:0", join(W, "state-capless")) });
    try {
      expect(readFileSync(`/proc/${p.pid}/status`, "utf8")).toMatch(/^CapEff:\s*[0-9a-f]+$/m);
      const cp = await dma(p.port);
      const fsInfo = await cp.request(Message.CONFIG_GET_FS_INFO);
      const mine = (fsInfo.body.fs_info as Array<{ fs_logical_device: unknown; fs_env: Array<{ name: unknown; value: unknown }> }>).find((f) => String(f.fs_logical_device) === MNT);
      expect(mine?.fs_env.find((e) => String(e.name) === "SNAPSHOT_METHOD")?.value?.toString()).toBe("none");
      const sock = await dataConnect(cp);
      sock.resume();
      const since = cp.posts.length;
      expect(await start(cp, { FILESYSTEM: TREE, SNAPSHOT: "required" })).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      expect(logsOf(cp, since, LogType.ERROR).join("\n")).toMatch(/no snapshot method \(deleting btrfs snapshots needs CAP_SYS_ADMIN/);
      sock.destroy();
      await cp.close();
      expect(snapshotsIn(VOL)).toEqual([]);
    } finally {
      await p.stop();
    }
  }, 60_000);
  // Last: it remounts the filesystem with user_subvol_rm_allowed, which has no undo.
  it("not root: btrfs is no method unless the filesystem lets users delete subvolumes (user_subvol_rm_allowed)", () => {
    const getuid = process.getuid;
    try {
      process.getuid = () => 1000;
      expect(findSubvolume(Buffer.from(TREE))).toMatch(/deleting btrfs snapshots needs CAP_SYS_ADMIN \(root; the packaged service drops it\) or the filesystem mounted with user_subvol_rm_allowed/);
      sh("mount", ["-o", "remount,user_subvol_rm_allowed", MNT]);
      const t = findSubvolume(Buffer.from(TREE));
      expect(typeof t === "string" ? t : t.subvolume.toString()).toBe(VOL);
    } finally {
      process.getuid = getuid;
    }
  });
});
